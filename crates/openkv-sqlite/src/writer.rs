//! The writer thread: group commit of planned batches, versionstamps, the expiry sweep.
//!
//! A batch is one `BEGIN IMMEDIATE` transaction: read the version counter and the rows the
//! batch needs, let the engine's planner decide what every write does, store the plan's rows
//! and messages, set the counter to the last committed write's version, commit (one fsync).

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;

use crate::backend::{AtomicWrite, ChangeEvent, CommitOutcome};
use crate::changelog;
use crate::engine::batch::Batch;
use crate::engine::measure;
use crate::engine::plan::{keys_to_read, plan_batch, BatchPlan, Row, Rows};
use crate::error::{Error, Result};
use crate::readers::ReaderPool;
use crate::shared::{lock, put_row, retry_busy, Shared, SqliteConfig, GET_VERSION, SET_VERSION};
use crate::versionstamp::Versionstamp;

const POINT_GET: &str = "select v, v_encoding, version, expiration_ms from kv where k = ?1";
const ANY_EXPIRED: &str =
    "select 1 from kv where expiration_ms >= 0 and expiration_ms <= ?1 limit 1";
const DELETE_EXPIRED: &str =
    "delete from kv where expiration_ms >= 0 and expiration_ms <= ?1 returning k, expiration_ms";
const QUEUE_ADD: &str = "insert into queue (ts, id, data, backoff_schedule, keys_if_undelivered) \
     values (?1, ?2, ?3, ?4, ?5)";

/// How long the writer spins for the next write after a commit before it sleeps.
const SPIN_AFTER_COMMIT: Duration = Duration::from_micros(50);
/// The longest the writer waits for a group to regrow to its previous size.
const MAX_LINGER: Duration = Duration::from_micros(500);
/// How long after the last commit the writer checkpoints a WAL that keeps readers from
/// holding snapshots (`Writer::checkpoint_if_due`).
const IDLE_CHECKPOINT_AFTER: Duration = Duration::from_millis(50);
/// How often the change log is pruned (a pass sums the log's sizes: not at every sweep).
const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// What callers send the writer thread.
pub(crate) enum Request {
    Write { write: AtomicWrite, reply: oneshot::Sender<Result<CommitOutcome>> },
    Close { reply: oneshot::Sender<()> },
}

/// Waits for the next request: polling (and yielding the CPU) for up to `spin`, then sleeping
/// for up to `wait`.
fn recv(
    rx: &Receiver<Request>,
    spin: Duration,
    wait: Duration,
) -> Result<Request, RecvTimeoutError> {
    let until = Instant::now() + spin;
    loop {
        match rx.try_recv() {
            Ok(r) => return Ok(r),
            Err(TryRecvError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
            Err(TryRecvError::Empty) if Instant::now() < until => std::thread::yield_now(),
            Err(TryRecvError::Empty) => return rx.recv_timeout(wait),
        }
    }
}

/// Runs `f` inside a `BEGIN IMMEDIATE` transaction, retrying while another process holds the
/// write lock, committing if `f` succeeds and rolling back otherwise.
pub(crate) fn with_write_txn<T>(
    conn: &Connection,
    mut f: impl FnMut(&Connection) -> Result<T>,
) -> Result<T> {
    retry_busy(|| {
        conn.prepare_cached("begin immediate")?.execute([])?;
        match f(conn) {
            Ok(v) => match conn.prepare_cached("commit").and_then(|mut s| s.execute([])) {
                Ok(_) => Ok(v),
                Err(e) => {
                    rollback(conn);
                    Err(e.into())
                }
            },
            Err(e) => {
                rollback(conn);
                Err(e)
            }
        }
    })
}

fn rollback(conn: &Connection) {
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("rollback");
    }
}

pub(crate) struct Writer {
    conn: Arc<Mutex<Connection>>,
    shared: Arc<Shared>,
    config: SqliteConfig,
    rng: StdRng,
    /// When the change log is next pruned.
    next_prune: Instant,
    /// The file's readers: after each commit, and when an idle one's snapshot reaches its
    /// age limit, the writer ends the snapshots idle readers hold (readers.rs says why).
    /// `None` in memory.
    readers: Option<Arc<ReaderPool>>,
}

impl Writer {
    pub(crate) fn new(
        conn: Arc<Mutex<Connection>>,
        shared: Arc<Shared>,
        config: SqliteConfig,
        readers: Option<Arc<ReaderPool>>,
    ) -> Self {
        let rng = match config.rng_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Writer { conn, shared, config, rng, next_prune: Instant::now(), readers }
    }

    pub(crate) fn run(mut self, rx: Receiver<Request>) {
        let mut next_sweep = Instant::now() + self.config.sweep_interval;
        // Size and duration of the last group commit; they steer spinning and lingering.
        let mut last_group = 0usize;
        let mut last_commit = Duration::ZERO;
        // When idle readers' snapshots are next due to be ended; `None`: none is held.
        let mut next_release: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let wake = next_release.map_or(next_sweep, |r| r.min(next_sweep));
            let wait = wake.saturating_duration_since(now);
            // Right after a commit, the caller that was just answered usually sends its next
            // write within microseconds; catching it by spinning saves this thread a sleep and
            // a wake-up, which on a VM is a large part of a sequential commit's latency.
            let spin = if last_group > 0 { SPIN_AFTER_COMMIT } else { Duration::ZERO };
            let first = match recv(&rx, spin, wait) {
                Ok(r) => r,
                Err(RecvTimeoutError::Timeout) => {
                    last_group = 0;
                    self.checkpoint_if_due();
                    next_release = self.release_readers();
                    if Instant::now() >= next_sweep {
                        self.guarded("expiry sweep", |w| w.sweep());
                        next_sweep = Instant::now() + self.config.sweep_interval;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut batch = Batch::default();
            let mut close = None;
            match first {
                Request::Write { write, reply } => batch.push(write, reply),
                Request::Close { reply } => close = Some(reply),
            }
            // Take what is queued; if the last group was bigger, linger a little (at most half
            // the last commit's duration) for its writers to come back. Without this, N
            // concurrent writers settle into two alternating half-size groups (one fsyncing
            // while the other queues), paying twice the fsyncs.
            let target = last_group;
            let linger_until = Instant::now() + (last_commit / 2).min(MAX_LINGER);
            while close.is_none() && !batch.is_full() {
                match rx.try_recv() {
                    Ok(Request::Write { write, reply }) => batch.push(write, reply),
                    Ok(Request::Close { reply }) => close = Some(reply),
                    Err(TryRecvError::Empty)
                        if batch.len() < target && Instant::now() < linger_until =>
                    {
                        std::thread::yield_now()
                    }
                    Err(_) => break,
                }
            }
            last_group = batch.len();
            if !batch.is_empty() {
                let started = Instant::now();
                let result = self.guarded("group commit", |w| Some(w.commit_batch(batch.writes())));
                last_commit = started.elapsed();
                let stats = &self.shared.stats;
                match result {
                    Some(result) => {
                        measure::record_batch(stats, batch.writes(), &result, last_commit);
                        batch.settle(result, &self.shared.changes, &self.shared.queue_wakeup)
                    }
                    // A panic poisoned the store; dropping the replies makes callers read it.
                    None => {
                        stats.record_batch(batch.len(), last_commit);
                        stats.record_commits(0, 0, batch.len() as u64);
                        drop(batch)
                    }
                }
            }
            if let Some(reply) = close {
                let _ = reply.send(());
                return;
            }
            // Idle readers' snapshots predate this commit: end them now rather than let them
            // pin the WAL until their next read.
            next_release = self.release_readers();
            if Instant::now() >= next_sweep {
                self.guarded("expiry sweep", |w| w.sweep());
                next_sweep = Instant::now() + self.config.sweep_interval;
            }
        }
    }

    /// Ends idle readers' stale snapshots; returns when the writer should next look: when the
    /// next held snapshot is due, or soon if the WAL waits for a checkpoint.
    fn release_readers(&self) -> Option<Instant> {
        let readers = self.readers.as_ref()?;
        let held = readers.release_stale();
        let checkpoint = readers
            .wal_state()
            .is_some_and(|w| w.wants_checkpoint())
            .then_some(IDLE_CHECKPOINT_AFTER);
        let left = match (held, checkpoint) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(Instant::now() + left)
    }

    /// When idle: a WAL past SQLite's checkpoint threshold and not fully checkpointed keeps
    /// readers from holding snapshots (readers.rs, `WalState::may_hold`); SQLite checkpoints
    /// only at a commit, so the writer does it once writes pause. Passive: it waits for nobody.
    fn checkpoint_if_due(&self) {
        let due =
            self.readers.as_ref().and_then(|r| r.wal_state()).is_some_and(|w| w.wants_checkpoint());
        if due {
            let conn = lock(&self.conn);
            let result = conn.query_row("pragma wal_checkpoint(passive)", [], |_| Ok(()));
            if let Err(e) = result {
                tracing::debug!("openkv: idle checkpoint failed: {e}");
            }
        }
    }

    /// Runs a step of the writer; a panic poisons the store instead of killing the thread
    /// silently.
    fn guarded<T>(&mut self, what: &str, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        match catch_unwind(AssertUnwindSafe(|| f(self))) {
            Ok(v) => v,
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                self.shared.poison(format!("the writer panicked during {what}: {msg}"));
                None
            }
        }
    }

    /// Commits a group of writes in one transaction, as the planner decides; an `Err` means
    /// nothing of the group committed.
    fn commit_batch(&mut self, writes: &[AtomicWrite]) -> Result<BatchPlan> {
        if let Some(why) = self.shared.poisoned() {
            return Err(Error::Poisoned(why));
        }
        let now = self.shared.clock.now_ms();
        let conn_mutex = self.conn.clone();
        let conn = lock(&conn_mutex);
        let rng = &mut self.rng;
        let log = self.shared.log;
        let result = with_write_txn(&conn, |conn| {
            let version: i64 = conn.prepare_cached(GET_VERSION)?.query_row([], |r| r.get(0))?;
            let mut stored = HashMap::new();
            for key in keys_to_read(writes) {
                if let Some(row) = read_row(conn, &key)? {
                    stored.insert(key, row);
                }
            }
            // Deno's files: the i-th committed write of the group takes the next counter value.
            let stamp = |i: usize| {
                let v = u64::try_from(version).ok().and_then(|v| v.checked_add(i as u64 + 1));
                v.map(Versionstamp::from_version).ok_or_else(|| {
                    Error::corrupt(format!("the version counter is out of range ({version})"))
                })
            };
            let plan = plan_batch(writes, stored, now, stamp, rng)?;
            if let Some(last) = plan.last_versionstamp() {
                write_rows(conn, &plan.rows)?;
                if log {
                    changelog::append(conn, version as u64, last.version(), now, plan.rows.iter())?;
                }
                for m in &plan.enqueues {
                    conn.prepare_cached(QUEUE_ADD)?.execute(params![
                        m.due_ms,
                        m.id,
                        m.payload,
                        m.backoff_schedule,
                        m.keys_if_undelivered
                    ])?;
                }
                set_version(conn, last)?;
            }
            Ok(plan)
        });
        drop(conn);
        if let Err(e) = &result {
            self.poison_if_fatal(e);
        }
        result
    }

    /// I/O errors leave the file in a state we cannot vouch for: poison. A corrupt row, a full
    /// disk or a busy lock are reported to the callers and the store goes on (by class:
    /// `Shared::poison_if_fatal`).
    fn poison_if_fatal(&self, e: &Error) {
        self.shared.poison_if_fatal(e);
    }

    /// Deletes expired keys; publishes them on the change feed with a fresh versionstamp. Also
    /// prunes the change log, at most every [`PRUNE_EVERY`].
    fn sweep(&mut self) -> Option<()> {
        // A replica's rows are the primary's: its sweep's deletions arrive in the log (and
        // expired rows are invisible to reads meanwhile).
        if self.shared.poisoned().is_some() || self.config.replica {
            return Some(());
        }
        let now = self.shared.clock.now_ms();
        let conn_mutex = self.conn.clone();
        let conn = lock(&conn_mutex);
        if let Some(retention) = &self.config.change_log {
            if Instant::now() >= self.next_prune {
                // A short retention (tests, tiny disks) is kept to within a quarter of itself.
                let every = (retention.max_age / 4).clamp(Duration::from_secs(1), PRUNE_EVERY);
                self.next_prune = Instant::now() + every;
                match with_write_txn(&conn, |conn| changelog::prune(conn, now, retention)) {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!("openkv: pruned {n} change-log records"),
                    Err(e) => tracing::warn!("openkv: pruning the change log failed: {e}"),
                }
            }
        }
        let any = conn
            .prepare_cached(ANY_EXPIRED)
            .and_then(|mut s| s.query_row([now], |_| Ok(())).optional());
        match any {
            Ok(Some(())) => {}
            Ok(None) => return Some(()),
            Err(e) => {
                tracing::warn!("openkv: expiry sweep could not read: {e}");
                return Some(());
            }
        }
        let result = with_write_txn(&conn, |conn| {
            let (keys, expired_at): (Vec<Vec<u8>>, Vec<i64>) = conn
                .prepare_cached(DELETE_EXPIRED)?
                .query_map([now], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))?
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .unzip();
            if keys.is_empty() {
                return Ok(None);
            }
            let version: i64 =
                conn.prepare_cached(GET_VERSION)?.query_row([], |r| r.get::<_, i64>(0))? + 1;
            conn.prepare_cached(SET_VERSION)?.execute([version])?;
            if self.shared.log {
                let deleted: Vec<(Vec<u8>, Option<Row>)> =
                    keys.iter().map(|k| (k.clone(), None)).collect();
                let changes = deleted.iter().map(|(k, r)| (k, r));
                changelog::append(conn, version as u64 - 1, version as u64, now, changes)?;
            }
            let event = ChangeEvent {
                versionstamp: Versionstamp::from_version(version as u64),
                keys: keys.into(),
            };
            Ok(Some((event, expired_at)))
        });
        drop(conn);
        match result {
            Ok(Some((event, expired_at))) => {
                measure::record_swept(&self.shared.stats, now, expired_at);
                tracing::debug!("openkv: swept {} expired keys", event.keys.len());
                let _ = self.shared.changes.send(event);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!("openkv: expiry sweep failed: {e}");
                self.poison_if_fatal(&e);
            }
        }
        Some(())
    }
}

/// The stored row of a key, expired or not (the planner tells).
fn read_row(conn: &Connection, key: &[u8]) -> rusqlite::Result<Option<Row>> {
    conn.prepare_cached(POINT_GET)?
        .query_row([key], |r| {
            let expiration_ms: i64 = r.get(3)?;
            Ok(Row {
                bytes: r.get(0)?,
                encoding: r.get(1)?,
                versionstamp: Versionstamp::from_version(r.get::<_, i64>(2)? as u64),
                // Deno's schema: -1 (any negative) means no expiry.
                expire_at_ms: (expiration_ms >= 0).then_some(expiration_ms),
            })
        })
        .optional()
}

/// Stores planned rows (`None`: delete the key), each under its versionstamp's counter.
pub(super) fn write_rows(conn: &Connection, rows: &Rows) -> rusqlite::Result<()> {
    for (key, row) in rows {
        put_row(conn, key, row.as_ref())?;
    }
    Ok(())
}

/// Sets the version counter to `last`'s (the last committed write's).
pub(super) fn set_version(conn: &Connection, last: Versionstamp) -> rusqlite::Result<()> {
    conn.prepare_cached(SET_VERSION)?.execute([last.version() as i64])?;
    Ok(())
}
