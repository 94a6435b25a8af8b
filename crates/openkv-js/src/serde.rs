//! Serde support: [`to_js`] turns any `Serialize` value into the [`JsValue`] Deno would store
//! for the equivalent JavaScript data, and [`from_js`] turns a [`JsValue`] (for instance one
//! Deno wrote) back into any `Deserialize` type.
//!
//! ```
//! use std::collections::HashMap;
//!
//! use num_bigint::BigInt;
//! use openkv_js::{from_js, to_js, JsBigInt, JsBytes, JsDate, JsValue};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! enum Role {
//!     Admin,
//!     Member { since: u16 },
//! }
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct User {
//!     name: String,
//!     tags: Vec<String>,
//!     nickname: Option<String>,
//!     scores: HashMap<String, f64>,
//!     roles: Vec<Role>,
//!     id: u64,          // above 2^53 - 1, so it becomes a bigint
//!     avatar: JsBytes,  // a Uint8Array (`serde_bytes` works too)
//!     created: JsDate,  // a Date
//!     debt: JsBigInt,   // always a bigint
//! }
//!
//! let user = User {
//!     name: "Ada".into(),
//!     tags: vec!["math".into()],
//!     nickname: None,
//!     scores: HashMap::from([("chess".into(), 2.5)]),
//!     roles: vec![Role::Admin, Role::Member { since: 1843 }],
//!     id: 9_007_199_254_740_993,
//!     avatar: JsBytes(vec![0x89, b'P', b'N', b'G']),
//!     created: JsDate(1_700_000_000_000.0),
//!     debt: JsBigInt(BigInt::from(-5)),
//! };
//! let js = to_js(&user)?;
//! // `{ name: "Ada", tags: ["math"], nickname: null, scores: { chess: 2.5 },
//! //    roles: ["Admin", { Member: { since: 1843 } }], id: 9007199254740993n,
//! //    avatar: Uint8Array [137, 80, 78, 71], created: Date, debt: -5n }`
//! let JsValue::Object(props) = &js else { panic!("a struct becomes an object") };
//! let field = |name: &str| &props.iter().find(|(k, _)| k == name).unwrap().1;
//! assert_eq!(*field("name"), JsValue::from("Ada"));
//! assert_eq!(*field("nickname"), JsValue::Null);
//! assert_eq!(*field("id"), JsValue::BigInt(BigInt::from(9_007_199_254_740_993u64)));
//! assert_eq!(*field("avatar"), JsValue::uint8_array(vec![0x89, b'P', b'N', b'G']));
//! assert_eq!(*field("created"), JsValue::Date(1_700_000_000_000.0));
//! assert_eq!(
//!     *field("roles"),
//!     JsValue::array([
//!         JsValue::from("Admin"),
//!         JsValue::object([("Member", JsValue::object([("since", JsValue::from(1843.0))]))]),
//!     ])
//! );
//!
//! let back: User = from_js(&js)?;
//! assert_eq!(back, user);
//!
//! // Errors say what was expected, what JavaScript value was found, and where.
//! let err = from_js::<User>(&JsValue::object([("name", JsValue::from(1.0))])).unwrap_err();
//! assert_eq!(err.to_string(), "name: invalid type: expected a string, found number 1");
//! # Ok::<(), openkv_js::JsSerdeError>(())
//! ```
//!
//! # Rust → JavaScript ([`to_js`])
//!
//! | Rust (serde data model)                            | JavaScript ([`JsValue`])                               |
//! |----------------------------------------------------|--------------------------------------------------------|
//! | `bool`                                             | `boolean`                                              |
//! | integer (`i8`…`i128`, `u8`…`u128`), \|n\| ≤ 2⁵³−1   | `number`                                               |
//! | integer beyond `Number.MAX_SAFE_INTEGER` (2⁵³−1)   | **`bigint`** (a `number` would lose digits)            |
//! | `f64`                                              | `number`                                               |
//! | `f32`                                              | `number`: the shortest decimal (`0.1f32` → `0.1`)      |
//! | `char`, `&str`, `String`                           | `string`                                               |
//! | bytes ([`JsBytes`], `serde_bytes`)                 | `Uint8Array` (over its own `ArrayBuffer`)              |
//! | `Vec<u8>`, `[u8; N]` (no `serde_bytes`)            | `Array` of numbers, as for any sequence                |
//! | `None`, `()`, unit struct                          | `null`                                                 |
//! | `Some(x)`, newtype struct `N(x)`                   | `x`                                                    |
//! | sequence (`Vec`, `HashSet`, …), tuple, tuple struct| `Array` (dense)                                        |
//! | map whose keys are all strings or integers         | plain object; integer keys as decimal strings          |
//! | map with any other key (or keys like `1` and `"1"`)| **`Map`**                                              |
//! | struct                                             | plain object, fields in declaration order              |
//! | unit variant `E::A`                                | `"A"`                                                  |
//! | newtype variant `E::A(x)`                          | `{ A: x }`                                             |
//! | tuple variant `E::A(x, y)`                         | `{ A: [x, y] }`                                        |
//! | struct variant `E::A { x }`                        | `{ A: { x } }`                                         |
//! | [`JsDate`]                                         | `Date`                                                 |
//! | [`JsBigInt`]                                       | `bigint`, whatever its size                            |
//! | [`JsUndefined`]                                    | `undefined`                                            |
//! | [`JsMap`]                                          | `Map`, entries in order                                |
//! | [`JsSet`]                                          | `Set`, values in order                                 |
//! | [`JsBlob`](crate::JsBlob), [`JsFile`](crate::JsFile), [`JsDomException`](crate::JsDomException), [`JsCryptoKey`](crate::JsCryptoKey) | that host object, its state in Deno's property order |
//! | [`JsValue`]                                        | itself, exactly                                        |
//!
//! Enums follow serde's usual representations, so `#[serde(tag = "…")]`, `untagged`,
//! `rename`, `flatten`, `skip_serializing_if` … all behave as they do with `serde_json`.
//! Maps keep their iteration order (`BTreeMap` sorted, `HashMap` arbitrary).
//!
//! # JavaScript → Rust ([`from_js`])
//!
//! | Rust target                               | accepts                                                            |
//! |-------------------------------------------|--------------------------------------------------------------------|
//! | `bool`                                    | `boolean`, `Boolean` object                                        |
//! | integers (`i8`…`i128`, `u8`…`u128`)       | `number` that is an integer in range; `bigint` in range; their boxed objects |
//! | `f64`, `f32`                              | `number`, `bigint` (rounded), `Date` (its milliseconds), boxed `Number`/`BigInt` |
//! | `char`                                    | `string` of exactly one character                                  |
//! | `String`                                  | `string`, `String` object, `RegExp` (as `"/source/flags"`)         |
//! | bytes ([`JsBytes`], `serde_bytes`)        | `ArrayBuffer`, any typed array or `DataView` (its bytes), `Array` of numbers |
//! | `Option<T>`                               | `null` / `undefined` → `None`, anything else → `Some`              |
//! | `()`, unit struct                         | `null`, `undefined`                                                |
//! | `Vec<T>`, tuples, sets, …                 | `Array` (holes are `null`), sparse `Array` (holes `null`, `length` at most 2²⁴), `Set`, typed array (its elements), `ArrayBuffer` (its bytes) |
//! | maps                                      | plain object (keys parsed as the key type: `"1"` → `1u32`), `Map`, `Error` |
//! | struct                                    | plain object, `Map`, `Array` (fields by position), `Error`         |
//! | enum                                      | `"Variant"` (unit), `{ Variant: content }` (exactly one key)       |
//! | [`JsDate`]                                | `Date`, `number`                                                   |
//! | [`JsBigInt`]                              | `bigint`, integral `number`                                        |
//! | [`JsUndefined`]                           | `undefined`, `null`                                                |
//! | [`JsMap`]                                 | `Map`, plain object, `Array` of `[key, value]` pairs               |
//! | [`JsSet`]                                 | `Set`, `Array`                                                     |
//! | [`JsBlob`](crate::JsBlob), [`JsFile`](crate::JsFile), [`JsDomException`](crate::JsDomException), [`JsCryptoKey`](crate::JsCryptoKey) | that host object (`Blob`, …; its `type` must match) |
//! | [`JsValue`]                               | anything, exactly (through its typed JSON)                         |
//!
//! A host object ([`JsValue::HostObject`]: `Blob`, `File`, `DOMException`, `CryptoKey`) reads
//! as its state object, so a struct of your own with the fields you need works too.
//!
//! Anything else is an error naming what was expected, the JavaScript value found and where
//! (`users[3].age: …`). A shared or circular reference ([`JsValue::Ref`]) is always an error:
//! `from_js` reads a tree, and a repeated object has no Rust counterpart. Non-index properties
//! of arrays are ignored. Strings with lone surrogates ([`JsValue::StringUtf16`]) are read with
//! U+FFFD in their place. Typed arrays are read little-endian, as every platform Deno runs on
//! writes them. Keys are converted where the target's key type needs it: property names and
//! string `Map` keys are parsed when read as numbers or booleans (`"1"` → `1u32`), and `Map`
//! keys that are numbers, bigints or booleans are read as strings when the target wants strings
//! (`1` → `"1"`).
//!
//! ## Self-describing targets (`deserialize_any`)
//!
//! Targets that ask the value what it is (`serde_json::Value`, untagged enums, `flatten`)
//! see this:
//!
//! | JavaScript                              | serde data model                                    |
//! |-----------------------------------------|-----------------------------------------------------|
//! | `undefined`, `null`                     | unit (`serde_json::Value::Null`)                    |
//! | `boolean`, `Boolean`                    | bool                                                |
//! | `number`, `Number` — integer, \|n\| ≤ 2⁵³−1 | `u64` (≥ 0) / `i64` (< 0); `-0` is `f64`         |
//! | other `number`                          | `f64` (`NaN`/`±Infinity` become `null` in `serde_json::Value`) |
//! | `bigint`, `BigInt`                      | `u64`/`i64` if it fits, else `u128`/`i128`, else an error (read it as [`JsBigInt`]) |
//! | `string`, `String`                      | string                                              |
//! | plain object                            | map with string keys                                |
//! | `Array`, sparse `Array`, `Set`          | sequence (holes are unit)                           |
//! | `Map`                                   | map (number keys become strings for string-keyed targets) |
//! | `Date`                                  | `f64` milliseconds since the epoch                  |
//! | `RegExp`                                | string `"/source/flags"`                            |
//! | `ArrayBuffer`, `DataView`               | sequence of `u8`                                    |
//! | typed array                             | sequence of its elements (`BigInt64Array`, `BigUint64Array`: as bigints) |
//! | `Error`                                 | map `{ name, message?, stack?, cause? }`            |
//! | `Blob`, `File`, `DOMException`, `CryptoKey` | its state object, a map (`{type: "Blob", mimeType, parts, size}`, …) |
//! | reference ([`JsValue::Ref`])            | error                                               |
//!
//! # Special JavaScript types
//!
//! The wrappers [`JsDate`], [`JsBigInt`], [`JsUndefined`], [`JsMap`], [`JsSet`] and
//! [`JsBytes`] produce (and accept) JavaScript types that serde's data model has no word for.
//! They work with other serde formats too, as their natural stand-in: with `serde_json` a
//! `JsDate` is its number of milliseconds, a `JsBigInt` a decimal string, `JsUndefined` is
//! `null`, a `JsMap` an array of `[key, value]` pairs, a `JsSet` an array and `JsBytes` an array
//! of numbers. Only `to_js`/`from_js` round-trip them exactly.
//!
//! # Limits
//! Values nest at most 512 levels deep, counted as the V8 codec counts them: the top-level
//! value is level 1, its elements, properties, map keys and values level 2, and so on (an enum
//! variant with content, `{ Variant: content }`, is an object like any other). Deeper values
//! are an error in both directions, never a stack overflow; so are more than 2048 nested
//! layers of anything, `Option` and newtype wrappers included, which only a recursive type
//! can reach (`struct Loop(Option<Box<Loop>>)` read from a number).

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use num_bigint::{BigInt, Sign};
use num_traits::{FromPrimitive, ToPrimitive};
use serde::de::value::{F64Deserializer, StringDeserializer, UnitDeserializer};
use serde::de::{self, DeserializeOwned, DeserializeSeed, Expected, Visitor};
use serde::ser::{self, Serialize};
use serde::{Deserialize, Deserializer, Serializer};

use crate::value::{JsArray, JsError, JsValue, ViewKind};

/// Containers (arrays, objects, maps, sets, variants with content) nested deeper than this are
/// an error.
const MAX_DEPTH: u32 = 512;
/// Nested layers of any kind (containers, `Option`s, newtypes) beyond this are an error.
const MAX_LAYERS: u32 = 4 * MAX_DEPTH;
/// The longest sparse array `from_js` expands into a sequence.
const MAX_SPARSE_LENGTH: u32 = 1 << 24;
/// `Number.MAX_SAFE_INTEGER`.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
/// The largest time value a `Date` can hold, in milliseconds either side of the epoch.
const MAX_DATE_MS: f64 = 8.64e15;

// Newtype-struct names the wrappers serialize through; `to_js` and `from_js` recognise them.
const DATE: &str = "$openkv::Date";
const BIGINT: &str = "$openkv::BigInt";
const UNDEFINED: &str = "$openkv::Undefined";
const MAP: &str = "$openkv::Map";
const SET: &str = "$openkv::Set";
/// A whole [`JsValue`] passing through serde: its typed JSON rendering, read back by [`to_js`].
const JSVALUE: &str = "$openkv::JsValue";
/// A host object's state object passing through serde ([`JsBlob`](crate::JsBlob) and the
/// other typed views): [`to_js`] wraps it in a [`JsValue::HostObject`].
pub(crate) const HOST: &str = "$openkv::HostObject";

/// `undefined`/hole stand-in that sequences borrow.
static NULL: JsValue = JsValue::Null;

/// Serializes `value` into the [`JsValue`] Deno would store for the equivalent JavaScript data.
///
/// | Rust (serde data model)                            | JavaScript ([`JsValue`])                               |
/// |----------------------------------------------------|--------------------------------------------------------|
/// | `bool`                                             | `boolean`                                              |
/// | integer (`i8`…`i128`, `u8`…`u128`), \|n\| ≤ 2⁵³−1   | `number`                                               |
/// | integer beyond `Number.MAX_SAFE_INTEGER` (2⁵³−1)   | **`bigint`** (a `number` would lose digits)            |
/// | `f64`                                              | `number`                                               |
/// | `f32`                                              | `number`: the shortest decimal (`0.1f32` → `0.1`)      |
/// | `char`, `&str`, `String`                           | `string`                                               |
/// | bytes ([`JsBytes`], `serde_bytes`)                 | `Uint8Array` (over its own `ArrayBuffer`)              |
/// | `Vec<u8>`, `[u8; N]` (no `serde_bytes`)            | `Array` of numbers, as for any sequence                |
/// | `None`, `()`, unit struct                          | `null`                                                 |
/// | `Some(x)`, newtype struct `N(x)`                   | `x`                                                    |
/// | sequence (`Vec`, `HashSet`, …), tuple, tuple struct| `Array` (dense)                                        |
/// | map whose keys are all strings or integers         | plain object; integer keys as decimal strings          |
/// | map with any other key (or keys like `1` and `"1"`)| **`Map`**                                              |
/// | struct                                             | plain object, fields in declaration order              |
/// | unit variant `E::A`                                | `"A"`                                                  |
/// | newtype variant `E::A(x)`                          | `{ A: x }`                                             |
/// | tuple variant `E::A(x, y)`                         | `{ A: [x, y] }`                                        |
/// | struct variant `E::A { x }`                        | `{ A: { x } }`                                         |
/// | [`JsDate`]                                         | `Date`                                                 |
/// | [`JsBigInt`]                                       | `bigint`, whatever its size                            |
/// | [`JsUndefined`]                                    | `undefined`                                            |
/// | [`JsMap`]                                          | `Map`, entries in order                                |
/// | [`JsSet`]                                          | `Set`, values in order                                 |
/// | [`JsBlob`](crate::JsBlob), [`JsFile`](crate::JsFile), [`JsDomException`](crate::JsDomException), [`JsCryptoKey`](crate::JsCryptoKey) | that host object, its state in Deno's property order |
/// | [`JsValue`]                                        | itself, exactly                                        |
///
/// Enums follow serde's usual representations, so `#[serde(tag = "…")]`, `untagged`,
/// `flatten` … behave as they do with `serde_json`. Maps keep their iteration order.
///
/// # Errors
/// If `value`'s `Serialize` impl fails, or it nests deeper than 512 levels.
pub fn to_js<T: Serialize + ?Sized>(value: &T) -> Result<JsValue, JsSerdeError> {
    let _running = ToJsRunning::start();
    value.serialize(Ser { depth: Depth::ROOT })
}

// A `JsValue` cannot pass through serde's data model as itself, only as its typed JSON, which
// `Ser` would then read back: rendering and parsing cost ~15× the V8 encoding of the value
// (`kv.set(&k, &js)` goes through here). So while `to_js` runs, `JsValue::serialize` hands a
// copy of itself over on this thread instead, and `Ser` takes it at the `JSVALUE` newtype.
// Any other serializer still gets the typed JSON.
thread_local! {
    /// How many `to_js` calls run on this thread (nested ones are possible, through a user's
    /// `Serialize` impl).
    static TO_JS_RUNNING: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// The `JsValue` whose `serialize` is running under `to_js`, until `Ser` takes it.
    static HANDOFF: std::cell::RefCell<Option<JsValue>> = const { std::cell::RefCell::new(None) };
}

/// Counts a running `to_js` for as long as it lives (a panic included).
struct ToJsRunning;

impl ToJsRunning {
    fn start() -> ToJsRunning {
        TO_JS_RUNNING.with(|n| n.set(n.get() + 1));
        ToJsRunning
    }
}

impl Drop for ToJsRunning {
    fn drop(&mut self) {
        TO_JS_RUNNING.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

/// A `JsValue` as its typed JSON, rendered only if a serializer asks for it.
struct TypedJson<'a>(&'a JsValue);

impl Serialize for TypedJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        crate::to_json(self.0).serialize(serializer)
    }
}

/// Deserializes a `T` from a [`JsValue`], accepting what JavaScript would naturally hold for
/// it:
///
/// | Rust target                               | accepts                                                            |
/// |-------------------------------------------|--------------------------------------------------------------------|
/// | `bool`                                    | `boolean`, `Boolean` object                                        |
/// | integers (`i8`…`i128`, `u8`…`u128`)       | `number` that is an integer in range; `bigint` in range; their boxed objects |
/// | `f64`, `f32`                              | `number`, `bigint` (rounded), `Date` (its milliseconds), boxed `Number`/`BigInt` |
/// | `char`                                    | `string` of exactly one character                                  |
/// | `String`                                  | `string`, `String` object, `RegExp` (as `"/source/flags"`)         |
/// | bytes ([`JsBytes`], `serde_bytes`)        | `ArrayBuffer`, any typed array or `DataView` (its bytes), `Array` of numbers |
/// | `Option<T>`                               | `null` / `undefined` → `None`, anything else → `Some`              |
/// | `()`, unit struct                         | `null`, `undefined`                                                |
/// | `Vec<T>`, tuples, sets, …                 | `Array` (holes are `null`), sparse `Array` (holes `null`, `length` at most 2²⁴), `Set`, typed array (its elements), `ArrayBuffer` (its bytes) |
/// | maps                                      | plain object (keys parsed as the key type: `"1"` → `1u32`), `Map`, `Error` |
/// | struct                                    | plain object, `Map`, `Array` (fields by position), `Error`         |
/// | enum                                      | `"Variant"` (unit), `{ Variant: content }` (exactly one key)       |
/// | [`JsDate`]                                | `Date`, `number`                                                   |
/// | [`JsBigInt`]                              | `bigint`, integral `number`                                        |
/// | [`JsUndefined`]                           | `undefined`, `null`                                                |
/// | [`JsMap`]                                 | `Map`, plain object, `Array` of `[key, value]` pairs               |
/// | [`JsSet`]                                 | `Set`, `Array`                                                     |
/// | [`JsBlob`](crate::JsBlob), [`JsFile`](crate::JsFile), [`JsDomException`](crate::JsDomException), [`JsCryptoKey`](crate::JsCryptoKey) | that host object (`Blob`, …; its `type` must match) |
/// | [`JsValue`]                               | anything, exactly (through its typed JSON)                         |
///
/// A shared or circular reference ([`JsValue::Ref`]) is always an error. Non-index properties
/// of arrays are ignored; lone surrogates read as U+FFFD; typed arrays are little-endian.
/// Property names are parsed when the key type is a number or boolean (`"1"` → `1u32`), and
/// `Map` keys that are numbers, bigints or booleans read as strings where strings are wanted.
///
/// Self-describing targets (`serde_json::Value`, untagged enums, `flatten`) see:
///
/// | JavaScript                              | serde data model                                    |
/// |-----------------------------------------|-----------------------------------------------------|
/// | `undefined`, `null`                     | unit (`serde_json::Value::Null`)                    |
/// | `boolean`, `Boolean`                    | bool                                                |
/// | `number`, `Number` — integer, \|n\| ≤ 2⁵³−1 | `u64` (≥ 0) / `i64` (< 0); `-0` is `f64`         |
/// | other `number`                          | `f64` (`NaN`/`±Infinity` become `null` in `serde_json::Value`) |
/// | `bigint`, `BigInt`                      | `u64`/`i64` if it fits, else `u128`/`i128`, else an error (read it as [`JsBigInt`]) |
/// | `string`, `String`                      | string                                              |
/// | plain object                            | map with string keys                                |
/// | `Array`, sparse `Array`, `Set`          | sequence (holes are unit)                           |
/// | `Map`                                   | map (number keys become strings for string-keyed targets) |
/// | `Date`                                  | `f64` milliseconds since the epoch                  |
/// | `RegExp`                                | string `"/source/flags"`                            |
/// | `ArrayBuffer`, `DataView`               | sequence of `u8`                                    |
/// | typed array                             | sequence of its elements (`BigInt64Array`, `BigUint64Array`: as bigints) |
/// | `Error`                                 | map `{ name, message?, stack?, cause? }`            |
/// | `Blob`, `File`, `DOMException`, `CryptoKey` | its state object, a map (`{type: "Blob", mimeType, parts, size}`, …) |
/// | reference ([`JsValue::Ref`])            | error                                               |
///
/// # Errors
/// If the value does not fit `T` (wrong type, number not an integer or out of range, missing
/// field, …), holds a shared or circular reference ([`JsValue::Ref`]), or nests deeper than
/// 512 levels. The error names the place (`users[3].age`).
pub fn from_js<T: DeserializeOwned>(value: &JsValue) -> Result<T, JsSerdeError> {
    T::deserialize(De::new(value, Depth::ROOT))
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why [`to_js`] or [`from_js`] failed: a message and where in the value it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsSerdeError {
    message: String,
    /// Innermost segment first.
    path: Vec<PathSegment>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum PathSegment {
    Index(usize),
    /// A property name or string map key.
    Key(String),
    /// Any other map key, shown as is: `1`, `2n`, `<Array>`.
    Other(String),
}

impl JsSerdeError {
    fn new(message: impl fmt::Display) -> JsSerdeError {
        JsSerdeError { message: message.to_string(), path: Vec::new() }
    }

    fn at_index(mut self, index: usize) -> JsSerdeError {
        self.path.push(PathSegment::Index(index));
        self
    }

    fn at_key(mut self, key: impl Into<String>) -> JsSerdeError {
        self.path.push(PathSegment::Key(key.into()));
        self
    }

    fn at(mut self, segment: PathSegment) -> JsSerdeError {
        self.path.push(segment);
        self
    }

    /// What went wrong, without the path.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Where it went wrong, as a JavaScript-like accessor path (`users[3].age`,
    /// `scores["a b"]`); empty for the top-level value.
    pub fn path(&self) -> String {
        let mut out = String::new();
        for segment in self.path.iter().rev() {
            match segment {
                PathSegment::Index(i) => out.push_str(&format!("[{i}]")),
                PathSegment::Key(k) if is_identifier(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                PathSegment::Key(k) => out.push_str(&format!("[{k:?}]")),
                PathSegment::Other(k) => out.push_str(&format!("[{k}]")),
            }
        }
        out
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_alphanumeric() || c == '_' || c == '$')
}

impl fmt::Display for JsSerdeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path(), self.message)
        }
    }
}

impl std::error::Error for JsSerdeError {}

impl ser::Error for JsSerdeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        JsSerdeError::new(msg)
    }
}

impl de::Error for JsSerdeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        JsSerdeError::new(msg)
    }
}

/// A short description of a value for messages: `number 1.5`, `string "abc"`, `Map`.
fn describe(value: &JsValue) -> String {
    match value {
        JsValue::Number(n) => format!("number {}", js_number(*n)),
        JsValue::NumberObject(n) => format!("Number object {}", js_number(*n)),
        JsValue::BigInt(b) => format!("bigint {}", describe_bigint(b)),
        JsValue::BigIntObject(b) => format!("BigInt object {}", describe_bigint(b)),
        JsValue::Bool(b) => format!("boolean {b}"),
        JsValue::BooleanObject(b) => format!("Boolean object {b}"),
        JsValue::String(s) => format!("string {:?}", truncate(s)),
        JsValue::StringObject(s) => format!("String object {:?}", truncate(s)),
        JsValue::StringUtf16(u) => format!("string {:?}", truncate(&String::from_utf16_lossy(u))),
        JsValue::Undefined | JsValue::Null => value.type_name().to_owned(),
        JsValue::Array(a) => format!("Array of length {}", a.items.len()),
        JsValue::SparseArray { length, .. } => format!("sparse Array of length {length}"),
        JsValue::Map(m) => format!("Map of size {}", m.len()),
        JsValue::Set(s) => format!("Set of size {}", s.len()),
        JsValue::Ref(id) => format!("reference to object #{id}"),
        JsValue::Error(e) => format!("{} object", e.kind.name()),
        JsValue::HostObject(_) => format!("{} object", value.type_name()),
        JsValue::Object(_) => "object".to_owned(),
        JsValue::Date(_)
        | JsValue::RegExp { .. }
        | JsValue::ArrayBuffer(_)
        | JsValue::View { .. } => value.type_name().to_owned(),
    }
}

fn describe_bigint(b: &BigInt) -> String {
    let s = b.to_string();
    if s.len() > 40 {
        format!("{}…{}n ({} digits)", &s[..20], &s[s.len() - 6..], s.trim_start_matches('-').len())
    } else {
        format!("{s}n")
    }
}

fn truncate(s: &str) -> Cow<'_, str> {
    match s.char_indices().nth(40) {
        Some((i, _)) => Cow::Owned(format!("{}…", &s[..i])),
        None => Cow::Borrowed(s),
    }
}

/// A number as JavaScript prints it (close enough for messages and keys).
fn js_number(n: f64) -> String {
    if n.is_nan() {
        "NaN".to_owned()
    } else if n.is_infinite() {
        if n > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
    } else if n == 0.0 {
        "0".to_owned()
    } else {
        n.to_string()
    }
}

fn too_deep() -> JsSerdeError {
    JsSerdeError::new(format!("value nested deeper than {MAX_DEPTH} levels"))
}

// ---------------------------------------------------------------------------------------------
// Depth accounting
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct Depth {
    /// The current value's level, counted as the V8 codec counts it: 1 for the top-level value,
    /// 2 for its elements, properties, map keys and values, … at most [`MAX_DEPTH`].
    level: u32,
    /// Layers of any kind (containers, `Option`s, newtypes) around the current value.
    layers: u32,
}

impl Depth {
    const ROOT: Depth = Depth { level: 1, layers: 1 };

    /// The depth of a container's element.
    fn child(self) -> Result<Depth, JsSerdeError> {
        if self.level >= MAX_DEPTH {
            return Err(too_deep());
        }
        Ok(Depth { level: self.level + 1, layers: self.wrap()?.layers })
    }

    /// The depth of a wrapper's (`Some`, newtype) content.
    fn wrap(self) -> Result<Depth, JsSerdeError> {
        if self.layers >= MAX_LAYERS {
            return Err(JsSerdeError::new(format!(
                "value nested deeper than {MAX_LAYERS} layers (counting Option and newtype \
                 wrappers); is the type recursive?"
            )));
        }
        Ok(Depth { level: self.level, layers: self.layers + 1 })
    }
}

// ---------------------------------------------------------------------------------------------
// Wrapper types
// ---------------------------------------------------------------------------------------------

/// A JavaScript `Date`: milliseconds since the Unix epoch (`NaN` for an invalid date).
///
/// [`to_js`] makes it a `Date`, [`from_js`] reads it from a `Date` or a number. Other serde
/// formats see the number (`serde_json` writes an invalid date as `null`, read back as `NaN`).
#[derive(Clone, Copy, Debug, Default, PartialEq, PartialOrd)]
pub struct JsDate(pub f64);

impl From<SystemTime> for JsDate {
    /// Whole milliseconds (truncated toward zero, as `new Date(ms)` does); a time beyond
    /// `Date`'s range (±8.64e15 ms) becomes an invalid date (`NaN`).
    fn from(time: SystemTime) -> JsDate {
        let ms = match time.duration_since(UNIX_EPOCH) {
            Ok(after) => after.as_millis() as f64,
            Err(before) => -(before.duration().as_millis() as f64) + 0.0,
        };
        JsDate(if ms.abs() > MAX_DATE_MS { f64::NAN } else { ms })
    }
}

impl TryFrom<JsDate> for SystemTime {
    type Error = JsSerdeError;

    /// Fails for an invalid date (`NaN`), one beyond `Date`'s range, or one the platform's
    /// `SystemTime` cannot hold.
    fn try_from(date: JsDate) -> Result<SystemTime, JsSerdeError> {
        let ms = date.0;
        if ms.is_nan() || ms.abs() > MAX_DATE_MS {
            return Err(JsSerdeError::new(format!(
                "Date {} is not a valid time (a Date holds ±8.64e15 ms)",
                js_number(ms)
            )));
        }
        let whole = ms.abs().trunc();
        let nanos = ((ms.abs() - whole) * 1e6).round();
        let offset = Duration::from_millis(whole as u64) + Duration::from_nanos(nanos as u64);
        let time =
            if ms >= 0.0 { UNIX_EPOCH.checked_add(offset) } else { UNIX_EPOCH.checked_sub(offset) };
        time.ok_or_else(|| {
            JsSerdeError::new(format!("Date {} is out of range for SystemTime", js_number(ms)))
        })
    }
}

/// A `JsValue` serializes as its typed JSON rendering ([`to_json`](crate::to_json)): that is what
/// `serde_json` prints, and [`to_js`] reads it back to an equal value, so a `JsValue` goes
/// wherever a `Serialize` value goes (a field of a struct, openkv's `Kv::set`).
impl Serialize for JsValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if TO_JS_RUNNING.with(|n| n.get()) == 0 {
            return serializer.serialize_newtype_struct(JSVALUE, &TypedJson(self));
        }
        // Under `to_js`: `Ser` takes this copy instead of the JSON (see `HANDOFF`). Another
        // serializer (a user's impl may call `serde_json` inside `to_js`) leaves it, and it is
        // dropped here; whatever an enclosing call had put there is restored.
        let outer = HANDOFF.with(|h| h.replace(Some(self.clone())));
        let result = serializer.serialize_newtype_struct(JSVALUE, &TypedJson(self));
        HANDOFF.with(|h| h.replace(outer));
        result
    }
}

/// A `JsValue` deserializes from its typed JSON rendering ([`from_json`](crate::from_json)),
/// the other half of its `Serialize`: [`from_js`] gives the exact value (a field of type
/// `JsValue` in a struct read with `from_js` keeps whatever the field holds), and `serde_json`
/// reads the typed JSON.
impl<'de> Deserialize<'de> for JsValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<JsValue, D::Error> {
        struct JsonVisitor;
        impl<'de> Visitor<'de> for JsonVisitor {
            type Value = JsValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JavaScript value in openkv's typed JSON")
            }
            fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<JsValue, D::Error> {
                let json = serde_json::Value::deserialize(d)?;
                crate::from_json(&json).map_err(de::Error::custom)
            }
        }
        deserializer.deserialize_newtype_struct(JSVALUE, JsonVisitor)
    }
}

impl Serialize for JsDate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_newtype_struct(DATE, &self.0)
    }
}

impl<'de> Deserialize<'de> for JsDate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<JsDate, D::Error> {
        struct DateVisitor;
        impl<'de> Visitor<'de> for DateVisitor {
            type Value = JsDate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Date (milliseconds since the epoch)")
            }
            fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<JsDate, D::Error> {
                if d.is_human_readable() {
                    d.deserialize_any(self)
                } else {
                    d.deserialize_f64(self)
                }
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<JsDate, E> {
                Ok(JsDate(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<JsDate, E> {
                Ok(JsDate(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<JsDate, E> {
                Ok(JsDate(v as f64))
            }
            fn visit_unit<E: de::Error>(self) -> Result<JsDate, E> {
                Ok(JsDate(f64::NAN))
            }
            fn visit_none<E: de::Error>(self) -> Result<JsDate, E> {
                Ok(JsDate(f64::NAN))
            }
        }
        deserializer.deserialize_newtype_struct(DATE, DateVisitor)
    }
}

/// A JavaScript `bigint`, whatever its size.
///
/// Plain Rust integers already become bigints beyond 2⁵³−1; `JsBigInt` is for values that
/// must be bigints (or exceed 128 bits). [`from_js`] reads it from a bigint or an integral
/// number. Other serde formats see a decimal string (and accept integers too).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JsBigInt(pub BigInt);

impl Serialize for JsBigInt {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_newtype_struct(BIGINT, &self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for JsBigInt {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<JsBigInt, D::Error> {
        struct BigIntVisitor;
        impl<'de> Visitor<'de> for BigIntVisitor {
            type Value = JsBigInt;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a bigint (an integer or a string of decimal digits)")
            }
            fn visit_newtype_struct<D: Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<JsBigInt, D::Error> {
                if d.is_human_readable() {
                    d.deserialize_any(self)
                } else {
                    d.deserialize_str(self)
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<JsBigInt, E> {
                v.parse().map(JsBigInt).map_err(|_| {
                    E::invalid_value(de::Unexpected::Str(v), &"a string of decimal digits")
                })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<JsBigInt, E> {
                Ok(JsBigInt(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<JsBigInt, E> {
                Ok(JsBigInt(v.into()))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<JsBigInt, E> {
                Ok(JsBigInt(v.into()))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<JsBigInt, E> {
                Ok(JsBigInt(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<JsBigInt, E> {
                match BigInt::from_f64(v) {
                    Some(b) if v.fract() == 0.0 => Ok(JsBigInt(b)),
                    _ => Err(E::invalid_value(de::Unexpected::Float(v), &self)),
                }
            }
        }
        deserializer.deserialize_newtype_struct(BIGINT, BigIntVisitor)
    }
}

impl From<BigInt> for JsBigInt {
    fn from(n: BigInt) -> JsBigInt {
        JsBigInt(n)
    }
}

/// JavaScript's `undefined` (serde's unit and `None` become `null`).
///
/// [`from_js`] accepts `undefined` and `null`; other serde formats see a unit (`null` in JSON).
/// Like any `Option`, an `Option<JsUndefined>` reads `undefined` back as `None`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JsUndefined;

impl Serialize for JsUndefined {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_newtype_struct(UNDEFINED, &())
    }
}

impl<'de> Deserialize<'de> for JsUndefined {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<JsUndefined, D::Error> {
        struct UndefinedVisitor;
        impl<'de> Visitor<'de> for UndefinedVisitor {
            type Value = JsUndefined;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("undefined")
            }
            fn visit_newtype_struct<D: Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<JsUndefined, D::Error> {
                <()>::deserialize(d).map(|()| JsUndefined)
            }
            fn visit_unit<E: de::Error>(self) -> Result<JsUndefined, E> {
                Ok(JsUndefined)
            }
            fn visit_none<E: de::Error>(self) -> Result<JsUndefined, E> {
                Ok(JsUndefined)
            }
        }
        deserializer.deserialize_newtype_struct(UNDEFINED, UndefinedVisitor)
    }
}

/// A JavaScript `Map`: entries in order, keys of any type (Rust maps with keys that are not
/// all strings or integers become `Map`s anyway; this forces one).
///
/// [`from_js`] reads it from a `Map`, a plain object or an array of `[key, value]` pairs.
/// Other serde formats see a sequence of `(key, value)` pairs (and accept a map too).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct JsMap<K, V>(pub Vec<(K, V)>);

impl<K, V> Default for JsMap<K, V> {
    fn default() -> Self {
        JsMap(Vec::new())
    }
}

impl<K, V> FromIterator<(K, V)> for JsMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        JsMap(iter.into_iter().collect())
    }
}

impl<K: Serialize, V: Serialize> Serialize for JsMap<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_newtype_struct(MAP, &self.0)
    }
}

impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for JsMap<K, V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<JsMap<K, V>, D::Error> {
        struct MapVisitor<K, V>(PhantomData<(K, V)>);
        impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Visitor<'de> for MapVisitor<K, V> {
            type Value = JsMap<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Map (or a sequence of [key, value] pairs)")
            }
            fn visit_newtype_struct<D: Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<Self::Value, D::Error> {
                if d.is_human_readable() {
                    d.deserialize_any(self)
                } else {
                    Vec::deserialize(d).map(JsMap)
                }
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(entry) = seq.next_element()? {
                    entries.push(entry);
                }
                Ok(JsMap(entries))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(4096));
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(JsMap(entries))
            }
        }
        deserializer.deserialize_newtype_struct(MAP, MapVisitor(PhantomData))
    }
}

/// A JavaScript `Set`: values in order (Rust sequences, sets included, become arrays; this
/// makes a `Set`).
///
/// [`from_js`] reads it from a `Set` or an array. Other serde formats see a sequence.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct JsSet<T>(pub Vec<T>);

impl<T> Default for JsSet<T> {
    fn default() -> Self {
        JsSet(Vec::new())
    }
}

impl<T> FromIterator<T> for JsSet<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        JsSet(iter.into_iter().collect())
    }
}

impl<T: Serialize> Serialize for JsSet<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_newtype_struct(SET, &self.0)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for JsSet<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<JsSet<T>, D::Error> {
        struct SetVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for SetVisitor<T> {
            type Value = JsSet<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Set (or a sequence)")
            }
            fn visit_newtype_struct<D: Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<Self::Value, D::Error> {
                Vec::deserialize(d).map(JsSet)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(JsSet(items))
            }
        }
        deserializer.deserialize_newtype_struct(SET, SetVisitor(PhantomData))
    }
}

/// Bytes as a `Uint8Array` (a plain `Vec<u8>` becomes an array of numbers).
///
/// Serializes through `serialize_bytes`, like `serde_bytes::ByteBuf`, which works with
/// [`to_js`] the same way. [`from_js`] reads it from an `ArrayBuffer`, any typed array or
/// `DataView` (its bytes) or an array of numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JsBytes(pub Vec<u8>);

impl From<Vec<u8>> for JsBytes {
    fn from(bytes: Vec<u8>) -> JsBytes {
        JsBytes(bytes)
    }
}

impl Serialize for JsBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for JsBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<JsBytes, D::Error> {
        struct BytesVisitor;
        impl<'de> Visitor<'de> for BytesVisitor {
            type Value = JsBytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes (a Uint8Array)")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<JsBytes, E> {
                Ok(JsBytes(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<JsBytes, E> {
                Ok(JsBytes(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<JsBytes, E> {
                Ok(JsBytes(v.as_bytes().to_vec()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<JsBytes, A::Error> {
                let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(b) = seq.next_element()? {
                    bytes.push(b);
                }
                Ok(JsBytes(bytes))
            }
        }
        deserializer.deserialize_byte_buf(BytesVisitor)
    }
}

// ---------------------------------------------------------------------------------------------
// Rust → JavaScript
// ---------------------------------------------------------------------------------------------

/// The serializer behind [`to_js`].
struct Ser {
    depth: Depth,
}

fn integer(v: i128) -> JsValue {
    if v.unsigned_abs() <= u128::from(MAX_SAFE_INTEGER) {
        JsValue::Number(v as f64)
    } else {
        JsValue::BigInt(v.into())
    }
}

fn unsigned(v: u128) -> JsValue {
    if v <= u128::from(MAX_SAFE_INTEGER) {
        JsValue::Number(v as f64)
    } else {
        JsValue::BigInt(v.into())
    }
}

/// `f32` to the `f64` of its shortest decimal form (`0.1f32` → `0.1`, not
/// `0.10000000149011612`), as `serde_json` would write it; exact widening if that ever failed
/// to round-trip.
fn widen_f32(v: f32) -> f64 {
    if !v.is_finite() {
        return f64::from(v);
    }
    match v.to_string().parse::<f64>() {
        Ok(wide) if wide as f32 == v => wide,
        _ => f64::from(v),
    }
}

/// The key a plain object would use for a map key, if it is a string or an integer.
fn object_key(key: &JsValue) -> Option<String> {
    match key {
        JsValue::String(s) => Some(s.clone()),
        JsValue::Number(n) if n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER as f64 => {
            Some((*n as i64).to_string())
        }
        JsValue::BigInt(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A map key as a path segment for errors.
fn key_segment(key: &JsValue) -> PathSegment {
    match key {
        JsValue::String(s) => PathSegment::Key(s.clone()),
        JsValue::Number(n) => PathSegment::Other(js_number(*n)),
        JsValue::BigInt(b) => PathSegment::Other(format!("{b}n")),
        other => PathSegment::Other(format!("<{}>", other.type_name())),
    }
}

fn wrap_variant(variant: Option<&'static str>, value: JsValue) -> JsValue {
    match variant {
        Some(name) => JsValue::Object(vec![(name.to_owned(), value)]),
        None => value,
    }
}

fn capacity(len: Option<usize>) -> usize {
    len.unwrap_or(0).min(4096)
}

impl Ser {
    /// A wrapper type's value ([`JsDate`], …).
    fn special<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<JsValue, JsSerdeError> {
        let inner = Ser { depth: self.depth.wrap()? };
        let wrong = |what: &str, got: &JsValue| {
            JsSerdeError::new(format!("{name} must wrap {what}, not a {}", got.type_name()))
        };
        match name {
            DATE => match value.serialize(inner)? {
                JsValue::Number(ms) => Ok(JsValue::Date(ms)),
                other => Err(wrong("a number of milliseconds", &other)),
            },
            BIGINT => match value.serialize(inner)? {
                JsValue::String(s) => s.parse().map(JsValue::BigInt).map_err(|_| {
                    JsSerdeError::new(format!("JsBigInt: {s:?} is not a decimal integer"))
                }),
                JsValue::Number(n) if n.fract() == 0.0 => {
                    Ok(JsValue::BigInt(BigInt::from_f64(n).unwrap_or_default()))
                }
                big @ JsValue::BigInt(_) => Ok(big),
                other => Err(wrong("a decimal string", &other)),
            },
            UNDEFINED => Ok(JsValue::Undefined),
            // The [key, value] pair arrays are not levels of the Map they become.
            MAP => match value.serialize(Ser {
                depth: Depth { level: self.depth.level.saturating_sub(1), ..inner.depth },
            })? {
                JsValue::Array(JsArray { items, .. }) => items
                    .into_iter()
                    .map(|item| match item {
                        Some(JsValue::Array(JsArray { items: pair, .. })) if pair.len() == 2 => {
                            let mut pair = pair.into_iter().map(|v| v.unwrap_or(JsValue::Null));
                            let mut next = || pair.next().unwrap_or(JsValue::Null);
                            Ok((next(), next()))
                        }
                        other => Err(wrong(
                            "[key, value] pairs",
                            other.as_ref().unwrap_or(&JsValue::Undefined),
                        )),
                    })
                    .collect::<Result<_, _>>()
                    .map(JsValue::Map),
                other => Err(wrong("a sequence of [key, value] pairs", &other)),
            },
            SET => match value.serialize(inner)? {
                JsValue::Array(JsArray { items, .. }) => Ok(JsValue::Set(
                    items.into_iter().map(|v| v.unwrap_or(JsValue::Null)).collect(),
                )),
                other => Err(wrong("a sequence", &other)),
            },
            _ => value.serialize(inner),
        }
    }
}

impl Serializer for Ser {
    type Ok = JsValue;
    type Error = JsSerdeError;
    type SerializeSeq = SeqSer;
    type SerializeTuple = SeqSer;
    type SerializeTupleStruct = SeqSer;
    type SerializeTupleVariant = SeqSer;
    type SerializeMap = MapSer;
    type SerializeStruct = StructSer;
    type SerializeStructVariant = StructSer;

    fn serialize_bool(self, v: bool) -> Result<JsValue, JsSerdeError> {
        Ok(JsValue::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<JsValue, JsSerdeError> {
        Ok(JsValue::Number(v.into()))
    }
    fn serialize_i16(self, v: i16) -> Result<JsValue, JsSerdeError> {
        Ok(JsValue::Number(v.into()))
    }
    fn serialize_i32(self, v: i32) -> Result<JsValue, JsSerdeError> {
        Ok(JsValue::Number(v.into()))
    }
    fn serialize_i64(self, v: i64) -> Result<JsValue, JsSerdeError> {
        Ok(integer(v.into()))
    }
    fn serialize_i128(self, v: i128) -> Result<JsValue, JsSerdeError> {
        Ok(integer(v))
    }
    fn serialize_u8(self, v: u8) -> Result<JsValue, JsSerdeError> {
        Ok(JsValue::Number(v.into()))
    }
    fn serialize_u16(self, v: u16) -> Result<JsValue, JsSerdeError> {
        Ok(JsValue::Number(v.into()))
    }
    fn serialize_u32(self, v: u32) -> Result<JsValue, JsSerdeError> {
        Ok(JsValue::Number(v.into()))
    }
    fn serialize_u64(self, v: u64) -> Result<JsValue, JsSerdeError> {
        Ok(unsigned(v.into()))
    }
    fn serialize_u128(self, v: u128) -> Result<JsValue, JsSerdeError> {
        Ok(unsigned(v))
    }
    fn serialize_f32(self, v: f32) -> Result<JsValue, JsSerdeError> {
        Ok(JsValue::Number(widen_f32(v)))
    }
    fn serialize_f64(self, v: f64) -> Result<JsValue, JsSerdeError> {
        Ok(JsValue::Number(v))
    }
    fn serialize_char(self, v: char) -> Result<JsValue, JsSerdeError> {
        Ok(JsValue::String(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<JsValue, JsSerdeError> {
        Ok(JsValue::String(v.to_owned()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<JsValue, JsSerdeError> {
        if u32::try_from(v.len()).is_err() {
            return Err(JsSerdeError::new(format!(
                "{} bytes do not fit in a Uint8Array (at most 2^32 - 1)",
                v.len()
            )));
        }
        Ok(JsValue::uint8_array(v.to_vec()))
    }
    fn serialize_none(self) -> Result<JsValue, JsSerdeError> {
        Ok(JsValue::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<JsValue, JsSerdeError> {
        value.serialize(Ser { depth: self.depth.wrap()? })
    }
    fn serialize_unit(self) -> Result<JsValue, JsSerdeError> {
        Ok(JsValue::Null)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<JsValue, JsSerdeError> {
        Ok(JsValue::Null)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<JsValue, JsSerdeError> {
        Ok(JsValue::String(variant.to_owned()))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<JsValue, JsSerdeError> {
        if let DATE | BIGINT | UNDEFINED | MAP | SET = name {
            return self.special(name, value);
        }
        if name == HOST {
            let state = value.serialize(Ser { depth: self.depth.wrap()? })?;
            return Ok(JsValue::HostObject(Box::new(state)));
        }
        if name == JSVALUE {
            // `JsValue::serialize` handed itself over (the usual case), …
            if let Some(value) = HANDOFF.with(|h| h.borrow_mut().take()) {
                return Ok(value);
            }
            // … or the payload is `to_json` of a `JsValue`, which `from_json` reads back exactly.
            let json = value.serialize(serde_json::value::Serializer).map_err(JsSerdeError::new)?;
            return crate::from_json(&json).map_err(JsSerdeError::new);
        }
        value.serialize(Ser { depth: self.depth.wrap()? })
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<JsValue, JsSerdeError> {
        let content =
            value.serialize(Ser { depth: self.depth.child()? }).map_err(|e| e.at_key(variant))?;
        Ok(JsValue::Object(vec![(variant.to_owned(), content)]))
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<SeqSer, JsSerdeError> {
        Ok(SeqSer { items: Vec::with_capacity(capacity(len)), depth: self.depth, variant: None })
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqSer, JsSerdeError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<SeqSer, JsSerdeError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<SeqSer, JsSerdeError> {
        Ok(SeqSer {
            items: Vec::with_capacity(capacity(Some(len))),
            depth: self.depth.child()?,
            variant: Some(variant),
        })
    }
    fn serialize_map(self, len: Option<usize>) -> Result<MapSer, JsSerdeError> {
        Ok(MapSer { entries: Vec::with_capacity(capacity(len)), key: None, depth: self.depth })
    }
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<StructSer, JsSerdeError> {
        Ok(StructSer {
            props: Vec::with_capacity(capacity(Some(len))),
            depth: self.depth,
            variant: None,
        })
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<StructSer, JsSerdeError> {
        Ok(StructSer {
            props: Vec::with_capacity(capacity(Some(len))),
            depth: self.depth.child()?,
            variant: Some(variant),
        })
    }
}

/// Builds an array (sequences, tuples; in a variant for tuple variants).
struct SeqSer {
    items: Vec<Option<JsValue>>,
    depth: Depth,
    variant: Option<&'static str>,
}

impl SeqSer {
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsSerdeError> {
        let index = self.items.len();
        let item = value.serialize(Ser { depth: self.depth.child()? }).map_err(|e| {
            let e = e.at_index(index);
            match self.variant {
                Some(name) => e.at_key(name),
                None => e,
            }
        })?;
        self.items.push(Some(item));
        Ok(())
    }

    fn finish(self) -> JsValue {
        wrap_variant(
            self.variant,
            JsValue::Array(JsArray { items: self.items, properties: vec![] }),
        )
    }
}

/// serde has one trait per sequence-like shape (sequence, tuple, tuple struct, tuple
/// variant); all four build the same JavaScript array here.
macro_rules! seq_like {
    ($($trait:ident :: $method:ident),* $(,)?) => {$(
        impl ser::$trait for SeqSer {
            type Ok = JsValue;
            type Error = JsSerdeError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsSerdeError> {
                self.push(value)
            }
            fn end(self) -> Result<JsValue, JsSerdeError> {
                Ok(self.finish())
            }
        }
    )*};
}

seq_like!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

/// Builds a plain object or, failing that, a `Map`.
struct MapSer {
    entries: Vec<(JsValue, JsValue)>,
    key: Option<JsValue>,
    depth: Depth,
}

impl ser::SerializeMap for MapSer {
    type Ok = JsValue;
    type Error = JsSerdeError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), JsSerdeError> {
        let key = key
            .serialize(Ser { depth: self.depth.child()? })
            .map_err(|e| JsSerdeError::new(format!("map key: {}", e.message)))?;
        self.key = Some(key);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsSerdeError> {
        let key = self
            .key
            .take()
            .ok_or_else(|| JsSerdeError::new("map value serialized before its key"))?;
        let value = value
            .serialize(Ser { depth: self.depth.child()? })
            .map_err(|e| e.at(key_segment(&key)))?;
        self.entries.push((key, value));
        Ok(())
    }

    fn end(self) -> Result<JsValue, JsSerdeError> {
        let keys: Option<Vec<String>> = self.entries.iter().map(|(k, _)| object_key(k)).collect();
        if let Some(keys) = keys {
            let mut seen = HashSet::with_capacity(keys.len());
            if keys.iter().all(|k| seen.insert(k.as_str())) {
                let values = self.entries.into_iter().map(|(_, v)| v);
                return Ok(JsValue::Object(keys.into_iter().zip(values).collect()));
            }
        }
        Ok(JsValue::Map(self.entries))
    }
}

/// Builds a plain object from struct fields (in a variant for struct variants).
struct StructSer {
    props: Vec<(String, JsValue)>,
    depth: Depth,
    variant: Option<&'static str>,
}

impl StructSer {
    fn field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), JsSerdeError> {
        let value = value.serialize(Ser { depth: self.depth.child()? }).map_err(|e| {
            let e = e.at_key(key);
            match self.variant {
                Some(name) => e.at_key(name),
                None => e,
            }
        })?;
        self.props.push((key.to_owned(), value));
        Ok(())
    }
}

impl ser::SerializeStruct for StructSer {
    type Ok = JsValue;
    type Error = JsSerdeError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), JsSerdeError> {
        self.field(key, value)
    }
    fn end(self) -> Result<JsValue, JsSerdeError> {
        Ok(wrap_variant(self.variant, JsValue::Object(self.props)))
    }
}

impl ser::SerializeStructVariant for StructSer {
    type Ok = JsValue;
    type Error = JsSerdeError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), JsSerdeError> {
        self.field(key, value)
    }
    fn end(self) -> Result<JsValue, JsSerdeError> {
        Ok(wrap_variant(self.variant, JsValue::Object(self.props)))
    }
}

// ---------------------------------------------------------------------------------------------
// JavaScript → Rust
// ---------------------------------------------------------------------------------------------

/// The deserializer behind [`from_js`]: a value, how deep it is, and whether it is a `Map`
/// key (which may be read as a string whatever its primitive type).
#[derive(Clone, Copy)]
struct De<'a> {
    /// The value read: a host object's state object in place of the host object (a `Blob` is
    /// read as `{type, mimeType, parts, size}`).
    value: &'a JsValue,
    /// The value as given (what a `JsValue` target gets).
    whole: &'a JsValue,
    depth: Depth,
    key: bool,
}

/// A host object's state object in place of the host object (see [`De::value`]).
fn unwrap_host(mut value: &JsValue) -> &JsValue {
    while let JsValue::HostObject(state) = value {
        value = state;
    }
    value
}

/// Where a map key comes from: a plain object's property name, or a `Map` key.
#[derive(Clone, Copy)]
enum KeySrc<'a> {
    Name(&'a str),
    Value(&'a JsValue),
}

impl KeySrc<'_> {
    fn segment(self) -> PathSegment {
        match self {
            KeySrc::Name(s) => PathSegment::Key(s.to_owned()),
            KeySrc::Value(v) => key_segment(v),
        }
    }
}

/// Sign and magnitude of an integer read from a number or bigint.
enum IntRead {
    Int(bool, u128),
    NotInteger,
    OutOfRange,
}

fn read_number(n: f64) -> IntRead {
    if !n.is_finite() || n.fract() != 0.0 {
        IntRead::NotInteger
    } else if n.abs() >= 2f64.powi(128) {
        IntRead::OutOfRange
    } else {
        IntRead::Int(n < 0.0, n.abs() as u128)
    }
}

fn read_bigint(b: &BigInt) -> IntRead {
    match b.magnitude().to_u128() {
        Some(mag) => IntRead::Int(b.sign() == Sign::Minus, mag),
        None => IntRead::OutOfRange,
    }
}

fn narrow<T: TryFrom<i128> + TryFrom<u128>>(negative: bool, magnitude: u128) -> Option<T> {
    if negative {
        0i128.checked_sub_unsigned(magnitude).and_then(|v| T::try_from(v).ok())
    } else {
        T::try_from(magnitude).ok()
    }
}

/// The number keys of a `Map` become when read as strings.
fn key_string(value: &JsValue) -> Option<String> {
    match value {
        JsValue::Number(n) | JsValue::NumberObject(n) => Some(js_number(*n)),
        JsValue::BigInt(b) | JsValue::BigIntObject(b) => Some(b.to_string()),
        JsValue::Bool(b) | JsValue::BooleanObject(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The elements of a typed array (or the bytes of a `DataView`/`ArrayBuffer`) as values.
fn view_elements(kind: ViewKind, bytes: &[u8]) -> impl Iterator<Item = Cow<'_, JsValue>> {
    let size = kind.element_size() as usize;
    bytes.chunks_exact(size).map(move |c| {
        let number = |n: f64| Cow::Owned(JsValue::Number(n));
        match kind {
            ViewKind::Int8 => number(f64::from(c[0] as i8)),
            ViewKind::Int16 => number(f64::from(i16::from_le_bytes([c[0], c[1]]))),
            ViewKind::Uint16 => number(f64::from(u16::from_le_bytes([c[0], c[1]]))),
            ViewKind::Int32 => number(f64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
            ViewKind::Uint32 => number(f64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
            ViewKind::Float16 => number(f16_to_f64(u16::from_le_bytes([c[0], c[1]]))),
            ViewKind::Float32 => number(f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
            ViewKind::Float64 => number(f64::from_le_bytes(c.try_into().unwrap_or_default())),
            ViewKind::BigInt64 => Cow::Owned(JsValue::BigInt(
                i64::from_le_bytes(c.try_into().unwrap_or_default()).into(),
            )),
            ViewKind::BigUint64 => Cow::Owned(JsValue::BigInt(
                u64::from_le_bytes(c.try_into().unwrap_or_default()).into(),
            )),
            ViewKind::Uint8 | ViewKind::Uint8Clamped | ViewKind::DataView => number(c[0].into()),
        }
    })
}

fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = i32::from((h >> 10) & 0x1f);
    let fraction = f64::from(h & 0x3ff);
    match exponent {
        0 => sign * fraction * 2f64.powi(-24),
        31 if fraction == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        e => sign * (1.0 + fraction / 1024.0) * 2f64.powi(e - 15),
    }
}

macro_rules! deserialize_integer {
    ($($method:ident => $visit:ident($ty:ty),)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsSerdeError> {
            if let Some(name) = self.key_name() {
                return KeyDe(&name).$method(visitor);
            }
            let read = match self.value {
                JsValue::Number(n) | JsValue::NumberObject(n) => read_number(*n),
                JsValue::BigInt(b) | JsValue::BigIntObject(b) => read_bigint(b),
                _ => return Err(self.mismatch(&visitor)),
            };
            let fail = |why: &str| {
                JsSerdeError::new(format_args!(
                    "{} {why} {}",
                    describe(self.value),
                    &visitor as &dyn Expected
                ))
            };
            match read {
                IntRead::Int(negative, magnitude) => match narrow::<$ty>(negative, magnitude) {
                    Some(v) => visitor.$visit(v),
                    None => Err(fail("is out of range for")),
                },
                IntRead::OutOfRange => Err(fail("is out of range for")),
                IntRead::NotInteger => Err(fail("is not an integer, expected")),
            }
        }
    )*};
}

impl<'a> De<'a> {
    fn new(value: &'a JsValue, depth: Depth) -> De<'a> {
        De { value: unwrap_host(value), whole: value, depth, key: false }
    }

    /// The error for a value `exp` cannot be read from.
    fn mismatch(&self, exp: &dyn Expected) -> JsSerdeError {
        match self.value {
            JsValue::Ref(id) => JsSerdeError::new(format!(
                "shared/circular references cannot be deserialized into {exp}: found a \
                 reference to object #{id}, which appears earlier in the value"
            )),
            other => JsSerdeError::new(format!(
                "invalid type: expected {exp}, found {}",
                describe(other)
            )),
        }
    }

    /// The string this value is, if it is one (lone surrogates replaced by U+FFFD). A
    /// `RegExp` reads as `"/source/flags"`.
    fn string(&self) -> Option<Cow<'a, str>> {
        match self.value {
            JsValue::String(s) | JsValue::StringObject(s) => Some(Cow::Borrowed(s)),
            JsValue::StringUtf16(u) => Some(Cow::Owned(String::from_utf16_lossy(u))),
            JsValue::RegExp { source, flags } => {
                Some(Cow::Owned(format!("/{source}/{}", JsValue::regexp_flags(*flags))))
            }
            _ => None,
        }
    }

    /// The string this `Map` key is, if it is one (to be parsed when read as a number or
    /// boolean).
    fn key_name(&self) -> Option<Cow<'a, str>> {
        if self.key {
            self.string()
        } else {
            None
        }
    }

    /// The bytes of an `ArrayBuffer` or a view.
    fn bytes(&self) -> Result<Option<&'a [u8]>, JsSerdeError> {
        match self.value {
            JsValue::ArrayBuffer(bytes) => Ok(Some(bytes)),
            JsValue::View { kind, buffer, byte_offset, byte_length } => match &**buffer {
                JsValue::ArrayBuffer(bytes) => {
                    let start = *byte_offset as usize;
                    let end = start.saturating_add(*byte_length as usize);
                    bytes.get(start..end).map(Some).ok_or_else(|| {
                        JsSerdeError::new(format!(
                            "{} bytes {start}..{end} lie outside its ArrayBuffer of {} bytes",
                            kind.name(),
                            bytes.len()
                        ))
                    })
                }
                JsValue::Ref(id) => Err(JsSerdeError::new(format!(
                    "a {} over a shared ArrayBuffer (reference to object #{id}) cannot be \
                     deserialized: shared/circular references are not supported",
                    kind.name()
                ))),
                other => Err(JsSerdeError::new(format!(
                    "a {} over a {} instead of an ArrayBuffer",
                    kind.name(),
                    other.type_name()
                ))),
            },
            _ => Ok(None),
        }
    }

    // The functions on the recursive path (`deserialize_*`, `visit_*`, the accessors) are kept
    // small, with anything bulky in separate functions: in unoptimized builds every local
    // takes stack space in every level.

    fn visit_items<'de, V, I>(self, items: I, visitor: V) -> Result<V::Value, JsSerdeError>
    where
        V: Visitor<'de>,
        I: Iterator<Item = Cow<'a, JsValue>>,
    {
        let mut seq = SeqAcc { items, depth: self.depth, index: 0 };
        let value = visitor.visit_seq(&mut seq)?;
        match seq.items.count() {
            0 => Ok(value),
            rest => Err(too_many_elements(seq.index, rest)),
        }
    }

    fn visit_array<'de, V: Visitor<'de>>(
        self,
        array: &'a JsArray,
        visitor: V,
    ) -> Result<V::Value, JsSerdeError> {
        let items = array.items.iter().map(|v| Cow::Borrowed(v.as_ref().unwrap_or(&NULL)));
        self.visit_items(items, visitor)
    }

    fn visit_set<'de, V: Visitor<'de>>(
        self,
        items: &'a [JsValue],
        visitor: V,
    ) -> Result<V::Value, JsSerdeError> {
        self.visit_items(items.iter().map(Cow::Borrowed), visitor)
    }

    fn visit_sparse<'de, V: Visitor<'de>>(
        self,
        length: u32,
        elements: &'a [(u32, JsValue)],
        visitor: V,
    ) -> Result<V::Value, JsSerdeError> {
        if length > MAX_SPARSE_LENGTH {
            return Err(JsSerdeError::new(format!(
                "sparse Array of length {length} is too long to read as a sequence (at most \
                 {MAX_SPARSE_LENGTH})"
            )));
        }
        let mut present: Vec<(u32, &JsValue)> = elements.iter().map(|(i, v)| (*i, v)).collect();
        present.sort_by_key(|(i, _)| *i);
        let mut present = present.into_iter().peekable();
        let items = (0..length).map(move |index| {
            let mut found = &NULL;
            while let Some(&(i, v)) = present.peek() {
                if i > index {
                    break;
                }
                if i == index {
                    found = v;
                }
                present.next();
            }
            Cow::Borrowed(found)
        });
        self.visit_items(items, visitor)
    }

    fn visit_view<'de, V: Visitor<'de>>(
        self,
        kind: ViewKind,
        visitor: V,
    ) -> Result<V::Value, JsSerdeError> {
        let bytes = self.bytes()?.unwrap_or_default();
        if bytes.len() % kind.element_size() as usize != 0 {
            return Err(JsSerdeError::new(format!(
                "a {} of {} bytes: not a whole number of elements",
                kind.name(),
                bytes.len()
            )));
        }
        self.visit_items(view_elements(kind, bytes), visitor)
    }

    fn visit_object<'de, V: Visitor<'de>>(
        self,
        props: &'a [(String, JsValue)],
        visitor: V,
    ) -> Result<V::Value, JsSerdeError> {
        let entries = props.iter().map(|(k, v)| (KeySrc::Name(k), Cow::Borrowed(v)));
        visitor.visit_map(MapAcc { entries, pending: None, depth: self.depth })
    }

    fn visit_js_map<'de, V: Visitor<'de>>(
        self,
        entries: &'a [(JsValue, JsValue)],
        visitor: V,
    ) -> Result<V::Value, JsSerdeError> {
        let entries = entries.iter().map(|(k, v)| (KeySrc::Value(k), Cow::Borrowed(v)));
        visitor.visit_map(MapAcc { entries, pending: None, depth: self.depth })
    }

    fn visit_error<'de, V: Visitor<'de>>(
        self,
        error: &'a JsError,
        visitor: V,
    ) -> Result<V::Value, JsSerdeError> {
        let text = |s: &Option<String>| s.clone().map(|s| Cow::Owned(JsValue::String(s)));
        let entries = [
            ("name", Some(Cow::Owned(JsValue::string(error.kind.name())))),
            ("message", text(&error.message)),
            ("stack", text(&error.stack)),
            ("cause", error.cause.as_ref().map(Cow::Borrowed)),
        ];
        let entries = entries.into_iter().filter_map(|(k, v)| Some((KeySrc::Name(k), v?)));
        visitor.visit_map(MapAcc { entries, pending: None, depth: self.depth })
    }

    /// Visits a sequence-like value; `Ok(Err(visitor))` if it is not one.
    fn try_seq<'de, V: Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<Result<V::Value, V>, JsSerdeError> {
        Ok(Ok(match self.value {
            JsValue::Array(a) => self.visit_array(a, visitor)?,
            JsValue::Set(items) => self.visit_set(items, visitor)?,
            JsValue::SparseArray { length, elements, .. } => {
                self.visit_sparse(*length, elements, visitor)?
            }
            JsValue::ArrayBuffer(_) => self.visit_view(ViewKind::Uint8, visitor)?,
            JsValue::View { kind, .. } => self.visit_view(*kind, visitor)?,
            _ => return Ok(Err(visitor)),
        }))
    }

    /// Visits a map-like value; `Ok(Err(visitor))` if it is not one.
    fn try_map<'de, V: Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<Result<V::Value, V>, JsSerdeError> {
        Ok(Ok(match self.value {
            JsValue::Object(props) => self.visit_object(props, visitor)?,
            JsValue::Map(entries) => self.visit_js_map(entries, visitor)?,
            JsValue::Error(e) => self.visit_error(e, visitor)?,
            _ => return Ok(Err(visitor)),
        }))
    }

    fn any_number<'de, V: Visitor<'de>>(n: f64, visitor: V) -> Result<V::Value, JsSerdeError> {
        if n.fract() == 0.0
            && n.abs() <= MAX_SAFE_INTEGER as f64
            && !(n == 0.0 && n.is_sign_negative())
        {
            if n >= 0.0 {
                visitor.visit_u64(n as u64)
            } else {
                visitor.visit_i64(n as i64)
            }
        } else {
            visitor.visit_f64(n)
        }
    }

    fn any_bigint<'de, V: Visitor<'de>>(
        &self,
        b: &BigInt,
        visitor: V,
    ) -> Result<V::Value, JsSerdeError> {
        if let Some(v) = b.to_u64() {
            visitor.visit_u64(v)
        } else if let Some(v) = b.to_i64() {
            visitor.visit_i64(v)
        } else if let Some(v) = b.to_u128() {
            visitor.visit_u128(v)
        } else if let Some(v) = b.to_i128() {
            visitor.visit_i128(v)
        } else {
            Err(JsSerdeError::new(format!(
                "{} does not fit in 128 bits; deserialize it into JsBigInt",
                describe(self.value)
            )))
        }
    }

    /// A wrapper type's value ([`JsDate`], …).
    fn special<'de, V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, JsSerdeError> {
        let inner = De { depth: self.depth.wrap()?, ..self };
        match (name, self.value) {
            (DATE, JsValue::Date(ms) | JsValue::Number(ms) | JsValue::NumberObject(ms)) => {
                visitor.visit_newtype_struct(F64Deserializer::new(*ms))
            }
            (DATE, _) => Err(self.mismatch(&"a Date")),
            (BIGINT, JsValue::BigInt(b) | JsValue::BigIntObject(b)) => {
                visitor.visit_newtype_struct(StringDeserializer::new(b.to_string()))
            }
            (BIGINT, JsValue::Number(n) | JsValue::NumberObject(n)) if n.fract() == 0.0 => {
                let n = BigInt::from_f64(*n).unwrap_or_default();
                visitor.visit_newtype_struct(StringDeserializer::new(n.to_string()))
            }
            (BIGINT, _) => Err(self.mismatch(&"a bigint")),
            (UNDEFINED, JsValue::Undefined | JsValue::Null) => {
                visitor.visit_newtype_struct(UnitDeserializer::new())
            }
            (UNDEFINED, _) => Err(self.mismatch(&"undefined")),
            (MAP, JsValue::Map(entries)) => visitor.visit_newtype_struct(PairsDe {
                pairs: entries.iter().map(|(k, v)| (KeySrc::Value(k), v)).collect(),
                depth: self.depth,
            }),
            (MAP, JsValue::Object(props)) => visitor.visit_newtype_struct(PairsDe {
                pairs: props.iter().map(|(k, v)| (KeySrc::Name(k), v)).collect(),
                depth: self.depth,
            }),
            (MAP, JsValue::Array(_) | JsValue::SparseArray { .. }) => {
                visitor.visit_newtype_struct(inner)
            }
            (MAP, _) => Err(self.mismatch(&"a Map")),
            (SET, JsValue::Set(_) | JsValue::Array(_) | JsValue::SparseArray { .. }) => {
                visitor.visit_newtype_struct(inner)
            }
            (SET, _) => Err(self.mismatch(&"a Set")),
            _ => visitor.visit_newtype_struct(inner),
        }
    }
}

fn too_many_elements(read: usize, rest: usize) -> JsSerdeError {
    JsSerdeError::new(format!("invalid length {}, expected {read} elements", read + rest))
}

impl<'de> de::Deserializer<'de> for De<'_> {
    type Error = JsSerdeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsSerdeError> {
        match self.value {
            JsValue::Undefined | JsValue::Null => visitor.visit_unit(),
            JsValue::Bool(b) | JsValue::BooleanObject(b) => visitor.visit_bool(*b),
            JsValue::Number(n) | JsValue::NumberObject(n) => De::any_number(*n, visitor),
            JsValue::BigInt(b) | JsValue::BigIntObject(b) => self.any_bigint(b, visitor),
            JsValue::String(s) | JsValue::StringObject(s) => visitor.visit_str(s),
            JsValue::StringUtf16(_) | JsValue::RegExp { .. } => match self.string() {
                Some(s) => visitor.visit_str(&s),
                None => Err(self.mismatch(&visitor)),
            },
            JsValue::Date(ms) => visitor.visit_f64(*ms),
            JsValue::Ref(_) => Err(self.mismatch(&visitor)),
            JsValue::Array(a) => self.visit_array(a, visitor),
            JsValue::Object(props) => self.visit_object(props, visitor),
            JsValue::Map(entries) => self.visit_js_map(entries, visitor),
            JsValue::Set(items) => self.visit_set(items, visitor),
            JsValue::SparseArray { length, elements, .. } => {
                self.visit_sparse(*length, elements, visitor)
            }
            JsValue::ArrayBuffer(_) => self.visit_view(ViewKind::Uint8, visitor),
            JsValue::View { kind, .. } => self.visit_view(*kind, visitor),
            JsValue::Error(e) => self.visit_error(e, visitor),
            // `De::new` reads a host object's state in its place.
            JsValue::HostObject(state) => De::new(state, self.depth).deserialize_any(visitor),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsSerdeError> {
        if let Some(name) = self.key_name() {
            return KeyDe(&name).deserialize_bool(visitor);
        }
        match self.value {
            JsValue::Bool(b) | JsValue::BooleanObject(b) => visitor.visit_bool(*b),
            _ => Err(self.mismatch(&visitor)),
        }
    }

    deserialize_integer! {
        deserialize_i8 => visit_i8(i8),
        deserialize_i16 => visit_i16(i16),
        deserialize_i32 => visit_i32(i32),
        deserialize_i64 => visit_i64(i64),
        deserialize_i128 => visit_i128(i128),
        deserialize_u8 => visit_u8(u8),
        deserialize_u16 => visit_u16(u16),
        deserialize_u32 => visit_u32(u32),
        deserialize_u64 => visit_u64(u64),
        deserialize_u128 => visit_u128(u128),
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsSerdeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsSerdeError> {
        if let Some(name) = self.key_name() {
            return KeyDe(&name).deserialize_f64(visitor);
        }
        match self.value {
            JsValue::Number(n) | JsValue::NumberObject(n) | JsValue::Date(n) => {
                visitor.visit_f64(*n)
            }
            JsValue::BigInt(b) | JsValue::BigIntObject(b) => {
                visitor.visit_f64(b.to_f64().unwrap_or(f64::NAN))
            }
            _ => Err(self.mismatch(&visitor)),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsSerdeError> {
        match self.string() {
            Some(s) => KeyDe(&s).deserialize_char(visitor),
            None => Err(self.mismatch(&visitor)),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsSerdeError> {
        if let Some(s) = self.string() {
            return visitor.visit_str(&s);
        }
        match key_string(self.value) {
            Some(s) if self.key => visitor.visit_string(s),
            _ => Err(self.mismatch(&visitor)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsSerdeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsSerdeError> {
        if let Some(bytes) = self.bytes()? {
            return visitor.visit_bytes(bytes);
        }
        match self.value {
            JsValue::Array(_) | JsValue::SparseArray { .. } | JsValue::Set(_) => {
                self.deserialize_seq(visitor)
            }
            _ => Err(self.mismatch(&visitor)),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsSerdeError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsSerdeError> {
        match self.value {
            JsValue::Undefined | JsValue::Null => visitor.visit_none(),
            _ => visitor.visit_some(De { depth: self.depth.wrap()?, ..self }),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsSerdeError> {
        match self.value {
            JsValue::Undefined | JsValue::Null => visitor.visit_unit(),
            _ => Err(self.mismatch(&visitor)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, JsSerdeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, JsSerdeError> {
        if let DATE | BIGINT | UNDEFINED | MAP | SET = name {
            return self.special(name, visitor);
        }
        if name == JSVALUE {
            // `JsValue`'s own `Deserialize`: the exact value, as typed JSON it reads back.
            let json = crate::to_json(self.whole);
            return visitor.visit_newtype_struct(json).map_err(JsSerdeError::new);
        }
        visitor.visit_newtype_struct(De { depth: self.depth.wrap()?, ..self })
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsSerdeError> {
        match self.try_seq(visitor)? {
            Ok(value) => Ok(value),
            Err(visitor) => Err(self.mismatch(&visitor)),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, JsSerdeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, JsSerdeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsSerdeError> {
        match self.try_map(visitor)? {
            Ok(value) => Ok(value),
            Err(visitor) => Err(self.mismatch(&visitor)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, JsSerdeError> {
        match self.try_map(visitor)? {
            Ok(value) => Ok(value),
            Err(visitor) => match self.value {
                JsValue::Array(_) | JsValue::SparseArray { .. } => self.deserialize_seq(visitor),
                _ => Err(self.mismatch(&visitor)),
            },
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, JsSerdeError> {
        let (variant, content) = match self.value {
            JsValue::Object(props) if props.len() == 1 => {
                (Cow::Borrowed(props[0].0.as_str()), Some(&props[0].1))
            }
            JsValue::Map(entries) if entries.len() == 1 => {
                match De::new(&entries[0].0, self.depth).string() {
                    Some(name) => (name, Some(&entries[0].1)),
                    None => return Err(self.enum_mismatch(&visitor)),
                }
            }
            _ => match self.string() {
                Some(name) => (name, None),
                None => return Err(self.enum_mismatch(&visitor)),
            },
        };
        let depth = if content.is_some() { self.depth.child()? } else { self.depth };
        visitor.visit_enum(EnumAcc { variant, content, depth })
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsSerdeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, JsSerdeError> {
        visitor.visit_unit()
    }
}

impl De<'_> {
    fn enum_mismatch(&self, exp: &dyn Expected) -> JsSerdeError {
        if let JsValue::Ref(_) = self.value {
            return self.mismatch(exp);
        }
        JsSerdeError::new(format!(
            "invalid type: expected {exp} as a string (unit variant) or an object with exactly \
             one key ({{ Variant: content }}), found {}",
            describe(self.value)
        ))
    }
}

/// A plain object's property name as a map key: parsed when read as a number or boolean.
struct KeyDe<'a>(&'a str);

macro_rules! parse_key {
    ($($method:ident => $visit:ident($ty:ty),)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsSerdeError> {
            match self.0.parse::<$ty>() {
                Ok(v) => visitor.$visit(v),
                Err(_) => Err(JsSerdeError::new(format_args!(
                    "invalid key: expected {}, found key {:?}",
                    &visitor as &dyn Expected,
                    truncate(self.0)
                ))),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for KeyDe<'_> {
    type Error = JsSerdeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsSerdeError> {
        visitor.visit_str(self.0)
    }

    parse_key! {
        deserialize_bool => visit_bool(bool),
        deserialize_i8 => visit_i8(i8),
        deserialize_i16 => visit_i16(i16),
        deserialize_i32 => visit_i32(i32),
        deserialize_i64 => visit_i64(i64),
        deserialize_i128 => visit_i128(i128),
        deserialize_u8 => visit_u8(u8),
        deserialize_u16 => visit_u16(u16),
        deserialize_u32 => visit_u32(u32),
        deserialize_u64 => visit_u64(u64),
        deserialize_u128 => visit_u128(u128),
        deserialize_f32 => visit_f32(f32),
        deserialize_f64 => visit_f64(f64),
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsSerdeError> {
        let mut chars = self.0.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => visitor.visit_char(c),
            _ => Err(JsSerdeError::new(format_args!(
                "invalid type: expected {}, found string {:?}",
                &visitor as &dyn Expected,
                truncate(self.0)
            ))),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsSerdeError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, JsSerdeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, JsSerdeError> {
        visitor.visit_enum(EnumAcc {
            variant: Cow::Borrowed(self.0),
            content: None,
            depth: Depth::ROOT,
        })
    }

    serde::forward_to_deserialize_any! {
        str string bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

/// Elements of an array-like value.
struct SeqAcc<I> {
    items: I,
    depth: Depth,
    index: usize,
}

impl<'de, 'a, I: Iterator<Item = Cow<'a, JsValue>>> de::SeqAccess<'de> for SeqAcc<I> {
    type Error = JsSerdeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, JsSerdeError> {
        let Some(item) = self.items.next() else { return Ok(None) };
        let index = self.index;
        self.index += 1;
        let depth = self.depth.child().map_err(|e| e.at_index(index))?;
        seed.deserialize(De::new(&item, depth)).map(Some).map_err(|e| e.at_index(index))
    }

    fn size_hint(&self) -> Option<usize> {
        match self.items.size_hint() {
            (low, Some(high)) if low == high => Some(low),
            _ => None,
        }
    }
}

/// Entries of a map-like value.
struct MapAcc<'a, I> {
    entries: I,
    pending: Option<(KeySrc<'a>, Cow<'a, JsValue>)>,
    depth: Depth,
}

impl<'de, 'a, I: Iterator<Item = (KeySrc<'a>, Cow<'a, JsValue>)>> de::MapAccess<'de>
    for MapAcc<'a, I>
{
    type Error = JsSerdeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, JsSerdeError> {
        let Some((key, value)) = self.entries.next() else { return Ok(None) };
        self.pending = Some((key, value));
        let depth = self.depth.child().map_err(|e| e.at(key.segment()))?;
        let read = match key {
            KeySrc::Name(name) => seed.deserialize(KeyDe(name)),
            KeySrc::Value(v) => {
                seed.deserialize(De { value: unwrap_host(v), whole: v, depth, key: true })
            }
        };
        read.map(Some).map_err(|e| e.at(key.segment()))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, JsSerdeError> {
        let (key, value) = self
            .pending
            .take()
            .ok_or_else(|| JsSerdeError::new("map value read before its key"))?;
        let depth = self.depth.child().map_err(|e| e.at(key.segment()))?;
        seed.deserialize(De::new(&value, depth)).map_err(|e| e.at(key.segment()))
    }

    fn size_hint(&self) -> Option<usize> {
        match self.entries.size_hint() {
            (low, Some(high)) if low == high => Some(low),
            _ => None,
        }
    }
}

/// `{ Variant: content }` or `"Variant"`.
struct EnumAcc<'a> {
    variant: Cow<'a, str>,
    content: Option<&'a JsValue>,
    depth: Depth,
}

impl<'de, 'a> de::EnumAccess<'de> for EnumAcc<'a> {
    type Error = JsSerdeError;
    type Variant = VariantAcc<'a>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, VariantAcc<'a>), JsSerdeError> {
        let variant = seed.deserialize(KeyDe(&self.variant))?;
        Ok((variant, VariantAcc { name: self.variant, content: self.content, depth: self.depth }))
    }
}

struct VariantAcc<'a> {
    name: Cow<'a, str>,
    content: Option<&'a JsValue>,
    depth: Depth,
}

impl VariantAcc<'_> {
    fn content(&self, kind: &str) -> Result<De<'_>, JsSerdeError> {
        match self.content {
            Some(value) => Ok(De::new(value, self.depth)),
            None => Err(JsSerdeError::new(format!(
                "variant {:?} is a {kind} variant: expected {{ {}: content }}, found the bare \
                 string",
                self.name, self.name
            ))),
        }
    }
}

impl<'de> de::VariantAccess<'de> for VariantAcc<'_> {
    type Error = JsSerdeError;

    fn unit_variant(self) -> Result<(), JsSerdeError> {
        match self.content {
            None | Some(JsValue::Null | JsValue::Undefined) => Ok(()),
            Some(other) => Err(JsSerdeError::new(format!(
                "variant {:?} is a unit variant: expected the string {:?} (or {{ {}: null }}), \
                 found content {}",
                self.name,
                self.name,
                self.name,
                describe(other)
            ))),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, JsSerdeError> {
        seed.deserialize(self.content("newtype")?).map_err(|e| e.at_key(self.name.as_ref()))
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, JsSerdeError> {
        de::Deserializer::deserialize_seq(self.content("tuple")?, visitor)
            .map_err(|e| e.at_key(self.name.as_ref()))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, JsSerdeError> {
        de::Deserializer::deserialize_struct(self.content("struct")?, "", fields, visitor)
            .map_err(|e| e.at_key(self.name.as_ref()))
    }
}

/// A `JsMap`'s content: a sequence of `[key, value]` pairs from a `Map` or plain object.
struct PairsDe<'a> {
    pairs: Vec<(KeySrc<'a>, &'a JsValue)>,
    depth: Depth,
}

impl<'de> de::Deserializer<'de> for PairsDe<'_> {
    type Error = JsSerdeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsSerdeError> {
        visitor.visit_seq(PairsAcc { pairs: self.pairs.into_iter(), depth: self.depth, index: 0 })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

struct PairsAcc<'a> {
    pairs: std::vec::IntoIter<(KeySrc<'a>, &'a JsValue)>,
    depth: Depth,
    index: usize,
}

impl<'de> de::SeqAccess<'de> for PairsAcc<'_> {
    type Error = JsSerdeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, JsSerdeError> {
        let Some((key, value)) = self.pairs.next() else { return Ok(None) };
        let index = self.index;
        self.index += 1;
        let depth = self.depth.child().map_err(|e| e.at_index(index))?;
        seed.deserialize(PairDe { key, value, depth }).map(Some).map_err(|e| e.at_index(index))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.pairs.len())
    }
}

/// One `[key, value]` pair of a `JsMap`.
struct PairDe<'a> {
    key: KeySrc<'a>,
    value: &'a JsValue,
    depth: Depth,
}

impl<'de> de::Deserializer<'de> for PairDe<'_> {
    type Error = JsSerdeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsSerdeError> {
        visitor.visit_seq(PairAcc { pair: Some(self), at_value: false })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

struct PairAcc<'a> {
    pair: Option<PairDe<'a>>,
    at_value: bool,
}

impl<'de> de::SeqAccess<'de> for PairAcc<'_> {
    type Error = JsSerdeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, JsSerdeError> {
        if self.at_value {
            let Some(pair) = self.pair.take() else { return Ok(None) };
            let read = seed.deserialize(De::new(pair.value, pair.depth));
            return read.map(Some).map_err(|e| e.at(pair.key.segment()));
        }
        let Some(pair) = &self.pair else { return Ok(None) };
        self.at_value = true;
        let read = match pair.key {
            KeySrc::Name(name) => seed.deserialize(KeyDe(name)),
            KeySrc::Value(v) => seed.deserialize(De {
                value: unwrap_host(v),
                whole: v,
                depth: pair.depth,
                key: true,
            }),
        };
        read.map(Some).map_err(|e| e.at(pair.key.segment()))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(match (&self.pair, self.at_value) {
            (None, _) => 0,
            (Some(_), true) => 1,
            (Some(_), false) => 2,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::fmt::Debug;

    use proptest::prelude::*;
    use serde::{Deserialize, Serialize};
    use serde_json::json;

    use super::*;
    use crate::{decode_v8, encode_v8, ErrorKind, JsError};

    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(x: &T) -> JsValue {
        let js = to_js(x).unwrap();
        assert_eq!(&from_js::<T>(&js).unwrap(), x, "via {js:?}");
        js
    }

    fn num(n: f64) -> JsValue {
        JsValue::Number(n)
    }

    fn big(n: impl Into<BigInt>) -> JsValue {
        JsValue::BigInt(n.into())
    }

    fn s(text: &str) -> JsValue {
        JsValue::from(text)
    }

    fn err<T: DeserializeOwned + Debug>(value: &JsValue) -> String {
        from_js::<T>(value).unwrap_err().to_string()
    }

    fn view(kind: ViewKind, bytes: Vec<u8>, offset: u32, len: u32) -> JsValue {
        JsValue::View {
            kind,
            buffer: Box::new(JsValue::ArrayBuffer(bytes)),
            byte_offset: offset,
            byte_length: len,
        }
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Unit;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Newtype(u32);

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Pair(u8, String);

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Point {
        y: i32,
        x: i32,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Shape {
        Empty,
        Circle(f64),
        Line(i32, i32),
        Rect { w: u32, h: u32 },
    }

    // ---- Rust → JavaScript, row by row ----

    /// Under `to_js` a `JsValue` hands itself over whole (nested ones too); a serializer of
    /// another kind running inside `to_js` (here `serde_json`, from a user's impl) still gets
    /// the typed JSON, and nothing is left behind on the thread.
    #[test]
    fn js_values_pass_through_to_js_whole_and_as_typed_json_elsewhere() {
        #[derive(Serialize)]
        struct Holder {
            a: JsValue,
            b: Vec<JsValue>,
        }
        let a = JsValue::Map(vec![(JsValue::Undefined, JsValue::BigInt(7.into()))]);
        let b = vec![JsValue::Number(-0.0), JsValue::object([("$x", JsValue::Ref(0))])];
        let got = to_js(&Holder { a: a.clone(), b: b.clone() }).unwrap();
        assert_eq!(got, JsValue::object([("a", a), ("b", JsValue::array(b))]));

        struct ViaJson(JsValue);
        impl Serialize for ViaJson {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let json = serde_json::to_value(&self.0).map_err(ser::Error::custom)?;
                json.serialize(s)
            }
        }
        let got = to_js(&ViaJson(JsValue::BigInt(5.into()))).unwrap();
        assert_eq!(got, JsValue::object([("$bigint", JsValue::from("5"))]));
        assert!(HANDOFF.with(|h| h.borrow().is_none()));
        assert_eq!(TO_JS_RUNNING.with(|n| n.get()), 0);
    }

    #[test]
    fn booleans_and_small_integers_are_numbers() {
        assert_eq!(round_trip(&true), JsValue::Bool(true));
        assert_eq!(round_trip(&-5i8), num(-5.0));
        assert_eq!(round_trip(&-300i16), num(-300.0));
        assert_eq!(round_trip(&i32::MIN), num(f64::from(i32::MIN)));
        assert_eq!(round_trip(&7i64), num(7.0));
        assert_eq!(round_trip(&255u8), num(255.0));
        assert_eq!(round_trip(&65535u16), num(65535.0));
        assert_eq!(round_trip(&u32::MAX), num(f64::from(u32::MAX)));
        assert_eq!(round_trip(&9u64), num(9.0));
        assert_eq!(round_trip(&-9i128), num(-9.0));
        assert_eq!(round_trip(&9u128), num(9.0));
    }

    #[test]
    fn integers_beyond_max_safe_integer_are_bigints() {
        let max_safe = (1i64 << 53) - 1;
        assert_eq!(round_trip(&max_safe), num(max_safe as f64));
        assert_eq!(round_trip(&-max_safe), num(-max_safe as f64));
        assert_eq!(round_trip(&(max_safe + 1)), big(max_safe + 1));
        assert_eq!(round_trip(&(-max_safe - 1)), big(-max_safe - 1));
        assert_eq!(round_trip(&(max_safe as u64)), num(max_safe as f64));
        assert_eq!(round_trip(&(1u64 << 53)), big(1u64 << 53));
        assert_eq!(round_trip(&u64::MAX), big(u64::MAX));
        assert_eq!(round_trip(&i64::MIN), big(i64::MIN));
        assert_eq!(round_trip(&i128::MIN), big(i128::MIN));
        assert_eq!(round_trip(&i128::MAX), big(i128::MAX));
        assert_eq!(round_trip(&u128::MAX), big(u128::MAX));
    }

    #[test]
    fn floats_are_numbers() {
        assert_eq!(round_trip(&1.5f64), num(1.5));
        assert_eq!(round_trip(&-0.0f64), num(-0.0));
        assert_eq!(round_trip(&f64::INFINITY), num(f64::INFINITY));
        assert_eq!(to_js(&f64::NAN).unwrap(), num(f64::NAN));
        assert!(from_js::<f64>(&num(f64::NAN)).unwrap().is_nan());
        // f32: the shortest decimal, as serde_json would write it.
        assert_eq!(round_trip(&0.1f32), num(0.1));
        assert_eq!(round_trip(&f32::MAX), num(3.4028235e38));
        assert_eq!(round_trip(&f32::MIN_POSITIVE), num(1.1754944e-38));
        assert_eq!(round_trip(&f32::NEG_INFINITY), num(f64::NEG_INFINITY));
        assert!(from_js::<f32>(&to_js(&f32::NAN).unwrap()).unwrap().is_nan());
    }

    #[test]
    fn chars_and_strings_are_strings() {
        assert_eq!(round_trip(&'é'), s("é"));
        assert_eq!(round_trip(&"héllo 🦕".to_owned()), s("héllo 🦕"));
        assert_eq!(to_js("borrowed").unwrap(), s("borrowed"));
    }

    #[test]
    fn bytes_are_uint8_arrays_but_vec_u8_is_an_array() {
        assert_eq!(round_trip(&JsBytes(vec![1, 2, 255])), JsValue::uint8_array(vec![1, 2, 255]));
        assert_eq!(round_trip(&JsBytes(vec![])), JsValue::uint8_array(vec![]));
        assert_eq!(round_trip(&vec![1u8, 2]), JsValue::array([num(1.0), num(2.0)]));
        assert_eq!(round_trip(&[7u8; 2]), JsValue::array([num(7.0), num(7.0)]));
    }

    #[test]
    fn none_unit_and_unit_structs_are_null() {
        assert_eq!(round_trip(&None::<i32>), JsValue::Null);
        assert_eq!(round_trip(&()), JsValue::Null);
        assert_eq!(round_trip(&Unit), JsValue::Null);
        assert_eq!(round_trip(&Some(3)), num(3.0));
        assert_eq!(round_trip(&Some(Some(true))), JsValue::Bool(true));
        assert_eq!(round_trip(&Newtype(4)), num(4.0));
    }

    #[test]
    fn sequences_and_tuples_are_arrays() {
        let expected = JsValue::array([num(1.0), num(2.0)]);
        assert_eq!(round_trip(&vec![1, 2]), expected);
        assert_eq!(round_trip(&(1, 2)), expected);
        assert_eq!(round_trip(&Pair(1, "a".into())), JsValue::array([num(1.0), s("a")]));
        assert_eq!(round_trip(&Vec::<String>::new()), JsValue::array([]));
        assert_eq!(
            round_trip(&std::collections::BTreeSet::from(["b", "a"].map(String::from))),
            JsValue::array([s("a"), s("b")])
        );
        assert_eq!(
            round_trip(&vec![vec![1], vec![]]),
            JsValue::array([JsValue::array([num(1.0)]), JsValue::array([])])
        );
    }

    #[test]
    fn maps_with_string_or_integer_keys_are_objects() {
        let m = BTreeMap::from([("b".to_owned(), 1), ("a".to_owned(), 2)]);
        assert_eq!(round_trip(&m), JsValue::object([("a", num(2.0)), ("b", num(1.0))]));
        let m = BTreeMap::from([(-1i64, true), (10, false)]);
        assert_eq!(
            round_trip(&m),
            JsValue::object([("-1", JsValue::Bool(true)), ("10", JsValue::Bool(false))])
        );
        // Keys beyond 2^53 are still decimal strings.
        let m = BTreeMap::from([(u64::MAX, 'x')]);
        assert_eq!(round_trip(&m), JsValue::object([("18446744073709551615", s("x"))]));
        // Unit variants are string keys.
        #[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
        enum Color {
            Red,
        }
        assert_eq!(
            round_trip(&BTreeMap::from([(Color::Red, 1)])),
            JsValue::object([("Red", num(1.0))])
        );
        assert_eq!(round_trip(&HashMap::<String, i32>::new()), JsValue::object::<String>([]));
    }

    #[test]
    fn maps_with_other_keys_are_maps() {
        let m = BTreeMap::from([((1, 2), "p".to_owned())]);
        assert_eq!(
            round_trip(&m),
            JsValue::Map(vec![(JsValue::array([num(1.0), num(2.0)]), s("p"))])
        );
        let m = BTreeMap::from([(false, 0), (true, 1)]);
        assert_eq!(
            round_trip(&m),
            JsValue::Map(vec![(JsValue::Bool(false), num(0.0)), (JsValue::Bool(true), num(1.0))])
        );
        // Keys that would collide as property names keep their identity in a Map.
        #[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(untagged)]
        enum Key {
            Int(i32),
            Text(String),
        }
        let m = BTreeMap::from([(Key::Int(1), 'a'), (Key::Text("1".into()), 'b')]);
        assert_eq!(round_trip(&m), JsValue::Map(vec![(num(1.0), s("a")), (s("1"), s("b"))]));
    }

    #[test]
    fn structs_are_objects_in_declaration_order() {
        assert_eq!(
            round_trip(&Point { y: 1, x: 2 }),
            JsValue::object([("y", num(1.0)), ("x", num(2.0))])
        );
    }

    #[test]
    fn enums_are_externally_tagged() {
        assert_eq!(round_trip(&Shape::Empty), s("Empty"));
        assert_eq!(round_trip(&Shape::Circle(1.5)), JsValue::object([("Circle", num(1.5))]));
        assert_eq!(
            round_trip(&Shape::Line(1, 2)),
            JsValue::object([("Line", JsValue::array([num(1.0), num(2.0)]))])
        );
        assert_eq!(
            round_trip(&Shape::Rect { w: 3, h: 4 }),
            JsValue::object([("Rect", JsValue::object([("w", num(3.0)), ("h", num(4.0))]))])
        );
    }

    #[test]
    fn serde_attributes_work_as_usual() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type", rename_all = "camelCase")]
        enum Event {
            SignedUp { user_name: String },
            LoggedOut,
        }
        assert_eq!(
            round_trip(&Event::SignedUp { user_name: "ada".into() }),
            JsValue::object([("type", s("signedUp")), ("user_name", s("ada"))])
        );
        assert_eq!(round_trip(&Event::LoggedOut), JsValue::object([("type", s("loggedOut"))]));

        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "t", content = "c")]
        enum Adjacent {
            A(u8),
        }
        assert_eq!(round_trip(&Adjacent::A(1)), JsValue::object([("t", s("A")), ("c", num(1.0))]));

        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        #[serde(untagged)]
        enum Loose {
            Num(f64),
            Text(String),
            List(Vec<Loose>),
        }
        let loose = Loose::List(vec![Loose::Num(1.0), Loose::Text("x".into())]);
        assert_eq!(round_trip(&loose), JsValue::array([num(1.0), s("x")]));

        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Flat {
            id: u32,
            #[serde(flatten)]
            rest: BTreeMap<String, serde_json::Value>,
            #[serde(skip_serializing_if = "Option::is_none", default)]
            gone: Option<u8>,
            #[serde(rename = "when")]
            date: JsDate,
            #[serde(default)]
            bytes: JsBytes,
        }
        let flat = Flat {
            id: 1,
            rest: BTreeMap::from([("k".into(), json!([1, "two"]))]),
            gone: None,
            date: JsDate(5.0),
            bytes: JsBytes(vec![9]),
        };
        assert_eq!(
            round_trip(&flat),
            JsValue::object([
                ("id", num(1.0)),
                ("k", JsValue::array([num(1.0), s("two")])),
                ("when", JsValue::Date(5.0)),
                ("bytes", JsValue::uint8_array(vec![9])),
            ])
        );
    }

    #[test]
    fn wrappers_make_javascript_types() {
        assert_eq!(round_trip(&JsDate(1.5e12)), JsValue::Date(1.5e12));
        assert!(matches!(to_js(&JsDate(f64::NAN)).unwrap(), JsValue::Date(ms) if ms.is_nan()));
        assert_eq!(round_trip(&JsBigInt(BigInt::from(7))), big(7));
        let huge: BigInt = "-123456789012345678901234567890123456789012345".parse().unwrap();
        assert_eq!(round_trip(&JsBigInt(huge.clone())), JsValue::BigInt(huge));
        assert_eq!(round_trip(&JsUndefined), JsValue::Undefined);
        // (`Some(JsUndefined)` is undefined too, which reads back as `None`.)
        assert_eq!(to_js(&Some(JsUndefined)).unwrap(), JsValue::Undefined);
        assert_eq!(
            round_trip(&JsMap(vec![(1, "a".to_owned()), (2, "b".to_owned())])),
            JsValue::Map(vec![(num(1.0), s("a")), (num(2.0), s("b"))])
        );
        assert_eq!(
            round_trip(&JsMap(vec![(Point { y: 0, x: 1 }, JsSet(vec![1]))])),
            JsValue::Map(vec![(
                JsValue::object([("y", num(0.0)), ("x", num(1.0))]),
                JsValue::Set(vec![num(1.0)])
            )])
        );
        assert_eq!(round_trip(&JsMap::<u8, u8>::default()), JsValue::Map(vec![]));
        assert_eq!(
            round_trip(&JsSet(vec!["a".to_owned(), "b".to_owned()])),
            JsValue::Set(vec![s("a"), s("b")])
        );
    }

    #[test]
    fn wrappers_in_serde_json() {
        assert_eq!(serde_json::to_value(JsDate(5.0)).unwrap(), json!(5.0));
        assert_eq!(serde_json::from_value::<JsDate>(json!(5)).unwrap(), JsDate(5.0));
        assert!(serde_json::from_value::<JsDate>(json!(null)).unwrap().0.is_nan());
        let date_nan = serde_json::to_string(&JsDate(f64::NAN)).unwrap();
        assert!(serde_json::from_str::<JsDate>(&date_nan).unwrap().0.is_nan());
        let n = JsBigInt("123456789012345678901234567890".parse().unwrap());
        assert_eq!(serde_json::to_value(&n).unwrap(), json!("123456789012345678901234567890"));
        assert_eq!(
            serde_json::from_value::<JsBigInt>(json!("123456789012345678901234567890")).unwrap(),
            n
        );
        assert_eq!(serde_json::from_value::<JsBigInt>(json!(-5)).unwrap(), JsBigInt((-5).into()));
        assert!(serde_json::from_value::<JsBigInt>(json!("1x")).is_err());
        assert_eq!(serde_json::to_value(JsUndefined).unwrap(), json!(null));
        assert_eq!(serde_json::from_value::<JsUndefined>(json!(null)).unwrap(), JsUndefined);
        let m = JsMap(vec![((1, 2), true)]);
        assert_eq!(serde_json::to_value(&m).unwrap(), json!([[[1, 2], true]]));
        assert_eq!(
            serde_json::from_value::<JsMap<(i32, i32), bool>>(json!([[[1, 2], true]])).unwrap(),
            m
        );
        assert_eq!(
            serde_json::from_value::<JsMap<String, u8>>(json!({"a": 1})).unwrap(),
            JsMap(vec![("a".to_owned(), 1)])
        );
        assert_eq!(serde_json::to_value(JsSet(vec![1, 2])).unwrap(), json!([1, 2]));
        assert_eq!(serde_json::from_value::<JsSet<u8>>(json!([1, 2])).unwrap(), JsSet(vec![1, 2]));
        assert_eq!(serde_json::to_value(JsBytes(vec![1, 2])).unwrap(), json!([1, 2]));
        assert_eq!(serde_json::from_value::<JsBytes>(json!([1, 2])).unwrap(), JsBytes(vec![1, 2]));
    }

    #[test]
    fn dates_and_system_time() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123) + Duration::from_micros(999);
        assert_eq!(JsDate::from(t), JsDate(1_700_000_000_123.0));
        assert_eq!(
            SystemTime::try_from(JsDate(1_700_000_000_123.0)).unwrap(),
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)
        );
        let before = UNIX_EPOCH - Duration::from_millis(1500) - Duration::from_micros(400);
        assert_eq!(JsDate::from(before), JsDate(-1500.0));
        assert_eq!(
            SystemTime::try_from(JsDate(-1500.0)).unwrap(),
            UNIX_EPOCH - Duration::from_millis(1500)
        );
        let tiny = UNIX_EPOCH - Duration::from_micros(400);
        assert!(JsDate::from(tiny).0.is_sign_positive(), "no -0 dates");
        assert_eq!(
            SystemTime::try_from(JsDate(0.5)).unwrap(),
            UNIX_EPOCH + Duration::from_micros(500)
        );
        assert!(SystemTime::try_from(JsDate(f64::NAN)).unwrap_err().to_string().contains("NaN"));
        assert!(SystemTime::try_from(JsDate(8.64e15 + 1.0)).is_err());
        assert!(SystemTime::try_from(JsDate(f64::INFINITY)).is_err());
        let far = UNIX_EPOCH + Duration::from_secs(9e12 as u64);
        assert!(JsDate::from(far).0.is_nan());
        // Through to_js / from_js.
        let js = to_js(&JsDate::from(t)).unwrap();
        assert_eq!(js, JsValue::Date(1_700_000_000_123.0));
        assert_eq!(from_js::<JsDate>(&js).unwrap(), JsDate(1_700_000_000_123.0));
    }

    // ---- JavaScript → Rust, row by row ----

    #[test]
    fn booleans() {
        assert!(from_js::<bool>(&JsValue::Bool(true)).unwrap());
        assert!(!from_js::<bool>(&JsValue::BooleanObject(false)).unwrap());
        assert_eq!(err::<bool>(&num(1.0)), "invalid type: expected a boolean, found number 1");
    }

    #[test]
    fn integers_from_numbers_and_bigints() {
        assert_eq!(from_js::<u8>(&num(255.0)).unwrap(), 255);
        assert_eq!(from_js::<i8>(&num(-128.0)).unwrap(), -128);
        assert_eq!(from_js::<u64>(&num(-0.0)).unwrap(), 0);
        assert_eq!(from_js::<i32>(&JsValue::NumberObject(-3.0)).unwrap(), -3);
        assert_eq!(from_js::<u64>(&num(2f64.powi(60))).unwrap(), 1 << 60);
        assert_eq!(from_js::<i64>(&num(-(2f64.powi(63)))).unwrap(), i64::MIN);
        assert_eq!(from_js::<u128>(&num(2f64.powi(127))).unwrap(), 1 << 127);
        assert_eq!(from_js::<i128>(&num(-(2f64.powi(127)))).unwrap(), i128::MIN);
        assert_eq!(from_js::<u16>(&big(65535)).unwrap(), 65535);
        assert_eq!(from_js::<u64>(&big(u64::MAX)).unwrap(), u64::MAX);
        assert_eq!(from_js::<i128>(&big(i128::MIN)).unwrap(), i128::MIN);
        assert_eq!(from_js::<u128>(&big(u128::MAX)).unwrap(), u128::MAX);
        assert_eq!(from_js::<i64>(&JsValue::BigIntObject((-7).into())).unwrap(), -7);
        assert_eq!(from_js::<u8>(&big(-0)).unwrap(), 0);
    }

    #[test]
    fn integer_errors_name_the_value_and_the_type() {
        assert_eq!(err::<u8>(&num(256.0)), "number 256 is out of range for u8");
        assert_eq!(err::<u32>(&num(-1.0)), "number -1 is out of range for u32");
        assert_eq!(err::<i32>(&num(1.5)), "number 1.5 is not an integer, expected i32");
        assert_eq!(err::<i64>(&num(f64::NAN)), "number NaN is not an integer, expected i64");
        assert_eq!(
            err::<u64>(&num(f64::INFINITY)),
            "number Infinity is not an integer, expected u64"
        );
        assert_eq!(
            err::<i64>(&num(2f64.powi(63))),
            "number 9223372036854776000 is out of range for i64"
        );
        assert_eq!(
            err::<u128>(&num(1e39)),
            "number 1000000000000000000000000000000000000000 is out of range for u128"
        );
        assert_eq!(err::<u64>(&big(-1)), "bigint -1n is out of range for u64");
        assert_eq!(
            err::<i64>(&big(u64::MAX)),
            "bigint 18446744073709551615n is out of range for i64"
        );
        let huge: BigInt = BigInt::from(7).pow(100);
        assert_eq!(
            err::<u128>(&JsValue::BigInt(huge)),
            "bigint 32344765096247579913…060001n (85 digits) is out of range for u128"
        );
        assert_eq!(err::<u8>(&s("1")), "invalid type: expected u8, found string \"1\"");
        assert_eq!(err::<i32>(&JsValue::Null), "invalid type: expected i32, found null");
    }

    #[test]
    fn floats_from_numbers_bigints_and_dates() {
        assert_eq!(from_js::<f64>(&num(2.5)).unwrap(), 2.5);
        assert_eq!(from_js::<f64>(&JsValue::NumberObject(2.5)).unwrap(), 2.5);
        assert_eq!(from_js::<f64>(&big(1u64 << 60)).unwrap(), 2f64.powi(60));
        assert_eq!(from_js::<f64>(&JsValue::BigIntObject(3.into())).unwrap(), 3.0);
        assert_eq!(from_js::<f64>(&JsValue::Date(1e12)).unwrap(), 1e12);
        assert_eq!(from_js::<f32>(&num(0.1)).unwrap(), 0.1f32);
        assert_eq!(err::<f64>(&s("1")), "invalid type: expected f64, found string \"1\"");
    }

    #[test]
    fn chars() {
        assert_eq!(from_js::<char>(&s("é")).unwrap(), 'é');
        assert_eq!(from_js::<char>(&JsValue::StringObject("x".into())).unwrap(), 'x');
        assert_eq!(
            err::<char>(&s("ab")),
            "invalid type: expected a character, found string \"ab\""
        );
        assert_eq!(err::<char>(&num(1.0)), "invalid type: expected a character, found number 1");
    }

    #[test]
    fn strings() {
        assert_eq!(from_js::<String>(&s("a")).unwrap(), "a");
        assert_eq!(from_js::<String>(&JsValue::StringObject("b".into())).unwrap(), "b");
        assert_eq!(
            from_js::<String>(&JsValue::StringUtf16(vec![0x61, 0xD800, 0x62])).unwrap(),
            "a\u{FFFD}b"
        );
        assert_eq!(from_js::<String>(&JsValue::regexp("a+", "gi")).unwrap(), "/a+/gi");
        assert_eq!(err::<String>(&num(1.0)), "invalid type: expected a string, found number 1");
        let long = "x".repeat(100);
        assert_eq!(
            err::<u8>(&s(&long)),
            format!("invalid type: expected u8, found string \"{}…\"", "x".repeat(40))
        );
    }

    #[test]
    fn bytes_from_buffers_views_and_arrays() {
        let bytes = |v: &JsValue| from_js::<JsBytes>(v).unwrap().0;
        assert_eq!(bytes(&JsValue::ArrayBuffer(vec![1, 2])), vec![1, 2]);
        assert_eq!(bytes(&JsValue::uint8_array(vec![3])), vec![3]);
        assert_eq!(bytes(&view(ViewKind::Float32, vec![0, 0, 128, 63], 0, 4)), vec![0, 0, 128, 63]);
        assert_eq!(bytes(&view(ViewKind::DataView, vec![1, 2, 3, 4], 1, 2)), vec![2, 3]);
        assert_eq!(bytes(&JsValue::array([num(4.0), num(5.0)])), vec![4, 5]);
        assert_eq!(
            err::<JsBytes>(&view(ViewKind::Uint8, vec![1], 0, 2)),
            "Uint8Array bytes 0..2 lie outside its ArrayBuffer of 1 bytes"
        );
        let shared = JsValue::View {
            kind: ViewKind::Uint8,
            buffer: Box::new(JsValue::Ref(0)),
            byte_offset: 0,
            byte_length: 0,
        };
        assert!(err::<JsBytes>(&shared).contains("shared ArrayBuffer (reference to object #0)"));
        assert_eq!(
            err::<JsBytes>(&num(1.0)),
            "invalid type: expected bytes (a Uint8Array), found number 1"
        );
        assert_eq!(
            err::<JsBytes>(&JsValue::array([num(256.0)])),
            "[0]: number 256 is out of range for u8"
        );
    }

    #[test]
    fn options_and_units() {
        assert_eq!(from_js::<Option<u8>>(&JsValue::Null).unwrap(), None);
        assert_eq!(from_js::<Option<u8>>(&JsValue::Undefined).unwrap(), None);
        assert_eq!(from_js::<Option<u8>>(&num(1.0)).unwrap(), Some(1));
        from_js::<()>(&JsValue::Undefined).unwrap();
        from_js::<Unit>(&JsValue::Null).unwrap();
        assert_eq!(err::<()>(&num(0.0)), "invalid type: expected unit, found number 0");
        #[derive(Debug, Deserialize)]
        struct Opt {
            #[allow(dead_code)]
            a: Option<u8>,
        }
        // A missing Option field is None, an undefined one too.
        assert!(from_js::<Opt>(&JsValue::object::<&str>([])).unwrap().a.is_none());
        assert!(from_js::<Opt>(&JsValue::object([("a", JsValue::Undefined)])).unwrap().a.is_none());
    }

    #[test]
    fn sequences_from_arrays_sets_and_typed_arrays() {
        let holes = JsValue::Array(JsArray {
            items: vec![Some(num(1.0)), None, Some(num(3.0))],
            properties: vec![("extra".into(), num(9.0))],
        });
        assert_eq!(from_js::<Vec<Option<u8>>>(&holes).unwrap(), vec![Some(1), None, Some(3)]);
        let sparse = JsValue::SparseArray {
            length: 5,
            elements: vec![(3, num(3.0)), (1, num(1.0))],
            properties: vec![],
        };
        assert_eq!(
            from_js::<Vec<Option<u8>>>(&sparse).unwrap(),
            vec![None, Some(1), None, Some(3), None]
        );
        let too_long =
            JsValue::SparseArray { length: (1 << 24) + 1, elements: vec![], properties: vec![] };
        assert_eq!(
            err::<Vec<Option<u8>>>(&too_long),
            "sparse Array of length 16777217 is too long to read as a sequence (at most 16777216)"
        );
        assert_eq!(from_js::<Vec<String>>(&JsValue::Set(vec![s("a")])).unwrap(), vec!["a"]);
        assert_eq!(
            from_js::<Vec<i16>>(&view(ViewKind::Int16, vec![0xff, 0xff, 2, 0], 0, 4)).unwrap(),
            vec![-1, 2]
        );
        assert_eq!(
            from_js::<Vec<f32>>(&view(ViewKind::Float32, vec![0, 0, 0, 0, 0, 0, 128, 63], 4, 4))
                .unwrap(),
            vec![1.0]
        );
        assert_eq!(
            from_js::<Vec<i64>>(&view(ViewKind::BigInt64, (-2i64).to_le_bytes().to_vec(), 0, 8))
                .unwrap(),
            vec![-2]
        );
        assert_eq!(
            from_js::<Vec<u64>>(&view(ViewKind::BigUint64, u64::MAX.to_le_bytes().to_vec(), 0, 8))
                .unwrap(),
            vec![u64::MAX]
        );
        assert_eq!(
            from_js::<Vec<f64>>(&view(
                ViewKind::Float16,
                vec![0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00],
                0,
                6
            ))
            .unwrap(),
            vec![1.0, -2.0, 2f64.powi(-24)]
        );
        assert_eq!(from_js::<Vec<u8>>(&JsValue::uint8_array(vec![5, 6])).unwrap(), vec![5, 6]);
        assert_eq!(from_js::<Vec<u8>>(&JsValue::ArrayBuffer(vec![7])).unwrap(), vec![7]);
        assert_eq!(
            err::<Vec<u8>>(&view(ViewKind::Float64, 1.5f64.to_le_bytes().to_vec(), 0, 8)),
            "[0]: number 1.5 is not an integer, expected u8"
        );
        assert_eq!(
            err::<Vec<u8>>(&s("ab")),
            "invalid type: expected a sequence, found string \"ab\""
        );
    }

    #[test]
    fn tuples_check_their_length() {
        let arr = JsValue::array([num(1.0), s("a")]);
        assert_eq!(from_js::<(u8, String)>(&arr).unwrap(), (1, "a".into()));
        assert_eq!(from_js::<Pair>(&arr).unwrap(), Pair(1, "a".into()));
        assert_eq!(err::<(u8,)>(&arr), "invalid length 2, expected 1 elements");
        assert_eq!(err::<(u8, String, bool)>(&arr), "invalid length 2, expected a tuple of size 3");
    }

    #[test]
    fn maps_from_objects_and_maps() {
        let obj = JsValue::object([("1", s("a")), ("20", s("b"))]);
        assert_eq!(
            from_js::<BTreeMap<u32, String>>(&obj).unwrap(),
            BTreeMap::from([(1, "a".into()), (20, "b".into())])
        );
        assert_eq!(
            from_js::<HashMap<String, String>>(&obj).unwrap(),
            HashMap::from([("1".into(), "a".into()), ("20".into(), "b".into())])
        );
        assert_eq!(
            from_js::<BTreeMap<bool, f64>>(&JsValue::object([("true", num(1.0))])).unwrap(),
            BTreeMap::from([(true, 1.0)])
        );
        assert_eq!(
            err::<BTreeMap<u32, String>>(&JsValue::object([("x", s("a"))])),
            "x: invalid key: expected u32, found key \"x\""
        );
        let map = JsValue::Map(vec![(num(1.0), s("a")), (big(2), s("b"))]);
        assert_eq!(
            from_js::<BTreeMap<u64, String>>(&map).unwrap(),
            BTreeMap::from([(1, "a".into()), (2, "b".into())])
        );
        // Map keys may be read as strings.
        assert_eq!(
            from_js::<BTreeMap<String, String>>(&map).unwrap(),
            BTreeMap::from([("1".into(), "a".into()), ("2".into(), "b".into())])
        );
        let map = JsValue::Map(vec![(JsValue::array([num(1.0), num(2.0)]), JsValue::Bool(true))]);
        assert_eq!(
            from_js::<BTreeMap<(u8, u8), bool>>(&map).unwrap(),
            BTreeMap::from([((1, 2), true)])
        );
        assert_eq!(
            err::<BTreeMap<String, bool>>(&map),
            "[<Array>]: invalid type: expected a string, found Array of length 2"
        );
        assert_eq!(
            err::<HashMap<String, u8>>(&JsValue::array([])),
            "invalid type: expected a map, found Array of length 0"
        );
    }

    #[test]
    fn structs_from_objects_maps_arrays_and_errors() {
        let expected = Point { y: 1, x: 2 };
        let obj = JsValue::object([("x", num(2.0)), ("y", num(1.0)), ("z", num(0.0))]);
        assert_eq!(from_js::<Point>(&obj).unwrap(), expected);
        let map = JsValue::Map(vec![(s("y"), num(1.0)), (s("x"), num(2.0))]);
        assert_eq!(from_js::<Point>(&map).unwrap(), expected);
        assert_eq!(from_js::<Point>(&JsValue::array([num(1.0), num(2.0)])).unwrap(), expected);
        assert_eq!(err::<Point>(&JsValue::object([("y", num(1.0))])), "missing field `x`");
        assert_eq!(err::<Point>(&num(1.0)), "invalid type: expected struct Point, found number 1");

        #[derive(Debug, PartialEq, Deserialize)]
        struct Failure {
            name: String,
            message: Option<String>,
            cause: Option<Box<Failure>>,
        }
        let error = JsValue::Error(Box::new(JsError {
            kind: ErrorKind::TypeError,
            message: Some("bad".into()),
            stack: Some("at x".into()),
            cause: Some(JsValue::Error(Box::default())),
        }));
        assert_eq!(
            from_js::<Failure>(&error).unwrap(),
            Failure {
                name: "TypeError".into(),
                message: Some("bad".into()),
                cause: Some(Box::new(Failure { name: "Error".into(), message: None, cause: None }))
            }
        );
    }

    #[test]
    fn enums_from_strings_and_single_key_objects() {
        assert_eq!(from_js::<Shape>(&s("Empty")).unwrap(), Shape::Empty);
        assert_eq!(
            from_js::<Shape>(&JsValue::object([("Empty", JsValue::Null)])).unwrap(),
            Shape::Empty
        );
        assert_eq!(
            from_js::<Shape>(&JsValue::object([("Circle", num(2.0))])).unwrap(),
            Shape::Circle(2.0)
        );
        assert_eq!(
            from_js::<Shape>(&JsValue::Map(vec![(s("Circle"), num(2.0))])).unwrap(),
            Shape::Circle(2.0)
        );
        assert_eq!(
            err::<Shape>(&s("Square")),
            "unknown variant `Square`, expected one of `Empty`, `Circle`, `Line`, `Rect`"
        );
        assert_eq!(
            err::<Shape>(&s("Circle")),
            "variant \"Circle\" is a newtype variant: expected { Circle: content }, found the \
             bare string"
        );
        assert_eq!(
            err::<Shape>(&JsValue::object([("Empty", num(1.0))])),
            "variant \"Empty\" is a unit variant: expected the string \"Empty\" (or { Empty: \
             null }), found content number 1"
        );
        assert_eq!(
            err::<Shape>(&JsValue::object([("Line", JsValue::array([num(1.0), s("x")]))])),
            "Line[1]: invalid type: expected i32, found string \"x\""
        );
        assert_eq!(
            err::<Shape>(&JsValue::object([("Rect", JsValue::object([("w", num(1.0))]))])),
            "Rect: missing field `h`"
        );
        let two_keys = JsValue::object([("Circle", num(1.0)), ("Empty", JsValue::Null)]);
        assert_eq!(
            err::<Shape>(&two_keys),
            "invalid type: expected enum Shape as a string (unit variant) or an object with \
             exactly one key ({ Variant: content }), found object"
        );
    }

    #[test]
    fn wrappers_from_javascript() {
        assert_eq!(from_js::<JsDate>(&JsValue::Date(3.0)).unwrap(), JsDate(3.0));
        assert_eq!(from_js::<JsDate>(&num(4.0)).unwrap(), JsDate(4.0));
        assert_eq!(
            err::<JsDate>(&s("2024")),
            "invalid type: expected a Date, found string \"2024\""
        );
        assert_eq!(from_js::<JsBigInt>(&big(-9)).unwrap(), JsBigInt((-9).into()));
        assert_eq!(
            from_js::<JsBigInt>(&JsValue::BigIntObject(9.into())).unwrap(),
            JsBigInt(9.into())
        );
        assert_eq!(from_js::<JsBigInt>(&num(1e20)).unwrap(), JsBigInt(10u128.pow(20).into()));
        assert_eq!(err::<JsBigInt>(&num(1.5)), "invalid type: expected a bigint, found number 1.5");
        assert_eq!(from_js::<JsUndefined>(&JsValue::Null).unwrap(), JsUndefined);
        assert_eq!(
            err::<JsUndefined>(&num(0.0)),
            "invalid type: expected undefined, found number 0"
        );
        let pairs = vec![("a".to_owned(), 1u8), ("b".to_owned(), 2)];
        let expected = JsMap(pairs);
        assert_eq!(
            from_js::<JsMap<String, u8>>(&JsValue::Map(vec![
                (s("a"), num(1.0)),
                (s("b"), num(2.0))
            ]))
            .unwrap(),
            expected
        );
        assert_eq!(
            from_js::<JsMap<String, u8>>(&JsValue::object([("a", num(1.0)), ("b", num(2.0))]))
                .unwrap(),
            expected
        );
        assert_eq!(
            from_js::<JsMap<String, u8>>(&JsValue::array([
                JsValue::array([s("a"), num(1.0)]),
                JsValue::array([s("b"), num(2.0)])
            ]))
            .unwrap(),
            expected
        );
        assert_eq!(
            from_js::<JsMap<u8, u8>>(&JsValue::object([("7", num(1.0))])).unwrap(),
            JsMap(vec![(7, 1)])
        );
        assert_eq!(
            err::<JsMap<String, u8>>(&JsValue::Map(vec![(s("a"), s("x"))])),
            "[0].a: invalid type: expected u8, found string \"x\""
        );
        assert_eq!(err::<JsMap<u8, u8>>(&num(1.0)), "invalid type: expected a Map, found number 1");
        assert_eq!(from_js::<JsSet<u8>>(&JsValue::Set(vec![num(1.0)])).unwrap(), JsSet(vec![1]));
        assert_eq!(from_js::<JsSet<u8>>(&JsValue::array([num(1.0)])).unwrap(), JsSet(vec![1]));
        assert_eq!(
            err::<JsSet<u8>>(&JsValue::object::<&str>([])),
            "invalid type: expected a Set, found object"
        );
    }

    // ---- deserialize_any ----

    #[test]
    fn any_maps_every_value_to_the_natural_data_model() {
        let any = |v: &JsValue| from_js::<serde_json::Value>(v).unwrap();
        assert_eq!(any(&JsValue::Undefined), json!(null));
        assert_eq!(any(&JsValue::Null), json!(null));
        assert_eq!(any(&JsValue::Bool(true)), json!(true));
        assert_eq!(any(&JsValue::BooleanObject(false)), json!(false));
        assert_eq!(any(&num(3.0)), json!(3));
        assert!(any(&num(3.0)).is_u64());
        assert!(any(&num(-3.0)).is_i64());
        assert_eq!(any(&num(2.5)), json!(2.5));
        assert_eq!(any(&num(-0.0)), json!(-0.0));
        assert!(any(&num(-0.0)).is_f64());
        assert_eq!(any(&num(2f64.powi(60))), json!(2f64.powi(60)));
        assert_eq!(any(&num(f64::NAN)), json!(null));
        assert_eq!(any(&JsValue::NumberObject(1.0)), json!(1));
        assert_eq!(any(&big(u64::MAX)), json!(u64::MAX));
        assert_eq!(any(&big(i64::MIN)), json!(i64::MIN));
        assert_eq!(any(&JsValue::BigIntObject(5.into())), json!(5));
        // serde_json::Value itself holds at most 64 bits.
        let e = from_js::<serde_json::Value>(&big(u128::MAX)).unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
        assert_eq!(from_js::<u128>(&big(u128::MAX)).unwrap(), u128::MAX);
        assert_eq!(
            err::<serde_json::Value>(&JsValue::BigInt(BigInt::from(2).pow(200))),
            "bigint 16069380442589902755…301376n (61 digits) does not fit in 128 bits; deserialize \
             it into JsBigInt"
        );
        assert_eq!(any(&s("x")), json!("x"));
        assert_eq!(any(&JsValue::StringObject("y".into())), json!("y"));
        assert_eq!(any(&JsValue::StringUtf16(vec![0xDC00])), json!("\u{FFFD}"));
        assert_eq!(
            any(&JsValue::object([("a", num(1.0)), ("b", JsValue::Undefined)])),
            json!({"a": 1, "b": null})
        );
        let holes =
            JsValue::Array(JsArray { items: vec![None, Some(num(1.0))], properties: vec![] });
        assert_eq!(any(&holes), json!([null, 1]));
        let sparse = JsValue::SparseArray {
            length: 3,
            elements: vec![(1, s("b"))],
            properties: vec![("p".into(), num(0.0))],
        };
        assert_eq!(any(&sparse), json!([null, "b", null]));
        assert_eq!(any(&JsValue::Set(vec![num(1.0), s("a")])), json!([1, "a"]));
        assert_eq!(
            any(&JsValue::Map(vec![(s("k"), num(1.0)), (num(2.0), s("v"))])),
            json!({"k": 1, "2": "v"})
        );
        assert_eq!(any(&JsValue::Date(1e12)), json!(1e12));
        assert_eq!(any(&JsValue::regexp("^a$", "gim")), json!("/^a$/gim"));
        assert_eq!(any(&JsValue::ArrayBuffer(vec![1, 2])), json!([1, 2]));
        assert_eq!(any(&JsValue::uint8_array(vec![3])), json!([3]));
        assert_eq!(any(&view(ViewKind::DataView, vec![1, 2], 1, 1)), json!([2]));
        assert_eq!(any(&view(ViewKind::Int8, vec![0xff], 0, 1)), json!([-1]));
        assert_eq!(any(&view(ViewKind::Uint8Clamped, vec![0xff], 0, 1)), json!([255]));
        assert_eq!(any(&view(ViewKind::Uint16, vec![1, 1], 0, 2)), json!([257]));
        assert_eq!(any(&view(ViewKind::Int32, (-5i32).to_le_bytes().to_vec(), 0, 4)), json!([-5]));
        assert_eq!(
            any(&view(ViewKind::Uint32, u32::MAX.to_le_bytes().to_vec(), 0, 4)),
            json!([u32::MAX])
        );
        assert_eq!(
            any(&view(ViewKind::Float64, 0.5f64.to_le_bytes().to_vec(), 0, 8)),
            json!([0.5])
        );
        assert_eq!(
            any(&view(ViewKind::BigInt64, i64::MIN.to_le_bytes().to_vec(), 0, 8)),
            json!([i64::MIN])
        );
        assert_eq!(
            any(&JsValue::Error(Box::new(JsError {
                kind: ErrorKind::RangeError,
                message: Some("m".into()),
                stack: None,
                cause: Some(num(1.0)),
            }))),
            json!({"name": "RangeError", "message": "m", "cause": 1})
        );
        assert_eq!(any(&JsValue::Error(Box::default())), json!({"name": "Error"}));
        assert_eq!(
            err::<serde_json::Value>(&JsValue::Ref(2)),
            "shared/circular references cannot be deserialized into any valid JSON value: found \
             a reference to object #2, which appears earlier in the value"
        );
    }

    // ---- references, depth, paths ----

    #[test]
    fn references_are_clear_errors() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Node {
            next: Option<Box<Node>>,
        }
        let circular = JsValue::object([("next", JsValue::Ref(0))]);
        assert_eq!(
            err::<Node>(&circular),
            "next: shared/circular references cannot be deserialized into struct Node: found \
             a reference to object #0, which appears earlier in the value"
        );
        assert_eq!(
            err::<Vec<u8>>(&JsValue::array([JsValue::Ref(0)])),
            "[0]: shared/circular references cannot be deserialized into u8: found a reference \
             to object #0, which appears earlier in the value"
        );
        assert!(err::<Shape>(&JsValue::Ref(1)).starts_with("shared/circular references"));
        assert!(err::<String>(&JsValue::Ref(1)).starts_with("shared/circular references"));
    }

    #[test]
    fn paths_point_at_the_offending_place() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct User {
            age: u8,
        }
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Db {
            users: Vec<User>,
            scores: HashMap<String, u8>,
        }
        let db = |users: JsValue, scores: JsValue| {
            JsValue::object([("users", users), ("scores", scores)])
        };
        let ok_user = JsValue::object([("age", num(1.0))]);
        let bad_user = JsValue::object([("age", num(-1.0))]);
        let e = from_js::<Db>(&db(
            JsValue::array([ok_user.clone(), bad_user]),
            JsValue::object::<&str>([]),
        ))
        .unwrap_err();
        assert_eq!(e.to_string(), "users[1].age: number -1 is out of range for u8");
        assert_eq!(e.path(), "users[1].age");
        assert_eq!(e.message(), "number -1 is out of range for u8");
        let e =
            from_js::<Db>(&db(JsValue::array([]), JsValue::object([("a b", s("x"))]))).unwrap_err();
        assert_eq!(e.path(), "scores[\"a b\"]");

        // Serialization errors carry paths too.
        struct Fails;
        impl Serialize for Fails {
            fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(ser::Error::custom("nope"))
            }
        }
        #[derive(Serialize)]
        struct Outer {
            list: Vec<Fails>,
        }
        let e = to_js(&Outer { list: vec![Fails] }).unwrap_err();
        assert_eq!(e.to_string(), "list[0]: nope");
        let e = to_js(&BTreeMap::from([(1, Fails)])).unwrap_err();
        assert_eq!(e.to_string(), "[1]: nope");
    }

    fn nested_json(levels: usize, innermost: serde_json::Value) -> serde_json::Value {
        (0..levels).fold(innermost, |v, _| serde_json::Value::Array(vec![v]))
    }

    fn nested_js(levels: usize, innermost: Option<JsValue>) -> JsValue {
        (0..levels)
            .fold(innermost, |v, _| {
                Some(JsValue::Array(JsArray {
                    items: v.into_iter().map(Some).collect(),
                    properties: vec![],
                }))
            })
            .unwrap_or(JsValue::Null)
    }

    #[test]
    fn depth_is_limited_like_the_v8_codec() {
        // The V8 codec needs more than a test thread's 2 MiB of stack at its maximum depth in
        // unoptimized builds; to_js and from_js alone do not (see the next test).
        let big_stack = std::thread::Builder::new().stack_size(64 << 20);
        big_stack.spawn(depth_is_limited_like_the_v8_codec_body).unwrap().join().unwrap();
    }

    #[test]
    fn deepest_values_fit_a_test_threads_stack() {
        let json = nested_json(509, json!({"a": [1]}));
        let js = to_js(&json).unwrap();
        assert_eq!(from_js::<serde_json::Value>(&js).unwrap(), json);
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        enum Tree {
            Leaf(Option<u8>),
            Node(Vec<Tree>),
        }
        let mut tree = Tree::Leaf(Some(1));
        for _ in 0..255 {
            tree = Tree::Node(vec![tree]);
        }
        assert_eq!(from_js::<Tree>(&to_js(&tree).unwrap()).unwrap(), tree);
        tree = Tree::Node(vec![tree]);
        assert!(to_js(&tree).is_err());
    }

    fn depth_is_limited_like_the_v8_codec_body() {
        // 511 arrays around a number: the number is at level 512, the deepest allowed.
        let js = to_js(&nested_json(511, json!(1))).unwrap();
        assert!(encode_v8(&js).is_ok());
        assert_eq!(from_js::<serde_json::Value>(&js).unwrap(), nested_json(511, json!(1)));
        // 512 nested arrays, the innermost empty: also level 512.
        let js = to_js(&nested_json(512, json!(null)).as_array().unwrap()[0]).unwrap();
        assert!(encode_v8(&js).is_ok());
        let deepest_empty = nested_json(511, json!([]));
        assert_eq!(to_js(&deepest_empty).unwrap(), nested_js(512, None));
        assert!(encode_v8(&nested_js(512, None)).is_ok());
        from_js::<serde_json::Value>(&nested_js(512, None)).unwrap();

        let too_deep = "value nested deeper than 512 levels";
        let e = to_js(&nested_json(512, json!(1))).unwrap_err();
        assert!(e.to_string().ends_with(too_deep), "{e}");
        assert!(encode_v8(&nested_js(512, Some(num(1.0)))).is_err());
        let e = from_js::<serde_json::Value>(&nested_js(512, Some(num(1.0)))).unwrap_err();
        assert!(e.to_string().ends_with(too_deep), "{e}");
        assert_eq!(e.message(), too_deep);
        assert_eq!(e.path(), "[0]".repeat(512));
        let e = from_js::<serde_json::Value>(&nested_js(513, None)).unwrap_err();
        assert_eq!(e.message(), too_deep);
        // A map at the bottom counts its keys and values as one level.
        let mut deep_map = JsValue::Map(vec![(num(1.0), num(2.0))]);
        for _ in 0..510 {
            deep_map = JsValue::array([deep_map]);
        }
        assert!(encode_v8(&deep_map).is_ok());
        let back = from_js::<serde_json::Value>(&deep_map).unwrap();
        assert_eq!(to_js(&back).unwrap(), {
            let mut v = JsValue::object([("1", num(2.0))]);
            for _ in 0..510 {
                v = JsValue::array([v]);
            }
            v
        });
        // JsMap's [key, value] pairs are not levels either.
        let mut wrapped = to_js(&JsMap(vec![(1, 2)])).unwrap();
        let mut nested_jsmap = serde_json::to_value(JsMap(vec![(1, 2)])).unwrap();
        for _ in 0..510 {
            wrapped = JsValue::array([wrapped]);
            nested_jsmap = json!([nested_jsmap]);
        }
        let _ = nested_jsmap;
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        #[serde(untagged)]
        enum Tree {
            Leaf(JsMap<u8, u8>),
            Node(Vec<Tree>),
        }
        let mut tree = Tree::Leaf(JsMap(vec![(1, 2)]));
        for _ in 0..510 {
            tree = Tree::Node(vec![tree]);
        }
        assert_eq!(to_js(&tree).unwrap(), wrapped);
    }

    #[test]
    fn recursive_types_cannot_overflow_the_stack() {
        // Deep in Rust, serialized: an error at level 513, not a stack overflow.
        #[derive(Debug, Serialize, Deserialize)]
        struct Node {
            children: Vec<Node>,
        }
        let mut node = Node { children: vec![] };
        for _ in 0..2000 {
            node = Node { children: vec![node] };
        }
        let e = to_js(&node).unwrap_err();
        assert_eq!(e.message(), "value nested deeper than 512 levels");
        // Dropping a 2000-deep Node recursively is fine on a test thread.

        // Newtypes and Options do not nest JavaScript values, but a recursive type can still
        // recurse without end on one value.
        #[derive(Debug, Deserialize, Serialize)]
        struct Loop(Option<Box<Loop>>);
        let e = from_js::<Loop>(&num(1.0)).unwrap_err();
        assert!(e.message().contains("2048 layers"), "{e}");
        let mut chain = Loop(None);
        for _ in 0..3000 {
            chain = Loop(Some(Box::new(chain)));
        }
        let e = to_js(&chain).unwrap_err();
        assert!(e.message().contains("2048 layers"), "{e}");
        // Unwind the chain iteratively so that dropping it cannot overflow either.
        while let Loop(Some(inner)) = chain {
            chain = *inner;
        }
        while let Some(n) = node.children.pop() {
            node = n;
        }
    }

    #[test]
    fn public_docs_repeat_the_module_docs_tables() {
        // The module is private: to_js and from_js carry copies of its tables, kept identical.
        let source = include_str!("serde.rs");
        let rows = |prefix: &str| -> Vec<String> {
            source
                .lines()
                .filter_map(|l| l.strip_prefix(prefix))
                .filter(|l| l.starts_with(" |"))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(rows("//!"), rows("///"));
        assert!(rows("//!").len() > 50);
    }

    #[test]
    fn error_type_traits() {
        fn assert_error<E: std::error::Error + ser::Error + de::Error + Send + Sync + 'static>() {}
        assert_error::<JsSerdeError>();
        let e = <JsSerdeError as de::Error>::custom("x");
        assert_eq!((e.to_string(), e.path()), ("x".to_owned(), String::new()));
    }

    // ---- round trips ----

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Inner {
        label: String,
        weight: Option<f32>,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Rich {
        small: u8,
        signed: i16,
        word: u32,
        long: i64,
        ulong: u64,
        wide: i128,
        uwide: u128,
        real: f64,
        single: f32,
        text: String,
        letter: char,
        flag: bool,
        maybe: Option<i32>,
        list: Vec<u16>,
        nested: Vec<Vec<String>>,
        by_name: HashMap<String, i64>,
        by_number: BTreeMap<u32, bool>,
        by_pair: BTreeMap<(i8, String), u8>,
        pair: (u8, String),
        shapes: Vec<Shape>,
        bytes: JsBytes,
        plain_bytes: Vec<u8>,
        date: JsDate,
        big: JsBigInt,
        set: JsSet<String>,
        map: JsMap<i32, Option<String>>,
        unit: (),
        undefined: JsUndefined,
        inner: Option<Box<Inner>>,
        inners: Vec<Inner>,
    }

    fn shape() -> impl Strategy<Value = Shape> {
        prop_oneof![
            Just(Shape::Empty),
            any::<f64>().prop_filter("not NaN", |f| !f.is_nan()).prop_map(Shape::Circle),
            (any::<i32>(), any::<i32>()).prop_map(|(a, b)| Shape::Line(a, b)),
            (any::<u32>(), any::<u32>()).prop_map(|(w, h)| Shape::Rect { w, h }),
        ]
    }

    fn inner() -> impl Strategy<Value = Inner> {
        (".{0,8}", proptest::option::of(any::<f32>().prop_filter("not NaN", |f| !f.is_nan())))
            .prop_map(|(label, weight)| Inner { label, weight })
    }

    prop_compose! {
        fn numbers()(
            small in any::<u8>(), signed in any::<i16>(), word in any::<u32>(),
            long in any::<i64>(), ulong in any::<u64>(), wide in any::<i128>(),
            uwide in any::<u128>(),
            real in any::<f64>().prop_filter("not NaN", |f| !f.is_nan()),
            single in any::<f32>().prop_filter("not NaN", |f| !f.is_nan()),
        ) -> (u8, i16, u32, i64, u64, i128, u128, f64, f32) {
            (small, signed, word, long, ulong, wide, uwide, real, single)
        }
    }

    prop_compose! {
        fn rich()(
            (small, signed, word, long, ulong, wide, uwide, real, single) in numbers(),
            text in ".{0,12}", letter in any::<char>(), flag in any::<bool>(),
            maybe in proptest::option::of(any::<i32>()),
            list in proptest::collection::vec(any::<u16>(), 0..5),
            nested in proptest::collection::vec(proptest::collection::vec(".{0,4}", 0..3), 0..3),
            by_name in proptest::collection::hash_map(".{0,6}", any::<i64>(), 0..4),
            by_number in proptest::collection::btree_map(any::<u32>(), any::<bool>(), 0..4),
            by_pair in proptest::collection::btree_map((any::<i8>(), ".{0,3}"), any::<u8>(), 0..3),
            pair in (any::<u8>(), ".{0,4}"),
            shapes in proptest::collection::vec(shape(), 0..4),
            bytes in proptest::collection::vec(any::<u8>(), 0..16),
            plain_bytes in proptest::collection::vec(any::<u8>(), 0..4),
            date in -8.64e15..=8.64e15f64,
            big in any::<i128>(),
            big_scale in 0u32..4,
            set in proptest::collection::vec(".{0,4}", 0..4),
            map in proptest::collection::vec((any::<i32>(), proptest::option::of(".{0,4}")), 0..4),
            inner in proptest::option::of(inner()),
            inners in proptest::collection::vec(inner(), 0..3),
        ) -> Rich {
            Rich {
                small, signed, word, long, ulong, wide, uwide, real, single, text, letter, flag,
                maybe, list, nested, by_name, by_number, by_pair, pair, shapes,
                bytes: JsBytes(bytes),
                plain_bytes,
                date: JsDate(date.trunc()),
                big: JsBigInt(BigInt::from(big).pow(big_scale)),
                set: JsSet(set),
                map: JsMap(map),
                unit: (),
                undefined: JsUndefined,
                inner: inner.map(Box::new),
                inners,
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn rich_structs_round_trip(x in rich()) {
            let js = to_js(&x).unwrap();
            prop_assert_eq!(&from_js::<Rich>(&js).unwrap(), &x);
            // And through the V8 wire format, as Deno would store it.
            let decoded = decode_v8(&encode_v8(&js).unwrap()).unwrap();
            prop_assert_eq!(&decoded, &js);
            prop_assert_eq!(from_js::<Rich>(&decoded).unwrap(), x);
        }

        #[test]
        fn json_values_round_trip(x in proptest::collection::vec(
            prop_oneof![
                Just(json!(null)),
                any::<bool>().prop_map(|b| json!(b)),
                any::<i64>().prop_map(|n| json!(n)),
                any::<u64>().prop_map(|n| json!(n)),
                any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
                ".{0,6}".prop_map(|s| json!(s)),
                proptest::collection::btree_map(".{0,4}", any::<i32>(), 0..3).prop_map(|m| json!(m)),
            ],
            0..6,
        )) {
            let value = serde_json::Value::Array(x);
            let back: serde_json::Value = from_js(&to_js(&value).unwrap()).unwrap();
            // Integral floats come back as integers, as JavaScript has one number type.
            let normalize = |v: &serde_json::Value| serde_json::to_string(v).unwrap()
                .parse::<serde_json::Value>().unwrap();
            let same = |a: &serde_json::Value, b: &serde_json::Value| match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) => x == y,
                _ => normalize(a) == normalize(b),
            };
            let (serde_json::Value::Array(a), serde_json::Value::Array(b)) = (&value, &back) else {
                unreachable!()
            };
            prop_assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                prop_assert!(same(x, y), "{} vs {}", x, y);
            }
        }
    }
}
