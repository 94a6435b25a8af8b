//! Queues across clients: messages openkv's JavaScript client (`clients/js`, run by Node and
//! by the Deno CLI) enqueues through `openkv serve` reach a `--queue-webhook` and a Rust
//! `listen_queue` on the remote backend; messages a Rust client enqueues reach the JS
//! client's `listenQueue`. Each on a SQLite file and on a fresh PostgreSQL schema.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use openkv::EnqueueOptions;
use openkv_server::{ServerConfig, WebhookConfig};
use openkv_testsuite::fixtures::{self, Server, TOKEN};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// `$DENO_BIN` (scripts/test.sh sets it), else the pinned CLI under tests/deno. Never skips.
fn deno_bin() -> PathBuf {
    let bin = std::env::var_os("DENO_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("tests/deno/node_modules/.bin/deno"));
    assert!(bin.is_file(), "the Deno CLI is missing at {}: run ./scripts/test.sh", bin.display());
    bin
}

#[derive(Clone, Copy, Debug)]
enum Runtime {
    Node,
    Deno,
}

fn script(runtime: Runtime, script: &str, url: &str) -> tokio::process::Command {
    let mut cmd = match runtime {
        Runtime::Node => tokio::process::Command::new("node"),
        Runtime::Deno => {
            let mut c = tokio::process::Command::new(deno_bin());
            c.args(["run", "-A"]);
            c
        }
    };
    cmd.arg(script)
        .current_dir(workspace_root())
        .env("KV_URL", url)
        .env("DENO_KV_ACCESS_TOKEN", TOKEN)
        .env("NO_COLOR", "1")
        .env("DENO_NO_UPDATE_CHECK", "1")
        .kill_on_drop(true);
    cmd
}

/// Enqueues `items` (JSON `[[value, options], …]`) through the JS client under `runtime`.
async fn js_enqueue(runtime: Runtime, url: &str, items: &serde_json::Value) {
    let out = script(runtime, "tests/js_client/enqueue.mjs", url)
        .arg(items.to_string())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{runtime:?}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.trim(), format!("enqueued {}", items.as_array().unwrap().len()));
}

/// A webhook on 127.0.0.1 answering 204 and recording each JSON body.
async fn webhook() -> (String, Arc<Mutex<Vec<(HeaderMap, serde_json::Value)>>>) {
    let received: Arc<Mutex<Vec<(HeaderMap, serde_json::Value)>>> = Arc::default();
    let log = received.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: String| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push((headers, serde_json::from_str(&body).unwrap()));
            StatusCode::NO_CONTENT
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Node enqueues through the JS client → the server's webhook gets the typed JSON.
async fn js_to_webhook(location: &Path) {
    let (hook, received) = webhook().await;
    let config = ServerConfig::new(TOKEN).queue_webhook(WebhookConfig::new(&hook));
    let server = Server::start(location, config).await;
    let items = serde_json::json!([
        [{"from": "@openkv/client", "runtime": "node", "n": 1}],
        [{"from": "@openkv/client", "runtime": "node", "n": 2, "tags": ["a", "b"]}, {"delay": 200}]
    ]);
    js_enqueue(Runtime::Node, &server.url, &items).await;
    wait_for("two webhook calls", || received.lock().unwrap().len() == 2).await;
    let mut bodies: Vec<_> = received.lock().unwrap().iter().map(|(_, b)| b.clone()).collect();
    bodies.sort_by_key(|b| b["n"].as_i64());
    assert_eq!(bodies, [items[0][0].clone(), items[1][0].clone()]);
    server.stop().await;
}

/// Deno enqueues through the JS client (one message inside an atomic write with a check) → a
/// Rust listener on the remote backend gets it; a Rust enqueue → the JS client's listenQueue
/// (under Node) gets that.
async fn js_and_rust_listeners(location: &Path) {
    let server = Server::start(location, ServerConfig::new(TOKEN)).await;
    // JS (Deno) → Rust.
    js_enqueue(Runtime::Deno, &server.url, &serde_json::json!([[{"from": "deno", "n": 7}]])).await;
    let kv = fixtures::client_options()
        .queue_poll_interval(Duration::from_millis(50))
        .open(&server.url)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = tokio::spawn(kv.clone().listen_queue(move |message| {
        let tx = tx.clone();
        async move {
            let json = openkv::to_json(&message.value.to_js().map_err(|e| e.to_string())?);
            tx.send(json).map_err(|e| e.to_string())
        }
    }));
    let got = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.unwrap().unwrap();
    assert_eq!(got, serde_json::json!({"from": "deno", "n": 7}));
    kv.close().await.unwrap();
    listener.await.unwrap().unwrap();

    // Rust → JS (Node).
    let mut child = script(Runtime::Node, "tests/js_client/listen.mjs", &server.url)
        .arg("1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await;
    assert!(first.unwrap().unwrap().unwrap().contains("listening"));
    let kv = fixtures::remote(&server.url).await;
    let job = serde_json::json!({"from": "rust", "list": [1, 2.5, "x"], "nested": {"ok": true}});
    kv.enqueue(&job, &EnqueueOptions::new()).await.unwrap();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await;
    let line = line.expect("the JS listener got a message within 20 s").unwrap().unwrap();
    let got: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(got["got"], job);
    let done = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await;
    assert!(done.unwrap().unwrap().unwrap().contains("done"), "the listener ends after close()");
    assert!(child.wait().await.unwrap().success());
    kv.close().await.unwrap();
    server.stop().await;
}

fn sqlite_location() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite3");
    (dir, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_client_enqueues_reach_the_webhook() {
    let (_dir, path) = sqlite_location();
    js_to_webhook(&path).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_client_enqueues_reach_the_webhook_on_postgres() {
    let Some(url) = fixtures::postgres_url() else { return };
    js_to_webhook(Path::new(&url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_client_and_rust_listeners_exchange_messages() {
    let (_dir, path) = sqlite_location();
    js_and_rust_listeners(&path).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_client_and_rust_listeners_exchange_messages_on_postgres() {
    let Some(url) = fixtures::postgres_url() else { return };
    js_and_rust_listeners(Path::new(&url)).await;
}
