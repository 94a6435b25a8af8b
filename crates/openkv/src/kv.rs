//! The public handle: [`Kv`], its [`OpenOptions`] and [`AtomicOperation`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use crate::backend::{
    AtomicWrite, Backend, ChangeEvent, Check, CommitOutcome, Consistency, Mutation, MutationKind,
    QueuedMessage, RawEntry, ReadRange,
};
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::js::{encode_v8, JsValue};
use crate::key::Key;
use crate::limits::Limits;
use crate::validate;
use crate::value::{ToValue, Value};
use crate::versionstamp::Versionstamp;

/// One key's entry: its value as stored ([`Value`]), or decoded into `T` by
/// [`Kv::get_as`] / [`Entry::decode`].
#[derive(Clone, Debug, PartialEq)]
pub struct Entry<T = Value> {
    /// The key.
    pub key: Key,
    /// The value.
    pub value: T,
    /// The versionstamp of the commit that last wrote the key.
    pub versionstamp: Versionstamp,
}

impl Entry {
    /// The same entry with its value decoded into `T` (see [`Value::decode`]).
    pub fn decode<T: serde::de::DeserializeOwned>(self) -> Result<Entry<T>> {
        let value = self.value.decode().map_err(|e| match e {
            Error::Deserialize(m) => Error::Deserialize(format!("at key {}: {m}", self.key)),
            other => other,
        })?;
        Ok(Entry { key: self.key, value, versionstamp: self.versionstamp })
    }

    pub(crate) fn from_raw(raw: RawEntry) -> Result<Entry> {
        Ok(Entry { key: Key::decode(&raw.key)?, value: raw.value, versionstamp: raw.versionstamp })
    }
}

/// How to open a database. Every setting has a default:
///
/// | setting | default |
/// |---|---|
/// | [`limits`](Self::limits) | [`Limits::default()`], Deno's limits |
/// | [`clock`](Self::clock) | [`SystemClock`] |
/// | [`expiry_sweep_interval`](Self::expiry_sweep_interval) | 1 second |
/// | [`rng_seed`](Self::rng_seed) | seeded from the operating system |
/// | [`queue_max_concurrency`](Self::queue_max_concurrency) | 100 deliveries at once (Deno's) |
/// | [`queue_poll_interval`](Self::queue_poll_interval) | 1 second |
/// | [`postgres_pool_size`](Self::postgres_pool_size) (PostgreSQL) | 16 connections |
/// | [`postgres_read_replica`](Self::postgres_read_replica) (PostgreSQL) | none: every read goes to the primary |
/// | [`change_log`](Self::change_log) (SQLite, PostgreSQL) | off: no change log |
/// | [`access_token`](Self::access_token) (remote) | `$DENO_KV_ACCESS_TOKEN` |
/// | [`remote_retry_timeout`](Self::remote_retry_timeout) (remote) | 60 seconds |
/// | [`remote_on_retry`](Self::remote_on_retry) (remote) | none: retries are silent (a `debug` log line each) |
/// | [`remote_request_timeout`](Self::remote_request_timeout) (remote) | 30 seconds |
/// | [`remote_root_certificate`](Self::remote_root_certificate) (remote) | none: the public web roots only |
#[derive(Clone)]
pub struct OpenOptions {
    limits: Limits,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) sweep_interval: Duration,
    pub(crate) rng_seed: Option<u64>,
    queue_max_concurrency: usize,
    queue_poll_interval: Duration,
    pub(crate) postgres_pool_size: usize,
    pub(crate) postgres_read_replica: Option<String>,
    pub(crate) change_log: Option<crate::changelog::LogRetention>,
    /// Open the file as a read replica's copy (set by `open_replica` only).
    pub(crate) replica_store: bool,
    #[cfg(feature = "remote")]
    pub(crate) remote: openkv_remote::RemoteConfig,
}

impl std::fmt::Debug for OpenOptions {
    // By hand: the access token must never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenOptions")
            .field("limits", &self.limits)
            .field("sweep_interval", &self.sweep_interval)
            .field("rng_seed", &self.rng_seed)
            .finish_non_exhaustive()
    }
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            limits: Limits::default(),
            clock: Arc::new(SystemClock),
            sweep_interval: Duration::from_secs(1),
            rng_seed: None,
            queue_max_concurrency: 100,
            queue_poll_interval: Duration::from_secs(1),
            postgres_pool_size: 16,
            postgres_read_replica: None,
            change_log: None,
            replica_store: false,
            #[cfg(feature = "remote")]
            remote: openkv_remote::RemoteConfig::default(),
        }
    }
}

impl OpenOptions {
    /// The defaults in the table above.
    pub fn new() -> Self {
        Self::default()
    }

    /// The limits to enforce (raise them to store values over 64 KiB, for instance).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Where time comes from: expiry and queue deadlines. Use
    /// [`ManualClock`](crate::ManualClock) to test expiry deterministically.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How often the background sweep deletes expired keys from storage. Expired keys are
    /// invisible to reads at once whatever this is; the sweep only reclaims space.
    pub fn expiry_sweep_interval(mut self, every: Duration) -> Self {
        self.sweep_interval = every;
        self
    }

    /// Seeds the random source (queue message ids, retry jitter), for reproducible runs.
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.rng_seed = Some(seed);
        #[cfg(feature = "remote")]
        {
            self.remote.rng_seed = Some(seed);
        }
        self
    }

    /// Queues: how many messages [`Kv::listen_queue`] delivers at once (at least 1).
    pub fn queue_max_concurrency(mut self, n: usize) -> Self {
        self.queue_max_concurrency = n.max(1);
        self
    }

    /// Queues: how often a listener looks for messages that another process enqueued (its own
    /// process's messages wake it at once, and due times are waited for exactly).
    pub fn queue_poll_interval(mut self, every: Duration) -> Self {
        self.queue_poll_interval = every;
        self
    }

    /// PostgreSQL databases: how many pooled connections serve reads and queue calls (the
    /// writer and the change listener have one each besides).
    pub fn postgres_pool_size(mut self, connections: usize) -> Self {
        self.postgres_pool_size = connections.max(1);
        self
    }

    /// PostgreSQL databases: serve [`Consistency::Eventual`] reads from this hot standby of
    /// the primary's cluster (streaming replication; a libpq URL like the primary's, whose
    /// `openkv_schema` it takes when the URL names none), with a pool of
    /// [`postgres_pool_size`](Self::postgres_pool_size) connections of its own. Strong reads,
    /// writes, watches and queues stay on the primary. Opening does not wait for the standby;
    /// while it is down or fails, eventual reads are answered by the primary (logged, and
    /// counted: `openkv_postgres::PostgresBackend::eventual_fallbacks`).
    pub fn postgres_read_replica(mut self, url: impl Into<String>) -> Self {
        self.postgres_read_replica = Some(url.into());
        self
    }

    /// Keep a change log (docs/design.md §14) with this retention: every commit's effects,
    /// written in the commit's own transaction, for read replicas (`openkv serve
    /// --replica-of`) to follow. Off by default in the library (it costs disk space); `openkv
    /// serve` turns it on.
    pub fn change_log(mut self, retention: crate::changelog::LogRetention) -> Self {
        self.change_log = Some(retention);
        self
    }

    /// Remote databases: the access token for the metadata exchange.
    #[cfg(feature = "remote")]
    pub fn access_token(mut self, token: impl Into<String>) -> Self {
        self.remote.access_token = Some(token.into());
        self
    }

    /// Remote databases: how long a request that fails on the network or with a 5xx is
    /// retried (with exponential backoff) before it fails with [`Error::Unavailable`].
    #[cfg(feature = "remote")]
    pub fn remote_retry_timeout(mut self, timeout: Duration) -> Self {
        self.remote.retry_timeout = timeout;
        self
    }

    /// Remote databases: calls `observe` before every pause between two attempts of a
    /// request ([`RemoteRetry`](crate::RemoteRetry): the URL, why the attempt failed, which
    /// retry follows, the pause, the retry timeout), so that a program can say it is still
    /// trying — `openkv`'s command line prints one line on stderr the first time. It runs on
    /// the task making the request: it must be quick and must not block.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    ///
    /// let said = AtomicBool::new(false);
    /// let options = openkv::OpenOptions::new().remote_on_retry(move |retry| {
    ///     if !said.swap(true, Ordering::Relaxed) {
    ///         eprintln!("{} failed ({}), retrying for up to {:?}", retry.url, retry.failure,
    ///             retry.retry_timeout);
    ///     }
    /// });
    /// # drop(options);
    /// ```
    #[cfg(feature = "remote")]
    pub fn remote_on_retry(
        mut self,
        observe: impl Fn(&crate::RemoteRetry<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.remote.on_retry = Some(openkv_remote::RetryObserver::new(observe));
        self
    }

    /// Remote databases: how long one HTTP request may take.
    #[cfg(feature = "remote")]
    pub fn remote_request_timeout(mut self, timeout: Duration) -> Self {
        self.remote.request_timeout = timeout;
        self
    }

    /// Remote databases: trusts this PEM certificate (a private CA, or a server's self-signed
    /// certificate) in addition to the public web roots. May be called more than once.
    #[cfg(feature = "remote")]
    pub fn remote_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.remote.root_certificates.push(pem.into());
        self
    }

    /// A `Kv` over any [`Backend`].
    pub fn with_backend(self, backend: Arc<dyn Backend>) -> Kv {
        Kv {
            inner: Arc::new(Inner {
                backend,
                closed: tokio::sync::watch::Sender::new(false),
                limits: self.limits,
                clock: self.clock,
                queue_max_concurrency: self.queue_max_concurrency,
                queue_poll_interval: self.queue_poll_interval,
                queue_listening: Arc::default(),
            }),
        }
    }
}

#[derive(Debug)]
struct Inner {
    backend: Arc<dyn Backend>,
    /// Flips to `true` at [`Kv::close`]: ends the watch streams of every clone.
    closed: tokio::sync::watch::Sender<bool>,
    limits: Limits,
    clock: Arc<dyn Clock>,
    queue_max_concurrency: usize,
    queue_poll_interval: Duration,
    /// Set while a `listen_queue` runs on this store.
    queue_listening: Arc<std::sync::atomic::AtomicBool>,
}

/// A Deno KV database. Cheap to clone; clones share one store and may be used from any task
/// or thread at once.
#[derive(Clone, Debug)]
pub struct Kv {
    inner: Arc<Inner>,
}

impl Kv {
    /// Opens the SQLite database at `path` with default [`OpenOptions`].
    pub async fn open(path: impl AsRef<Path>) -> Result<Kv> {
        OpenOptions::new().open(path).await
    }

    /// A fresh in-memory database.
    pub async fn open_in_memory() -> Result<Kv> {
        OpenOptions::new().open(":memory:").await
    }

    /// The limits this handle enforces.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Reads one key (strongly consistent). `None` if it does not exist or has expired.
    pub async fn get(&self, key: &Key) -> Result<Option<Entry>> {
        self.get_with(key, Consistency::Strong).await
    }

    /// Reads one key with the given consistency.
    pub async fn get_with(&self, key: &Key, consistency: Consistency) -> Result<Option<Entry>> {
        let mut all = self.get_many_with(std::slice::from_ref(key), consistency).await?;
        Ok(all.pop().flatten())
    }

    /// Reads one key and decodes its value into `T` with serde (`kv.get_as::<User>(&key)`).
    /// A value that does not fit `T` is [`Error::Deserialize`], naming the key.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use openkv::{key, Kv};
    /// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    /// struct User { name: String, age: u32, tags: Vec<String> }
    ///
    /// let kv = Kv::open_in_memory().await?;
    /// let ada = User { name: "Ada".into(), age: 36, tags: vec!["math".into()] };
    /// kv.set(&key!["users", "ada"], &ada).await?; // stored as V8: a plain JS object for Deno
    /// let back = kv.get_as::<User>(&key!["users", "ada"]).await?.unwrap();
    /// assert_eq!(back.value, ada);
    /// # Ok::<(), openkv::Error>(()) }).unwrap();
    /// ```
    pub async fn get_as<T: serde::de::DeserializeOwned>(
        &self,
        key: &Key,
    ) -> Result<Option<Entry<T>>> {
        self.get(key).await?.map(Entry::decode).transpose()
    }

    /// Reads up to 10 keys at one point in time; one result per key, in order.
    pub async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Entry>>> {
        self.get_many_with(keys, Consistency::Strong).await
    }

    /// [`get_many`](Self::get_many) with the given consistency.
    pub async fn get_many_with(
        &self,
        keys: &[Key],
        consistency: Consistency,
    ) -> Result<Vec<Option<Entry>>> {
        let ranges = keys
            .iter()
            .map(|k| {
                let start = k.encode()?;
                let end = [start.as_slice(), &[0x00]].concat();
                Ok(ReadRange { start, end, limit: 1, reverse: false })
            })
            .collect::<Result<Vec<_>>>()?;
        let results = self.snapshot_read(ranges, consistency).await?;
        results.into_iter().map(|mut r| r.pop().map(Entry::from_raw).transpose()).collect()
    }

    /// Stores a value, replacing any value (and expiry) the key had. Returns the commit's
    /// versionstamp.
    pub async fn set(&self, key: &Key, value: impl ToValue) -> Result<Versionstamp> {
        self.atomic().set(key, value).commit().await.and_then(committed)
    }

    /// Stores a value that expires `expire_in` from now (Deno's `expireIn`). From then on no
    /// read sees it; a background sweep deletes it.
    pub async fn set_with_expiry(
        &self,
        key: &Key,
        value: impl ToValue,
        expire_in: Duration,
    ) -> Result<Versionstamp> {
        self.atomic().set_with_expiry(key, value, expire_in).commit().await.and_then(committed)
    }

    /// Stores a value under `key` + one string part holding the commit's versionstamp
    /// (Deno's `kv.set([...key, kv.commitVersionstamp()], value)`). Returns the versionstamp;
    /// the full key is `key.with(versionstamp.to_hex())`.
    pub async fn set_versionstamped(&self, key: &Key, value: impl ToValue) -> Result<Versionstamp> {
        self.atomic().set_versionstamped(key, value).commit().await.and_then(committed)
    }

    /// Deletes a key; a no-op if it does not exist.
    pub async fn delete(&self, key: &Key) -> Result<()> {
        self.atomic().delete(key).commit().await.map(|_| ())
    }

    /// Starts an atomic operation.
    pub fn atomic(&self) -> AtomicOperation {
        AtomicOperation { kv: self.clone(), write: AtomicWrite::default(), error: None }
    }

    /// Reads encoded ranges at one point in time, after checking them against the limits.
    /// The building block of `get`, `list` and a KV Connect server's `snapshot_read`.
    pub async fn snapshot_read(
        &self,
        ranges: Vec<ReadRange>,
        consistency: Consistency,
    ) -> Result<Vec<Vec<RawEntry>>> {
        validate::read_ranges(&self.inner.limits, &ranges)?;
        self.inner.backend.snapshot_read(ranges, consistency).await
    }

    /// Applies an encoded atomic write after checking it against the limits. The building
    /// block of [`AtomicOperation::commit`] and a KV Connect server's `atomic_write`.
    pub async fn atomic_write(&self, write: AtomicWrite) -> Result<CommitOutcome> {
        validate::atomic_write(&self.inner.limits, &write, self.inner.clock.now_ms())?;
        self.inner.backend.atomic_write(write).await
    }

    /// The database's stable id (KV Connect's `databaseId`), kept with its data. The first call
    /// on a SQLite file adds openkv's `openkv_meta` table to it (Deno ignores it).
    pub async fn database_id(&self) -> Result<uuid::Uuid> {
        self.inner.backend.database_id().await
    }

    /// Subscribes to the change feed (every commit's versionstamp and keys; an event with no
    /// keys means "unknown keys", see [`ChangeEvent::keys`]). Remote databases have none
    /// ([`Error::Unsupported`]); [`watch`](Self::watch) works on them.
    pub fn subscribe(&self) -> Result<broadcast::Receiver<ChangeEvent>> {
        self.inner.backend.subscribe()
    }

    /// Waits for queued writes to finish and closes the store. Every handle cloned from this
    /// one fails with [`Error::Closed`] afterwards.
    pub async fn close(&self) -> Result<()> {
        // Watch streams end first: all they could do now is find the store closed.
        self.inner.closed.send_replace(true);
        self.inner.backend.close().await
    }

    /// This database's change log and snapshots, for followers (what `openkv serve`'s
    /// replication endpoints answer from), or why it has none.
    pub fn replication_source(&self) -> Result<Arc<dyn crate::changelog::ReplicationSource>> {
        self.backend().replication()
    }

    /// Starts rebuilding this database in place, in one transaction (see
    /// [`RestoreSession`](crate::RestoreSession)): what a point-in-time restore
    /// into a PostgreSQL schema uses. Refused (with the reason) by backends that cannot.
    pub async fn begin_restore(&self) -> Result<Box<dyn crate::RestoreSession>> {
        self.backend().begin_restore().await
    }

    /// True if [`Consistency::Eventual`] reads may be served by a copy that lags (a read
    /// replica, a PostgreSQL standby): see [`Backend::lagging_eventual_reads`].
    pub fn lagging_eventual_reads(&self) -> bool {
        self.inner.backend.lagging_eventual_reads()
    }

    /// For a read replica ([`OpenOptions::open_replica`], or the URL of an `openkv serve
    /// --replica-of`): how far behind its primary it is. `None` for any other database.
    pub async fn replica_status(&self) -> Result<Option<crate::changelog::ReplicaStatus>> {
        self.inner.backend.replica_status().await
    }

    /// What the storage engine under this handle has done since it opened, as plain numbers
    /// ([`StatsSnapshot`](crate::StatsSnapshot): commits by outcome, commit durations and
    /// batch sizes, entries and bytes read and written, expired keys swept, queue deliveries
    /// by outcome) — the work of this handle and its clones since it opened (another
    /// process, or another `open` of the same file, counts its own). `None` when the backend
    /// keeps no counters (a KV Connect database: its server does).
    /// Reading them costs a few dozen atomic loads; counting them costs the engine a few
    /// relaxed atomic adds per batch, read and delivery (see [`crate::stats`]).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use openkv::{key, Kv};
    /// let kv = Kv::open_in_memory().await?;
    /// kv.set(&key!["a"], b"1".to_vec()).await?;
    /// kv.get(&key!["a"]).await?;
    /// let stats = kv.stats().unwrap();
    /// assert_eq!((stats.commits_ok, stats.read_entries), (1, 1));
    /// # Ok::<(), openkv::Error>(()) }).unwrap();
    /// ```
    pub fn stats(&self) -> Option<crate::StatsSnapshot> {
        self.inner.backend.stats().map(|stats| stats.snapshot())
    }

    /// Sizes and queue depths read from the store now ([`Gauges`](crate::Gauges): database
    /// and WAL bytes, queue messages ready / delayed / in flight, the age of the oldest
    /// ready one); `None` fields where the backend cannot tell (all of them on a KV Connect
    /// database). Each figure costs a query (a count of the queue table among them), so
    /// call it when scraping, not per request.
    pub async fn gauges(&self) -> Result<crate::Gauges> {
        self.inner.backend.gauges().await
    }

    /// Resolves once [`close`](Self::close) was called on this handle or a clone of it.
    pub(crate) async fn closed(&self) {
        let mut closed = self.inner.closed.subscribe();
        // The sender lives as long as `self`, so this returns only once it is `true`.
        let _ = closed.wait_for(|&c| c).await;
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    pub(crate) fn backend(&self) -> Arc<dyn Backend> {
        self.inner.backend.clone()
    }

    /// What `listen_queue` needs: the one-listener flag, the concurrency and the poll interval.
    pub(crate) fn queue_listener_settings(
        &self,
    ) -> (Arc<std::sync::atomic::AtomicBool>, usize, Duration) {
        let inner = &self.inner;
        (inner.queue_listening.clone(), inner.queue_max_concurrency, inner.queue_poll_interval)
    }

    /// Queue delivery, one step at a time (the building blocks of
    /// [`listen_queue`](Self::listen_queue), for a server that hands messages to remote
    /// listeners): takes up to `max` due messages, leased for `lease`. See
    /// [`QueueBackend::queue_take`](crate::QueueBackend::queue_take).
    pub async fn queue_take(&self, max: usize, lease: Duration) -> Result<Vec<QueuedMessage>> {
        self.backend().queues()?.queue_take(max, lease).await
    }

    /// Extends the leases of messages taken with [`queue_take`](Self::queue_take).
    pub async fn queue_renew(&self, ids: Vec<String>, lease: Duration) -> Result<()> {
        self.backend().queues()?.queue_renew(ids, lease).await
    }

    /// Ends delivery attempts of messages taken with [`queue_take`](Self::queue_take), one
    /// `(id, delivered)` each: removed if delivered, else retried per the message's backoff
    /// schedule or dead-lettered.
    pub async fn queue_finish(&self, outcomes: Vec<(String, bool)>) -> Result<()> {
        self.backend().queues()?.queue_finish(outcomes).await
    }

    /// Writes an online backup: a consistent copy of the database as of the moment the copy
    /// starts (every write acknowledged before it, none after) to the new file `dest`, while
    /// other tasks and processes keep writing. The copy is written under a temporary name,
    /// fsynced, checked with [`verify_backup`](openkv_sqlite::verify_backup) and only then renamed to
    /// `dest`; `dest` must not exist. On a remote database the server makes the copy (openkv's
    /// backup endpoint, docs/protocol-extensions.md) and it is downloaded and verified here.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use openkv::{key, Kv, Value};
    /// let dir = tempfile::tempdir().unwrap();
    /// let kv = Kv::open(dir.path().join("live.sqlite3")).await?;
    /// kv.set(&key!["a"], Value::Bytes(b"1".to_vec())).await?;
    /// let summary = kv.backup(dir.path().join("backup.sqlite3")).await?;
    /// assert_eq!(summary.entries, 1);
    /// # Ok::<(), openkv::Error>(()) }).unwrap();
    /// ```
    pub async fn backup(&self, dest: impl AsRef<Path>) -> Result<crate::backend::BackupSummary> {
        self.backend().backups()?.backup(dest.as_ref().to_path_buf()).await
    }

    /// Replaces the whole content of this database — entries and queue — with the backup at
    /// `backup` (first checked with [`verify_backup`](openkv_sqlite::verify_backup)), in one
    /// transaction, while the database stays open: readers and watchers see the old content
    /// or the new, never a mix, and versionstamps keep increasing. On a remote database the
    /// file is uploaded and the server does the same (openkv's restore endpoint). To replace
    /// a closed file instead, see [`restore_backup`](crate::restore_backup).
    pub async fn restore_from(
        &self,
        backup: impl AsRef<Path>,
    ) -> Result<crate::backend::BackupSummary> {
        // A backend that cannot restore says so before the file is read.
        let backups = self.backend().backups()?;
        let backup = backup.as_ref().to_path_buf();
        let checked = backup.clone();
        tokio::task::spawn_blocking(move || openkv_sqlite::verify_backup(&checked))
            .await
            .map_err(|e| Error::Internal(format!("verifying the backup panicked: {e}")))??;
        backups.restore_from(backup).await
    }

    /// A value that changes when this process enqueues a message or the store closes, and,
    /// on a KV Connect database, when `openkv serve` says a message is due (`None`: the
    /// backend cannot tell; poll). Each receiver sees every change, whenever it looks.
    pub fn queue_wakeup(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.backend().queues().ok()?.queue_wakeup()
    }
}

/// The versionstamp of a write without checks, which cannot fail a check.
pub(crate) fn committed(outcome: CommitOutcome) -> Result<Versionstamp> {
    outcome
        .versionstamp()
        .ok_or_else(|| Error::Internal("a write without checks failed a check".into()))
}

/// A group of checks and mutations applied all together or not at all, with one versionstamp.
///
/// Checks run first; if any fails, [`commit`](Self::commit) returns
/// [`CommitOutcome::CheckFailed`] and nothing is written. Mutations then apply in the order
/// they were added (a `set` then `delete` of one key deletes it). If any mutation fails (a sum
/// on a non-`KvU64` value, say) the commit returns the error and nothing is written.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use openkv::{key, Kv, Value};
/// let kv = Kv::open_in_memory().await?;
/// let k = key!["users", "alice"];
/// let created = kv.atomic().check(&k, None).set(&k, Value::Bytes(b"A".to_vec())).commit().await?;
/// assert!(created.is_committed());
/// let again = kv.atomic().check(&k, None).set(&k, Value::Bytes(b"B".to_vec())).commit().await?;
/// assert!(!again.is_committed()); // the key exists now
/// # Ok::<(), openkv::Error>(()) }).unwrap();
/// ```
#[derive(Debug)]
#[must_use = "an atomic operation does nothing until commit() is awaited"]
pub struct AtomicOperation {
    pub(crate) kv: Kv,
    pub(crate) write: AtomicWrite,
    /// The first key that failed to encode; reported by commit so that chaining stays simple.
    pub(crate) error: Option<Error>,
}

impl AtomicOperation {
    fn encode(&mut self, key: &Key) -> Vec<u8> {
        match key.encode() {
            Ok(k) => k,
            Err(e) => {
                self.error.get_or_insert(e);
                Vec::new()
            }
        }
    }

    fn push(mut self, key: &Key, kind: MutationKind, expire_at_ms: Option<i64>) -> Self {
        let key = self.encode(key);
        self.write.mutations.push(Mutation { key, kind, expire_at_ms });
        self
    }

    /// Requires the key's current versionstamp to be `versionstamp` (`None`: the key must not
    /// exist).
    pub fn check(mut self, key: &Key, versionstamp: Option<Versionstamp>) -> Self {
        let key = self.encode(key);
        self.write.checks.push(Check { key, versionstamp });
        self
    }

    /// The stored form of `value`; a conversion error is reported by `commit`.
    pub(crate) fn stored(&mut self, value: impl ToValue) -> Value {
        value.to_value().unwrap_or_else(|e| {
            self.error.get_or_insert(e);
            Value::Bytes(Vec::new())
        })
    }

    /// Stores a value ([`Value`], [`KvU64`](crate::KvU64), `Vec<u8>`, `&JsValue` or `&T` for
    /// any `T: Serialize`; see [`ToValue`]).
    pub fn set(mut self, key: &Key, value: impl ToValue) -> Self {
        let value = self.stored(value);
        self.push(key, MutationKind::Set(value), None)
    }

    /// Stores a value that expires `expire_in` after the commit's start.
    pub fn set_with_expiry(mut self, key: &Key, value: impl ToValue, expire_in: Duration) -> Self {
        let value = self.stored(value);
        let at =
            self.kv.now_ms().saturating_add(expire_in.as_millis().min(i64::MAX as u128) as i64);
        self.push(key, MutationKind::Set(value), Some(at))
    }

    /// Stores a value under `key` + the commit's versionstamp as a string part.
    pub fn set_versionstamped(mut self, key: &Key, value: impl ToValue) -> Self {
        let value = self.stored(value);
        self.push(key, MutationKind::SetSuffixVersionstampedKey(value), None)
    }

    /// Deletes a key.
    pub fn delete(self, key: &Key) -> Self {
        self.push(key, MutationKind::Delete, None)
    }

    /// Adds `n` to the `KvU64` at `key`, wrapping modulo 2^64 (a missing key becomes `n`).
    pub fn sum(self, key: &Key, n: u64) -> Self {
        self.push(key, MutationKind::Sum(Value::U64(n)), None)
    }

    /// Adds a JavaScript `number` or `bigint` to the number or bigint stored at `key` (a
    /// missing key becomes `n`); the stored and added types must match.
    pub fn sum_js(self, key: &Key, n: &JsValue) -> Self {
        self.sum_js_with_limits(key, n, None, None, false)
    }

    /// [`sum_js`](Self::sum_js) with bounds: a result below `min` or above `max` (of `n`'s
    /// type) is clamped to the bound if `clamp`, else the commit fails and writes nothing.
    pub fn sum_js_with_limits(
        mut self,
        key: &Key,
        n: &JsValue,
        min: Option<&JsValue>,
        max: Option<&JsValue>,
        clamp: bool,
    ) -> Self {
        let v8 = |v: &JsValue| encode_v8(v).map(Value::V8);
        match (v8(n), min.map(v8).transpose(), max.map(v8).transpose()) {
            (Ok(operand), Ok(min), Ok(max)) => {
                self.push(key, MutationKind::SumWithLimits { operand, min, max, clamp }, None)
            }
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                self.error.get_or_insert(Error::InvalidValue(e.to_string()));
                self
            }
        }
    }

    /// Keeps the smaller of the `KvU64` at `key` and `n` (a missing key becomes `n`).
    pub fn min(self, key: &Key, n: u64) -> Self {
        self.push(key, MutationKind::Min(Value::U64(n)), None)
    }

    /// Keeps the larger of the `KvU64` at `key` and `n` (a missing key becomes `n`).
    pub fn max(self, key: &Key, n: u64) -> Self {
        self.push(key, MutationKind::Max(Value::U64(n)), None)
    }

    /// Adds a mutation given in the backend's terms (an encoded key).
    pub fn mutate(mut self, mutation: Mutation) -> Self {
        self.write.mutations.push(mutation);
        self
    }

    /// Applies everything, or nothing.
    pub async fn commit(self) -> Result<CommitOutcome> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.kv.atomic_write(self.write).await
    }
}
