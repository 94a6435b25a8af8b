//! V8's `ValueSerializer` wire format, read and written directly to and from [`JsValue`].
//!
//! Reads format versions 13 to 16 (Deno 2.9 writes 16; Deno 1.x wrote 13–15). Writes version
//! 15, which every Deno since 1.32 reads; the tags we write mean the same in 15 and 16.
//! Untrusted input is safe: every length is checked against the bytes that are left before
//! anything is allocated, nesting is limited to [`MAX_DEPTH`], and object references must point
//! backwards. Anything malformed is a [`V8Error`], never a panic.

use num_bigint::{BigInt, Sign};

use crate::value::{ErrorKind, JsArray, JsError, JsValue, ViewKind};

/// The format version [`encode_v8`] writes.
pub const V8_WRITE_VERSION: u32 = 15;
const MIN_READ_VERSION: u32 = 13;
const MAX_READ_VERSION: u32 = 16;
/// What Deno's serializer delegate writes after the host-object tag for a cloneable web
/// object (`Blob`, `CryptoKey`, …), before its state object; any other number indexes a
/// transfer list, which a stored value never has.
const CLONEABLE_HOST_OBJECT: u32 = u32::MAX;
/// How deeply values may nest (objects in arrays in maps …), reading or writing.
pub const MAX_DEPTH: usize = 512;

mod tag {
    pub const VERSION: u8 = 0xFF;
    pub const PADDING: u8 = 0x00;
    pub const VERIFY_OBJECT_COUNT: u8 = b'?';
    pub const THE_HOLE: u8 = b'-';
    pub const UNDEFINED: u8 = b'_';
    pub const NULL: u8 = b'0';
    pub const TRUE: u8 = b'T';
    pub const FALSE: u8 = b'F';
    pub const INT32: u8 = b'I';
    pub const UINT32: u8 = b'U';
    pub const DOUBLE: u8 = b'N';
    pub const BIGINT: u8 = b'Z';
    pub const UTF8_STRING: u8 = b'S';
    pub const ONE_BYTE_STRING: u8 = b'"';
    pub const TWO_BYTE_STRING: u8 = b'c';
    pub const OBJECT_REFERENCE: u8 = b'^';
    pub const BEGIN_OBJECT: u8 = b'o';
    pub const END_OBJECT: u8 = b'{';
    pub const BEGIN_SPARSE_ARRAY: u8 = b'a';
    pub const END_SPARSE_ARRAY: u8 = b'@';
    pub const BEGIN_DENSE_ARRAY: u8 = b'A';
    pub const END_DENSE_ARRAY: u8 = b'$';
    pub const DATE: u8 = b'D';
    pub const TRUE_OBJECT: u8 = b'y';
    pub const FALSE_OBJECT: u8 = b'x';
    pub const NUMBER_OBJECT: u8 = b'n';
    pub const BIGINT_OBJECT: u8 = b'z';
    pub const STRING_OBJECT: u8 = b's';
    pub const REGEXP: u8 = b'R';
    pub const BEGIN_MAP: u8 = b';';
    pub const END_MAP: u8 = b':';
    pub const BEGIN_SET: u8 = b'\'';
    pub const END_SET: u8 = b',';
    pub const ARRAY_BUFFER: u8 = b'B';
    pub const RESIZABLE_ARRAY_BUFFER: u8 = b'~';
    pub const ARRAY_BUFFER_VIEW: u8 = b'V';
    pub const ERROR: u8 = b'r';
    // Tags of things Deno KV cannot store (they need a live isolate).
    pub const ARRAY_BUFFER_TRANSFER: u8 = b't';
    pub const SHARED_ARRAY_BUFFER: u8 = b'u';
    pub const SHARED_OBJECT: u8 = b'p';
    pub const WASM_MODULE_TRANSFER: u8 = b'w';
    pub const WASM_MEMORY_TRANSFER: u8 = b'm';
    pub const HOST_OBJECT: u8 = b'\\';
}

mod error_tag {
    pub const EVAL_ERROR: u8 = b'E';
    pub const RANGE_ERROR: u8 = b'R';
    pub const REFERENCE_ERROR: u8 = b'F';
    pub const SYNTAX_ERROR: u8 = b'S';
    pub const TYPE_ERROR: u8 = b'T';
    pub const URI_ERROR: u8 = b'U';
    pub const MESSAGE: u8 = b'm';
    pub const CAUSE: u8 = b'c';
    pub const STACK: u8 = b's';
    pub const END: u8 = b'.';
}

/// Why V8 bytes could not be read, or a value could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum V8Error {
    /// The bytes do not start with V8's version header (`0xFF <version>`).
    #[error("not V8-serialized data: missing the 0xFF version header")]
    MissingHeader,
    /// A format version this build does not read.
    #[error("V8 serialization format version {0} is not supported (supported: 13 to 16)")]
    UnsupportedVersion(u32),
    /// The data ends in the middle of a value.
    #[error("V8 data ends unexpectedly at byte {0}")]
    UnexpectedEnd(usize),
    /// A byte that is not a valid tag where it stands.
    #[error("invalid V8 tag 0x{tag:02x} at byte {at}")]
    InvalidTag {
        /// The byte.
        tag: u8,
        /// Its offset.
        at: usize,
    },
    /// A value V8 can serialize but Deno KV cannot store (SharedArrayBuffer, WebAssembly,
    /// transferred host objects and buffers).
    #[error("V8 data holds a {what} (at byte {at}), which Deno KV values cannot contain")]
    Unsupported {
        /// What it is.
        what: &'static str,
        /// Its offset.
        at: usize,
    },
    /// An object reference to an id not yet defined.
    #[error("V8 object reference to id {0}, which is not defined before it")]
    InvalidReference(u32),
    /// Structurally wrong data (a count that does not match, a view outside its buffer, …).
    #[error("malformed V8 data: {0}")]
    Malformed(String),
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("the value nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// Bytes left over after the value.
    #[error("{0} unexpected bytes after the V8 value")]
    TrailingBytes(usize),
}

// ---------------------------------------------------------------------------------------------
// Reading

/// Decodes V8 `ValueSerializer` bytes (a `Value::V8` as Deno stores it).
pub fn decode_v8(bytes: &[u8]) -> Result<JsValue, V8Error> {
    let mut r =
        Reader { buf: bytes, pos: 0, version: 0, next_id: 0, buffers: Vec::new(), depth: 0 };
    if r.buf.first() != Some(&tag::VERSION) {
        return Err(V8Error::MissingHeader);
    }
    r.pos = 1;
    r.version = r.varint()?;
    if !(MIN_READ_VERSION..=MAX_READ_VERSION).contains(&r.version) {
        return Err(V8Error::UnsupportedVersion(r.version));
    }
    let value = r.value()?;
    // Trailing padding is harmless; anything else is not ours to ignore.
    let rest = &r.buf[r.pos..];
    let garbage = rest.iter().filter(|&&b| b != tag::PADDING).count();
    if garbage > 0 {
        return Err(V8Error::TrailingBytes(rest.len()));
    }
    Ok(value)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    version: u32,
    /// The id the next object read gets.
    next_id: u32,
    /// Ids and byte lengths of the array buffers read so far (a view may follow a reference
    /// to one, and must fit it).
    buffers: Vec<(u32, usize)>,
    depth: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, V8Error> {
        let b = *self.buf.get(self.pos).ok_or(V8Error::UnexpectedEnd(self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    fn bytes(&mut self, n: usize) -> Result<&[u8], V8Error> {
        if self.buf.len() - self.pos < n {
            return Err(V8Error::UnexpectedEnd(self.buf.len()));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn varint(&mut self) -> Result<u32, V8Error> {
        let v = self.varint64()?;
        u32::try_from(v).map_err(|_| V8Error::Malformed(format!("varint {v} exceeds 32 bits")))
    }

    fn varint64(&mut self) -> Result<u64, V8Error> {
        let mut v: u64 = 0;
        let mut shift = 0;
        loop {
            let b = self.byte()?;
            if shift < 64 {
                v |= u64::from(b & 0x7f) << shift;
            }
            shift += 7;
            if b & 0x80 == 0 {
                return Ok(v);
            }
            if shift > 70 {
                return Err(V8Error::Malformed("varint longer than 10 bytes".into()));
            }
        }
    }

    fn double(&mut self) -> Result<f64, V8Error> {
        let b = self.bytes(8)?;
        let b = b.try_into().map_err(|_| V8Error::UnexpectedEnd(self.pos))?;
        Ok(f64::from_le_bytes(b))
    }

    /// The next tag, skipping padding.
    fn tag(&mut self) -> Result<u8, V8Error> {
        loop {
            let t = self.byte()?;
            if t != tag::PADDING {
                return Ok(t);
            }
        }
    }

    fn peek_tag(&self) -> Option<u8> {
        self.buf[self.pos..].iter().copied().find(|&b| b != tag::PADDING)
    }

    fn consume_tag(&mut self, expected: u8) -> bool {
        if self.peek_tag() != Some(expected) {
            return false;
        }
        // The peek saw the tag, so taking it succeeds.
        self.tag().is_ok()
    }

    fn new_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// A length about to be used to allocate or loop: at most the bytes left (every element
    /// takes at least one byte), so hostile lengths cannot make us allocate.
    fn bounded(&self, n: u32) -> Result<usize, V8Error> {
        let n = n as usize;
        if n > self.buf.len() - self.pos {
            return Err(V8Error::UnexpectedEnd(self.buf.len()));
        }
        Ok(n)
    }

    fn value(&mut self) -> Result<JsValue, V8Error> {
        if self.depth >= MAX_DEPTH {
            return Err(V8Error::TooDeep);
        }
        self.depth += 1;
        let v = grow_stack(|| self.value_inner());
        self.depth -= 1;
        let v = v?;
        // A view follows the buffer it views (a new one, or a reference to one).
        let is_buffer = match &v {
            JsValue::ArrayBuffer(_) => true,
            JsValue::Ref(id) => self.buffers.iter().any(|(b, _)| b == id),
            _ => false,
        };
        if is_buffer && self.consume_tag(tag::ARRAY_BUFFER_VIEW) {
            return self.view(v);
        }
        Ok(v)
    }

    fn value_inner(&mut self) -> Result<JsValue, V8Error> {
        let at = self.pos;
        let t = self.tag()?;
        Ok(match t {
            tag::VERIFY_OBJECT_COUNT => {
                self.varint()?;
                return self.value_inner();
            }
            tag::UNDEFINED => JsValue::Undefined,
            tag::NULL => JsValue::Null,
            tag::TRUE => JsValue::Bool(true),
            tag::FALSE => JsValue::Bool(false),
            tag::INT32 => JsValue::Number(f64::from(zigzag_decode(self.varint()?))),
            tag::UINT32 => JsValue::Number(f64::from(self.varint()?)),
            tag::DOUBLE => JsValue::Number(self.double()?),
            tag::BIGINT => JsValue::BigInt(self.bigint()?),
            tag::ONE_BYTE_STRING | tag::TWO_BYTE_STRING | tag::UTF8_STRING => {
                self.string_body(t)?
            }
            tag::OBJECT_REFERENCE => {
                let id = self.varint()?;
                if id >= self.next_id {
                    return Err(V8Error::InvalidReference(id));
                }
                JsValue::Ref(id)
            }
            tag::BEGIN_OBJECT => {
                self.new_id();
                let props = self.properties(tag::END_OBJECT)?;
                let n = self.varint()? as usize;
                if n != props.len() {
                    return Err(count_mismatch("object properties", n, props.len()));
                }
                JsValue::Object(props)
            }
            tag::BEGIN_DENSE_ARRAY => {
                self.new_id();
                let len = self.varint()?;
                let len = self.bounded(len)?;
                let mut items = Vec::with_capacity(len);
                for _ in 0..len {
                    if self.consume_tag(tag::THE_HOLE) {
                        items.push(None);
                    } else {
                        items.push(Some(self.value()?));
                    }
                }
                let properties = self.properties(tag::END_DENSE_ARRAY)?;
                let n = self.varint()? as usize;
                let len2 = self.varint()? as usize;
                if n != properties.len() || len2 != len {
                    return Err(V8Error::Malformed("dense array trailer does not match".into()));
                }
                JsValue::Array(JsArray { items, properties })
            }
            tag::BEGIN_SPARSE_ARRAY => {
                self.new_id();
                let length = self.varint()?;
                let mut elements = Vec::new();
                let mut properties = Vec::new();
                let mut count = 0usize;
                while !self.consume_tag(tag::END_SPARSE_ARRAY) {
                    let key = self.value()?;
                    let value = self.value()?;
                    count += 1;
                    match array_index(&key) {
                        Some(i) if i < length => elements.push((i, value)),
                        _ => properties.push((property_key(key, self.pos)?, value)),
                    }
                }
                let n = self.varint()? as usize;
                let len2 = self.varint()?;
                if n != count || len2 != length {
                    return Err(V8Error::Malformed("sparse array trailer does not match".into()));
                }
                JsValue::SparseArray { length, elements, properties }
            }
            tag::DATE => {
                self.new_id();
                JsValue::Date(self.double()?)
            }
            tag::TRUE_OBJECT | tag::FALSE_OBJECT => {
                self.new_id();
                JsValue::BooleanObject(t == tag::TRUE_OBJECT)
            }
            tag::NUMBER_OBJECT => {
                self.new_id();
                JsValue::NumberObject(self.double()?)
            }
            tag::BIGINT_OBJECT => {
                self.new_id();
                JsValue::BigIntObject(self.bigint()?)
            }
            tag::STRING_OBJECT => {
                self.new_id();
                match self.string()? {
                    JsValue::String(s) => JsValue::StringObject(s),
                    _ => {
                        return Err(V8Error::Unsupported {
                            what: "String object holding lone surrogates",
                            at,
                        })
                    }
                }
            }
            tag::REGEXP => {
                self.new_id();
                let source = match self.string()? {
                    JsValue::String(s) => s,
                    JsValue::StringUtf16(u) => String::from_utf16_lossy(&u),
                    _ => unreachable!("string() returns strings"),
                };
                let flags = self.varint()?;
                JsValue::RegExp { source, flags }
            }
            tag::BEGIN_MAP => {
                self.new_id();
                let mut entries = Vec::new();
                while !self.consume_tag(tag::END_MAP) {
                    let k = self.value()?;
                    let v = self.value()?;
                    entries.push((k, v));
                }
                let n = self.varint()? as usize;
                if n != 2 * entries.len() {
                    return Err(count_mismatch("map entries ×2", n, 2 * entries.len()));
                }
                JsValue::Map(entries)
            }
            tag::BEGIN_SET => {
                self.new_id();
                let mut values = Vec::new();
                while !self.consume_tag(tag::END_SET) {
                    values.push(self.value()?);
                }
                let n = self.varint()? as usize;
                if n != values.len() {
                    return Err(count_mismatch("set values", n, values.len()));
                }
                JsValue::Set(values)
            }
            tag::ARRAY_BUFFER => {
                let id = self.new_id();
                let len = self.varint()?;
                let len = self.bounded(len)?;
                self.buffers.push((id, len));
                JsValue::ArrayBuffer(self.bytes(len)?.to_vec())
            }
            tag::RESIZABLE_ARRAY_BUFFER => {
                let id = self.new_id();
                let len = self.varint()?;
                let _max = self.varint()?;
                let len = self.bounded(len)?;
                self.buffers.push((id, len));
                JsValue::ArrayBuffer(self.bytes(len)?.to_vec())
            }
            tag::ERROR => {
                self.new_id();
                JsValue::Error(Box::new(self.error()?))
            }
            tag::ARRAY_BUFFER_VIEW => {
                return Err(V8Error::Malformed(format!(
                    "an ArrayBufferView at byte {at} does not follow an ArrayBuffer"
                )))
            }
            tag::SHARED_ARRAY_BUFFER => {
                return Err(V8Error::Unsupported { what: "SharedArrayBuffer", at })
            }
            tag::ARRAY_BUFFER_TRANSFER => {
                return Err(V8Error::Unsupported { what: "transferred ArrayBuffer", at })
            }
            tag::SHARED_OBJECT => return Err(V8Error::Unsupported { what: "shared object", at }),
            tag::WASM_MODULE_TRANSFER | tag::WASM_MEMORY_TRANSFER => {
                return Err(V8Error::Unsupported { what: "WebAssembly object", at })
            }
            tag::HOST_OBJECT => {
                // Deno's cloneable web objects (`JsValue::HostObject`): the host object takes an
                // id (V8 numbers it before asking the delegate), then the marker and the state.
                self.new_id();
                if self.varint()? != CLONEABLE_HOST_OBJECT {
                    return Err(V8Error::Unsupported { what: "transferred host object", at });
                }
                JsValue::HostObject(Box::new(self.value()?))
            }
            other => return Err(V8Error::InvalidTag { tag: other, at }),
        })
    }

    /// A string value (tag included), for places where only a string may stand.
    fn string(&mut self) -> Result<JsValue, V8Error> {
        let at = self.pos;
        match self.tag()? {
            t @ (tag::ONE_BYTE_STRING | tag::TWO_BYTE_STRING | tag::UTF8_STRING) => {
                self.string_body(t)
            }
            other => Err(V8Error::InvalidTag { tag: other, at }),
        }
    }

    fn string_body(&mut self, t: u8) -> Result<JsValue, V8Error> {
        let len = self.varint()?;
        let len = self.bounded(len)?;
        let raw = self.bytes(len)?;
        Ok(match t {
            // Latin-1: each byte is the code point; ASCII (the common case) is already UTF-8.
            tag::ONE_BYTE_STRING if raw.is_ascii() => {
                JsValue::String(String::from_utf8_lossy(raw).into_owned())
            }
            tag::ONE_BYTE_STRING => JsValue::String(raw.iter().map(|&b| char::from(b)).collect()),
            tag::UTF8_STRING => JsValue::String(
                std::str::from_utf8(raw)
                    .map_err(|_| V8Error::Malformed("invalid UTF-8 string".into()))?
                    .to_owned(),
            ),
            _ => {
                if len % 2 != 0 {
                    return Err(V8Error::Malformed("two-byte string of odd length".into()));
                }
                let units: Vec<u16> =
                    raw.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
                match String::from_utf16(&units) {
                    Ok(s) => JsValue::String(s),
                    Err(_) => JsValue::StringUtf16(units),
                }
            }
        })
    }

    fn bigint(&mut self) -> Result<BigInt, V8Error> {
        let bitfield = self.varint()?;
        let negative = bitfield & 1 == 1;
        let len = self.bounded(bitfield >> 1)?;
        let digits = self.bytes(len)?;
        let magnitude = BigInt::from_bytes_le(Sign::Plus, digits);
        Ok(if negative { -magnitude } else { magnitude })
    }

    /// `key, value` pairs up to `end`; keys must be strings or numbers.
    fn properties(&mut self, end: u8) -> Result<Vec<(String, JsValue)>, V8Error> {
        let mut props = Vec::new();
        while !self.consume_tag(end) {
            let at = self.pos;
            let key = self.value()?;
            let key = property_key(key, at)?;
            let value = self.value()?;
            props.push((key, value));
        }
        Ok(props)
    }

    fn view(&mut self, buffer: JsValue) -> Result<JsValue, V8Error> {
        let at = self.pos;
        let sub = self.varint()?;
        let kind = match u8::try_from(sub).unwrap_or(0) {
            b'b' => ViewKind::Int8,
            b'B' => ViewKind::Uint8,
            b'C' => ViewKind::Uint8Clamped,
            b'w' => ViewKind::Int16,
            b'W' => ViewKind::Uint16,
            b'd' => ViewKind::Int32,
            b'D' => ViewKind::Uint32,
            b'h' => ViewKind::Float16,
            b'f' => ViewKind::Float32,
            b'F' => ViewKind::Float64,
            b'q' => ViewKind::BigInt64,
            b'Q' => ViewKind::BigUint64,
            b'?' => ViewKind::DataView,
            _ => return Err(V8Error::Malformed(format!("unknown view type {sub} at byte {at}"))),
        };
        let byte_offset = self.varint()?;
        let byte_length = self.varint()?;
        if self.version >= 14 {
            let _flags = self.varint()?;
        }
        self.new_id();
        let buffer_len = match &buffer {
            JsValue::ArrayBuffer(b) => b.len(),
            JsValue::Ref(id) => self.buffers.iter().find(|(b, _)| b == id).map_or(0, |(_, l)| *l),
            _ => 0,
        };
        if u64::from(byte_offset) + u64::from(byte_length) > buffer_len as u64 {
            return Err(V8Error::Malformed(format!(
                "{} of {byte_length} bytes at offset {byte_offset} exceeds its {buffer_len}-byte \
                 buffer",
                kind.name()
            )));
        }
        if byte_length % kind.element_size() != 0 {
            return Err(V8Error::Malformed(format!(
                "{} byte length {byte_length} is not a multiple of {}",
                kind.name(),
                kind.element_size()
            )));
        }
        Ok(JsValue::View { kind, buffer: Box::new(buffer), byte_offset, byte_length })
    }

    fn error(&mut self) -> Result<JsError, V8Error> {
        let mut e = JsError::default();
        loop {
            let at = self.pos;
            match self.varint()? as u8 {
                error_tag::EVAL_ERROR => e.kind = ErrorKind::EvalError,
                error_tag::RANGE_ERROR => e.kind = ErrorKind::RangeError,
                error_tag::REFERENCE_ERROR => e.kind = ErrorKind::ReferenceError,
                error_tag::SYNTAX_ERROR => e.kind = ErrorKind::SyntaxError,
                error_tag::TYPE_ERROR => e.kind = ErrorKind::TypeError,
                error_tag::URI_ERROR => e.kind = ErrorKind::UriError,
                error_tag::MESSAGE => e.message = Some(lossy(self.string()?)),
                error_tag::STACK => e.stack = Some(lossy(self.string()?)),
                error_tag::CAUSE => e.cause = Some(self.value()?),
                error_tag::END => return Ok(e),
                other => return Err(V8Error::InvalidTag { tag: other, at }),
            }
        }
    }
}

/// Runs one level of a recursive walk, first moving to a fresh stack segment if less than
/// 64 KiB of the current one is left. [`MAX_DEPTH`] levels then never overflow a thread's
/// stack, however small its frames are allowed to be (debug builds) or however small the
/// thread's stack is.
pub(crate) fn grow_stack<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(64 * 1024, 1024 * 1024, f)
}

fn lossy(s: JsValue) -> String {
    match s {
        JsValue::String(s) => s,
        JsValue::StringUtf16(u) => String::from_utf16_lossy(&u),
        _ => String::new(),
    }
}

fn count_mismatch(what: &str, said: usize, found: usize) -> V8Error {
    V8Error::Malformed(format!("{what}: the trailer says {said}, the data holds {found}"))
}

fn zigzag_decode(n: u32) -> i32 {
    ((n >> 1) as i32) ^ -((n & 1) as i32)
}

fn zigzag_encode(n: i32) -> u32 {
    ((n << 1) ^ (n >> 31)) as u32
}

/// The array index a key stands for, if it is one (`0 ..= 2^32 - 2`).
fn array_index(key: &JsValue) -> Option<u32> {
    match key {
        JsValue::Number(n) if *n >= 0.0 && n.fract() == 0.0 && *n < 4_294_967_295.0 => {
            Some(*n as u32)
        }
        JsValue::String(s) => {
            let i: u32 = s.parse().ok()?;
            (i < u32::MAX && i.to_string() == *s).then_some(i)
        }
        _ => None,
    }
}

/// A property key as JavaScript sees it: a string (numbers become their decimal form).
fn property_key(key: JsValue, at: usize) -> Result<String, V8Error> {
    match key {
        JsValue::String(s) => Ok(s),
        JsValue::StringUtf16(u) => Ok(String::from_utf16_lossy(&u)),
        JsValue::Number(n) if n.fract() == 0.0 && n.abs() < 1e21 => Ok(format!("{}", n as i64)),
        JsValue::Number(n) => Ok(format!("{n}")),
        _ => Err(V8Error::Malformed(format!(
            "a property key at byte {at} is not a string or number"
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Encodes a value as V8 `ValueSerializer` bytes (format version 15), as Deno would store it.
///
/// Fails on a `Ref` to an id not yet written, a view whose buffer is not an `ArrayBuffer` (or a
/// `Ref` to one), a view outside its buffer, or nesting deeper than [`MAX_DEPTH`].
pub fn encode_v8(value: &JsValue) -> Result<Vec<u8>, V8Error> {
    let mut w = Writer { out: Vec::with_capacity(64), next_id: 0, buffers: Vec::new(), depth: 0 };
    w.out.push(tag::VERSION);
    w.varint(u64::from(V8_WRITE_VERSION));
    w.value(value)?;
    Ok(w.out)
}

struct Writer {
    out: Vec<u8>,
    next_id: u32,
    buffers: Vec<(u32, usize)>,
    depth: usize,
}

impl Writer {
    fn varint(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.out.push(b);
                return;
            }
            self.out.push(b | 0x80);
        }
    }

    fn len(&mut self, n: usize) -> Result<(), V8Error> {
        let n =
            u32::try_from(n).map_err(|_| V8Error::Malformed(format!("length {n} exceeds 2^32")))?;
        self.varint(u64::from(n));
        Ok(())
    }

    fn double(&mut self, x: f64) {
        self.out.extend_from_slice(&x.to_le_bytes());
    }

    fn number(&mut self, x: f64) {
        // Small integers as Smis, like V8 (but never -0, which only a double can hold).
        if x.fract() == 0.0
            && x >= f64::from(i32::MIN)
            && x <= f64::from(i32::MAX)
            && !(x == 0.0 && x.is_sign_negative())
        {
            self.out.push(tag::INT32);
            self.varint(u64::from(zigzag_encode(x as i32)));
        } else {
            self.out.push(tag::DOUBLE);
            self.double(x);
        }
    }

    fn string(&mut self, s: &str) -> Result<(), V8Error> {
        if s.is_ascii() {
            self.out.push(tag::ONE_BYTE_STRING);
            self.len(s.len())?;
            self.out.extend_from_slice(s.as_bytes());
            Ok(())
        } else if s.chars().all(|c| (c as u32) < 0x100) {
            self.out.push(tag::ONE_BYTE_STRING);
            self.len(s.chars().count())?;
            self.out.extend(s.chars().map(|c| c as u8));
            Ok(())
        } else {
            let units: Vec<u16> = s.encode_utf16().collect();
            self.utf16(&units)
        }
    }

    fn utf16(&mut self, units: &[u16]) -> Result<(), V8Error> {
        let byte_len = units.len() * 2;
        // V8 aligns two-byte payloads to an even offset with one padding byte.
        if (self.out.len() + 1 + varint_size(byte_len as u64)) % 2 == 1 {
            self.out.push(tag::PADDING);
        }
        self.out.push(tag::TWO_BYTE_STRING);
        self.len(byte_len)?;
        for u in units {
            self.out.extend_from_slice(&u.to_le_bytes());
        }
        Ok(())
    }

    fn bigint_body(&mut self, n: &BigInt) -> Result<(), V8Error> {
        let (sign, mut digits) = n.to_bytes_le();
        if sign == Sign::NoSign {
            digits.clear();
        }
        // Whole 64-bit digits.
        let padded = digits.len().div_ceil(8) * 8;
        digits.resize(padded, 0);
        let bitfield = (padded as u64) << 1 | u64::from(sign == Sign::Minus);
        self.varint(bitfield);
        self.out.extend_from_slice(&digits);
        Ok(())
    }

    fn new_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn properties(&mut self, props: &[(String, JsValue)]) -> Result<(), V8Error> {
        for (k, v) in props {
            self.string(k)?;
            self.value(v)?;
        }
        Ok(())
    }

    fn value(&mut self, v: &JsValue) -> Result<(), V8Error> {
        if self.depth >= MAX_DEPTH {
            return Err(V8Error::TooDeep);
        }
        self.depth += 1;
        let r = grow_stack(|| self.value_inner(v));
        self.depth -= 1;
        r
    }

    fn value_inner(&mut self, v: &JsValue) -> Result<(), V8Error> {
        match v {
            JsValue::Undefined => self.out.push(tag::UNDEFINED),
            JsValue::Null => self.out.push(tag::NULL),
            JsValue::Bool(b) => self.out.push(if *b { tag::TRUE } else { tag::FALSE }),
            JsValue::Number(x) => self.number(*x),
            JsValue::BigInt(n) => {
                self.out.push(tag::BIGINT);
                self.bigint_body(n)?;
            }
            JsValue::String(s) => self.string(s)?,
            JsValue::StringUtf16(u) => self.utf16(u)?,
            JsValue::Ref(id) => {
                if *id >= self.next_id {
                    return Err(V8Error::InvalidReference(*id));
                }
                self.out.push(tag::OBJECT_REFERENCE);
                self.varint(u64::from(*id));
            }
            JsValue::Object(props) => {
                self.new_id();
                self.out.push(tag::BEGIN_OBJECT);
                self.properties(props)?;
                self.out.push(tag::END_OBJECT);
                self.len(props.len())?;
            }
            JsValue::Array(a) => {
                self.new_id();
                self.out.push(tag::BEGIN_DENSE_ARRAY);
                self.len(a.items.len())?;
                for item in &a.items {
                    match item {
                        Some(x) => self.value(x)?,
                        None => self.out.push(tag::THE_HOLE),
                    }
                }
                self.properties(&a.properties)?;
                self.out.push(tag::END_DENSE_ARRAY);
                self.len(a.properties.len())?;
                self.len(a.items.len())?;
            }
            JsValue::SparseArray { length, elements, properties } => {
                self.new_id();
                self.out.push(tag::BEGIN_SPARSE_ARRAY);
                self.varint(u64::from(*length));
                for (i, x) in elements {
                    if *i >= *length {
                        return Err(V8Error::Malformed(format!(
                            "sparse array element {i} is beyond its length {length}"
                        )));
                    }
                    self.number(f64::from(*i));
                    self.value(x)?;
                }
                self.properties(properties)?;
                self.out.push(tag::END_SPARSE_ARRAY);
                self.len(elements.len() + properties.len())?;
                self.varint(u64::from(*length));
            }
            JsValue::Map(entries) => {
                self.new_id();
                self.out.push(tag::BEGIN_MAP);
                for (k, x) in entries {
                    self.value(k)?;
                    self.value(x)?;
                }
                self.out.push(tag::END_MAP);
                self.len(2 * entries.len())?;
            }
            JsValue::Set(values) => {
                self.new_id();
                self.out.push(tag::BEGIN_SET);
                for x in values {
                    self.value(x)?;
                }
                self.out.push(tag::END_SET);
                self.len(values.len())?;
            }
            JsValue::Date(ms) => {
                self.new_id();
                self.out.push(tag::DATE);
                self.double(*ms);
            }
            JsValue::RegExp { source, flags } => {
                self.new_id();
                self.out.push(tag::REGEXP);
                self.string(source)?;
                self.varint(u64::from(*flags));
            }
            JsValue::ArrayBuffer(bytes) => {
                let id = self.new_id();
                self.buffers.push((id, bytes.len()));
                self.out.push(tag::ARRAY_BUFFER);
                self.len(bytes.len())?;
                self.out.extend_from_slice(bytes);
            }
            JsValue::View { kind, buffer, byte_offset, byte_length } => {
                let buffer_len = match &**buffer {
                    JsValue::ArrayBuffer(b) => b.len(),
                    JsValue::Ref(id) => match self.buffers.iter().find(|(i, _)| i == id) {
                        Some((_, len)) => *len,
                        None => {
                            return Err(V8Error::Malformed(format!(
                                "a {} refers to id {id}, which is not an ArrayBuffer written \
                                 before it",
                                kind.name()
                            )))
                        }
                    },
                    other => {
                        return Err(V8Error::Malformed(format!(
                            "a {}'s buffer must be an ArrayBuffer, not {}",
                            kind.name(),
                            other.type_name()
                        )))
                    }
                };
                if u64::from(*byte_offset) + u64::from(*byte_length) > buffer_len as u64
                    || byte_length % kind.element_size() != 0
                {
                    return Err(V8Error::Malformed(format!(
                        "a {} of {byte_length} bytes at offset {byte_offset} does not fit its \
                         {buffer_len}-byte buffer",
                        kind.name()
                    )));
                }
                self.value(buffer)?;
                self.new_id();
                self.out.push(tag::ARRAY_BUFFER_VIEW);
                self.out.push(view_subtag(*kind));
                self.varint(u64::from(*byte_offset));
                self.varint(u64::from(*byte_length));
                self.varint(0); // flags: not length-tracking, not backed by a resizable buffer
            }
            JsValue::BooleanObject(b) => {
                self.new_id();
                self.out.push(if *b { tag::TRUE_OBJECT } else { tag::FALSE_OBJECT });
            }
            JsValue::NumberObject(x) => {
                self.new_id();
                self.out.push(tag::NUMBER_OBJECT);
                self.double(*x);
            }
            JsValue::BigIntObject(n) => {
                self.new_id();
                self.out.push(tag::BIGINT_OBJECT);
                self.bigint_body(n)?;
            }
            JsValue::StringObject(s) => {
                self.new_id();
                self.out.push(tag::STRING_OBJECT);
                self.string(s)?;
            }
            JsValue::HostObject(state) => {
                self.new_id();
                self.out.push(tag::HOST_OBJECT);
                self.varint(u64::from(CLONEABLE_HOST_OBJECT));
                self.value(state)?;
            }
            JsValue::Error(e) => {
                self.new_id();
                self.out.push(tag::ERROR);
                let proto = match e.kind {
                    ErrorKind::Error => None,
                    ErrorKind::EvalError => Some(error_tag::EVAL_ERROR),
                    ErrorKind::RangeError => Some(error_tag::RANGE_ERROR),
                    ErrorKind::ReferenceError => Some(error_tag::REFERENCE_ERROR),
                    ErrorKind::SyntaxError => Some(error_tag::SYNTAX_ERROR),
                    ErrorKind::TypeError => Some(error_tag::TYPE_ERROR),
                    ErrorKind::UriError => Some(error_tag::URI_ERROR),
                };
                if let Some(p) = proto {
                    self.out.push(p);
                }
                if let Some(m) = &e.message {
                    self.out.push(error_tag::MESSAGE);
                    self.string(m)?;
                }
                if let Some(s) = &e.stack {
                    self.out.push(error_tag::STACK);
                    self.string(s)?;
                }
                if let Some(c) = &e.cause {
                    self.out.push(error_tag::CAUSE);
                    self.value(c)?;
                }
                self.out.push(error_tag::END);
            }
        }
        Ok(())
    }
}

fn view_subtag(kind: ViewKind) -> u8 {
    match kind {
        ViewKind::Int8 => b'b',
        ViewKind::Uint8 => b'B',
        ViewKind::Uint8Clamped => b'C',
        ViewKind::Int16 => b'w',
        ViewKind::Uint16 => b'W',
        ViewKind::Int32 => b'd',
        ViewKind::Uint32 => b'D',
        ViewKind::Float16 => b'h',
        ViewKind::Float32 => b'f',
        ViewKind::Float64 => b'F',
        ViewKind::BigInt64 => b'q',
        ViewKind::BigUint64 => b'Q',
        ViewKind::DataView => b'?',
    }
}

fn varint_size(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(v: JsValue) {
        let bytes = encode_v8(&v).unwrap();
        assert_eq!(decode_v8(&bytes).unwrap(), v, "bytes {}", hex::encode(&bytes));
    }

    #[test]
    fn bytes_deno_wrote() {
        // From the Deno CLI (tests/deno_compat.rs checks more): "hello", 1, -0, "ok".
        assert_eq!(
            decode_v8(&hex::decode("ff10220568656c6c6f").unwrap()).unwrap(),
            JsValue::from("hello")
        );
        assert_eq!(decode_v8(&[0xff, 0x10, 0x49, 0x02]).unwrap(), JsValue::Number(1.0));
        assert_eq!(
            decode_v8(&hex::decode("ff104e0000000000000080").unwrap()).unwrap(),
            JsValue::Number(-0.0)
        );
        assert_eq!(encode_v8(&JsValue::Number(1.0)).unwrap(), [0xff, 0x0f, 0x49, 0x02]);
        // Two-byte strings are padded to an even offset: "✓" has no padding after FF 0F.
        assert_eq!(encode_v8(&JsValue::from("✓")).unwrap(), [0xff, 0x0f, 0x63, 0x02, 0x13, 0x27]);
    }

    #[test]
    fn every_kind_round_trips() {
        let buf = JsValue::ArrayBuffer((0u8..16).collect());
        for v in [
            JsValue::Undefined,
            JsValue::Null,
            JsValue::Bool(true),
            JsValue::Number(f64::NAN),
            JsValue::Number(-0.0),
            JsValue::Number(1e300),
            JsValue::Number(-2147483648.0),
            JsValue::BigInt(BigInt::from(-1) << 200usize),
            JsValue::BigInt(BigInt::from(0)),
            JsValue::from("héllo wörld ✓ 🦀"),
            JsValue::StringUtf16(vec![0xd800, 0x41]),
            JsValue::object([("a", JsValue::Number(1.0)), ("1", JsValue::Null)]),
            JsValue::Array(JsArray {
                items: vec![Some(JsValue::Number(1.0)), None, Some(JsValue::Undefined)],
                properties: vec![("extra".into(), JsValue::Bool(false))],
            }),
            JsValue::SparseArray {
                length: 1_000_000_000,
                elements: vec![(5, JsValue::Null), (999_999_999, JsValue::from("x"))],
                properties: vec![("p".into(), JsValue::Null)],
            },
            JsValue::Map(vec![(JsValue::object::<&str>([]), JsValue::Ref(1))]),
            JsValue::Set(vec![JsValue::Number(1.0), JsValue::from("a")]),
            JsValue::Date(1.7e12),
            JsValue::regexp("a+b", "gi"),
            JsValue::uint8_array(vec![1, 2, 3]),
            JsValue::Array(JsArray {
                items: vec![
                    Some(JsValue::View {
                        kind: ViewKind::Float32,
                        buffer: Box::new(buf.clone()),
                        byte_offset: 4,
                        byte_length: 8,
                    }),
                    // A second view over the same buffer: a reference to it (id 1).
                    Some(JsValue::View {
                        kind: ViewKind::DataView,
                        buffer: Box::new(JsValue::Ref(1)),
                        byte_offset: 0,
                        byte_length: 16,
                    }),
                ],
                properties: vec![],
            }),
            JsValue::BooleanObject(false),
            JsValue::NumberObject(2.5),
            JsValue::BigIntObject(BigInt::from(7)),
            JsValue::StringObject("s".into()),
            JsValue::Error(Box::new(JsError {
                kind: ErrorKind::TypeError,
                message: Some("bad".into()),
                stack: Some("TypeError: bad\n    at x".into()),
                cause: Some(JsValue::Number(1.0)),
            })),
            // const o = {}; o.self = o
            JsValue::object([("self", JsValue::Ref(0))]),
        ] {
            round_trip(v);
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        let cases: &[&[u8]] = &[
            &[],
            &[0x22],
            &[0xff],
            &[0xff, 0x0c, 0x5f],
            &[0xff, 0x0f],
            &[0xff, 0x0f, 0x22, 0x05, b'a'],
            &[0xff, 0x0f, 0x5e, 0x00],
            &[0xff, 0x0f, 0x41, 0xff, 0xff, 0xff, 0xff, 0x0f],
            &[0xff, 0x0f, 0x6f, 0x7b, 0x01],
            &[0xff, 0x0f, 0x42, 0x02, 0x00, 0x00, 0x56, b'D', 0x00, 0x02, 0x00],
            &[0xff, 0x0f, 0x56, b'B', 0, 0, 0],
            &[0xff, 0x0f, 0x75],
            &[0xff, 0x0f, 0x5f, 0x5f],
            &[0xff, 0x0f, 0x63, 0x03, 0, 0, 0],
            &[0xff, 0x0f, 0x5a, 0xff, 0xff, 0xff, 0xff, 0x0f],
        ];
        for bytes in cases {
            assert!(decode_v8(bytes).is_err(), "{bytes:?} should not decode");
        }
        // Found by the fuzzer: a view over a *referenced* buffer must fit it too.
        // [ArrayBuffer(8), Int32Array over Ref(1) at offset 65]
        let view_past_ref = [
            0xff, 0x0f, b'A', 0x02, b'B', 0x08, 0, 0, 0, 0, 0, 0, 0, 0, b'^', 0x01, b'V', b'd', 65,
            4, 0, b'$', 0, 2,
        ];
        assert!(matches!(decode_v8(&view_past_ref), Err(V8Error::Malformed(_))));
        let mut deep = vec![0xff, 0x0f];
        deep.extend(std::iter::repeat_n(b'A', 10_000).flat_map(|a| [a, 1]));
        assert_eq!(decode_v8(&deep), Err(V8Error::TooDeep));
        assert!(encode_v8(&JsValue::Ref(0)).is_err());
        let orphan = JsValue::View {
            kind: ViewKind::Uint8,
            buffer: Box::new(JsValue::Null),
            byte_offset: 0,
            byte_length: 0,
        };
        assert!(encode_v8(&orphan).is_err());
    }
}
