//! What the other modules share: the backend's options, the state its callers and the writer
//! thread share, and how a connection is opened and a busy file retried. The bottom module of
//! the crate: it imports none of the others.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::broadcast;

use crate::backend::ChangeEvent;
use crate::clock::Clock;
use crate::error::{Error, Failure, Result};

/// How long SQLite itself waits for another process's lock before reporting busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long we keep retrying a busy database before giving up with [`Error::Busy`].
const BUSY_DEADLINE: Duration = Duration::from_secs(60);

/// Options of the SQLite backend, filled in by `openkv::OpenOptions`.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// How often the writer deletes expired keys (and publishes their expiry).
    pub sweep_interval: Duration,
    /// Seeds the random queue message ids (tests); `None`: from the OS.
    pub rng_seed: Option<u64>,
    /// Keep a change log (`openkv_core::changelog`) with this retention; `None`: no log
    /// (commits then leave a gap for followers of a log kept earlier).
    pub change_log: Option<openkv_core::changelog::LogRetention>,
    /// The file is a read replica's copy: it only takes the primary's rows (no expiry sweep,
    /// no log of its own).
    pub replica: bool,
}

/// State shared by callers and the writer thread.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) clock: Arc<dyn Clock>,
    /// Set once, by the first fatal write error or writer panic; never cleared.
    poison: Mutex<Option<Failure>>,
    pub(crate) changes: broadcast::Sender<ChangeEvent>,
    /// Pinged after a commit that enqueued, and at close: wakes this process's queue listener.
    pub(crate) queue_wakeup: openkv_core::queue::QueueSignal,
    /// Commits are logged (`SqliteConfig::change_log`): the queue's dead-letter writes too.
    pub(crate) log: bool,
    /// What the writer, the readers, the sweep and the queue did (`Backend::stats`).
    pub(crate) stats: Arc<openkv_core::stats::EngineStats>,
}

impl Shared {
    pub(crate) fn new(
        clock: Arc<dyn Clock>,
        changes: broadcast::Sender<ChangeEvent>,
        log: bool,
    ) -> Shared {
        let queue_wakeup = openkv_core::queue::QueueSignal::new();
        let stats = Arc::default();
        Shared { clock, poison: Mutex::new(None), changes, queue_wakeup, log, stats }
    }

    pub(crate) fn poisoned(&self) -> Option<Failure> {
        lock(&self.poison).clone()
    }

    /// Poisons the store if `e` leaves the file in a state nobody can vouch for: a storage
    /// (I/O) failure on a write path. Everything else is the caller's to hear and the store
    /// goes on — above all a corrupt row, which concerns that row only, and a full disk or a
    /// busy lock, which passes.
    pub(crate) fn poison_if_fatal(&self, e: &Error) {
        if e.class().poisons_the_store() {
            // The failure itself stays the source of every later `Poisoned`.
            self.set_poison(Failure::with_source(e.to_string(), Arc::new(e.clone())));
        }
    }

    /// Poisons the store for a reason in words (a panic of the writer).
    pub(crate) fn poison(&self, why: String) {
        self.set_poison(Failure::new(why));
    }

    fn set_poison(&self, why: Failure) {
        let mut p = lock(&self.poison);
        if p.is_none() {
            tracing::error!("openkv: store poisoned, refusing further writes: {why}");
            *p = Some(why);
        }
    }
}

/// Locks a mutex, ignoring poisoning: every critical section here leaves its data valid.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn open_connection(path: &Path, read_only: bool) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| Error::storage_caused(format_args!("could not open {}", path.display()), e))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(64);
    if read_only {
        // A reader never writes; this makes a bug that tries fail loudly.
        conn.pragma_update(None, "query_only", true)?;
    }
    Ok(conn)
}

/// Runs `f` inside one read transaction on `conn` (deferred: its first read takes the
/// snapshot every later one sees). A read transaction has nothing to lose: it is ended
/// whatever `f` returned.
pub(crate) fn in_read_txn<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    conn.prepare_cached("begin")?.execute([])?;
    let result = f(conn);
    let _ = conn.prepare_cached("commit").and_then(|mut s| s.execute([]));
    result
}

/// Retries an operation that failed because another process held a lock.
pub(crate) fn retry_busy<T>(mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        match f() {
            Err(Error::Busy(why)) => {
                if start.elapsed() > BUSY_DEADLINE {
                    return Err(Error::Busy(why));
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// Deno's commit counter: read and set (every versionstamp's first 8 bytes come from it).
pub(crate) const GET_VERSION: &str = "select version from data_version where k = 0";
pub(crate) const SET_VERSION: &str = "update data_version set version = ?1 where k = 0";

const POINT_SET: &str = "insert into kv (k, v, v_encoding, version, expiration_ms) \
     values (?1, ?2, ?3, ?4, ?5) on conflict(k) do update set \
     v = excluded.v, v_encoding = excluded.v_encoding, version = excluded.version, \
     expiration_ms = excluded.expiration_ms";
const POINT_DELETE: &str = "delete from kv where k = ?1";

/// Stores one key's row (`None`: deletes the key) under its versionstamp's counter, as Deno's
/// `kv` table holds it (expiry −1: never).
pub(crate) fn put_row(
    conn: &Connection,
    key: &[u8],
    row: Option<&openkv_core::row::Row>,
) -> rusqlite::Result<()> {
    match row {
        Some(row) => {
            conn.prepare_cached(POINT_SET)?.execute(rusqlite::params![
                key,
                row.bytes,
                row.encoding,
                row.versionstamp.version() as i64,
                row.expire_at_ms.unwrap_or(-1)
            ])?;
        }
        None => {
            conn.prepare_cached(POINT_DELETE)?.execute([key])?;
        }
    }
    Ok(())
}
