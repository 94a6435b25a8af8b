//! Restoring into a PostgreSQL schema (`PostgresBackend::start_restore`, a `ReplicaTarget`): a
//! snapshot and records replace the whole content in one transaction — exactly the restored
//! rows, versionstamps whole, no queue —, the counter moves past both histories, the log's
//! epoch changes, other servers are told; until the commit, readers see the old content and
//! commits wait; a dropped, failed or cancelled session changes nothing.
//!
//! Each test works in a fresh schema of `$OPENKV_TEST_POSTGRES_URL` (skipped when unset,
//! unless `OPENKV_REQUIRE_POSTGRES=1`; `scripts/postgres.sh start DIR` prints a URL).

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::fresh_url;

use std::sync::Arc;
use std::time::{Duration, Instant};

use openkv_core::backend::{AtomicWrite, Backend, Consistency, Enqueue, Mutation, MutationKind};
use openkv_core::backend::{QueueBackend, ReadRange};
use openkv_core::changelog::{
    LogGone, LogRead, LogRecord, LogRetention, ReplicaPosition, ReplicaTarget, ReplicationSource,
    Snapshot, SnapshotChunk, SnapshotHeader,
};
use openkv_core::clock::{Clock, SystemClock};
use openkv_core::engine::plan::Row;
use openkv_core::error::Error;
use openkv_core::key::Key;
use openkv_core::value::Value;
use openkv_core::versionstamp::Versionstamp;
use openkv_postgres::{PostgresBackend, PostgresConfig};

/// Opens `url` with the change log on, never sweeping during a test.
async fn open(url: &str) -> Arc<PostgresBackend> {
    let config = PostgresConfig::new(Duration::from_secs(3600), None, 4)
        .with_change_log(Some(LogRetention::default()));
    Arc::new(PostgresBackend::open(url, Arc::new(SystemClock), config).await.unwrap())
}

fn key(name: &str) -> Vec<u8> {
    Key::new(vec![name.into()]).encode().unwrap()
}

fn set(k: &[u8], value: Value) -> Mutation {
    Mutation { key: k.to_vec(), kind: MutationKind::Set(value), expire_at_ms: None }
}

async fn commit(db: &PostgresBackend, mutations: Vec<Mutation>) -> Versionstamp {
    let write = AtomicWrite { checks: vec![], mutations, enqueues: vec![] };
    db.atomic_write(write).await.unwrap().versionstamp().expect("committed")
}

/// Enqueues a message due in an hour.
async fn enqueue(db: &PostgresBackend) {
    let enqueue = Enqueue {
        payload: v8_string("message").to_bytes(),
        deadline_ms: SystemClock.now_ms() + 3_600_000,
        keys_if_undelivered: vec![],
        backoff_schedule: None,
    };
    let write = AtomicWrite { checks: vec![], mutations: vec![], enqueues: vec![enqueue] };
    db.atomic_write(write).await.unwrap().versionstamp().expect("committed");
}

fn v8_string(s: &str) -> Value {
    // V8's serialization of a one-byte string: header, version, tag, length, bytes.
    let mut bytes = vec![0xff, 0x0f, 0x22, s.len() as u8];
    bytes.extend_from_slice(s.as_bytes());
    Value::V8(bytes)
}

/// Versionstamp `counter ‖ index`, as PostgreSQL makes them.
fn vs(counter: u64, index: u16) -> Versionstamp {
    let mut b = [0u8; 10];
    b[..8].copy_from_slice(&counter.to_be_bytes());
    b[8..].copy_from_slice(&index.to_be_bytes());
    Versionstamp(b)
}

fn row(value: Value, versionstamp: Versionstamp, expire_at_ms: Option<i64>) -> Row {
    Row::new(&value, versionstamp, expire_at_ms)
}

fn snapshot(version: u64, chunks: Vec<SnapshotChunk>) -> Snapshot {
    let header = SnapshotHeader {
        epoch: "the-backup's-epoch".into(),
        version,
        taken_at_ms: 0,
        batch_index: true,
    };
    Snapshot { header, entries: Box::pin(futures::stream::iter(chunks.into_iter().map(Ok))) }
}

fn record(prev_version: u64, version: u64, changes: Vec<(Vec<u8>, Option<Row>)>) -> LogRecord {
    LogRecord { prev_version, version, committed_at_ms: 0, changes }
}

/// Live entries, as a server reads them.
async fn everything(db: &PostgresBackend) -> Vec<(Vec<u8>, Row)> {
    let range = ReadRange { start: vec![], end: vec![0xff], limit: 100_000, reverse: false };
    let mut read = db.snapshot_read(vec![range], Consistency::Strong).await.unwrap();
    read.remove(0)
        .into_iter()
        .map(|e| (e.key, Row::new(&e.value, e.versionstamp, e.expire_at_ms)))
        .collect()
}

/// What the schema's tables hold, read with a connection of its own.
#[derive(Debug, PartialEq)]
struct Tables {
    /// Every row of `kv`, expired or not, in key order.
    kv: Vec<(Vec<u8>, Row)>,
    queue: i64,
    counter: i64,
    epoch: String,
    log_records: i64,
}

fn split(url: &str) -> (&str, &str) {
    url.split_once("?openkv_schema=").or(url.split_once("&openkv_schema=")).unwrap()
}

async fn sql(url: &str) -> (tokio_postgres::Client, tokio::task::JoinHandle<()>) {
    let (client, connection) =
        tokio_postgres::connect(split(url).0, tokio_postgres::NoTls).await.unwrap();
    (client, tokio::spawn(async move { connection.await.unwrap() }))
}

async fn tables(url: &str) -> Tables {
    let s = split(url).1;
    let (client, driver) = sql(url).await;
    let kv = client
        .query(&format!("select k, v, encoding, vs, expire_ms from \"{s}\".kv order by k"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let encoding: i32 = r.get(2);
            let stamp: Vec<u8> = r.get(3);
            let row = Row {
                encoding: i64::from(encoding),
                bytes: r.get(1),
                versionstamp: Versionstamp::from_slice(&stamp).unwrap(),
                expire_at_ms: r.get(4),
            };
            (r.get::<_, Vec<u8>>(0), row)
        })
        .collect();
    let one = |q: String| {
        let client = &client;
        async move { client.query_one(&q, &[]).await.unwrap() }
    };
    let tables = Tables {
        kv,
        queue: one(format!("select count(*) from \"{s}\".queue")).await.get(0),
        counter: one(format!("select v from \"{s}\".version")).await.get(0),
        epoch: one(format!("select value from \"{s}\".meta where name = 'log_epoch'")).await.get(0),
        log_records: one(format!("select count(*) from \"{s}\".changelog")).await.get(0),
    };
    drop(client);
    driver.await.unwrap();
    tables
}

/// Old content: `old1`, `old2`, `b` (which the restore overwrites) and a queue message.
async fn old_content(db: &PostgresBackend) {
    commit(db, vec![set(&key("old1"), Value::Bytes(vec![1]))]).await;
    commit(db, vec![set(&key("old2"), v8_string("two")), set(&key("b"), Value::U64(1))]).await;
    enqueue(db).await;
}

/// The snapshot and records of the main test, and the rows they leave.
struct Backup {
    snapshot_chunks: Vec<SnapshotChunk>,
    first_records: Vec<LogRecord>,
    more_records: Vec<LogRecord>,
    /// Every row after all of it, in key order (one of them expired).
    rows: Vec<(Vec<u8>, Row)>,
    end: u64,
}

fn backup() -> Backup {
    let later = SystemClock.now_ms() + 3_600_000;
    let past = SystemClock.now_ms() - 3_600_000;
    let (a, b, c, d, gone) = (key("a"), key("b"), key("c"), key("d"), key("gone"));
    let snapshot_chunks = vec![
        vec![
            (a.clone(), row(v8_string("first a"), vs(40, 3), None)),
            (b.clone(), row(Value::Bytes(vec![2, 2]), vs(45, 0), Some(later))),
        ],
        vec![
            (c.clone(), row(Value::U64(7), vs(50, 2), None)),
            // Expired at the source but not swept yet: kept as it is.
            (gone.clone(), row(Value::Bytes(vec![0]), vs(30, 1), Some(past))),
        ],
    ];
    let d_row = row(Value::Bytes(vec![4; 40]), vs(53, 1), None);
    let b_row = row(Value::U64(9), vs(55, 4), None);
    let a_row = row(v8_string("second a"), vs(58, 0), Some(later));
    let first_records = vec![
        record(50, 53, vec![(a.clone(), None), (d.clone(), Some(d_row.clone()))]),
        record(53, 55, vec![(b.clone(), Some(b_row.clone()))]),
    ];
    let more_records = vec![record(55, 58, vec![(a.clone(), Some(a_row.clone()))])];
    let rows = vec![
        (a, a_row),
        (b, b_row),
        (c, row(Value::U64(7), vs(50, 2), None)),
        (d, d_row),
        (gone, row(Value::Bytes(vec![0]), vs(30, 1), Some(past))),
    ];
    let mut rows = rows;
    rows.sort_by(|x, y| x.0.cmp(&y.0));
    Backup { snapshot_chunks, first_records, more_records, rows, end: 58 }
}

/// Installs the backup's snapshot and applies its records into `restore`.
async fn restore_backup(restore: &dyn ReplicaTarget, backup: &Backup) {
    let installed = restore
        .install_snapshot(uuid::Uuid::nil(), snapshot(50, backup.snapshot_chunks.clone()))
        .await
        .unwrap();
    assert_eq!(installed, 50);
    assert_eq!(restore.apply_log(backup.first_records.clone()).await.unwrap(), 55);
    assert_eq!(restore.apply_log(backup.more_records.clone()).await.unwrap(), backup.end);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_replaces_everything_at_once() {
    let Some(url) = fresh_url() else { return };
    let db = open(&url).await;
    // Another server of the same schema: it reads, writes and watches during the restore.
    let other = open(&url).await;
    old_content(&db).await;
    let before = tables(&url).await;
    let old_live = everything(&db).await;
    assert_eq!((before.kv.len(), before.queue), (3, 1));
    let old_epoch = before.epoch.clone();
    let old_head = u64::try_from(before.counter).unwrap();
    let mut other_feed = other.subscribe().unwrap();
    let mut own_feed = db.subscribe().unwrap();

    let backup = backup();
    let restore = db.start_restore().await.unwrap();
    assert_eq!(restore.replica_position().await.unwrap(), None);
    restore
        .install_snapshot(uuid::Uuid::nil(), snapshot(50, backup.snapshot_chunks.clone()))
        .await
        .unwrap();
    // Half-way: readers anywhere still see the old content, and so do the tables.
    assert_eq!(everything(&other).await, old_live);
    assert_eq!(restore.apply_log(backup.first_records.clone()).await.unwrap(), 55);
    assert_eq!(restore.apply_log(backup.more_records.clone()).await.unwrap(), 58);
    assert_eq!(
        restore.replica_position().await.unwrap(),
        Some(ReplicaPosition {
            epoch: "the-backup's-epoch".into(),
            primary_id: uuid::Uuid::nil(),
            version: 58
        })
    );
    assert_eq!(everything(&other).await, old_live);
    assert_eq!(everything(&db).await, old_live);
    assert_eq!(tables(&url).await, before);
    // A commit of another server waits for the restore.
    let writer = other.clone();
    let late = tokio::spawn(async move {
        commit(&writer, vec![set(&key("late"), Value::Bytes(vec![8]))]).await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!late.is_finished(), "a commit went through during the restore");
    // Only the old content's commits were announced so far (their notifications may reach the
    // other server after it subscribed).
    while let Ok(event) = other_feed.try_recv() {
        assert!(event.versionstamp.version() <= old_head, "{event:?} before the commit");
    }

    let summary = restore.commit().await.unwrap();
    // The counter is past both: the restored position (58) is above the old counter.
    assert!(old_head + 1 < 58);
    assert_eq!(summary.version, 58);
    assert_eq!(summary.restored_version, 58);
    assert_eq!(summary.entries, 5);
    assert_eq!(summary.replaced_entries, 3);
    assert_eq!(summary.removed_messages, 1);
    assert_ne!(summary.log_epoch, old_epoch);

    // The waiting commit comes right after, with the next counter value.
    let late_vs = tokio::time::timeout(Duration::from_secs(10), late).await.unwrap().unwrap();
    assert_eq!(late_vs, vs(59, 0));
    let late_row = row(Value::Bytes(vec![8]), late_vs, None);

    // Exactly the restored rows (and the commit after them): keys, values, encodings,
    // versionstamps with their batch index, expiry — the expired one too.
    let after = tables(&url).await;
    let mut expected = backup.rows.clone();
    expected.push((key("late"), late_row.clone()));
    expected.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(after.kv, expected);
    assert_eq!(after.queue, 0, "the queue's message went with the old content");
    assert_eq!(after.counter, 59);
    assert_eq!(after.epoch, summary.log_epoch);
    assert_eq!(after.log_records, 1, "the old history's records went; the late commit's came");
    let live: Vec<_> = expected.into_iter().filter(|(k, _)| *k != key("gone")).collect();
    assert_eq!(everything(&other).await, live);
    assert_eq!(everything(&db).await, live);
    assert_eq!(db.queue_next_due().await.unwrap(), None);

    // Followers of the old history must bootstrap again; the new one goes on from the counter.
    match db.log_after(Some(old_epoch), old_head, usize::MAX).await.unwrap() {
        LogRead::Gone(LogGone::EpochChanged { epoch }) => assert_eq!(epoch, summary.log_epoch),
        other => panic!("{other:?}"),
    }
    match db.log_after(Some(summary.log_epoch.clone()), 58, usize::MAX).await.unwrap() {
        LogRead::Records { records, head, .. } => {
            assert_eq!(head, 59);
            assert_eq!(records.len(), 1);
            assert_eq!((records[0].prev_version, records[0].version), (58, 59));
            assert_eq!(records[0].changes, vec![(key("late"), Some(late_row))]);
        }
        other => panic!("{other:?}"),
    }

    // Watchers of both servers heard "anything may have changed", at the restore's version.
    // (The late commit, which went through the moment the restore committed, may be heard
    // first: a process publishes its own commits when their `COMMIT` returns and the others'
    // when their notification arrives, and those two paths race.)
    for feed in [&mut other_feed, &mut own_feed] {
        loop {
            let event =
                tokio::time::timeout(Duration::from_secs(10), feed.recv()).await.unwrap().unwrap();
            if event.versionstamp == Versionstamp::from_version(58) && event.keys.is_empty() {
                break;
            }
            assert!(
                event.versionstamp.version() <= old_head || event.versionstamp == late_vs,
                "{event:?}"
            );
        }
    }
    db.close().await.unwrap();
    other.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counter_moves_past_an_older_restored_position() {
    let Some(url) = fresh_url() else { return };
    let db = open(&url).await;
    old_content(&db).await;
    // A database far ahead of the backup's history.
    let (client, driver) = sql(&url).await;
    client
        .batch_execute(&format!("update \"{}\".version set v = 1000", split(&url).1))
        .await
        .unwrap();
    drop(client);
    driver.await.unwrap();

    // Through the `Backend` trait this time (what `Kv::begin_restore` calls).
    let restore = db.clone().begin_restore().await.unwrap();
    restore_backup(restore.as_ref(), &backup()).await;
    let summary = restore.commit().await.unwrap();
    // The restore itself takes the next value, as a commit would: what readers saw before
    // stays below everything after.
    assert_eq!((summary.version, summary.entries, summary.queued_messages), (1001, 5, 0));
    assert_eq!(tables(&url).await.counter, 1001);
    let next = commit(&db, vec![set(&key("next"), Value::Bytes(vec![1]))]).await;
    assert_eq!(next, vs(1002, 0));
    db.close().await.unwrap();
}

/// Checks that the schema is as `before` and that commits go through again (the session's
/// lock is gone), the first one at the counter's next value.
async fn unchanged(url: &str, db: &PostgresBackend, before: &Tables) {
    let after = tables(url).await;
    assert_eq!(&after, before);
    let next = tokio::time::timeout(
        Duration::from_secs(10),
        commit(db, vec![set(&key("after"), Value::Bytes(vec![1]))]),
    )
    .await
    .expect("commits go through after the session ended");
    assert_eq!(next.version(), u64::try_from(before.counter).unwrap() + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_session_changes_nothing() {
    let Some(url) = fresh_url() else { return };
    let db = open(&url).await;
    old_content(&db).await;
    let before = tables(&url).await;
    let restore = db.start_restore().await.unwrap();
    restore_backup(&restore, &backup()).await;
    drop(restore);
    unchanged(&url, &db, &before).await;

    // Dropped right after it began, too.
    let before = tables(&url).await;
    drop(db.start_restore().await.unwrap());
    unchanged(&url, &db, &before).await;
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_chain_is_an_error_and_rolls_everything_back() {
    let Some(url) = fresh_url() else { return };
    let db = open(&url).await;
    old_content(&db).await;
    let before = tables(&url).await;
    let restore = db.start_restore().await.unwrap();
    let backup = backup();
    restore
        .install_snapshot(uuid::Uuid::nil(), snapshot(50, backup.snapshot_chunks.clone()))
        .await
        .unwrap();
    // Starts at 49, not at the position (50).
    let broken = vec![record(49, 53, vec![(key("x"), None)])];
    assert!(matches!(restore.apply_log(broken).await, Err(Error::Protocol(_))));
    // The session is over: nothing more is taken, and the commit is refused.
    assert!(restore.replica_position().await.is_err());
    assert!(restore.apply_log(backup.first_records.clone()).await.is_err());
    assert!(matches!(restore.commit().await, Err(Error::Internal(_))));
    unchanged(&url, &db, &before).await;

    // A record that chains but goes nowhere is broken too; so is one after a gap.
    for broken in [
        vec![record(50, 50, vec![])],
        vec![record(50, 53, vec![]), record(54, 55, vec![(key("y"), None)])],
    ] {
        let before = tables(&url).await;
        let restore = db.start_restore().await.unwrap();
        restore
            .install_snapshot(uuid::Uuid::nil(), snapshot(50, backup.snapshot_chunks.clone()))
            .await
            .unwrap();
        assert!(matches!(restore.apply_log(broken).await, Err(Error::Protocol(_))));
        assert!(restore.commit().await.is_err());
        unchanged(&url, &db, &before).await;
    }

    // Records before any snapshot, and a commit without one, are refused the same way.
    let before = tables(&url).await;
    let restore = db.start_restore().await.unwrap();
    assert!(restore.apply_log(backup.first_records.clone()).await.is_err());
    unchanged(&url, &db, &before).await;
    let before = tables(&url).await;
    let restore = db.start_restore().await.unwrap();
    assert!(matches!(restore.commit().await, Err(Error::Internal(_))));
    unchanged(&url, &db, &before).await;
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_or_cut_snapshot_and_a_cancelled_call_change_nothing() {
    let Some(url) = fresh_url() else { return };
    let db = open(&url).await;
    old_content(&db).await;
    let entry = |name: &str| (key(name), row(Value::Bytes(vec![1]), vs(5, 0), None));

    // A key twice: the snapshot's fault, typed as such.
    let before = tables(&url).await;
    let restore = db.start_restore().await.unwrap();
    let twice = snapshot(50, vec![vec![entry("a"), entry("b")], vec![entry("a")]]);
    let err = restore.install_snapshot(uuid::Uuid::nil(), twice).await.unwrap_err();
    assert!(matches!(err, Error::InvalidBackup(_)), "{err:?}");
    assert!(restore.commit().await.is_err());
    unchanged(&url, &db, &before).await;

    // A stream that breaks off after a chunk.
    let before = tables(&url).await;
    let restore = db.start_restore().await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(Ok(Some(vec![entry("a")]))).await.unwrap();
    drop(tx);
    let header = snapshot(50, vec![]).header;
    let cut = Snapshot::from_channel(header.clone(), rx);
    assert!(restore.install_snapshot(uuid::Uuid::nil(), cut).await.is_err());
    assert!(restore.commit().await.is_err());
    unchanged(&url, &db, &before).await;

    // A call cancelled half-way (a stream that never ends, given up on): the session is over.
    let before = tables(&url).await;
    let restore = db.start_restore().await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(Ok(Some(vec![entry("a")]))).await.unwrap();
    let endless = Snapshot::from_channel(header, rx);
    let call = restore.install_snapshot(uuid::Uuid::nil(), endless);
    assert!(tokio::time::timeout(Duration::from_millis(300), call).await.is_err());
    drop(tx);
    assert!(matches!(restore.commit().await, Err(Error::Internal(_))));
    unchanged(&url, &db, &before).await;
    db.close().await.unwrap();
}

/// `n` entries of small values in chunks of 1000, as a snapshot of a continuous backup comes.
fn many(n: usize, version: u64) -> Vec<SnapshotChunk> {
    (0..n)
        .map(|i| {
            let value = Value::Bytes(format!("value number {i:08}").into_bytes());
            (key(&format!("key{i:08}")), row(value, vs(version, (i % 500) as u16), None))
        })
        .collect::<Vec<_>>()
        .chunks(1000)
        .map(<[_]>::to_vec)
        .collect()
}

/// Restores `n` entries and records touching `touched` of them (deleting every third); returns
/// the install's rate in entries per second.
async fn restore_many(n: usize, touched: usize) -> Option<f64> {
    let url = fresh_url()?;
    let db = open(&url).await;
    old_content(&db).await;
    let chunks = many(n, 100);
    let restore = db.start_restore().await.unwrap();
    let started = Instant::now();
    restore.install_snapshot(uuid::Uuid::nil(), snapshot(100, chunks)).await.unwrap();
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let changes: Vec<(Vec<u8>, Option<Row>)> = (0..touched)
        .map(|i| {
            let k = key(&format!("key{i:08}"));
            (k, (i % 3 != 0).then(|| row(Value::U64(i as u64), vs(101, 1), None)))
        })
        .collect();
    let deleted = touched.div_ceil(3);
    restore.apply_log(vec![record(100, 101, changes)]).await.unwrap();
    let committing = Instant::now();
    let summary = restore.commit().await.unwrap();
    eprintln!("{n} entries: the commit took {:?}", committing.elapsed());
    assert_eq!(summary.entries, (n - deleted) as u64);
    let after = tables(&url).await;
    assert_eq!(after.kv.len(), n - deleted);
    assert_eq!(after.kv[0].0, key("key00000001"));
    assert_eq!(after.kv[0].1, row(Value::U64(1), vs(101, 1), None));
    let last = after.kv.last().unwrap();
    let last_value = Value::Bytes(format!("value number {:08}", n - 1).into_bytes());
    assert_eq!(last.1, row(last_value, vs(100, ((n - 1) % 500) as u16), None));
    db.close().await.unwrap();
    Some(rate)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_restore_goes_in_bounded_statements() {
    // More rows per chunk, per apply and per delete than one statement takes.
    if let Some(rate) = restore_many(30_000, 12_000).await {
        eprintln!("installed 30000 entries at {rate:.0} entries/s");
    }
}
