//! `openkv serve`'s limit flags reach the server: with `--header-timeout` a client that sends
//! half a header is cut off in time, with `--max-connections` a connection beyond the cap is
//! closed at once while the held ones go on; a zero, or a header limit below hyper's minimum,
//! is a usage error (exit 2); `--help` shows every limit with its default. What each limit
//! does in detail is `openkv-server`'s tests/limits.rs.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{sigterm, start_server_with};

const TOKEN: &str = "serve-limits-token-0123456789";
const BODY: &str = r#"{"supportedVersions":[1,2,3]}"#;

/// A kept-alive connection that made one metadata request and read its answer.
fn served_connection(addr: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).unwrap();
    let request = format!(
        "POST / HTTP/1.1\r\nHost: kv\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    tcp.write_all(request.as_bytes()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // The metadata answer is one JSON object: read until it is complete.
    while !answer.ends_with(b"}") {
        let n = tcp.read(&mut buf).unwrap();
        assert!(n > 0, "closed before answering: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 200 "), "{}", String::from_utf8_lossy(&answer));
    tcp
}

/// How long until the server closed `tcp` (end of stream or a reset); fails after 20 s.
fn closed_after(tcp: &mut TcpStream) -> Duration {
    let started = Instant::now();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => return started.elapsed(),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("still open after {:?}", started.elapsed())
            }
            Err(_) => return started.elapsed(),
        }
    }
}

#[test]
fn header_timeout_and_max_connections_reach_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let header_timeout = Duration::from_secs(3);
    let (mut server, url) = start_server_with(
        &dir.path().join("db.sqlite3"),
        TOKEN,
        &["--header-timeout".as_ref(), "3s".as_ref(), "--max-connections".as_ref(), "2".as_ref()],
    );
    let addr = url.strip_prefix("http://").unwrap().to_owned();
    // Half a header: cut off by the timeout, not at once and not never.
    let mut half = TcpStream::connect(&addr).unwrap();
    half.write_all(b"POST / HTTP/1.1\r\nHost: kv\r\nAuthori").unwrap();
    let closed = closed_after(&mut half);
    assert!(closed >= header_timeout / 2, "closed after {closed:?}");
    // Two connections held (kept alive, idle): a third is closed at once.
    let mut held = [served_connection(&addr), served_connection(&addr)];
    let mut third = TcpStream::connect(&addr).unwrap();
    let closed = closed_after(&mut third);
    assert!(closed < header_timeout / 2, "closed after {closed:?}: not refused at once");
    // The held ones go on.
    for tcp in &mut held {
        let request = format!(
            "POST / HTTP/1.1\r\nHost: kv\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Length: {}\r\n\r\n{BODY}",
            BODY.len()
        );
        tcp.write_all(request.as_bytes()).unwrap();
        let mut buf = [0u8; 16];
        tcp.read_exact(&mut buf).unwrap();
        assert!(buf.starts_with(b"HTTP/1.1 200 "), "{}", String::from_utf8_lossy(&buf));
    }
    drop(held);
    let status = sigterm(&mut server);
    assert!(status.success(), "openkv serve exited with {status}");
}

#[test]
fn limits_that_would_refuse_everything_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, value, needle) in [
        ("--max-connections", "0", "--max-connections"),
        ("--header-timeout", "0s", "must be longer than zero"),
        ("--idle-timeout", "soon", "--idle-timeout"),
        ("--max-header-bytes", "1024", "--max-header-bytes"),
        ("--max-watches-per-token", "0", "--max-watches-per-token"),
        ("--max-queue-waits", "0", "--max-queue-waits"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_openkv"))
            .arg("--db")
            .arg(dir.path().join("db.sqlite3"))
            .args(["serve", "--addr", "127.0.0.1:0", "--access-token", TOKEN, flag, value])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(needle), "{flag} {value}: {stderr}");
    }
    assert!(!dir.path().join("db.sqlite3").exists(), "a refused command created the database");
}

#[test]
fn help_shows_every_limit_with_its_default() {
    let out =
        Command::new(env!("CARGO_BIN_EXE_openkv")).args(["serve", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for (flag, default) in [
        ("--header-timeout <DURATION>", "[default: 10s]"),
        ("--idle-timeout <DURATION>", "[default: 2m]"),
        ("--max-connections <N>", "[default: 4096]"),
        ("--max-header-bytes <BYTES>", "[default: 32768]"),
        (
            "--max-request-body <BYTES>",
            "[default: twice the largest atomic write plus 1 MiB: 2686976]",
        ),
        ("--max-watches-per-token <N>", "[default: 1024]"),
        ("--max-queue-waits <N>", "[default: 1024]"),
    ] {
        let at = help.find(flag).unwrap_or_else(|| panic!("{flag} missing from\n{help}"));
        let next =
            help[at + flag.len()..].find("\n  -").map_or(help.len(), |n| at + flag.len() + n);
        let entry = help[at..next].split_whitespace().collect::<Vec<_>>().join(" ");
        let default = default.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(entry.contains(&default), "{flag}: {entry}");
    }
}
