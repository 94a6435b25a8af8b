//! `Kv::watch` on local databases: the first snapshot, changes, deletes, expiry, unwatched
//! writes, many watchers, a lagging watcher, close, the key checks, and commits made by other
//! processes on the same file (a second openkv process and the real Deno CLI).
//!
//! Every wait for a snapshot has a generous timeout, only so that a bug fails the test instead
//! of hanging it; nothing here measures speed.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod fresh;

use std::process::{Command, Stdio};
use std::time::Duration;

use fresh::{bytes, file_kv};
use futures::{Stream, StreamExt};
use openkv::{
    key, Entry, Error, Key, Kv, Limits, ManualClock, OpenOptions, Value, Versionstamp, WatchStream,
};

const PATIENCE: Duration = Duration::from_secs(20);

/// The next snapshot; fails on an error, the end of the stream, or a hang.
async fn next(
    stream: &mut (impl Stream<Item = openkv::Result<Vec<Option<Entry>>>> + Unpin),
) -> Vec<Option<Entry>> {
    tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("no snapshot came")
        .expect("the stream ended")
        .expect("the stream failed")
}

fn stamps(snapshot: &[Option<Entry>]) -> Vec<Option<Versionstamp>> {
    snapshot.iter().map(|e| e.as_ref().map(|e| e.versionstamp)).collect()
}

fn values(snapshot: &[Option<Entry>]) -> Vec<Option<Value>> {
    snapshot.iter().map(|e| e.as_ref().map(|e| e.value.clone())).collect()
}

#[tokio::test]
async fn the_current_state_first_then_every_change_and_delete() {
    let (_dir, kv) = file_kv().await;
    let (a, b) = (key!["w", "a"], key!["w", "b"]);
    let first_a = kv.set(&a, bytes("a0")).await.unwrap();
    let mut watch = kv.watch(&[a.clone(), b.clone()]).unwrap();
    assert_eq!(watch.keys(), &[a.clone(), b.clone()]);

    let first = next(&mut watch).await;
    assert_eq!(first[0], Some(Entry { key: a.clone(), value: bytes("a0"), versionstamp: first_a }));
    assert_eq!(first[1], None);

    let set_b = kv.set(&b, bytes("b1")).await.unwrap();
    let now = next(&mut watch).await;
    assert_eq!(stamps(&now), vec![Some(first_a), Some(set_b)]);
    assert_eq!(values(&now), vec![Some(bytes("a0")), Some(bytes("b1"))]);

    kv.delete(&a).await.unwrap();
    assert_eq!(stamps(&next(&mut watch).await), vec![None, Some(set_b)]);

    // One commit touching both keys is one snapshot.
    let both = kv.atomic().set(&a, bytes("a2")).set(&b, bytes("b2")).commit().await.unwrap();
    let both = both.versionstamp().unwrap();
    assert_eq!(stamps(&next(&mut watch).await), vec![Some(both), Some(both)]);
}

#[tokio::test]
async fn writes_that_change_nothing_watched_emit_nothing() {
    let (_dir, kv) = file_kv().await;
    let (a, other) = (key!["a"], key!["other"]);
    let mut watch = kv.watch(std::slice::from_ref(&a)).unwrap();
    assert_eq!(next(&mut watch).await, vec![None]);
    // An unwatched key, a delete of the absent watched key (its versionstamp stays "none"),
    // and an enqueue-only commit (an event naming no key): no snapshot for any of them...
    kv.set(&other, bytes("x")).await.unwrap();
    kv.delete(&a).await.unwrap();
    let enqueue = openkv::AtomicWrite {
        enqueues: vec![openkv::Enqueue {
            payload: vec![0xff, 0x0f, 0x5f], // V8 `undefined`
            // Due in a day: nothing listens anyway.
            deadline_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64
                + 86_400_000,
            keys_if_undelivered: vec![],
            backoff_schedule: None,
        }],
        ..Default::default()
    };
    kv.atomic_write(enqueue).await.unwrap();
    // ...so the next snapshot is the first real change.
    let stamp = kv.set(&a, bytes("now")).await.unwrap();
    assert_eq!(stamps(&next(&mut watch).await), vec![Some(stamp)]);
}

#[tokio::test]
async fn an_expiry_is_seen_at_the_next_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let kv = OpenOptions::new()
        .clock(clock.clone())
        .expiry_sweep_interval(Duration::from_millis(20))
        .open(dir.path().join("db"))
        .await
        .unwrap();
    let (short, kept) = (key!["short"], key!["kept"]);
    let stamp = kv.set_with_expiry(&short, bytes("v"), Duration::from_secs(5)).await.unwrap();
    let kept_stamp = kv.set(&kept, bytes("k")).await.unwrap();
    let mut watch = kv.watch(&[short.clone(), kept.clone()]).unwrap();
    assert_eq!(stamps(&next(&mut watch).await), vec![Some(stamp), Some(kept_stamp)]);
    clock.advance(Duration::from_secs(5));
    assert_eq!(stamps(&next(&mut watch).await), vec![None, Some(kept_stamp)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_watchers_all_see_one_change() {
    let (_dir, kv) = file_kv().await;
    let k = key!["shared"];
    let mut watchers = Vec::new();
    for i in 0..100 {
        // Half also watch a key of their own, so the snapshots differ in shape.
        let keys = if i % 2 == 0 { vec![k.clone()] } else { vec![key!["own", i], k.clone()] };
        let mut watch = kv.watch(&keys).unwrap();
        assert!(next(&mut watch).await.iter().all(Option::is_none));
        watchers.push(watch);
    }
    let stamp = kv.set(&k, bytes("hello, all")).await.unwrap();
    let seen = futures::future::join_all(watchers.iter_mut().map(|w| async move {
        let snapshot = next(w).await;
        snapshot.last().cloned().flatten().map(|e| e.versionstamp)
    }))
    .await;
    assert!(seen.iter().all(|s| *s == Some(stamp)), "{seen:?}");
}

#[tokio::test]
async fn a_watcher_that_lags_behind_still_sees_the_latest_state() {
    // The watched key changes, then more commits follow than the change feed holds (4096)
    // while the watcher is not polled: the event naming the key is gone, only the lag tells.
    let kv = Kv::open_in_memory().await.unwrap();
    let k = key!["k"];
    let mut watch = kv.watch(std::slice::from_ref(&k)).unwrap();
    assert_eq!(next(&mut watch).await, vec![None]);
    let stamp = kv.set(&k, bytes("changed")).await.unwrap();
    for i in 0..5000u64 {
        kv.set(&key!["noise", i], Value::U64(i)).await.unwrap();
    }
    assert_eq!(stamps(&next(&mut watch).await), vec![Some(stamp)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_database_ends_every_watch() {
    let (_dir, kv) = file_kv().await;
    let mut idle = kv.watch(&[key!["a"]]).unwrap();
    next(&mut idle).await;
    let mut waiting = kv.watch(&[key!["b"]]).unwrap();
    next(&mut waiting).await;
    // One stream is blocked waiting for a change when a clone of the handle closes the store.
    let blocked = tokio::spawn(async move { waiting.next().await.map(|r| r.map(|_| ())) });
    tokio::task::yield_now().await;
    kv.clone().close().await.unwrap();
    let ended = tokio::time::timeout(PATIENCE, blocked).await.expect("it ended").unwrap();
    assert!(ended.is_none(), "{ended:?}");
    assert!(tokio::time::timeout(PATIENCE, idle.next()).await.unwrap().is_none());
    // A watch started after close ends at once.
    let mut late = kv.watch(&[key!["c"]]).unwrap();
    assert!(tokio::time::timeout(PATIENCE, late.next()).await.unwrap().is_none());
}

#[tokio::test]
async fn watched_keys_are_checked_before_anything_runs() {
    let kv = Kv::open_in_memory().await.unwrap();
    let keys: Vec<Key> = (0..11).map(|i| key!["k", i]).collect();
    let too_many = kv.watch(&keys).unwrap_err();
    assert!(matches!(too_many, Error::TooManyWatchedKeys { max: 10 }), "{too_many:?}");
    assert_eq!(too_many.to_string(), "Too many keys (max 10)"); // Deno's text
    assert!(too_many.is_client_error());
    let mut ten = kv.watch(&keys[..10]).unwrap();
    assert_eq!(next(&mut ten).await.len(), 10);
    assert!(matches!(kv.watch(&[]), Err(Error::InvalidOption(_))));
    let huge = key!["x".repeat(3000)];
    assert!(matches!(kv.watch(&[huge]), Err(Error::KeyTooLargeForRead { .. })));
    let big_bigint = key![num_bigint::BigInt::from(2).pow(3000)];
    assert!(matches!(kv.watch(&[big_bigint]), Err(Error::InvalidKey(_))));

    // The limit is the handle's.
    let mut raised = Limits::default();
    raised.max_watched_keys = 11;
    let kv = OpenOptions::new().limits(raised).open(":memory:").await.unwrap();
    let mut eleven = kv.watch(&keys).unwrap();
    assert_eq!(next(&mut eleven).await.len(), 11);
}

const CHILD_ENV: &str = "OPENKV_WATCH_CHILD";

/// Another openkv process commits to the watched file; right after it, this process commits
/// an unwatched key (the next counter value, so the foreign commit is hidden in a gap unless
/// the poller reads the counter in between). The watcher must see the foreign write.
#[test]
fn a_write_by_another_openkv_process_is_seen() {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    if let Ok(db) = std::env::var(CHILD_ENV) {
        // The child: one write, its versionstamp on stdout.
        rt.block_on(async {
            let kv = Kv::open(&db).await.unwrap();
            let stamp = kv.set(&key!["watched"], bytes("from the child")).await.unwrap();
            println!("stamp {stamp}");
            kv.close().await.unwrap();
        });
        return;
    }
    rt.block_on(async {
        let (dir, kv) = file_kv().await;
        let db = dir.path().join("db.sqlite3");
        let mut watch = kv.watch(&[key!["watched"]]).unwrap();
        assert_eq!(next(&mut watch).await, vec![None]);
        for round in 0..3 {
            let out = Command::new(std::env::current_exe().unwrap())
                .args(["a_write_by_another_openkv_process_is_seen", "--exact", "--nocapture"])
                .env(CHILD_ENV, &db)
                .stderr(Stdio::inherit())
                .output()
                .unwrap();
            assert!(out.status.success(), "the child failed");
            kv.set(&key!["unwatched", round], bytes("ours")).await.unwrap();
            let stdout = String::from_utf8(out.stdout).unwrap();
            let stamp = stdout
                .split_once("stamp ")
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .unwrap_or_else(|| panic!("no stamp in {stdout:?}"));
            let snapshot = next(&mut watch).await;
            let entry = snapshot[0].as_ref().expect("the child's write");
            assert_eq!(entry.versionstamp.to_hex(), stamp, "round {round}");
            assert_eq!(entry.value, bytes("from the child"));
        }
    });
}

/// The real Deno CLI writes the file an openkv watcher follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_by_the_deno_cli_is_seen() {
    let (dir, kv) = file_kv().await;
    let db = dir.path().join("db.sqlite3");
    let k = key!["from-deno"];
    let mut watch: WatchStream = kv.watch(std::slice::from_ref(&k)).unwrap();
    assert_eq!(next(&mut watch).await, vec![None]);
    let script = common::deno_scripts().join("watch_writer.ts");
    for value in ["first", "second"] {
        let stdout = common::run_deno(
            &script,
            &[&db, std::path::Path::new("from-deno"), std::path::Path::new(value)],
        )
        .await;
        let snapshot = next(&mut watch).await;
        let entry = snapshot[0].as_ref().expect("Deno's write");
        assert_eq!(entry.versionstamp.to_hex(), stdout.trim());
        let text: String = entry.value.decode().unwrap();
        assert_eq!(text, value);
    }
    kv.close().await.unwrap();
}
