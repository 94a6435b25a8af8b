//! The `replication_stream` target: `openkv_fuzz_checks::replication_stream` says what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| openkv_fuzz_checks::replication_stream(data));
