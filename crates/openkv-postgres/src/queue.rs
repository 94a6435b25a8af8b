//! Queue delivery across processes.
//!
//! A message stays in one row of `queue` from enqueue to its end. Taking it sets a lease
//! (`lease_until`, `lease_owner`) with `FOR UPDATE SKIP LOCKED`, so two processes taking at
//! once never get the same message; a lease that ran out makes the message takeable again
//! (its taker is presumed dead: at least once). Renewing and finishing need the message still
//! leased, not leased by this process: behind a load balancer a remote listener's take, renewals
//! and finish may each reach a different server. (`lease_owner` records which process took it,
//! for operators.) As on SQLite, a handler that overran its lease — its process stalled for
//! longer than the lease while another took the message — can still finish it.
//! A failed attempt clears the lease and sets the message due after the next backoff interval;
//! with none left, the payload is written to its `keys_if_undelivered` under a fresh version
//! (the same global version lock as every write), and logged like any write when the change
//! log is on.

use std::time::Duration;

use deadpool_postgres::Object;

use super::writer::encoding_column;
use crate::backend::{
    QueueChange, QueueListing, QueueMessageInfo, QueueMessageState, QueuedMessage,
};
use crate::changelog::NewRecord;
use crate::engine::finish::{dead_letter_rows, finish_attempt, Finish};
use crate::engine::measure::delivery;
use crate::engine::plan::Row;
use crate::error::{Error, Result};
use crate::shared::{pg_error, snapshot_txn, Shared};
use crate::value::Value;
use crate::versionstamp::Versionstamp;
use openkv_core::queue::{lease_millis, parse_stored_json as parse};
use openkv_core::stats::{DeliveryTally, Gauges};

pub(super) async fn take(
    client: &Object,
    shared: &Shared,
    max: usize,
    lease: Duration,
) -> Result<Vec<QueuedMessage>> {
    let now = shared.clock.now_ms();
    let stmt = client
        .prepare_cached(&shared.sql.queue_take)
        .await
        .map_err(|e| pg_error("taking queue messages", e))?;
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    let rows = client
        .query(&stmt, &[&now, &max, &lease_millis(lease), &shared.instance])
        .await
        .map_err(|e| pg_error("taking queue messages", e))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let id: String = row.get(0);
        let backoff: String = row.get(3);
        let keys: String = row.get(4);
        let attempts: i32 = row.get(5);
        out.push(QueuedMessage {
            payload: row.get(1),
            due_ms: row.get(2),
            backoff_schedule: parse("backoff schedule", &id, &backoff)?,
            keys_if_undelivered: parse("keys_if_undelivered", &id, &keys)?,
            attempt: u32::try_from(attempts).unwrap_or(1),
            id,
        });
    }
    out.sort_by_key(|m| (m.due_ms, m.id.clone()));
    Ok(out)
}

pub(super) async fn renew(
    client: &Object,
    shared: &Shared,
    ids: Vec<String>,
    lease: Duration,
) -> Result<()> {
    let until = shared.clock.now_ms() + lease_millis(lease);
    let stmt = client
        .prepare_cached(&shared.sql.queue_renew)
        .await
        .map_err(|e| pg_error("renewing queue leases", e))?;
    client
        .execute(&stmt, &[&until, &ids])
        .await
        .map_err(|e| pg_error("renewing queue leases", e))?;
    Ok(())
}

pub(super) async fn finish(
    client: &mut Object,
    shared: &Shared,
    mut outcomes: Vec<(String, bool)>,
) -> Result<()> {
    let err = |e| pg_error("finishing queue messages", e);
    let now = shared.clock.now_ms();
    let sql = &shared.sql;
    // Locks in one order, whoever finishes.
    outcomes.sort();
    outcomes.dedup_by(|a, b| a.0 == b.0);
    let select = client.prepare_cached(&sql.queue_running).await.map_err(err)?;
    let delete = client.prepare_cached(&sql.queue_delete).await.map_err(err)?;
    let retry = client.prepare_cached(&sql.queue_retry).await.map_err(err)?;
    let tx = client.transaction().await.map_err(err)?;
    let mut dead_letters: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut retried = false;
    let mut tally = DeliveryTally::default();
    for (id, delivered) in &outcomes {
        let Some(row) = tx.query_opt(&select, &[id]).await.map_err(err)? else {
            continue; // No longer running (finished already, or its lease ran out): ignored.
        };
        let (backoff, keys): (String, String) = (row.get(0), row.get(1));
        let finish = finish_attempt(id, &backoff, &keys, *delivered, now)?;
        tally.add(delivery(*delivered, &finish));
        match finish {
            Finish::Retry { due_ms, backoff_schedule } => {
                tx.execute(&retry, &[id, &due_ms, &backoff_schedule]).await.map_err(err)?;
                retried = true;
            }
            Finish::Remove { dead_letters: keys } => {
                tx.execute(&delete, &[id]).await.map_err(err)?;
                let payload: Vec<u8> = row.get(2);
                dead_letters.extend(keys.into_iter().map(|k| (k, payload.clone())));
            }
        }
    }
    let mut event = None;
    if !dead_letters.is_empty() {
        // A write like any other: under the version lock, with the next version.
        let version: i64 = tx.query_one(&sql.bump, &[]).await.map_err(err)?.get(0);
        let vs = Versionstamp::from_version(version as u64);
        if let Some((rows, change)) = dead_letter_rows(dead_letters, vs) {
            // In the dead letters' transaction: the record exists exactly when they do.
            let record = shared.change_log.map(|_| NewRecord::new(version, now, rows.iter()));
            let rows: Vec<(&Vec<u8>, &Row)> =
                rows.iter().filter_map(|(k, r)| r.as_ref().map(|r| (k, r))).collect();
            let keys: Vec<&[u8]> = rows.iter().map(|(k, _)| k.as_slice()).collect();
            let values: Vec<&[u8]> = rows.iter().map(|(_, r)| r.bytes.as_slice()).collect();
            let encodings = rows
                .iter()
                .map(|(_, r)| encoding_column(r.encoding))
                .collect::<Result<Vec<_>>>()?;
            let stamps: Vec<&[u8]> =
                rows.iter().map(|(_, r)| r.versionstamp.as_bytes().as_slice()).collect();
            let expiries: Vec<Option<i64>> = rows.iter().map(|(_, r)| r.expire_at_ms).collect();
            tx.execute(&sql.upsert, &[&keys, &values, &encodings, &stamps, &expiries])
                .await
                .map_err(err)?;
            if let Some(record) = &record {
                tx.execute(&sql.log_append, &record.params()).await.map_err(err)?;
            }
            let payload = super::notify::encode(&shared.instance, vs, false, &change.keys);
            tx.execute(sql.notify, &[&sql.channel, &payload]).await.map_err(err)?;
            event = Some(change);
        }
    }
    tx.commit().await.map_err(err)?;
    shared.stats.record_deliveries(&tally);
    if retried {
        // A retry falls due sooner than anything this process's waiting listeners knew of.
        shared.queue_wakeup.wake();
    }
    if let Some(event) = event {
        let _ = shared.changes.send(event);
    }
    Ok(())
}

pub(super) async fn next_due(client: &Object, shared: &Shared) -> Result<Option<i64>> {
    let stmt = client
        .prepare_cached(&shared.sql.queue_next_due)
        .await
        .map_err(|e| pg_error("reading the queue", e))?;
    let row = client.query_one(&stmt, &[]).await.map_err(|e| pg_error("reading the queue", e))?;
    Ok(row.get(0))
}

/// The gauges: the schema's size on disk and the queue's depths (`Sql::gauges` says what it
/// costs). The WAL is the cluster's, not the schema's: `None`.
pub(super) async fn gauges(client: &Object, shared: &Shared) -> Result<Gauges> {
    let err = |e| pg_error("reading the gauges", e);
    let now = shared.clock.now_ms();
    let stmt = client.prepare_cached(&shared.sql.gauges).await.map_err(err)?;
    let row = client.query_one(&stmt, &[&now]).await.map_err(err)?;
    let count = |i: usize| Some(u64::try_from(row.get::<_, i64>(i)).unwrap_or(0));
    let mut gauges = Gauges::default();
    gauges.database_bytes = count(0);
    gauges.queue_ready = count(1);
    gauges.queue_delayed = count(2);
    gauges.queue_in_flight = count(3);
    gauges.queue_oldest_ready_age = row
        .get::<_, Option<i64>>(4)
        .map(|since| Duration::from_millis(u64::try_from(now - since).unwrap_or(0)));
    Ok(gauges)
}

/// The queue for an operator (`QueueBackend::queue_inspect`): the counts and up to `limit`
/// messages, in one read-only `REPEATABLE READ` transaction, so that they agree. Both
/// statements read the whole queue table (no index serves the counts, and the order puts
/// running messages first): fine for a console's queue of thousands.
pub(super) async fn inspect(
    client: &mut Object,
    shared: &Shared,
    limit: usize,
) -> Result<QueueListing> {
    let err = |e| pg_error("listing the queue", e);
    let now = shared.clock.now_ms();
    let max = i64::try_from(limit).unwrap_or(i64::MAX);
    let counts = client.prepare_cached(&shared.sql.queue_counts).await.map_err(err)?;
    let list = client.prepare_cached(&shared.sql.queue_list).await.map_err(err)?;
    let tx = snapshot_txn(client, "listing the queue").await?;
    let count_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&now];
    let list_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&now, &max];
    // Sent together (the driver pipelines them), answered in order, one snapshot.
    let (counts, rows) =
        tokio::try_join!(tx.query_one(&counts, &count_params), tx.query(&list, &list_params))
            .map_err(err)?;
    tx.commit().await.map_err(err)?;
    let mut messages = Vec::with_capacity(rows.len());
    for row in rows {
        let id: String = row.get(0);
        let at: i64 = row.get(2);
        let backoff: String = row.get(3);
        let keys: String = row.get(4);
        let attempts: i32 = row.get(5);
        let running: bool = row.get(6);
        let state = if running {
            QueueMessageState::Running
        } else if at <= now {
            QueueMessageState::Ready
        } else {
            QueueMessageState::Delayed
        };
        messages.push(QueueMessageInfo::new(
            id.clone(),
            Value::V8(row.get(1)),
            state,
            at,
            u32::try_from(attempts).unwrap_or(0),
            parse("backoff schedule", &id, &backoff)?,
            parse("keys_if_undelivered", &id, &keys)?,
        ));
    }
    let count = |i: usize| u64::try_from(counts.get::<_, i64>(i)).unwrap_or(0);
    Ok(QueueListing::new(count(0), count(1), count(2), messages))
}

/// An operator's change to message `id` (`QueueBackend::queue_change`), in one transaction
/// with the message's row locked (a take skips it meanwhile; a finish waits for it).
/// `DueNow` notifies the schema's channel as an enqueue does, so that every process's
/// listeners look at the queue again (and, as for an enqueue-only commit, their watchers
/// re-read once: the notification names no key).
pub(super) async fn change(
    client: &mut Object,
    shared: &Shared,
    id: &str,
    change: QueueChange,
) -> Result<bool> {
    let err = |e| pg_error("changing a queue message", e);
    let now = shared.clock.now_ms();
    let sql = &shared.sql;
    let changed = match change {
        QueueChange::Remove => {
            // A listener finishing it later finds no leased row: its finish is ignored.
            let delete = client.prepare_cached(&sql.queue_delete).await.map_err(err)?;
            client.execute(&delete, &[&id]).await.map_err(err)? > 0
        }
        QueueChange::DueNow => {
            let lock = client.prepare_cached(&sql.queue_lock).await.map_err(err)?;
            let due_at = client.prepare_cached(&sql.queue_due_at).await.map_err(err)?;
            let tx = client.transaction().await.map_err(err)?;
            let Some(row) = tx.query_opt(&lock, &[&id]).await.map_err(err)? else {
                return Ok(false);
            };
            let (due_ms, lease_until): (i64, Option<i64>) = (row.get(0), row.get(1));
            let at = match lease_until {
                Some(until) if until > now => {
                    return Err(Error::QueueMessageInFlight { id: id.to_owned() })
                }
                // Its lease ran out (its listener is presumed dead): back in line, due since
                // the lease ended, as the next take would find it; that listener's finish is
                // then ignored, as on SQLite.
                Some(until) => until.min(now),
                // One already due keeps its earlier time, and so its place in line.
                None => due_ms.min(now),
            };
            tx.execute(&due_at, &[&id, &at]).await.map_err(err)?;
            let version: i64 = tx.query_one(&sql.head, &[]).await.map_err(err)?.get(0);
            let vs = Versionstamp::from_version(u64::try_from(version).unwrap_or(0));
            // The notice of an enqueue (`q`) naming no key: no key changed.
            let payload = super::notify::encode(&shared.instance, vs, true, &[]);
            tx.execute(sql.notify, &[&sql.channel, &payload]).await.map_err(err)?;
            tx.commit().await.map_err(err)?;
            true
        }
        // `QueueChange` may grow; a change this build does not know is refused, not guessed.
        other => {
            return Err(Error::Unsupported(format!(
                "this backend does not know the queue change {other:?}"
            )))
        }
    };
    if changed && change == QueueChange::DueNow {
        // This process's listeners: its own notifications are skipped by its listener task.
        shared.queue_wakeup.wake();
    }
    Ok(changed)
}
