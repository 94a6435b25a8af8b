//! The `pitr_object` target: `openkv_fuzz_checks::pitr_object` says what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| openkv_fuzz_checks::pitr_object(data));
