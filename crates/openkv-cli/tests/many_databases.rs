//! `openkv serve --data-dir`: many databases on one server, scoped tokens, the admin API,
//! health — against the real binary, with the CLI, raw HTTP, the Deno CLI and `@deno/kv` as
//! clients; and two servers on one PostgreSQL sharing their catalog.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::ffi::OsStr;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{ensure_deno_kv_npm, workspace_root, Proc};
use reqwest::{Method, StatusCode};

const ROOT: &str = "many-databases-root-token";

/// `openkv serve --data-dir DIR` on a free port, with these databases made.
fn serve_many(data_dir: &OsStr, databases: &[&str]) -> Proc {
    let token = OsStr::new(ROOT);
    let server =
        common::serve(&["--access-token".as_ref(), token, "--data-dir".as_ref(), data_dir]);
    for name in databases {
        stdout(&cli(&server.url, ROOT, &["db", "create", name]));
    }
    server
}

/// `openkv --db URL --access-token TOKEN ARGS…`, to its end.
fn cli(url: &str, token: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_openkv"))
        .args(["--db", url, "--access-token", token])
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "openkv failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Creates a token through the CLI; returns the token and its id.
fn create_token(url: &str, args: &[&str]) -> (String, String) {
    let token = stdout(&cli(url, ROOT, &[&["token", "create"], args].concat()));
    let id = token.strip_prefix("okv_").unwrap()[..12].to_owned();
    (token, id)
}

/// The scope each endpoint of a database needs: this test's own table (not the server's),
/// checked to cover every route the server has.
const ENDPOINT_SCOPES: &[(&str, &str)] = &[
    ("/", "read"),
    ("/v2/snapshot_read", "read"),
    ("/v2/atomic_write", "write"),
    ("/v2/watch", "read"),
    ("/v2/eventual/snapshot_read", "read"),
    ("/v2/eventual/watch", "read"),
    ("/v2/openkv/queue/take", "write"),
    ("/v2/openkv/queue/wait", "write"),
    ("/v2/openkv/queue/renew", "write"),
    ("/v2/openkv/queue/finish", "write"),
    ("/v2/openkv/replication/snapshot", "read"),
    ("/v2/openkv/replication/log", "read"),
    ("/v2/openkv/replication/status", "read"),
    ("/v2/openkv/backup", "admin"),
    ("/v2/openkv/restore", "admin"),
    ("/console/api/get", "read"),
    ("/console/api/list", "read"),
    ("/console/api/children", "read"),
    ("/console/api/count", "read"),
    ("/console/api/watch", "read"),
    ("/console/api/stats", "read"),
    ("/console/api/export", "read"),
    ("/console/api/queue", "read"),
    ("/console/api/set", "write"),
    ("/console/api/delete", "write"),
    ("/console/api/delete-prefix", "write"),
    ("/console/api/queue/delete", "write"),
    ("/console/api/queue/due-now", "write"),
    ("/console/api/import", "write"),
];

fn rank(scope: &str) -> u8 {
    match scope {
        "read" => 1,
        "write" => 2,
        "admin" => 3,
        other => panic!("no scope {other}"),
    }
}

/// A token the matrix tries, and what it is.
struct Case {
    label: &'static str,
    token: Option<String>,
    /// `None`: not a valid token (401 everywhere). Else its scope and whether it reaches
    /// every database (or only `alpha`).
    valid: Option<(&'static str, bool)>,
}

/// What a request should get: an exact refusal, or through to the endpoint (any status but
/// the refusals').
#[derive(Debug, PartialEq)]
enum Expect {
    Refused(StatusCode),
    Through,
}

fn expect(case: &Case, database: &str, needs: &str) -> Expect {
    let Some((scope, all)) = case.valid else { return Expect::Refused(StatusCode::UNAUTHORIZED) };
    let reaches = database == "alpha" || (all && database == "beta");
    if !reaches {
        return Expect::Refused(StatusCode::NOT_FOUND);
    }
    if rank(scope) < rank(needs) {
        return Expect::Refused(StatusCode::FORBIDDEN);
    }
    Expect::Through
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_every_token_by_scope_reach_and_state() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_many(dir.path().join("data").as_os_str(), &["alpha", "beta"]);
    let url = server.url.clone();
    // The server's routes are all in this test's table.
    let ours: Vec<&str> = ENDPOINT_SCOPES.iter().map(|(p, _)| *p).collect();
    for route in openkv_server::ROUTES {
        assert!(ours.contains(route), "{route} is missing from ENDPOINT_SCOPES");
    }
    let (read, _) = create_token(&url, &["--database", "alpha", "--scope", "read"]);
    let (write, _) = create_token(&url, &["--database", "alpha", "--scope", "write"]);
    let (admin, _) = create_token(&url, &["--database", "alpha", "--scope", "admin"]);
    let (manager, _) = create_token(&url, &["--all-databases", "--scope", "admin"]);
    let (reader_all, _) = create_token(&url, &["--all-databases", "--scope", "read"]);
    let (expired, _) =
        create_token(&url, &["--database", "alpha", "--scope", "admin", "--expires-in", "1s"]);
    let (revoked, revoked_id) = create_token(&url, &["--all-databases", "--scope", "admin"]);
    stdout(&cli(&url, ROOT, &["token", "revoke", &revoked_id]));
    let wrong_secret = format!("{}_{}", &admin[..16], "A".repeat(43));
    std::thread::sleep(Duration::from_millis(1_100)); // `expired` expires
    let cases = vec![
        Case { label: "read@alpha", token: Some(read), valid: Some(("read", false)) },
        Case { label: "write@alpha", token: Some(write), valid: Some(("write", false)) },
        Case { label: "admin@alpha", token: Some(admin.clone()), valid: Some(("admin", false)) },
        Case { label: "admin@*", token: Some(manager.clone()), valid: Some(("admin", true)) },
        Case { label: "read@*", token: Some(reader_all), valid: Some(("read", true)) },
        Case { label: "root", token: Some(ROOT.to_owned()), valid: Some(("admin", true)) },
        Case { label: "expired", token: Some(expired), valid: None },
        Case { label: "revoked", token: Some(revoked), valid: None },
        Case { label: "wrong secret", token: Some(wrong_secret), valid: None },
        Case { label: "malformed", token: Some("okv_zz".to_owned()), valid: None },
        Case { label: "missing", token: None, valid: None },
    ];
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let mut checked = 0;
    for case in &cases {
        for database in ["alpha", "beta", "nosuch"] {
            for (path, needs) in ENDPOINT_SCOPES {
                let full = match *path {
                    "/" => format!("{url}/databases/{database}/connect"),
                    p => format!("{url}/databases/{database}{p}"),
                };
                let mut request = http.post(&full).header("x-denokv-version", "3");
                if let Some(token) = &case.token {
                    request = request.bearer_auth(token);
                }
                // Headers only: a stream (watch, log) is dropped once its status is known.
                let status = request.send().await.unwrap().status();
                let want = expect(case, database, needs);
                let got = match status {
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => {
                        Expect::Refused(status)
                    }
                    _ => Expect::Through,
                };
                assert_eq!(got, want, "{} on {database}{path}: {status}", case.label);
                checked += 1;
            }
        }
    }
    // The admin API: listing and one database's figures need admin on it; everything that
    // manages needs admin on every database.
    let admin_calls: &[(Method, &str, Option<&str>, bool)] = &[
        (Method::GET, "/admin/databases", None, false),
        (Method::GET, "/admin/databases/alpha", None, false),
        (Method::GET, "/admin/tokens", None, true),
        (Method::POST, "/admin/databases", Some(r#"{"name": "made-by-test"}"#), true),
        (Method::DELETE, "/admin/databases/made-by-test", None, true),
        (Method::POST, "/admin/tokens", Some(r#"{"databases": ["*"], "scope": "read"}"#), true),
    ];
    for case in &cases {
        for (method, path, body, manages) in admin_calls {
            let mut request = http.request(method.clone(), format!("{url}{path}"));
            if let Some(token) = &case.token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = body {
                request = request.body(body.to_string());
            }
            let status = request.send().await.unwrap().status();
            let want = match case.valid {
                None => StatusCode::UNAUTHORIZED,
                Some(("admin", true)) => {
                    if *method == Method::POST {
                        StatusCode::CREATED
                    } else {
                        StatusCode::OK
                    }
                }
                Some(("admin", false)) if !manages => StatusCode::OK,
                Some(_) => StatusCode::FORBIDDEN,
            };
            // A manager's create and delete run once each per manager case: the second
            // manager finds the database made by the first gone again (delete ran).
            assert_eq!(status, want, "{} {method} {path}", case.label);
            checked += 1;
        }
    }
    // An admin token of alpha lists alpha only; one database it does not reach is 404.
    let listed = stdout(&cli(&url, &admin, &["db", "list", "--json"]));
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let names: Vec<&str> = listed["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha"]);
    let other = cli(&url, &admin, &["db", "info", "beta"]);
    assert_eq!(other.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&other.stderr).contains("404"), "{other:?}");
    eprintln!("checked {checked} requests");
    assert_eq!(checked, cases.len() * (3 * ENDPOINT_SCOPES.len() + admin_calls.len()));
}

#[test]
fn the_deno_cli_and_deno_kv_reach_two_databases_of_one_server_separately() {
    ensure_deno_kv_npm();
    let dir = tempfile::tempdir().unwrap();
    let server = serve_many(dir.path().join("data").as_os_str(), &["app-prod", "app-staging"]);
    let url = server.url.clone();
    // A write token of both databases, as a team would hand an app.
    let (token, _) = create_token(
        &url,
        &["--database", "app-prod", "--database", "app-staging", "--scope", "write"],
    );
    let deno = Command::new(common::deno_bin())
        .args(["run", "-A", "--unstable-kv", "tests/deno/two_databases.ts", &url])
        .args(["app-prod", "app-staging"])
        .current_dir(workspace_root())
        .env("DENO_KV_ACCESS_TOKEN", &token)
        .env("NO_COLOR", "1")
        .env("DENO_NO_UPDATE_CHECK", "1")
        .output()
        .unwrap();
    assert_eq!(stdout(&deno), "separate app-prod app-staging");
    let node = Command::new("node")
        .arg("tests/node/two_databases.mjs")
        .current_dir(workspace_root())
        .env("KV_URL", &url)
        .env("DATABASES", "app-prod,app-staging")
        .env("DENO_KV_ACCESS_TOKEN", &token)
        .output()
        .unwrap();
    assert_eq!(stdout(&node), "separate app-prod app-staging");
    // What each client wrote is in its own database's file, read by the CLI.
    for name in ["app-prod", "app-staging"] {
        let db = format!("{url}/databases/{name}/connect");
        assert_eq!(stdout(&cli(&db, &token, &["get", r#"["owner"]"#])), format!("\"node:{name}\""));
    }
    assert!(dir.path().join("data/app-prod.sqlite3").is_file());
    assert!(dir.path().join("data/app-staging.sqlite3").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_database_ends_its_watchers_and_leaves_the_others_alone() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let server = serve_many(dir.path().join("data").as_os_str(), &["doomed", "kept"]);
    let url = server.url.clone();
    let doomed = common::client_with(&format!("{url}/databases/doomed/connect"), ROOT).await;
    let kept = common::client_with(&format!("{url}/databases/kept/connect"), ROOT).await;
    let key = openkv::key!["k"];
    doomed.set(&key, "before").await.unwrap();
    let mut doomed_watch = doomed.watch(std::slice::from_ref(&key)).unwrap();
    let mut kept_watch = kept.watch(std::slice::from_ref(&key)).unwrap();
    assert!(doomed_watch.next().await.unwrap().is_ok(), "the first snapshot");
    assert!(kept_watch.next().await.unwrap().is_ok(), "the first snapshot");

    let out = cli(&url, ROOT, &["db", "delete", "doomed"]);
    assert_eq!(out.status.code(), Some(2), "delete without --yes is refused");
    stdout(&cli(&url, ROOT, &["db", "delete", "doomed", "--yes"]));
    // The watcher of the deleted database ends (its stream closes or fails: the client may
    // try to reconnect and is refused), within seconds rather than hanging.
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match doomed_watch.next().await {
                None | Some(Err(_)) => break,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the deleted database's watch stream did not end");
    assert!(!dir.path().join("data/doomed.sqlite3").exists());
    // The client that was connected gets a clear error for its next request, not a hang.
    let next = tokio::time::timeout(Duration::from_secs(30), doomed.get(&key)).await;
    let err = next.expect("a request to the deleted database hung").unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    // New requests to it are 404, like a database that never was.
    let again = cli(&format!("{url}/databases/doomed/connect"), ROOT, &["get", r#"["k"]"#]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("404"), "{again:?}");
    // The other database goes on: its watcher sees a new write.
    kept.set(&key, "after").await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let entries = kept_watch.next().await.unwrap().unwrap();
            let value = entries[0].clone().map(|e| e.decode::<String>().unwrap().value);
            if value.as_deref() == Some("after") {
                return;
            }
        }
    })
    .await;
    assert!(seen.is_ok(), "the other database's watcher did not see its write");
    // The name can be used again, for a new empty database.
    stdout(&cli(&url, ROOT, &["db", "create", "doomed"]));
    let fresh = common::client_with(&format!("{url}/databases/doomed/connect"), ROOT).await;
    assert!(fresh.get(&key).await.unwrap().is_none());
}

#[test]
fn health_needs_no_token_and_says_nothing_of_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_many(dir.path().join("data").as_os_str(), &["secret-project"]);
    for (path, body) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let out = Command::new("curl")
            .args(["-sS", "-w", "\n%{http_code}"])
            .arg(format!("{}{path}", server.url))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text, format!("{body}\n200"), "{path}");
    }
}

#[test]
fn a_single_database_server_has_health_and_no_admin_api() {
    let dir = tempfile::tempdir().unwrap();
    let (child, url) = common::start_server(&dir.path().join("one.sqlite3"), ROOT);
    let _server = Proc { child, url: url.clone() };
    let ready = Command::new("curl")
        .args(["-sS", "-w", " %{http_code}"])
        .arg(format!("{url}/readyz"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&ready.stdout), "ready 200");
    // `openkv db` needs a server of many databases: a clear refusal, exit 1.
    let out = cli(&url, ROOT, &["db", "list"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"), "{out:?}");
    // `openkv info` reads it as one database.
    stdout(&cli(&url, ROOT, &["set", r#"["a"]"#, "1"]));
    let info = stdout(&cli(&url, ROOT, &["info"]));
    assert!(info.contains("live entries:    1"), "{info}");
}

/// A fresh PostgreSQL database on the test cluster (`OPENKV_TEST_POSTGRES_URL`): the catalog
/// lives in fixed schemas, so each test takes a database of its own.
fn fresh_postgres_database() -> Option<String> {
    let base = common::fresh_postgres_url()?;
    let base = base.split('?').next().unwrap().to_owned();
    let name = format!("t_{}", common::random_hex());
    let out = Command::new("psql")
        .arg(&base)
        .args(["-v", "ON_ERROR_STOP=1", "-qc", &format!("create database {name}")])
        .output()
        .expect("run psql");
    assert!(out.status.success(), "create database: {}", String::from_utf8_lossy(&out.stderr));
    let (server, _) = base.rsplit_once('/').unwrap();
    Some(format!("{server}/{name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_postgresql_share_databases_and_revocations() {
    let Some(pg) = fresh_postgres_database() else { return };
    let a = serve_many(OsStr::new(&pg), &[]);
    let b = serve_many(OsStr::new(&pg), &[]);
    stdout(&cli(&a.url, ROOT, &["db", "create", "shared"]));
    let (token, id) = create_token(&a.url, &["--database", "shared", "--scope", "write"]);
    // Server b learns of the database and the token at its next read of the catalog.
    let db_b = format!("{}/databases/shared/connect", b.url);
    let http = reqwest::Client::new();
    let metadata = |token: String| {
        let http = http.clone();
        let db_b = db_b.clone();
        async move {
            http.post(&db_b)
                .bearer_auth(token)
                .body(r#"{"supportedVersions":[3]}"#)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while metadata(token.clone()).await != StatusCode::OK {
        assert!(Instant::now() < deadline, "server b never served the new database and token");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A write through a, read through b: one database.
    stdout(&cli(&format!("{}/databases/shared/connect", a.url), &token, &["set", r#"["x"]"#, "7"]));
    assert_eq!(stdout(&cli(&db_b, &token, &["get", r#"["x"]"#])), "7");
    // Revoked through a, refused by b within the refresh period (and one read's time).
    stdout(&cli(&a.url, ROOT, &["token", "revoke", &id]));
    let revoked_at = Instant::now();
    let limit = openkv_server::TOKEN_REFRESH * 2 + Duration::from_secs(1);
    loop {
        if metadata(token.clone()).await == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            revoked_at.elapsed() < limit,
            "server b still took the revoked token after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("server b refused the revoked token {:?} after the revocation", revoked_at.elapsed());
    // Deleted through a: b stops serving it too.
    stdout(&cli(&a.url, ROOT, &["db", "delete", "shared", "--yes"]));
    let deadline = Instant::now() + Duration::from_secs(20);
    while metadata(ROOT.to_owned()).await != StatusCode::NOT_FOUND {
        assert!(Instant::now() < deadline, "server b still serves the deleted database");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn bad_input_to_db_and_token_commands_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_many(dir.path().join("data").as_os_str(), &["real"]);
    let url = server.url.clone();
    let usage: &[&[&str]] = &[
        // Refused by the server (400) ...
        &["db", "create", "Bad_Name"],
        &["token", "create", "--database", "unreal", "--scope", "read"],
        // ... or by the command line itself.
        &["token", "create", "--database", "real", "--scope", "root"],
        &["token", "create", "--scope", "read"],
        &["token", "create", "--all-databases", "--scope", "read", "--expires-in", "0s"],
        &["db", "delete", "real"],
    ];
    for args in usage {
        let out = cli(&url, ROOT, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(!out.stderr.is_empty(), "{args:?}: no message");
    }
    // Runtime failures: exit 1 with the server's word for it.
    let runtime: &[(&[&str], &str)] = &[
        (&["db", "create", "real"], "409"),
        (&["db", "delete", "nothing-here", "--yes"], "404"),
        (&["token", "revoke", "000000000000"], "404"),
    ];
    for (args, status) in runtime {
        let out = cli(&url, ROOT, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(status), "{args:?}: {out:?}");
    }
    // The database and the token list are as they were.
    assert!(stdout(&cli(&url, ROOT, &["db", "list"])).contains("real"));
    assert_eq!(stdout(&cli(&url, ROOT, &["token", "list"])).lines().count(), 1, "only the header");
}
