//! The change log on a SQLite file (docs/design.md §14), through the public API:
//! - every kind of commit leaves one chained record with its effects as applied (a `sum` its
//!   result, an expiring set its expiry, a delete, an enqueue-only commit no change, the
//!   expiry sweep its deletions, a queue's dead letters their rows);
//! - the Deno CLI opens and writes a file that has the log's tables, unbothered, and its
//!   commit (with no record) is answered as a gap;
//! - a restore starts a new epoch; a wrong epoch is answered as such; pruning is answered as
//!   pruned; with the log off there is no log to follow.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

// This file uses only `deno_bin` of the shared helpers.
#[allow(dead_code)]
mod common;

use std::process::Command;
use std::time::Duration;

use openkv::changelog::{LogGone, LogRead, LogRecord, LogRetention};
use openkv::{key, EnqueueOptions, Kv, KvU64, ManualClock, OpenOptions, Value};

async fn open_logged(path: &std::path::Path, clock: &ManualClock) -> Kv {
    OpenOptions::new()
        .clock(clock.clone())
        .expiry_sweep_interval(Duration::from_millis(20))
        .change_log(LogRetention::default())
        .open(path)
        .await
        .unwrap()
}

async fn records(kv: &Kv, after: u64) -> (String, u64, Vec<LogRecord>) {
    match kv.replication_source().unwrap().log_after(None, after, usize::MAX).await.unwrap() {
        LogRead::Records { epoch, head, records } => (epoch, head, records),
        other => panic!("expected records, got {other:?}"),
    }
}

async fn gone(kv: &Kv, epoch: Option<String>, after: u64) -> LogGone {
    match kv.replication_source().unwrap().log_after(epoch, after, usize::MAX).await.unwrap() {
        LogRead::Gone(why) => why,
        other => panic!("expected gone, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_commit_leaves_one_chained_record_of_its_effects() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let kv = open_logged(&dir.path().join("kv.sqlite3"), &clock).await;
    let (_, start, none) = records(&kv, 0).await;
    assert!(none.is_empty());

    kv.set(&key!["a"], &"x").await.unwrap();
    kv.atomic().sum(&key!["n"], 5).commit().await.unwrap();
    kv.atomic().sum(&key!["n"], 7).commit().await.unwrap();
    kv.set_with_expiry(&key!["gone"], &1i64, Duration::from_secs(1)).await.unwrap();
    kv.delete(&key!["a"]).await.unwrap();
    kv.atomic().enqueue("m", &EnqueueOptions::default()).commit().await.unwrap();
    clock.advance(Duration::from_secs(2));
    // The sweep deletes the expired key in a transaction of its own.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let all = loop {
        let (_, head, all) = records(&kv, start).await;
        if all.len() == 7 {
            assert_eq!(head, all[6].version);
            break all;
        }
        assert!(std::time::Instant::now() < deadline, "the sweep left no record: {all:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut at = start;
    for r in &all {
        assert_eq!(r.prev_version, at, "records chain");
        assert!(r.version > r.prev_version);
        at = r.version;
    }
    let enc = |k: openkv::Key| k.encode().unwrap();
    assert_eq!(all[0].changes.len(), 1);
    assert_eq!(all[0].changes[0].0, enc(key!["a"]));
    // A sum logs its result, not its operand.
    let sum = all[2].changes[0].1.as_ref().unwrap();
    assert_eq!(sum.bytes, 12u64.to_le_bytes().to_vec());
    assert_eq!(sum.versionstamp.version(), all[2].version);
    assert_eq!(all[3].changes[0].1.as_ref().unwrap().expire_at_ms, Some(1_001_000));
    assert_eq!(all[4].changes, vec![(enc(key!["a"]), None)]);
    assert!(all[5].changes.is_empty(), "an enqueue-only commit changes no key");
    assert_eq!(all[6].changes, vec![(enc(key!["gone"]), None)], "the sweep's deletion");

    // A wrong epoch, a position ahead of the database.
    assert!(matches!(
        gone(&kv, Some("not-the-epoch".into()), at).await,
        LogGone::EpochChanged { .. }
    ));
    assert!(matches!(gone(&kv, None, at + 100).await, LogGone::EpochChanged { .. }));
    kv.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_logged() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let kv = open_logged(&dir.path().join("kv.sqlite3"), &clock).await;
    let options = EnqueueOptions::new().backoff_schedule([]).keys_if_undelivered([key!["dead"]]);
    kv.atomic().enqueue("m", &options).commit().await.unwrap();
    let (_, head, _) = records(&kv, 0).await;
    let taken = kv.queue_take(1, Duration::from_secs(30)).await.unwrap();
    kv.queue_finish(vec![(taken[0].id.clone(), false)]).await.unwrap();
    let (_, _, after) = records(&kv, head).await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].changes[0].0, key!["dead"].encode().unwrap());
    assert!(kv.get(&key!["dead"]).await.unwrap().is_some());
    kv.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deno_cli_writes_a_logged_file_and_its_commit_is_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.sqlite3");
    let clock = ManualClock::new(1_000_000);
    let kv = open_logged(&path, &clock).await;
    kv.set(&key!["from-openkv"], &"o").await.unwrap();
    let (_, head, _) = records(&kv, 0).await;
    let script = format!(
        "const kv = await Deno.openKv({p:?}); \
         const got = await kv.get(['from-openkv']); \
         if (got.value !== 'o') throw new Error('Deno read ' + got.value); \
         await kv.set(['from-deno'], 'd'); kv.close();",
        p = path.to_str().unwrap()
    );
    let out = Command::new(common::deno_bin())
        .args(["eval", "--unstable-kv", &script])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "deno: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        kv.get(&key!["from-deno"]).await.unwrap().unwrap().value.decode::<String>().unwrap(),
        "d"
    );
    // Nothing logged it: from the last logged position, the counter moved without a record.
    assert_eq!(gone(&kv, None, head).await, LogGone::Gap { at: head });
    // openkv's next commit chains from Deno's counter: a follower at an older position still
    // meets the gap, one that bootstrapped after Deno's commit follows on.
    let deno_version = kv.replication_source().unwrap().head().await.unwrap();
    kv.set(&key!["later"], &1i64).await.unwrap();
    assert_eq!(gone(&kv, None, head).await, LogGone::Gap { at: head });
    let (_, _, next) = records(&kv, deno_version).await;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].prev_version, deno_version);
    kv.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_starts_a_new_epoch_and_pruning_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let kv = open_logged(&dir.path().join("kv.sqlite3"), &clock).await;
    kv.set(&key!["a"], &1i64).await.unwrap();
    let (epoch, head, _) = records(&kv, 0).await;
    let backup = dir.path().join("b.sqlite3");
    kv.backup(&backup).await.unwrap();
    kv.restore_from(&backup).await.unwrap();
    match gone(&kv, Some(epoch.clone()), head).await {
        LogGone::EpochChanged { epoch: new } => assert_ne!(new, epoch),
        other => panic!("{other:?}"),
    }
    kv.close().await.unwrap();

    // A tiny size retention prunes all but the newest records.
    let small = LogRetention { max_bytes: 1, max_age: Duration::from_secs(4) };
    let kv = OpenOptions::new()
        .clock(clock.clone())
        .expiry_sweep_interval(Duration::from_millis(20))
        .change_log(small)
        .open(dir.path().join("small.sqlite3"))
        .await
        .unwrap();
    for i in 0..5i64 {
        kv.set(&key!["k", i], &i).await.unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let why = kv.replication_source().unwrap().log_after(None, 0, usize::MAX).await.unwrap();
        if let LogRead::Gone(LogGone::Pruned { oldest }) = why {
            assert!(oldest > 0);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never pruned: {why:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    kv.close().await.unwrap();

    // With the log off, there is none to follow.
    let kv = Kv::open(dir.path().join("off.sqlite3")).await.unwrap();
    kv.set(&key!["a"], &Value::U64(1)).await.unwrap();
    assert_eq!(gone(&kv, None, 0).await, LogGone::NoLog);
    let _ = KvU64(0);
    kv.close().await.unwrap();
}
