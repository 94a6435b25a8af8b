//! The real Deno CLI against the real `openkv serve` binary: the TypeScript suite in
//! `tests/deno/kv_connect/` (every behaviour of SEMANTICS.md reachable over KV Connect) runs
//! with `deno test`, then the server is stopped with SIGTERM and must exit cleanly, leaving a
//! database that opens with everything the suite wrote. Twice: `openkv serve` on a SQLite file,
//! and on a fresh schema of a PostgreSQL database (`$OPENKV_TEST_POSTGRES_URL`; skipped when
//! unset, unless `OPENKV_REQUIRE_POSTGRES=1`).

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{deno_bin, fresh_postgres_url, start_server, workspace_root};
use std::path::Path;
use std::process::Command;

const TOKEN: &str = "kv-connect-suite-token-0123";

#[test]
fn deno_kv_connect_suite_passes_against_openkv_serve() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("served.sqlite3");
    run_suite_then_sigterm(&db);
    // The served file opens afterwards and holds the marker (the suite removes its own keys).
    assert_eq!(live_entries(&db), 1);
}

#[test]
fn deno_kv_connect_suite_passes_against_openkv_serve_on_postgres() {
    let Some(db) = fresh_postgres_url() else { return };
    eprintln!("database: {db}");
    run_suite_then_sigterm(Path::new(&db));
    // The schema opens afterwards, directly (no server), and holds only the marker.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let kv = openkv::Kv::open(&db).await.unwrap_or_else(|e| panic!("opening {db}: {e}"));
        let selector = openkv::Selector::prefix(openkv::Key::default());
        let mut entries = kv.list(selector, openkv::ListOptions::new()).unwrap();
        let mut all = Vec::new();
        while let Some(entry) = futures::StreamExt::next(&mut entries).await {
            all.push(entry.unwrap());
        }
        assert_eq!(all.len(), 1, "only the marker should be left: {all:?}");
        assert_eq!(all[0].key, openkv::key!["marker"]);
        assert_eq!(all[0].clone().decode::<String>().unwrap().value, "written before SIGTERM");
        kv.close().await.unwrap();
    });
}

/// Serves `db`, runs the suite against it, writes `["marker"]` through Deno, then stops the
/// server with SIGTERM; asserts that all of it went well.
fn run_suite_then_sigterm(db: &Path) {
    let (mut server, url) = start_server(db, TOKEN);

    let out = Command::new(deno_bin())
        .args(["test", "-A", "--unstable-kv", "tests/deno/kv_connect/"])
        .current_dir(workspace_root())
        .env("KV_URL", &url)
        .env("DENO_KV_ACCESS_TOKEN", TOKEN)
        .env("NO_COLOR", "1")
        .env("DENO_NO_UPDATE_CHECK", "1")
        .output()
        .expect("run deno test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary = stdout.lines().rev().find(|l| l.contains("passed")).unwrap_or("").to_owned();
    eprintln!("deno test: {summary}");

    // One acknowledged write right before shutdown, which must survive it.
    let marker = Command::new(deno_bin())
        .args(["eval", "--unstable-kv"])
        .arg(format!(
            "const kv = await Deno.openKv({url:?}); \
             const r = await kv.set([\"marker\"], \"written before SIGTERM\"); \
             if (!r.ok) Deno.exit(1); kv.close();"
        ))
        .env("DENO_KV_ACCESS_TOKEN", TOKEN)
        .env("DENO_NO_UPDATE_CHECK", "1")
        .status()
        .expect("run deno eval");

    // SIGTERM: graceful shutdown, exit status 0.
    let pid = server.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = server.wait().unwrap();

    assert!(out.status.success(), "deno test failed: {summary}\n{stdout}\n{stderr}");
    assert!(summary.contains(" 0 failed"), "{summary}");
    assert!(marker.success(), "writing the marker through Deno failed");
    assert!(status.success(), "openkv serve exited with {status} after SIGTERM");
}

/// `openkv info`'s count of live entries.
fn live_entries(db: &Path) -> i64 {
    let out = Command::new(env!("CARGO_BIN_EXE_openkv"))
        .arg("--db")
        .arg(db)
        .arg("info")
        .output()
        .unwrap();
    assert!(out.status.success(), "openkv info failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("live entries:")).expect("info prints entries");
    line.split_whitespace().last().unwrap().parse().unwrap()
}
