//! The npm client `@deno/kv` (its pure-JS KV Connect client) from Node against the real
//! `openkv serve` binary: the suite in `tests/node/` runs with `node --test`, then the server
//! is stopped with SIGTERM and must exit cleanly. Also: messages `@deno/kv` enqueues through
//! the server reach a Rust listener on the library's remote backend (queues over the network).

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ensure_deno_kv_npm, start_server, workspace_root};
use std::process::Command;

const TOKEN: &str = "deno-kv-npm-suite-token-0123";

/// The number after `# <name> ` in node's test-runner summary.
fn summary_count(stdout: &str, name: &str) -> Option<u64> {
    let prefix = format!("# {name} ");
    stdout.lines().rev().find_map(|l| l.strip_prefix(prefix.as_str())?.trim().parse().ok())
}

#[test]
fn deno_kv_npm_suite_passes_against_openkv_serve() {
    ensure_deno_kv_npm();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("served.sqlite3");
    let (mut server, url) = start_server(&db, TOKEN);

    let out = Command::new("node")
        .args(["--test", "tests/node/"])
        .current_dir(workspace_root())
        .env("KV_URL", &url)
        .env("DENO_KV_ACCESS_TOKEN", TOKEN)
        .env("NO_COLOR", "1")
        .output();

    // SIGTERM: graceful shutdown, exit status 0 (stop the server before any assertion).
    let pid = server.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap().success();
    let status = server.wait().unwrap();

    let out = out.expect("run `node --test tests/node/` (is Node installed?)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let pass = summary_count(&stdout, "pass");
    let fail = summary_count(&stdout, "fail");
    let tests = summary_count(&stdout, "tests");
    eprintln!("node --test: tests {tests:?}, pass {pass:?}, fail {fail:?}");

    assert!(out.status.success(), "node --test failed ({})\n{stdout}\n{stderr}", out.status);
    assert_eq!(fail, Some(0), "node --test reported failures\n{stdout}\n{stderr}");
    assert!(pass.unwrap_or(0) > 0, "node --test ran no passing tests\n{stdout}\n{stderr}");
    assert_eq!(pass, tests, "not every test passed\n{stdout}");
    assert!(killed, "could not send SIGTERM to openkv serve");
    assert!(status.success(), "openkv serve exited with {status} after SIGTERM");
}

#[test]
fn messages_deno_kv_enqueues_reach_a_rust_remote_listener() {
    ensure_deno_kv_npm();
    let dir = tempfile::tempdir().unwrap();
    let (mut server, url) = start_server(&dir.path().join("queue.sqlite3"), TOKEN);
    let out = Command::new("node")
        .arg("tests/node/enqueue.mjs")
        .current_dir(workspace_root())
        .env("KV_URL", &url)
        .env("DENO_KV_ACCESS_TOKEN", TOKEN)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    // Node's own failure first: waiting for messages it never enqueued says nothing.
    assert!(out.status.success(), "node failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    let received = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let kv = openkv::OpenOptions::new()
            .access_token(TOKEN)
            .queue_poll_interval(std::time::Duration::from_millis(50))
            .open(&url)
            .await
            .unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let listener = tokio::spawn(kv.clone().listen_queue(move |message| {
            let tx = tx.clone();
            async move {
                let json = openkv::to_json(&message.value.to_js().map_err(|e| e.to_string())?);
                tx.send((json, message.attempt)).map_err(|e| e.to_string())
            }
        }));
        let mut received = Vec::new();
        for _ in 0..2 {
            let next = tokio::time::timeout(std::time::Duration::from_secs(20), rx.recv()).await;
            received.push(next.expect("a message within 20 s").unwrap());
        }
        kv.close().await.unwrap();
        listener.await.unwrap().unwrap();
        received
    });
    let pid = server.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = server.wait().unwrap();
    assert!(out.status.success(), "node failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.trim(), "enqueued 2");
    let mut got: Vec<String> = received.iter().map(|(json, _)| json.to_string()).collect();
    got.sort();
    assert_eq!(
        got,
        [r#"{"from":"@deno/kv","n":1,"tags":["a","b"]}"#, r#"{"from":"@deno/kv","n":2}"#,]
    );
    assert!(received.iter().all(|(_, attempt)| *attempt == 1));
    assert!(status.success(), "openkv serve exited with {status}");
}
