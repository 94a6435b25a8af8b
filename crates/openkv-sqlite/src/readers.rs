//! Reader connections that keep their read snapshot open between reads, and know when it went
//! stale without asking SQLite.
//!
//! # Why
//! Every SQLite read transaction on a file takes and drops the file's shared lock and a WAL
//! read mark: `fcntl` calls under a process-wide mutex and a per-file one inside SQLite. A
//! point get is a few microseconds of B-tree work, so on two threads those mutexes, not the
//! reads, set the pace (two threads did fewer gets than one). A reader here therefore keeps
//! its transaction open after a read, and the next read on that connection reuses the
//! snapshot — no lock calls at all — as long as nothing was committed since.
//!
//! # How a reader knows nothing was committed (the argument in full: docs/design.md, "Reads")
//! In WAL mode every commit, by any connection of any process, rewrites the WAL index header
//! in the `-shm` file (SQLite's `walIndexWriteHdr`: a change counter, the last frame, salts
//! and checksums) before that commit returns to its caller; a checkpoint moves the backfill
//! count beside it. Before beginning a transaction a reader reads those bytes with one
//! `pread` ([`watched`]); before every later read it reads them again, and reuses
//! the transaction only if they are byte-for-byte the same. Hence a read that starts after a
//! commit was acknowledged — by our writer, or by any other process on the file, Deno CLI
//! included — sees different bytes (the header was written before the acknowledgement) and
//! begins a new transaction, whose snapshot includes that commit. The bytes are read *before*
//! `BEGIN`, so a snapshot is never older than the bytes it is filed under; an unrelated change
//! of the bytes only costs a new transaction.
//!
//! SQLite writes the header's second copy, then its first: a read that finds the copies
//! different caught a commit mid-write and counts as changed.
//!
//! # What holding a snapshot costs others, and its bounds
//! An open read transaction pins a WAL read mark: a checkpoint cannot copy frames past it, and
//! the WAL cannot start over from its beginning while any mark above zero is held. So:
//! - a snapshot is never reused once older than [`MAX_SNAPSHOT_AGE`];
//! - a checkpoint changes the watched bytes (the backfill count), so readers move to the
//!   checkpointed state at their next read — after a complete checkpoint, onto mark zero,
//!   which lets the next writer restart the WAL;
//! - idle readers in the pool are ended by our writer thread after each commit and at the
//!   latest [`MAX_SNAPSHOT_AGE`] after they began ([`ReaderPool::release_stale`]), so a
//!   process that stops reading pins nothing for longer than that;
//! - while the WAL is at least SQLite's checkpoint threshold and not fully checkpointed, no
//!   snapshot is kept at all (`WalState::may_hold`): the checkpoint and the restart that come
//!   then meet readers exactly as SQLite's own, and the writer checkpoints once writes pause.
//!
//! Without a WAL index to read (it could not be opened), every read ends its transaction, as
//! SQLite's autocommit reads do.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::error::Result;
use crate::shared::{lock, open_connection, retry_busy};

/// How long a read snapshot may be reused, and how long an idle reader may hold one.
pub(crate) const MAX_SNAPSHOT_AGE: Duration = Duration::from_millis(200);
/// Idle reader connections kept open (the pool's slots).
const MAX_IDLE_READERS: usize = 16;

/// Bytes of the WAL index a reader compares: the header (48 bytes, twice) and the first field
/// of the checkpoint information after it, the backfill count. Layout: SQLite's `wal.c`,
/// `WalIndexHdr` and `WalCkptInfo`, a file format SQLite keeps stable.
const WATCHED: usize = 2 * HEADER + 4;
const HEADER: usize = 48;
/// `WalIndexHdr.isInit`: zero until a connection has built the index.
const IS_INIT: usize = 12;
/// `WalIndexHdr.mxFrame`: the last valid frame of the WAL.
const MX_FRAME: usize = 16;
/// SQLite's automatic checkpoint threshold (`wal_autocheckpoint`, 1,000 pages, which openkv
/// leaves at its default): readers hold no snapshot while the WAL is at least this long and
/// not fully checkpointed (`WalState::may_hold`).
const HOLD_MAX_FRAMES: u32 = 1000;

type Watched = [u8; WATCHED];

/// The pool of reader connections of one database file.
#[derive(Debug)]
pub(crate) struct ReaderPool {
    path: PathBuf,
    /// `<file>-shm`, read only with `pread`. It stays the same file while this process has
    /// the database open: our writer's connection keeps it mapped (and holds the lock that
    /// stops any process from deleting or rebuilding it) for the backend's whole life.
    wal_index: Option<File>,
    /// Idle readers, one per slot. A thread takes and returns readers at its own slot first
    /// (`home_slot`), so each thread keeps using one connection: its page cache stays in that
    /// core's caches and no lock is shared between threads. Each slot sits on cache lines of
    /// its own.
    slots: Box<[Slot]>,
}

#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot(Mutex<Option<Reader>>);

/// `<file>-shm`: the WAL index of `path`.
fn shm_path(path: &Path) -> PathBuf {
    let mut shm = path.to_path_buf().into_os_string();
    shm.push("-shm");
    PathBuf::from(shm)
}

/// The watched bytes of the WAL index now; `None` when there is no index to read, it is not
/// built yet, the read failed, or a commit was writing the header at that moment.
fn watched(wal_index: Option<&File>) -> Option<Watched> {
    let file = wal_index?;
    let mut bytes = [0u8; WATCHED];
    file.read_exact_at(&mut bytes, 0).ok()?;
    let whole = bytes[..HEADER] == bytes[HEADER..2 * HEADER] && bytes[IS_INIT] != 0;
    whole.then_some(bytes)
}

/// The lock if nobody holds it (poisoning ignored, as `lock` does).
fn try_lock<T>(m: &Mutex<T>) -> Option<std::sync::MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(guard) => Some(guard),
        Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// This thread's first slot in every pool (threads get consecutive ones, in the order they
/// first read).
fn home_slot() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static HOME: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    HOME.with(|h| *h)
}

/// A reader connection and the transaction it may hold open.
#[derive(Debug)]
pub(crate) struct Reader {
    conn: Connection,
    /// The WAL index, opened by this reader: threads reading through their own open file
    /// share no kernel file object (and its reference count) with each other.
    wal_index: Option<File>,
    /// `Some` while a read transaction is open on `conn`.
    held: Option<Held>,
}

#[derive(Debug)]
struct Held {
    /// The watched bytes read just before `BEGIN`; `None`: unknown (never reused).
    seen: Option<Watched>,
    since: Instant,
}

impl ReaderPool {
    /// The pool of `path`, whose WAL index must exist already (the writer's connection made
    /// the file a WAL database and read it before this is called).
    pub(crate) fn new(path: &Path) -> ReaderPool {
        let shm = shm_path(path);
        let wal_index = match File::open(&shm) {
            Ok(file) => Some(file),
            Err(e) => {
                tracing::warn!(
                    "openkv: cannot read the WAL index {shm:?} ({e}); reads fall back to one \
                     transaction each"
                );
                None
            }
        };
        let slots = (0..MAX_IDLE_READERS).map(|_| Slot::default()).collect();
        ReaderPool { path: path.to_path_buf(), wal_index, slots }
    }

    /// The database file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn shm_path(&self) -> PathBuf {
        shm_path(&self.path)
    }

    /// Runs `f` on a reader whose snapshot is current (see the module docs), retrying while
    /// the file is busy. `f` must not begin or end transactions.
    pub(crate) fn read<T>(&self, f: impl Fn(&Connection) -> Result<T>) -> Result<T> {
        let mut reader = self.take()?;
        let result = retry_busy(|| {
            self.refresh(&mut reader)?;
            let result = f(&reader.conn);
            // After a failure the transaction's state is unknown: start over next time. Without
            // watched bytes, nothing could tell a later read that this snapshot went stale.
            if result.is_err() || reader.held.as_ref().is_some_and(|h| h.seen.is_none()) {
                reader.end();
            }
            result
        });
        self.put(reader);
        result
    }

    /// A reader with no transaction open, for work that runs its own (a snapshot stream, the
    /// queue's listing). Give it back with [`put`](Self::put).
    pub(crate) fn take_plain(&self) -> Result<Reader> {
        let mut reader = self.take()?;
        reader.end();
        Ok(reader)
    }

    /// An idle reader, from this thread's slot if it has one, else from any other slot, else
    /// a new connection.
    fn take(&self) -> Result<Reader> {
        let home = home_slot();
        for i in 0..self.slots.len() {
            let slot = &self.slots[(home + i) % self.slots.len()];
            // A slot another thread is using is skipped, not waited for.
            if let Some(mut idle) = try_lock(&slot.0) {
                if let Some(reader) = idle.take() {
                    return Ok(reader);
                }
            }
        }
        let conn = open_connection(&self.path, true)?;
        let wal_index = self.wal_index.as_ref().and_then(|_| File::open(self.shm_path()).ok());
        Ok(Reader { conn, wal_index, held: None })
    }

    /// Gives a reader back to the pool: to this thread's slot if free, else to any free slot;
    /// closed if every slot is taken.
    pub(crate) fn put(&self, reader: Reader) {
        let home = home_slot();
        for i in 0..self.slots.len() {
            let slot = &self.slots[(home + i) % self.slots.len()];
            if let Some(mut idle) = try_lock(&slot.0) {
                if idle.is_none() {
                    *idle = Some(reader);
                    return;
                }
            }
        }
    }

    /// Makes sure `reader` holds a transaction whose snapshot is current. `held.seen` is left
    /// `None` (the transaction ends after the read) when the snapshot must not be kept.
    fn refresh(&self, reader: &mut Reader) -> Result<()> {
        let seen = watched(reader.wal_index.as_ref()).filter(|w| WalState::of(w).may_hold());
        if let Some(held) = &reader.held {
            if seen.is_some() && held.seen == seen && held.since.elapsed() < MAX_SNAPSHOT_AGE {
                return Ok(());
            }
            reader.end();
        }
        // Deferred: SQLite takes the snapshot at the first read, after `seen` was read.
        reader.conn.prepare_cached("begin")?.execute([])?;
        reader.held = Some(Held { seen, since: Instant::now() });
        Ok(())
    }

    fn watched(&self) -> Option<Watched> {
        watched(self.wal_index.as_ref())
    }

    /// The WAL's frame counts now, if the index can be read.
    pub(crate) fn wal_state(&self) -> Option<WalState> {
        self.watched().map(|w| WalState::of(&w))
    }

    /// Ends the transactions of idle readers whose snapshot is stale or older than
    /// [`MAX_SNAPSHOT_AGE`]. Returns how long until the oldest one still held reaches that
    /// age, `None` if none is held. Called by the writer thread after each commit and when
    /// that time comes.
    pub(crate) fn release_stale(&self) -> Option<Duration> {
        let seen = self.watched();
        let mut next: Option<Duration> = None;
        for slot in self.slots.iter() {
            let mut idle = lock(&slot.0);
            let Some(reader) = idle.as_mut() else { continue };
            let Some(held) = &reader.held else { continue };
            let age = held.since.elapsed();
            if seen.is_none() || held.seen != seen || age >= MAX_SNAPSHOT_AGE {
                reader.end();
            } else {
                let left = MAX_SNAPSHOT_AGE - age;
                next = Some(next.map_or(left, |n| n.min(left)));
            }
        }
        next
    }

    /// Closes every idle reader (the backend is closing).
    pub(crate) fn clear(&self) {
        for slot in self.slots.iter() {
            lock(&slot.0).take();
        }
    }
}

/// Where the WAL stands, from its index.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WalState {
    /// Frames in the WAL (`WalIndexHdr.mxFrame`).
    pub(crate) frames: u32,
    /// Frames a checkpoint copied into the database file (`WalCkptInfo.nBackfill`).
    pub(crate) backfilled: u32,
}

impl WalState {
    fn of(w: &Watched) -> WalState {
        // Both are the machine's byte order: the index is shared memory, not a portable file.
        let at = |i: usize| u32::from_ne_bytes([w[i], w[i + 1], w[i + 2], w[i + 3]]);
        WalState { frames: at(MX_FRAME), backfilled: at(2 * HEADER) }
    }

    /// Whether a reader may keep a snapshot of this state: while the WAL is shorter than
    /// SQLite's checkpoint threshold, or fully checkpointed (a reader then reads the database
    /// file only, on read mark zero, which keeps no checkpoint or restart from happening).
    /// Past the threshold, readers end their transaction after every read, as SQLite's own
    /// readers do, so the checkpoint that runs then and the restart after it meet readers
    /// exactly as they would without openkv.
    fn may_hold(self) -> bool {
        self.frames < HOLD_MAX_FRAMES || self.frames == self.backfilled
    }

    /// The WAL is past the threshold and not fully checkpointed: when the writer is idle it
    /// checkpoints, so that readers can hold snapshots again without waiting for a write.
    pub(crate) fn wants_checkpoint(self) -> bool {
        !self.may_hold()
    }
}

impl Reader {
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Ends the open read transaction, if any. A read transaction has nothing to lose, so a
    /// failure to end it is ignored (SQLite ends it anyway when the connection closes).
    fn end(&mut self) {
        if self.held.take().is_some() && !self.conn.is_autocommit() {
            let _ = self.conn.prepare_cached("commit").and_then(|mut s| s.execute([]));
        }
    }
}

/// Runs `f` on `reader` on a blocking thread (work that may take long: a queue listing, the
/// gauges), then gives the reader back to `pool`.
pub(crate) async fn on_blocking_thread<T: Send + 'static>(
    pool: &std::sync::Arc<ReaderPool>,
    f: impl Fn(&Connection) -> Result<T> + Send + 'static,
) -> Result<T> {
    let reader = pool.take_plain()?;
    let (reader, result) = tokio::task::spawn_blocking(move || {
        let result = retry_busy(|| f(reader.conn()));
        (reader, result)
    })
    .await
    .map_err(|e| {
        crate::error::Error::Internal(format!("a read on a blocking thread panicked: {e}"))
    })?;
    pool.put(reader);
    result
}
