//! Strong reads under load, with reader connections that keep their snapshot between reads
//! (openkv-sqlite's readers.rs; the argument: docs/design.md, "Reads").
//!
//! Each test keeps reader threads busy on one `Kv` — so its pooled readers reuse their
//! snapshots all the time — while another writer commits `["ack"] = 1, 2, …` one commit at a
//! time and reports each commit after it returned:
//! - `another_process_commits_are_seen`: the writer is a second openkv process on the file;
//! - `deno_cli_commits_are_seen`: the writer is the Deno CLI (`tests/deno/ack_writer.ts`);
//! - `own_commits_are_seen`: the writer is a thread of this process, through the same `Kv`.
//!
//! The promise checked: a read that starts after a commit was acknowledged sees it. The main
//! thread reads `["ack"]` right after each acknowledgement, and every reader thread, before
//! each of its reads of `["ack"]`, loads the highest acknowledged number and requires the read
//! to return at least that.
//!
//! `busy_readers_let_the_wal_start_over`: snapshots held open must not keep SQLite from
//! checkpointing and restarting the WAL; with readers busy, thousands of commits leave the
//! WAL file about one checkpoint's size, not the size of all of them.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

// Shared with deno_compat.rs; this file uses only part of it.
#[allow(dead_code)]
mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use openkv::{key, Kv, Value};

const CHILD_ENV: &str = "OPENKV_READ_SNAPSHOTS_CHILD";
/// Commits each writer acknowledges.
const ACKS: u64 = 400;
/// Keys the reader threads read besides `["ack"]`.
const LOAD_KEYS: u64 = 200;

/// Preloads the keys the readers read and `["ack"] = 0`.
async fn preload(kv: &Kv) {
    for i in 0..LOAD_KEYS {
        kv.set(&key!["load", i], Value::Bytes(vec![7; 100])).await.unwrap();
    }
    kv.set(&key!["ack"], Value::U64(0)).await.unwrap();
}

fn ack_of(kv: &Kv, rt: &tokio::runtime::Runtime) -> u64 {
    let entry = rt.block_on(kv.get(&key!["ack"])).unwrap().expect("[\"ack\"] exists");
    entry.value.as_u64().expect("[\"ack\"] is a u64")
}

/// Runs `readers` threads that read until `stop`, checking `["ack"]` against `acked`; returns
/// how many reads they did.
fn with_readers<T>(kv: &Kv, acked: &AtomicU64, body: impl FnOnce(&AtomicBool) -> T) -> (T, u64) {
    let stop = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    let result = std::thread::scope(|s| {
        for t in 0..2u64 {
            let (kv, stop, reads) = (kv, &stop, &reads);
            s.spawn(move || {
                let rt =
                    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                let mut n = 0u64;
                while !stop.load(Ordering::Acquire) {
                    for i in 0..16 {
                        let k = key!["load", (t * 31 + n * 7 + i) % LOAD_KEYS];
                        rt.block_on(kv.get(&k)).unwrap().expect("a preloaded key");
                    }
                    let floor = acked.load(Ordering::Acquire);
                    let seen = ack_of(kv, &rt);
                    assert!(
                        seen >= floor,
                        "reader {t}: read [\"ack\"] = {seen} after commit {floor} was acknowledged"
                    );
                    n += 17;
                }
                reads.fetch_add(n, Ordering::Relaxed);
            });
        }
        // Stops the readers however `body` ends: a failed assertion must not leave the scope
        // waiting for them forever.
        let _stop = StopOnDrop(&stop);
        body(&stop)
    });
    (result, reads.load(Ordering::Relaxed))
}

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Reads `ack <i>` lines from a writer process; after each, publishes `i` to the reader
/// threads and reads `["ack"]` on this thread too. Returns the number of acknowledgements.
fn follow_acks(kv: &Kv, child: &mut Child, acked: &AtomicU64) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let started = Instant::now();
    let mut last = 0;
    for line in lines {
        let line = line.unwrap();
        // The child's test harness may print its banner on the line of the first ack.
        let Some((_, n)) = line.split_once("ack ") else { continue };
        let n: u64 = n.trim().parse().unwrap();
        assert_eq!(n, last + 1, "acknowledgements in order");
        last = n;
        acked.store(n, Ordering::Release);
        let seen = ack_of(kv, &rt);
        assert!(seen >= n, "read [\"ack\"] = {seen} after commit {n} was acknowledged");
        assert!(started.elapsed() < Duration::from_secs(120), "the writer is too slow");
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "the writer failed: {status}");
    last
}

/// Opens a fresh database `name`, preloads it, and runs `writer` while two reader threads
/// read it (`with_readers`); `writer` gets the `Kv` and the number it must publish after each
/// acknowledged commit.
fn under_readers(name: &str, writer: impl FnOnce(&Kv, &Path, &AtomicU64)) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join(name);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let kv = rt.block_on(Kv::open(&db)).unwrap();
    rt.block_on(preload(&kv));
    let acked = AtomicU64::new(0);
    let ((), reads) = with_readers(&kv, &acked, |_| writer(&kv, &db, &acked));
    assert!(reads > 0, "the reader threads read");
    rt.block_on(kv.close()).unwrap();
}

#[test]
fn another_process_commits_are_seen() {
    if let Ok(db) = std::env::var(CHILD_ENV) {
        // The child: commits 1..=ACKS, printing each after `set` returned.
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let kv = Kv::open(&db).await.unwrap();
            for i in 1..=ACKS {
                kv.set(&key!["ack"], Value::U64(i)).await.unwrap();
                println!("ack {i}");
                if i % 4 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            kv.close().await.unwrap();
        });
        return;
    }
    under_readers("shared.sqlite3", |kv, db, acked| {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["another_process_commits_are_seen", "--exact", "--nocapture"])
            .env(CHILD_ENV, db)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        assert_eq!(follow_acks(kv, &mut child, acked), ACKS);
    });
}

#[test]
fn deno_cli_commits_are_seen() {
    under_readers("deno.sqlite3", |kv, db, acked| {
        let mut child = Command::new(common::deno_bin())
            .args(["run", "-A", "--unstable-kv"])
            .arg(common::deno_scripts().join("ack_writer.ts"))
            .arg(db)
            .arg(ACKS.to_string())
            .env("NO_COLOR", "1")
            .env("DENO_NO_UPDATE_CHECK", "1")
            .current_dir(common::workspace_root())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        assert_eq!(follow_acks(kv, &mut child, acked), ACKS);
    });
}

#[test]
fn own_commits_are_seen() {
    under_readers("own.sqlite3", |kv, _, acked| {
        let local = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        for i in 1..=ACKS {
            local.block_on(kv.set(&key!["ack"], Value::U64(i))).unwrap();
            acked.store(i, Ordering::Release);
            let seen = ack_of(kv, &local);
            assert!(seen >= i, "read [\"ack\"] = {seen} after commit {i} was acknowledged");
        }
    });
}

#[test]
fn busy_readers_let_the_wal_start_over() {
    const COMMITS: u64 = 6000;
    under_readers("wal.sqlite3", |kv, db, _| {
        let local = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        for i in 1..=COMMITS {
            // Each commit rewrites a page or more of ~1 KiB values: thousands of WAL frames.
            let k = key!["big", i % 500];
            local.block_on(kv.set(&k, Value::Bytes(vec![i as u8; 1024]))).unwrap();
            if i % 250 == 0 || i == COMMITS {
                // Checked as it goes (while the database is open: closing it checkpoints and
                // deletes the WAL), so a WAL that never starts over fails early.
                let wal = std::fs::metadata(&wal).unwrap().len();
                // SQLite checkpoints at 1,000 pages (4 MiB here) and then writes the WAL from
                // its start again if no reader holds a snapshot in it; if readers kept it from
                // starting over, it would reach 12 MiB after ~3,000 commits.
                assert!(wal < 12 << 20, "the WAL grew to {wal} bytes after {i} commits");
            }
        }
    });
}
