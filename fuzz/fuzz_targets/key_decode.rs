//! The `key_decode` target: `openkv_fuzz_checks::key_decode` says what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| openkv_fuzz_checks::key_decode(data));
