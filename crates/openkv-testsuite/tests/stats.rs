//! The engine's counters and gauges (`Kv::stats`, `Kv::gauges`: what `openkv serve`'s
//! `/metrics` shows) on every backend that keeps them — a SQLite file, a fresh PostgreSQL
//! schema (skipped without `OPENKV_TEST_POSTGRES_URL`, unless `OPENKV_REQUIRE_POSTGRES=1`), the
//! memory backend — each moved by exactly what the test did: commits by outcome, batch sizes,
//! entries and bytes read and written, an expired key swept and how late, queue depths and
//! delivery outcomes. A KV Connect database keeps none (its server does).

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openkv::{
    key, EnqueueOptions, Error, Gauges, Kv, ManualClock, OpenOptions, StatsSnapshot, Value,
};
use openkv_memory::MemoryBackend;
use openkv_testsuite::fixtures;

/// The manual clock's start: every due time and expiry below is relative to it.
const T0: i64 = 1_700_000_000_000;

/// Options on `clock`, sweeping expired keys every 20 ms.
fn options(clock: &ManualClock) -> OpenOptions {
    OpenOptions::new().clock(clock.clone()).expiry_sweep_interval(Duration::from_millis(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_file_counts_what_it_did() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let kv = options(&clock).open(dir.path().join("db.sqlite3")).await.unwrap();
    exercise(&kv, &clock, Sweeps::Yes).await;
    let gauges = kv.gauges().await.unwrap();
    let file = std::fs::metadata(dir.path().join("db.sqlite3")).unwrap().len();
    assert_eq!(gauges.database_bytes, Some(file));
    // The WAL holds this test's commits until a checkpoint: some bytes, whatever their number.
    assert!(gauges.wal_bytes.is_some_and(|b| b > 0), "{gauges:?}");
    kv.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_schema_counts_what_it_did() {
    let Some(url) = fixtures::postgres_url() else { return };
    let clock = ManualClock::new(T0);
    let kv = options(&clock).open(Path::new(&url)).await.unwrap();
    exercise(&kv, &clock, Sweeps::Yes).await;
    let gauges = kv.gauges().await.unwrap();
    // The schema's tables with their indexes: at least a page each.
    assert!(gauges.database_bytes.is_some_and(|b| b >= 8192), "{gauges:?}");
    assert_eq!(gauges.wal_bytes, None, "the WAL is the cluster's");
    kv.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_backend_counts_what_it_did() {
    let clock = ManualClock::new(T0);
    let backend = MemoryBackend::new(Arc::new(clock.clone()));
    let kv = options(&clock).with_backend(Arc::new(backend));
    exercise(&kv, &clock, Sweeps::No).await;
    let gauges = kv.gauges().await.unwrap();
    assert_eq!((gauges.database_bytes, gauges.wal_bytes), (None, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kv_connect_database_has_no_counters_of_its_own() {
    let fixture = fixtures::openkv_server().await.unwrap();
    fixture.kv.set(&key!["a"], b"1".to_vec()).await.unwrap();
    assert_eq!(fixture.kv.stats(), None);
    assert_eq!(fixture.kv.gauges().await.unwrap(), Gauges::default());
    fixture.finish().await;
}

/// Whether the backend deletes expired keys (the memory backend never does).
#[derive(Clone, Copy, PartialEq)]
enum Sweeps {
    Yes,
    No,
}

fn stats(kv: &Kv) -> StatsSnapshot {
    kv.stats().expect("this backend keeps counters")
}

fn encoded_len(key: &openkv::Key) -> u64 {
    key.encode().unwrap().len() as u64
}

/// Does one thing of each kind on `kv` and checks that the counters moved by exactly that.
async fn exercise(kv: &Kv, clock: &ManualClock, sweeps: Sweeps) {
    let value = || Value::Bytes(vec![7; 10]);

    // N commits: each one ok, its mutation written; the batches hold N writes in all.
    let before = stats(kv);
    let keys: Vec<openkv::Key> = (0..5i64).map(|i| key!["s", i]).collect();
    for k in &keys {
        kv.set(k, value()).await.unwrap();
    }
    let after = stats(kv);
    assert_eq!(after.commits_ok - before.commits_ok, 5);
    assert_eq!(after.written_entries - before.written_entries, 5);
    let bytes: u64 = keys.iter().map(|k| encoded_len(k) + 10).sum();
    assert_eq!(after.written_bytes - before.written_bytes, bytes);
    assert_eq!(after.batch_size.sum - before.batch_size.sum, 5.0);
    let batches = after.batch_size.count - before.batch_size.count;
    assert!((1..=5).contains(&batches), "{batches} batches for 5 sequential writes");
    assert_eq!(after.commit_duration.count - before.commit_duration.count, batches);
    assert!(after.commit_duration.sum > before.commit_duration.sum);
    assert_eq!((after.commits_check_failed, after.commits_error), (0, 0));

    // A failed check: counted as such, nothing written.
    let outcome = kv.atomic().check(&keys[0], None).set(&keys[0], value()).commit().await.unwrap();
    assert!(!outcome.is_committed());
    let failed = stats(kv);
    assert_eq!(failed.commits_check_failed - after.commits_check_failed, 1);
    assert_eq!(
        (failed.commits_ok, failed.written_entries),
        (after.commits_ok, after.written_entries)
    );

    // A mutation the engine rejects (a sum on bytes): an error.
    let err = kv.atomic().sum(&keys[1], 1).commit().await.unwrap_err();
    assert!(matches!(err, Error::TypeMismatch(_)), "{err:?}");
    let rejected = stats(kv);
    assert_eq!(rejected.commits_error - failed.commits_error, 1);
    assert_eq!(rejected.written_entries, failed.written_entries);

    // A read of two keys that exist and one that does not.
    let read = kv.get_many(&[keys[0].clone(), keys[1].clone(), key!["missing"]]).await.unwrap();
    assert_eq!(read.iter().flatten().count(), 2);
    let reads = stats(kv);
    assert_eq!(reads.read_entries - rejected.read_entries, 2);
    assert_eq!(
        reads.read_bytes - rejected.read_bytes,
        encoded_len(&keys[0]) + encoded_len(&keys[1]) + 20
    );

    if sweeps == Sweeps::Yes {
        // A key that expires 1 s from now, swept once the clock is 3 s on: 2 s late.
        kv.set_with_expiry(&key!["e"], value(), Duration::from_secs(1)).await.unwrap();
        let before = stats(kv);
        clock.advance(Duration::from_secs(3));
        let swept = wait_for(kv, |s| s.expired_swept > before.expired_swept).await;
        assert_eq!(swept.expired_swept - before.expired_swept, 1);
        assert_eq!(swept.expiry_lag.sum - before.expiry_lag.sum, 2.0);
        assert_eq!(swept.expiry_lag.count - before.expiry_lag.count, 1);
    }

    queue_depths_and_deliveries(kv, clock).await;
}

/// Three messages: "a" (Deno's backoff), "b" (one attempt only, then to a dead-letter key),
/// "c" (due in a minute). Two fail, one is retried and delivered.
async fn queue_depths_and_deliveries(kv: &Kv, clock: &ManualClock) {
    let before = stats(kv);
    kv.enqueue("a", &EnqueueOptions::new()).await.unwrap();
    let once = EnqueueOptions::new().backoff_schedule([]).keys_if_undelivered([key!["dead"]]);
    kv.enqueue("b", &once).await.unwrap();
    kv.enqueue("c", &EnqueueOptions::new().delay(Duration::from_secs(60))).await.unwrap();
    clock.advance(Duration::from_millis(500));
    let g = kv.gauges().await.unwrap();
    assert_eq!((g.queue_ready, g.queue_delayed, g.queue_in_flight), (Some(2), Some(1), Some(0)));
    assert_eq!(g.queue_oldest_ready_age, Some(Duration::from_millis(500)));

    let lease = Duration::from_secs(30);
    let taken = kv.queue_take(10, lease).await.unwrap();
    assert_eq!(taken.len(), 2);
    let g = kv.gauges().await.unwrap();
    assert_eq!((g.queue_ready, g.queue_delayed, g.queue_in_flight), (Some(0), Some(1), Some(2)));
    assert_eq!(g.queue_oldest_ready_age, None);

    // Both fail: "a" is retried in 100 ms, "b" goes to its dead-letter key.
    kv.queue_finish(taken.iter().map(|m| (m.id.clone(), false)).collect()).await.unwrap();
    let failed = stats(kv);
    assert_eq!(failed.queue_retried - before.queue_retried, 1);
    assert_eq!(failed.queue_dead_lettered - before.queue_dead_lettered, 1);
    assert_eq!(failed.queue_delivered, before.queue_delivered);
    assert!(kv.get(&key!["dead"]).await.unwrap().is_some());
    let g = kv.gauges().await.unwrap();
    assert_eq!((g.queue_ready, g.queue_delayed, g.queue_in_flight), (Some(0), Some(2), Some(0)));

    clock.advance(Duration::from_millis(200));
    let retry = kv.queue_take(10, lease).await.unwrap();
    assert_eq!(retry.len(), 1);
    assert_eq!(Value::V8(retry[0].payload.clone()).decode::<String>().unwrap(), "a");
    kv.queue_finish(vec![(retry[0].id.clone(), true)]).await.unwrap();
    let delivered = stats(kv);
    assert_eq!(delivered.queue_delivered - failed.queue_delivered, 1);
    assert_eq!(delivered.queue_retried, failed.queue_retried);
    let g = kv.gauges().await.unwrap();
    assert_eq!((g.queue_ready, g.queue_delayed, g.queue_in_flight), (Some(0), Some(1), Some(0)));
}

/// The stats once `done` holds of them; fails after 10 s.
async fn wait_for(kv: &Kv, done: impl Fn(&StatsSnapshot) -> bool) -> StatsSnapshot {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = stats(kv);
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "the counters never got there: {s:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
