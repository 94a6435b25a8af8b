//! The `kv_connect_request` target: `openkv_fuzz_checks::kv_connect_request` says what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| openkv_fuzz_checks::kv_connect_request(data));
