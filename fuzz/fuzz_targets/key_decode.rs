//! Arbitrary bytes into the key decoder: never a panic; what decodes re-encodes and decodes to
//! the same key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use openkv::Key;

fuzz_target!(|data: &[u8]| {
    if let Ok(key) = Key::decode(data) {
        let bytes = key.encode().expect("a decoded key re-encodes");
        assert_eq!(Key::decode(&bytes).expect("our own encoding decodes"), key);
    }
});
