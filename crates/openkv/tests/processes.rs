//! Real processes on one real file.
//!
//! - `acknowledged_writes_survive_kill_9`: a child commits from 8 concurrent tasks and prints
//!   every write after `commit` returned; the parent SIGKILLs it mid-stream, reopens, and
//!   checks that every printed write is there (and the file passes `integrity_check`). Three
//!   rounds on the same file.
//! - `two_processes_share_one_file`: two children write concurrently (plain sets and racing
//!   check+set increments of one counter) — no "database is locked" failure, every versionstamp
//!   unique across both processes, the counter equals the number of successful increments.
//!
//! The test binary re-runs itself as the child: `OPENKV_CHILD` names the role and the
//! database path; each test function plays the child when that variable names it.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use openkv::{key, Kv, Value, Versionstamp};

const CHILD_ENV: &str = "OPENKV_CHILD";

/// If this process was started as the child `role`, returns its database path and task tag.
fn child_role(role: &str) -> Option<(String, String)> {
    let v = std::env::var(CHILD_ENV).ok()?;
    let mut it = v.splitn(3, '|');
    (it.next()? == role).then(|| (it.next().unwrap().to_owned(), it.next().unwrap().to_owned()))
}

fn spawn_child(test: &str, role: &str, db: &Path, tag: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{role}|{}|{tag}", db.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// The payload of an ack line. The child's test harness may print its `test … ` banner on the
/// same line before the first ack, so look for the marker anywhere.
fn ack_payload(line: &str) -> Option<&str> {
    line.split_once("ack ").map(|(_, rest)| rest)
}

fn ack_line(out: &mut impl Write, line: String) {
    // One write per line, flushed: the parent counts only complete lines.
    out.write_all(line.as_bytes()).unwrap();
    out.flush().unwrap();
}

/// Child of the crash test: writes forever until killed.
fn crash_child(db: &str) {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let kv = Kv::open(db).await.unwrap();
        let round: u32 = match kv.get(&key!["round"]).await.unwrap() {
            Some(e) => e.value.as_u64().unwrap() as u32 + 1,
            None => 0,
        };
        kv.set(&key!["round"], Value::U64(round.into())).await.unwrap();
        let mut tasks = Vec::new();
        for t in 0..8u32 {
            let kv = kv.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0u32.. {
                    let k = key!["w", round, t, i];
                    let vs = kv
                        .atomic()
                        .set(&k, Value::Bytes(format!("{round}/{t}/{i}").into_bytes()))
                        .sum(&key!["total"], 1)
                        .commit()
                        .await
                        .unwrap()
                        .versionstamp()
                        .unwrap();
                    ack_line(&mut std::io::stdout().lock(), format!("ack {round} {t} {i} {vs}\n"));
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    if let Some((db, _)) = child_role("crash") {
        crash_child(&db);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.sqlite3");
    let mut total_acked = 0u64;
    for round in 0..3u32 {
        let mut child = spawn_child("acknowledged_writes_survive_kill_9", "crash", &db, "");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut acked: Vec<(u32, u32, u32, Versionstamp)> = Vec::new();
        let mut lines = stdout.lines();
        let started = Instant::now();
        // Kill after a number of acknowledged writes that varies per round, mid-stream.
        let kill_after = 300 + 450 * round as usize;
        while acked.len() < kill_after {
            assert!(started.elapsed() < Duration::from_secs(60), "child too slow");
            let line = lines.next().expect("child ended early").unwrap();
            if let Some(rest) = ack_payload(&line) {
                let f: Vec<&str> = rest.split(' ').collect();
                acked.push((
                    f[0].parse().unwrap(),
                    f[1].parse().unwrap(),
                    f[2].parse().unwrap(),
                    f[3].parse().unwrap(),
                ));
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Lines already in the pipe were acknowledged before the kill, so they count too.
        for line in lines {
            let Ok(line) = line else { break };
            if let Some(rest) = ack_payload(&line) {
                let f: Vec<&str> = rest.split(' ').collect();
                if f.len() == 4 {
                    acked.push((
                        f[0].parse().unwrap(),
                        f[1].parse().unwrap(),
                        f[2].parse().unwrap(),
                        f[3].parse().unwrap(),
                    ));
                }
            }
        }
        assert!(acked.iter().all(|a| a.0 == round), "round numbers persisted");

        let conn = rusqlite::Connection::open(&db).unwrap();
        let check: String = conn.query_row("pragma integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok");
        drop(conn);

        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let kv = Kv::open(&db).await.unwrap();
            for &(r, t, i, vs) in &acked {
                let e =
                    kv.get(&key!["w", r, t, i]).await.unwrap().unwrap_or_else(|| {
                        panic!("acknowledged write {r}/{t}/{i} lost after kill -9")
                    });
                assert_eq!(e.value, Value::Bytes(format!("{r}/{t}/{i}").into_bytes()));
                assert_eq!(e.versionstamp, vs);
            }
            // The counter and the rows agree: each atomic write was all or nothing.
            let rows = {
                use futures::TryStreamExt;
                let all: Vec<_> = kv
                    .list(openkv::Selector::prefix(key!["w"]), openkv::ListOptions::new())
                    .unwrap()
                    .try_collect()
                    .await
                    .unwrap();
                all.len() as u64
            };
            let total = kv.get(&key!["total"]).await.unwrap().unwrap().value.as_u64().unwrap();
            assert_eq!(total, rows, "sum counter matches the rows written with it");
            assert!(rows >= total_acked + acked.len() as u64);
            total_acked = rows;
            kv.close().await.unwrap();
        });
    }
}

/// Child of the two-process test: a fixed amount of work, then exit 0.
fn sharing_child(db: &str, tag: &str) {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let kv = Kv::open(db).await.unwrap();
        let mut tasks = Vec::new();
        for t in 0..4u32 {
            let kv = kv.clone();
            let tag = tag.to_owned();
            tasks.push(tokio::spawn(async move {
                let mut out = String::new();
                for i in 0..150u32 {
                    let vs =
                        kv.set(&key!["p", tag.as_str(), t, i], Value::U64(i.into())).await.unwrap();
                    out.push_str(&format!("ack set {vs}\n"));
                    if i % 3 == 0 {
                        loop {
                            let cur = kv.get(&key!["counter"]).await.unwrap();
                            let (stamp, n) = match &cur {
                                Some(e) => (Some(e.versionstamp), e.value.as_u64().unwrap()),
                                None => (None, 0),
                            };
                            let outcome = kv
                                .atomic()
                                .check(&key!["counter"], stamp)
                                .set(&key!["counter"], Value::U64(n + 1))
                                .commit()
                                .await
                                .unwrap();
                            if let Some(vs) = outcome.versionstamp() {
                                out.push_str(&format!("ack inc {vs}\n"));
                                break;
                            }
                        }
                    }
                }
                out
            }));
        }
        let mut stdout = std::io::stdout().lock();
        for t in tasks {
            ack_line(&mut stdout, t.await.unwrap());
        }
        kv.close().await.unwrap();
    });
}

#[test]
fn two_processes_share_one_file() {
    if let Some((db, tag)) = child_role("share") {
        sharing_child(&db, &tag);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.sqlite3");
    // Create the file first so both children open an existing database.
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        Kv::open(&db).await.unwrap().close().await.unwrap();
    });
    let children: Vec<_> = ["A", "B"]
        .iter()
        .map(|tag| spawn_child("two_processes_share_one_file", "share", &db, tag))
        .collect();
    let mut stamps: HashMap<String, Vec<Versionstamp>> = HashMap::new();
    let mut incs = 0u64;
    for (tag, child) in ["A", "B"].iter().zip(children) {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "child {tag} failed (see its stderr above)");
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            if let Some(rest) = ack_payload(line) {
                let (kind, vs) = rest.split_once(' ').unwrap();
                stamps.entry(tag.to_string()).or_default().push(vs.parse().unwrap());
                if kind == "inc" {
                    incs += 1;
                }
            }
        }
    }
    let all: Vec<Versionstamp> = stamps.values().flatten().copied().collect();
    assert_eq!(all.len(), 2 * 4 * (150 + 50));
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "versionstamps are unique across processes");
    assert_eq!(incs, 2 * 4 * 50);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let kv = Kv::open(&db).await.unwrap();
        let counter = kv.get(&key!["counter"]).await.unwrap().unwrap();
        assert_eq!(counter.value, Value::U64(incs), "no lost update across processes");
        let max = all.iter().max().unwrap();
        assert!(kv.set(&key!["after"], Value::U64(0)).await.unwrap() > *max);
    });
}
