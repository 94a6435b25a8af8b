//! The `v8_decode` target: `openkv_fuzz_checks::v8_decode` says what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| openkv_fuzz_checks::v8_decode(data));
