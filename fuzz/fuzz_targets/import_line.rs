//! The `import_line` target: `openkv_fuzz_checks::import_line` says what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| openkv_fuzz_checks::import_line(data));
