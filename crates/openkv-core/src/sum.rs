//! The arithmetic of `sum` on V8 numbers and bigints (KV Connect's `M_SUM` on `VE_V8`, with
//! `sum_min`/`sum_max`/`sum_clamp`), shared by every backend.
//!
//! Semantics, as the reference implementation defines them, on values decoded with our own V8
//! codec (so current Deno values — format 16 — work):
//! - the operand is a V8 `number` or `bigint` (or a `KvU64`); bounds, if given, have its type;
//! - a missing key becomes the operand; the result never expires;
//! - `number + number` and `bigint + bigint` add; a result outside `[min, max]` is clamped if
//!   `clamp`, else the write fails;
//! - a stored `KvU64` plus a `bigint` operand in `0..2^64` without bounds adds modulo 2^64 and
//!   stays a `KvU64` (older clients sent such sums);
//! - `KvU64 + KvU64` wraps modulo 2^64, and takes no bounds;
//! - any other pairing fails with `"Cannot sum <stored> with <operand>"`.

use num_bigint::BigInt;

use crate::error::Error;
use crate::js::{decode_v8, encode_v8, JsValue};
use crate::value::{Value, ENCODING_LE64};

#[derive(Debug, Clone, PartialEq)]
enum Num {
    U64(u64),
    Number(f64),
    BigInt(BigInt),
}

impl Num {
    fn name(&self) -> &'static str {
        match self {
            Num::U64(_) => "KvU64",
            Num::Number(_) => "Number",
            Num::BigInt(_) => "BigInt",
        }
    }

    fn parse(v: &Value) -> Option<Num> {
        match v {
            Value::U64(n) => Some(Num::U64(*n)),
            Value::V8(bytes) => match decode_v8(bytes).ok()? {
                JsValue::Number(n) => Some(Num::Number(n)),
                JsValue::BigInt(n) => Some(Num::BigInt(n)),
                _ => None,
            },
            _ => None,
        }
    }

    fn into_value(self) -> Result<Value, Error> {
        let js = match self {
            Num::U64(n) => return Ok(Value::U64(n)),
            Num::Number(n) => JsValue::Number(n),
            Num::BigInt(n) => JsValue::BigInt(n),
        };
        encode_v8(&js).map(Value::V8).map_err(|e| Error::InvalidValue(e.to_string()))
    }
}

fn mismatch(msg: impl Into<String>) -> Error {
    Error::TypeMismatch(msg.into())
}

/// The new value of a key after `sum`; `current` is the live row's `(bytes, encoding, _)`.
pub(crate) fn apply(
    current: Option<(Vec<u8>, i64, i64)>,
    operand: &Value,
    min: Option<&Value>,
    max: Option<&Value>,
    clamp: bool,
) -> Result<Value, Error> {
    let invalid = || mismatch("Some of the parameters are not valid V8 values");
    let op = Num::parse(operand).ok_or_else(invalid)?;
    let min = min.map(|v| Num::parse(v).ok_or_else(invalid)).transpose()?;
    let max = max.map(|v| Num::parse(v).ok_or_else(invalid)).transpose()?;
    let same_type = |b: &Option<Num>| {
        b.as_ref().is_none_or(|b| std::mem::discriminant(b) == std::mem::discriminant(&op))
    };
    if !same_type(&min) || !same_type(&max) {
        return Err(mismatch("Min/max parameters have different types than the operand"));
    }
    let Some((data, encoding, _)) = current else {
        return op.into_value();
    };
    // The stored row, not the operand: one that does not decode is corrupt, not a mismatch.
    let stored = Value::from_encoded(encoding, data).map_err(|e| {
        Error::corrupt_caused("the stored value of a key to combine (sum/min/max)", e)
    })?;
    let old = Num::parse(&stored).ok_or_else(|| {
        mismatch(format!(
            "Cannot sum {} with {}",
            match stored {
                Value::Bytes(_) => "Uint8Array",
                _ => "a non-numeric value",
            },
            op.name()
        ))
    })?;
    let bounded = min.is_some() || max.is_some() || clamp;
    let out_of_range = || mismatch("The result of a Sum operation would exceed its range limit");
    let result = match (old, op) {
        // Older clients: KvU64 plus a bigint operand that fits stays a KvU64.
        (Num::U64(a), Num::BigInt(b)) if !bounded => match u64::try_from(&b) {
            Ok(b) => Num::U64(a.wrapping_add(b)),
            Err(_) => return Err(mismatch("Cannot sum KvU64 with BigInt")),
        },
        (Num::U64(a), Num::U64(b)) => {
            if min.is_some() || max.is_some() {
                return Err(mismatch("Cannot use min/max parameters with KvU64 operands"));
            }
            Num::U64(a.wrapping_add(b))
        }
        (Num::BigInt(a), Num::BigInt(b)) => {
            let mut r = a + b;
            if let Some(Num::BigInt(lo)) = &min {
                if r < *lo {
                    r = if clamp { lo.clone() } else { return Err(out_of_range()) };
                }
            }
            if let Some(Num::BigInt(hi)) = &max {
                if r > *hi {
                    r = if clamp { hi.clone() } else { return Err(out_of_range()) };
                }
            }
            Num::BigInt(r)
        }
        (Num::Number(a), Num::Number(b)) => {
            let mut r = a + b;
            if let Some(Num::Number(lo)) = min {
                if r < lo {
                    r = if clamp { lo } else { return Err(out_of_range()) };
                }
            }
            if let Some(Num::Number(hi)) = max {
                if r > hi {
                    r = if clamp { hi } else { return Err(out_of_range()) };
                }
            }
            Num::Number(r)
        }
        (old, op) => return Err(mismatch(format!("Cannot sum {} with {}", old.name(), op.name()))),
    };
    result.into_value()
}

/// The new value of a key after `sum` on its live row `current` (`(bytes, encoding, _)`): a
/// `KvU64` operand wraps modulo 2^64 ([`u64_op`]), a V8 `number`/`bigint` operand adds as
/// [`apply`] says. A rejection (wrong types) is the write's error.
pub(crate) fn sum(current: Option<(Vec<u8>, i64, i64)>, operand: &Value) -> Result<Value, Error> {
    match operand {
        Value::U64(_) => u64_op("sum", u64::wrapping_add, current, operand),
        Value::V8(_) | Value::Bytes(_) => apply(current, operand, None, None, false),
    }
}

/// The new value of a key after `sum`/`min`/`max` (named `name` in errors) of two `KvU64`s:
/// `f(stored, operand)`, or the operand if the key is absent. Any other type is the write's
/// error, with Deno's message.
pub(crate) fn u64_op(
    name: &str,
    f: fn(u64, u64) -> u64,
    current: Option<(Vec<u8>, i64, i64)>,
    op: &Value,
) -> Result<Value, Error> {
    let Value::U64(operand) = op else {
        return Err(mismatch(format!("Failed to perform '{name}' mutation on a non-U64 operand")));
    };
    let new = match current {
        None => *operand,
        Some((data, ENCODING_LE64, _)) => match <[u8; 8]>::try_from(data.as_slice()) {
            Ok(le) => f(u64::from_le_bytes(le), *operand),
            // The stored row is bad, not the request.
            Err(_) => {
                return Err(Error::corrupt(format!(
                    "the stored KvU64 is {} bytes long, not 8",
                    data.len()
                )))
            }
        },
        Some(_) => {
            return Err(mismatch(format!(
                "Failed to perform '{name}' mutation on a non-U64 value in the database"
            )))
        }
    };
    Ok(Value::U64(new))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v8(js: JsValue) -> Value {
        Value::V8(encode_v8(&js).unwrap())
    }
    fn row(v: Value) -> Option<(Vec<u8>, i64, i64)> {
        Some((v.to_bytes(), v.encoding(), 1))
    }
    fn num(n: f64) -> Value {
        v8(JsValue::Number(n))
    }
    fn big(n: i64) -> Value {
        v8(JsValue::BigInt(BigInt::from(n)))
    }
    fn msg(r: Result<Value, Error>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn numbers_and_bigints_add_and_respect_bounds() {
        assert_eq!(apply(None, &num(1.5), None, None, false).unwrap(), num(1.5));
        assert_eq!(apply(row(num(1.5)), &num(2.0), None, None, false).unwrap(), num(3.5));
        assert_eq!(apply(row(big(-5)), &big(7), None, None, false).unwrap(), big(2));
        assert_eq!(apply(row(big(5)), &big(7), None, Some(&big(10)), true).unwrap(), big(10));
        assert_eq!(
            apply(row(num(5.0)), &num(-7.0), Some(&num(0.0)), None, true).unwrap(),
            num(0.0)
        );
        assert_eq!(
            msg(apply(row(big(5)), &big(7), None, Some(&big(10)), false)),
            "The result of a Sum operation would exceed its range limit"
        );
        assert_eq!(
            msg(apply(row(big(5)), &big(7), Some(&num(0.0)), None, false)),
            "Min/max parameters have different types than the operand"
        );
    }

    #[test]
    fn kvu64_rules() {
        let u = Value::U64(u64::MAX);
        assert_eq!(apply(row(u.clone()), &big(2), None, None, false).unwrap(), Value::U64(1));
        assert_eq!(
            apply(row(u.clone()), &Value::U64(1), None, None, false).unwrap(),
            Value::U64(0)
        );
        assert_eq!(
            msg(apply(row(u.clone()), &num(1.0), None, None, false)),
            "Cannot sum KvU64 with Number"
        );
        assert_eq!(
            msg(apply(row(num(1.0)), &big(1), None, None, false)),
            "Cannot sum Number with BigInt"
        );
        assert_eq!(
            msg(apply(row(u), &Value::U64(1), Some(&Value::U64(0)), None, false)),
            "Cannot use min/max parameters with KvU64 operands"
        );
    }

    #[test]
    fn non_numeric_values_are_type_errors() {
        let s = v8(JsValue::from("x"));
        assert_eq!(
            msg(apply(None, &s, None, None, false)),
            "Some of the parameters are not valid V8 values"
        );
        assert_eq!(
            msg(apply(row(s), &num(1.0), None, None, false)),
            "Cannot sum a non-numeric value with Number"
        );
        assert_eq!(
            msg(apply(row(Value::Bytes(vec![1])), &num(1.0), None, None, false)),
            "Cannot sum Uint8Array with Number"
        );
        assert!(matches!(
            apply(None, &Value::V8(vec![0xff, 0x10, 0x99]), None, None, false),
            Err(Error::TypeMismatch(_))
        ));
    }
}
