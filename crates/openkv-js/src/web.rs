//! Typed views of the web objects Deno stores as host objects ([`JsValue::HostObject`], see
//! [`HostType`](crate::HostType) for what Deno writes), for serde: [`from_js`](crate::from_js)
//! reads one from a stored value, [`to_js`](crate::to_js) writes one in Deno's shape.
//!
//! ```
//! use openkv_js::{from_js, to_js, JsBlob, JsDomException, JsValue, HostType};
//! let e = JsDomException {
//!     message: "no such user".into(),
//!     name: "NotFoundError".into(),
//!     stack: None,
//! };
//! let value = to_js(&e).unwrap();
//! assert_eq!(value.host_type(), Some(HostType::DomException));
//! assert_eq!(from_js::<JsDomException>(&value).unwrap(), e);
//! // The type must match: a DOMException is not a Blob.
//! let err = from_js::<JsBlob>(&value).unwrap_err();
//! assert!(err.to_string().contains("expected a Blob, found a DOMException"), "{err}");
//! ```

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::serde::HOST;
use crate::JsValue;

/// A field the state must have (read as optional, so that a wrong `type` is reported first).
fn need<T, E: serde::de::Error>(field: Option<T>, name: &'static str) -> Result<T, E> {
    field.ok_or_else(|| E::missing_field(name))
}

/// Checks the state's `type` against the class the target reads.
fn check_type<E: serde::de::Error>(found: &str, expected: &str) -> Result<(), E> {
    if found == expected {
        Ok(())
    } else {
        Err(E::custom(format!("expected a {expected}, found a {found}")))
    }
}

/// One part of a stored `Blob`: a reference into the blob store of the Deno process that
/// wrote it, not the bytes (see [`HostType`](crate::HostType)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsBlobPart {
    /// The part's id in that process's blob store.
    pub uuid: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A `Blob` as Deno stores it: its MIME type, its size and references to its parts — **not
/// its bytes**, which stay in the writing process (see [`HostType`](crate::HostType)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsBlob {
    /// `blob.type` (`""` when none was given).
    pub mime_type: String,
    /// The part references.
    pub parts: Vec<JsBlobPart>,
    /// `blob.size`.
    pub size: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BlobState<'a> {
    #[serde(rename = "type")]
    class: &'static str,
    mime_type: &'a str,
    parts: &'a [JsBlobPart],
    size: u64,
}

/// What a `Blob` or `File` state is read as (all optional: the `type` is checked first).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlobRead {
    #[serde(rename = "type")]
    class: String,
    mime_type: Option<String>,
    parts: Option<Vec<JsBlobPart>>,
    size: Option<u64>,
    name: Option<String>,
    last_modified: Option<f64>,
}

impl Serialize for JsBlob {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let state = BlobState {
            class: "Blob",
            mime_type: &self.mime_type,
            parts: &self.parts,
            size: self.size,
        };
        serializer.serialize_newtype_struct(HOST, &state)
    }
}

impl<'de> Deserialize<'de> for JsBlob {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<JsBlob, D::Error> {
        let s = BlobRead::deserialize(deserializer)?;
        check_type(&s.class, "Blob")?;
        Ok(JsBlob {
            mime_type: need(s.mime_type, "mimeType")?,
            parts: need(s.parts, "parts")?,
            size: need(s.size, "size")?,
        })
    }
}

/// A `File` as Deno stores it: a [`JsBlob`]'s fields (no bytes either) plus its name and
/// modification time.
#[derive(Clone, Debug, PartialEq)]
pub struct JsFile {
    /// `file.type`.
    pub mime_type: String,
    /// The part references.
    pub parts: Vec<JsBlobPart>,
    /// `file.size`.
    pub size: u64,
    /// `file.name`.
    pub name: String,
    /// `file.lastModified`, milliseconds since the Unix epoch.
    pub last_modified: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FileState<'a> {
    #[serde(rename = "type")]
    class: &'static str,
    mime_type: &'a str,
    parts: &'a [JsBlobPart],
    size: u64,
    name: &'a str,
    last_modified: f64,
}

impl Serialize for JsFile {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let state = FileState {
            class: "File",
            mime_type: &self.mime_type,
            parts: &self.parts,
            size: self.size,
            name: &self.name,
            last_modified: self.last_modified,
        };
        serializer.serialize_newtype_struct(HOST, &state)
    }
}

impl<'de> Deserialize<'de> for JsFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<JsFile, D::Error> {
        let s = BlobRead::deserialize(deserializer)?;
        check_type(&s.class, "File")?;
        Ok(JsFile {
            mime_type: need(s.mime_type, "mimeType")?,
            parts: need(s.parts, "parts")?,
            size: need(s.size, "size")?,
            name: need(s.name, "name")?,
            last_modified: need(s.last_modified, "lastModified")?,
        })
    }
}

/// A `DOMException` as Deno stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsDomException {
    /// `e.message`.
    pub message: String,
    /// `e.name` (`"NotFoundError"`, …; `"Error"` by default).
    pub name: String,
    /// `e.stack` as Deno captured it when the exception was made (`None`: not stored).
    pub stack: Option<String>,
}

#[derive(Serialize)]
struct DomExceptionState<'a> {
    #[serde(rename = "type")]
    class: &'static str,
    message: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    stack: Option<&'a str>,
}

#[derive(Deserialize)]
struct DomExceptionRead {
    #[serde(rename = "type")]
    class: String,
    message: Option<String>,
    name: Option<String>,
    stack: Option<String>,
}

impl Serialize for JsDomException {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let state = DomExceptionState {
            class: "DOMException",
            message: &self.message,
            name: &self.name,
            stack: self.stack.as_deref(),
        };
        serializer.serialize_newtype_struct(HOST, &state)
    }
}

impl<'de> Deserialize<'de> for JsDomException {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<JsDomException, D::Error> {
        let s = DomExceptionRead::deserialize(deserializer)?;
        check_type(&s.class, "DOMException")?;
        Ok(JsDomException {
            message: need(s.message, "message")?,
            name: need(s.name, "name")?,
            stack: s.stack,
        })
    }
}

/// A `CryptoKey` as Deno stores it — **with its key material**, even when the key is not
/// extractable.
#[derive(Clone, Debug, PartialEq)]
pub struct JsCryptoKey {
    /// `key.type`: `"secret"`, `"public"` or `"private"`.
    pub key_type: String,
    /// `key.extractable`.
    pub extractable: bool,
    /// `key.usages` (`"sign"`, `"encrypt"`, …).
    pub usages: Vec<String>,
    /// `key.algorithm`, e.g. `{name: "HMAC", length: 64, hash: {name: "SHA-256"}}`.
    pub algorithm: JsValue,
    /// The key material as Deno keeps it: `{type: "secret", data: Uint8Array}` for secret keys,
    /// a `Uint8Array` of the raw key for Ed25519/X25519, … (whatever Deno wrote, exactly).
    pub key_data: JsValue,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CryptoKeyState<'a> {
    #[serde(rename = "type")]
    class: &'static str,
    key_type: &'a str,
    extractable: bool,
    usages: &'a [String],
    algorithm: &'a JsValue,
    key_data: &'a JsValue,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CryptoKeyRead {
    #[serde(rename = "type")]
    class: String,
    key_type: Option<String>,
    extractable: Option<bool>,
    usages: Option<Vec<String>>,
    algorithm: Option<JsValue>,
    key_data: Option<JsValue>,
}

impl Serialize for JsCryptoKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let state = CryptoKeyState {
            class: "CryptoKey",
            key_type: &self.key_type,
            extractable: self.extractable,
            usages: &self.usages,
            algorithm: &self.algorithm,
            key_data: &self.key_data,
        };
        serializer.serialize_newtype_struct(HOST, &state)
    }
}

impl<'de> Deserialize<'de> for JsCryptoKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<JsCryptoKey, D::Error> {
        let s = CryptoKeyRead::deserialize(deserializer)?;
        check_type(&s.class, "CryptoKey")?;
        Ok(JsCryptoKey {
            key_type: need(s.key_type, "keyType")?,
            extractable: need(s.extractable, "extractable")?,
            usages: need(s.usages, "usages")?,
            algorithm: need(s.algorithm, "algorithm")?,
            key_data: need(s.key_data, "keyData")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode_v8, encode_v8, from_js, to_js, HostType};

    /// What Deno 2.9.6 wrote for `new File(["abc"], "a.txt", {type: "text/plain",
    /// lastModified: 1700000000123})`.
    const FILE: &str = "ff105cffffffff0f6f220474797065220446696c6522086d696d6554797065220a746578\
        742f706c61696e2205706172747341016f220475756964222431663665313235332d313635622d343534\
        382d623764622d666432313736623862643836220473697a6549067b02240001220473697a6549062204\
        6e616d652205612e747874220c6c6173744d6f6469666965644e00b08756febc78427b06";

    #[test]
    fn a_file_deno_wrote_reads_as_a_file_and_writes_back_the_same_bytes() {
        let bytes = hex::decode(FILE).unwrap();
        let value = decode_v8(&bytes).unwrap();
        assert_eq!(value.host_type(), Some(HostType::File));
        let file: JsFile = from_js(&value).unwrap();
        assert_eq!(file.name, "a.txt");
        assert_eq!(file.mime_type, "text/plain");
        assert_eq!(file.size, 3);
        assert_eq!(file.last_modified, 1_700_000_000_123.0);
        assert_eq!(
            file.parts,
            [JsBlobPart { uuid: "1f6e1253-165b-4548-b7db-fd2176b8bd86".into(), size: 3 }]
        );
        // Written back through the typed view: the value Deno wrote, and its bytes but for
        // the version header (openkv writes format 15, Deno 2.9 16).
        let again = to_js(&file).unwrap();
        assert_eq!(again, value);
        assert_eq!(encode_v8(&again).unwrap()[2..], bytes[2..]);
        // A File is not a Blob to the typed views (Deno's `type` differs).
        let err = from_js::<JsBlob>(&value).unwrap_err().to_string();
        assert!(err.contains("expected a Blob, found a File"), "{err}");
    }

    #[test]
    fn typed_views_round_trip_through_to_js() {
        let blob = JsBlob { mime_type: String::new(), parts: vec![], size: 0 };
        assert_eq!(from_js::<JsBlob>(&to_js(&blob).unwrap()).unwrap(), blob);
        let key = JsCryptoKey {
            key_type: "secret".into(),
            extractable: false,
            usages: vec!["encrypt".into()],
            algorithm: JsValue::object([("name", "AES-GCM".into()), ("length", 128.0.into())]),
            key_data: JsValue::object([
                ("type", "secret".into()),
                ("data", JsValue::uint8_array(vec![0; 16])),
            ]),
        };
        let value = to_js(&key).unwrap();
        assert_eq!(value.host_type(), Some(HostType::CryptoKey));
        assert_eq!(from_js::<JsCryptoKey>(&value).unwrap(), key);
        // With serde_json a typed view is its state object.
        let json = serde_json::to_value(&blob).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "Blob", "mimeType": "", "parts": [], "size": 0})
        );
    }
}
