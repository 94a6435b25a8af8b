//! Values as the storage layer sees them: one of three encodings.

use crate::error::Error;
use crate::js::{
    decode_v8, encode_v8, stored_from_json, stored_to_json, JsValue, JsonError, Stored, ViewKind,
};

/// `v_encoding` of a V8-serialized value (Deno's `VE_V8`).
pub const ENCODING_V8: i64 = 1;
/// `v_encoding` of a little-endian u64 (`Deno.KvU64`, `VE_LE64`).
pub const ENCODING_LE64: i64 = 2;
/// `v_encoding` of raw bytes (`Uint8Array`, `VE_BYTES`).
pub const ENCODING_BYTES: i64 = 3;

/// A stored value.
///
/// Deno stores every JavaScript value as V8 `ValueSerializer` bytes, except a top-level
/// `Uint8Array` (raw bytes) and a `Deno.KvU64` (an unsigned 64-bit counter, the only type
/// `sum`/`min`/`max` work on). This type carries the bytes as they are stored; decoding V8
/// bytes into JavaScript-like values is a layer above.
///
/// Deliberately not `#[non_exhaustive]`: these are Deno KV's three storage encodings, and every
/// backend and the wire layer must handle each (a new one must break their builds).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    /// V8 `ValueSerializer` bytes (`0xFF <version>` header), opaque to the engine.
    V8(Vec<u8>),
    /// A raw byte string (`Uint8Array` in Deno).
    Bytes(Vec<u8>),
    /// A `Deno.KvU64`.
    U64(u64),
}

/// A `Deno.KvU64`: an unsigned 64-bit counter, the operand type of sum/min/max.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct KvU64(pub u64);

impl Value {
    /// The `v_encoding` number of this value.
    pub fn encoding(&self) -> i64 {
        match self {
            Value::V8(_) => ENCODING_V8,
            Value::Bytes(_) => ENCODING_BYTES,
            Value::U64(_) => ENCODING_LE64,
        }
    }

    /// The stored bytes (8 little-endian bytes for `U64`).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Value::V8(b) | Value::Bytes(b) => b.clone(),
            Value::U64(n) => n.to_le_bytes().to_vec(),
        }
    }

    /// Number of bytes the value occupies in storage (what the value-size limit counts).
    pub fn encoded_len(&self) -> usize {
        match self {
            Value::V8(b) | Value::Bytes(b) => b.len(),
            Value::U64(_) => 8,
        }
    }

    /// Rebuilds a value from its stored bytes and encoding number. An unknown encoding or an
    /// LE64 value that is not exactly 8 bytes is [`Error::InvalidValue`], never a panic.
    pub fn from_encoded(encoding: i64, data: Vec<u8>) -> Result<Value, Error> {
        match encoding {
            ENCODING_V8 => Ok(Value::V8(data)),
            ENCODING_BYTES => Ok(Value::Bytes(data)),
            ENCODING_LE64 => {
                let arr: [u8; 8] = data.as_slice().try_into().map_err(|_| {
                    Error::InvalidValue(format!(
                        "a KvU64 (LE64) value must be 8 bytes, got {}",
                        data.len()
                    ))
                })?;
                Ok(Value::U64(u64::from_le_bytes(arr)))
            }
            other => Err(Error::InvalidValue(format!("unknown value encoding {other}"))),
        }
    }

    /// Rebuilds the value of a stored row (of `key`, encoded): as
    /// [`from_encoded`](Self::from_encoded), but a row that does not decode is
    /// [`Error::Corrupt`] — the row is bad, not the caller's request.
    pub fn from_stored(key: &[u8], encoding: i64, data: Vec<u8>) -> Result<Value, Error> {
        Value::from_encoded(encoding, data).map_err(|e| {
            let key = match crate::key::Key::decode(key) {
                Ok(key) => key.to_string(),
                Err(_) => format!("0x{}", hex::encode(key)),
            };
            Error::corrupt_caused(format_args!("the stored value of {key}"), e)
        })
    }

    /// The counter, if this is a `U64`.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::U64(n) => Some(*n),
            _ => None,
        }
    }

    /// A short name of the value's kind, for messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::V8(_) => "V8",
            Value::Bytes(_) => "bytes",
            Value::U64(_) => "KvU64",
        }
    }
}

impl From<KvU64> for Value {
    fn from(n: KvU64) -> Self {
        Value::U64(n.0)
    }
}

impl From<Vec<u8>> for Value {
    /// Raw bytes, as Deno stores a `Uint8Array`.
    fn from(b: Vec<u8>) -> Self {
        Value::Bytes(b)
    }
}

impl From<&[u8]> for Value {
    fn from(b: &[u8]) -> Self {
        Value::Bytes(b.to_vec())
    }
}

/// What `openkv::Kv::set` and the atomic `set`s accept.
///
/// - a [`Value`] or `&Value`: stored as it is;
/// - a [`KvU64`]: a `Deno.KvU64`;
/// - `Vec<u8>`: raw bytes (a `Uint8Array` in Deno);
/// - a `&JsValue`: V8-encoded, exactly as [`Value::from_js`] stores it. It goes through the
///   `Serialize` blanket below (the JS crate is below this one, so no impl of its own can sit
///   beside it), which copies the value once before encoding it: [`Value::from_js`] itself
///   skips that copy (measured 3.7× faster on an 800-byte value);
/// - a reference to anything `Serialize` (`&my_struct`): converted with
///   [`to_js`](crate::to_js) and V8-encoded, so Deno reads the natural JavaScript value (a
///   top-level `Uint8Array` is stored as raw bytes, as Deno does). Note `&vec_of_u8` is a
///   `Serialize` sequence, i.e. an array of numbers; pass the `Vec<u8>` itself (or a
///   [`JsBytes`](crate::JsBytes)) for bytes.
pub trait ToValue {
    /// The stored form.
    fn to_value(self) -> Result<Value, Error>;
}

impl ToValue for Value {
    fn to_value(self) -> Result<Value, Error> {
        Ok(self)
    }
}

impl ToValue for &Value {
    fn to_value(self) -> Result<Value, Error> {
        Ok(self.clone())
    }
}

impl ToValue for KvU64 {
    fn to_value(self) -> Result<Value, Error> {
        Ok(Value::U64(self.0))
    }
}

impl ToValue for Vec<u8> {
    fn to_value(self) -> Result<Value, Error> {
        Ok(Value::Bytes(self))
    }
}

impl<T: serde::Serialize + ?Sized> ToValue for &T {
    fn to_value(self) -> Result<Value, Error> {
        let js = crate::js::to_js(self)
            .map_err(|e| Error::InvalidValue(format!("cannot store this Rust value: {e}")))?;
        Value::from_js(&js)
    }
}

impl Value {
    /// The stored form of a JavaScript value: V8 bytes, except that a top-level `Uint8Array`
    /// over a buffer of exactly its bytes is stored as raw bytes, as Deno stores it.
    pub fn from_js(js: &JsValue) -> Result<Value, Error> {
        if let JsValue::View { kind: ViewKind::Uint8, buffer, byte_offset: 0, byte_length } = js {
            if let JsValue::ArrayBuffer(b) = &**buffer {
                if b.len() == *byte_length as usize {
                    return Ok(Value::Bytes(b.clone()));
                }
            }
        }
        encode_v8(js).map(Value::V8).map_err(|e| Error::InvalidValue(e.to_string()))
    }

    /// The value as JavaScript sees it: V8 bytes decoded, raw bytes as a `Uint8Array`, and a
    /// `KvU64` as its `bigint` value (in JavaScript it is a `Deno.KvU64` object holding one).
    pub fn to_js(&self) -> Result<JsValue, Error> {
        match self {
            Value::V8(b) => decode_v8(b).map_err(|e| Error::InvalidValue(e.to_string())),
            Value::Bytes(b) => Ok(JsValue::uint8_array(b.clone())),
            Value::U64(n) => Ok(JsValue::BigInt((*n).into())),
        }
    }

    /// Decodes the value into a Rust type with serde (see the mapping table of
    /// [`from_js`](crate::from_js)). A `KvU64` decodes into integer types; raw bytes into
    /// `Vec<u8>`-like byte buffers ([`JsBytes`](crate::JsBytes), `serde_bytes`).
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        let js = self.to_js()?;
        crate::js::from_js(&js).map_err(|e| Error::Deserialize(e.to_string()))
    }
}

/// Renders a stored value as typed JSON: `{"$kvu64": "n"}`, `{"$bytes": "<base64>"}`, or the
/// rendering of the JavaScript value V8 bytes decode to (the `js` crate's JSON docs have the
/// full table).
pub fn value_to_json(value: &Value) -> Result<serde_json::Value, JsonError> {
    stored_to_json(match value {
        Value::V8(bytes) => Stored::V8(bytes.as_slice()),
        Value::Bytes(bytes) => Stored::Bytes(bytes.as_slice()),
        Value::U64(n) => Stored::U64(*n),
    })
}

/// Reads a stored value back from typed JSON: a top-level `{"$kvu64": ...}` is `Value::U64`, a
/// top-level `{"$bytes": ...}` is `Value::Bytes`, anything else is read with
/// [`from_json`](crate::js::from_json) and V8-encoded.
pub fn value_from_json(json: &serde_json::Value) -> Result<Value, JsonError> {
    Ok(match stored_from_json(json)? {
        Stored::V8(bytes) => Value::V8(bytes),
        Stored::Bytes(bytes) => Value::Bytes(bytes),
        Stored::U64(n) => Value::U64(n),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::js::from_json;
    use serde_json::json;

    #[test]
    fn encodings_round_trip_and_reject_bad_input() {
        for v in [Value::V8(vec![0xff, 0x10, 0x5f]), Value::Bytes(vec![]), Value::U64(u64::MAX)] {
            assert_eq!(Value::from_encoded(v.encoding(), v.to_bytes()).unwrap(), v);
        }
        assert!(matches!(Value::from_encoded(2, vec![1, 2, 3]), Err(Error::InvalidValue(_))));
        assert!(matches!(Value::from_encoded(9, vec![]), Err(Error::InvalidValue(_))));
    }

    #[test]
    fn stored_values() {
        let cases = [
            (Value::U64(0), json!({"$kvu64": "0"})),
            (Value::U64(u64::MAX), json!({"$kvu64": "18446744073709551615"})),
            (Value::Bytes(vec![]), json!({"$bytes": ""})),
            (Value::Bytes(b"hi".to_vec()), json!({"$bytes": "aGk="})),
        ];
        for (value, expected) in cases {
            assert_eq!(value_to_json(&value).unwrap(), expected);
            assert_eq!(value_from_json(&expected).unwrap(), value);
        }
        assert_eq!(value_from_json(&json!({"$kvu64": 5})).unwrap(), Value::U64(5));
        for bad in [json!("18446744073709551616"), json!("-1"), json!(""), json!(1.5), json!(null)]
        {
            let message = value_from_json(&json!({ "$kvu64": bad })).unwrap_err().to_string();
            assert!(
                message.starts_with(r#"at $: "$kvu64" must hold a decimal string"#),
                "{message}"
            );
        }
        // Any other value is V8.
        let js = JsValue::object([("a", JsValue::BigInt(1.into())), ("b", JsValue::Undefined)]);
        let v8 = Value::V8(encode_v8(&js).unwrap());
        let json = value_to_json(&v8).unwrap();
        assert_eq!(json, json!({"a": {"$bigint": "1"}, "b": {"$undefined": null}}));
        assert_eq!(value_from_json(&json).unwrap(), v8);
        // A V8 value that is a plain Uint8Array keeps being V8 (not raw bytes).
        let v8 = Value::V8(encode_v8(&JsValue::uint8_array(vec![7])).unwrap());
        let json = value_to_json(&v8).unwrap();
        assert_eq!(json["$typedarray"]["kind"], json!("Uint8Array"));
        assert_eq!(value_from_json(&json).unwrap(), v8);
        // Nested, a Uint8Array is `$bytes` again.
        assert_eq!(
            from_json(&json!([{"$bytes": "Bw=="}])).unwrap(),
            JsValue::array([JsValue::uint8_array(vec![7])])
        );
        assert!(matches!(value_to_json(&Value::V8(vec![1, 2])), Err(JsonError::Decode(_))));
        assert!(matches!(value_from_json(&json!({"$ref": 5})), Err(JsonError::Encode(_))));
        // Strings, numbers, … at the top level are V8 values.
        let v = value_from_json(&json!("s")).unwrap();
        assert_eq!(decode_v8(&v.to_bytes()).unwrap(), JsValue::from("s"));
    }

    /// `&JsValue` reaches `ToValue` through `Serialize` (the JS crate is below this one, so the
    /// blanket impl covers it): the result must be exactly what `Value::from_js` stores.
    #[test]
    fn a_js_value_is_stored_as_from_js_stores_it() {
        let shared = JsValue::object([("x", JsValue::Number(-0.0))]);
        let cases = [
            JsValue::uint8_array(vec![1, 2, 3]), // top level: raw bytes
            JsValue::array([JsValue::uint8_array(vec![7]), JsValue::Undefined]),
            JsValue::BigInt((-12).into()),
            JsValue::Number(f64::NAN),
            JsValue::Date(1.5),
            JsValue::object([("$bigint", JsValue::from("not a tag"))]),
            JsValue::array([shared, JsValue::Ref(1)]),
            JsValue::Map(vec![(JsValue::Null, JsValue::Set(vec![JsValue::Bool(true)]))]),
        ];
        for js in cases {
            let via_trait = (&js).to_value().unwrap();
            assert_eq!(via_trait, Value::from_js(&js).unwrap(), "{js:?}");
            assert_eq!(via_trait.to_js().unwrap(), js);
        }
    }
}
