//! The typed model of JavaScript values.

use num_bigint::BigInt;

/// A JavaScript value of the kinds Deno KV can store (V8's structured-serialize subset).
///
/// Equality is structural, with JavaScript's `Object.is` for numbers (`NaN` equals `NaN`,
/// `-0` differs from `0`), and `Ref`s compared by id.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum JsValue {
    /// `undefined`.
    Undefined,
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A `number` (V8 writes small integers as Smis; they decode to `Number` all the same).
    Number(f64),
    /// A `bigint`.
    BigInt(BigInt),
    /// A `string` that is valid UTF-16 (almost all strings).
    String(String),
    /// A `string` holding lone surrogates, which Rust's `String` cannot: its UTF-16 code units.
    StringUtf16(Vec<u16>),
    /// A plain object: own enumerable properties in insertion order. V8 writes integer-like
    /// keys (`{1: x}`) as numbers; they decode to their decimal string here.
    Object(Vec<(String, JsValue)>),
    /// An `Array` as V8 writes dense ones (holes allowed).
    Array(JsArray),
    /// An `Array` as V8 writes sparse ones: its `length` and only the elements present, so
    /// that `a = []; a[1e9] = 1` costs one element, not a billion holes.
    SparseArray {
        /// The array's `length`.
        length: u32,
        /// Present elements, by index.
        elements: Vec<(u32, JsValue)>,
        /// Non-index properties, in insertion order.
        properties: Vec<(String, JsValue)>,
    },
    /// A `Map`: entries in insertion order.
    Map(Vec<(JsValue, JsValue)>),
    /// A `Set`: values in insertion order.
    Set(Vec<JsValue>),
    /// A `Date`: milliseconds since the Unix epoch (`NaN` for an invalid date).
    Date(f64),
    /// A `RegExp`.
    RegExp {
        /// The pattern (`source`).
        source: String,
        /// The flags, as V8's flag bits (`g` 1, `i` 2, `m` 4, `y` 8, `u` 16, `s` 32, `d` 128,
        /// `v` 256); see [`JsValue::regexp_flags`].
        flags: u32,
    },
    /// An `ArrayBuffer`.
    ArrayBuffer(Vec<u8>),
    /// A typed array (`Uint8Array`, …) or `DataView` over `buffer` (an `ArrayBuffer`, or a
    /// `Ref` to one already written). Offsets and lengths are in bytes.
    View {
        /// Which view.
        kind: ViewKind,
        /// The buffer: `ArrayBuffer(bytes)` or `Ref(id)` to a shared one.
        buffer: Box<JsValue>,
        /// Start of the view in the buffer, in bytes.
        byte_offset: u32,
        /// Length of the view, in bytes.
        byte_length: u32,
    },
    /// `new Boolean(b)`.
    BooleanObject(bool),
    /// `new Number(n)`.
    NumberObject(f64),
    /// `Object(bigint)`.
    BigIntObject(BigInt),
    /// `new String(s)`.
    StringObject(String),
    /// An `Error` (or `TypeError`, …).
    Error(Box<JsError>),
    /// A later occurrence of an object already written (shared or circular reference): the
    /// object's id in write order (see the module docs).
    Ref(u32),
}

/// An array: `length` slots (holes are `None`) plus any extra non-index properties.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JsArray {
    /// Elements; `None` is a hole (`[1, , 3]`). Its length is the array's `length`.
    pub items: Vec<Option<JsValue>>,
    /// Non-index properties (`arr.extra = 1`), in insertion order.
    pub properties: Vec<(String, JsValue)>,
}

/// Which kind of `ArrayBufferView`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ViewKind {
    /// `Int8Array`.
    Int8,
    /// `Uint8Array`.
    Uint8,
    /// `Uint8ClampedArray`.
    Uint8Clamped,
    /// `Int16Array`.
    Int16,
    /// `Uint16Array`.
    Uint16,
    /// `Int32Array`.
    Int32,
    /// `Uint32Array`.
    Uint32,
    /// `Float16Array`.
    Float16,
    /// `Float32Array`.
    Float32,
    /// `Float64Array`.
    Float64,
    /// `BigInt64Array`.
    BigInt64,
    /// `BigUint64Array`.
    BigUint64,
    /// `DataView`.
    DataView,
}

impl ViewKind {
    /// The JavaScript constructor name.
    pub fn name(self) -> &'static str {
        match self {
            ViewKind::Int8 => "Int8Array",
            ViewKind::Uint8 => "Uint8Array",
            ViewKind::Uint8Clamped => "Uint8ClampedArray",
            ViewKind::Int16 => "Int16Array",
            ViewKind::Uint16 => "Uint16Array",
            ViewKind::Int32 => "Int32Array",
            ViewKind::Uint32 => "Uint32Array",
            ViewKind::Float16 => "Float16Array",
            ViewKind::Float32 => "Float32Array",
            ViewKind::Float64 => "Float64Array",
            ViewKind::BigInt64 => "BigInt64Array",
            ViewKind::BigUint64 => "BigUint64Array",
            ViewKind::DataView => "DataView",
        }
    }

    /// Bytes per element (1 for `DataView`).
    pub fn element_size(self) -> u32 {
        match self {
            ViewKind::Int8 | ViewKind::Uint8 | ViewKind::Uint8Clamped | ViewKind::DataView => 1,
            ViewKind::Int16 | ViewKind::Uint16 | ViewKind::Float16 => 2,
            ViewKind::Int32 | ViewKind::Uint32 | ViewKind::Float32 => 4,
            ViewKind::Float64 | ViewKind::BigInt64 | ViewKind::BigUint64 => 8,
        }
    }

    /// All kinds, for iteration.
    pub const ALL: [ViewKind; 13] = [
        ViewKind::Int8,
        ViewKind::Uint8,
        ViewKind::Uint8Clamped,
        ViewKind::Int16,
        ViewKind::Uint16,
        ViewKind::Int32,
        ViewKind::Uint32,
        ViewKind::Float16,
        ViewKind::Float32,
        ViewKind::Float64,
        ViewKind::BigInt64,
        ViewKind::BigUint64,
        ViewKind::DataView,
    ];
}

/// Which `Error` constructor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// `Error`.
    #[default]
    Error,
    /// `EvalError`.
    EvalError,
    /// `RangeError`.
    RangeError,
    /// `ReferenceError`.
    ReferenceError,
    /// `SyntaxError`.
    SyntaxError,
    /// `TypeError`.
    TypeError,
    /// `URIError`.
    UriError,
}

impl ErrorKind {
    /// The constructor name.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Error => "Error",
            ErrorKind::EvalError => "EvalError",
            ErrorKind::RangeError => "RangeError",
            ErrorKind::ReferenceError => "ReferenceError",
            ErrorKind::SyntaxError => "SyntaxError",
            ErrorKind::TypeError => "TypeError",
            ErrorKind::UriError => "URIError",
        }
    }
}

/// An error object: what V8 serializes of it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JsError {
    /// Its constructor.
    pub kind: ErrorKind,
    /// `message`, if set.
    pub message: Option<String>,
    /// `stack`, if set.
    pub stack: Option<String>,
    /// `cause`, if set.
    pub cause: Option<JsValue>,
}

impl PartialEq for JsValue {
    fn eq(&self, other: &Self) -> bool {
        use JsValue::*;
        let same_num = |a: &f64, b: &f64| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
        match (self, other) {
            (Undefined, Undefined) | (Null, Null) => true,
            (Bool(a), Bool(b)) | (BooleanObject(a), BooleanObject(b)) => a == b,
            (Number(a), Number(b)) | (NumberObject(a), NumberObject(b)) | (Date(a), Date(b)) => {
                same_num(a, b)
            }
            (BigInt(a), BigInt(b)) | (BigIntObject(a), BigIntObject(b)) => a == b,
            (String(a), String(b)) | (StringObject(a), StringObject(b)) => a == b,
            (StringUtf16(a), StringUtf16(b)) => a == b,
            (Object(a), Object(b)) => a == b,
            (Array(a), Array(b)) => a == b,
            (
                SparseArray { length: l1, elements: e1, properties: p1 },
                SparseArray { length: l2, elements: e2, properties: p2 },
            ) => l1 == l2 && e1 == e2 && p1 == p2,
            (Map(a), Map(b)) => a == b,
            (Set(a), Set(b)) => a == b,
            (RegExp { source: s1, flags: f1 }, RegExp { source: s2, flags: f2 }) => {
                s1 == s2 && f1 == f2
            }
            (ArrayBuffer(a), ArrayBuffer(b)) => a == b,
            (
                View { kind: k1, buffer: b1, byte_offset: o1, byte_length: l1 },
                View { kind: k2, buffer: b2, byte_offset: o2, byte_length: l2 },
            ) => k1 == k2 && b1 == b2 && o1 == o2 && l1 == l2,
            (Error(a), Error(b)) => a == b,
            (Ref(a), Ref(b)) => a == b,
            _ => false,
        }
    }
}

/// RegExp flag letters and their V8 bits, in the order JavaScript prints them.
const REGEXP_FLAGS: [(char, u32); 8] =
    [('d', 128), ('g', 1), ('i', 2), ('m', 4), ('s', 32), ('u', 16), ('v', 256), ('y', 8)];

impl JsValue {
    /// A `Uint8Array` over a fresh buffer holding `bytes` (what Deno stores for a `Uint8Array`
    /// nested inside another value).
    pub fn uint8_array(bytes: Vec<u8>) -> JsValue {
        let len = bytes.len() as u32;
        JsValue::View {
            kind: ViewKind::Uint8,
            buffer: Box::new(JsValue::ArrayBuffer(bytes)),
            byte_offset: 0,
            byte_length: len,
        }
    }

    /// A string value.
    pub fn string(s: impl Into<String>) -> JsValue {
        JsValue::String(s.into())
    }

    /// A plain object from `(key, value)` pairs.
    pub fn object<K: Into<String>>(props: impl IntoIterator<Item = (K, JsValue)>) -> JsValue {
        JsValue::Object(props.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// A dense array.
    pub fn array(items: impl IntoIterator<Item = JsValue>) -> JsValue {
        JsValue::Array(JsArray { items: items.into_iter().map(Some).collect(), properties: vec![] })
    }

    /// A `RegExp` from a pattern and JavaScript flag letters (`"gi"`); unknown letters are
    /// ignored.
    pub fn regexp(source: impl Into<String>, flags: &str) -> JsValue {
        let bits = REGEXP_FLAGS
            .iter()
            .filter(|(c, _)| flags.contains(*c))
            .fold(0, |acc, (_, bit)| acc | bit);
        JsValue::RegExp { source: source.into(), flags: bits }
    }

    /// The flag letters of V8 regexp flag bits, as JavaScript prints them (`"gi"`).
    pub fn regexp_flags(bits: u32) -> String {
        REGEXP_FLAGS.iter().filter(|(_, bit)| bits & bit != 0).map(|(c, _)| *c).collect()
    }

    /// The JavaScript type name of this value, for messages (`"object"`, `"Map"`, …).
    pub fn type_name(&self) -> &'static str {
        match self {
            JsValue::Undefined => "undefined",
            JsValue::Null => "null",
            JsValue::Bool(_) => "boolean",
            JsValue::Number(_) => "number",
            JsValue::BigInt(_) => "bigint",
            JsValue::String(_) | JsValue::StringUtf16(_) => "string",
            JsValue::Object(_) => "object",
            JsValue::Array(_) | JsValue::SparseArray { .. } => "Array",
            JsValue::Map(_) => "Map",
            JsValue::Set(_) => "Set",
            JsValue::Date(_) => "Date",
            JsValue::RegExp { .. } => "RegExp",
            JsValue::ArrayBuffer(_) => "ArrayBuffer",
            JsValue::View { kind, .. } => kind.name(),
            JsValue::BooleanObject(_) => "Boolean",
            JsValue::NumberObject(_) => "Number",
            JsValue::BigIntObject(_) => "BigInt",
            JsValue::StringObject(_) => "String",
            JsValue::Error(_) => "Error",
            JsValue::Ref(_) => "reference",
        }
    }
}

impl From<&str> for JsValue {
    fn from(s: &str) -> Self {
        JsValue::String(s.to_owned())
    }
}
impl From<String> for JsValue {
    fn from(s: String) -> Self {
        JsValue::String(s)
    }
}
impl From<f64> for JsValue {
    fn from(n: f64) -> Self {
        JsValue::Number(n)
    }
}
impl From<bool> for JsValue {
    fn from(b: bool) -> Self {
        JsValue::Bool(b)
    }
}
impl From<BigInt> for JsValue {
    fn from(n: BigInt) -> Self {
        JsValue::BigInt(n)
    }
}
