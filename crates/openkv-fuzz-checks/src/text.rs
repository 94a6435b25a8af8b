//! Values, keys and export lines: the decoders under every peer's messages and every file.

use openkv::export::{entry_line, parse_line};
use openkv::js::{from_json, try_to_json};
use openkv::key::syntax::{format_key, parse_key};
use openkv::{decode_v8, encode_v8, Key, MutationKind, RawEntry, Value, Versionstamp};

/// Target `v8_decode`: arbitrary bytes into the V8 decoder. It must never panic, hang or
/// allocate without bound, and whatever it accepts must re-encode and decode to the same value,
/// and render as typed JSON that reads back to the same value (host objects' `$blob`,
/// `$cryptokey`, … tags included). `fuzz/v8.dict` gives the fuzzer the tags' bytes (the
/// host-object marker, the class names) so that it reaches them.
pub fn v8_decode(data: &[u8]) {
    let Ok(value) = decode_v8(data) else { return };
    let bytes = encode_v8(&value).expect("a decoded value re-encodes");
    let again = decode_v8(&bytes).expect("our own encoding decodes");
    assert_eq!(again, value);
    if let Ok(json) = try_to_json(&value) {
        assert_eq!(from_json(&json).expect("our own JSON reads back"), value);
    }
}

/// Target `key_decode`: arbitrary bytes into the key decoder (every stored or sent key goes
/// through it). What decodes re-encodes and decodes to the same key, and the key syntax
/// prints it as text that parses back to it (what `openkv list` prints, `openkv get` reads).
pub fn key_decode(data: &[u8]) {
    let Ok(key) = Key::decode(data) else { return };
    let bytes = key.encode().expect("a decoded key re-encodes");
    assert_eq!(Key::decode(&bytes).expect("our own encoding decodes"), key);
    let text = format_key(&key);
    let parsed = parse_key(&text).unwrap_or_else(|e| panic!("the printed key {text} parses: {e}"));
    assert_eq!(parsed, key, "{text}");
}

/// Target `key_syntax`: arbitrary text into the key syntax parser (the command line's keys,
/// an export's `key`). What parses prints as text that parses back to the same key, and
/// printing is stable; a key that encodes decodes to itself.
pub fn key_syntax(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(key) = parse_key(text) else { return };
    let printed = format_key(&key);
    let again =
        parse_key(&printed).unwrap_or_else(|e| panic!("the printed key {printed} parses: {e}"));
    assert_eq!(again, key, "{text:?} printed as {printed}");
    assert_eq!(format_key(&again), printed, "printing {text:?} is stable");
    if let Ok(bytes) = key.encode() {
        assert_eq!(Key::decode(&bytes).expect("our own encoding decodes"), key);
    }
}

/// Target `import_line`: arbitrary bytes as one line of an `openkv import` file (NDJSON from
/// anywhere). A line that imports is a set of a key that decodes; the entry it writes,
/// exported, imports again as the same write (the same key bytes and expiry, the same value —
/// for V8, the same JavaScript value: an export renders decodable V8 as JSON, which is
/// written back in our own encoding).
pub fn import_line(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(mutation) = parse_line(text) else { return };
    let MutationKind::Set(value) = &mutation.kind else {
        panic!("an import line is a set, not {:?}", mutation.kind)
    };
    assert!(Key::decode(&mutation.key).is_ok(), "an imported key decodes");
    let entry = RawEntry {
        key: mutation.key.clone(),
        value: value.clone(),
        versionstamp: Versionstamp::from_version(1),
        expire_at_ms: mutation.expire_at_ms,
    };
    let line = entry_line(&entry).to_string();
    let again = parse_line(&line).unwrap_or_else(|e| panic!("our own line {line} imports: {e}"));
    assert_eq!((&again.key, again.expire_at_ms), (&mutation.key, mutation.expire_at_ms));
    let MutationKind::Set(back) = &again.kind else { panic!("{line} imports as a set") };
    assert!(same_value(back, value), "{line}: {back:?} is not {value:?}");
}

/// Two stored values hold the same thing: equal, or V8 bytes that decode to equal values.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::V8(x), Value::V8(y)) if x != y => match (decode_v8(x), decode_v8(y)) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        },
        _ => a == b,
    }
}
