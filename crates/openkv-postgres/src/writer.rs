//! The writer task: batches of atomic writes as one PostgreSQL transaction, and the expiry
//! sweep.
//!
//! A batch is: bump the `version` row (this waits for every other process's committing batch
//! and then returns the next counter value `v`); read the rows of every key the batch checks
//! or combines (sum/min/max); let the engine's planner decide the batch, the `i`-th committed
//! write getting versionstamp `v ‖ i` (2 bytes, big-endian); then store the final state of
//! every touched key with one upsert and one delete, insert the enqueued messages, `NOTIFY`
//! the change, and commit. A batch costs a handful of round trips and one commit whatever its
//! size.
//!
//! With the change log on, every transaction that bumps the counter (a batch that committed
//! anything, a sweep that deleted anything) also inserts its record (`changelog.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Statement};

use crate::backend::{AtomicWrite, ChangeEvent, CommitOutcome};
use crate::changelog::NewRecord;
use crate::engine::batch::Batch;
use crate::engine::measure;
use crate::engine::plan::{keys_to_read, plan_batch, BatchPlan, Row};
use crate::error::{Error, Result};
use crate::notify;
use crate::shared::stored_row;
use crate::shared::{connect, pg_error, PostgresConfig, Shared};
use crate::versionstamp::Versionstamp;

pub(crate) enum Request {
    Write { write: AtomicWrite, reply: oneshot::Sender<Result<CommitOutcome>> },
    Sweep,
    Close { reply: oneshot::Sender<()> },
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
    log_append: Statement,
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
        log_append: prepare(&client, &sql.log_append).await?,
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

struct Writer {
    shared: Arc<Shared>,
    conn: Option<Connection>,
    rng: StdRng,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        while let Some(first) = rx.recv().await {
            let mut batch = Batch::default();
            let mut sweep = false;
            let mut close = None;
            let mut next = Some(first);
            while let Some(request) = next.take() {
                match request {
                    Request::Write { write, reply } => batch.push(write, reply),
                    Request::Sweep => sweep = true,
                    Request::Close { reply } => close = Some(reply),
                }
                if !batch.is_full() && close.is_none() {
                    next = rx.try_recv().ok();
                }
            }
            if !batch.is_empty() {
                let started = std::time::Instant::now();
                let result = self.commit(batch.writes()).await;
                let took = started.elapsed();
                measure::record_batch(&self.shared.stats, batch.writes(), &result, took);
                batch.settle(result, &self.shared.changes, &self.shared.queue_wakeup);
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

    /// Commits a batch as the planner decides; an `Err` means nothing of it committed (or,
    /// for `OutcomeUnknown`, that nobody knows).
    async fn commit(&mut self, writes: &[AtomicWrite]) -> Result<BatchPlan> {
        let Writer { shared, conn, rng } = self;
        let now = shared.clock.now_ms();
        let result = match connection(conn, shared).await {
            Ok(conn) => commit_batch(conn, shared, writes, now, rng).await,
            Err(e) => Err(e),
        };
        if let Err(Error::Unavailable(_) | Error::OutcomeUnknown(_)) = &result {
            // Reconnect for the next batch.
            self.conn = None;
        }
        result
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
        let (keys, expired_at): (Vec<Vec<u8>>, Vec<i64>) = tx
            .query(&conn.st.sweep, &[&now])
            .await
            .map_err(err)?
            .iter()
            .map(|r| (r.get::<_, Vec<u8>>(0), r.get::<_, i64>(1)))
            .unzip();
        if keys.is_empty() {
            // Someone else swept first; the rollback undoes the bump.
            return Ok(());
        }
        let vs = versionstamp(version, 0)?;
        if shared.change_log.is_some() {
            // The log lists changes in key order; the delete returned them in any.
            let mut deleted: Vec<(Vec<u8>, Option<Row>)> =
                keys.iter().map(|k| (k.clone(), None)).collect();
            deleted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            let record = NewRecord::new(version, now, deleted.iter().map(|(k, r)| (k, r)));
            tx.execute(&conn.st.log_append, &record.params()).await.map_err(err)?;
        }
        let payload = notify::encode(&shared.instance, vs, false, &keys);
        tx.query(&conn.st.notify, &[&shared.sql.channel, &payload]).await.map_err(err)?;
        tx.commit().await.map_err(err)?;
        measure::record_swept(&shared.stats, now, expired_at);
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
    // A broken connection is dropped before its successor opens.
    conn.take_if(|c| c.client.is_closed());
    match conn {
        Some(conn) => Ok(conn),
        None => Ok(conn.insert(open_connection(shared).await?)),
    }
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

async fn commit_batch(
    conn: &mut Connection,
    shared: &Shared,
    writes: &[AtomicWrite],
    now: i64,
    rng: &mut StdRng,
) -> Result<BatchPlan> {
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
    let mut stored = HashMap::with_capacity(rows.len());
    for row in &rows {
        let (key, row) = stored_row(row)?;
        stored.insert(key, row);
    }
    let plan = plan_batch(writes, stored, now, |i| versionstamp(version, i), rng)?;
    let Some(last) = plan.last_versionstamp() else {
        // Nothing committed: the rollback (on drop) undoes the bump.
        return Ok(plan);
    };

    let mut up_k = Vec::new();
    let mut up_v = Vec::new();
    let mut up_e: Vec<i32> = Vec::new();
    let mut up_vs = Vec::new();
    let mut up_x: Vec<Option<i64>> = Vec::new();
    let mut del = Vec::new();
    for (key, row) in &plan.rows {
        match row {
            Some(r) => {
                up_k.push(key.as_slice());
                up_v.push(r.bytes.as_slice());
                up_e.push(encoding_column(r.encoding)?);
                up_vs.push(r.versionstamp.as_bytes().as_slice());
                up_x.push(r.expire_at_ms);
            }
            None => del.push(key.as_slice()),
        }
    }
    let q = &plan.enqueues;
    let q_id: Vec<&str> = q.iter().map(|m| m.id.as_str()).collect();
    let q_due: Vec<i64> = q.iter().map(|m| m.due_ms).collect();
    let q_payload: Vec<&[u8]> = q.iter().map(|m| m.payload.as_slice()).collect();
    let q_backoff: Vec<&str> = q.iter().map(|m| m.backoff_schedule.as_str()).collect();
    let q_keys: Vec<&str> = q.iter().map(|m| m.keys_if_undelivered.as_str()).collect();
    let all_keys: Vec<Vec<u8>> = plan.events.iter().flat_map(|e| e.keys.iter().cloned()).collect();
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
    // In the batch's transaction: the record exists exactly when the batch does.
    let record = shared.change_log.map(|_| NewRecord::new(version, now, plan.rows.iter()));
    let log = async {
        match &record {
            Some(record) => tx.execute(&st.log_append, &record.params()).await,
            None => Ok(0),
        }
    };
    tokio::try_join!(upsert, delete, enqueue, notify, log).map_err(err)?;
    // Past this point a lost connection leaves the outcome unknown: the commit may have
    // happened.
    tx.commit().await.map_err(|e| match pg_error("committing", e) {
        Error::Unavailable(m) => Error::OutcomeUnknown(m),
        other => other,
    })?;
    Ok(plan)
}

/// A value encoding as the `v_encoding` column (`integer`) stores it.
pub(super) fn encoding_column(encoding: i64) -> Result<i32> {
    i32::try_from(encoding)
        .map_err(|_| Error::Internal(format!("value encoding {encoding} does not fit a column")))
}
