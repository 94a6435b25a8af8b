//! The PostgreSQL backend's change log and snapshots (`ReplicationSource`): records chain and
//! list the rows each commit left, an unlogged commit shows as a gap, retention prunes a
//! prefix, and a snapshot is one consistent moment.
//!
//! Each test works in a fresh schema of `$OPENKV_TEST_POSTGRES_URL` (skipped when unset,
//! unless `OPENKV_REQUIRE_POSTGRES=1`; `scripts/postgres.sh start DIR` prints a URL).

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::fresh_url;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use openkv_core::backend::{
    AtomicWrite, Backend, Consistency, Enqueue, Mutation, MutationKind, QueueBackend, ReadRange,
};
use openkv_core::changelog::{
    check_chain, LogChange, LogGone, LogRead, LogRecord, LogRetention, ReplicationSource,
};
use openkv_core::clock::{Clock, ManualClock, SystemClock};
use openkv_core::engine::plan::Row;
use openkv_core::key::Key;
use openkv_core::value::Value;
use openkv_core::versionstamp::Versionstamp;
use openkv_postgres::{PostgresBackend, PostgresConfig};

/// Opens `url` with the log as given; the expiry sweep (and the writer's own prune) every
/// `sweep`.
async fn open_with(
    url: &str,
    clock: Arc<dyn Clock>,
    log: Option<LogRetention>,
    sweep: Duration,
) -> Arc<PostgresBackend> {
    let config = PostgresConfig::new(sweep, None, 4).with_change_log(log);
    Arc::new(PostgresBackend::open(url, clock, config).await.unwrap())
}

/// Opens `url` on the system clock, never sweeping during a test.
async fn open(url: &str, log: Option<LogRetention>) -> Arc<PostgresBackend> {
    open_with(url, Arc::new(SystemClock), log, Duration::from_secs(3600)).await
}

fn key(name: &str) -> Vec<u8> {
    Key::new(vec![name.into()]).encode().unwrap()
}

fn set(k: &[u8], value: Value, expire_at_ms: Option<i64>) -> Mutation {
    Mutation { key: k.to_vec(), kind: MutationKind::Set(value), expire_at_ms }
}

fn mutation(k: &[u8], kind: MutationKind) -> Mutation {
    Mutation { key: k.to_vec(), kind, expire_at_ms: None }
}

/// Commits `mutations` (and `enqueues`) as one write; returns its versionstamp.
async fn commit(
    db: &PostgresBackend,
    mutations: Vec<Mutation>,
    enqueues: Vec<Enqueue>,
) -> Versionstamp {
    let write = AtomicWrite { checks: vec![], mutations, enqueues };
    db.atomic_write(write).await.unwrap().versionstamp().expect("committed")
}

/// The records after `after`, which must be answered with records.
async fn records(
    db: &PostgresBackend,
    epoch: Option<&str>,
    after: u64,
) -> (String, u64, Vec<LogRecord>) {
    match db.log_after(epoch.map(str::to_owned), after, usize::MAX).await.unwrap() {
        LogRead::Records { epoch, head, records } => (epoch, head, records),
        other => panic!("expected records after {after}, got {other:?}"),
    }
}

async fn gone(db: &PostgresBackend, epoch: Option<&str>, after: u64) -> LogGone {
    match db.log_after(epoch.map(str::to_owned), after, usize::MAX).await.unwrap() {
        LogRead::Gone(why) => why,
        other => panic!("expected Gone after {after}, got {other:?}"),
    }
}

/// Every live entry, as a snapshot lists them.
async fn everything(db: &PostgresBackend) -> Vec<(Vec<u8>, Row)> {
    let range = ReadRange { start: vec![], end: vec![0xff], limit: 100_000, reverse: false };
    let mut read = db.snapshot_read(vec![range], Consistency::Strong).await.unwrap();
    read.remove(0)
        .into_iter()
        .map(|e| (e.key, Row::new(&e.value, e.versionstamp, e.expire_at_ms)))
        .collect()
}

fn v8_string(s: &str) -> Value {
    // V8's serialization of a one-byte string: header, version, tag, length, bytes.
    let mut bytes = vec![0xff, 0x0f, 0x22, s.len() as u8];
    bytes.extend_from_slice(s.as_bytes());
    Value::V8(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_are_logged_in_chained_records_of_their_rows() {
    let Some(url) = fresh_url() else { return };
    let db = open(&url, Some(LogRetention::default())).await;
    let (a, b, c, d) = (key("a"), key("b"), key("c"), key("d"));
    let now = SystemClock.now_ms();
    let later = now + 3_600_000;

    let mut expected: Vec<(Versionstamp, Vec<LogChange>)> = Vec::new();
    let vs = commit(
        &db,
        vec![set(&a, v8_string("x"), None), set(&b, Value::Bytes(vec![1, 2]), None)],
        vec![],
    )
    .await;
    expected.push((
        vs,
        vec![
            (a.clone(), Some(Row::new(&v8_string("x"), vs, None))),
            (b.clone(), Some(Row::new(&Value::Bytes(vec![1, 2]), vs, None))),
        ],
    ));
    let vs = commit(&db, vec![mutation(&c, MutationKind::Sum(Value::U64(5)))], vec![]).await;
    expected.push((vs, vec![(c.clone(), Some(Row::new(&Value::U64(5), vs, None)))]));
    // A sum logs its result, not its operand.
    let vs = commit(&db, vec![mutation(&c, MutationKind::Sum(Value::U64(3)))], vec![]).await;
    expected.push((vs, vec![(c.clone(), Some(Row::new(&Value::U64(8), vs, None)))]));
    let vs = commit(&db, vec![mutation(&a, MutationKind::Delete)], vec![]).await;
    expected.push((vs, vec![(a.clone(), None)]));
    let vs = commit(&db, vec![set(&d, Value::Bytes(vec![9]), Some(later))], vec![]).await;
    expected.push((vs, vec![(d.clone(), Some(Row::new(&Value::Bytes(vec![9]), vs, Some(later))))]));
    // Only an enqueue: the counter moves, so a record (of no rows) keeps the chain.
    let enqueue = Enqueue {
        payload: v8_string("m").to_bytes(),
        deadline_ms: later,
        keys_if_undelivered: vec![],
        backoff_schedule: None,
    };
    let vs = commit(&db, vec![], vec![enqueue]).await;
    expected.push((vs, vec![]));

    let (epoch, head, got) = records(&db, None, 0).await;
    assert!(uuid::Uuid::parse_str(&epoch).is_ok(), "the epoch {epoch:?} is a UUID");
    assert_eq!(head, vs.version());
    assert_eq!(head, db.head().await.unwrap());
    assert_eq!(check_chain(0, &got).unwrap(), head, "the records chain from 0 to the head");
    assert_eq!(got.len(), expected.len());
    for (record, (vs, changes)) in got.iter().zip(&expected) {
        assert_eq!(record.version, vs.version());
        assert_eq!(&record.changes, changes, "record {}", record.version);
        assert!((record.committed_at_ms - now).abs() < 60_000, "committed now");
    }

    // The same from the epoch just read, from a position in the middle, and within a budget.
    let (_, _, from_epoch) = records(&db, Some(&epoch), 0).await;
    assert_eq!(from_epoch, got);
    let (_, _, tail) = records(&db, Some(&epoch), got[2].version).await;
    assert_eq!(tail, got[3..]);
    match db.log_after(Some(epoch.clone()), 0, 1).await.unwrap() {
        LogRead::Records { records, .. } => assert_eq!(records, got[..1], "at least one record"),
        other => panic!("{other:?}"),
    }
    // Another history's epoch, and a follower up to date.
    assert_eq!(
        gone(&db, Some("some-other-epoch"), 0).await,
        LogGone::EpochChanged { epoch: epoch.clone() }
    );
    let (_, same_head, none) = records(&db, Some(&epoch), head).await;
    assert_eq!((same_head, none), (head, vec![]));
    // A position ahead of the counter is another history too.
    assert_eq!(
        gone(&db, Some(&epoch), head + 5).await,
        LogGone::EpochChanged { epoch: epoch.clone() }
    );

    // The epoch is the schema's, kept across opens.
    db.close().await.unwrap();
    let again = open(&url, Some(LogRetention::default())).await;
    let (epoch_again, _, all_again) = records(&again, None, 0).await;
    assert_eq!((epoch_again, all_again), (epoch, got));
    again.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeps_and_dead_letters_are_logged() {
    let Some(url) = fresh_url() else { return };
    let clock = ManualClock::new(1_700_000_000_000);
    let db = open_with(
        &url,
        Arc::new(clock.clone()),
        Some(LogRetention::default()),
        Duration::from_millis(50),
    )
    .await;
    let (e, dead) = (key("expiring"), key("dead"));
    let set_at =
        commit(&db, vec![set(&e, Value::Bytes(vec![1]), Some(clock.now_ms() + 1000))], vec![])
            .await;

    // The sweep deletes it under a version of its own, and logs that.
    clock.advance(Duration::from_secs(2));
    let deadline = Instant::now() + Duration::from_secs(20);
    let (epoch, swept) = loop {
        let (epoch, _, got) = records(&db, None, 0).await;
        if got.len() == 2 {
            break (epoch, got);
        }
        assert!(Instant::now() < deadline, "the sweep did not run: {got:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(swept[0].version, set_at.version());
    assert_eq!(swept[1].prev_version, set_at.version());
    assert_eq!(swept[1].changes, vec![(e.clone(), None)]);

    // A message that fails its only attempt is written to its key under a new version.
    let payload = v8_string("letter").to_bytes();
    let enqueue = Enqueue {
        payload: payload.clone(),
        deadline_ms: clock.now_ms(),
        keys_if_undelivered: vec![dead.clone()],
        backoff_schedule: Some(vec![]),
    };
    let enqueued = commit(&db, vec![], vec![enqueue]).await;
    let taken = db.queue_take(1, Duration::from_secs(60)).await.unwrap();
    assert_eq!(taken.len(), 1);
    db.queue_finish(vec![(taken[0].id.clone(), false)]).await.unwrap();

    let (_, head, got) = records(&db, Some(&epoch), swept[1].version).await;
    assert_eq!(check_chain(swept[1].version, &got).unwrap(), head);
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].version, &got[0].changes), (enqueued.version(), &vec![]));
    let letter_vs = Versionstamp::from_version(got[1].version);
    let letter = Row::new(&Value::V8(payload), letter_vs, None);
    assert_eq!(got[1].changes, vec![(dead.clone(), Some(letter.clone()))]);
    assert_eq!(everything(&db).await, vec![(dead, letter)]);
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_without_the_log_is_a_gap() {
    let Some(url) = fresh_url() else { return };
    let logged = open(&url, Some(LogRetention::default())).await;
    // A second process on the same schema, with the log off.
    let unlogged = open(&url, None).await;
    let first = commit(&logged, vec![set(&key("x"), Value::Bytes(vec![1]), None)], vec![]).await;
    commit(&unlogged, vec![set(&key("y"), Value::Bytes(vec![2]), None)], vec![]).await;
    let third = commit(&logged, vec![set(&key("z"), Value::Bytes(vec![3]), None)], vec![]).await;

    // From 0: what chains (the first record), and the break left for the next request.
    let (epoch, head, got) = records(&logged, None, 0).await;
    assert_eq!(head, third.version());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].version, first.version());
    // From just before the unlogged commit: the follower must bootstrap again.
    assert_eq!(
        gone(&logged, Some(&epoch), first.version()).await,
        LogGone::Gap { at: first.version() }
    );
    // After the last record: nothing missed yet.
    let (_, _, none) = records(&logged, Some(&epoch), third.version()).await;
    assert!(none.is_empty());
    // An unlogged commit at the tail: the counter moved with no record.
    commit(&unlogged, vec![set(&key("w"), Value::Bytes(vec![4]), None)], vec![]).await;
    assert_eq!(
        gone(&logged, Some(&epoch), third.version()).await,
        LogGone::Gap { at: third.version() }
    );
    // The handle without the log still serves it (the log is the schema's).
    assert_eq!(
        gone(&unlogged, Some(&epoch), third.version()).await,
        LogGone::Gap { at: third.version() }
    );
    logged.close().await.unwrap();
    unlogged.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_the_oldest_records_by_size_and_by_age() {
    let Some(url) = fresh_url() else { return };
    let clock = ManualClock::new(1_700_000_000_000);
    // Room for one small record, not for a large one.
    let retention = LogRetention { max_age: Duration::from_secs(60), max_bytes: 200 };
    let db =
        open_with(&url, Arc::new(clock.clone()), Some(retention), Duration::from_secs(3600)).await;
    let big = Value::Bytes(vec![7; 1000]);
    for name in ["a", "b", "c"] {
        commit(&db, vec![set(&key(name), big.clone(), None)], vec![]).await;
    }
    let small = commit(&db, vec![set(&key("d"), Value::Bytes(vec![1]), None)], vec![]).await;
    let (epoch, _, all) = records(&db, None, 0).await;
    assert_eq!(all.len(), 4);

    assert_eq!(db.prune_change_log().await.unwrap(), 3);
    let oldest = small.version() - 1;
    assert_eq!(gone(&db, Some(&epoch), 0).await, LogGone::Pruned { oldest });
    let (_, _, kept) = records(&db, Some(&epoch), oldest).await;
    assert_eq!(kept, all[3..]);
    assert_eq!(db.prune_change_log().await.unwrap(), 0, "under the size now");

    // By age: everything older than a minute, and every record before it.
    clock.advance(Duration::from_secs(30));
    let mid = commit(&db, vec![set(&key("e"), Value::Bytes(vec![2]), None)], vec![]).await;
    clock.advance(Duration::from_secs(40));
    let last = commit(&db, vec![set(&key("f"), Value::Bytes(vec![3]), None)], vec![]).await;
    assert_eq!(db.prune_change_log().await.unwrap(), 1, "the record of `d`, 70 s old");
    assert_eq!(gone(&db, Some(&epoch), oldest).await, LogGone::Pruned { oldest: small.version() });
    let (_, head, kept) = records(&db, Some(&epoch), small.version()).await;
    assert_eq!(
        kept.iter().map(|r| r.version).collect::<Vec<_>>(),
        vec![mid.version(), last.version()]
    );
    assert_eq!(head, last.version());
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_is_every_live_entry_at_one_version() {
    let Some(url) = fresh_url() else { return };
    let clock = ManualClock::new(1_700_000_000_000);
    let db = open_with(
        &url,
        Arc::new(clock.clone()),
        Some(LogRetention::default()),
        Duration::from_secs(3600),
    )
    .await;
    // More than two chunks, and an entry expired but not swept yet.
    let mut names: Vec<String> = (0..2500).map(|i| format!("k{i:05}")).collect();
    for part in names.chunks(250) {
        let mutations =
            part.iter().map(|n| set(&key(n), Value::Bytes(n.as_bytes().to_vec()), None)).collect();
        commit(&db, mutations, vec![]).await;
    }
    commit(
        &db,
        vec![set(&key("expiring"), Value::Bytes(vec![0]), Some(clock.now_ms() + 1000))],
        vec![],
    )
    .await;
    commit(
        &db,
        vec![set(&key("soon"), Value::Bytes(vec![0]), Some(clock.now_ms() + 60_000))],
        vec![],
    )
    .await;
    clock.advance(Duration::from_secs(2));
    let before = everything(&db).await;
    names.push("soon".into());
    assert_eq!(before.len(), names.len());
    let (epoch, head, _) = records(&db, None, 0).await;

    let snapshot = db.snapshot().await.unwrap();
    assert_eq!(snapshot.header.epoch, epoch);
    assert_eq!(snapshot.header.version, head);
    assert_eq!(snapshot.header.taken_at_ms, clock.now_ms());
    // Writes after the snapshot started: a new key, an overwrite, a delete.
    commit(&db, vec![set(&key("new"), Value::Bytes(vec![1]), None)], vec![]).await;
    commit(&db, vec![set(&key("k00000"), Value::Bytes(vec![2]), None)], vec![]).await;
    commit(&db, vec![mutation(&key("k00001"), MutationKind::Delete)], vec![]).await;

    let chunks: Vec<_> = snapshot.entries.map(|c| c.unwrap()).collect().await;
    assert!(chunks.len() >= 3, "{} chunks", chunks.len());
    assert!(chunks.iter().all(|c| !c.is_empty() && c.len() <= 1000));
    let entries: Vec<_> = chunks.into_iter().flatten().collect();
    assert_eq!(entries, before, "the snapshot is the database as it was when it started");

    // A second snapshot sees the later writes, at the later head.
    let later = db.snapshot().await.unwrap();
    assert_eq!(later.header.version, db.head().await.unwrap());
    assert!(later.header.version > head);
    let entries: Vec<_> = later.entries.map(|c| c.unwrap()).collect::<Vec<_>>().await.concat();
    assert_eq!(entries, everything(&db).await);

    // A snapshot dropped half read releases its connection (the pool has 4).
    for _ in 0..8 {
        let mut s = db.snapshot().await.unwrap();
        s.entries.next().await.unwrap().unwrap();
    }
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_of_version_1_gets_the_log_table_and_an_epoch() {
    let Some(url) = fresh_url() else { return };
    let (base, schema) =
        url.split_once("?openkv_schema=").or(url.split_once("&openkv_schema=")).unwrap();
    let db = open(&url, None).await;
    let first = commit(&db, vec![set(&key("a"), Value::Bytes(vec![1]), None)], vec![]).await;
    db.close().await.unwrap();
    // Back to what a build before the change log left behind.
    let (client, connection) = tokio_postgres::connect(base, tokio_postgres::NoTls).await.unwrap();
    let driver = tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "drop table \"{schema}\".changelog; \
             delete from \"{schema}\".meta where name = 'log_epoch'; \
             update \"{schema}\".meta set value = '1' where name = 'schema_version'"
        ))
        .await
        .unwrap();
    drop(client);
    driver.await.unwrap().unwrap();

    let db = open(&url, Some(LogRetention::default())).await;
    let second = commit(&db, vec![set(&key("b"), Value::Bytes(vec![2]), None)], vec![]).await;
    // The log starts after the commit made before it (to a follower, as if pruned); what
    // follows is logged.
    assert_eq!(gone(&db, None, 0).await, LogGone::Pruned { oldest: first.version() });
    let (epoch, head, got) = records(&db, None, first.version()).await;
    assert!(uuid::Uuid::parse_str(&epoch).is_ok());
    assert_eq!((head, got.len(), got[0].version), (second.version(), 1, second.version()));
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_pruned_in_the_background() {
    let Some(url) = fresh_url() else { return };
    let retention = LogRetention { max_age: Duration::from_secs(3600), max_bytes: 200 };
    let db = open(&url, Some(retention)).await;
    for name in ["a", "b"] {
        commit(&db, vec![set(&key(name), Value::Bytes(vec![7; 1000]), None)], vec![]).await;
    }
    let small = commit(&db, vec![set(&key("c"), Value::Bytes(vec![1]), None)], vec![]).await;
    // The pruner's first pass comes 10 s after the open.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match db.log_after(None, 0, usize::MAX).await.unwrap() {
            LogRead::Gone(gone) => {
                assert_eq!(gone, LogGone::Pruned { oldest: small.version() - 1 });
                break;
            }
            LogRead::Records { records, .. } => assert_eq!(records.len(), 3),
            other => panic!("{other:?}"),
        }
        assert!(Instant::now() < deadline, "the log was not pruned");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    db.close().await.unwrap();
}
