//! Arbitrary bytes into the V8 decoder: it must never panic, hang or allocate without bound,
//! and whatever it accepts must re-encode and decode to the same value, and render as typed
//! JSON that reads back to the same value (host objects' `$blob`, `$cryptokey`, … tags
//! included). `fuzz/v8.dict` gives the fuzzer the tags' bytes (the host-object marker, the
//! class names) so that it reaches them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use openkv::js::{from_json, try_to_json};
use openkv::{decode_v8, encode_v8};

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = decode_v8(data) {
        let bytes = encode_v8(&value).expect("a decoded value re-encodes");
        let again = decode_v8(&bytes).expect("our own encoding decodes");
        assert_eq!(again, value);
        if let Ok(json) = try_to_json(&value) {
            assert_eq!(from_json(&json).expect("our own JSON reads back"), value);
        }
    }
});
