//! The writer thread: group commit, per-write savepoints, versionstamps, the expiry sweep.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use rusqlite::{params, Connection, OptionalExtension};

use super::{lock, retry_busy, Request, Shared, SqliteConfig, MAX_BATCH};
use crate::backend::{versionstamped_key, AtomicWrite, ChangeEvent, CommitOutcome, MutationKind};
use crate::error::{Error, Result};
use crate::sum;
use crate::value::Value;
use crate::versionstamp::Versionstamp;

const POINT_SET: &str = "insert into kv (k, v, v_encoding, version, expiration_ms) \
     values (?1, ?2, ?3, ?4, ?5) on conflict(k) do update set \
     v = excluded.v, v_encoding = excluded.v_encoding, version = excluded.version, \
     expiration_ms = excluded.expiration_ms";
const POINT_DELETE: &str = "delete from kv where k = ?1";
const POINT_GET: &str = "select v, v_encoding, version, expiration_ms from kv where k = ?1";
const GET_VERSION: &str = "select version from data_version where k = 0";
const SET_VERSION: &str = "update data_version set version = ?1 where k = 0";
const ANY_EXPIRED: &str =
    "select 1 from kv where expiration_ms >= 0 and expiration_ms <= ?1 limit 1";
const DELETE_EXPIRED: &str =
    "delete from kv where expiration_ms >= 0 and expiration_ms <= ?1 returning k";
const QUEUE_ADD: &str = "insert into queue (ts, id, data, backoff_schedule, keys_if_undelivered) \
     values (?1, ?2, ?3, ?4, ?5)";

/// How long the writer spins for the next write after a commit before it sleeps.
const SPIN_AFTER_COMMIT: Duration = Duration::from_micros(50);
/// The longest the writer waits for a group to regrow to its previous size.
const MAX_LINGER: Duration = Duration::from_micros(500);

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

/// Why one write of a batch did not commit, without failing the batch.
enum Rejected {
    CheckFailed(Vec<u32>),
    Invalid(Error),
}

pub(crate) struct Writer {
    conn: Arc<Mutex<Connection>>,
    shared: Arc<Shared>,
    config: SqliteConfig,
    rng: StdRng,
}

impl Writer {
    pub(crate) fn new(
        conn: Arc<Mutex<Connection>>,
        shared: Arc<Shared>,
        config: SqliteConfig,
    ) -> Self {
        let rng = match config.rng_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Writer { conn, shared, config, rng }
    }

    pub(crate) fn run(mut self, rx: Receiver<Request>) {
        let mut next_sweep = Instant::now() + self.config.sweep_interval;
        // Size and duration of the last group commit; they steer spinning and lingering.
        let mut last_group = 0usize;
        let mut last_commit = Duration::ZERO;
        loop {
            let wait = next_sweep.saturating_duration_since(Instant::now());
            // Right after a commit, the caller that was just answered usually sends its next
            // write within microseconds; catching it by spinning saves this thread a sleep and
            // a wake-up, which on a VM is a large part of a sequential commit's latency.
            let spin = if last_group > 0 { SPIN_AFTER_COMMIT } else { Duration::ZERO };
            let first = match recv(&rx, spin, wait) {
                Ok(r) => r,
                Err(RecvTimeoutError::Timeout) => {
                    last_group = 0;
                    self.guarded("expiry sweep", |w| w.sweep());
                    next_sweep = Instant::now() + self.config.sweep_interval;
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut batch = Vec::new();
            let mut close = None;
            match first {
                Request::Write { write, reply } => batch.push((write, reply)),
                Request::Close { reply } => close = Some(reply),
            }
            // Take what is queued; if the last group was bigger, linger a little (at most half
            // the last commit's duration) for its writers to come back. Without this, N
            // concurrent writers settle into two alternating half-size groups (one fsyncing
            // while the other queues), paying twice the fsyncs.
            let target = last_group.min(MAX_BATCH);
            let linger_until = Instant::now() + (last_commit / 2).min(MAX_LINGER);
            while close.is_none() && batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(Request::Write { write, reply }) => batch.push((write, reply)),
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
                let (writes, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                let outcomes = self.guarded("group commit", |w| Some(w.commit_batch(&writes)));
                last_commit = started.elapsed();
                match outcomes {
                    Some(outcomes) => {
                        for (reply, outcome) in replies.into_iter().zip(outcomes) {
                            let _ = reply.send(outcome);
                        }
                    }
                    // A panic poisoned the store; dropping the replies makes callers read it.
                    None => drop(replies),
                }
            }
            if let Some(reply) = close {
                let _ = reply.send(());
                return;
            }
            if Instant::now() >= next_sweep {
                self.guarded("expiry sweep", |w| w.sweep());
                next_sweep = Instant::now() + self.config.sweep_interval;
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

    /// Commits a group of writes in one transaction. Returns one outcome per write.
    fn commit_batch(&mut self, writes: &[AtomicWrite]) -> Vec<Result<CommitOutcome>> {
        if let Some(why) = self.shared.poisoned() {
            return writes.iter().map(|_| Err(Error::Poisoned(why.clone()))).collect();
        }
        let now = self.shared.clock.now_ms();
        let conn_mutex = self.conn.clone();
        let conn = lock(&conn_mutex);
        let rng = &mut self.rng;
        let mut events = Vec::new();
        let result = with_write_txn(&conn, |conn| {
            events.clear();
            let mut version: i64 = conn.prepare_cached(GET_VERSION)?.query_row([], |r| r.get(0))?;
            let start_version = version;
            let mut outcomes = Vec::with_capacity(writes.len());
            for write in writes {
                // Only sum/min/max can reject a write after it has started mutating (checks run
                // before any mutation), so only such writes need a savepoint to roll back to.
                let savepoint = write.mutations.iter().any(|m| m.kind.combines_stored_value());
                if savepoint {
                    conn.prepare_cached("savepoint w")?.execute([])?;
                }
                let next = version + 1;
                match apply_write(conn, write, next, now, rng)? {
                    Ok(keys) => {
                        if savepoint {
                            conn.prepare_cached("release w")?.execute([])?;
                        }
                        version = next;
                        let versionstamp = Versionstamp::from_version(next as u64);
                        events.push(ChangeEvent { versionstamp, keys: keys.into() });
                        outcomes.push(Ok(CommitOutcome::Committed { versionstamp }));
                    }
                    Err(Rejected::Invalid(e)) if !savepoint => {
                        // Unreachable by the rule above; if it ever happens, fail the whole
                        // group (rolled back) rather than commit half of this write.
                        return Err(Error::Internal(format!(
                            "a write without a savepoint was rejected late ({e}); the whole \
                             group was rolled back"
                        )));
                    }
                    Err(rejected) => {
                        if savepoint {
                            conn.prepare_cached("rollback to w")?.execute([])?;
                            conn.prepare_cached("release w")?.execute([])?;
                        }
                        outcomes.push(match rejected {
                            Rejected::CheckFailed(failed_checks) => {
                                Ok(CommitOutcome::CheckFailed { failed_checks })
                            }
                            Rejected::Invalid(e) => Err(e),
                        });
                    }
                }
            }
            if version != start_version {
                conn.prepare_cached(SET_VERSION)?.execute([version])?;
            }
            Ok(outcomes)
        });
        drop(conn);
        match result {
            Ok(outcomes) => {
                for event in events {
                    // No subscribers is not an error.
                    let _ = self.shared.changes.send(event);
                }
                let enqueued = writes.iter().zip(&outcomes).any(|(w, o)| {
                    !w.enqueues.is_empty() && matches!(o, Ok(CommitOutcome::Committed { .. }))
                });
                if enqueued {
                    self.shared.queue_wakeup.wake();
                }
                outcomes
            }
            Err(e) => {
                self.poison_if_fatal(&e);
                writes.iter().map(|_| Err(e.clone())).collect()
            }
        }
    }

    /// I/O errors leave the file in a state we cannot vouch for: poison. A corrupt row, a full
    /// disk or a busy lock are reported to the callers and the store goes on (by class:
    /// `Shared::poison_if_fatal`).
    fn poison_if_fatal(&self, e: &Error) {
        self.shared.poison_if_fatal(e);
    }

    /// Deletes expired keys; publishes them on the change feed with a fresh versionstamp.
    fn sweep(&mut self) -> Option<()> {
        if self.shared.poisoned().is_some() {
            return Some(());
        }
        let now = self.shared.clock.now_ms();
        let conn_mutex = self.conn.clone();
        let conn = lock(&conn_mutex);
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
            let keys: Vec<Vec<u8>> = conn
                .prepare_cached(DELETE_EXPIRED)?
                .query_map([now], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            if keys.is_empty() {
                return Ok(None);
            }
            let version: i64 =
                conn.prepare_cached(GET_VERSION)?.query_row([], |r| r.get::<_, i64>(0))? + 1;
            conn.prepare_cached(SET_VERSION)?.execute([version])?;
            Ok(Some(ChangeEvent {
                versionstamp: Versionstamp::from_version(version as u64),
                keys: keys.into(),
            }))
        });
        drop(conn);
        match result {
            Ok(Some(event)) => {
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

/// The live (unexpired) row of a key: value, version.
fn current(
    conn: &Connection,
    key: &[u8],
    now: i64,
) -> rusqlite::Result<Option<(Vec<u8>, i64, i64)>> {
    let row = conn
        .prepare_cached(POINT_GET)?
        .query_row([key], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .optional()?;
    Ok(row.and_then(|(v, enc, version, exp)| {
        let expired = exp >= 0 && exp <= now;
        (!expired).then_some((v, enc, version))
    }))
}

fn set_row(
    conn: &Connection,
    key: &[u8],
    value: &Value,
    version: i64,
    expire_at_ms: Option<i64>,
) -> rusqlite::Result<()> {
    let data = value.to_bytes();
    conn.prepare_cached(POINT_SET)?.execute(params![
        key,
        data,
        value.encoding(),
        version,
        expire_at_ms.unwrap_or(-1)
    ])?;
    Ok(())
}

/// Applies one atomic write at `version` inside the open savepoint. The outer `Err` is a
/// storage failure (fails the whole group); the inner `Err` rejects this write only.
fn apply_write(
    conn: &Connection,
    write: &AtomicWrite,
    version: i64,
    now: i64,
    rng: &mut StdRng,
) -> Result<std::result::Result<Vec<Vec<u8>>, Rejected>> {
    let mut failed = Vec::new();
    for (i, check) in write.checks.iter().enumerate() {
        let actual =
            current(conn, &check.key, now)?.map(|(_, _, v)| Versionstamp::from_version(v as u64));
        if actual != check.versionstamp {
            failed.push(i as u32);
        }
    }
    if !failed.is_empty() {
        return Ok(Err(Rejected::CheckFailed(failed)));
    }

    let versionstamp = Versionstamp::from_version(version as u64);
    let mut keys = Vec::with_capacity(write.mutations.len());
    for m in &write.mutations {
        match &m.kind {
            MutationKind::Set(value) => {
                set_row(conn, &m.key, value, version, m.expire_at_ms)?;
                keys.push(m.key.clone());
            }
            MutationKind::Delete => {
                conn.prepare_cached(POINT_DELETE)?.execute([&m.key])?;
                keys.push(m.key.clone());
            }
            MutationKind::Sum(_)
            | MutationKind::SumWithLimits { .. }
            | MutationKind::Min(_)
            | MutationKind::Max(_) => {
                let current = current(conn, &m.key, now)?;
                match sum::numeric_mutation(&m.kind, current) {
                    // Like Deno: the result of sum/min/max never expires.
                    Ok(new) => set_row(conn, &m.key, &new, version, None)?,
                    Err(e) => return Ok(Err(Rejected::Invalid(e))),
                }
                keys.push(m.key.clone());
            }
            MutationKind::SetSuffixVersionstampedKey(value) => {
                let key = versionstamped_key(&m.key, versionstamp);
                set_row(conn, &key, value, version, m.expire_at_ms)?;
                keys.push(key);
            }
        }
    }

    for e in &write.enqueues {
        let (id, schedule, keys_if_undelivered) = e.stored_columns(rng);
        conn.prepare_cached(QUEUE_ADD)?.execute(params![
            e.deadline_ms,
            id,
            e.payload,
            schedule,
            keys_if_undelivered
        ])?;
    }
    Ok(Ok(keys))
}
