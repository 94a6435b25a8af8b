//! Keys: tuples of typed parts, and their byte encoding.
//!
//! The encoding is the subset of the FoundationDB tuple layer that Deno KV uses, byte for byte,
//! so that a key written by Deno reads back here and the other way round. Keys are compared and
//! stored as their encoded bytes: the order of two keys is the order of their encodings.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use num_bigint::{BigInt, Sign};

use crate::error::Error;

pub mod syntax;

const BYTES: u8 = 0x01;
const STRING: u8 = 0x02;
const NEG_INT_LONG: u8 = 0x0b;
const INT_ZERO: u8 = 0x14;
const POS_INT_LONG: u8 = 0x1d;
const DOUBLE: u8 = 0x21;
const FALSE: u8 = 0x26;
const TRUE: u8 = 0x27;
const ESCAPE: u8 = 0xff;

/// Magnitudes of at most this many bytes use the short integer form (`0x14 ± n`).
const SHORT_INT_MAX_BYTES: usize = 8;
/// The long integer form stores its length in one byte.
pub const MAX_BIGINT_BYTES: usize = 255;

/// One element of a [`Key`].
///
/// The variants mirror the JavaScript types Deno accepts in keys. Note the integer mapping:
/// a JavaScript `number` is always an `f64` ([`KeyPart::Float`]), and a JavaScript `bigint` is
/// [`KeyPart::Int`]. The `From` impls turn Rust integers into `Int` (exact) and `f32`/`f64` into
/// `Float`, so the Deno key `["a", 1]` is `key!["a", 1.0]` in Rust and `["a", 1n]` is
/// `key!["a", 1]`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum KeyPart {
    /// A `Uint8Array`.
    Bytes(Vec<u8>),
    /// A `string`.
    String(String),
    /// A `bigint`; its magnitude must fit in 255 bytes to be encodable.
    Int(BigInt),
    /// A `number`. `NaN`s are canonicalised on encoding to the quiet NaN of their sign, as
    /// Deno does (so `NaN` and `-NaN` are two keys); `-0.0` and `0.0` are different keys.
    Float(f64),
    /// A `boolean`.
    Bool(bool),
}

impl KeyPart {
    /// The name of the JavaScript type of this part, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            KeyPart::Bytes(_) => "Uint8Array",
            KeyPart::String(_) => "string",
            KeyPart::Int(_) => "bigint",
            KeyPart::Float(_) => "number",
            KeyPart::Bool(_) => "boolean",
        }
    }

    fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        match self {
            KeyPart::Bytes(b) => {
                out.push(BYTES);
                escape_into(out, b);
                out.push(0);
            }
            KeyPart::String(s) => {
                out.push(STRING);
                escape_into(out, s.as_bytes());
                out.push(0);
            }
            KeyPart::Int(n) => encode_int(out, n)?,
            KeyPart::Float(f) => {
                out.push(DOUBLE);
                out.extend_from_slice(&encode_f64(*f));
            }
            KeyPart::Bool(false) => out.push(FALSE),
            KeyPart::Bool(true) => out.push(TRUE),
        }
        Ok(())
    }
}

/// Equality follows the encoding: `NaN == NaN` (all NaNs of one sign are one key) and
/// `-0.0 != 0.0`.
impl PartialEq for KeyPart {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for KeyPart {}

impl PartialOrd for KeyPart {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The order of the encodings (bytes < string < bigint < number < false < true).
/// An unencodable bigint (over 255 bytes) sorts by its value among the bigints.
impl Ord for KeyPart {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (KeyPart::Int(a), KeyPart::Int(b)) => a.cmp(b),
            (KeyPart::Float(a), KeyPart::Float(b)) => encode_f64(*a).cmp(&encode_f64(*b)),
            (KeyPart::Bytes(a), KeyPart::Bytes(b)) => a.cmp(b),
            (KeyPart::String(a), KeyPart::String(b)) => a.as_bytes().cmp(b.as_bytes()),
            (KeyPart::Bool(a), KeyPart::Bool(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl KeyPart {
    fn rank(&self) -> u8 {
        match self {
            KeyPart::Bytes(_) => 0,
            KeyPart::String(_) => 1,
            KeyPart::Int(_) => 2,
            KeyPart::Float(_) => 3,
            KeyPart::Bool(_) => 4,
        }
    }
}

impl Hash for KeyPart {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.rank().hash(state);
        match self {
            KeyPart::Bytes(b) => b.hash(state),
            KeyPart::String(s) => s.hash(state),
            KeyPart::Int(n) => n.hash(state),
            KeyPart::Float(f) => encode_f64(*f).hash(state),
            KeyPart::Bool(b) => b.hash(state),
        }
    }
}

impl fmt::Display for KeyPart {
    /// Renders the part the way it would be written in JavaScript: `"s"`, `12n`, `3.5`,
    /// `true`, and bytes as `b"<hex>"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyPart::Bytes(b) => write!(f, "b\"{}\"", hex::encode(b)),
            KeyPart::String(s) => write!(f, "{s:?}"),
            KeyPart::Int(n) => write!(f, "{n}n"),
            KeyPart::Float(x) if x.is_nan() => f.write_str("NaN"),
            KeyPart::Float(x) if x.is_infinite() => {
                f.write_str(if *x > 0.0 { "Infinity" } else { "-Infinity" })
            }
            KeyPart::Float(x) => write!(f, "{x:?}"),
            KeyPart::Bool(b) => write!(f, "{b}"),
        }
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for KeyPart {
            fn from(n: $t) -> Self { KeyPart::Int(BigInt::from(n)) }
        }
    )*};
}
from_int!(i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize);

impl From<BigInt> for KeyPart {
    fn from(n: BigInt) -> Self {
        KeyPart::Int(n)
    }
}
impl From<f64> for KeyPart {
    fn from(x: f64) -> Self {
        KeyPart::Float(x)
    }
}
impl From<f32> for KeyPart {
    fn from(x: f32) -> Self {
        KeyPart::Float(f64::from(x))
    }
}
impl From<bool> for KeyPart {
    fn from(b: bool) -> Self {
        KeyPart::Bool(b)
    }
}
impl From<&str> for KeyPart {
    fn from(s: &str) -> Self {
        KeyPart::String(s.to_owned())
    }
}
impl From<String> for KeyPart {
    fn from(s: String) -> Self {
        KeyPart::String(s)
    }
}
impl From<&String> for KeyPart {
    fn from(s: &String) -> Self {
        KeyPart::String(s.clone())
    }
}
impl From<Vec<u8>> for KeyPart {
    fn from(b: Vec<u8>) -> Self {
        KeyPart::Bytes(b)
    }
}
impl From<&[u8]> for KeyPart {
    fn from(b: &[u8]) -> Self {
        KeyPart::Bytes(b.to_vec())
    }
}
impl<const N: usize> From<&[u8; N]> for KeyPart {
    fn from(b: &[u8; N]) -> Self {
        KeyPart::Bytes(b.to_vec())
    }
}

/// A key: an ordered tuple of [`KeyPart`]s.
///
/// Build one with [`key!`](crate::key!) or from a `Vec<KeyPart>`. The empty key is valid for
/// reads (as a prefix it selects everything) but not for writes.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(Vec<KeyPart>);

impl Key {
    /// A key of these parts.
    pub fn new(parts: Vec<KeyPart>) -> Self {
        Key(parts)
    }

    /// The parts, first to last.
    pub fn parts(&self) -> &[KeyPart] {
        &self.0
    }

    /// Consumes the key, giving its parts.
    pub fn into_parts(self) -> Vec<KeyPart> {
        self.0
    }

    /// Appends a part.
    pub fn push(&mut self, part: impl Into<KeyPart>) {
        self.0.push(part.into());
    }

    /// This key with one more part at the end.
    pub fn with(mut self, part: impl Into<KeyPart>) -> Self {
        self.push(part);
        self
    }

    /// Number of parts.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for the empty key `[]`.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True if `prefix`'s parts are the first parts of this key (a key starts with itself).
    pub fn starts_with(&self, prefix: &Key) -> bool {
        self.0.starts_with(&prefix.0)
    }

    /// The byte encoding Deno uses. Fails only for a bigint whose magnitude needs more than
    /// 255 bytes.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(16 * self.0.len());
        for part in &self.0 {
            part.encode_into(&mut out)?;
        }
        Ok(out)
    }

    /// Parses an encoded key. Every byte string that [`Key::encode`] produces decodes to an
    /// equal key; anything else (unknown tag, truncated part, invalid UTF-8 in a string) is
    /// [`Error::InvalidEncodedKey`].
    pub fn decode(mut bytes: &[u8]) -> Result<Key, Error> {
        let mut parts = Vec::new();
        while let Some((&tag, rest)) = bytes.split_first() {
            let (part, rest) = decode_part(tag, rest)?;
            parts.push(part);
            bytes = rest;
        }
        Ok(Key(parts))
    }
}

impl fmt::Display for Key {
    /// `["users", 12n, 3.5, true]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{p}")?;
        }
        f.write_str("]")
    }
}

impl From<Vec<KeyPart>> for Key {
    fn from(parts: Vec<KeyPart>) -> Self {
        Key(parts)
    }
}

impl FromIterator<KeyPart> for Key {
    fn from_iter<I: IntoIterator<Item = KeyPart>>(iter: I) -> Self {
        Key(iter.into_iter().collect())
    }
}

/// Builds a [`Key`] from parts convertible into [`KeyPart`].
///
/// ```
/// use openkv_core::{key, KeyPart};
/// let k = key!["users", 42, 3.5, true, b"\x00\x01"];
/// assert_eq!(k.parts()[1], KeyPart::from(42));
/// assert_eq!(k.to_string(), r#"["users", 42n, 3.5, true, b"0001"]"#);
/// ```
#[macro_export]
macro_rules! key {
    () => { $crate::Key::default() };
    ($($part:expr),+ $(,)?) => {
        $crate::Key::new(vec![$($crate::KeyPart::from($part)),+])
    };
}

fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(ESCAPE);
        }
    }
}

/// Order-preserving f64 bits: positive numbers get the sign bit flipped, negative numbers
/// all bits flipped; NaNs collapse to the canonical quiet NaN of their sign first.
fn encode_f64(x: f64) -> [u8; 8] {
    let bits = if x.is_nan() {
        if x.is_sign_negative() {
            0xfff8_0000_0000_0000u64
        } else {
            0x7ff8_0000_0000_0000u64
        }
    } else {
        x.to_bits()
    };
    let u = if bits >> 63 == 1 { !bits } else { bits ^ (1 << 63) };
    u.to_be_bytes()
}

fn decode_f64(b: [u8; 8]) -> f64 {
    let u = u64::from_be_bytes(b);
    let bits = if u >> 63 == 1 { u ^ (1 << 63) } else { !u };
    f64::from_bits(bits)
}

fn encode_int(out: &mut Vec<u8>, n: &BigInt) -> Result<(), Error> {
    let (sign, mut mag) = n.to_bytes_be();
    if sign == Sign::NoSign {
        out.push(INT_ZERO);
        return Ok(());
    }
    let len = mag.len();
    if len > MAX_BIGINT_BYTES {
        return Err(Error::InvalidKey(format!(
            "bigint key part needs {len} bytes; at most {MAX_BIGINT_BYTES} are encodable"
        )));
    }
    if sign == Sign::Minus {
        if len <= SHORT_INT_MAX_BYTES {
            out.push(INT_ZERO - len as u8);
        } else {
            out.push(NEG_INT_LONG);
            out.push(len as u8 ^ 0xff);
        }
        for b in &mut mag {
            *b = !*b;
        }
    } else if len <= SHORT_INT_MAX_BYTES {
        out.push(INT_ZERO + len as u8);
    } else {
        out.push(POS_INT_LONG);
        out.push(len as u8);
    }
    out.extend_from_slice(&mag);
    Ok(())
}

fn bad(msg: &str) -> Error {
    Error::InvalidEncodedKey(msg.to_owned())
}

fn take(input: &[u8], n: usize) -> Result<(&[u8], &[u8]), Error> {
    if input.len() < n {
        return Err(bad("truncated key part"));
    }
    Ok(input.split_at(n))
}

/// Reads an escaped, 0x00-terminated byte string.
fn take_escaped(input: &[u8]) -> Result<(Vec<u8>, &[u8]), Error> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        i += 1;
        if b == 0 {
            if input.get(i) == Some(&ESCAPE) {
                out.push(0);
                i += 1;
            } else {
                return Ok((out, &input[i..]));
            }
        } else {
            out.push(b);
        }
    }
    Err(bad("unterminated bytes or string key part"))
}

fn decode_part(tag: u8, rest: &[u8]) -> Result<(KeyPart, &[u8]), Error> {
    let short_neg = INT_ZERO - SHORT_INT_MAX_BYTES as u8;
    let short_pos = INT_ZERO + SHORT_INT_MAX_BYTES as u8;
    Ok(match tag {
        BYTES => {
            let (b, rest) = take_escaped(rest)?;
            (KeyPart::Bytes(b), rest)
        }
        STRING => {
            let (b, rest) = take_escaped(rest)?;
            let s = String::from_utf8(b).map_err(|_| bad("string key part is not UTF-8"))?;
            (KeyPart::String(s), rest)
        }
        INT_ZERO => (KeyPart::Int(BigInt::default()), rest),
        t if (INT_ZERO + 1..=short_pos).contains(&t) => {
            let (mag, rest) = take(rest, usize::from(t - INT_ZERO))?;
            (KeyPart::Int(BigInt::from_bytes_be(Sign::Plus, mag)), rest)
        }
        t if (short_neg..INT_ZERO).contains(&t) => {
            let (mag, rest) = take(rest, usize::from(INT_ZERO - t))?;
            (KeyPart::Int(negative(mag)), rest)
        }
        POS_INT_LONG => {
            let (len, rest) = take(rest, 1)?;
            let (mag, rest) = take(rest, usize::from(len[0]))?;
            (KeyPart::Int(BigInt::from_bytes_be(Sign::Plus, mag)), rest)
        }
        NEG_INT_LONG => {
            let (len, rest) = take(rest, 1)?;
            let (mag, rest) = take(rest, usize::from(len[0] ^ 0xff))?;
            (KeyPart::Int(negative(mag)), rest)
        }
        DOUBLE => {
            let (b, rest) = take(rest, 8)?;
            let mut arr = [0u8; 8];
            arr.copy_from_slice(b);
            (KeyPart::Float(decode_f64(arr)), rest)
        }
        FALSE => (KeyPart::Bool(false), rest),
        TRUE => (KeyPart::Bool(true), rest),
        other => {
            return Err(Error::InvalidEncodedKey(format!("unknown key part tag 0x{other:02x}")))
        }
    })
}

fn negative(complement: &[u8]) -> BigInt {
    let mag: Vec<u8> = complement.iter().map(|b| !b).collect();
    -BigInt::from_bytes_be(Sign::Plus, &mag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(k: &Key) -> Vec<u8> {
        k.encode().unwrap()
    }

    #[test]
    fn hand_written_vectors() {
        assert_eq!(enc(&key!["hello"]), b"\x02hello\x00");
        assert_eq!(enc(&key![b"\x01\x02\x00\x07"]), b"\x01\x01\x02\x00\xff\x07\x00");
        assert_eq!(enc(&key![0]), [0x14]);
        assert_eq!(enc(&key![1]), [0x15, 0x01]);
        assert_eq!(enc(&key![-1]), [0x13, 0xfe]);
        assert_eq!(enc(&key![256]), [0x16, 0x01, 0x00]);
        assert_eq!(enc(&key![u64::MAX]), [0x1c, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        // 2^64 needs nine bytes: the long form with an explicit length.
        let big: BigInt = BigInt::from(u64::MAX) + 1;
        assert_eq!(enc(&key![big.clone()]), [0x1d, 0x09, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            enc(&key![-big]),
            [0x0b, 0x09 ^ 0xff, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(enc(&key![1.0]), [0x21, 0xbf, 0xf0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(enc(&key![-0.0]), [0x21, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(enc(&key![0.0]), [0x21, 0x80, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(enc(&key![f64::NAN]), [0x21, 0xff, 0xf8, 0, 0, 0, 0, 0, 0]);
        assert_eq!(enc(&key![false, true]), [0x26, 0x27]);
        // The key Deno wrote in our probe: ["a", 1n, 3.5, true, Uint8Array [0, 1]].
        assert_eq!(
            hex::encode(enc(&key!["a", 1, 3.5, true, b"\x00\x01"])),
            "026100150121c00c000000000000270100ff0100"
        );
    }

    #[test]
    fn nan_payloads_are_one_key_and_zeroes_are_two() {
        let a = KeyPart::Float(f64::from_bits(0x7ff8_0000_0000_0001));
        let b = KeyPart::Float(f64::NAN);
        assert_eq!(a, b);
        assert_ne!(KeyPart::Float(0.0), KeyPart::Float(-0.0));
    }

    #[test]
    fn too_big_bigint_is_an_error() {
        let n: BigInt = BigInt::from(1) << (8 * 255);
        let err = key![n].encode().unwrap_err();
        assert!(matches!(err, Error::InvalidKey(_)), "{err}");
        let ok: BigInt = (BigInt::from(1) << (8 * 255)) - 1;
        let encoded = key![ok.clone()].encode().unwrap();
        assert_eq!(Key::decode(&encoded).unwrap(), key![ok]);
    }

    #[test]
    fn malformed_encodings_are_errors() {
        for bad in [
            &[0x02, b'a'][..],
            &[0x99],
            &[0x21, 0, 0],
            &[0x15],
            &[0x1d],
            &[0x1d, 3, 1],
            &[0x02, 0xff, 0x00],
        ] {
            let err = Key::decode(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidEncodedKey(_)), "{bad:?}: {err}");
        }
    }
}
