//! The change log in a PostgreSQL schema, and the primary's side of replication.
//!
//! `changelog` holds one row per transaction that bumped the `version` row while its process
//! had the log on: `(version, prev_version, ts_ms, bytes, changes)`, `changes` in
//! [`encode_changes`]'s format, `bytes` its length. The writer's batches and expiry sweeps and
//! the queue's dead-letter writes insert their record in their own transaction, under the
//! version row's lock: a record exists exactly when its commit does, and records are made in
//! counter order. The log's epoch is `meta.log_epoch`, made by the migration that created the
//! table. The chain rule and the epoch are explained in `openkv_core::changelog`.
//!
//! Every process of a schema may write records or not (its own `change_log` option): a commit
//! of a process without the log moves the counter without a record, which a follower meets as
//! a gap. Pruning runs in every process that keeps the log, by its own retention, every
//! [`PRUNE_EVERY`] on a pooled connection: deleting old records takes no lock a commit waits
//! for, so the writer never stalls behind a large prune.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Object, Pool};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;

use crate::engine::plan::Row;
use crate::error::{Error, Result};
use crate::shared::pool_error;
use crate::shared::stored_row;
use crate::shared::{pg_error, snapshot_txn, Shared, Sql};
use openkv_core::changelog::{
    decode_changes, encode_changes, LogGone, LogRead, LogRecord, LogRetention, SnapshotHeader,
};

/// How often the change log is pruned (a pass reads the sizes of the whole log: not at every
/// commit or sweep).
const PRUNE_EVERY: Duration = Duration::from_secs(10);
/// Records read per log request at most (besides the byte budget).
const MAX_RECORDS_PER_READ: i64 = 10_000;
/// Entries per chunk of a snapshot.
const SNAPSHOT_CHUNK: usize = 1000;
/// Chunks a snapshot reads ahead of its consumer: the consumer's pace, not memory, decides how
/// long its transaction stays open.
pub(crate) const SNAPSHOT_READ_AHEAD: usize = 4;

/// One record's columns, bound to `Sql::log_append` in the transaction that bumped the counter
/// to `version`.
pub(crate) struct NewRecord {
    version: i64,
    prev_version: i64,
    ts_ms: i64,
    bytes: i64,
    changes: Vec<u8>,
}

impl NewRecord {
    /// The record of a transaction whose bump returned `version`, changing `changes` (the
    /// final row of every key it touched, in key order).
    pub(crate) fn new<'a>(
        version: i64,
        now_ms: i64,
        changes: impl ExactSizeIterator<Item = (&'a Vec<u8>, &'a Option<Row>)>,
    ) -> NewRecord {
        let changes = encode_changes(changes);
        NewRecord {
            version,
            // The bump adds one to the counter it read: that is the one before.
            prev_version: version - 1,
            ts_ms: now_ms,
            bytes: i64::try_from(changes.len()).unwrap_or(i64::MAX),
            changes,
        }
    }

    /// The parameters of `Sql::log_append`.
    pub(crate) fn params(&self) -> [&(dyn ToSql + Sync); 5] {
        [&self.version, &self.prev_version, &self.ts_ms, &self.bytes, &self.changes]
    }
}

/// Prunes records older than the retention's age, then the oldest while the log holds more
/// than its size. Returns how many went.
pub(crate) async fn prune(
    client: &tokio_postgres::Client,
    sql: &Sql,
    now_ms: i64,
    retention: &LogRetention,
) -> Result<u64> {
    let err = |e| pg_error("pruning the change log", e);
    let max_age_ms = i64::try_from(retention.max_age.as_millis()).unwrap_or(i64::MAX);
    let max_bytes = i64::try_from(retention.max_bytes).unwrap_or(i64::MAX);
    let by_age = client
        .execute(&sql.log_prune_age, &[&now_ms.saturating_sub(max_age_ms)])
        .await
        .map_err(err)?;
    let by_size = client.execute(&sql.log_prune_size, &[&max_bytes]).await.map_err(err)?;
    Ok(by_age + by_size)
}

/// Starts the task that prunes the log every [`PRUNE_EVERY`] (the first time one period after
/// the open, as the sweep).
pub(crate) fn start_pruner(
    shared: Arc<Shared>,
    pool: Pool,
    retention: LogRetention,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let start = tokio::time::Instant::now() + PRUNE_EVERY;
        let mut every = tokio::time::interval_at(start, PRUNE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let pruned = match pool.get().await {
                Ok(client) => prune(&client, &shared.sql, shared.clock.now_ms(), &retention).await,
                Err(e) => Err(pool_error(e)),
            };
            // A failed pass is retried at the next one: the log only grows a little meanwhile.
            match pruned {
                Ok(0) => {}
                Ok(n) => tracing::debug!("openkv: pruned {n} change-log records"),
                Err(e) => tracing::warn!("openkv: pruning the change log failed: {e}"),
            }
        }
    })
}

/// A counter as stored (`bigint`) as the log's `u64`.
pub(crate) fn counter(value: i64) -> Result<u64> {
    u64::try_from(value)
        .map_err(|_| Error::corrupt(format!("a negative commit counter ({value}) is stored")))
}

/// The records after `after` (see `ReplicationSource::log_after`), read in one snapshot.
pub(crate) async fn log_after(
    client: &mut Object,
    sql: &Sql,
    epoch: Option<&str>,
    after: u64,
    max_bytes: usize,
) -> Result<LogRead> {
    let err = |e| pg_error("reading the change log", e);
    let head = client.prepare_cached(&sql.head).await.map_err(err)?;
    let log_epoch = client.prepare_cached(&sql.log_epoch).await.map_err(err)?;
    let read = client.prepare_cached(&sql.log_read).await.map_err(err)?;
    let tx = snapshot_txn(client, "reading the change log").await?;
    // A position beyond what the counter column holds gets the answer of any position ahead
    // of the counter (below), not an error.
    let from = i64::try_from(after).unwrap_or(i64::MAX);
    // At least one record whatever the budget: a budget of 1 lets the first one through.
    let budget = i64::try_from(max_bytes.max(1)).unwrap_or(i64::MAX);
    // Sent together (the driver pipelines them), answered from one snapshot.
    let read_params: [&(dyn ToSql + Sync); 3] = [&from, &MAX_RECORDS_PER_READ, &budget];
    let (head, log_epoch, rows) = tokio::try_join!(
        tx.query_one(&head, &[]),
        tx.query_opt(&log_epoch, &[]),
        tx.query(&read, &read_params),
    )
    .map_err(err)?;
    let head = counter(head.get(0))?;
    let Some(log_epoch) = log_epoch.map(|r| r.get::<_, String>(0)) else {
        return Ok(LogRead::Gone(LogGone::NoLog));
    };
    if epoch.is_some_and(|e| e != log_epoch) {
        return Ok(LogRead::Gone(LogGone::EpochChanged { epoch: log_epoch }));
    }
    let mut records = Vec::with_capacity(rows.len());
    let mut at = after;
    for row in &rows {
        let prev = counter(row.get(0))?;
        if prev != at {
            // A break in the chain: at the follower's own position it must start over; later
            // on, hand over what chains and let the next request meet the break.
            if records.is_empty() {
                let oldest: Option<i64> =
                    tx.query_one(&sql.log_oldest, &[]).await.map_err(err)?.get(0);
                let oldest = counter(oldest.unwrap_or(0))?;
                return Ok(LogRead::Gone(if after < oldest {
                    LogGone::Pruned { oldest }
                } else {
                    LogGone::Gap { at: after }
                }));
            }
            break;
        }
        let version = counter(row.get(1))?;
        let changes: &[u8] = row.get(3);
        records.push(LogRecord {
            prev_version: prev,
            version,
            committed_at_ms: row.get(2),
            changes: decode_changes(changes)?,
        });
        at = version;
    }
    tx.commit().await.map_err(err)?;
    if records.is_empty() && head != after {
        // The counter moved (or went back) with nothing logged after the follower's position.
        return Ok(LogRead::Gone(if head > after {
            LogGone::Gap { at: after }
        } else {
            LogGone::EpochChanged { epoch: log_epoch }
        }));
    }
    Ok(LogRead::Records { epoch: log_epoch, head, records })
}

/// A chunk of a snapshot, or why the snapshot broke off.
/// A chunk of a snapshot; `Ok(None)` is the end (see `Snapshot::from_channel`).
type Chunk = Result<Option<openkv_core::changelog::SnapshotChunk>>;

/// Runs a snapshot on its own connection: the header first (or why there is none), then the
/// chunks, ending early when the consumer drops the stream.
pub(crate) async fn stream_snapshot(
    mut client: Object,
    shared: Arc<Shared>,
    now: i64,
    header: oneshot::Sender<Result<SnapshotHeader>>,
    chunks: mpsc::Sender<Chunk>,
) {
    let mut header = Some(header);
    if let Err(e) = read_snapshot(&mut client, &shared.sql, now, &mut header, &chunks).await {
        match header.take() {
            Some(header) => {
                let _ = header.send(Err(e));
            }
            None => {
                let _ = chunks.send(Err(e)).await;
            }
        }
    }
}

async fn read_snapshot(
    client: &mut Object,
    sql: &Sql,
    now: i64,
    header: &mut Option<oneshot::Sender<Result<SnapshotHeader>>>,
    chunks: &mpsc::Sender<Chunk>,
) -> Result<()> {
    let err = |e| pg_error("reading a snapshot", e);
    let head = client.prepare_cached(&sql.head).await.map_err(err)?;
    let log_epoch = client.prepare_cached(&sql.log_epoch).await.map_err(err)?;
    let scan = client.prepare_cached(&sql.snapshot_scan).await.map_err(err)?;
    let tx = snapshot_txn(client, "reading a snapshot").await?;
    // The first statement fixes the transaction's snapshot: the counter and every row read
    // after it (through the portal, a server-side cursor) are of one moment.
    let (head, log_epoch) =
        tokio::try_join!(tx.query_one(&head, &[]), tx.query_opt(&log_epoch, &[])).map_err(err)?;
    let portal = tx.bind(&scan, &[&now]).await.map_err(err)?;
    let first = SnapshotHeader {
        epoch: log_epoch.map(|r| r.get(0)).unwrap_or_default(),
        version: counter(head.get(0))?,
        taken_at_ms: now,
        // `counter ‖ index`: a follower must be able to store the index.
        batch_index: true,
    };
    if let Some(header) = header.take() {
        if header.send(Ok(first)).is_err() {
            return Ok(()); // nobody waits for the snapshot any more
        }
    }
    let max_rows = i32::try_from(SNAPSHOT_CHUNK).unwrap_or(i32::MAX);
    loop {
        let rows = tx.query_portal(&portal, max_rows).await.map_err(err)?;
        let done = rows.len() < SNAPSHOT_CHUNK;
        if !rows.is_empty() {
            let chunk = rows.iter().map(stored_row).collect::<Result<Vec<_>>>()?;
            if chunks.send(Ok(Some(chunk))).await.is_err() {
                return Ok(()); // the consumer dropped the stream: the rollback ends the read
            }
        }
        if done {
            break;
        }
    }
    tx.commit().await.map_err(err)?;
    let _ = chunks.send(Ok(None)).await;
    Ok(())
}
