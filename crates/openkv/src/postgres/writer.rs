//! The writer task: batches of atomic writes as one PostgreSQL transaction, and the expiry
//! sweep.
//!
//! A batch is: bump the `version` row (this waits for every other process's committing batch
//! and then returns the next counter value `v`); read the live rows of every key the batch
//! checks or combines (sum/min/max); apply the writes one after another in memory, write `i`
//! of the batch getting versionstamp `v ‖ i` (2 bytes, big-endian), a write whose check fails
//! or whose mutation is rejected leaving no trace; then store the final state of every touched
//! key with one upsert and one delete, insert the enqueued messages, `NOTIFY` the change, and
//! commit. A batch costs a handful of round trips and one commit whatever its size.

use std::collections::HashMap;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Statement};

use super::{connect, notify, pg_error, PostgresConfig, Shared};
use crate::backend::{versionstamped_key, AtomicWrite, ChangeEvent, CommitOutcome, MutationKind};
use crate::error::{Error, Result};
use crate::sum;
use crate::value::Value;
use crate::versionstamp::Versionstamp;

/// The most writes in one batch (the in-batch index is 2 bytes; this keeps transactions short).
const MAX_BATCH: usize = 512;

pub(crate) enum Request {
    Write { write: AtomicWrite, reply: oneshot::Sender<Result<CommitOutcome>> },
    Sweep,
    Close { reply: oneshot::Sender<()> },
}

/// A live row.
#[derive(Clone)]
struct Row {
    value: Value,
    vs: Versionstamp,
    expire_ms: Option<i64>,
}

/// The statements of the writer's connection.
struct Statements {
    bump: Statement,
    read: Statement,
    upsert: Statement,
    delete: Statement,
    enqueue: Statement,
    notify: Statement,
    any_expired: Statement,
    sweep: Statement,
}

struct Connection {
    client: Client,
    task: JoinHandle<()>,
    st: Statements,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn open_connection(shared: &Shared) -> Result<Connection> {
    let (client, task) = connect(&shared.driver_config).await?;
    async fn prepare(client: &Client, sql: &str) -> Result<Statement> {
        client.prepare(sql).await.map_err(|e| pg_error("preparing a write", e))
    }
    let sql = &shared.sql;
    let st = Statements {
        bump: prepare(&client, &sql.bump).await?,
        read: prepare(&client, &sql.read_keys).await?,
        upsert: prepare(&client, &sql.upsert).await?,
        delete: prepare(&client, &sql.delete).await?,
        enqueue: prepare(&client, &sql.enqueue).await?,
        notify: prepare(&client, sql.notify).await?,
        any_expired: prepare(&client, &sql.any_expired).await?,
        sweep: prepare(&client, &sql.sweep).await?,
    };
    Ok(Connection { client, task, st })
}

/// Starts the writer (on a connection opened now, so that a bad URL fails the open) and the
/// expiry sweep's timer.
pub(super) async fn start(
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Request>,
    tx: mpsc::Sender<Request>,
    config: PostgresConfig,
) -> Result<(JoinHandle<()>, JoinHandle<()>)> {
    let conn = open_connection(&shared).await?;
    let rng = match config.rng_seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_os_rng(),
    };
    let writer = Writer { shared, conn: Some(conn), rng };
    // A panic in the writer must not pass silently: the supervisor logs it (and the writes
    // waiting on it fail with an error instead of hanging).
    let inner = tokio::spawn(writer.run(rx));
    let writer = tokio::spawn(async move {
        if let Err(e) = inner.await {
            if e.is_panic() {
                tracing::error!("openkv: the PostgreSQL writer panicked; writes now fail: {e}");
            }
        }
    });
    let sweeper = tokio::spawn(async move {
        // The first sweep one interval after opening, as on SQLite (not at once).
        let period = config.sweep_interval.max(std::time::Duration::from_millis(1));
        let mut every = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match tx.try_send(Request::Sweep) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    });
    Ok((writer, sweeper))
}

/// A key and its new row (`None`: deleted).
type Change = (Vec<u8>, Option<Row>);

/// A new queue message's columns: id, due time, payload, backoff JSON, dead-letter keys JSON.
type NewMessage = (String, i64, Vec<u8>, String, String);

/// Why one write of a batch did not commit, without failing the batch.
enum Rejected {
    CheckFailed(Vec<u32>),
    Invalid(Error),
}

struct Writer {
    shared: Arc<Shared>,
    conn: Option<Connection>,
    rng: StdRng,
}

/// The final state of the batch's keys, and what else it writes.
#[derive(Default)]
struct BatchEffects {
    /// Key → new row (`None`: deleted). Only keys some committed write touched.
    dirty: HashMap<Vec<u8>, Option<Row>>,
    enqueues: Vec<NewMessage>,
    /// Keys changed by each committed write, with its versionstamp.
    events: Vec<ChangeEvent>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        while let Some(first) = rx.recv().await {
            let mut batch = Vec::new();
            let mut sweep = false;
            let mut close = None;
            let mut next = Some(first);
            while let Some(request) = next.take() {
                match request {
                    Request::Write { write, reply } => batch.push((write, reply)),
                    Request::Sweep => sweep = true,
                    Request::Close { reply } => close = Some(reply),
                }
                if batch.len() < MAX_BATCH && close.is_none() {
                    next = rx.try_recv().ok();
                }
            }
            if !batch.is_empty() {
                let (writes, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                let outcomes = self.commit(&writes).await;
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            if sweep {
                if let Err(e) = self.sweep().await {
                    tracing::warn!("openkv: the PostgreSQL expiry sweep failed: {e}");
                }
            }
            if let Some(reply) = close {
                let _ = reply.send(());
                return;
            }
        }
    }

    /// Commits a batch; one outcome per write.
    async fn commit(&mut self, writes: &[AtomicWrite]) -> Vec<Result<CommitOutcome>> {
        let Writer { shared, conn, rng } = self;
        let now = shared.clock.now_ms();
        let result = match connection(conn, shared).await {
            Ok(conn) => commit_batch(conn, shared, writes, now, rng).await,
            Err(e) => Err(e),
        };
        match result {
            Ok((outcomes, effects)) => {
                let enqueued = !effects.enqueues.is_empty();
                for event in effects.events {
                    // No subscribers is not an error.
                    let _ = shared.changes.send(event);
                }
                if enqueued {
                    shared.queue_wakeup.wake();
                }
                outcomes
            }
            Err(e) => {
                if matches!(e, Error::Unavailable(_) | Error::OutcomeUnknown(_)) {
                    // Reconnect for the next batch.
                    self.conn = None;
                }
                writes.iter().map(|_| Err(e.clone())).collect()
            }
        }
    }

    /// Deletes expired keys under a fresh version, if there are any.
    async fn sweep(&mut self) -> Result<()> {
        let Writer { shared, conn, .. } = self;
        let now = shared.clock.now_ms();
        let conn = connection(conn, shared).await?;
        let err = |e| pg_error("sweeping expired keys", e);
        let any: bool =
            conn.client.query_one(&conn.st.any_expired, &[&now]).await.map_err(err)?.get(0);
        if !any {
            return Ok(());
        }
        let tx = conn.client.transaction().await.map_err(err)?;
        let version: i64 = tx.query_one(&conn.st.bump, &[]).await.map_err(err)?.get(0);
        let keys: Vec<Vec<u8>> = tx
            .query(&conn.st.sweep, &[&now])
            .await
            .map_err(err)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if keys.is_empty() {
            // Someone else swept first; the rollback undoes the bump.
            return Ok(());
        }
        let vs = versionstamp(version, 0)?;
        let payload = notify::encode(&shared.instance, vs, false, &keys);
        tx.query(&conn.st.notify, &[&shared.sql.channel, &payload]).await.map_err(err)?;
        tx.commit().await.map_err(err)?;
        tracing::debug!("openkv: swept {} expired keys", keys.len());
        let _ = shared.changes.send(ChangeEvent { versionstamp: vs, keys: keys.into() });
        Ok(())
    }
}

/// The writer's connection, reopened if the last one broke.
async fn connection<'a>(
    conn: &'a mut Option<Connection>,
    shared: &Shared,
) -> Result<&'a mut Connection> {
    if conn.as_ref().is_none_or(|c| c.client.is_closed()) {
        *conn = None;
        *conn = Some(open_connection(shared).await?);
    }
    Ok(conn.as_mut().expect("just opened"))
}

/// Versionstamp `v ‖ index`.
fn versionstamp(version: i64, index: usize) -> Result<Versionstamp> {
    let version = u64::try_from(version)
        .map_err(|_| Error::corrupt(format!("the version counter is negative ({version})")))?;
    let index = u16::try_from(index)
        .map_err(|_| Error::Internal(format!("batch index {index} does not fit 2 bytes")))?;
    let mut b = [0u8; 10];
    b[..8].copy_from_slice(&version.to_be_bytes());
    b[8..].copy_from_slice(&index.to_be_bytes());
    Ok(Versionstamp(b))
}

/// The keys whose current rows the batch needs: checked keys and the keys of numeric
/// mutations.
fn keys_to_read(writes: &[AtomicWrite]) -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = writes
        .iter()
        .flat_map(|w| {
            let checks = w.checks.iter().map(|c| c.key.clone());
            let numeric = w
                .mutations
                .iter()
                .filter(|m| m.kind.combines_stored_value())
                .map(|m| m.key.clone());
            checks.chain(numeric).collect::<Vec<_>>()
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

async fn commit_batch(
    conn: &mut Connection,
    shared: &Shared,
    writes: &[AtomicWrite],
    now: i64,
    rng: &mut StdRng,
) -> Result<(Vec<Result<CommitOutcome>>, BatchEffects)> {
    let st = &conn.st;
    let err = |e| pg_error("committing", e);
    let read_keys = keys_to_read(writes);
    let tx = conn.client.transaction().await.map_err(err)?;
    // Sent together; the bump runs first and waits for the version row, so the read sees
    // every batch committed before ours.
    let read_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&read_keys];
    let (bumped, rows) =
        tokio::try_join!(tx.query_one(&st.bump, &[]), tx.query(&st.read, &read_params))
            .map_err(err)?;
    let version: i64 = bumped.get(0);
    // The state the batch starts from: every key it reads, `None` if absent or expired.
    let mut view: HashMap<Vec<u8>, Option<Row>> =
        read_keys.into_iter().map(|k| (k, None)).collect();
    for row in &rows {
        let entry = super::entry_from_row(row)?;
        let live = entry.expire_at_ms.is_none_or(|at| at > now);
        if live {
            view.insert(
                entry.key,
                Some(Row {
                    value: entry.value,
                    vs: entry.versionstamp,
                    expire_ms: entry.expire_at_ms,
                }),
            );
        }
    }

    let mut effects = BatchEffects::default();
    let mut outcomes = Vec::with_capacity(writes.len());
    let mut index = 0usize;
    for write in writes {
        let vs = versionstamp(version, index)?;
        match apply_write(&view, write, vs, rng) {
            Ok((changes, enqueues)) => {
                index += 1;
                let keys: Vec<Vec<u8>> = changes.iter().map(|(k, _)| k.clone()).collect();
                for (key, row) in changes {
                    view.insert(key.clone(), row.clone());
                    effects.dirty.insert(key, row);
                }
                effects.enqueues.extend(enqueues);
                effects.events.push(ChangeEvent { versionstamp: vs, keys: keys.into() });
                outcomes.push(Ok(CommitOutcome::Committed { versionstamp: vs }));
            }
            Err(Rejected::CheckFailed(failed_checks)) => {
                outcomes.push(Ok(CommitOutcome::CheckFailed { failed_checks }))
            }
            Err(Rejected::Invalid(e)) => outcomes.push(Err(e)),
        }
    }
    if effects.events.is_empty() {
        // Nothing committed: the rollback (on drop) undoes the bump.
        return Ok((outcomes, effects));
    }

    let mut up_k = Vec::new();
    let mut up_v = Vec::new();
    let mut up_e: Vec<i32> = Vec::new();
    let mut up_vs = Vec::new();
    let mut up_x: Vec<Option<i64>> = Vec::new();
    let mut del = Vec::new();
    for (key, row) in &effects.dirty {
        match row {
            Some(r) => {
                up_k.push(key.clone());
                up_v.push(r.value.to_bytes());
                up_e.push(r.value.encoding() as i32);
                up_vs.push(r.vs.as_bytes().to_vec());
                up_x.push(r.expire_ms);
            }
            None => del.push(key.clone()),
        }
    }
    let q_id: Vec<&str> = effects.enqueues.iter().map(|e| e.0.as_str()).collect();
    let q_due: Vec<i64> = effects.enqueues.iter().map(|e| e.1).collect();
    let q_payload: Vec<&[u8]> = effects.enqueues.iter().map(|e| e.2.as_slice()).collect();
    let q_backoff: Vec<&str> = effects.enqueues.iter().map(|e| e.3.as_str()).collect();
    let q_keys: Vec<&str> = effects.enqueues.iter().map(|e| e.4.as_str()).collect();
    let all_keys: Vec<Vec<u8>> =
        effects.events.iter().flat_map(|e| e.keys.iter().cloned()).collect();
    let last = effects.events.last().expect("not empty").versionstamp;
    let payload = notify::encode(&shared.instance, last, !q_id.is_empty(), &all_keys);
    let upsert = async {
        if up_k.is_empty() {
            return Ok(0);
        }
        tx.execute(&st.upsert, &[&up_k, &up_v, &up_e, &up_vs, &up_x]).await
    };
    let delete = async {
        if del.is_empty() {
            return Ok(0);
        }
        tx.execute(&st.delete, &[&del]).await
    };
    let enqueue = async {
        if q_id.is_empty() {
            return Ok(0);
        }
        tx.execute(&st.enqueue, &[&q_id, &q_due, &q_payload, &q_backoff, &q_keys]).await
    };
    let notify_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
        [&shared.sql.channel, &payload];
    let notify = tx.execute(&st.notify, &notify_params);
    tokio::try_join!(upsert, delete, enqueue, notify).map_err(err)?;
    // Past this point a lost connection leaves the outcome unknown: the commit may have
    // happened.
    tx.commit().await.map_err(|e| match pg_error("committing", e) {
        Error::Unavailable(m) => Error::OutcomeUnknown(m),
        other => other,
    })?;
    Ok((outcomes, effects))
}

/// The changes of one write at `vs`, in mutation order (a key changed twice is listed twice;
/// the later change wins), and its enqueues; or why it does not commit. Reads `view` (the
/// batch's state so far), never writes it.
fn apply_write(
    view: &HashMap<Vec<u8>, Option<Row>>,
    write: &AtomicWrite,
    vs: Versionstamp,
    rng: &mut StdRng,
) -> std::result::Result<(Vec<Change>, Vec<NewMessage>), Rejected> {
    let failed: Vec<u32> = write
        .checks
        .iter()
        .enumerate()
        .filter(|(_, c)| view.get(&c.key).cloned().flatten().map(|r| r.vs) != c.versionstamp)
        .map(|(i, _)| i as u32)
        .collect();
    if !failed.is_empty() {
        return Err(Rejected::CheckFailed(failed));
    }
    // This write's own changes, in order; later mutations of a key see earlier ones.
    let mut changes: Vec<Change> = Vec::new();
    let lookup = |changes: &[Change], key: &[u8]| -> Option<Row> {
        match changes.iter().rev().find(|(k, _)| k.as_slice() == key) {
            Some((_, row)) => row.clone(),
            None => view.get(key).cloned().flatten(),
        }
    };
    for m in &write.mutations {
        match &m.kind {
            MutationKind::Set(value) => changes.push((
                m.key.clone(),
                Some(Row { value: value.clone(), vs, expire_ms: m.expire_at_ms }),
            )),
            MutationKind::Delete => changes.push((m.key.clone(), None)),
            MutationKind::SetSuffixVersionstampedKey(value) => {
                let key = versionstamped_key(&m.key, vs);
                changes
                    .push((key, Some(Row { value: value.clone(), vs, expire_ms: m.expire_at_ms })));
            }
            kind => {
                let current =
                    lookup(&changes, &m.key).map(|r| (r.value.to_bytes(), r.value.encoding(), 0));
                let new = sum::numeric_mutation(kind, current).map_err(Rejected::Invalid)?;
                changes.push((m.key.clone(), Some(Row { value: new, vs, expire_ms: None })));
            }
        }
    }

    let mut enqueues = Vec::with_capacity(write.enqueues.len());
    for e in &write.enqueues {
        let (id, schedule, keys) = e.stored_columns(rng);
        enqueues.push((id, e.deadline_ms, e.payload.clone(), schedule, keys));
    }
    Ok((changes, enqueues))
}
