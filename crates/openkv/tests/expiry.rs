//! Expiry: invisible to reads and checks the moment it passes, deleted by the sweep.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::TryStreamExt;
use openkv::{key, Key, ListOptions, ManualClock, OpenOptions, Selector, Value};

fn rows(path: &std::path::Path) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("select count(*) from kv", [], |r| r.get(0)).unwrap()
}

#[tokio::test]
async fn expired_keys_vanish_from_every_read_at_once_and_the_sweep_deletes_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let clock = ManualClock::new(1_000_000);
    let kv = OpenOptions::new()
        .clock(clock.clone())
        .expiry_sweep_interval(Duration::from_millis(20))
        .open(&path)
        .await
        .unwrap();
    let (short, long, keep) = (key!["t", "short"], key!["t", "long"], key!["t", "keep"]);
    kv.set_with_expiry(&short, Value::Bytes(vec![1]), Duration::from_millis(500)).await.unwrap();
    kv.set_with_expiry(&long, Value::Bytes(vec![2]), Duration::from_secs(60)).await.unwrap();
    kv.set(&keep, Value::Bytes(vec![3])).await.unwrap();

    clock.advance(Duration::from_millis(499));
    assert!(kv.get(&short).await.unwrap().is_some(), "not yet expired");
    clock.advance(Duration::from_millis(1));
    assert!(kv.get(&short).await.unwrap().is_none(), "expired at exactly its deadline");
    let listed: Vec<Key> = kv
        .list(Selector::prefix(key!["t"]), ListOptions::new())
        .unwrap()
        .map_ok(|e| e.key)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(listed, vec![keep.clone(), long.clone()]);
    let many = kv.get_many(&[short.clone(), long.clone()]).await.unwrap();
    assert!(many[0].is_none() && many[1].is_some());
    // A check sees an expired key as absent.
    let out =
        kv.atomic().check(&short, None).set(&key!["flag"], Value::U64(1)).commit().await.unwrap();
    assert!(out.is_committed());
    // sum on an expired counter starts from the operand.
    kv.set_with_expiry(&key!["n"], Value::U64(100), Duration::from_millis(1)).await.unwrap();
    clock.advance(Duration::from_millis(2));
    kv.atomic().sum(&key!["n"], 1).commit().await.unwrap();
    assert_eq!(kv.get(&key!["n"]).await.unwrap().unwrap().value, Value::U64(1));

    // The sweep removes the expired row from the file (it runs every 20 ms of real time).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while rows(&path) != 4 {
        assert!(std::time::Instant::now() < deadline, "sweep did not run: {} rows", rows(&path));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    clock.advance(Duration::from_secs(60));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while rows(&path) != 3 {
        assert!(std::time::Instant::now() < deadline, "sweep did not run: {} rows", rows(&path));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(kv.get(&keep).await.unwrap().is_some());
}

#[tokio::test]
async fn the_sweep_publishes_expired_keys_on_the_change_feed() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let kv = OpenOptions::new()
        .clock(clock.clone())
        .expiry_sweep_interval(Duration::from_millis(10))
        .open(dir.path().join("db"))
        .await
        .unwrap();
    let k = key!["session"];
    let written = kv.set_with_expiry(&k, Value::U64(1), Duration::from_millis(5)).await.unwrap();
    let mut feed = kv.subscribe().unwrap();
    clock.advance(Duration::from_millis(5));
    let event = tokio::time::timeout(Duration::from_secs(10), feed.recv()).await.unwrap().unwrap();
    assert_eq!(&*event.keys, &[k.encode().unwrap()]);
    assert!(event.versionstamp > written, "the sweep commits at a new versionstamp");
}

#[tokio::test]
async fn range_reads_tell_each_entry_its_expiry_time() {
    let clock = ManualClock::new(1_000_000);
    let kv = OpenOptions::new().clock(clock.clone()).open(":memory:").await.unwrap();
    kv.set_with_expiry(&key!["e", 1], Value::U64(1), Duration::from_millis(500)).await.unwrap();
    kv.set(&key!["e", 2], Value::U64(2)).await.unwrap();
    let start = key!["e"].encode().unwrap();
    let range = openkv::ReadRange {
        end: [start.as_slice(), &[0xff]].concat(),
        start,
        limit: 10,
        reverse: false,
    };
    let read = kv.snapshot_read(vec![range], Default::default()).await.unwrap();
    let expiries: Vec<Option<i64>> = read[0].iter().map(|e| e.expire_at_ms).collect();
    assert_eq!(expiries, [Some(1_000_500), None]);
}
