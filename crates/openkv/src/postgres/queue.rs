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
//! (the same global version lock as every write).

use std::time::Duration;

use deadpool_postgres::Object;

use super::{pg_error, Shared};
use crate::backend::{ChangeEvent, QueuedMessage};
use crate::error::Result;
use crate::queue::{lease_millis, parse_stored_json as parse};
use crate::value::ENCODING_V8;
use crate::versionstamp::Versionstamp;

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
    for (id, delivered) in &outcomes {
        let Some(row) = tx.query_opt(&select, &[id]).await.map_err(err)? else {
            continue; // No longer running (finished already, or its lease ran out): ignored.
        };
        let backoff: String = row.get(0);
        let mut schedule: Vec<u32> = parse("backoff schedule", id, &backoff)?;
        if !delivered && !schedule.is_empty() {
            let wait = schedule.remove(0);
            let rest = serde_json::to_string(&schedule).expect("u32 lists serialize");
            tx.execute(&retry, &[id, &(now + i64::from(wait)), &rest]).await.map_err(err)?;
            continue;
        }
        tx.execute(&delete, &[id]).await.map_err(err)?;
        if !delivered {
            let keys: Vec<Vec<u8>> = parse("keys_if_undelivered", id, &row.get::<_, String>(1))?;
            tracing::warn!(
                "openkv: queue message {id} failed its last attempt; writing it to {} key(s)",
                keys.len()
            );
            let payload: Vec<u8> = row.get(2);
            dead_letters.extend(keys.into_iter().map(|k| (k, payload.clone())));
        }
    }
    let mut event = None;
    if !dead_letters.is_empty() {
        // A write like any other: under the version lock, with the next version.
        let version: i64 = tx.query_one(&sql.bump, &[]).await.map_err(err)?.get(0);
        let vs = Versionstamp::from_version(version as u64);
        let (keys, payloads): (Vec<Vec<u8>>, Vec<Vec<u8>>) = dead_letters.into_iter().unzip();
        let n = keys.len();
        let encodings = vec![ENCODING_V8 as i32; n];
        let stamps = vec![vs.as_bytes().to_vec(); n];
        let never: Vec<Option<i64>> = vec![None; n];
        tx.execute(&sql.upsert, &[&keys, &payloads, &encodings, &stamps, &never])
            .await
            .map_err(err)?;
        let payload = super::notify::encode(&shared.instance, vs, false, &keys);
        tx.execute(sql.notify, &[&sql.channel, &payload]).await.map_err(err)?;
        event = Some(ChangeEvent { versionstamp: vs, keys: keys.into() });
    }
    tx.commit().await.map_err(err)?;
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
