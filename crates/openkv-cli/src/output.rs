//! How entries and values are printed, and writing to stdout.

use std::io::Write;

use openkv::{Key, Value, Versionstamp};
use serde_json::{json, Map, Value as Json};

use crate::exit::{CliError, CliResult};
use openkv::export::put_value;
use openkv::key::syntax::format_key;

/// `{"key": "<key syntax>", "value": <typed json>, "versionstamp": "<20 hex digits>"}`, the
/// line `list` prints; a missing entry has `null` value and versionstamp (`watch`).
pub fn entry_json(key: &Key, entry: Option<(&Value, &Versionstamp)>) -> Json {
    let mut object = Map::new();
    object.insert("key".into(), Json::String(format_key(key)));
    match entry {
        Some((value, versionstamp)) => {
            put_value(&mut object, value);
            object.insert("versionstamp".into(), json!(versionstamp.to_hex()));
        }
        None => {
            object.insert("value".into(), Json::Null);
            object.insert("versionstamp".into(), Json::Null);
        }
    }
    Json::Object(object)
}

/// Writes to a stream; a closed pipe (`openkv list | head`) ends the process quietly with
/// success, since whoever read the output has what they wanted.
pub fn write_out(out: &mut (impl Write + ?Sized), bytes: &[u8]) -> CliResult {
    match out.write_all(bytes) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(CliError::io("cannot write the output", e)),
        Ok(()) => Ok(()),
    }
}

/// Writes one line (the text and a newline).
pub fn write_line(out: &mut (impl Write + ?Sized), line: &str) -> CliResult {
    write_out(out, line.as_bytes())?;
    write_out(out, b"\n")
}

/// Flushes, with [`write_out`]'s treatment of a closed pipe.
pub fn flush(out: &mut (impl Write + ?Sized)) -> CliResult {
    match out.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(CliError::io("cannot write the output", e)),
        Ok(()) => Ok(()),
    }
}
