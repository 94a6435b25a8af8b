//! `openkv serve --log-format json`: every line on stderr is one JSON object; each request's
//! line carries its request id in the `request` span (the client's `x-request-id` when well
//! formed, echoed in the response; else a new one, answered the same way); the access token
//! appears nowhere in the log. The real binary with `RUST_LOG=debug`, asked by the real CLI
//! and by curl.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value as Json;
use support::{openkv, output, TOKEN};

/// `openkv serve --log-format FORMAT` on a new file with `RUST_LOG=debug`, its stderr written
/// to `log`; the child and the URL it printed.
fn serve_logging_to(dir: &Path, format: &str, log: &Path) -> (Child, String) {
    // NO_COLOR: the text log colours its words with ANSI escapes otherwise, even in a file.
    let mut child = Command::new(env!("CARGO_BIN_EXE_openkv"))
        .arg("--db")
        .arg(dir.join("db.sqlite3"))
        .args(["serve", "--addr", "127.0.0.1:0", "--access-token", TOKEN])
        .args(["--log-format", format])
        .env("RUST_LOG", "debug")
        .env("NO_COLOR", "1")
        .env_remove("OPENKV_LOG_FORMAT")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let url = line.split_whitespace().last().unwrap().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{line:?}");
    (child, url)
}

/// A metadata request with curl (`token`, and `x-request-id: ID` if given): the status and the
/// `x-request-id` the response carries.
fn metadata(url: &str, token: &str, request_id: Option<&str>) -> (u16, String) {
    let mut curl = Command::new("curl");
    curl.args(["-sS", "-o", "/dev/null", "-D", "-", "-X", "POST"])
        .args(["-H", &format!("authorization: Bearer {token}")])
        .args(["-H", "content-type: application/json"])
        .args(["--data", r#"{"supportedVersions":[1,2,3]}"#]);
    if let Some(id) = request_id {
        curl.args(["-H", &format!("x-request-id: {id}")]);
    }
    let out = curl.arg(format!("{url}/")).output().unwrap();
    assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
    let head = String::from_utf8(out.stdout).unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let echoed = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("x-request-id").then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no x-request-id in the answer:\n{head}"));
    (status, echoed)
}

/// The request lines of the log: those logged in a `request` span.
fn request_lines(log: &[Json]) -> Vec<&Json> {
    log.iter().filter(|l| l["span"]["name"] == "request").collect()
}

#[test]
fn json_logs_are_one_object_per_line_and_name_each_request_by_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let log_file = dir.path().join("serve.log");
    let (mut server, url) = serve_logging_to(dir.path(), "json", &log_file);

    // The data path, through the CLI.
    let cli = |args: &[&str]| {
        let mut cmd = openkv();
        cmd.args(["--db", &url, "--access-token", TOKEN]).args(args);
        output(cmd, b"").ok()
    };
    cli(&["set", r#"["a"]"#, "1"]);
    assert_eq!(cli(&["get", r#"["a"]"#]).stdout, "1\n");

    // A well-formed id of the client's is kept, and answered.
    let (status, echoed) = metadata(&url, TOKEN, Some("client-id.42_ABC"));
    assert_eq!((status, echoed.as_str()), (200, "client-id.42_ABC"));
    let longest = "x".repeat(128);
    assert_eq!(metadata(&url, TOKEN, Some(&longest)).1, longest);
    // An id that is not (a space, too long) gets a new one; so does a request without any.
    let mut fresh = Vec::new();
    for bad in [Some("two words"), Some(&*"y".repeat(129)), None] {
        let (status, id) = metadata(&url, TOKEN, bad);
        assert_eq!(status, 200);
        assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{bad:?} → {id}");
        fresh.push(id);
    }
    // A refused request (wrong token) is logged with its id too.
    let (status, refused_id) = metadata(&url, "not-the-token-at-all", Some("refused-1"));
    assert_eq!((status, refused_id.as_str()), (401, "refused-1"));

    assert!(common::sigterm(&mut server).success());
    let text = std::fs::read_to_string(&log_file).unwrap();
    let log: Vec<Json> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(log.iter().all(Json::is_object), "{text}");
    assert!(!text.contains(TOKEN), "the access token reached the log:\n{text}");

    let requests = request_lines(&log);
    for line in &requests {
        let id = line["span"]["request_id"].as_str().unwrap_or_default();
        assert!(!id.is_empty(), "a request line without its id: {line}");
        assert!(line["span"]["method"] == "POST" && line["span"]["path"].is_string(), "{line}");
        assert!(line["fields"]["status"].is_u64(), "{line}");
    }
    let paths = |p: &str| requests.iter().filter(|l| l["span"]["path"] == p).count();
    assert!(paths("/v2/atomic_write") >= 1 && paths("/v2/snapshot_read") >= 1, "{text}");
    let with_id = |id: &str| {
        requests.iter().filter(|l| l["span"]["request_id"] == id).copied().collect::<Vec<_>>()
    };
    let client = with_id("client-id.42_ABC");
    assert_eq!(client.len(), 1, "{text}");
    assert_eq!(client[0]["span"]["path"], "/");
    assert_eq!(client[0]["fields"]["status"], 200);
    // Which token it was, by id (the access token's is `access-token`), never by secret.
    assert_eq!(client[0]["span"]["token_id"], "access-token");
    for id in fresh.iter().map(String::as_str).chain([longest.as_str()]) {
        assert_eq!(with_id(id).len(), 1, "the id answered ({id}) is the one logged: {text}");
    }
    let refused = with_id("refused-1");
    assert_eq!(refused.len(), 1, "{text}");
    assert_eq!(
        (&refused[0]["level"], &refused[0]["fields"]["status"]),
        (&"WARN".into(), &401.into())
    );
    assert_eq!(refused[0]["span"]["refusal"], "invalid", "why, in the log: {text}");
    assert!(!text.contains("not-the-token-at-all"), "a presented token reached the log");
    // Every request has an id of its own.
    let mut ids: Vec<&str> =
        requests.iter().map(|l| l["span"]["request_id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), requests.len(), "{text}");
}

#[test]
fn text_stays_the_default_and_a_bad_format_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let log_file = dir.path().join("serve.log");
    let (mut server, url) = serve_logging_to(dir.path(), "text", &log_file);
    let (status, id) = metadata(&url, TOKEN, Some("text-id-1"));
    assert_eq!((status, id.as_str()), (200, "text-id-1"));
    assert!(common::sigterm(&mut server).success());
    let text = std::fs::read_to_string(&log_file).unwrap();
    let line = text.lines().find(|l| l.contains("text-id-1")).unwrap_or_else(|| panic!("{text}"));
    assert!(serde_json::from_str::<Json>(line).is_err(), "text, not JSON: {line}");
    // The token's id (never its secret) once the authentication layer accepted it.
    let span = r#"request{request_id=text-id-1 method=POST path=/ token_id="access-token"}"#;
    assert!(line.contains(span), "{line}");

    let mut cmd = openkv();
    cmd.args(["--db", ":memory:", "serve", "--access-token", TOKEN, "--log-format", "yaml"]);
    output(cmd, b"").fails(2, "invalid value 'yaml' for '--log-format <FORMAT>'");
}

#[test]
fn a_server_that_cannot_start_says_why_in_json_too() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut cmd = openkv();
    cmd.arg("--db").arg(dir.path().join("db.sqlite3"));
    cmd.args(["serve", "--addr", &addr, "--access-token", TOKEN, "--log-format", "json"]);
    let out = output(cmd, b"");
    assert_eq!(out.code, 1, "{out:?}");
    let log: Vec<Json> = out
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let why = log
        .iter()
        .find(|l| l["level"] == "ERROR")
        .unwrap_or_else(|| panic!("no error line: {out:?}"));
    let message = why["fields"]["message"].as_str().unwrap();
    assert!(message.starts_with(&format!("cannot listen on {addr}")), "{why}");
}
