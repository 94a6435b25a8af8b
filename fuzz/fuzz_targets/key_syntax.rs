//! The `key_syntax` target: `openkv_fuzz_checks::key_syntax` says what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| openkv_fuzz_checks::key_syntax(data));
