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
    /// A web platform object Deno stores through V8's host-object hook (tag `\\`): `Blob`,
    /// `File`, `DOMException`, `CryptoKey`. It holds the state object Deno wrote for it,
    /// exactly — `{type: "Blob", mimeType, parts, size}` and so on ([`HostType`] names the
    /// shapes and reads them). The host object is one object of the identity scheme (it takes
    /// an id, and a later occurrence is a `Ref` to it); its state object takes the next id.
    HostObject(Box<JsValue>),
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
            (HostObject(a), HostObject(b)) => a == b,
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
            JsValue::HostObject(state) => match host_type(state) {
                Some(HostType::Blob) => "Blob",
                Some(HostType::File) => "File",
                Some(HostType::DomException) => "DOMException",
                Some(HostType::CryptoKey) => "CryptoKey",
                None => "host object",
            },
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

/// The host objects Deno 2.9 stores, by the `type` their state object names.
///
/// Web platform objects Deno stores in KV (since Deno 2.8): `Blob`, `File`, `DOMException`,
/// `CryptoKey` — [`JsValue::HostObject`].
///
/// # What Deno writes
/// V8 hands such an object to Deno's serializer delegate, which writes the host-object tag
/// (`\`, 0x5C), the varint `u32::MAX` (0xFF 0xFF 0xFF 0xFF 0x0F: "a cloneable object", as
/// opposed to an index into a transfer list, which KV never uses), and then, as an ordinary V8
/// value of the same stream, the object's *state*: a plain object whose first property `type`
/// names its class. [`JsValue::HostObject`] keeps that state object exactly, so decoding and
/// encoding are byte-for-byte; this type names the shapes Deno 2.9 writes.
///
/// | class | state object, properties in Deno's order |
/// |---|---|
/// | `Blob` | `type: "Blob"`, `mimeType`, `parts: [{uuid, size}, …]`, `size` |
/// | `File` | the `Blob` properties with `type: "File"`, then `name`, `lastModified` |
/// | `DOMException` | `type: "DOMException"`, `message`, `name`, `stack` |
/// | `CryptoKey` | `type: "CryptoKey"`, `keyType` (`"secret"`, `"public"`, `"private"`), `extractable`, `usages`, `algorithm` (the key's algorithm dictionary), `keyData` |
///
/// - **A `Blob` (or `File`) holds no bytes.** Its `parts` are references — a UUID and a size
///   each — into the blob store of the Deno process that wrote it. Another process, or the same
///   program after a restart, cannot resolve them: Deno 2.9.6 reads the value back as a `Blob`
///   of the right `size` and `type`, and fails with "Blob part not found" when asked for its
///   bytes. Only an empty `Blob` (no parts) survives whole. openkv shows what is stored (type,
///   size, part references) and never pretends to have the content.
/// - **A `CryptoKey` holds its key material in clear**, even when it is not extractable: a
///   secret key's `keyData` is `{type: "secret", data: Uint8Array}`, an Ed25519 key's a
///   `Uint8Array` of the raw key. Whoever reads the database has the key.
/// - `usages` is written as V8 writes a frozen array: sparse (`JsValue::SparseArray`).
/// - Byte for byte means: but for the format version, and but for one choice V8 makes itself —
///   an integral number in the int32 range (a small `lastModified`) is written as an int or,
///   when V8 held it as a heap double, as a double; [`JsValue::Number`] does not record which,
///   and openkv writes the int.
/// - Other web objects (`URL`, `Headers`, `Request`, `Response`, `Event`, `FormData`, …) are
///   not host objects to Deno's KV: they are stored as empty plain objects `{}`. `MessagePort`
///   and `ReadableStream` are refused by Deno ("Unsupported object type"), so no KV value holds
///   them.
///
/// A state object whose `type` openkv does not know is still kept and written back exactly;
/// [`host_type`] is `None` for it and the typed JSON renders it as `{"$host": …}`. Deno 2.9.6
/// stores three such classes, all from its Node compatibility layer, left without a name of
/// their own: `NodeCryptoKeyObject` (a `node:crypto` `KeyObject`: `keyType` and `keyData`,
/// the key's bytes), `X509Certificate` (`data`, the certificate's DER bytes, per Deno's source) and
/// `RecordableHistogram` (`id`, a reference into the writing process's histogram registry,
/// as useless elsewhere as a `Blob`'s parts). A later Deno's new class lands here too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HostType {
    /// `Blob`.
    Blob,
    /// `File`.
    File,
    /// `DOMException`.
    DomException,
    /// `CryptoKey`.
    CryptoKey,
}

impl HostType {
    /// Every known type.
    pub const ALL: [HostType; 4] =
        [HostType::Blob, HostType::File, HostType::DomException, HostType::CryptoKey];

    /// The JavaScript class name (the state object's `type`).
    pub fn name(self) -> &'static str {
        match self {
            HostType::Blob => "Blob",
            HostType::File => "File",
            HostType::DomException => "DOMException",
            HostType::CryptoKey => "CryptoKey",
        }
    }

    /// The type whose class is called `name`.
    pub fn from_name(name: &str) -> Option<HostType> {
        HostType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Its typed JSON tag (`$blob`, `$file`, `$domexception`, `$cryptokey`).
    pub fn json_tag(self) -> &'static str {
        match self {
            HostType::Blob => "$blob",
            HostType::File => "$file",
            HostType::DomException => "$domexception",
            HostType::CryptoKey => "$cryptokey",
        }
    }

    /// The type whose typed JSON tag is `tag`.
    pub fn from_json_tag(tag: &str) -> Option<HostType> {
        HostType::ALL.into_iter().find(|t| t.json_tag() == tag)
    }
}

/// The known class a host object's state describes: an object whose first property is
/// `type`, naming one of [`HostType`]. (Deno always writes `type` first.)
pub fn host_type(state: &JsValue) -> Option<HostType> {
    match state {
        JsValue::Object(props) => match props.first() {
            Some((key, JsValue::String(name))) if key == "type" => HostType::from_name(name),
            _ => None,
        },
        _ => None,
    }
}

impl JsValue {
    /// A host object of a known class from its state's other properties (Deno's order:
    /// see the module table), with `type` put first.
    pub fn host_object<K: Into<String>>(
        class: HostType,
        props: impl IntoIterator<Item = (K, JsValue)>,
    ) -> JsValue {
        let mut state = vec![("type".to_owned(), JsValue::from(class.name()))];
        state.extend(props.into_iter().map(|(k, v)| (k.into(), v)));
        JsValue::HostObject(Box::new(JsValue::Object(state)))
    }

    /// The class of a host object of a known class; `None` for every other value.
    pub fn host_type(&self) -> Option<HostType> {
        match self {
            JsValue::HostObject(state) => host_type(state),
            _ => None,
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    /// What Deno 2.9.6 wrote for `createSecretKey(new Uint8Array([1, 2, 3]))` (`node:crypto`)
    /// and `createHistogram()` (`node:perf_hooks`): host objects of classes openkv leaves
    /// unnamed, kept exactly all the same.
    #[test]
    fn node_host_objects_are_kept_exactly_without_a_name() {
        let key = "ff105cffffffff0f6f22047479706522134e6f646543727970746f4b65794f626a656374\
                   22076b657954797065220673656372657422076b657944617461420301020356420003007b03";
        let histogram = "ff105cffffffff0f6f22047479706522135265636f726461626c65486973746f677261\
                         6d2202696449027b02";
        for (hex, class) in [(key, "NodeCryptoKeyObject"), (histogram, "RecordableHistogram")] {
            let bytes = hex::decode(hex.replace(' ', "")).unwrap();
            let value = crate::decode_v8(&bytes).unwrap();
            let JsValue::HostObject(state) = &value else { panic!("{value:?}") };
            assert_eq!(host_type(state), None);
            let JsValue::Object(props) = &**state else { panic!("{state:?}") };
            assert_eq!(props[0], ("type".to_owned(), JsValue::from(class)));
            assert_eq!(crate::encode_v8(&value).unwrap()[2..], bytes[2..]);
            let json = crate::to_json(&value);
            assert_eq!(json["$host"]["type"], class, "{json}");
            assert_eq!(crate::from_json(&json).unwrap(), value);
        }
    }

    #[test]
    fn names_and_tags_map_both_ways() {
        for t in HostType::ALL {
            assert_eq!(HostType::from_name(t.name()), Some(t));
            assert_eq!(HostType::from_json_tag(t.json_tag()), Some(t));
        }
        assert_eq!(HostType::from_name("blob"), None);
        assert_eq!(HostType::from_json_tag("$Blob"), None);
    }

    #[test]
    fn the_type_must_come_first_and_be_known() {
        let blob = JsValue::host_object(HostType::Blob, [("size", JsValue::Number(0.0))]);
        assert_eq!(blob.host_type(), Some(HostType::Blob));
        assert_eq!(blob.type_name(), "Blob");
        let later = JsValue::object([("size", JsValue::Number(0.0)), ("type", "Blob".into())]);
        assert_eq!(host_type(&later), None);
        let unknown = JsValue::HostObject(Box::new(JsValue::object([("type", "Nope".into())])));
        assert_eq!(unknown.host_type(), None);
        assert_eq!(unknown.type_name(), "host object");
        assert_eq!(JsValue::Null.host_type(), None);
    }
}
