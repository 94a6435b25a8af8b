//! The `extension_json` target: `openkv_fuzz_checks::extension_json` says what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| openkv_fuzz_checks::extension_json(data));
