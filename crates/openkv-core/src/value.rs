//! Values as the storage layer sees them: one of three encodings.

use crate::error::Error;
use crate::js::{decode_v8, encode_v8, JsValue, ViewKind};

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
/// - a `&JsValue`: V8-encoded;
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

impl ToValue for &JsValue {
    fn to_value(self) -> Result<Value, Error> {
        Value::from_js(self)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_round_trip_and_reject_bad_input() {
        for v in [Value::V8(vec![0xff, 0x10, 0x5f]), Value::Bytes(vec![]), Value::U64(u64::MAX)] {
            assert_eq!(Value::from_encoded(v.encoding(), v.to_bytes()).unwrap(), v);
        }
        assert!(matches!(Value::from_encoded(2, vec![1, 2, 3]), Err(Error::InvalidValue(_))));
        assert!(matches!(Value::from_encoded(9, vec![]), Err(Error::InvalidValue(_))));
    }
}
