//! # openkv-fuzz-checks — what openkv's fuzz targets check
//!
//! One function per fuzz target, for every decoder a network peer (or a file from anywhere)
//! reaches. Each takes arbitrary bytes, runs them through the same code openkv runs on such
//! bytes, and panics only if a property breaks:
//!
//! - **no panic** on any input (a panic inside the decoder is the bug being hunted);
//! - **round trips** where they are cheap: what decodes re-encodes and decodes to the same;
//! - **the peer's view agrees**: a server's answer to a fuzzed request passes the client's own
//!   checks of answers, and a request the engine refuses is refused as the client's mistake
//!   ([`openkv::ErrorClass::Client`], a 4xx), never as a server failure.
//!
//! The cargo-fuzz binaries in `fuzz/fuzz_targets/` are one line each, calling these, and this
//! crate's test (`tests/corpus.rs`) runs every committed input — `fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/` — through them in plain `cargo test`, so a crash the fuzzer
//! once found stays fixed without the fuzzer. `scripts/fuzz.sh` runs the fuzzer itself for a
//! bounded time per target; [`TARGETS`] lists the targets by name.
//!
//! Several targets take a **selector byte**: the first byte of the input picks which message
//! the rest is (the doc of each function says how), so that one target covers one peer's
//! whole surface and the fuzzer's time goes where coverage is new.
// A check reports a broken property by panicking — that is how libFuzzer and the tests learn
// of it — so unwrap/expect are the point here, not a shortcut (the lint wall's exemption for
// test code, as in openkv-testsuite).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backup;
mod client;
mod extensions;
mod pitr;
mod server;
mod shared;
mod text;

pub use backup::backup_file;
pub use client::kv_connect_answer;
pub use extensions::{extension_json, replication_stream};
pub use pitr::pitr_object;
pub use server::kv_connect_request;
pub use text::{import_line, key_decode, key_syntax, v8_decode};

/// A target's check: takes one input, panics if a property breaks.
pub type Check = fn(&[u8]);

/// Every fuzz target: its name (the binary in `fuzz/Cargo.toml`, the directories
/// `fuzz/corpus/<name>/` and `fuzz/regressions/<name>/`) and its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("v8_decode", v8_decode),
    ("key_decode", key_decode),
    ("key_syntax", key_syntax),
    ("import_line", import_line),
    ("kv_connect_request", kv_connect_request),
    ("kv_connect_answer", kv_connect_answer),
    ("extension_json", extension_json),
    ("replication_stream", replication_stream),
    ("backup_file", backup_file),
    ("pitr_object", pitr_object),
];
