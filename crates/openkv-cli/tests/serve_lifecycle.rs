//! `openkv serve` with the real Deno CLI around it:
//! - it serves a database file that Deno CLI itself created, and Deno reads it over KV Connect;
//! - SIGTERM while a Deno client is committing: the server exits cleanly and every write the
//!   client saw acknowledged is in the file.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{deno_bin, sigterm, start_server};

const TOKEN: &str = "lifecycle-token-0123456789";

fn deno_eval(code: &str, kv_url: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new(deno_bin());
    cmd.args(["eval", "--unstable-kv", code])
        .env("DENO_KV_ACCESS_TOKEN", TOKEN)
        .env("DENO_NO_UPDATE_CHECK", "1")
        .env("NO_COLOR", "1");
    if let Some(url) = kv_url {
        cmd.env("KV_URL", url);
    }
    cmd.output().expect("run deno eval")
}

#[test]
fn serves_a_file_deno_cli_created() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("made_by_deno.sqlite3");
    let local = deno_eval(
        &format!(
            "const kv = await Deno.openKv({:?}); \
             await kv.set([\"made\", \"by\", \"deno\"], {{ local: true, n: 42n }}); \
             await kv.atomic().sum([\"count\"], 5n).commit(); kv.close();",
            db.to_str().unwrap()
        ),
        None,
    );
    assert!(local.status.success(), "{}", String::from_utf8_lossy(&local.stderr));

    let (mut server, url) = start_server(&db, TOKEN);
    let remote = deno_eval(
        "const kv = await Deno.openKv(Deno.env.get(\"KV_URL\")); \
         const e = await kv.get([\"made\", \"by\", \"deno\"]); \
         const c = await kv.get([\"count\"]); \
         console.log(JSON.stringify({ local: e.value.local, n: String(e.value.n), \
           count: String(c.value.value), kvu64: c.value instanceof Deno.KvU64 })); kv.close();",
        Some(&url),
    );
    let status = sigterm(&mut server);
    assert!(remote.status.success(), "{}", String::from_utf8_lossy(&remote.stderr));
    assert_eq!(
        String::from_utf8_lossy(&remote.stdout).trim(),
        r#"{"local":true,"n":"42","count":"5","kvu64":true}"#
    );
    assert!(status.success(), "openkv serve exited with {status}");
}

#[test]
fn sigterm_under_load_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("load.sqlite3");
    let (mut server, url) = start_server(&db, TOKEN);
    // A Deno client commits as fast as it can, 8 writes in flight at a time, printing each
    // key once its commit was acknowledged.
    let mut client = Command::new(deno_bin())
        .args([
            "eval",
            "--unstable-kv",
            "const kv = await Deno.openKv(Deno.env.get(\"KV_URL\")); let i = 0; \
             async function writer() { for (;;) { const n = i++; \
               const r = await kv.set([\"load\", n], n); \
               if (r.ok) console.log(`ack ${n}`); } } \
             await Promise.all(Array.from({ length: 8 }, writer));",
        ])
        .env("KV_URL", &url)
        .env("DENO_KV_ACCESS_TOKEN", TOKEN)
        .env("DENO_NO_UPDATE_CHECK", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the Deno client");
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    let mut acked = Vec::new();
    let started = Instant::now();
    while acked.len() < 300 {
        assert!(started.elapsed() < Duration::from_secs(60), "the client is too slow");
        let line = lines.next().expect("the client ended early").unwrap();
        if let Some(n) = line.strip_prefix("ack ") {
            acked.push(n.parse::<u64>().unwrap());
        }
    }
    // Writes are in flight right now.
    let status = sigterm(&mut server);
    // The Deno client retries forever once the server is gone; stop it and collect every
    // acknowledgement it printed before that.
    std::thread::sleep(Duration::from_millis(300));
    let _ = client.kill();
    let _ = client.wait();
    for line in lines.map_while(Result::ok) {
        if let Some(n) = line.strip_prefix("ack ") {
            acked.push(n.parse().unwrap());
        }
    }
    assert!(status.success(), "openkv serve exited with {status} after SIGTERM under load");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let kv = openkv::Kv::open(&db).await.unwrap();
        for n in &acked {
            let key = openkv::key!["load", *n as f64];
            assert!(kv.get(&key).await.unwrap().is_some(), "acknowledged write {n} lost");
        }
        kv.close().await.unwrap();
    });
    eprintln!("{} acknowledged writes, all present after SIGTERM under load", acked.len());
}
