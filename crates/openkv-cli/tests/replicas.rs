//! Read replicas with real processes: a primary `openkv serve` on a SQLite file and a replica
//! `openkv serve --replica-of <primary> --db <its own file>`, reached by the Rust KV Connect
//! client (which sends eventual reads to the replica endpoint the metadata lists) and by the
//! Deno CLI.
//! - convergence: a seeded random workload (sets, deletes, sums, expiring sets, versionstamped
//!   keys, enqueue-only commits) on the primary; the replica ends with the same entries,
//!   versionstamps included;
//! - never half a commit: bank transfers on the primary while eventual reads of every account
//!   on the replica always sum to the total and never see versionstamps go back;
//! - kill -9 of the replica mid-apply, restart: it resumes from its position (no second
//!   bootstrap) and converges; the primary restarted under the replica: it goes on;
//! - a commit the Deno CLI writes into the primary's file (no log record): the gap is
//!   detected and the replica bootstraps again; retention exceeded while the replica is down:
//!   the same;
//! - the Deno CLI pointed at the replica: its writes reach the primary, a strong read after a
//!   write sees it, and its reads are served by the replica's copy (counted there);
//! - queues stay the primary's: a message enqueued through the replica reaches a listener of
//!   the primary, and a listener connected to the replica gets the primary's messages;
//! - a SQLite replica of a PostgreSQL primary refuses (saying why) and forwards everything.
//!
//! The tests of this file run one at a time (they start several processes each).

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::Future;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use openkv::{key, Consistency, EnqueueOptions, Key, Kv, KvU64, RawEntry, ReadRange, Value};
use rand::{Rng, SeedableRng};

use common::{deno_bin, sigterm, start_server_at, start_server_with, workspace_root, Proc};
// (also `common::fresh_postgres_url`, `common::start_server`)

const TOKEN: &str = "replica-test-token-0123";

/// One test of this file at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn replica_test<F: Future<Output = ()>>(body: impl FnOnce(tempfile::TempDir) -> F) {
    let _serial: MutexGuard<'_, ()> = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(body(dir));
}

fn primary(dir: &Path, extra: &[&str]) -> Proc {
    let args: Vec<&std::ffi::OsStr> = extra.iter().map(std::ffi::OsStr::new).collect();
    let (child, url) = start_server_with(&dir.join("primary.sqlite3"), TOKEN, &args);
    Proc { child, url }
}

fn replica_at(dir: &Path, primary: &str, addr: &str) -> Proc {
    let args = ["--replica-of", primary];
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    let (child, url) = start_server_at(&dir.join("replica.sqlite3"), TOKEN, addr, &args);
    Proc { child, url }
}

/// A primary, a replica of it, and clients of both, the replica caught up.
async fn primary_and_replica(dir: &Path) -> (Proc, Kv, Proc, Kv) {
    let p = primary(dir, &[]);
    let pkv = client(&p.url).await;
    let r = replica(dir, &p.url);
    let rkv = client(&r.url).await;
    converge(&pkv, &rkv).await;
    (p, pkv, r, rkv)
}

fn replica(dir: &Path, primary: &str) -> Proc {
    replica_at(dir, primary, "127.0.0.1:0")
}

async fn client(url: &str) -> Kv {
    common::client_with(url, TOKEN).await
}

/// Every entry of the database (at most 1000), in key order.
async fn all(kv: &Kv, consistency: Consistency) -> Vec<RawEntry> {
    let range = ReadRange { start: vec![], end: vec![0xff], limit: 1000, reverse: false };
    kv.snapshot_read(vec![range], consistency).await.unwrap().remove(0)
}

/// The replica server's status (`/v2/openkv/replication/status`).
async fn status(kv: &Kv, url: &str) -> serde_json::Value {
    common::replication_status(kv, url, TOKEN).await
}

/// Waits until the replica (read eventually through `client`) holds what the primary holds.
async fn converge(primary: &Kv, replica: &Kv) -> Vec<RawEntry> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let want = all(primary, Consistency::Strong).await;
        let got = all(replica, Consistency::Eventual).await;
        if got == want {
            return got;
        }
        assert!(Instant::now() < deadline, "the replica did not converge:\n{got:?}\n!=\n{want:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A seeded random workload of `n` commits on `kv`.
async fn random_workload(kv: &Kv, seed: u64, n: usize) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for i in 0..n {
        let k = key!["w", rng.random_range(0..40i64)];
        match rng.random_range(0..7) {
            0 | 1 => {
                kv.set(&k, &format!("v{i}")).await.unwrap();
            }
            2 => kv.delete(&k).await.unwrap(),
            3 => {
                let c = key!["counter", rng.random_range(0..3i64)];
                kv.atomic().sum(&c, rng.random_range(1..100)).commit().await.unwrap();
            }
            4 => {
                // Some expire during the test, some long after it.
                let ms = if rng.random_bool(0.5) { 300 } else { 3_600_000 };
                kv.set_with_expiry(&k, &(i as i64), Duration::from_millis(ms)).await.unwrap();
            }
            5 => {
                kv.set_versionstamped(&key!["vs"], &vec![i as u8]).await.unwrap();
            }
            _ => {
                let op = kv.atomic().enqueue(&format!("m{i}"), &EnqueueOptions::default());
                op.commit().await.unwrap();
            }
        }
    }
}

#[test]
fn a_replica_converges_on_the_primary_with_its_versionstamps() {
    replica_test(|dir| async move {
        let p = primary(dir.path(), &[]);
        let pkv = client(&p.url).await;
        random_workload(&pkv, 1, 150).await; // before the replica exists: the snapshot
        let r = replica(dir.path(), &p.url);
        let rkv = client(&r.url).await;
        random_workload(&pkv, 2, 300).await; // while it follows: the log
        let entries = converge(&pkv, &rkv).await;
        assert!(entries.len() > 20, "a workload this size leaves entries: {}", entries.len());
        assert!(entries.iter().any(|e| e.key.starts_with(&key!["vs"].encode().unwrap())));
        // Expired entries are invisible on both, and the sweep's deletions arrive.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        converge(&pkv, &rkv).await;
        let s = status(&rkv, &r.url).await;
        assert_eq!(s["replica"], true);
        assert_eq!(s["bootstraps"], 1, "{s}");
        assert!(s["recordsApplied"].as_u64().unwrap() > 0, "{s}");
        assert!(s["readsLocal"].as_u64().unwrap() > 0, "eventual reads are the replica's: {s}");
        // The primary is no replica.
        assert_eq!(status(&pkv, &p.url).await["replica"], false);
    });
}

#[test]
fn replica_reads_never_see_half_a_transfer() {
    replica_test(|dir| async move {
        const ACCOUNTS: i64 = 8;
        const TOTAL: u64 = 800;
        let p = primary(dir.path(), &[]);
        let pkv = client(&p.url).await;
        let keys: Vec<Key> = (0..ACCOUNTS).map(|i| key!["acct", i]).collect();
        let mut op = pkv.atomic();
        for k in &keys {
            op = op.set(k, KvU64(TOTAL / ACCOUNTS as u64));
        }
        op.commit().await.unwrap();
        let r = replica(dir.path(), &p.url);
        let rkv = client(&r.url).await;
        converge(&pkv, &rkv).await;
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..4u64 {
            let (kv, keys, stop) = (pkv.clone(), keys.clone(), stop.clone());
            writers.push(tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(w);
                let mut moved = 0;
                while !stop.load(Ordering::Relaxed) {
                    let (a, b) = (rng.random_range(0..keys.len()), rng.random_range(0..keys.len()));
                    if a == b {
                        continue;
                    }
                    let got = kv.get_many(&[keys[a].clone(), keys[b].clone()]).await.unwrap();
                    let (ea, eb) = (got[0].clone().unwrap(), got[1].clone().unwrap());
                    let (va, vb) = (u64_of(&ea.value), u64_of(&eb.value));
                    let amount = rng.random_range(0..=va.min(10));
                    let done = kv
                        .atomic()
                        .check(&keys[a], Some(ea.versionstamp))
                        .check(&keys[b], Some(eb.versionstamp))
                        .set(&keys[a], KvU64(va - amount))
                        .set(&keys[b], KvU64(vb + amount))
                        .commit()
                        .await
                        .unwrap();
                    moved += usize::from(done.is_committed());
                }
                moved
            }));
        }
        let mut readers = Vec::new();
        for _ in 0..3 {
            let (kv, keys, stop) = (rkv.clone(), keys.clone(), stop.clone());
            readers.push(tokio::spawn(async move {
                let mut reads = 0;
                let mut newest = openkv::Versionstamp::from_version(0);
                while !stop.load(Ordering::Relaxed) {
                    let got = kv.get_many_with(&keys, Consistency::Eventual).await.unwrap();
                    let sum: u64 = got.iter().map(|e| u64_of(&e.as_ref().unwrap().value)).sum();
                    assert_eq!(sum, TOTAL, "a replica read saw half a transfer: {got:?}");
                    let max = got.iter().map(|e| e.as_ref().unwrap().versionstamp).max().unwrap();
                    assert!(max >= newest, "the replica went back in time: {max} < {newest}");
                    newest = max;
                    reads += 1;
                }
                reads
            }));
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        stop.store(true, Ordering::Relaxed);
        let mut moved = 0;
        for w in writers {
            moved += w.await.unwrap();
        }
        let mut reads = 0;
        for r in readers {
            reads += r.await.unwrap();
        }
        eprintln!("{moved} transfers committed, {reads} replica reads");
        assert!(moved > 50 && reads > 50, "too little happened: {moved} transfers, {reads} reads");
        converge(&pkv, &rkv).await;
    });
}

fn u64_of(value: &Value) -> u64 {
    match value {
        Value::U64(n) => *n,
        other => panic!("not a KvU64: {other:?}"),
    }
}

#[test]
fn a_killed_replica_resumes_from_its_position_and_a_restarted_primary_is_followed() {
    replica_test(|dir| async move {
        let p = primary(dir.path(), &[]);
        let pkv = client(&p.url).await;
        random_workload(&pkv, 3, 100).await;
        let r = replica(dir.path(), &p.url);
        let addr = r.url.trim_start_matches("http://").to_owned();
        let rkv = client(&r.url).await;
        converge(&pkv, &rkv).await;
        // kill -9 while the primary keeps writing (the replica applies as it dies).
        let writing = {
            let kv = pkv.clone();
            tokio::spawn(async move { random_workload(&kv, 4, 300).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(r); // SIGKILL
        writing.await.unwrap();
        // And commits it has not seen at all (a fast machine may have applied the others
        // before it died): the restart must apply them from the log.
        random_workload(&pkv, 9, 50).await;
        let r = replica_at(dir.path(), &p.url, &addr);
        converge(&pkv, &rkv).await;
        let s = status(&rkv, &r.url).await;
        assert_eq!(s["bootstraps"], 0, "a restarted replica resumes from its position: {s}");
        assert!(s["recordsApplied"].as_u64().unwrap() > 0, "{s}");

        // The primary restarted on its port under the replica.
        let paddr = p.url.trim_start_matches("http://").to_owned();
        let mut p = p;
        sigterm(&mut p.child);
        let (child, url) = start_server_at(&dir.path().join("primary.sqlite3"), TOKEN, &paddr, &[]);
        let p = Proc { child, url };
        random_workload(&pkv, 5, 100).await;
        converge(&pkv, &rkv).await;
        assert_eq!(status(&rkv, &r.url).await["bootstraps"], 0);
        drop(p);
    });
}

#[test]
fn a_commit_made_behind_the_primarys_back_makes_the_replica_bootstrap_again() {
    replica_test(|dir| async move {
        let p = primary(dir.path(), &[]);
        let pkv = client(&p.url).await;
        random_workload(&pkv, 6, 50).await;
        let r = replica(dir.path(), &p.url);
        let rkv = client(&r.url).await;
        converge(&pkv, &rkv).await;
        // The Deno CLI writes the primary's file directly: no change-log record.
        let file = dir.path().join("primary.sqlite3");
        let script = format!(
            "const kv = await Deno.openKv({:?}); await kv.set(['from-deno'], 'behind its back'); \
             kv.close();",
            file.to_str().unwrap()
        );
        let out = Command::new(deno_bin())
            .args(["eval", "--unstable-kv", &script])
            .current_dir(workspace_root())
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "deno: {}", String::from_utf8_lossy(&out.stderr));
        // A later logged commit, whose record does not chain from the replica's position.
        pkv.set(&key!["after"], &1i64).await.unwrap();
        let entries = converge(&pkv, &rkv).await;
        assert!(entries.iter().any(|e| e.key == key!["from-deno"].encode().unwrap()));
        let s = status(&rkv, &r.url).await;
        assert_eq!(s["bootstraps"], 2, "the gap made it bootstrap again: {s}");
    });
}

#[test]
fn retention_exceeded_while_the_replica_is_down_means_a_new_bootstrap() {
    replica_test(|dir| async move {
        let p = primary(dir.path(), &["--log-retention", "1s"]);
        let pkv = client(&p.url).await;
        random_workload(&pkv, 7, 50).await;
        let r = replica(dir.path(), &p.url);
        let addr = r.url.trim_start_matches("http://").to_owned();
        let rkv = client(&r.url).await;
        converge(&pkv, &rkv).await;
        drop(r);
        random_workload(&pkv, 8, 50).await;
        // Past the retention and a pruning pass.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let r = replica_at(dir.path(), &p.url, &addr);
        converge(&pkv, &rkv).await;
        assert_eq!(status(&rkv, &r.url).await["bootstraps"], 1, "pruned: a new snapshot");
    });
}

#[test]
fn the_deno_cli_pointed_at_a_replica_writes_to_the_primary_and_reads_from_the_copy() {
    replica_test(|dir| async move {
        let (_primary, pkv, r, rkv) = primary_and_replica(dir.path()).await;
        let before = status(&rkv, &r.url).await["readsLocal"].as_u64().unwrap();
        let script = format!(
            "const kv = await Deno.openKv({:?}); \
             for (let i = 0; i < 20; i++) {{ \
               await kv.set(['deno', i], i); \
               const got = await kv.get(['deno', i]); \
               if (got.value !== i) throw new Error(`strong read after write: ${{got.value}}`); \
               await kv.get(['deno', i], {{ consistency: 'eventual' }}); \
             }} \
             const c = await kv.atomic().sum(['n'], 5n).commit(); if (!c.ok) throw new Error('sum'); \
             console.log('ok'); kv.close();",
            r.url
        );
        let out = Command::new(deno_bin())
            .args(["eval", "--unstable-kv", &script])
            .current_dir(workspace_root())
            .env("NO_COLOR", "1")
            .env("DENO_KV_ACCESS_TOKEN", TOKEN)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "deno: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The writes are the primary's.
        let last = pkv.get_as::<f64>(&key!["deno", 19.0f64]).await.unwrap().unwrap();
        assert_eq!(last.value, 19.0);
        assert_eq!(pkv.get(&key!["n"]).await.unwrap().unwrap().value, Value::U64(5));
        let s = status(&rkv, &r.url).await;
        let local = s["readsLocal"].as_u64().unwrap() - before;
        assert!(local >= 40, "the Deno CLI's 40 reads were served by the replica's copy: {s}");
        converge(&pkv, &rkv).await;
    });
}

#[test]
fn a_sqlite_replica_of_a_postgres_primary_refuses_and_forwards_everything() {
    let Some(db) = common::fresh_postgres_url() else { return };
    replica_test(|dir| async move {
        let (child, url) = common::start_server(Path::new(&db), TOKEN);
        let p = Proc { child, url };
        let pkv = client(&p.url).await;
        pkv.set(&key!["pg"], &1i64).await.unwrap();
        let r = replica(dir.path(), &p.url);
        let rkv = client(&r.url).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        let s = loop {
            let s = status(&rkv, &r.url).await;
            if !s["lastError"].is_null() {
                break s;
            }
            assert!(Instant::now() < deadline, "no refusal: {s}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(s["lastError"].as_str().unwrap().contains("batch index"), "{s}");
        assert_eq!(s["bootstraps"], 0);
        // Reads and writes still work, through the primary.
        rkv.set(&key!["through"], &2i64).await.unwrap();
        let got = all(&rkv, Consistency::Eventual).await;
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(status(&rkv, &r.url).await["readsForwarded"].as_u64().unwrap() > 0);
    });
}

#[test]
fn queues_through_a_replica_are_the_primarys() {
    replica_test(|dir| async move {
        let (p, pkv, r, rkv) = primary_and_replica(dir.path()).await;
        // Enqueued through the replica, delivered to a listener of the primary: the message
        // is in the primary's queue.
        rkv.enqueue(&"through the replica", &EnqueueOptions::default()).await.unwrap();
        assert_eq!(first_message(&p.url).await, "through the replica");
        // Enqueued on the primary, delivered to a listener connected to the replica: the
        // replica forwards queue delivery.
        pkv.enqueue(&"to the replica's listener", &EnqueueOptions::default()).await.unwrap();
        assert_eq!(first_message(&r.url).await, "to the replica's listener");
        let mut r = r;
        assert!(sigterm(&mut r.child).success());
        let copy = openkv::verify_backup(&dir.path().join("replica.sqlite3")).unwrap();
        assert_eq!(copy.queued_messages, 0, "the replica's own file never holds a message");
    });
}

/// The first queue message a listener connected to `url` gets (within 30 s).
async fn first_message(url: &str) -> String {
    let kv = client(url).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = kv.clone();
    let listening = tokio::spawn(async move {
        listener
            .listen_queue(move |m| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(m.value.decode::<String>().unwrap());
                    Ok::<(), String>(())
                }
            })
            .await
    });
    let got = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await;
    kv.close().await.unwrap();
    listening.await.unwrap().unwrap();
    got.expect("a message within 30 s").unwrap()
}
