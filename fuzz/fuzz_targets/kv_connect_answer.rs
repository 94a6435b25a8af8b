//! The `kv_connect_answer` target: `openkv_fuzz_checks::kv_connect_answer` says what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| openkv_fuzz_checks::kv_connect_answer(data));
