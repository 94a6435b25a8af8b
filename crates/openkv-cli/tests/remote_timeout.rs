//! `--timeout`: a command on a KV Connect server that is down says once on stderr that it is
//! retrying, and for how long, then gives up with exit 1 naming the server and the timeout
//! (it used to be silent for the client library's 60 s); a server that comes up within the
//! timeout is reached. The real binary, against a closed port and a real `openkv serve`.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{openkv, output, Out, TOKEN};

/// A port of 127.0.0.1 nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `openkv --db http://127.0.0.1:PORT --access-token T ARGS`.
fn remote(port: u16, args: &[&str]) -> std::process::Command {
    let mut cmd = openkv();
    cmd.args(["--db", &format!("http://127.0.0.1:{port}"), "--access-token", TOKEN]);
    cmd.args(args);
    cmd
}

/// The lines of stderr that say the command is retrying.
fn retrying_lines(out: &Out) -> Vec<&str> {
    out.stderr.lines().filter(|l| l.contains("retrying")).collect()
}

#[test]
fn a_server_that_is_down_is_retried_for_the_timeout_then_the_command_fails() {
    let port = closed_port();
    let started = Instant::now();
    let out = output(remote(port, &["--timeout", "1s", "get", r#"["a"]"#]), b"");
    let took = started.elapsed();
    let server = format!("http://127.0.0.1:{port}");
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        retrying_lines(&out),
        [format!(
            "openkv: cannot reach {server} (connection refused); retrying for up to 1s (--timeout)"
        )],
        "one line says it is retrying, however many retries: {out:?}"
    );
    assert!(
        out.stderr.contains(&format!(
            "openkv: cannot reach {server} (connection refused): gave up after 1s (--timeout)"
        )),
        "{out:?}"
    );
    assert!(out.stdout.is_empty(), "{out:?}");
    // Sanity only: the command ends about when the timeout says, not after the library's 60 s.
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[test]
fn the_timeout_is_five_seconds_by_default_and_openkv_timeout_sets_it() {
    let port = closed_port();
    let out = output(remote(port, &["count"]), b"");
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(retrying_lines(&out).len(), 1, "{out:?}");
    assert!(out.stderr.contains("retrying for up to 5s (--timeout)"), "{out:?}");
    assert!(out.stderr.contains("gave up after 5s (--timeout)"), "{out:?}");

    let mut cmd = remote(port, &["get", r#"["a"]"#]);
    cmd.env("OPENKV_TIMEOUT", "1500ms");
    let out = output(cmd, b"");
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("retrying for up to 1s 500ms (--timeout)"), "{out:?}");
    assert!(out.stderr.contains("gave up after 1s 500ms (--timeout)"), "{out:?}");
}

#[test]
fn a_server_that_comes_up_within_the_timeout_is_reached() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite3");
    let port = closed_port();
    let cli = remote(port, &["--timeout", "20s", "set", r#"["late"]"#, r#""reached""#])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let (mut server, url) = common::start_server_at(&db, TOKEN, &format!("127.0.0.1:{port}"), &[]);
    assert_eq!(url, format!("http://127.0.0.1:{port}"));
    let set = cli.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&set.stderr);
    assert!(set.status.success(), "{}: {stderr}", set.status);
    assert_eq!(String::from_utf8_lossy(&set.stdout).trim().len(), 20, "a versionstamp");
    assert_eq!(
        stderr.lines().filter(|l| l.contains("retrying for up to 20s (--timeout)")).count(),
        1,
        "it said once that it was retrying: {stderr}"
    );
    assert!(!stderr.contains("gave up"), "{stderr}");
    let got = output(remote(port, &["get", r#"["late"]"#]), b"").ok();
    assert_eq!(got.stdout, "\"reached\"\n");
    assert!(common::sigterm(&mut server).success());
}

#[test]
fn a_timeout_that_is_not_a_positive_duration_is_a_usage_error() {
    for bad in ["0s", "0", "soon", "-1s", ""] {
        let flag = format!("--timeout={bad}");
        let out = output(remote(closed_port(), &[&flag, "get", r#"["a"]"#]), b"");
        out.fails(2, "invalid value").fails(2, "--timeout <DURATION>");
    }
    let mut cmd = remote(closed_port(), &["get", r#"["a"]"#]);
    cmd.env("OPENKV_TIMEOUT", "0ms");
    output(cmd, b"").fails(2, "must be longer than zero");
}

#[test]
fn the_help_documents_the_flag_and_its_default() {
    let out = output(
        {
            let mut cmd = openkv();
            cmd.arg("--help");
            cmd
        },
        b"",
    )
    .ok();
    let help = out.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(help.contains("--timeout <DURATION>"), "{help}");
    assert!(help.contains("[env: OPENKV_TIMEOUT=] [default: 5s]"), "{help}");
}
