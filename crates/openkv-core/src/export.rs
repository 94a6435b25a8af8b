//! The line format of `openkv export` and `openkv import`: a database as NDJSON, one entry per
//! line, and back. It lives in the library, not in the command line, so that a program can read
//! and write exports too, and so that the import's parser — which reads files from anywhere —
//! is fuzzed (`fuzz/`, target `import_line`).
//!
//! A line:
//!
//! ```json
//! {"key":"[\"users\", 12n]","keyBytes":"AnVzZXJzAB0M","value":{"name":"Ada"},"encoding":"v8","versionstamp":"00000000000000010000","expireAt":null}
//! ```
//!
//! - `key`: the key in the [key syntax](crate::key::syntax), for people and tools; `keyBytes`:
//!   its encoding (standard base64), which an import uses, so that every key comes back byte
//!   for byte. An import needs one of the two; given both, they must name the same key.
//! - `value`: the typed JSON rendering ([`value_to_json`]); `encoding`: how it is stored (`v8`,
//!   `bytes`, `u64`). V8 bytes this build cannot decode are exported as `"value": null` plus
//!   `"valueBytes": "<base64>"` and imported verbatim.
//! - `versionstamp`: informational; an import gets new versionstamps (the target database
//!   allocates them, as any write does).
//! - `expireAt`: the expiry in milliseconds since the epoch, or `null`.
//!
//! ```
//! use openkv_core::export::{entry_line, parse_line};
//! use openkv_core::{key, MutationKind, RawEntry, Value, Versionstamp};
//!
//! let entry = RawEntry {
//!     key: key!["users", 12].encode()?,
//!     value: Value::U64(7),
//!     versionstamp: Versionstamp::from_version(1),
//!     expire_at_ms: None,
//! };
//! let line = entry_line(&entry).to_string();
//! let mutation = parse_line(&line).unwrap();
//! assert_eq!((mutation.key, mutation.kind), (entry.key, MutationKind::Set(Value::U64(7))));
//! # Ok::<(), openkv_core::Error>(())
//! ```

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::Deserialize as _;
use serde_json::{json, Map, Value as Json};

use crate::backend::{Mutation, MutationKind, RawEntry};
use crate::key::syntax::{format_key, parse_key};
use crate::key::Key;
use crate::value::{value_from_json, value_to_json, Value};

/// Deepest JSON nesting a line may have: a value nests at most 512 levels (the V8 codec's
/// limit) and one level can take up to four JSON levels, plus the line's own.
const MAX_LINE_DEPTH: usize = 4 * 512 + 8;

/// Why a line is not an entry, in words for the person who has to fix the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError(pub String);

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LineError {}

/// The storage encoding's name in exports: `v8`, `bytes` or `u64`.
pub fn encoding_name(value: &Value) -> &'static str {
    match value {
        Value::V8(_) => "v8",
        Value::Bytes(_) => "bytes",
        Value::U64(_) => "u64",
    }
}

/// The typed JSON of a value, into `object`: `"value": <typed json>`; for V8 bytes that do
/// not decode (a format this build does not know), `"value": null` and `"valueBytes":
/// "<base64 of the stored bytes>"`, which [`parse_line`] stores back verbatim.
pub fn put_value(object: &mut Map<String, Json>, value: &Value) {
    match value_to_json(value) {
        Ok(json) => {
            object.insert("value".into(), json);
        }
        Err(_) => {
            object.insert("value".into(), Json::Null);
            object.insert("valueBytes".into(), Json::String(BASE64.encode(value.to_bytes())));
        }
    }
}

/// One export line: an entry as a JSON object (print it with `to_string`).
pub fn entry_line(entry: &RawEntry) -> Json {
    let mut line = Map::new();
    let key = Key::decode(&entry.key).ok().map(|k| format_key(&k));
    line.insert("key".into(), key.map_or(Json::Null, Json::String));
    line.insert("keyBytes".into(), Json::String(BASE64.encode(&entry.key)));
    put_value(&mut line, &entry.value);
    line.insert("encoding".into(), json!(encoding_name(&entry.value)));
    line.insert("versionstamp".into(), json!(entry.versionstamp.to_hex()));
    line.insert("expireAt".into(), json!(entry.expire_at_ms));
    Json::Object(line)
}

/// How deep a JSON text nests, counting brackets outside strings.
fn json_depth(text: &str) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    max = max.max(depth);
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    max
}

fn base64_field(line: &Map<String, Json>, name: &str) -> Result<Option<Vec<u8>>, LineError> {
    match line.get(name) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => BASE64
            .decode(s)
            .map(Some)
            .map_err(|e| bad(format!("\"{name}\" is not standard padded base64: {e}"))),
        Some(other) => Err(bad(format!("\"{name}\" must be a base64 string, got {other}"))),
    }
}

fn bad(message: impl Into<String>) -> LineError {
    LineError(message.into())
}

/// Reads one line of an export: the write that imports it (a set, with the line's expiry).
/// The key is checked (it decodes), the value is the one the line names; limits are the
/// database's business, at commit.
pub fn parse_line(text: &str) -> Result<Mutation, LineError> {
    if json_depth(text) > MAX_LINE_DEPTH {
        return Err(bad(format!("nested deeper than {MAX_LINE_DEPTH} levels")));
    }
    let mut de = serde_json::Deserializer::from_str(text);
    de.disable_recursion_limit();
    let json = Json::deserialize(&mut de)
        .and_then(|j| de.end().map(|()| j))
        .map_err(|e| bad(format!("not JSON: {e}")))?;
    let Json::Object(line) = json else {
        return Err(bad("not a JSON object (an export line is {\"key\": …, \"value\": …})"));
    };
    const FIELDS: [&str; 7] =
        ["key", "keyBytes", "value", "valueBytes", "encoding", "versionstamp", "expireAt"];
    if let Some(unknown) = line.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(bad(format!("unknown field {unknown:?} (known: {})", FIELDS.join(", "))));
    }
    // The key: exact bytes if given (checked against the key syntax string if both are).
    let key = match (base64_field(&line, "keyBytes")?, line.get("key")) {
        (Some(bytes), text) => {
            let key = Key::decode(&bytes).map_err(|e| bad(format!("\"keyBytes\": {e}")))?;
            if let Some(Json::String(text)) = text {
                let named = parse_key(text).map_err(|e| bad(format!("\"key\" {text}: {e}")))?;
                if named != key {
                    return Err(bad(format!(
                        "\"key\" {text} and \"keyBytes\" ({}) name different keys",
                        format_key(&key)
                    )));
                }
            }
            bytes
        }
        (None, Some(Json::String(text))) => {
            let key = parse_key(text).map_err(|e| bad(format!("\"key\" {text}: {e}")))?;
            key.encode().map_err(|e| bad(format!("\"key\" {text}: {e}")))?
        }
        (None, _) => return Err(bad("no key: \"key\" (a key syntax string) or \"keyBytes\"")),
    };
    let encoding = match line.get("encoding") {
        None | Some(Json::Null) => None,
        Some(Json::String(e)) if ["v8", "bytes", "u64"].contains(&e.as_str()) => Some(e.as_str()),
        Some(other) => return Err(bad(format!("\"encoding\" is v8, bytes or u64, not {other}"))),
    };
    let value = match (base64_field(&line, "valueBytes")?, line.get("value")) {
        (Some(bytes), None | Some(Json::Null)) => match encoding {
            None | Some("v8") => Value::V8(bytes),
            Some(other) => return Err(bad(format!("\"valueBytes\" holds V8 bytes, not {other}"))),
        },
        (Some(_), Some(_)) => return Err(bad("both \"value\" and \"valueBytes\"")),
        (None, None) => return Err(bad("no \"value\"")),
        (None, Some(json)) => value_from_json(json).map_err(|e| bad(format!("\"value\" {e}")))?,
    };
    if let Some(expected) = encoding {
        if encoding_name(&value) != expected {
            return Err(bad(format!(
                "\"encoding\" says {expected} but the value is stored as {} (a top-level \
                 {{\"$kvu64\": …}} is u64, {{\"$bytes\": …}} bytes, anything else v8)",
                encoding_name(&value)
            )));
        }
    }
    let expire_at_ms = match line.get("expireAt") {
        None | Some(Json::Null) => None,
        Some(Json::Number(n)) if n.as_i64().is_some_and(|ms| ms >= 0) => n.as_i64(),
        Some(other) => {
            return Err(bad(format!(
                "\"expireAt\" is milliseconds since the epoch or null, not {other}"
            )))
        }
    };
    Ok(Mutation { key, kind: MutationKind::Set(value), expire_at_ms })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_brackets_outside_strings() {
        assert_eq!(json_depth(r#"{"a": [1, {"b": "[[[{"}]}"#), 3);
        assert_eq!(json_depth(r#""\"[""#), 0);
        assert_eq!(json_depth("1"), 0);
    }

    #[test]
    fn a_line_needs_a_key_and_a_value() {
        let err = |text: &str| parse_line(text).err().unwrap_or_else(|| panic!("{text} parsed")).0;
        assert!(err("[1]").contains("not a JSON object"));
        assert!(err("{\"key\": \"[\\\"a\\\"]\"").contains("not JSON"));
        assert!(err(r#"{"value": 1}"#).contains("no key"));
        assert!(err(r#"{"key": "[\"a\"]"}"#).contains("no \"value\""));
        assert!(err(r#"{"key": "[a]", "value": 1}"#).contains("at column 2"));
        assert!(err(r#"{"key": "[\"a\"]", "value": 1, "extra": 2}"#).contains("unknown field"));
        assert!(err(r#"{"key": "[\"a\"]", "keyBytes": "AmIA", "value": 1}"#)
            .contains("name different keys"));
        assert!(err(r#"{"key": "[\"a\"]", "value": {"$bigint": 1}}"#).contains("$bigint"));
        assert!(err(r#"{"key": "[\"a\"]", "value": 1, "encoding": "u64"}"#)
            .contains("\"encoding\" says u64"));
        assert!(err(r#"{"key": "[\"a\"]", "value": 1, "expireAt": "soon"}"#).contains("expireAt"));
        let deep = format!("{}{}", "[".repeat(MAX_LINE_DEPTH + 1), "]".repeat(MAX_LINE_DEPTH + 1));
        assert!(err(&deep).contains("nested deeper"));
    }

    #[test]
    fn key_bytes_win_and_a_key_string_alone_is_enough() {
        let parsed = parse_line(r#"{"key": "[\"a\"]", "keyBytes": "AmEA", "value": 1}"#).unwrap();
        assert_eq!(parsed.key, b"\x02a\x00");
        let parsed = parse_line(r#"{"key": "[\"a\", 1n]", "value": {"$kvu64": "7"}}"#).unwrap();
        assert_eq!(parsed.key, crate::key!["a", 1].encode().unwrap());
        assert_eq!(parsed.kind, MutationKind::Set(Value::U64(7)));
    }
}
