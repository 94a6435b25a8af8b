//! Queue delivery on Deno's own tables (`queue`, `queue_running`), so that messages move
//! between openkv and Deno CLI processes sharing a file.
//!
//! A message waits in `queue` (`ts` = when it is due). Taking it moves it to `queue_running`
//! with a lease (`deadline`), which its listener renews while the handler runs. Finishing it
//! deletes it (delivered) or puts it back into `queue` after the next step of its backoff
//! schedule (failed); with the schedule exhausted, its payload is written to its
//! `keys_if_undelivered`. A lease that runs out — the listening process died — puts the
//! message back into `queue`, due at once: that is the "at least once" in the contract.
//!
//! Attempts are counted in a table of openkv's own, `openkv_queue_attempts` (created on the
//! first delivery; Deno ignores it), so that the count survives restarts and is shared by
//! every openkv process on the file.
//!
//! Every function runs inside one `BEGIN IMMEDIATE` transaction of its own, on a connection
//! that is not the writer thread's; versions are read and bumped inside it, as the writer and
//! other processes do, so dead-letter writes get versionstamps in order with everything else.

use rusqlite::{params, Connection, OptionalExtension};

use super::writer::{set_version, with_write_txn, write_rows};
use crate::backend::{
    ChangeEvent, QueueChange, QueueListing, QueueMessageInfo, QueueMessageState, QueuedMessage,
};
use crate::engine::finish::{dead_letter_rows, finish_attempt, Finish};
use crate::engine::measure::delivery;
use crate::error::{Error, Result};
use crate::shared::in_read_txn;
use crate::value::Value;
use crate::versionstamp::Versionstamp;
use openkv_core::queue::parse_stored_json as parse;
use openkv_core::stats::DeliveryTally;

/// One row of `queue`/`queue_running`, minus its time column.
struct Row {
    id: String,
    data: Vec<u8>,
    backoff_schedule: String,
    keys_if_undelivered: String,
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, Row)> {
    Ok((
        r.get(0)?,
        Row {
            id: r.get(1)?,
            data: r.get(2)?,
            backoff_schedule: r.get(3)?,
            keys_if_undelivered: r.get(4)?,
        },
    ))
}

/// The message `id` in `queue_running` (with its lease deadline), if it is there.
fn running_by_id(conn: &Connection, id: &str) -> rusqlite::Result<Option<(i64, Row)>> {
    conn.prepare_cached(
        "select deadline, id, data, backoff_schedule, keys_if_undelivered \
         from queue_running where id = ?1",
    )?
    .query_row([id], row)
    .optional()
}

fn insert(conn: &Connection, table: &str, time: i64, row: &Row) -> rusqlite::Result<()> {
    // `table` is one of two constants below, never user input.
    let sql = format!("insert or replace into {table} values (?1, ?2, ?3, ?4, ?5)");
    conn.prepare_cached(&sql)?.execute(params![
        time,
        row.id,
        row.data,
        row.backoff_schedule,
        row.keys_if_undelivered
    ])?;
    Ok(())
}

/// Moves every message whose lease ran out back to `queue`, due now.
fn requeue_expired_leases(conn: &Connection, now: i64) -> Result<usize> {
    let expired: Vec<(i64, Row)> = conn
        .prepare_cached(
            "select deadline, id, data, backoff_schedule, keys_if_undelivered \
             from queue_running where deadline <= ?1",
        )?
        .query_map([now], row)?
        .collect::<rusqlite::Result<_>>()?;
    for (deadline, r) in &expired {
        conn.prepare_cached("delete from queue_running where deadline = ?1 and id = ?2")?
            .execute(params![deadline, r.id])?;
        insert(conn, "queue", now, r)?;
    }
    Ok(expired.len())
}

/// Takes up to `max` due messages, earliest first, leasing them until `now + lease_ms`.
pub(super) fn dequeue(
    conn: &Connection,
    now: i64,
    max: usize,
    lease_ms: i64,
) -> Result<Vec<QueuedMessage>> {
    with_write_txn(conn, |conn| {
        let requeued = requeue_expired_leases(conn, now)?;
        if requeued > 0 {
            tracing::info!("openkv: {requeued} queue message(s) lost their listener; redelivering");
        }
        let due: Vec<(i64, Row)> = conn
            .prepare_cached(
                "select ts, id, data, backoff_schedule, keys_if_undelivered from queue \
                 where ts <= ?1 order by ts, id limit ?2",
            )?
            .query_map(params![now, max as i64], row)?
            .collect::<rusqlite::Result<_>>()?;
        let mut out = Vec::with_capacity(due.len());
        if !due.is_empty() {
            conn.prepare_cached(
                "create table if not exists openkv_queue_attempts \
                 (id text primary key, attempts integer not null)",
            )?
            .execute([])?;
        }
        for (ts, r) in due {
            let attempt: i64 = conn
                .prepare_cached(
                    "insert into openkv_queue_attempts (id, attempts) values (?1, 1) \
                     on conflict(id) do update set attempts = attempts + 1 returning attempts",
                )?
                .query_row([&r.id], |row| row.get(0))?;
            conn.prepare_cached("delete from queue where ts = ?1 and id = ?2")?
                .execute(params![ts, r.id])?;
            insert(conn, "queue_running", now + lease_ms, &r)?;
            let keys_if_undelivered: Vec<Vec<u8>> =
                parse("keys_if_undelivered", &r.id, &r.keys_if_undelivered)?;
            let backoff_schedule: Vec<u32> = parse("backoff_schedule", &r.id, &r.backoff_schedule)?;
            out.push(QueuedMessage {
                id: r.id,
                payload: r.data,
                due_ms: ts,
                backoff_schedule,
                keys_if_undelivered,
                attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
            });
        }
        Ok(out)
    })
}

/// Extends the leases of the messages `ids` (those still running) to `now + lease_ms`.
pub(super) fn renew(conn: &Connection, ids: &[String], now: i64, lease_ms: i64) -> Result<()> {
    with_write_txn(conn, |conn| {
        for id in ids {
            conn.prepare_cached("update queue_running set deadline = ?1 where id = ?2")?
                .execute(params![now + lease_ms, id])?;
        }
        Ok(())
    })
}

/// Ends delivery attempts, all in one transaction (one fsync for a whole batch of handlers
/// that finished together), as the engine's finish rule decides. Returns the change event of
/// the dead-letter writes, if any happened (they share one new versionstamp), and the tally of
/// the attempts ended. A message no longer running (its lease ran out and it went back to the
/// queue) is left alone: it will be delivered again.
pub(super) fn finish(
    conn: &Connection,
    outcomes: &[(String, bool)],
    now: i64,
    log: bool,
) -> Result<(Option<ChangeEvent>, DeliveryTally)> {
    with_write_txn(conn, |conn| {
        // (key, payload) of every dead-letter write of the batch.
        let mut dead_letters: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        // Made afresh by each try of the transaction: only the one that commits is counted.
        let mut tally = DeliveryTally::default();
        for (id, delivered) in outcomes {
            let running = running_by_id(conn, id)?;
            let Some((deadline, mut r)) = running else {
                continue;
            };
            conn.prepare_cached("delete from queue_running where deadline = ?1 and id = ?2")?
                .execute(params![deadline, id])?;
            let finish =
                finish_attempt(id, &r.backoff_schedule, &r.keys_if_undelivered, *delivered, now)?;
            tally.add(delivery(*delivered, &finish));
            match finish {
                Finish::Retry { due_ms, backoff_schedule } => {
                    r.backoff_schedule = backoff_schedule;
                    insert(conn, "queue", due_ms, &r)?;
                }
                Finish::Remove { dead_letters: keys } => {
                    // (The table exists: an openkv process took the message, and created it
                    // then.)
                    conn.prepare_cached("delete from openkv_queue_attempts where id = ?1")?
                        .execute([id])?;
                    dead_letters.extend(keys.into_iter().map(|k| (k, r.data.clone())));
                }
            }
        }
        let version: i64 = conn
            .prepare_cached("select version from data_version where k = 0")?
            .query_row([], |r| r.get::<_, i64>(0))?;
        let vs = Versionstamp::from_version(version as u64 + 1);
        let Some((rows, event)) = dead_letter_rows(dead_letters, vs) else {
            return Ok((None, tally));
        };
        write_rows(conn, &rows)?;
        set_version(conn, vs)?;
        if log {
            crate::changelog::append(conn, version as u64, vs.version(), now, rows.iter())?;
        }
        Ok((Some(event), tally))
    })
}

/// The earliest time anything in the queue needs attention: a message falling due, or a
/// lease running out.
pub(super) fn next_due(conn: &Connection) -> Result<Option<i64>> {
    let next: Option<i64> = conn
        .prepare_cached(
            "select min(t) from (select min(ts) as t from queue \
             union all select min(deadline) from queue_running)",
        )?
        .query_row([], |r| r.get(0))?;
    Ok(next)
}

/// The queue's depths at `now`: ready (due in `queue`, or leased in `queue_running` with the
/// lease run out — the next take puts it back), delayed, in flight, and how long the oldest
/// ready message has waited. One statement; each count is a range of a table's primary key
/// (`ts`/`deadline` lead it), so it costs a walk of that many index entries — fine for
/// queues of thousands, a few milliseconds for a million.
pub(super) fn depths(conn: &Connection, now: i64) -> Result<openkv_core::stats::Gauges> {
    let (waiting_due, delayed, lapsed, leased, oldest_due, oldest_lapsed) = conn
        .prepare_cached(
            "select (select count(*) from queue where ts <= ?1), \
                    (select count(*) from queue where ts > ?1), \
                    (select count(*) from queue_running where deadline <= ?1), \
                    (select count(*) from queue_running where deadline > ?1), \
                    (select min(ts) from queue where ts <= ?1), \
                    (select min(deadline) from queue_running where deadline <= ?1)",
        )?
        .query_row([now], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, Option<i64>>(5)?,
            ))
        })?;
    let count = |n: i64| Some(u64::try_from(n).unwrap_or(0));
    let mut gauges = openkv_core::stats::Gauges::default();
    gauges.queue_ready = count(waiting_due + lapsed);
    gauges.queue_delayed = count(delayed);
    gauges.queue_in_flight = count(leased);
    gauges.queue_oldest_ready_age = oldest_due
        .into_iter()
        .chain(oldest_lapsed)
        .min()
        .map(|since| std::time::Duration::from_millis(u64::try_from(now - since).unwrap_or(0)));
    Ok(gauges)
}

/// The queue for an operator at `now` (`QueueBackend::queue_inspect`): the counts of every
/// message and up to `limit` of them, running first, then by due time, then by id — all in
/// one read transaction, so they agree. Each list is a walk of a table's primary key
/// (`ts`/`deadline` lead it) that stops after `limit` rows; the counts are `depths`'.
pub(super) fn inspect(conn: &Connection, now: i64, limit: usize) -> Result<QueueListing> {
    in_read_txn(conn, |conn| inspect_in_txn(conn, now, limit))
}

fn inspect_in_txn(conn: &Connection, now: i64, limit: usize) -> Result<QueueListing> {
    let depths = depths(conn, now)?;
    let max = i64::try_from(limit).unwrap_or(i64::MAX);
    let select = |sql: &str, now: Option<i64>| -> Result<Vec<(i64, Row)>> {
        let mut stmt = conn.prepare_cached(sql)?;
        let rows: rusqlite::Result<Vec<(i64, Row)>> = match now {
            Some(now) => stmt.query_map(params![now, max], row)?.collect(),
            None => stmt.query_map(params![max], row)?.collect(),
        };
        Ok(rows?)
    };
    let leased = select(
        "select deadline, id, data, backoff_schedule, keys_if_undelivered from queue_running \
         where deadline > ?1 order by deadline, id limit ?2",
        Some(now),
    )?;
    let waiting = select(
        "select ts, id, data, backoff_schedule, keys_if_undelivered from queue \
         order by ts, id limit ?1",
        None,
    )?;
    // A lease that ran out: its listener is presumed dead, the next take delivers it again.
    let lapsed = select(
        "select deadline, id, data, backoff_schedule, keys_if_undelivered from queue_running \
         where deadline <= ?1 order by deadline, id limit ?2",
        Some(now),
    )?;
    // The attempts table is openkv's, made at the first take: a file only Deno CLI (or
    // nobody) took messages from has none, and no attempts to count.
    let counted: bool = attempts_counted(conn)?;
    let mut messages = Vec::with_capacity(limit.min(leased.len() + waiting.len() + lapsed.len()));
    messages.extend(leased.into_iter().map(|(t, r)| (QueueMessageState::Running, t, r)));
    let mut rest: Vec<(QueueMessageState, i64, Row)> = waiting
        .into_iter()
        .map(|(ts, r)| {
            let state =
                if ts <= now { QueueMessageState::Ready } else { QueueMessageState::Delayed };
            (state, ts, r)
        })
        .chain(lapsed.into_iter().map(|(t, r)| (QueueMessageState::Ready, t, r)))
        .collect();
    rest.sort_by(|a, b| (a.1, &a.2.id).cmp(&(b.1, &b.2.id)));
    messages.extend(rest);
    messages.truncate(limit);
    let infos = messages
        .into_iter()
        .map(|(state, due_at_ms, r)| {
            let attempts: i64 = if counted {
                conn.prepare_cached("select attempts from openkv_queue_attempts where id = ?1")?
                    .query_row([&r.id], |row| row.get(0))
                    .optional()?
                    .unwrap_or(0)
            } else {
                0
            };
            Ok(QueueMessageInfo::new(
                r.id.clone(),
                Value::V8(r.data),
                state,
                due_at_ms,
                u32::try_from(attempts).unwrap_or(u32::MAX),
                parse("backoff_schedule", &r.id, &r.backoff_schedule)?,
                parse("keys_if_undelivered", &r.id, &r.keys_if_undelivered)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let count = |n: Option<u64>| n.unwrap_or(0);
    Ok(QueueListing::new(
        count(depths.queue_ready),
        count(depths.queue_delayed),
        count(depths.queue_in_flight),
        infos,
    ))
}

/// An operator's change to message `id` at `now` (`QueueBackend::queue_change`), in one
/// write transaction; `Ok(false)`: no such message. Deno's tables keep their shape: a message
/// only moves between `queue` and `queue_running` or changes its time, as a take or a finish
/// would.
pub(super) fn change(conn: &Connection, id: &str, change: QueueChange, now: i64) -> Result<bool> {
    with_write_txn(conn, |conn| {
        let running = running_by_id(conn, id)?;
        let waiting = conn
            .prepare_cached(
                "select ts, id, data, backoff_schedule, keys_if_undelivered \
                 from queue where id = ?1",
            )?
            .query_row([id], row)
            .optional()?;
        match change {
            QueueChange::Remove => {
                let removed =
                    conn.prepare_cached("delete from queue where id = ?1")?.execute([id])?
                        + conn
                            .prepare_cached("delete from queue_running where id = ?1")?
                            .execute([id])?;
                if removed > 0 {
                    forget_attempts(conn, id)?;
                }
                Ok(removed > 0)
            }
            QueueChange::DueNow => {
                if let Some((deadline, r)) = running {
                    if deadline > now {
                        return Err(Error::QueueMessageInFlight { id: id.to_owned() });
                    }
                    // Its lease ran out: back in line as the next take would put it, keeping
                    // the time it has been due since.
                    conn.prepare_cached(
                        "delete from queue_running where deadline = ?1 and id = ?2",
                    )?
                    .execute(params![deadline, id])?;
                    insert(conn, "queue", deadline.min(now), &r)?;
                    return Ok(true);
                }
                let Some((ts, _)) = waiting else { return Ok(false) };
                // One already due keeps its earlier time, and so its place in line.
                if ts > now {
                    conn.prepare_cached("update queue set ts = ?1 where ts = ?2 and id = ?3")?
                        .execute(params![now, ts, id])?;
                }
                Ok(true)
            }
            // `QueueChange` may grow; a change this build does not know is refused, not guessed.
            other => Err(Error::Unsupported(format!(
                "this backend does not know the queue change {other:?}"
            ))),
        }
    })
}

/// Drops the attempt count of a message that is gone (the table exists only once an openkv
/// process took a message).
fn forget_attempts(conn: &Connection, id: &str) -> Result<()> {
    let counted: bool = attempts_counted(conn)?;
    if counted {
        conn.prepare_cached("delete from openkv_queue_attempts where id = ?1")?.execute([id])?;
    }
    Ok(())
}

/// True once the attempts table exists (an openkv process took a message from this file).
fn attempts_counted(conn: &Connection) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "select exists (select 1 from sqlite_master \
             where type = 'table' and name = 'openkv_queue_attempts')",
        )?
        .query_row([], |r| r.get(0))?)
}
