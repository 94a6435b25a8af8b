//! `/metrics` of the real `openkv serve`: Prometheus's own `promtool check metrics` accepts
//! what it renders, and its values move by exactly the work done (N commits → the counter
//! moved by N); who may read it; the listener of `--metrics-addr`; `--no-metrics`.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Proc;
use reqwest::StatusCode;

const ROOT: &str = "metrics-test-root-token";
const SCRAPER: &str = "metrics-test-scraper-token";

/// `openkv serve --access-token ROOT ARGS…` on a free port.
fn serve(args: &[&str]) -> Proc {
    let mut all = vec!["--access-token", ROOT];
    all.extend_from_slice(args);
    let all: Vec<&std::ffi::OsStr> = all.iter().map(|a| a.as_ref()).collect();
    common::serve(&all)
}

async fn get(url: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

/// The value of the sample `name{labels}` (labels exactly as rendered), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `promtool check metrics` on `text`: its verdict, or `None` when promtool is missing (and
/// OPENKV_REQUIRE_PROMTOOL is not 1, which scripts/test.sh sets after installing it).
fn promtool(text: &str) -> Option<(bool, String)> {
    let promtool = std::env::var_os("OPENKV_PROMTOOL").unwrap_or_else(|| "promtool".into());
    let mut child = match Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            assert_ne!(
                std::env::var("OPENKV_REQUIRE_PROMTOOL").as_deref(),
                Ok("1"),
                "OPENKV_REQUIRE_PROMTOOL=1 but {promtool:?} cannot run: {e}"
            );
            eprintln!("{promtool:?} cannot run ({e}): skipping its check");
            return None;
        }
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Some((out.status.success() && said.trim().is_empty(), said))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_count_exactly_the_work_done() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&["--data-dir", data.to_str().unwrap(), "--metrics-token", SCRAPER]);
    let url = server.url.clone();
    let create = Command::new(env!("CARGO_BIN_EXE_openkv"))
        .args(["--db", &url, "--access-token", ROOT, "db", "create", "shop"])
        .output()
        .unwrap();
    assert!(create.status.success(), "{create:?}");
    let kv = common::client_with(&format!("{url}/databases/shop/connect"), ROOT).await;

    const N: u64 = 25;
    for i in 0..N {
        kv.set(&openkv::key!["order", i as i64], "x").await.unwrap();
    }
    // One failed check: a commit refused, not an error.
    let stale = kv
        .atomic()
        .check(&openkv::key!["order", 0i64], None)
        .set(&openkv::key!["order", 0i64], "y")
        .commit()
        .await
        .unwrap();
    assert!(!stale.is_committed());
    // Three messages, one of them delayed: the queue's gauges.
    for delay in [0u64, 0, 3_600_000] {
        let options = openkv::EnqueueOptions::new().delay(Duration::from_millis(delay));
        kv.enqueue(&"job", &options).await.unwrap();
    }
    // Two refused requests: no token, a token of nobody.
    assert_eq!(get(&format!("{url}/metrics"), None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        get(&format!("{url}/metrics"), Some("okv_000000000000_nope")).await.0,
        StatusCode::UNAUTHORIZED
    );
    // A watch stream, open while scraping (its first snapshot: the request reached the server).
    let mut watch = kv.watch(&[openkv::key!["order", 1i64]]).unwrap();
    futures::StreamExt::next(&mut watch).await.unwrap().unwrap();

    let (status, text) = get(&format!("{url}/metrics"), Some(SCRAPER)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    if let Some((ok, said)) = promtool(&text) {
        assert!(ok, "promtool check metrics refused it: {said}\n{text}");
    }
    let shop = |series: &str, labels: &str| {
        let name = if labels.is_empty() {
            format!("{series}{{database=\"shop\"}}")
        } else {
            format!("{series}{{database=\"shop\",{labels}}}")
        };
        sample(&text, &name).unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    };
    // N sets + 3 enqueues committed; the check failed once.
    assert_eq!(shop("openkv_commits_total", "outcome=\"ok\""), (N + 3) as f64);
    assert_eq!(shop("openkv_commits_total", "outcome=\"check_failed\""), 1.0);
    assert_eq!(shop("openkv_written_entries_total", ""), N as f64);
    assert_eq!(
        shop("openkv_http_requests_total", "endpoint=\"atomic_write\",status=\"200\""),
        (N + 1 + 3) as f64
    );
    assert_eq!(shop("openkv_queue_messages", "state=\"ready\""), 2.0);
    assert_eq!(shop("openkv_queue_messages", "state=\"delayed\""), 1.0);
    assert_eq!(shop("openkv_watch_streams", ""), 1.0);
    assert!(shop("openkv_database_size_bytes", "") > 0.0);
    assert!(shop("openkv_commit_duration_seconds_count", "") >= 1.0);
    assert_eq!(sample(&text, "openkv_auth_failures_total{reason=\"missing\"}"), Some(1.0));
    assert_eq!(sample(&text, "openkv_auth_failures_total{reason=\"invalid\"}"), Some(1.0));
    assert!(text.contains("openkv_build_info{version=\""), "{text}");
    drop(watch);

    // Who reads it: the access token too; a scoped token that is not admin of every
    // database not (403).
    assert_eq!(get(&format!("{url}/metrics"), Some(ROOT)).await.0, StatusCode::OK);
    let reader = Command::new(env!("CARGO_BIN_EXE_openkv"))
        .args([
            "--db",
            &url,
            "--access-token",
            ROOT,
            "token",
            "create",
            "--all-databases",
            "--scope",
            "read",
        ])
        .output()
        .unwrap();
    let reader = String::from_utf8(reader.stdout).unwrap();
    assert_eq!(get(&format!("{url}/metrics"), Some(reader.trim())).await.0, StatusCode::FORBIDDEN);

    // A deleted database is no longer reported.
    let delete = Command::new(env!("CARGO_BIN_EXE_openkv"))
        .args(["--db", &url, "--access-token", ROOT, "db", "delete", "shop", "--yes"])
        .output()
        .unwrap();
    assert!(delete.status.success(), "{delete:?}");
    let (_, after) = get(&format!("{url}/metrics"), Some(SCRAPER)).await;
    assert!(!after.contains("database=\"shop\""), "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_addr_serves_without_a_token_and_no_metrics_turns_them_off() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let db = dir.path().join("one.sqlite3");
    let metrics_addr = format!("127.0.0.1:{port}");
    let server = serve(&["--db", db.to_str().unwrap(), "--metrics-addr", &metrics_addr]);
    let kv = common::client_with(&server.url, ROOT).await;
    kv.set(&openkv::key!["a"], "1").await.unwrap();
    let side = format!("http://{metrics_addr}");
    let mut scraped = None;
    for _ in 0..100 {
        match reqwest::get(format!("{side}/metrics")).await {
            Ok(response) => {
                scraped = Some((response.status(), response.text().await.unwrap()));
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let (status, text) = scraped.expect("no answer from --metrics-addr");
    assert_eq!(status, StatusCode::OK);
    // A single-database server's database is "default".
    assert_eq!(
        sample(&text, "openkv_commits_total{database=\"default\",outcome=\"ok\"}"),
        Some(1.0)
    );
    if let Some((ok, said)) = promtool(&text) {
        assert!(ok, "promtool: {said}");
    }
    assert_eq!(get(&format!("{side}/readyz"), None).await, (StatusCode::OK, "ready".into()));
    // The server's own port still wants a token for it.
    assert_eq!(get(&format!("{}/metrics", server.url), None).await.0, StatusCode::UNAUTHORIZED);
    drop(server);

    let off = serve(&["--db", db.to_str().unwrap(), "--no-metrics"]);
    assert_eq!(get(&format!("{}/metrics", off.url), Some(ROOT)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&format!("{}/healthz", off.url), None).await.0, StatusCode::OK);
}
