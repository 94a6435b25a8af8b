//! Helpers shared by the tests that run the real `openkv` binary.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The repository's root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Starts `openkv serve` on a free port of 127.0.0.1 requiring `token`; returns the child and
/// the URL it printed on its first line.
pub fn start_server(db: &Path, token: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_openkv"))
        .arg("--db")
        .arg(db)
        .args(["serve", "--addr", "127.0.0.1:0", "--access-token", token])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start openkv serve");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let url = line.split_whitespace().last().expect("the server prints its URL").to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "unexpected first line {line:?}");
    (child, url)
}
