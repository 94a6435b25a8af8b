//! The real Deno CLI against the real `openkv serve` binary: the TypeScript suite in
//! `tests/deno/kv_connect/` (every behaviour of SEMANTICS.md reachable over KV Connect) runs
//! with `deno test`, then the server is stopped with SIGTERM and must exit cleanly, leaving a
//! database that opens with everything the suite wrote.

mod common;

use common::{deno_bin, start_server, workspace_root};
use std::path::Path;
use std::process::Command;

const TOKEN: &str = "kv-connect-suite-token-0123";

#[test]
fn deno_kv_connect_suite_passes_against_openkv_serve() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("served.sqlite3");
    let (mut server, url) = start_server(&db, TOKEN);

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

    // The served file opens afterwards and holds the marker (the suite removes its own keys).
    assert_eq!(live_entries(&db), 1);
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
