//! The `backup_file` target: `openkv_fuzz_checks::backup_file` says what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| openkv_fuzz_checks::backup_file(data));
