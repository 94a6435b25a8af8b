//! A typed JSON rendering of JavaScript values, for humans and tools (printing, export,
//! import).
//!
//! **Why this format.** Plain data — `null`, booleans, finite numbers, strings, arrays and
//! objects — is rendered as the JSON anyone would write by hand, so that most stored values
//! read naturally and hand-written JSON imports as expected. Everything JSON cannot hold
//! (`undefined`, `NaN`, bigints, dates, maps, binary data, holes, shared references, …) is
//! rendered as a *type tag*: an object with a single key starting with `$` whose value holds
//! the data, e.g. `{"$bigint": "123"}`. Every tag reads back to exactly the value it came from.
//! So that a user's own keys are never mistaken for tags, an object with any key starting
//! with `$` is itself wrapped, as `{"$object": {...}}`; inside that wrapper keys are literal.
//! Rendering is lossless: [`from_json`]`(`[`to_json`]`(v)) == v` for every [`JsValue`] (with
//! `JsValue`'s `Object.is`-like equality), and `to_json(from_json(j)) == j` for every JSON
//! `j` that `to_json` produces.
//!
//! # Rendering
//!
//! | JavaScript value ([`JsValue`]) | JSON |
//! |---|---|
//! | `null` | `null` |
//! | `true` / `false` | `true` / `false` |
//! | finite number other than `-0` | the number (integers up to 2⁵³ without a fraction: `1`, not `1.0`) |
//! | `NaN`, `Infinity`, `-Infinity`, `-0` | `{"$number": "NaN"}`, `{"$number": "Infinity"}`, `{"$number": "-Infinity"}`, `{"$number": "-0"}` |
//! | `undefined` | `{"$undefined": null}` |
//! | bigint | `{"$bigint": "-123"}` (decimal string) |
//! | string | the string |
//! | string with lone surrogates ([`JsValue::StringUtf16`]) | `{"$string_utf16": [55296, 97]}` (UTF-16 code units) |
//! | plain object, no key starting with `$` | `{"a": 1, "b": 2}` |
//! | plain object with a key starting with `$` | `{"$object": {"$a": 1, "b": 2}}` |
//! | array without holes or extra properties | `[1, 2]` |
//! | array with holes or extra properties | `{"$array": {"items": [1, {"$hole": null}, 3], "properties": {"extra": 1}}}` |
//! | sparse array ([`JsValue::SparseArray`]) | `{"$sparse": {"length": 1000, "elements": [[7, "x"]], "properties": {}}}` |
//! | `Map` | `{"$map": [[key, value], ...]}` |
//! | `Set` | `{"$set": [value, ...]}` |
//! | `Date` | `{"$date": "2024-01-02T03:04:05.678Z"}` for whole milliseconds in years 0000–9999; otherwise `{"$date": ms}` with `ms` a number, or `"NaN"` (invalid date), `"Infinity"`, `"-Infinity"`, `"-0"` |
//! | `RegExp` | `{"$regexp": {"source": "a+b", "flags": "gi"}}` (`flags` is the V8 flag-bit number instead when it has bits no letter stands for) |
//! | `ArrayBuffer` | `{"$arraybuffer": "<base64>"}` |
//! | `Uint8Array` over a fresh buffer of exactly its bytes | `{"$bytes": "<base64>"}` |
//! | other typed arrays, `DataView`s | `{"$typedarray": {"kind": "Float32Array", "buffer": {"$arraybuffer": "<base64>"}, "byteOffset": 0, "byteLength": 8}}` (`buffer` may be a `{"$ref": id}`) |
//! | `new Boolean(b)` | `{"$boolean_object": true}` |
//! | `new Number(n)` | `{"$number_object": n}` (`n` as for `$number`'s payload: a number or `"NaN"`, …) |
//! | `Object(bigint)` | `{"$bigint_object": "123"}` |
//! | `new String(s)` | `{"$string_object": "s"}` |
//! | `Error` and subclasses | `{"$error": {"kind": "TypeError", "message": "...", "stack": "...", "cause": value}}` (`message`, `stack`, `cause` omitted when absent) |
//! | `Blob`, `File`, `DOMException`, `CryptoKey` ([`JsValue::HostObject`], see [`HostType`]) | `{"$blob": {"mimeType": "text/plain", "parts": [{"uuid": "…", "size": 3}], "size": 3}}`, `{"$file": {…, "name": "a.txt", "lastModified": 1700000000123}}`, `{"$domexception": {"message": "…", "name": "NotFoundError", "stack": "…"}}`, `{"$cryptokey": {"keyType": "secret", "extractable": false, "usages": {"$sparse": …}, "algorithm": {…}, "keyData": {…}}}`: the state object Deno stores, without its `type` (the tag says it), rendered as a plain object is (`{"$object": …}` if it must) |
//! | any other host object | `{"$host": state}` (the state object rendered as any value) |
//! | later occurrence of a shared / circular object ([`JsValue::Ref`]) | `{"$ref": id}` (see the [module docs](super)) |
//!
//! Base64 is the standard alphabet, padded. A *properties* payload (of `$object`, `$array`,
//! `$sparse`) is a JSON object, or — when a JSON object cannot hold the properties faithfully:
//! a key repeats (no JavaScript object does that), or serde_json is built without its
//! `preserve_order` feature and the keys are not in sorted order — an array of `[key, value]`
//! pairs. For the same reason a plain object whose keys a JSON object cannot hold in order is
//! rendered as `{"$object": [[key, value], ...]}`.
//!
//! Reading is strict (unknown tags and fields, a tag beside other keys, bad base64, a bigint
//! that is not `-?[0-9]+`, … are errors), and also accepts a few non-canonical spellings for
//! hand-written JSON: a plain number as `$number`'s payload, dates without milliseconds
//! (`"2024-01-02T03:04:05Z"`), flags in any order, a missing `properties` (of `$array`,
//! `$sparse`) or `kind` (of `$error`, meaning `"Error"`).
//!
//! Stored values ([`Stored`], through [`stored_to_json`] / [`stored_from_json`]; openkv's
//! `value_to_json` / `value_from_json` for its `Value`) add, at the top level only:
//! `U64(n)` ↔ `{"$kvu64": "n"}` (decimal string; a number is accepted too), and `Bytes(b)` ↔
//! `{"$bytes": "<base64>"}` (as Deno stores a top-level `Uint8Array`). A `V8` value is
//! rendered as the value it decodes to; in the rare case that is a `Uint8Array` which would
//! render as `$bytes`, it is written in the `$typedarray` form so that it reads back as `V8`.
//! Everything else reads back as `V8` (encoded by
//! [`encode_v8`], so its bytes may differ from the original ones while decoding to the same
//! value).
//!
//! Values nest at most [`MAX_DEPTH`] (512) levels deep, the V8 codec's limit, counted the same
//! way (a value inside an object inside an array is at level 3; a typed array and its
//! `$arraybuffer` or `$ref` buffer are one level); deeper input is an error, never a stack
//! overflow. Errors name the offending place as a path into the JSON (`$.users[3].age`).
//!
//! Through JSON *text*: serde_json prints every number so that it reads back exactly, but its
//! parser is only exact with its `float_roundtrip` feature (without it, a rare float comes back
//! one ulp off), and by default it refuses text nested deeper than 128 levels (a value level
//! can take up to four JSON levels, e.g. `{"$sparse": {"elements": [[i, v]]}}`); a reader of
//! deeply nested exports needs `Deserializer::disable_recursion_limit`, with this module's own
//! limit guarding the rest.
//!
//! ```
//! use openkv_js::{from_json, to_json, JsValue};
//! use serde_json::json;
//!
//! let value = JsValue::object([
//!     ("born", JsValue::Date(1_704_164_645_678.0)),
//!     ("id", JsValue::BigInt(7.into())),
//!     ("name", JsValue::from("Ada")),
//!     ("score", JsValue::Number(f64::NAN)),
//! ]);
//! let json = to_json(&value);
//! assert_eq!(
//!     json,
//!     json!({
//!         "born": {"$date": "2024-01-02T03:04:05.678Z"},
//!         "id": {"$bigint": "7"},
//!         "name": "Ada",
//!         "score": {"$number": "NaN"},
//!     })
//! );
//! assert_eq!(from_json(&json).unwrap(), value);
//!
//! // A user's own `$` keys are escaped, never mistaken for tags.
//! let odd = JsValue::object([("$bigint", JsValue::from("not a bigint"))]);
//! assert_eq!(to_json(&odd), json!({"$object": {"$bigint": "not a bigint"}}));
//! assert_eq!(from_json(&to_json(&odd)).unwrap(), odd);
//!
//! let err = from_json(&json!({"users": [{"age": {"$bigint": 12}}]})).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     r#"at $.users[0].age: "$bigint" must hold a decimal string like "-123", got 12"#
//! );
//! ```

use std::collections::HashSet;
use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use num_bigint::BigInt;
use serde_json::{Map, Number, Value as Json};

use crate::v8::MAX_DEPTH;
use crate::{
    decode_v8, encode_v8, host_type, ErrorKind, HostType, JsArray, JsError, JsValue, V8Error,
    ViewKind,
};

/// Why a JSON rendering could not be read, or a value could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    /// The JSON is not a valid rendering: `path` says where (`$.users[3].age`), `message`
    /// what is wrong, naming the tag involved.
    #[error("at {path}: {message}")]
    Invalid {
        /// Where in the JSON, as `$` followed by `.key`, `["odd key"]` and `[index]` steps.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The value nests deeper than 512 levels (the V8 codec's limit) and cannot be rendered.
    #[error("value nested deeper than {MAX_DEPTH} levels cannot be rendered as JSON")]
    TooDeep,
    /// A stored `Value::V8` could not be decoded.
    #[error("cannot decode the stored V8 value: {0}")]
    Decode(#[source] V8Error),
    /// The value read from JSON could not be V8-encoded.
    #[error("cannot V8-encode the value: {0}")]
    Encode(#[source] V8Error),
}

/// Renders a value as typed JSON.
///
/// Plain data (`null`, booleans, finite numbers, strings, arrays without holes, objects
/// without keys starting with `$`) is rendered as natural JSON; everything else as a type tag,
/// a single-key object such as `{"$bigint": "123"}`, `{"$undefined": null}`,
/// `{"$date": "2024-01-02T03:04:05.678Z"}` or `{"$map": [[key, value], ...]}`; an object with
/// keys starting with `$` as `{"$object": {...}}`. The `js::json` module documentation has
/// the full table. [`from_json`] reads it back to an equal value.
///
/// Never fails: a part of the value nested deeper than 512 levels (which [`decode_v8`] and
/// [`from_json`] output never have) is rendered as `{"$too_deep": null}`, which [`from_json`]
/// rejects. Use [`try_to_json`] to get an error instead.
pub fn to_json(value: &JsValue) -> Json {
    Renderer { depth: 0, too_deep: false }.render(value)
}

/// Renders a value as typed JSON like [`to_json`], or fails with [`JsonError::TooDeep`] if it
/// nests deeper than 512 levels.
pub fn try_to_json(value: &JsValue) -> Result<Json, JsonError> {
    let mut renderer = Renderer { depth: 0, too_deep: false };
    let json = renderer.render(value);
    if renderer.too_deep {
        Err(JsonError::TooDeep)
    } else {
        Ok(json)
    }
}

/// Reads a value back from its typed JSON rendering (or hand-written JSON in that format).
pub fn from_json(json: &Json) -> Result<JsValue, JsonError> {
    Parser { path: Vec::new(), depth: 0 }.parse(json)
}

/// A stored value as [`stored_to_json`] and [`stored_from_json`] see it: Deno KV's three value
/// encodings. openkv-core's `Value` has the same three variants (this crate sits below it, so
/// it cannot name it); `openkv::value_to_json` / `value_from_json` map one onto the other.
/// Deliberately exhaustive: the encodings are Deno's file format, and a fourth would be a
/// format change that every `match` should have to face.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored<B> {
    /// V8-serialized bytes (encoding 1).
    V8(B),
    /// Raw bytes (encoding 3).
    Bytes(B),
    /// A `Deno.KvU64` (encoding 2).
    U64(u64),
}

/// Renders a stored value: `{"$kvu64": "n"}`, `{"$bytes": "<base64>"}`, or the rendering of
/// the JavaScript value V8 bytes decode to.
pub fn stored_to_json(value: Stored<&[u8]>) -> Result<Json, JsonError> {
    match value {
        Stored::U64(n) => Ok(tag("$kvu64", Json::String(n.to_string()))),
        Stored::Bytes(bytes) => Ok(tag("$bytes", Json::String(BASE64.encode(bytes)))),
        Stored::V8(bytes) => {
            let js = decode_v8(bytes).map_err(JsonError::Decode)?;
            if let Some(bytes) = exact_uint8_bytes(&js) {
                // `$bytes` at the top level means `Stored::Bytes`: use the long form.
                return Ok(tag(
                    "$typedarray",
                    object([
                        ("kind", Json::from(ViewKind::Uint8.name())),
                        ("buffer", tag("$arraybuffer", Json::String(BASE64.encode(bytes)))),
                        ("byteOffset", Json::from(0)),
                        ("byteLength", Json::from(bytes.len())),
                    ]),
                ));
            }
            try_to_json(&js)
        }
    }
}

/// Reads a stored value back: a top-level `{"$kvu64": ...}` is `Stored::U64`, a top-level
/// `{"$bytes": ...}` is `Stored::Bytes`, anything else is read with [`from_json`] and
/// V8-encoded.
pub fn stored_from_json(json: &Json) -> Result<Stored<Vec<u8>>, JsonError> {
    let parser = Parser { path: Vec::new(), depth: 0 };
    if let Json::Object(map) = json {
        if map.len() == 1 {
            if let Some(payload) = map.get("$kvu64") {
                return parser.kvu64(payload).map(Stored::U64);
            }
            if let Some(payload) = map.get("$bytes") {
                return parser.base64("$bytes", payload).map(Stored::Bytes);
            }
        }
    }
    let js = from_json(json)?;
    encode_v8(&js).map(Stored::V8).map_err(JsonError::Encode)
}

// ---------------------------------------------------------------------------------------------
// Rendering

/// Whether serde_json's `Map` keeps insertion order (its `preserve_order` feature, which any
/// crate in the build may turn on).
fn map_preserves_order() -> bool {
    static PRESERVES: OnceLock<bool> = OnceLock::new();
    *PRESERVES.get_or_init(|| {
        let mut map = Map::new();
        map.insert("b".to_owned(), Json::Null);
        map.insert("a".to_owned(), Json::Null);
        map.keys().next().map(String::as_str) == Some("b")
    })
}

/// Whether a JSON object can hold these properties: keys unique and, unless the map keeps
/// insertion order, already sorted.
fn fits_json_object(props: &[(String, JsValue)]) -> bool {
    if map_preserves_order() {
        let mut seen = HashSet::with_capacity(props.len());
        props.iter().all(|(k, _)| seen.insert(k.as_str()))
    } else {
        props.windows(2).all(|w| w[0].0 < w[1].0)
    }
}

fn tag(name: &str, payload: Json) -> Json {
    let mut map = Map::with_capacity(1);
    map.insert(name.to_owned(), payload);
    Json::Object(map)
}

fn object<const N: usize>(fields: [(&str, Json); N]) -> Json {
    Json::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// A number as plain JSON, if JSON can hold it (finite, not `-0`).
fn plain_number(n: f64) -> Option<Json> {
    const MAX_SAFE: f64 = 9_007_199_254_740_992.0; // 2^53
    if !n.is_finite() || (n == 0.0 && n.is_sign_negative()) {
        None
    } else if n.fract() == 0.0 && n.abs() <= MAX_SAFE {
        Some(Json::from(n as i64))
    } else {
        Number::from_f64(n).map(Json::Number)
    }
}

/// A number as the payload of `$number`, `$number_object` or `$date`.
fn number_payload(n: f64) -> Json {
    plain_number(n).unwrap_or_else(|| {
        Json::from(if n.is_nan() {
            "NaN"
        } else if n == f64::INFINITY {
            "Infinity"
        } else if n == f64::NEG_INFINITY {
            "-Infinity"
        } else {
            "-0"
        })
    })
}

/// The bytes of a `Uint8Array` over a fresh buffer of exactly its bytes (rendered `$bytes`).
fn exact_uint8_bytes(value: &JsValue) -> Option<&[u8]> {
    match value {
        JsValue::View { kind: ViewKind::Uint8, buffer, byte_offset: 0, byte_length } => {
            match buffer.as_ref() {
                JsValue::ArrayBuffer(bytes) if bytes.len() as u64 == u64::from(*byte_length) => {
                    Some(bytes)
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// Milliseconds of 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z.
const ISO_MIN_MS: f64 = -62_167_219_200_000.0;
const ISO_MAX_MS: f64 = 253_402_300_799_999.0;
const MS_PER_DAY: i64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn date_payload(ms: f64) -> Json {
    let whole = ms.fract() == 0.0 && !(ms == 0.0 && ms.is_sign_negative());
    if !(whole && (ISO_MIN_MS..=ISO_MAX_MS).contains(&ms)) {
        return number_payload(ms);
    }
    let ms = ms as i64;
    let (days, in_day) = (ms.div_euclid(MS_PER_DAY), ms.rem_euclid(MS_PER_DAY));
    let (y, m, d) = civil_from_days(days);
    Json::String(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    ))
}

/// Milliseconds of `YYYY-MM-DDTHH:MM:SS.sssZ` or `YYYY-MM-DDTHH:MM:SSZ`, if valid.
fn parse_iso_date(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        digits
            .iter()
            .try_fold(0i64, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0')))
    };
    let ms = match b.len() {
        24 if b[19] == b'.' && b[23] == b'Z' => num(20..23)?,
        20 if b[19] == b'Z' => 0,
        _ => return None,
    };
    if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    if civil_from_days(days) != (y, mo, d) {
        return None; // February 30 and the like
    }
    Some((days * MS_PER_DAY + ((h * 60 + mi) * 60 + sec) * 1000 + ms) as f64)
}

/// RegExp flags: the letters when every bit has one, else the number.
fn regexp_flags_payload(bits: u32) -> Json {
    let letters = JsValue::regexp_flags(bits);
    match JsValue::regexp("", &letters) {
        JsValue::RegExp { flags, .. } if flags == bits => Json::String(letters),
        _ => Json::from(bits),
    }
}

/// A value JSON holds without recursion (no nested values), rendered; `None` for the others.
#[inline(never)]
fn render_leaf(value: &JsValue) -> Option<Json> {
    let base64 = |bytes: &[u8]| Json::String(BASE64.encode(bytes));
    Some(match value {
        JsValue::Undefined => tag("$undefined", Json::Null),
        JsValue::Null => Json::Null,
        JsValue::Bool(b) => Json::Bool(*b),
        JsValue::Number(n) => {
            plain_number(*n).unwrap_or_else(|| tag("$number", number_payload(*n)))
        }
        JsValue::BigInt(n) => tag("$bigint", Json::String(n.to_string())),
        JsValue::String(s) => Json::String(s.clone()),
        JsValue::StringUtf16(units) => {
            tag("$string_utf16", units.iter().map(|&u| Json::from(u)).collect())
        }
        JsValue::Date(ms) => tag("$date", date_payload(*ms)),
        JsValue::RegExp { source, flags } => tag(
            "$regexp",
            object([
                ("source", Json::String(source.clone())),
                ("flags", regexp_flags_payload(*flags)),
            ]),
        ),
        JsValue::ArrayBuffer(bytes) => tag("$arraybuffer", base64(bytes)),
        JsValue::BooleanObject(b) => tag("$boolean_object", Json::Bool(*b)),
        JsValue::NumberObject(n) => tag("$number_object", number_payload(*n)),
        JsValue::BigIntObject(n) => tag("$bigint_object", Json::String(n.to_string())),
        JsValue::StringObject(s) => tag("$string_object", Json::String(s.clone())),
        JsValue::Ref(id) => tag("$ref", Json::from(*id)),
        JsValue::View { .. } => tag("$bytes", base64(exact_uint8_bytes(value)?)),
        JsValue::Object(_)
        | JsValue::Array(_)
        | JsValue::SparseArray { .. }
        | JsValue::Map(_)
        | JsValue::Set(_)
        | JsValue::Error(_)
        | JsValue::HostObject(_) => return None,
    })
}

/// Renders values that hold values. Every function on the recursive path keeps its stack
/// frame small (leaves are rendered by [`render_leaf`]), so that [`MAX_DEPTH`] levels fit in a
/// 2 MiB thread stack even in debug builds.
struct Renderer {
    depth: usize,
    too_deep: bool,
}

impl Renderer {
    fn render(&mut self, value: &JsValue) -> Json {
        if self.depth >= MAX_DEPTH {
            self.too_deep = true;
            return tag("$too_deep", Json::Null);
        }
        self.depth += 1;
        let json = match render_leaf(value) {
            Some(json) => json,
            None => crate::v8::grow_stack(|| self.render_container(value)),
        };
        self.depth -= 1;
        json
    }

    #[inline(never)]
    fn render_container(&mut self, value: &JsValue) -> Json {
        match value {
            JsValue::Object(props) => self.object(props),
            JsValue::Array(array) => self.array(array),
            JsValue::SparseArray { length, elements, properties } => {
                self.sparse(*length, elements, properties)
            }
            JsValue::Map(entries) => self.map(entries),
            JsValue::Set(values) => tag("$set", values.iter().map(|v| self.render(v)).collect()),
            JsValue::View { kind, buffer, byte_offset, byte_length } => {
                self.view(*kind, buffer, *byte_offset, *byte_length)
            }
            JsValue::Error(error) => self.error(error),
            JsValue::HostObject(state) => self.host(state),
            // Rendered by `render_leaf`.
            _ => Json::Null,
        }
    }

    #[inline(never)]
    fn props(&mut self, props: &[(String, JsValue)]) -> Json {
        if fits_json_object(props) {
            Json::Object(props.iter().map(|(k, v)| (k.clone(), self.render(v))).collect())
        } else {
            Json::Array(
                props
                    .iter()
                    .map(|(k, v)| Json::Array(vec![k.clone().into(), self.render(v)]))
                    .collect(),
            )
        }
    }

    #[inline(never)]
    fn object(&mut self, props: &[(String, JsValue)]) -> Json {
        if props.iter().all(|(k, _)| !k.starts_with('$')) && fits_json_object(props) {
            self.props(props)
        } else {
            tag("$object", self.props(props))
        }
    }

    #[inline(never)]
    fn array(&mut self, JsArray { items, properties }: &JsArray) -> Json {
        if properties.is_empty() && items.iter().all(Option::is_some) {
            return Json::Array(items.iter().flatten().map(|v| self.render(v)).collect());
        }
        let items = items
            .iter()
            .map(|item| match item {
                Some(v) => self.render(v),
                None => tag("$hole", Json::Null),
            })
            .collect();
        let properties = self.props(properties);
        tag("$array", object([("items", items), ("properties", properties)]))
    }

    #[inline(never)]
    fn sparse(
        &mut self,
        length: u32,
        elements: &[(u32, JsValue)],
        properties: &[(String, JsValue)],
    ) -> Json {
        let elements = elements
            .iter()
            .map(|(i, v)| Json::Array(vec![Json::from(*i), self.render(v)]))
            .collect();
        let properties = self.props(properties);
        tag(
            "$sparse",
            object([
                ("length", Json::from(length)),
                ("elements", elements),
                ("properties", properties),
            ]),
        )
    }

    #[inline(never)]
    fn map(&mut self, entries: &[(JsValue, JsValue)]) -> Json {
        tag(
            "$map",
            entries
                .iter()
                .map(|(k, v)| Json::Array(vec![self.render(k), self.render(v)]))
                .collect(),
        )
    }

    /// A view that is not `$bytes`.
    #[inline(never)]
    fn view(
        &mut self,
        kind: ViewKind,
        buffer: &JsValue,
        byte_offset: u32,
        byte_length: u32,
    ) -> Json {
        // Like the V8 codec, a view and its leaf buffer count as one level.
        let buffer = match buffer {
            JsValue::ArrayBuffer(_) | JsValue::Ref(_) => render_leaf(buffer).unwrap_or_default(),
            other => self.render(other),
        };
        tag(
            "$typedarray",
            object([
                ("kind", Json::from(kind.name())),
                ("buffer", buffer),
                ("byteOffset", Json::from(byte_offset)),
                ("byteLength", Json::from(byte_length)),
            ]),
        )
    }

    /// `{"$blob": {…}}` and the other known classes: the state's properties after `type`;
    /// `{"$host": state}` for anything else (an unknown class, a `type` that repeats).
    #[inline(never)]
    fn host(&mut self, state: &JsValue) -> Json {
        if let (Some(class), JsValue::Object(props)) = (host_type(state), state) {
            let rest = &props[1..];
            if rest.iter().all(|(k, _)| k != "type") {
                // The state object is a level of its own, as in the V8 codec.
                if self.depth >= MAX_DEPTH {
                    self.too_deep = true;
                    return tag("$too_deep", Json::Null);
                }
                self.depth += 1;
                let payload = self.object(rest);
                self.depth -= 1;
                return tag(class.json_tag(), payload);
            }
        }
        tag("$host", self.render(state))
    }

    #[inline(never)]
    fn error(&mut self, error: &JsError) -> Json {
        let mut map = Map::new();
        map.insert("kind".to_owned(), Json::from(error.kind.name()));
        if let Some(message) = &error.message {
            map.insert("message".to_owned(), Json::String(message.clone()));
        }
        if let Some(stack) = &error.stack {
            map.insert("stack".to_owned(), Json::String(stack.clone()));
        }
        if let Some(cause) = &error.cause {
            map.insert("cause".to_owned(), self.render(cause));
        }
        tag("$error", Json::Object(map))
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

/// The error constructors, for reading `kind` by name.
const ERROR_KINDS: [ErrorKind; 7] = [
    ErrorKind::Error,
    ErrorKind::EvalError,
    ErrorKind::RangeError,
    ErrorKind::ReferenceError,
    ErrorKind::SyntaxError,
    ErrorKind::TypeError,
    ErrorKind::UriError,
];

const PROPS_EXPECTED: &str = "an object or an array of [key, value] pairs";

const ESCAPE_HINT: &str = r#"an object with keys starting with "$" is written {"$object": {...}}"#;

/// One step of a path into the JSON.
enum Step<'j> {
    Key(&'j str),
    Index(usize),
}

/// A short description of a JSON value, for messages.
fn describe(json: &Json) -> String {
    match json {
        Json::Null => "null".to_owned(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => n.to_string(),
        Json::String(s) if s.chars().count() <= 40 => format!("{s:?}"),
        Json::String(s) => format!("{:?}…", s.chars().take(40).collect::<String>()),
        Json::Array(_) => "an array".to_owned(),
        Json::Object(_) => "an object".to_owned(),
    }
}

fn is_js_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

struct Parser<'j> {
    path: Vec<Step<'j>>,
    depth: usize,
}

type Res<T> = Result<T, JsonError>;

impl<'j> Parser<'j> {
    #[inline(never)]
    fn err(&self, message: impl Into<String>) -> JsonError {
        // Very long paths are elided in the middle.
        const SHOWN: usize = 8;
        let elide = self.path.len() > 4 * SHOWN;
        let mut path = String::from("$");
        for (i, step) in self.path.iter().enumerate() {
            if elide && (SHOWN..self.path.len() - SHOWN).contains(&i) {
                if i == SHOWN {
                    path.push_str(&format!("…{} steps…", self.path.len() - 2 * SHOWN));
                }
                continue;
            }
            match step {
                Step::Key(k) if is_js_identifier(k) => {
                    path.push('.');
                    path.push_str(k);
                }
                Step::Key(k) => {
                    path.push('[');
                    path.push_str(&Json::from(*k).to_string());
                    path.push(']');
                }
                Step::Index(i) => path.push_str(&format!("[{i}]")),
            }
        }
        JsonError::Invalid { path, message: message.into() }
    }

    /// `"$tag" must hold <expected>, got <json>`.
    #[inline(never)]
    fn bad(&self, tag: &str, expected: &str, got: &Json) -> JsonError {
        self.err(format!("{tag:?} must hold {expected}, got {}", describe(got)))
    }

    /// Reads `json`, one step further down the path. (On an error the path is left as it is:
    /// the error has captured it, and reading stops.)
    fn parse_at(&mut self, step: Step<'j>, json: &'j Json) -> Res<JsValue> {
        self.path.push(step);
        let value = self.parse(json)?;
        self.path.pop();
        Ok(value)
    }

    /// Reads one value. The functions on the recursive path keep their stack frames small
    /// (no closures, leaves read by [`Parser::leaf_tag`], messages formatted in cold functions),
    /// so that [`MAX_DEPTH`] levels fit in a 2 MiB thread stack even in debug builds.
    fn parse(&mut self, json: &'j Json) -> Res<JsValue> {
        if self.depth >= MAX_DEPTH {
            return Err(self.too_deep());
        }
        self.depth += 1;
        let value = match json {
            Json::Array(items) => crate::v8::grow_stack(|| self.plain_array(items)),
            Json::Object(map) => crate::v8::grow_stack(|| self.object_or_tag(map)),
            Json::Null => Ok(JsValue::Null),
            Json::Bool(b) => Ok(JsValue::Bool(*b)),
            Json::Number(n) => n.as_f64().map(JsValue::Number).ok_or_else(|| self.out_of_range(n)),
            Json::String(s) => Ok(JsValue::String(s.clone())),
        };
        self.depth -= 1;
        value
    }

    #[inline(never)]
    #[cold]
    fn too_deep(&self) -> JsonError {
        self.err(format!("value nested deeper than {MAX_DEPTH} levels"))
    }

    #[inline(never)]
    #[cold]
    fn out_of_range(&self, n: &Number) -> JsonError {
        self.err(format!("number {n} is out of range"))
    }

    /// A view's buffer: like the V8 codec, a view and its leaf buffer (`$arraybuffer`,
    /// `$ref`) count as one level.
    fn buffer(&mut self, json: &'j Json) -> Res<JsValue> {
        let leaf = json.as_object().is_some_and(|m| {
            m.len() == 1 && (m.contains_key("$arraybuffer") || m.contains_key("$ref"))
        });
        if !leaf {
            return self.parse(json);
        }
        self.depth -= 1;
        let value = self.parse(json);
        self.depth += 1;
        value
    }

    #[inline(never)]
    fn plain_array(&mut self, items: &'j [Json]) -> Res<JsValue> {
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            out.push(Some(self.parse_at(Step::Index(i), item)?));
        }
        Ok(JsValue::Array(JsArray { items: out, properties: Vec::new() }))
    }

    #[inline(never)]
    fn object_or_tag(&mut self, map: &'j Map<String, Json>) -> Res<JsValue> {
        match map.iter().next() {
            Some((tag, payload)) if map.len() == 1 && tag.starts_with('$') => {
                self.tagged(tag, payload)
            }
            _ => match map.keys().find(|k| k.starts_with('$')) {
                Some(key) => Err(self.stray_dollar_key(key)),
                None => self.map_props(map).map(JsValue::Object),
            },
        }
    }

    #[inline(never)]
    #[cold]
    fn stray_dollar_key(&self, key: &str) -> JsonError {
        self.err(format!(
            "key {key:?} starts with \"$\" but is not its object's only key (a type tag is; \
             {ESCAPE_HINT})"
        ))
    }

    #[inline(never)]
    #[cold]
    fn bad_pair(&self, what: &str, pair: &Json) -> JsonError {
        self.must_be(&format!("{what} pairs"), "[key, value] with a string key", pair)
    }

    /// `<what> must be <expected>, got <json>`.
    #[inline(never)]
    #[cold]
    fn must_be(&self, what: &str, expected: &str, got: &Json) -> JsonError {
        self.err(format!("{what} must be {expected}, got {}", describe(got)))
    }

    #[inline(never)]
    fn map_props(&mut self, map: &'j Map<String, Json>) -> Res<Vec<(String, JsValue)>> {
        let mut props = Vec::with_capacity(map.len());
        for (k, v) in map {
            props.push((k.clone(), self.parse_at(Step::Key(k), v)?));
        }
        Ok(props)
    }

    /// A properties payload: a JSON object, or an array of `[key, value]` pairs.
    #[inline(never)]
    fn props(&mut self, what: &str, json: &'j Json) -> Res<Vec<(String, JsValue)>> {
        let pairs = match json {
            Json::Object(map) => return self.map_props(map),
            Json::Array(pairs) => pairs,
            _ => return Err(self.must_be(what, PROPS_EXPECTED, json)),
        };
        let mut props = Vec::with_capacity(pairs.len());
        for (i, pair) in pairs.iter().enumerate() {
            self.path.push(Step::Index(i));
            let Some([Json::String(k), v]) = pair.as_array().map(Vec::as_slice) else {
                return Err(self.bad_pair(what, pair));
            };
            props.push((k.clone(), self.parse_at(Step::Index(1), v)?));
            self.path.pop();
        }
        Ok(props)
    }

    /// The fields of an object payload, rejecting unknown and missing ones.
    #[inline(never)]
    fn fields(
        &self,
        tag: &str,
        payload: &'j Json,
        known: &[&str],
        required: &[&str],
    ) -> Res<&'j Map<String, Json>> {
        let Json::Object(map) = payload else {
            return Err(self.bad(tag, &format!("an object with fields {known:?}"), payload));
        };
        if let Some(k) = map.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(self.err(format!("{tag:?} has unknown field {k:?} (known: {known:?})")));
        }
        if let Some(k) = required.iter().find(|k| !map.contains_key(**k)) {
            return Err(self.err(format!("{tag:?} is missing field {k:?}")));
        }
        Ok(map)
    }

    fn u32_field(&self, tag: &str, field: &str, json: &Json) -> Res<u32> {
        json.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| {
            self.err(format!(
                "{tag:?} field {field:?} must be an integer 0..=4294967295, got {}",
                describe(json)
            ))
        })
    }

    fn u32(&self, tag: &str, json: &Json) -> Res<u32> {
        json.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| self.bad(tag, "an integer 0..=4294967295", json))
    }

    fn string(&self, tag: &str, json: &'j Json) -> Res<&'j str> {
        json.as_str().ok_or_else(|| self.bad(tag, "a string", json))
    }

    fn base64(&self, tag: &str, json: &Json) -> Res<Vec<u8>> {
        let Json::String(s) = json else {
            return Err(self.bad(tag, "a base64 string", json));
        };
        BASE64.decode(s).map_err(|e| {
            self.err(format!(
                "{tag:?} must hold standard padded base64, got {}: {e}",
                describe(json)
            ))
        })
    }

    fn bigint(&self, tag: &str, json: &Json) -> Res<BigInt> {
        let expected = r#"a decimal string like "-123""#;
        let Json::String(s) = json else { return Err(self.bad(tag, expected, json)) };
        let digits = s.strip_prefix('-').unwrap_or(s);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.bad(tag, expected, json));
        }
        s.parse().map_err(|_| self.bad(tag, expected, json))
    }

    /// A number payload: a JSON number, or `"NaN"`, `"Infinity"`, `"-Infinity"`, `"-0"`.
    fn special_number(json: &Json) -> Option<f64> {
        match json {
            Json::Number(n) => n.as_f64(),
            Json::String(s) => match s.as_str() {
                "NaN" => Some(f64::NAN),
                "Infinity" => Some(f64::INFINITY),
                "-Infinity" => Some(f64::NEG_INFINITY),
                "-0" => Some(-0.0),
                _ => None,
            },
            _ => None,
        }
    }

    fn number(&self, tag: &str, json: &Json) -> Res<f64> {
        Self::special_number(json).ok_or_else(|| {
            self.bad(tag, r#"a number or "NaN", "Infinity", "-Infinity" or "-0""#, json)
        })
    }

    fn date(&self, json: &Json) -> Res<f64> {
        let iso = match json {
            Json::String(s) => parse_iso_date(s),
            _ => None,
        };
        iso.or_else(|| Self::special_number(json)).ok_or_else(|| {
            self.bad(
                "$date",
                r#"an ISO date "YYYY-MM-DDTHH:MM:SS.sssZ" (years 0000-9999), a number of milliseconds, or "NaN""#,
                json,
            )
        })
    }

    fn regexp_flags(&self, json: &Json) -> Res<u32> {
        match json {
            Json::String(letters) => {
                let mut bits = 0;
                for c in letters.chars() {
                    let bit = match JsValue::regexp("", c.encode_utf8(&mut [0; 4])) {
                        JsValue::RegExp { flags, .. } => flags,
                        _ => 0,
                    };
                    if bit == 0 || bits & bit != 0 {
                        return Err(self.err(format!(
                            "\"$regexp\" field \"flags\" has an unknown or repeated flag {c:?} \
                             in {letters:?} (known: \"dgimsuvy\")"
                        )));
                    }
                    bits |= bit;
                }
                Ok(bits)
            }
            _ => json.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| {
                self.err(format!(
                    "\"$regexp\" field \"flags\" must be flag letters or a number of V8 flag \
                     bits, got {}",
                    describe(json)
                ))
            }),
        }
    }

    fn view_kind(&self, json: &Json) -> Res<ViewKind> {
        let name = json.as_str().unwrap_or_default();
        ViewKind::ALL.into_iter().find(|k| k.name() == name).ok_or_else(|| {
            let names: Vec<_> = ViewKind::ALL.iter().map(|k| k.name()).collect();
            self.err(format!(
                "\"$typedarray\" field \"kind\" must be one of {names:?}, got {}",
                describe(json)
            ))
        })
    }

    fn error_kind(&self, json: &Json) -> Res<ErrorKind> {
        let name = json.as_str().unwrap_or_default();
        ERROR_KINDS.into_iter().find(|k| k.name() == name).ok_or_else(|| {
            let names: Vec<_> = ERROR_KINDS.iter().map(|k| k.name()).collect();
            self.err(format!(
                "\"$error\" field \"kind\" must be one of {names:?}, got {}",
                describe(json)
            ))
        })
    }

    fn kvu64(&self, json: &Json) -> Res<u64> {
        let parsed = match json {
            Json::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                s.parse().ok()
            }
            Json::Number(n) => n.as_u64(),
            _ => None,
        };
        parsed.ok_or_else(|| {
            self.bad("$kvu64", "a decimal string of an integer 0..=18446744073709551615", json)
        })
    }

    fn optional_string(&self, tag: &str, field: &str, json: Option<&Json>) -> Res<Option<String>> {
        match json {
            None => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self
                .err(format!("{tag:?} field {field:?} must be a string, got {}", describe(other)))),
        }
    }

    /// A `{"$tag": payload}` object.
    #[inline(never)]
    fn tagged(&mut self, tag: &'j str, payload: &'j Json) -> Res<JsValue> {
        match tag {
            "$typedarray" => self.typed_array(payload),
            "$map" => self.map(payload),
            "$set" => self.set(payload),
            "$array" => self.array(payload),
            "$sparse" => self.sparse(payload),
            "$object" => {
                self.path.push(Step::Key(tag));
                let props = self.props("\"$object\"", payload)?;
                self.path.pop();
                Ok(JsValue::Object(props))
            }
            "$error" => self.error(payload),
            "$host" => {
                let state = self.parse_at(Step::Key(tag), payload)?;
                Ok(JsValue::HostObject(Box::new(state)))
            }
            _ => match HostType::from_json_tag(tag) {
                Some(class) => self.host(tag, class, payload),
                None => self.leaf_tag(tag, payload),
            },
        }
    }

    /// `{"$blob": {…}}` and the other known classes: the properties after `type`.
    #[inline(never)]
    fn host(&mut self, tag: &'j str, class: HostType, payload: &'j Json) -> Res<JsValue> {
        let rest = match self.parse_at(Step::Key(tag), payload)? {
            JsValue::Object(props) => props,
            _ => return Err(self.bad(tag, "an object of the properties after \"type\"", payload)),
        };
        if rest.iter().any(|(k, _)| k == "type") {
            return Err(self.err(format!(
                "{tag:?} holds a {}'s properties other than \"type\" (the tag says it); use \
                 {{\"$host\": …}} for a state object of another shape",
                class.name()
            )));
        }
        let mut state = Vec::with_capacity(rest.len() + 1);
        state.push(("type".to_owned(), JsValue::from(class.name())));
        state.extend(rest);
        Ok(JsValue::HostObject(Box::new(JsValue::Object(state))))
    }

    #[inline(never)]
    fn typed_array(&mut self, payload: &'j Json) -> Res<JsValue> {
        const TAG: &str = "$typedarray";
        let known = ["kind", "buffer", "byteOffset", "byteLength"];
        let f = self.fields(TAG, payload, &known, &known)?;
        self.path.push(Step::Key(TAG));
        let kind = self.view_kind(&f["kind"])?;
        let byte_offset = self.u32_field(TAG, "byteOffset", &f["byteOffset"])?;
        let byte_length = self.u32_field(TAG, "byteLength", &f["byteLength"])?;
        self.path.push(Step::Key("buffer"));
        let buffer = Box::new(self.buffer(&f["buffer"])?);
        self.path.truncate(self.path.len() - 2);
        Ok(JsValue::View { kind, buffer, byte_offset, byte_length })
    }

    #[inline(never)]
    fn map(&mut self, payload: &'j Json) -> Res<JsValue> {
        let Json::Array(entries) = payload else {
            return Err(self.bad("$map", "an array of [key, value] pairs", payload));
        };
        self.path.push(Step::Key("$map"));
        let mut out = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            self.path.push(Step::Index(i));
            let Some([k, v]) = entry.as_array().map(Vec::as_slice) else {
                return Err(self.must_be("\"$map\" entries", "[key, value] pairs", entry));
            };
            let k = self.parse_at(Step::Index(0), k)?;
            let v = self.parse_at(Step::Index(1), v)?;
            out.push((k, v));
            self.path.pop();
        }
        self.path.pop();
        Ok(JsValue::Map(out))
    }

    #[inline(never)]
    fn set(&mut self, payload: &'j Json) -> Res<JsValue> {
        let Json::Array(values) = payload else {
            return Err(self.bad("$set", "an array", payload));
        };
        self.path.push(Step::Key("$set"));
        let mut out = Vec::with_capacity(values.len());
        for (i, value) in values.iter().enumerate() {
            out.push(self.parse_at(Step::Index(i), value)?);
        }
        self.path.pop();
        Ok(JsValue::Set(out))
    }

    /// The optional `properties` field of `$array` / `$sparse`.
    #[inline(never)]
    fn properties_field(
        &mut self,
        what: &str,
        f: &'j Map<String, Json>,
    ) -> Res<Vec<(String, JsValue)>> {
        let Some(props) = f.get("properties") else { return Ok(Vec::new()) };
        self.path.push(Step::Key("properties"));
        let props = self.props(what, props)?;
        self.path.pop();
        Ok(props)
    }

    #[inline(never)]
    fn array(&mut self, payload: &'j Json) -> Res<JsValue> {
        const TAG: &str = "$array";
        let f = self.fields(TAG, payload, &["items", "properties"], &["items"])?;
        self.path.push(Step::Key(TAG));
        let Json::Array(items) = &f["items"] else {
            return Err(self.must_be("\"$array\" field \"items\"", "an array", &f["items"]));
        };
        self.path.push(Step::Key("items"));
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item.as_object().and_then(|m| m.get("$hole").filter(|_| m.len() == 1)) {
                Some(Json::Null) => out.push(None),
                Some(other) => {
                    self.path.push(Step::Index(i));
                    return Err(self.bad("$hole", "null", other));
                }
                None => out.push(Some(self.parse_at(Step::Index(i), item)?)),
            }
        }
        self.path.pop();
        let properties = self.properties_field("\"$array\" field \"properties\"", f)?;
        self.path.pop();
        Ok(JsValue::Array(JsArray { items: out, properties }))
    }

    #[inline(never)]
    fn sparse(&mut self, payload: &'j Json) -> Res<JsValue> {
        const TAG: &str = "$sparse";
        let known = ["length", "elements", "properties"];
        let f = self.fields(TAG, payload, &known, &known[..2])?;
        self.path.push(Step::Key(TAG));
        let length = self.u32_field(TAG, "length", &f["length"])?;
        let Json::Array(elements) = &f["elements"] else {
            return Err(self.must_be(
                "\"$sparse\" field \"elements\"",
                "an array of [index, value] pairs",
                &f["elements"],
            ));
        };
        self.path.push(Step::Key("elements"));
        let mut out = Vec::with_capacity(elements.len());
        for (i, element) in elements.iter().enumerate() {
            self.path.push(Step::Index(i));
            let Some([index, v]) = element.as_array().map(Vec::as_slice) else {
                return Err(self.must_be("\"$sparse\" elements", "[index, value] pairs", element));
            };
            let Some(index) = index.as_u64().and_then(|i| u32::try_from(i).ok()) else {
                self.path.push(Step::Index(0));
                return Err(self.must_be(
                    "\"$sparse\" element indexes",
                    "integers 0..=4294967295",
                    index,
                ));
            };
            out.push((index, self.parse_at(Step::Index(1), v)?));
            self.path.pop();
        }
        self.path.pop();
        let properties = self.properties_field("\"$sparse\" field \"properties\"", f)?;
        self.path.pop();
        Ok(JsValue::SparseArray { length, elements: out, properties })
    }

    #[inline(never)]
    fn error(&mut self, payload: &'j Json) -> Res<JsValue> {
        const TAG: &str = "$error";
        let known = ["kind", "message", "stack", "cause"];
        let f = self.fields(TAG, payload, &known, &[])?;
        self.path.push(Step::Key(TAG));
        let kind = match f.get("kind") {
            Some(kind) => self.error_kind(kind)?,
            None => ErrorKind::Error,
        };
        let message = self.optional_string(TAG, "message", f.get("message"))?;
        let stack = self.optional_string(TAG, "stack", f.get("stack"))?;
        let cause = match f.get("cause") {
            Some(cause) => Some(self.parse_at(Step::Key("cause"), cause)?),
            None => None,
        };
        self.path.pop();
        Ok(JsValue::Error(Box::new(JsError { kind, message, stack, cause })))
    }

    /// A tag whose payload holds no values.
    #[inline(never)]
    fn leaf_tag(&mut self, tag: &'j str, payload: &'j Json) -> Res<JsValue> {
        Ok(match tag {
            "$undefined" => match payload {
                Json::Null => JsValue::Undefined,
                _ => return Err(self.bad(tag, "null", payload)),
            },
            "$number" => JsValue::Number(self.number(tag, payload)?),
            "$bigint" => JsValue::BigInt(self.bigint(tag, payload)?),
            "$string_utf16" => {
                let expected = "an array of UTF-16 code units (integers 0..=65535)";
                let Json::Array(units) = payload else {
                    return Err(self.bad(tag, expected, payload));
                };
                let units = units
                    .iter()
                    .map(|u| u.as_u64().and_then(|u| u16::try_from(u).ok()))
                    .collect::<Option<Vec<u16>>>()
                    .ok_or_else(|| self.bad(tag, expected, payload))?;
                JsValue::StringUtf16(units)
            }
            "$date" => JsValue::Date(self.date(payload)?),
            "$bytes" => JsValue::uint8_array(self.base64(tag, payload)?),
            "$arraybuffer" => JsValue::ArrayBuffer(self.base64(tag, payload)?),
            "$regexp" => {
                let known = ["source", "flags"];
                let f = self.fields(tag, payload, &known, &known)?;
                self.path.push(Step::Key(tag));
                let Json::String(source) = &f["source"] else {
                    return Err(self.must_be(
                        "\"$regexp\" field \"source\"",
                        "a string",
                        &f["source"],
                    ));
                };
                let flags = self.regexp_flags(&f["flags"])?;
                self.path.pop();
                JsValue::RegExp { source: source.clone(), flags }
            }
            "$boolean_object" => match payload {
                Json::Bool(b) => JsValue::BooleanObject(*b),
                _ => return Err(self.bad(tag, "a boolean", payload)),
            },
            "$number_object" => JsValue::NumberObject(self.number(tag, payload)?),
            "$bigint_object" => JsValue::BigIntObject(self.bigint(tag, payload)?),
            "$string_object" => JsValue::StringObject(self.string(tag, payload)?.to_owned()),
            "$ref" => JsValue::Ref(self.u32(tag, payload)?),
            "$hole" => {
                return Err(self.err(
                    r#"a hole {"$hole": null} may only be an item of {"$array": {"items": [...]}}"#,
                ))
            }
            "$kvu64" => {
                return Err(self.err(
                    "\"$kvu64\" (a Deno.KvU64) may only be a whole stored value, not part of one",
                ))
            }
            "$too_deep" => {
                return Err(self.err(format!(
                    "\"$too_deep\" marks a part of a value that was nested deeper than \
                     {MAX_DEPTH} levels and left out when rendered; it cannot be read back"
                )))
            }
            _ => return Err(self.err(format!("unknown type tag {tag:?} ({ESCAPE_HINT})"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// Whether serde_json was built with `float_roundtrip` (else its parser, though not its
    /// printer, may be an ulp off: <https://docs.rs/serde_json/1/serde_json/#features>).
    fn serde_json_parses_floats_exactly() -> bool {
        let n = -1.6931853961103335e-223_f64;
        serde_json::from_str::<f64>(&serde_json::to_string(&n).unwrap()).unwrap() == n
    }

    #[test]
    fn floats_print_exactly() {
        // serde_json prints the shortest text that reads back exactly (with a correct parser,
        // such as Rust's own).
        let n = -1.6931853961103335e-223_f64;
        let text = serde_json::to_string(&to_json(&JsValue::Number(n))).unwrap();
        assert_eq!(text.parse::<f64>().unwrap(), n);
    }

    fn round_trip(value: &JsValue, expected: &Json) {
        let json = to_json(value);
        assert_eq!(&json, expected, "rendering of {value:?}");
        assert_eq!(&from_json(&json).unwrap(), value, "reading back {json}");
        // Through text, too.
        let text = serde_json::to_string(&json).unwrap();
        assert_eq!(&from_json(&serde_json::from_str(&text).unwrap()).unwrap(), value);
    }

    fn error_of(json: Json) -> String {
        from_json(&json).expect_err(&format!("{json} should not be read")).to_string()
    }

    fn view(kind: ViewKind, buffer: JsValue, byte_offset: u32, byte_length: u32) -> JsValue {
        JsValue::View { kind, buffer: Box::new(buffer), byte_offset, byte_length }
    }

    #[test]
    fn plain_data_is_natural_json() {
        round_trip(&JsValue::Null, &json!(null));
        round_trip(&JsValue::Bool(true), &json!(true));
        round_trip(&JsValue::Number(1.0), &json!(1));
        round_trip(&JsValue::Number(-7.0), &json!(-7));
        round_trip(&JsValue::Number(1.5), &json!(1.5));
        round_trip(&JsValue::Number(0.0), &json!(0));
        round_trip(&JsValue::Number(9_007_199_254_740_992.0), &json!(9_007_199_254_740_992_i64));
        round_trip(&JsValue::Number(1e300), &json!(1e300));
        round_trip(&JsValue::Number(f64::MIN_POSITIVE), &json!(f64::MIN_POSITIVE));
        round_trip(&JsValue::from("héllo \u{1F600}"), &json!("héllo \u{1F600}"));
        round_trip(&JsValue::array([]), &json!([]));
        round_trip(&JsValue::object::<&str>([]), &json!({}));
        round_trip(
            &JsValue::object([
                ("a", JsValue::array([JsValue::Number(1.0), JsValue::from("x")])),
                ("b", JsValue::object([("c", JsValue::Null)])),
            ]),
            &json!({"a": [1, "x"], "b": {"c": null}}),
        );
        // Integral numbers beyond 2^53 stay floats, and still read back exactly.
        assert!(to_json(&JsValue::Number(2f64.powi(60))).is_f64());
    }

    #[test]
    fn special_numbers_and_primitives() {
        round_trip(&JsValue::Undefined, &json!({"$undefined": null}));
        round_trip(&JsValue::Number(f64::NAN), &json!({"$number": "NaN"}));
        round_trip(&JsValue::Number(f64::INFINITY), &json!({"$number": "Infinity"}));
        round_trip(&JsValue::Number(f64::NEG_INFINITY), &json!({"$number": "-Infinity"}));
        round_trip(&JsValue::Number(-0.0), &json!({"$number": "-0"}));
        round_trip(&JsValue::BigInt(BigInt::from(0)), &json!({"$bigint": "0"}));
        let big: BigInt = "-123456789012345678901234567890".parse().unwrap();
        round_trip(
            &JsValue::BigInt(big.clone()),
            &json!({"$bigint": "-123456789012345678901234567890"}),
        );
        round_trip(
            &JsValue::StringUtf16(vec![0xD800, 0x61]),
            &json!({"$string_utf16": [0xD800, 0x61]}),
        );
        round_trip(&JsValue::BooleanObject(false), &json!({"$boolean_object": false}));
        round_trip(&JsValue::NumberObject(2.5), &json!({"$number_object": 2.5}));
        round_trip(&JsValue::NumberObject(-0.0), &json!({"$number_object": "-0"}));
        round_trip(
            &JsValue::BigIntObject(big),
            &json!({"$bigint_object": "-123456789012345678901234567890"}),
        );
        round_trip(&JsValue::StringObject("s".into()), &json!({"$string_object": "s"}));
        round_trip(&JsValue::Ref(3), &json!({"$ref": 3}));
        // A `$number` payload may also be a plain number.
        assert_eq!(from_json(&json!({"$number": 4})).unwrap(), JsValue::Number(4.0));
    }

    #[test]
    fn dates() {
        let cases = [
            (0.0, json!("1970-01-01T00:00:00.000Z")),
            (1_704_164_645_678.0, json!("2024-01-02T03:04:05.678Z")),
            (-1.0, json!("1969-12-31T23:59:59.999Z")),
            (951_782_400_000.0, json!("2000-02-29T00:00:00.000Z")),
            (ISO_MIN_MS, json!("0000-01-01T00:00:00.000Z")),
            (ISO_MAX_MS, json!("9999-12-31T23:59:59.999Z")),
            (ISO_MIN_MS - 1.0, json!(-62_167_219_200_001_i64)),
            (ISO_MAX_MS + 1.0, json!(253_402_300_800_000_i64)),
            (8.64e15, json!(8_640_000_000_000_000_i64)),
            (0.5, json!(0.5)),
            (f64::NAN, json!("NaN")),
            (f64::INFINITY, json!("Infinity")),
            (-0.0, json!("-0")),
        ];
        for (ms, payload) in cases {
            round_trip(&JsValue::Date(ms), &json!({ "$date": payload }));
        }
        // Without milliseconds is accepted too.
        assert_eq!(
            from_json(&json!({"$date": "2024-01-02T03:04:05Z"})).unwrap(),
            JsValue::Date(1_704_164_645_000.0)
        );
        for bad in [
            "2023-02-29T00:00:00.000Z",
            "2024-13-01T00:00:00.000Z",
            "2024-01-01T24:00:00.000Z",
            "2024-01-01 00:00:00.000Z",
            "2024-01-01T00:00:00.000",
            "+2024-01-01T00:00:00.000Z",
            "2024-1-01T00:00:00.0000Z",
            "yesterday",
        ] {
            let message = error_of(json!({ "$date": bad }));
            assert!(message.starts_with(r#"at $: "$date" must hold an ISO date"#), "{message}");
        }
        // Every day of a few centuries, both ways.
        for day in (-719_528..2_932_897).step_by(997) {
            let ms = day as f64 * 86_400_000.0 + 12_345.0;
            let json = date_payload(ms);
            assert_eq!(parse_iso_date(json.as_str().unwrap()), Some(ms), "{json}");
        }
    }

    #[test]
    fn binary_data() {
        round_trip(&JsValue::ArrayBuffer(vec![1, 2, 3]), &json!({"$arraybuffer": "AQID"}));
        round_trip(&JsValue::ArrayBuffer(vec![]), &json!({"$arraybuffer": ""}));
        round_trip(&JsValue::uint8_array(vec![0xff, 0xfe]), &json!({"$bytes": "//4="}));
        round_trip(&JsValue::uint8_array(vec![]), &json!({"$bytes": ""}));
        // Anything else about a view is spelled out.
        round_trip(
            &view(ViewKind::Float32, JsValue::ArrayBuffer(vec![0; 8]), 4, 4),
            &json!({"$typedarray": {
                "kind": "Float32Array",
                "buffer": {"$arraybuffer": "AAAAAAAAAAA="},
                "byteOffset": 4,
                "byteLength": 4,
            }}),
        );
        round_trip(
            &view(ViewKind::Uint8, JsValue::ArrayBuffer(vec![1, 2]), 1, 1),
            &json!({"$typedarray": {
                "kind": "Uint8Array", "buffer": {"$arraybuffer": "AQI="},
                "byteOffset": 1, "byteLength": 1,
            }}),
        );
        round_trip(
            &view(ViewKind::Uint8, JsValue::ArrayBuffer(vec![1, 2]), 0, 1),
            &json!({"$typedarray": {
                "kind": "Uint8Array", "buffer": {"$arraybuffer": "AQI="},
                "byteOffset": 0, "byteLength": 1,
            }}),
        );
        round_trip(
            &view(ViewKind::DataView, JsValue::Ref(0), 0, 2),
            &json!({"$typedarray": {
                "kind": "DataView", "buffer": {"$ref": 0}, "byteOffset": 0, "byteLength": 2,
            }}),
        );
        for kind in ViewKind::ALL {
            let v = view(kind, JsValue::Ref(1), 8, 16);
            assert_eq!(to_json(&v)["$typedarray"]["kind"], json!(kind.name()));
            assert_eq!(from_json(&to_json(&v)).unwrap(), v);
        }
    }

    #[test]
    fn collections_and_regexps() {
        round_trip(
            &JsValue::Map(vec![
                (JsValue::from("k"), JsValue::Number(1.0)),
                (JsValue::object([("o", JsValue::Null)]), JsValue::Undefined),
            ]),
            &json!({"$map": [["k", 1], [{"o": null}, {"$undefined": null}]]}),
        );
        round_trip(&JsValue::Map(vec![]), &json!({"$map": []}));
        round_trip(
            &JsValue::Set(vec![JsValue::Number(1.0), JsValue::from("a")]),
            &json!({"$set": [1, "a"]}),
        );
        round_trip(
            &JsValue::regexp("a+b", "gi"),
            &json!({"$regexp": {"source": "a+b", "flags": "gi"}}),
        );
        round_trip(
            &JsValue::regexp("x", "dgimsuvy"),
            &json!({"$regexp": {"source": "x", "flags": "dgimsuvy"}}),
        );
        round_trip(&JsValue::regexp("", ""), &json!({"$regexp": {"source": "", "flags": ""}}));
        // Flag bits without a letter (V8's `l`, 64, or unknown ones) keep the number.
        round_trip(
            &JsValue::RegExp { source: "x".into(), flags: 64 | 1 },
            &json!({"$regexp": {"source": "x", "flags": 65}}),
        );
        round_trip(
            &JsValue::RegExp { source: "x".into(), flags: 1 << 20 },
            &json!({"$regexp": {"source": "x", "flags": 1_048_576}}),
        );
        // Letters in any order read back.
        assert_eq!(
            from_json(&json!({"$regexp": {"source": "x", "flags": "ig"}})).unwrap(),
            JsValue::regexp("x", "gi")
        );
    }

    #[test]
    fn arrays_with_holes_properties_and_sparse() {
        round_trip(
            &JsValue::Array(JsArray {
                items: vec![Some(JsValue::Number(1.0)), None, Some(JsValue::Number(3.0))],
                properties: vec![],
            }),
            &json!({"$array": {"items": [1, {"$hole": null}, 3], "properties": {}}}),
        );
        round_trip(
            &JsValue::Array(JsArray {
                items: vec![Some(JsValue::Null)],
                properties: vec![("extra".into(), JsValue::Bool(true))],
            }),
            &json!({"$array": {"items": [null], "properties": {"extra": true}}}),
        );
        round_trip(
            &JsValue::Array(JsArray { items: vec![None, None], properties: vec![] }),
            &json!({"$array": {"items": [{"$hole": null}, {"$hole": null}], "properties": {}}}),
        );
        round_trip(
            &JsValue::SparseArray {
                length: 1000,
                elements: vec![(7, JsValue::from("x")), (999, JsValue::Null)],
                properties: vec![("$p".into(), JsValue::Number(1.0))],
            },
            &json!({"$sparse": {
                "length": 1000, "elements": [[7, "x"], [999, null]], "properties": {"$p": 1},
            }}),
        );
        // `properties` may be left out when reading.
        assert_eq!(
            from_json(&json!({"$array": {"items": [{"$hole": null}]}})).unwrap(),
            JsValue::Array(JsArray { items: vec![None], properties: vec![] })
        );
        assert_eq!(
            from_json(&json!({"$sparse": {"length": 5, "elements": []}})).unwrap(),
            JsValue::SparseArray { length: 5, elements: vec![], properties: vec![] }
        );
    }

    #[test]
    fn errors_values() {
        round_trip(
            &JsValue::Error(Box::new(JsError {
                kind: ErrorKind::TypeError,
                message: Some("bad".into()),
                stack: Some("TypeError: bad\n    at <anonymous>".into()),
                cause: Some(JsValue::Undefined),
            })),
            &json!({"$error": {
                "kind": "TypeError",
                "message": "bad",
                "stack": "TypeError: bad\n    at <anonymous>",
                "cause": {"$undefined": null},
            }}),
        );
        round_trip(&JsValue::Error(Box::default()), &json!({"$error": {"kind": "Error"}}));
        for kind in ERROR_KINDS {
            let v = JsValue::Error(Box::new(JsError { kind, ..JsError::default() }));
            round_trip(&v, &json!({"$error": {"kind": kind.name()}}));
        }
        assert_eq!(from_json(&json!({"$error": {}})).unwrap(), JsValue::Error(Box::default()));
    }

    /// Fails to compile when `ErrorKind` gains a variant that `ERROR_KINDS` lacks.
    #[test]
    fn error_kinds_are_all_listed() {
        for kind in ERROR_KINDS {
            match kind {
                ErrorKind::Error
                | ErrorKind::EvalError
                | ErrorKind::RangeError
                | ErrorKind::ReferenceError
                | ErrorKind::SyntaxError
                | ErrorKind::TypeError
                | ErrorKind::UriError => {}
            }
        }
    }

    #[test]
    fn dollar_keys_are_escaped() {
        round_trip(
            &JsValue::object([("$bigint", JsValue::from("1"))]),
            &json!({"$object": {"$bigint": "1"}}),
        );
        round_trip(
            &JsValue::object([("$", JsValue::Null), ("a", JsValue::Number(1.0))]),
            &json!({"$object": {"$": null, "a": 1}}),
        );
        round_trip(
            &JsValue::object([("$object", JsValue::object([("$object", JsValue::Null)]))]),
            &json!({"$object": {"$object": {"$object": {"$object": null}}}}),
        );
        // `$` elsewhere in a key, or a `$`-string value, needs no escaping.
        round_trip(&JsValue::object([("a$", JsValue::from("$bigint"))]), &json!({"a$": "$bigint"}));
        // Repeated keys (no JavaScript object has them) are kept, as pairs.
        round_trip(
            &JsValue::object([("a", JsValue::Number(1.0)), ("a", JsValue::Number(2.0))]),
            &json!({"$object": [["a", 1], ["a", 2]]}),
        );
        round_trip(
            &JsValue::Array(JsArray {
                items: vec![],
                properties: vec![("p".into(), JsValue::Null), ("p".into(), JsValue::Null)],
            }),
            &json!({"$array": {"items": [], "properties": [["p", null], ["p", null]]}}),
        );
        // Key order is kept: as a JSON object if serde_json keeps insertion order, else as pairs.
        let unsorted = JsValue::object([("b", JsValue::Null), ("a", JsValue::Null)]);
        let expected = if map_preserves_order() {
            json!({"b": null, "a": null})
        } else {
            json!({"$object": [["b", null], ["a", null]]})
        };
        round_trip(&unsorted, &expected);
    }

    #[test]
    fn error_messages_name_path_and_tag() {
        let cases = [
            (
                json!({"$foo": 1}),
                r#"at $: unknown type tag "$foo" (an object with keys starting with "$" is written {"$object": {...}})"#,
            ),
            (
                json!({"users": [{"name": "a"}, {"age": {"$bigint": 12}}]}),
                r#"at $.users[1].age: "$bigint" must hold a decimal string like "-123", got 12"#,
            ),
            (
                json!({"$bigint": "12a"}),
                r#"at $: "$bigint" must hold a decimal string like "-123", got "12a""#,
            ),
            (
                json!({"$bigint": "+1"}),
                r#"at $: "$bigint" must hold a decimal string like "-123", got "+1""#,
            ),
            (
                json!({"$bigint": "-"}),
                r#"at $: "$bigint" must hold a decimal string like "-123", got "-""#,
            ),
            (
                json!({"$bigint": " 1"}),
                r#"at $: "$bigint" must hold a decimal string like "-123", got " 1""#,
            ),
            (
                json!({"$bigint_object": "1_000"}),
                r#"at $: "$bigint_object" must hold a decimal string like "-123", got "1_000""#,
            ),
            (
                json!({"$bytes": "AQI"}),
                r#"at $: "$bytes" must hold standard padded base64, got "AQI": Invalid padding"#,
            ),
            (
                json!({"$arraybuffer": "-_8="}),
                r#"at $: "$arraybuffer" must hold standard padded base64, got "-_8=": Invalid symbol 45, offset 0."#,
            ),
            (
                json!({"$bytes": [1, 2]}),
                r#"at $: "$bytes" must hold a base64 string, got an array"#,
            ),
            (json!({"$undefined": 0}), r#"at $: "$undefined" must hold null, got 0"#),
            (
                json!({"$number": "nan"}),
                r#"at $: "$number" must hold a number or "NaN", "Infinity", "-Infinity" or "-0", got "nan""#,
            ),
            (
                json!({"$number_object": null}),
                r#"at $: "$number_object" must hold a number or "NaN", "Infinity", "-Infinity" or "-0", got null"#,
            ),
            (
                json!({"$string_utf16": [1, 65536]}),
                r#"at $: "$string_utf16" must hold an array of UTF-16 code units (integers 0..=65535), got an array"#,
            ),
            (
                json!({"$boolean_object": "true"}),
                r#"at $: "$boolean_object" must hold a boolean, got "true""#,
            ),
            (json!({"$string_object": 1}), r#"at $: "$string_object" must hold a string, got 1"#),
            (json!({"$ref": -1}), r#"at $: "$ref" must hold an integer 0..=4294967295, got -1"#),
            (
                json!({"$ref": 4_294_967_296_u64}),
                r#"at $: "$ref" must hold an integer 0..=4294967295, got 4294967296"#,
            ),
            (json!({"$set": {}}), r#"at $: "$set" must hold an array, got an object"#),
            (
                json!({"$map": [[1, 2], [3]]}),
                r#"at $.$map[1]: "$map" entries must be [key, value] pairs, got an array"#,
            ),
            (
                json!({"$map": [[1, {"$x": 0}]]}),
                r#"at $.$map[0][1]: unknown type tag "$x" (an object with keys starting with "$" is written {"$object": {...}})"#,
            ),
            (json!({"$regexp": {"source": "x"}}), r#"at $: "$regexp" is missing field "flags""#),
            (
                json!({"$regexp": {"source": "x", "flags": "gg"}}),
                r#"at $.$regexp: "$regexp" field "flags" has an unknown or repeated flag 'g' in "gg" (known: "dgimsuvy")"#,
            ),
            (
                json!({"$regexp": {"source": "x", "flags": "q"}}),
                r#"at $.$regexp: "$regexp" field "flags" has an unknown or repeated flag 'q' in "q" (known: "dgimsuvy")"#,
            ),
            (
                json!({"$regexp": {"source": 1, "flags": ""}}),
                r#"at $.$regexp: "$regexp" field "source" must be a string, got 1"#,
            ),
            (
                json!({"$regexp": "/x/g"}),
                r#"at $: "$regexp" must hold an object with fields ["source", "flags"], got "/x/g""#,
            ),
            (
                json!({"$typedarray": {"kind": "Uint8Array", "buffer": {"$ref": 0}, "byteOffset": 0, "byteLength": 1, "length": 1}}),
                r#"at $: "$typedarray" has unknown field "length" (known: ["kind", "buffer", "byteOffset", "byteLength"])"#,
            ),
            (
                json!({"$typedarray": {"kind": "Uint9Array", "buffer": {"$ref": 0}, "byteOffset": 0, "byteLength": 1}}),
                r#"at $.$typedarray: "$typedarray" field "kind" must be one of ["Int8Array", "Uint8Array", "Uint8ClampedArray", "Int16Array", "Uint16Array", "Int32Array", "Uint32Array", "Float16Array", "Float32Array", "Float64Array", "BigInt64Array", "BigUint64Array", "DataView"], got "Uint9Array""#,
            ),
            (
                json!({"$typedarray": {"kind": "DataView", "buffer": {"$ref": 0}, "byteOffset": -1, "byteLength": 1}}),
                r#"at $.$typedarray: "$typedarray" field "byteOffset" must be an integer 0..=4294967295, got -1"#,
            ),
            (
                json!({"$typedarray": {"kind": "DataView", "buffer": {"$arraybuffer": "*"}, "byteOffset": 0, "byteLength": 1}}),
                r#"at $.$typedarray.buffer: "$arraybuffer" must hold standard padded base64, got "*": Invalid symbol 42, offset 0."#,
            ),
            (
                json!({"$array": {"items": [{"$hole": 0}]}}),
                r#"at $.$array.items[0]: "$hole" must hold null, got 0"#,
            ),
            (
                json!({"$array": {"items": {}}}),
                r#"at $.$array: "$array" field "items" must be an array, got an object"#,
            ),
            (
                json!({"$array": {"items": [], "properties": 1}}),
                r#"at $.$array.properties: "$array" field "properties" must be an object or an array of [key, value] pairs, got 1"#,
            ),
            (
                json!({"$sparse": {"length": 3, "elements": [[-1, 0]]}}),
                r#"at $.$sparse.elements[0][0]: "$sparse" element indexes must be integers 0..=4294967295, got -1"#,
            ),
            (
                json!({"$sparse": {"length": 3, "elements": [1]}}),
                r#"at $.$sparse.elements[0]: "$sparse" elements must be [index, value] pairs, got 1"#,
            ),
            (
                json!({"$sparse": {"length": 1.5, "elements": []}}),
                r#"at $.$sparse: "$sparse" field "length" must be an integer 0..=4294967295, got 1.5"#,
            ),
            (
                json!({"$object": [["a", 1], [2, 3]]}),
                r#"at $.$object[1]: "$object" pairs must be [key, value] with a string key, got an array"#,
            ),
            (
                json!({"$object": "x"}),
                r#"at $.$object: "$object" must be an object or an array of [key, value] pairs, got "x""#,
            ),
            (
                json!({"$error": {"kind": "OopsError"}}),
                r#"at $.$error: "$error" field "kind" must be one of ["Error", "EvalError", "RangeError", "ReferenceError", "SyntaxError", "TypeError", "URIError"], got "OopsError""#,
            ),
            (
                json!({"$error": {"message": 1}}),
                r#"at $.$error: "$error" field "message" must be a string, got 1"#,
            ),
            (
                json!({"$error": {"cause": {"$hole": null}}}),
                r#"at $.$error.cause: a hole {"$hole": null} may only be an item of {"$array": {"items": [...]}}"#,
            ),
            (
                json!([1, {"$hole": null}]),
                r#"at $[1]: a hole {"$hole": null} may only be an item of {"$array": {"items": [...]}}"#,
            ),
            (
                json!({"n": {"$kvu64": "1"}}),
                r#"at $.n: "$kvu64" (a Deno.KvU64) may only be a whole stored value, not part of one"#,
            ),
            (
                json!({"$too_deep": null}),
                r#"at $: "$too_deep" marks a part of a value that was nested deeper than 512 levels and left out when rendered; it cannot be read back"#,
            ),
            (
                json!({"a": 1, "$b": 2}),
                r#"at $: key "$b" starts with "$" but is not its object's only key (a type tag is; an object with keys starting with "$" is written {"$object": {...}})"#,
            ),
            (
                json!({"$bigint": "1", "$number": "NaN"}),
                r#"at $: key "$bigint" starts with "$" but is not its object's only key (a type tag is; an object with keys starting with "$" is written {"$object": {...}})"#,
            ),
            (
                json!({"odd key": {"a-b": [{"$nope": 1}]}}),
                r#"at $["odd key"]["a-b"][0]: unknown type tag "$nope" (an object with keys starting with "$" is written {"$object": {...}})"#,
            ),
        ];
        for (json, expected) in cases {
            assert_eq!(error_of(json), expected);
        }
        let long = "x".repeat(100);
        assert_eq!(
            error_of(json!({ "$bigint": long })),
            format!(
                r#"at $: "$bigint" must hold a decimal string like "-123", got "{}"…"#,
                "x".repeat(40)
            )
        );
        assert!(matches!(
            from_json(&json!({"$ref": "1"})),
            Err(JsonError::Invalid { ref path, .. }) if path == "$"
        ));
    }

    fn nested_arrays(levels: usize) -> JsValue {
        let mut v = JsValue::Null;
        for _ in 1..levels {
            v = JsValue::array([v]);
        }
        v
    }

    fn nested_json(levels: usize) -> Json {
        let mut j = Json::Null;
        for _ in 1..levels {
            j = Json::Array(vec![j]);
        }
        j
    }

    #[test]
    fn depth_limit() {
        // MAX_DEPTH levels are fine, one more is an error, both ways.
        let deepest = nested_arrays(MAX_DEPTH);
        assert_eq!(from_json(&try_to_json(&deepest).unwrap()).unwrap(), deepest);
        let too_deep = nested_arrays(MAX_DEPTH + 1);
        assert!(matches!(try_to_json(&too_deep), Err(JsonError::TooDeep)));
        // `to_json` cuts it off; the cut is at a depth `from_json` refuses anyway.
        let cut = to_json(&too_deep);
        let mut innermost = &cut;
        while let Json::Array(items) = innermost {
            innermost = &items[0];
        }
        assert_eq!(innermost, &json!({"$too_deep": null}));
        assert!(from_json(&cut).is_err());
        assert_eq!(from_json(&nested_json(MAX_DEPTH)).unwrap(), deepest);
        let message = from_json(&nested_json(MAX_DEPTH + 1)).unwrap_err().to_string();
        assert!(message.ends_with(": value nested deeper than 512 levels"), "{message}");
        let elided =
            format!("at $[0][0][0][0][0][0][0][0]…{} steps…[0][0][0][0][0][0][0][0]:", 512 - 16);
        assert!(message.starts_with(&elided), "{message}");
        // Far deeper input is an error too, not a stack overflow (in a test thread's 2 MiB).
        // (serde_json drops a `Value` recursively, so the fixture itself is leaked.)
        let very_deep = std::mem::ManuallyDrop::new(nested_json(100_000));
        assert!(from_json(&very_deep).is_err());
        // Tags that nest in several JSON levels per value level stay within the stack.
        let mut v = JsValue::Null;
        for i in 1..MAX_DEPTH {
            v = match i % 6 {
                0 => JsValue::SparseArray { length: 9, elements: vec![(1, v)], properties: vec![] },
                1 => JsValue::Map(vec![(JsValue::Null, v)]),
                2 => JsValue::Error(Box::new(JsError { cause: Some(v), ..JsError::default() })),
                3 => JsValue::object([("$", v)]),
                4 => JsValue::Array(JsArray { items: vec![None, Some(v)], properties: vec![] }),
                _ => JsValue::Set(vec![v]),
            };
        }
        assert_eq!(from_json(&try_to_json(&v).unwrap()).unwrap(), v);
        // A typed array and its buffer are one level, as in the V8 codec.
        let v = (1..MAX_DEPTH)
            .fold(view(ViewKind::Int8, JsValue::ArrayBuffer(vec![1]), 0, 1), |v, _| {
                JsValue::array([v])
            });
        assert_eq!(from_json(&try_to_json(&v).unwrap()).unwrap(), v);
    }

    // ------------------------------------------------------------------------------------
    // Property tests

    fn arb_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
            Just(0.0),
            any::<i32>().prop_map(f64::from),
            (-1e17..1e17f64).prop_map(f64::trunc),
            (-1e3..1e3f64),
        ]
    }

    fn arb_date() -> impl Strategy<Value = f64> {
        prop_oneof![
            arb_f64(),
            (-8.64e15..8.64e15f64).prop_map(f64::trunc),
            (ISO_MIN_MS as i64 - 10..=ISO_MAX_MS as i64 + 10).prop_map(|ms| ms as f64),
        ]
    }

    fn arb_bigint() -> impl Strategy<Value = BigInt> {
        prop_oneof![
            any::<i64>().prop_map(BigInt::from),
            (any::<bool>(), prop::collection::vec(any::<u32>(), 0..5)).prop_map(|(neg, digits)| {
                let n = BigInt::new(num_bigint::Sign::Plus, digits);
                if neg {
                    -n
                } else {
                    n
                }
            }),
        ]
    }

    fn arb_key() -> impl Strategy<Value = String> {
        prop_oneof![
            "[ab$]{0,3}",
            "[a-z]{1,6}",
            any::<String>(),
            prop::sample::select(vec!["$", "$object", "$bigint", "$hole", "$kvu64", "$ref", "0"])
                .prop_map(String::from),
        ]
    }

    fn arb_props(inner: BoxedStrategy<JsValue>) -> impl Strategy<Value = Vec<(String, JsValue)>> {
        prop::collection::vec((arb_key(), inner), 0..4)
    }

    fn arb_leaf() -> BoxedStrategy<JsValue> {
        let kind = prop::sample::select(ViewKind::ALL.to_vec());
        let buffer = prop_oneof![
            prop::collection::vec(any::<u8>(), 0..12).prop_map(JsValue::ArrayBuffer),
            any::<u32>().prop_map(JsValue::Ref),
        ];
        prop_oneof![
            Just(JsValue::Undefined),
            Just(JsValue::Null),
            any::<bool>().prop_map(JsValue::Bool),
            arb_f64().prop_map(JsValue::Number),
            arb_bigint().prop_map(JsValue::BigInt),
            any::<String>().prop_map(JsValue::String),
            "\\$[a-z_]{0,8}".prop_map(JsValue::String),
            prop::collection::vec(any::<u16>(), 0..6).prop_map(JsValue::StringUtf16),
            arb_date().prop_map(JsValue::Date),
            (any::<String>(), prop_oneof![0u32..512, any::<u32>()])
                .prop_map(|(source, flags)| JsValue::RegExp { source, flags }),
            prop::collection::vec(any::<u8>(), 0..12).prop_map(JsValue::ArrayBuffer),
            prop::collection::vec(any::<u8>(), 0..12).prop_map(JsValue::uint8_array),
            (kind, buffer, prop_oneof![0u32..4, any::<u32>()], prop_oneof![0u32..16, any::<u32>()])
                .prop_map(|(kind, buffer, off, len)| view(kind, buffer, off, len)),
            any::<bool>().prop_map(JsValue::BooleanObject),
            arb_f64().prop_map(JsValue::NumberObject),
            arb_bigint().prop_map(JsValue::BigIntObject),
            any::<String>().prop_map(JsValue::StringObject),
            any::<u32>().prop_map(JsValue::Ref),
        ]
        .boxed()
    }

    fn arb_value() -> BoxedStrategy<JsValue> {
        arb_leaf()
            .prop_recursive(5, 96, 6, |inner| {
                let error_kind = prop::sample::select(ERROR_KINDS.to_vec());
                prop_oneof![
                    arb_props(inner.clone()).prop_map(JsValue::Object),
                    prop::collection::vec(inner.clone(), 0..5).prop_map(JsValue::array),
                    (
                        prop::collection::vec(prop::option::weighted(0.8, inner.clone()), 0..5),
                        arb_props(inner.clone())
                    )
                        .prop_map(|(items, properties)| JsValue::Array(
                            JsArray { items, properties }
                        )),
                    (
                        any::<u32>(),
                        prop::collection::vec((any::<u32>(), inner.clone()), 0..4),
                        arb_props(inner.clone())
                    )
                        .prop_map(|(length, elements, properties)| {
                            JsValue::SparseArray { length, elements, properties }
                        }),
                    prop::collection::vec((inner.clone(), inner.clone()), 0..4)
                        .prop_map(JsValue::Map),
                    prop::collection::vec(inner.clone(), 0..4).prop_map(JsValue::Set),
                    (
                        error_kind,
                        prop::option::of(any::<String>()),
                        prop::option::of(any::<String>()),
                        prop::option::of(inner.clone())
                    )
                        .prop_map(|(kind, message, stack, cause)| {
                            JsValue::Error(Box::new(JsError { kind, message, stack, cause }))
                        }),
                    (
                        prop::sample::select(ViewKind::ALL.to_vec()),
                        inner.clone(),
                        any::<u32>(),
                        any::<u32>()
                    )
                        .prop_map(|(kind, buffer, off, len)| view(kind, buffer, off, len)),
                    // Host objects: a known class (its `type` first, then any properties,
                    // `type` among them sometimes), or any state at all.
                    (
                        prop::sample::select(HostType::ALL.to_vec()),
                        arb_props(inner.clone()),
                        any::<bool>()
                    )
                        .prop_map(|(class, mut props, repeat_type)| {
                            if repeat_type {
                                props.push(("type".to_owned(), JsValue::from(class.name())));
                            }
                            JsValue::host_object(class, props)
                        }),
                    inner.prop_map(|state| JsValue::HostObject(Box::new(state))),
                ]
            })
            .boxed()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// value → JSON → value is the identity, also through JSON text.
        #[test]
        fn value_json_value(value in arb_value()) {
            let json = try_to_json(&value).unwrap();
            prop_assert_eq!(&from_json(&json).unwrap(), &value);
            let text = serde_json::to_string(&json).unwrap();
            let reparsed: Json = serde_json::from_str(&text).unwrap();
            if serde_json_parses_floats_exactly() {
                prop_assert_eq!(&from_json(&reparsed).unwrap(), &value);
            } else {
                // Without serde_json's `float_roundtrip` its parser may be an ulp off.
                prop_assert!(from_json(&reparsed).is_ok());
            }
        }

        /// JSON → value → JSON is the identity on what `to_json` produces.
        #[test]
        fn json_value_json(value in arb_value()) {
            let json = to_json(&value);
            prop_assert_eq!(to_json(&from_json(&json).unwrap()), json);
        }

        /// Stored values round-trip; a V8 value reads back to bytes decoding to the same value.
        #[test]
        fn stored_value_round_trip(value in arb_value(), bytes in prop::collection::vec(any::<u8>(), 0..16), n in any::<u64>()) {
            let bytes_json = stored_to_json(Stored::Bytes(&bytes)).unwrap();
            prop_assert_eq!(stored_from_json(&bytes_json).unwrap(), Stored::Bytes(bytes.clone()));
            let n_json = stored_to_json(Stored::U64(n)).unwrap();
            prop_assert_eq!(stored_from_json(&n_json).unwrap(), Stored::U64(n));
            if let Ok(encoded) = encode_v8(&value) {
                let decoded = decode_v8(&encoded).unwrap();
                let json = stored_to_json(Stored::V8(&encoded)).unwrap();
                let back = stored_from_json(&json).unwrap();
                let Stored::V8(back) = back else {
                    return Err(TestCaseError::fail(format!("not read back as V8: {back:?}")));
                };
                prop_assert_eq!(decode_v8(&back).unwrap(), decoded);
            }
        }

        /// Arbitrary JSON never panics: it reads or it is an error.
        #[test]
        fn arbitrary_json_never_panics(text in "[\\[\\]{}\",:0-9a-z$ -]{0,40}") {
            if let Ok(json) = serde_json::from_str::<Json>(&text) {
                if let Ok(value) = from_json(&json) {
                    let _ = to_json(&value);
                }
            }
        }
    }
}
