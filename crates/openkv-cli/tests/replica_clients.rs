//! The clients against a primary `openkv serve` whose metadata lists a read replica
//! (`--replica-endpoint`) and that replica (`--replica-of`), all real processes. `@deno/kv`
//! (npm, on Node) and `@openkv/client` (`clients/js`, on Node) open the PRIMARY's URL and run
//! the phases of `tests/replica_clients/phase.mjs` one at a time; between phases the replica's
//! counters (`/v2/openkv/replication/status`) show where each request went:
//! - eventual reads are served by the replica's copy (`readsLocal` grows by at least N, none
//!   forwarded);
//! - strong reads never reach the replica (its read counters do not move);
//! - a watch runs on the replica (`watchesLocal` grows) and sees a later write made through
//!   the primary.
//!
//!
//! The Rust KV Connect client gets the same three checks in-process
//! (`the_rust_client_sends_eventual_reads_and_watches_to_the_listed_replica`).
//!
//! The tests of this file run one at a time (they start several processes each).

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::ffi::OsStr;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use common::{ensure_deno_kv_npm, try_start_server_at, workspace_root, Proc};

const TOKEN: &str = "replica-clients-token-0123";
/// Reads per phase.
const N: u64 = 25;

/// One test of this file at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// `openkv --db <db> serve --addr <addr> --access-token TOKEN <args…>`, or why it did not
/// start (the address taken, …).
fn serve(db: &Path, addr: &str, args: &[&str]) -> Result<Proc, String> {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    try_start_server_at(db, TOKEN, addr, &args).map(|(child, url)| Proc { child, url })
}

/// A port of 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A primary on a free port listing a replica at a port chosen up front, and that replica.
/// Tries again with another port if the chosen one was taken in the meantime.
fn primary_and_replica(dir: &Path) -> (Proc, Proc) {
    for _ in 0..3 {
        let port = free_port();
        let replica_url = format!("http://127.0.0.1:{port}");
        let primary = serve(
            &dir.join("primary.sqlite3"),
            "127.0.0.1:0",
            &["--replica-endpoint", &replica_url],
        )
        .unwrap();
        let addr = format!("127.0.0.1:{port}");
        match serve(&dir.join("replica.sqlite3"), &addr, &["--replica-of", &primary.url]) {
            Ok(replica) => {
                assert_eq!(replica.url, replica_url);
                return (primary, replica);
            }
            Err(e) => eprintln!("{e}; trying another port"),
        }
    }
    panic!("could not start the replica on a free port three times");
}

/// `POST <url><path>` with the token (and the KV Connect headers when `database_id` is given):
/// the JSON answer.
fn post_json(url: &str, path: &str, database_id: Option<&str>, body: &str) -> serde_json::Value {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--fail-with-body", "-X", "POST"])
        .args(["-H", &format!("authorization: Bearer {TOKEN}")])
        .args(["-H", "content-type: application/json", "--data", body]);
    if let Some(id) = database_id {
        cmd.args(["-H", "x-denokv-version: 3", "-H", &format!("x-denokv-database-id: {id}")]);
    }
    let out = cmd.arg(format!("{url}{path}")).output().expect("run curl");
    assert!(
        out.status.success(),
        "POST {url}{path}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The KV Connect metadata of the server at `url`.
fn metadata(url: &str) -> serde_json::Value {
    post_json(url, "/", None, r#"{"supportedVersions":[3]}"#)
}

/// The replication status of the server at `url`.
fn status(url: &str, database_id: &str) -> serde_json::Value {
    post_json(url, "/v2/openkv/replication/status", Some(database_id), "")
}

fn counter(status: &serde_json::Value, name: &str) -> u64 {
    status[name].as_u64().unwrap_or_else(|| panic!("no counter {name} in {status}"))
}

/// Waits (at most 30 s) until the replica installed its first snapshot: from then on it
/// serves reads from its copy.
fn wait_bootstrapped(url: &str, database_id: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status(url, database_id);
        if counter(&s, "bootstraps") >= 1 {
            return;
        }
        assert!(Instant::now() < deadline, "the replica did not bootstrap: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `node tests/replica_clients/phase.mjs <client> <phase> N` against `url` (at most 90 s)
/// and checks that it printed `ok <phase> …`.
fn run_phase(client: &str, phase: &str, url: &str) {
    let n = N.to_string();
    let child = Command::new("node")
        .args(["tests/replica_clients/phase.mjs", client, phase, &n])
        .current_dir(workspace_root())
        .env("KV_URL", url)
        .env("DENO_KV_ACCESS_TOKEN", TOKEN)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node (is Node installed?)");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(90)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            panic!("{client} {phase}: node did not finish within 90 s");
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{client} {phase} failed ({})\n{stdout}\n{stderr}", out.status);
    assert!(
        stdout.lines().any(|l| l.starts_with(&format!("ok {phase} "))),
        "{client} {phase}: no `ok` line\n{stdout}\n{stderr}"
    );
}

/// The replica's counters before and after `client` ran `phase`: (readsLocal, readsForwarded,
/// watchesLocal) deltas.
fn phase_deltas(client: &str, phase: &str, primary: &str, replica: &str, id: &str) -> [u64; 3] {
    const NAMES: [&str; 3] = ["readsLocal", "readsForwarded", "watchesLocal"];
    let before = status(replica, id);
    run_phase(client, phase, primary);
    let after = status(replica, id);
    let deltas = NAMES.map(|name| counter(&after, name) - counter(&before, name));
    eprintln!("{client} {phase}: {NAMES:?} grew by {deltas:?}");
    deltas
}

fn client_routes_reads_and_watches_to_the_replica(client: &str) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (primary, replica) = primary_and_replica(dir.path());

    // The primary lists its own strong endpoint first (relative to the metadata URL, as
    // version 2+ allows), then the replica's eventual one.
    let meta = metadata(&primary.url);
    let absolute = |url: &str| match url.strip_prefix('/') {
        Some(path) => format!("{}/{path}", primary.url),
        None => url.to_owned(),
    };
    let endpoints: Vec<(String, String)> = meta["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (absolute(e["url"].as_str().unwrap()), e["consistency"].as_str().unwrap().into()))
        .collect();
    assert_eq!(
        endpoints,
        [
            (format!("{}/v2", primary.url), "strong".to_owned()),
            (format!("{}/v2/eventual", replica.url), "eventual".to_owned()),
        ],
        "{meta}"
    );
    let id = meta["databaseId"].as_str().unwrap().to_owned();
    wait_bootstrapped(&replica.url, &id);
    assert_eq!(status(&replica.url, &id)["replica"], true);
    assert_eq!(status(&primary.url, &id)["replica"], false);

    let deltas = |phase| phase_deltas(client, phase, &primary.url, &replica.url, &id);
    // Writes through the primary, until an eventual read sees them (on the replica).
    deltas("seed");

    let [local, forwarded, _] = deltas("eventual");
    assert!(local >= N, "{client}: {N} eventual reads, only {local} served by the replica's copy");
    assert_eq!(forwarded, 0, "{client}: eventual reads forwarded by a replica that is ready");

    let [local, forwarded, watches] = deltas("strong");
    assert_eq!(
        (local, forwarded, watches),
        (0, 0, 0),
        "{client}: strong reads reached the replica (they belong to the primary's /v2)"
    );

    let [_, _, watches] = deltas("watch");
    assert!(watches >= 1, "{client}: the watch was not served by the replica");

    // The writes (all sent to the primary) reached the replica through the change log.
    let s = status(&replica.url, &id);
    assert!(counter(&s, "recordsApplied") > 0, "{s}");
    drop(replica);
    drop(primary);
}

#[test]
fn deno_kv_npm_sends_eventual_reads_and_watches_to_the_replica_and_strong_reads_to_the_primary() {
    ensure_deno_kv_npm();
    client_routes_reads_and_watches_to_the_replica("deno-kv");
}

#[test]
fn openkv_client_sends_eventual_reads_and_watches_to_the_replica_and_strong_reads_to_the_primary() {
    client_routes_reads_and_watches_to_the_replica("openkv");
}

/// The Rust KV Connect client, pointed at the primary: `Consistency::Eventual` reads and
/// watches go to the replica the metadata lists, strong reads to the primary.
#[test]
fn the_rust_client_sends_eventual_reads_and_watches_to_the_listed_replica() {
    use futures::StreamExt;
    use openkv::{key, Consistency, OpenOptions};
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (primary, replica) = primary_and_replica(dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let kv = OpenOptions::new().access_token(TOKEN).open(&primary.url).await.unwrap();
        let id = kv.database_id().await.unwrap().to_string();
        wait_bootstrapped(&replica.url, &id);
        kv.set(&key!["k"], &1i64).await.unwrap();
        let before = status(&replica.url, &id);
        for _ in 0..N {
            kv.get_with(&key!["k"], Consistency::Eventual).await.unwrap();
        }
        let middle = status(&replica.url, &id);
        for _ in 0..N {
            let got = kv.get(&key!["k"]).await.unwrap().unwrap();
            assert_eq!(got.value.decode::<i64>().unwrap(), 1);
        }
        let after = status(&replica.url, &id);
        assert!(counter(&middle, "readsLocal") - counter(&before, "readsLocal") >= N);
        assert_eq!(counter(&after, "readsLocal"), counter(&middle, "readsLocal"), "strong reads");
        let mut watch = kv.watch(&[key!["k"]]).unwrap();
        let first = watch.next().await.unwrap().unwrap();
        assert!(first[0].is_some());
        kv.set(&key!["k"], &2i64).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let next = tokio::time::timeout(Duration::from_secs(20), watch.next()).await;
            let snapshot = next.expect("the watch saw the write").unwrap().unwrap();
            let value = snapshot[0].as_ref().unwrap().value.decode::<i64>().unwrap();
            if value == 2 {
                break;
            }
            assert!(Instant::now() < deadline);
        }
        assert!(counter(&status(&replica.url, &id), "watchesLocal") >= 1, "served by the replica");
        kv.close().await.unwrap();
    });
    drop(replica);
    drop(primary);
}
