//! The SQLite backend: Deno's file format, a pool of readers, one group-committing writer.
//!
//! # Layout
//! - Reads run on the calling thread, on a connection taken from a pool (WAL lets them run
//!   beside the writer without waiting), inside that connection's read transaction, so all
//!   ranges of a read see one snapshot. A reader keeps its transaction open between reads
//!   while the WAL index shows no commit since it began (readers.rs; the argument:
//!   docs/design.md §3): most reads then take no lock at all.
//! - Writes go to one writer thread over a channel. The writer takes every write that is
//!   waiting (up to [`MAX_WRITE_BATCH`](openkv_core::limits::MAX_WRITE_BATCH)), opens one
//!   `BEGIN IMMEDIATE` transaction, reads the rows the engine's planner needs, lets it decide
//!   the group (a failed check or a failed mutation drops that write only; each committed write
//!   gets the next version), stores the plan and commits once: one fsync for the group. Only
//!   after `COMMIT` returns does any caller hear "committed".
//! - The writer also sweeps expired keys when idle.
//! - An I/O error on the write path, or a panic in the writer, poisons the backend: every later
//!   write fails with [`Error::Poisoned`] until the database is reopened. What poisons is
//!   decided by the error's class (`ErrorClass`, in `Shared::poison_if_fatal`): a malformed
//!   row (`Error::Corrupt`), a full disk or a busy lock does not.
// A library reports through its return values and `tracing`, never on stdout/stderr;
// `unsafe_code`, `missing_docs` and the rest: `[workspace.lints]` in the root Cargo.toml.
#![deny(clippy::print_stdout, clippy::print_stderr)]

// The layers below, under the names this crate's modules use (`crate::backend::…`).
use openkv_core::{backend, clock, engine, error, value, versionstamp};

pub mod backup;
pub mod catalog;
mod changelog;
mod external;
mod queue;
mod readers;
mod schema;
mod shared;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::Connection;
use tokio::sync::{broadcast, oneshot};

use openkv_core::changelog::{
    LogRead, LogRecord, ReplicaPosition, ReplicaTarget, ReplicationSource, Snapshot, SnapshotChunk,
    SnapshotHeader,
};
use openkv_core::engine::plan::Row;

use crate::backend::{
    AtomicWrite, Backend, BackupBackend, BackupSummary, ChangeEvent, CommitOutcome, Consistency,
    QueueBackend, QueueChange, QueueListing, QueuedMessage, RawEntry, ReadRange,
};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::value::Value;
use crate::versionstamp::Versionstamp;

pub use backup::{restore as restore_backup, verify as verify_backup};
pub use schema::SCHEMA_VERSION;
pub use shared::SqliteConfig;

use shared::{in_read_txn, lock, open_connection, Shared};
use writer::Request;

/// Capacity of the change feed before slow subscribers see `Lagged`.
const CHANGE_FEED_CAPACITY: usize = 4096;

const RANGE_SCAN: &str = "select k, v, v_encoding, version, expiration_ms from kv \
     where k >= ?1 and k < ?2 and (expiration_ms < 0 or expiration_ms > ?3) \
     order by k asc limit ?4";
const RANGE_SCAN_REVERSE: &str = "select k, v, v_encoding, version, expiration_ms from kv \
     where k >= ?1 and k < ?2 and (expiration_ms < 0 or expiration_ms > ?3) \
     order by k desc limit ?4";

/// Where reads get a connection.
#[derive(Debug)]
enum Readers {
    /// A file: a pool of separate read connections that keep their snapshot while it is
    /// current (readers.rs); the writer thread ends idle ones' snapshots.
    Pool(Arc<readers::ReaderPool>),
    /// `:memory:`: the one connection there is, shared with the writer under a mutex.
    Shared(Arc<Mutex<Connection>>),
}

/// Where queue operations run: their own connection to the file, or the one in-memory
/// connection there is.
#[derive(Debug)]
enum QueueConn {
    Shared(Arc<Mutex<Connection>>),
    Own { path: PathBuf, conn: Mutex<Option<Connection>> },
}

/// A Deno KV database in one SQLite file (or in memory).
#[derive(Debug)]
pub struct SqliteBackend {
    readers: Readers,
    /// Notices other processes' commits while anyone subscribes; `None` in memory.
    external: Option<external::Poller>,
    shared: Arc<Shared>,
    requests: mpsc::Sender<Request>,
    closed: AtomicBool,
    writer: Mutex<Option<JoinHandle<()>>>,
    database_id: std::sync::OnceLock<uuid::Uuid>,
    queue_conn: Arc<QueueConn>,
}

impl SqliteBackend {
    /// Opens (creating if needed) the database at `path`, or an in-memory one for `:memory:`.
    pub fn open(path: &str, clock: Arc<dyn Clock>, config: SqliteConfig) -> Result<Self> {
        let in_memory = path == ":memory:";
        let conn = if in_memory {
            Connection::open_in_memory()?
        } else {
            open_connection(Path::new(path), false)?
        };
        if !in_memory {
            // WAL: readers never wait for the writer and a commit appends to one file.
            let mode: String = conn.query_row("pragma journal_mode = wal", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(Error::storage(format!(
                    "could not switch {path} to WAL mode (journal_mode is {mode})"
                )));
            }
        }
        // FULL: in WAL mode the WAL is fsynced at every commit, so a commit that returned
        // survives power loss (docs/design.md, crash argument).
        conn.pragma_update(None, "synchronous", "FULL")?;
        writer::with_write_txn(&conn, schema::migrate)?;
        let log = config.change_log.is_some() && !config.replica;
        if log {
            writer::with_write_txn(&conn, changelog::ensure)?;
        }

        let conn = Arc::new(Mutex::new(conn));
        let readers = if in_memory {
            Readers::Shared(conn.clone())
        } else {
            Readers::Pool(Arc::new(readers::ReaderPool::new(Path::new(path))))
        };
        let (changes, _) = broadcast::channel(CHANGE_FEED_CAPACITY);
        let shared = Arc::new(Shared::new(clock, changes, log));
        let queue_conn = Arc::new(if in_memory {
            QueueConn::Shared(conn.clone())
        } else {
            QueueConn::Own { path: PathBuf::from(path), conn: Mutex::new(None) }
        });
        let external = (!in_memory)
            .then(|| external::Poller::new(PathBuf::from(path), shared.changes.clone()));
        let (requests, rx) = mpsc::channel();
        let pool = match &readers {
            Readers::Pool(pool) => Some(pool.clone()),
            Readers::Shared(_) => None,
        };
        let writer = writer::Writer::new(conn, shared.clone(), config, pool);
        let handle = std::thread::Builder::new()
            .name("openkv-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::storage_caused("could not start the writer thread", e))?;
        Ok(SqliteBackend {
            readers,
            external,
            shared,
            requests,
            closed: AtomicBool::new(false),
            writer: Mutex::new(Some(handle)),
            database_id: std::sync::OnceLock::new(),
            queue_conn,
        })
    }

    /// Runs a queue operation on the side connection, off the async threads (it may wait
    /// for the writer's or another process's lock).
    async fn queue_op<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection, i64) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let result = self.side_op(op).await;
        if let Err(e) = &result {
            // Same rule as the writer: after an I/O error on a write we cannot vouch for the
            // file (a corrupt queue row, say, is no such error).
            self.shared.poison_if_fatal(e);
        }
        result
    }

    /// Runs `op` on the side connection (a connection of its own to the file, or the one
    /// in-memory connection), off the async threads.
    async fn side_op<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection, i64) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if let Some(why) = self.shared.poisoned() {
            return Err(Error::Poisoned(why));
        }
        let holder = self.queue_conn.clone();
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let now = shared.clock.now_ms();
            match &*holder {
                QueueConn::Shared(conn) => op(&lock(conn), now),
                QueueConn::Own { path, conn } => {
                    let mut conn = lock(conn);
                    let conn = match &mut *conn {
                        Some(conn) => conn,
                        empty => empty.insert(open_connection(path, false)?),
                    };
                    op(conn, now)
                }
            }
        })
        .await
        .map_err(|e| Error::Internal(format!("a side-connection operation panicked: {e}")))?
    }

    fn read(&self, ranges: &[ReadRange]) -> Result<Vec<Vec<RawEntry>>> {
        let now = self.shared.clock.now_ms();
        let results = self.with_reader(|conn| read_ranges(conn, ranges, now))?;
        openkv_core::engine::measure::record_read(&self.shared.stats, &results);
        Ok(results)
    }

    /// Runs `f` on a reader connection whose snapshot is current (one of the pool, or the
    /// in-memory one), retrying while the file is busy. `f` must not begin or end
    /// transactions: on a file it runs inside the reader's (readers.rs).
    fn with_reader<T>(&self, f: impl Fn(&Connection) -> Result<T>) -> Result<T> {
        match &self.readers {
            Readers::Shared(conn) => in_read_txn(&lock(conn), f),
            Readers::Pool(pool) => pool.read(f),
        }
    }

    /// The queue's depths and, for a file, its size and its WAL's: what a scrape shows.
    async fn read_gauges(&self) -> Result<openkv_core::Gauges> {
        let now = self.shared.clock.now_ms();
        let pool = match &self.readers {
            // In memory: no file, and the one connection is the writer's: a short query.
            Readers::Shared(conn) => return queue::depths(&lock(conn), now),
            Readers::Pool(pool) => pool,
        };
        // Off the async threads: counting a long queue walks its index.
        let mut gauges =
            readers::on_blocking_thread(pool, move |conn| queue::depths(conn, now)).await?;
        let path = pool.path();
        let mut wal = path.to_path_buf().into_os_string();
        wal.push("-wal");
        gauges.database_bytes = Some(file_size(path)?);
        gauges.wal_bytes = Some(file_size(Path::new(&wal))?);
        Ok(gauges)
    }
}

impl SqliteBackend {
    /// The queue's listing on a reader connection, off the async threads (it walks up to
    /// `limit` rows of each queue table and counts them all).
    async fn read_queue(&self, limit: usize) -> Result<QueueListing> {
        let now = self.shared.clock.now_ms();
        match &self.readers {
            // In memory: the one connection there is, the writer's; a short read.
            Readers::Shared(conn) => queue::inspect(&lock(conn), now, limit),
            Readers::Pool(pool) => {
                readers::on_blocking_thread(pool, move |conn| queue::inspect(conn, now, limit))
                    .await
            }
        }
    }
}

/// A file's size in bytes; 0 if it does not exist (a WAL between checkpoints and closes).
fn file_size(path: &Path) -> Result<u64> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(meta.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => {
            Err(Error::storage_caused(format_args!("reading the size of {}", path.display()), e))
        }
    }
}

/// Reads `ranges` on `conn`, which is inside a read transaction (`with_reader`): all of them
/// see one snapshot.
fn read_ranges(conn: &Connection, ranges: &[ReadRange], now: i64) -> Result<Vec<Vec<RawEntry>>> {
    ranges.iter().map(|r| read_range(conn, r, now)).collect()
}

fn read_range(conn: &Connection, range: &ReadRange, now: i64) -> Result<Vec<RawEntry>> {
    let mut stmt =
        conn.prepare_cached(if range.reverse { RANGE_SCAN_REVERSE } else { RANGE_SCAN })?;
    let mut rows =
        stmt.query(rusqlite::params![range.start, range.end, now, i64::from(range.limit)])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let key: Vec<u8> = row.get(0)?;
        let data: Vec<u8> = row.get(1)?;
        let encoding: i64 = row.get(2)?;
        let version: i64 = row.get(3)?;
        let expiration_ms: i64 = row.get(4)?;
        let value = Value::from_stored(&key, encoding, data)?;
        out.push(RawEntry {
            key,
            value,
            versionstamp: Versionstamp::from_version(version as u64),
            // Deno's schema: -1 (any negative) means no expiry.
            expire_at_ms: (expiration_ms >= 0).then_some(expiration_ms),
        });
    }
    Ok(out)
}

#[async_trait]
impl Backend for SqliteBackend {
    async fn snapshot_read(
        &self,
        ranges: Vec<ReadRange>,
        _consistency: Consistency,
    ) -> Result<Vec<Vec<RawEntry>>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        // Runs inline: a read is bounded by the read limits (≤ 1000 entries) and served from
        // SQLite's page cache in microseconds; a thread hop would cost more than the read.
        self.read(&ranges)
    }

    async fn atomic_write(&self, write: AtomicWrite) -> Result<CommitOutcome> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if let Some(why) = self.shared.poisoned() {
            return Err(Error::Poisoned(why));
        }
        let (reply, answer) = oneshot::channel();
        self.requests.send(Request::Write { write, reply }).map_err(|_| self.gone())?;
        answer.await.map_err(|_| self.gone())?
    }

    fn subscribe(&self) -> Result<broadcast::Receiver<ChangeEvent>> {
        let changes = self.shared.changes.subscribe();
        if let Some(external) = &self.external {
            // After `changes` exists: the poller's baseline must not be newer than what the
            // caller will read (external.rs).
            external.watching();
        }
        Ok(changes)
    }

    fn watch(self: Arc<Self>, keys: Vec<Vec<u8>>) -> Result<openkv_core::WatchSnapshots> {
        openkv_core::watch::follow_change_feed(self, keys)
    }

    async fn database_id(&self) -> Result<uuid::Uuid> {
        if let Some(id) = self.database_id.get() {
            return Ok(*id);
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let id = match &self.readers {
            Readers::Shared(conn) => schema::database_id(&lock(conn))?,
            // A short write transaction of its own; the writer thread is not involved.
            Readers::Pool(pool) => schema::database_id(&open_connection(pool.path(), false)?)?,
        };
        Ok(*self.database_id.get_or_init(|| id))
    }

    async fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if let Some(external) = &self.external {
            external.stop();
        }
        let (reply, done) = oneshot::channel();
        if self.requests.send(Request::Close { reply }).is_ok() {
            let _ = done.await;
        }
        if let Some(handle) = lock(&self.writer).take() {
            // The writer has answered Close, so it is returning; joining cannot block long.
            let _ = handle.join();
        }
        if let Readers::Pool(pool) = &self.readers {
            pool.clear();
        }
        if let QueueConn::Own { conn, .. } = &*self.queue_conn {
            lock(conn).take();
        }
        // A listener waiting for its next message learns of the close at once.
        self.shared.queue_wakeup.wake();
        match self.shared.poisoned() {
            Some(why) => Err(Error::Poisoned(why)),
            None => Ok(()),
        }
    }

    fn queues(self: Arc<Self>) -> Result<Arc<dyn QueueBackend>> {
        Ok(self)
    }

    fn backups(self: Arc<Self>) -> Result<Arc<dyn BackupBackend>> {
        Ok(self)
    }

    fn replication(self: Arc<Self>) -> Result<Arc<dyn ReplicationSource>> {
        Ok(self)
    }

    fn replica_target(self: Arc<Self>) -> Result<Arc<dyn ReplicaTarget>> {
        Ok(self)
    }

    fn stats(&self) -> Option<Arc<openkv_core::EngineStats>> {
        Some(self.shared.stats.clone())
    }

    async fn gauges(&self) -> Result<openkv_core::Gauges> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        self.read_gauges().await
    }
}

#[async_trait]
impl QueueBackend for SqliteBackend {
    async fn queue_take(&self, max: usize, lease: Duration) -> Result<Vec<QueuedMessage>> {
        let lease_ms = openkv_core::queue::lease_millis(lease);
        self.queue_op(move |conn, now| queue::dequeue(conn, now, max, lease_ms)).await
    }

    async fn queue_renew(&self, ids: Vec<String>, lease: Duration) -> Result<()> {
        let lease_ms = openkv_core::queue::lease_millis(lease);
        self.queue_op(move |conn, now| queue::renew(conn, &ids, now, lease_ms)).await
    }

    async fn queue_finish(&self, outcomes: Vec<(String, bool)>) -> Result<()> {
        let retried = outcomes.iter().any(|(_, delivered)| !delivered);
        let log = self.shared.log;
        let (event, tally) =
            self.queue_op(move |conn, now| queue::finish(conn, &outcomes, now, log)).await?;
        self.shared.stats.record_deliveries(&tally);
        if let Some(event) = event {
            let _ = self.shared.changes.send(event);
        }
        if retried {
            // A retry falls due sooner than anything a waiting listener knew of.
            self.shared.queue_wakeup.wake();
        }
        Ok(())
    }

    async fn queue_next_due(&self) -> Result<Option<i64>> {
        self.queue_op(|conn, _| queue::next_due(conn)).await
    }

    fn queue_wakeup(self: Arc<Self>) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.shared.queue_wakeup.subscribe())
    }

    async fn queue_inspect(&self, limit: usize) -> Result<QueueListing> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        self.read_queue(limit).await
    }

    async fn queue_change(&self, id: &str, change: QueueChange) -> Result<bool> {
        let id = id.to_owned();
        let changed = self.queue_op(move |conn, now| queue::change(conn, &id, change, now)).await?;
        if changed && change == QueueChange::DueNow {
            // Due sooner than anything a waiting listener of this process knew of. (Other
            // processes on the file find it at their next poll, as they find Deno's enqueues.)
            self.shared.queue_wakeup.wake();
        }
        Ok(changed)
    }
}

#[async_trait]
impl BackupBackend for SqliteBackend {
    async fn backup(&self, dest: PathBuf) -> Result<BackupSummary> {
        // The copy is one long read transaction beside the writer. A failure (the destination's
        // disk is full, say) concerns the copy, not this store: no poisoning.
        self.side_op(move |conn, _| backup::backup(conn, &dest)).await
    }

    async fn restore_from(&self, backup: PathBuf) -> Result<BackupSummary> {
        let summary = self.side_op(move |conn, _| backup::restore_live(conn, &backup)).await?;
        // Any key may have changed: watchers re-read.
        let _ = self
            .shared
            .changes
            .send(ChangeEvent::unknown_keys(Versionstamp::from_version(summary.version)));
        Ok(summary)
    }
}

/// Entries per chunk of a streamed snapshot.
const SNAPSHOT_CHUNK: usize = 1000;
const SNAPSHOT_SCAN: &str = "select k, v, v_encoding, version, expiration_ms from kv \
     where expiration_ms < 0 or expiration_ms > ?1 order by k";

/// Reads a snapshot on `conn` inside one read transaction: the header goes to `header`, then
/// the entries in chunks to `chunks` (until the receiver goes away).
fn stream_snapshot(
    conn: &Connection,
    now: i64,
    header: oneshot::Sender<Result<SnapshotHeader>>,
    chunks: &tokio::sync::mpsc::Sender<Result<Option<SnapshotChunk>>>,
) {
    let mut header = Some(header);
    let result = (|| -> Result<()> {
        conn.prepare_cached("begin")?.execute([])?;
        // The header's read starts the read transaction: the entries are of the same moment.
        let first = changelog::snapshot_header(conn, now)?;
        if let Some(tx) = header.take() {
            let _ = tx.send(Ok(first));
        }
        let mut stmt = conn.prepare_cached(SNAPSHOT_SCAN)?;
        let mut rows = stmt.query([now])?;
        let mut chunk = Vec::with_capacity(SNAPSHOT_CHUNK);
        while let Some(row) = rows.next()? {
            let expiration_ms: i64 = row.get(4)?;
            chunk.push((
                row.get::<_, Vec<u8>>(0)?,
                Row {
                    bytes: row.get(1)?,
                    encoding: row.get(2)?,
                    versionstamp: Versionstamp::from_version(row.get::<_, i64>(3)? as u64),
                    expire_at_ms: (expiration_ms >= 0).then_some(expiration_ms),
                },
            ));
            if chunk.len() == SNAPSHOT_CHUNK {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(SNAPSHOT_CHUNK));
                if chunks.blocking_send(Ok(Some(full))).is_err() {
                    return Ok(()); // the reader went away
                }
            }
        }
        if !chunk.is_empty() {
            let _ = chunks.blocking_send(Ok(Some(chunk)));
        }
        // The end: only now is the snapshot whole.
        let _ = chunks.blocking_send(Ok(None));
        Ok(())
    })();
    let _ = conn.prepare_cached("commit").and_then(|mut s| s.execute([]));
    if let Err(e) = result {
        match header.take() {
            Some(tx) => {
                let _ = tx.send(Err(e));
            }
            None => {
                let _ = chunks.blocking_send(Err(e));
            }
        }
    }
}

#[async_trait]
impl ReplicationSource for SqliteBackend {
    async fn log_after(
        &self,
        epoch: Option<String>,
        after: u64,
        max_bytes: usize,
    ) -> Result<LogRead> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        // Inline on a pooled reader, like a snapshot read: one read transaction, bounded by
        // `max_bytes` (a follower polls this often; a connection per call would cost more).
        self.with_reader(|conn| changelog::log_after(conn, epoch.as_deref(), after, max_bytes))
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let now = self.shared.clock.now_ms();
        let (header_tx, header_rx) = oneshot::channel();
        let (chunks_tx, chunks_rx) = tokio::sync::mpsc::channel(4);
        match &self.readers {
            // In memory there is one connection: read it all at once under its lock.
            Readers::Shared(conn) => {
                let conn = conn.clone();
                tokio::task::spawn_blocking(move || {
                    stream_snapshot(&lock(&conn), now, header_tx, &chunks_tx)
                });
            }
            Readers::Pool(pool) => {
                let path = pool.path().to_path_buf();
                std::thread::Builder::new()
                    .name("openkv-snapshot".into())
                    .spawn(move || match open_connection(&path, true) {
                        Ok(conn) => stream_snapshot(&conn, now, header_tx, &chunks_tx),
                        Err(e) => {
                            let _ = header_tx.send(Err(e));
                        }
                    })
                    .map_err(|e| Error::storage_caused("could not start a snapshot thread", e))?;
            }
        }
        let header = header_rx
            .await
            .map_err(|_| Error::Internal("the snapshot thread ended without a header".into()))??;
        Ok(Snapshot::from_channel(header, chunks_rx))
    }

    async fn head(&self) -> Result<u64> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        self.with_reader(|conn| {
            let v: i64 = conn.prepare_cached(shared::GET_VERSION)?.query_row([], |r| r.get(0))?;
            Ok(v as u64)
        })
    }
}

#[async_trait]
impl ReplicaTarget for SqliteBackend {
    async fn replica_position(&self) -> Result<Option<ReplicaPosition>> {
        self.side_op(|conn, _| changelog::position(conn)).await
    }

    async fn install_snapshot(&self, primary_id: uuid::Uuid, snapshot: Snapshot) -> Result<u64> {
        use futures::StreamExt;
        let Snapshot { header, mut entries } = snapshot;
        // The chunks cross to the side connection's thread, which writes them all in one
        // transaction: readers see the old content until it commits. `None` marks the end; a
        // channel closed without it (the stream failed) rolls everything back.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Option<SnapshotChunk>>(4);
        let version = header.version;
        let install = self.side_op(move |conn, _| {
            writer::with_write_txn(conn, |conn| {
                changelog::install_begin(conn, &header)?;
                loop {
                    match rx.blocking_recv() {
                        Some(Some(chunk)) => changelog::install_chunk(conn, &chunk)?,
                        Some(None) => break,
                        None => {
                            return Err(Error::Unavailable(openkv_core::Failure::new(
                                "the snapshot stream broke off; nothing was installed",
                            )))
                        }
                    }
                }
                changelog::install_end(conn, primary_id, &header)
            })
        });
        let feed = async move {
            while let Some(chunk) = entries.next().await {
                // On an error, `tx` is dropped without the end marker: the install rolls back.
                if tx.send(Some(chunk?)).await.is_err() {
                    return Ok(()); // the installer failed; its error is the answer
                }
            }
            let _ = tx.send(None).await;
            Ok(())
        };
        let (fed, installed): (Result<()>, Result<()>) = tokio::join!(feed, install);
        fed?;
        installed?;
        let _ = self
            .shared
            .changes
            .send(ChangeEvent::unknown_keys(Versionstamp::from_version(version)));
        Ok(version)
    }

    async fn apply_log(&self, records: Vec<LogRecord>) -> Result<u64> {
        if records.is_empty() {
            return self.replica_position().await?.map(|p| p.version).ok_or_else(|| {
                Error::Internal("applying a log to a replica never bootstrapped".into())
            });
        }
        let (records, end) = self
            .side_op(move |conn, _| {
                let end = writer::with_write_txn(conn, |conn| changelog::apply(conn, &records))?;
                Ok((records, end))
            })
            .await?;
        for record in &records {
            let keys = changelog::keys_of(&record.changes);
            let _ = self
                .shared
                .changes
                .send(ChangeEvent { versionstamp: record.versionstamp(), keys: keys.into() });
        }
        Ok(end)
    }
}

impl SqliteBackend {
    /// Why the writer did not answer: it died poisoned, or the store was closed.
    fn gone(&self) -> Error {
        match self.shared.poisoned() {
            Some(why) => Error::Poisoned(why),
            None => Error::Closed,
        }
    }
}

impl Drop for SqliteBackend {
    fn drop(&mut self) {
        // Dropping the sender ends the writer after it has drained every queued write; join it
        // so the file is released when the last `Kv` handle goes.
        self.closed.store(true, Ordering::Release);
        let (tx, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.requests, tx));
        if let Some(handle) = lock(&self.writer).take() {
            let _ = handle.join();
        }
    }
}
