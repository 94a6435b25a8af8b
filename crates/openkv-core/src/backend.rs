//! The backend seam: what a storage engine must provide for `openkv::Kv` to run on it.
//!
//! The types here are the engine's wire-level vocabulary, shaped like KV Connect's
//! `datapath.proto` (encoded keys, ranges with limits, checks, mutations, enqueues) so that a
//! remote KV Connect server, PostgreSQL or FoundationDB can implement [`Backend`] by translating
//! one-to-one. Validation of limits happens above the backend, in `Kv`, once for all backends.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::error::Result;
use crate::value::Value;
use crate::versionstamp::Versionstamp;

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Consistency {
    /// Sees every write acknowledged before the read started. The default.
    #[default]
    Strong,
    /// May be served by a replica that lags behind. On a single SQLite file every read is
    /// strong, so this is the same as `Strong` there.
    Eventual,
}

/// One range of a snapshot read: encoded keys in `[start, end)`, at most `limit` of them,
/// ascending or (if `reverse`) descending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadRange {
    /// Inclusive lower bound (encoded key bytes).
    pub start: Vec<u8>,
    /// Exclusive upper bound.
    pub end: Vec<u8>,
    /// Most entries to return; at least 1.
    pub limit: u32,
    /// Return the last `limit` entries of the range, highest first.
    pub reverse: bool,
}

/// An entry as a backend returns it: the key still encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawEntry {
    /// Encoded key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Value,
    /// The versionstamp of the commit that last wrote the key.
    pub versionstamp: Versionstamp,
    /// When the entry expires, in milliseconds since the Unix epoch; `None` if it never does,
    /// or if the backend cannot tell (KV Connect carries no expiry: the remote backend always
    /// says `None`). What `openkv export` writes as `expireAt`.
    pub expire_at_ms: Option<i64>,
}

/// A precondition of an atomic write: the key's current versionstamp is `versionstamp`
/// (`None`: the key does not exist, or has expired).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// Encoded key.
    pub key: Vec<u8>,
    /// The expected versionstamp, or `None` for "must not exist".
    pub versionstamp: Option<Versionstamp>,
}

/// What a mutation does to its key.
///
/// Deliberately not `#[non_exhaustive]`: the planner and the wire layer match every kind
/// without a catch-all, so a new kind fails to compile until both handle it (in this crate
/// and in every crate outside it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MutationKind {
    /// Store the value (replacing any value and expiry).
    Set(Value),
    /// Remove the key; a no-op if it does not exist.
    Delete,
    /// Add: a `U64` operand to a stored `KvU64`, wrapping modulo 2^64; or a V8 `number` or
    /// `bigint` operand to a stored value of the same type (see [`MutationKind::SumWithLimits`]).
    /// A missing key becomes the operand.
    Sum(Value),
    /// A V8 `number`/`bigint` sum with optional bounds (KV Connect's `sum_min`, `sum_max`,
    /// `sum_clamp`): a result outside `[min, max]` is clamped to it if `clamp`, else the write
    /// fails ("The result of a Sum operation would exceed its range limit"). `min`/`max` are
    /// V8 values of the operand's type.
    SumWithLimits {
        /// The V8 `number` or `bigint` to add.
        operand: Value,
        /// Lower bound (V8), if any.
        min: Option<Value>,
        /// Upper bound (V8), if any.
        max: Option<Value>,
        /// Clamp into the bounds instead of failing.
        clamp: bool,
    },
    /// Keep the smaller of the stored `U64` and the operand; a missing key becomes the operand.
    Min(Value),
    /// Keep the larger of the stored `U64` and the operand; a missing key becomes the operand.
    Max(Value),
    /// Store the value under the key with one string part appended: the commit's versionstamp
    /// as 20 hex digits (Deno's `commitVersionstamp()`).
    SetSuffixVersionstampedKey(Value),
}

impl MutationKind {
    /// True for `sum`, `min` and `max`: their result depends on the stored value, so a backend
    /// must read the key first, and they can reject their write after earlier mutations of it
    /// were applied (a stored value of the wrong type, a bound exceeded).
    pub fn combines_stored_value(&self) -> bool {
        match self {
            MutationKind::Sum(_)
            | MutationKind::SumWithLimits { .. }
            | MutationKind::Min(_)
            | MutationKind::Max(_) => true,
            MutationKind::Set(_)
            | MutationKind::Delete
            | MutationKind::SetSuffixVersionstampedKey(_) => false,
        }
    }

    /// True for the kinds that store a value of the caller's and so may carry an expiry: `set`
    /// and `set` at a versionstamped key. (Numeric results never expire, as in Deno.)
    pub fn may_expire(&self) -> bool {
        match self {
            MutationKind::Set(_) | MutationKind::SetSuffixVersionstampedKey(_) => true,
            MutationKind::Delete
            | MutationKind::Sum(_)
            | MutationKind::SumWithLimits { .. }
            | MutationKind::Min(_)
            | MutationKind::Max(_) => false,
        }
    }

    /// The value or operand carried by this mutation, if any.
    pub fn value(&self) -> Option<&Value> {
        match self {
            MutationKind::Set(v)
            | MutationKind::Sum(v)
            | MutationKind::Min(v)
            | MutationKind::Max(v)
            | MutationKind::SetSuffixVersionstampedKey(v) => Some(v),
            MutationKind::SumWithLimits { operand, .. } => Some(operand),
            MutationKind::Delete => None,
        }
    }
}

/// The key a [`MutationKind::SetSuffixVersionstampedKey`] writes: `prefix` (an encoded key)
/// with one string part appended, the commit's versionstamp as 20 hex digits.
pub(crate) fn versionstamped_key(prefix: &[u8], versionstamp: Versionstamp) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 22);
    key.extend_from_slice(prefix);
    key.push(0x02);
    key.extend_from_slice(versionstamp.to_hex().as_bytes());
    key.push(0x00);
    key
}

/// What a backup or restore found in the database file it made or read (see
/// [`BackupBackend::backup`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackupSummary {
    /// Rows in the `kv` table (expired ones included: they are part of the file).
    pub entries: u64,
    /// Messages waiting or running in the queue tables.
    pub queued_messages: u64,
    /// The commit counter (the newest versionstamp's first 8 bytes).
    pub version: u64,
    /// The file's size in bytes.
    pub size: u64,
}

impl BackupSummary {
    /// A summary of these counts (the struct is `#[non_exhaustive]`: backends outside this
    /// crate build it here).
    pub fn new(entries: u64, queued_messages: u64, version: u64, size: u64) -> BackupSummary {
        BackupSummary { entries, queued_messages, version, size }
    }
}

/// One mutation of an atomic write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mutation {
    /// Encoded key.
    pub key: Vec<u8>,
    /// What to do.
    pub kind: MutationKind,
    /// For `Set`/`SetSuffixVersionstampedKey`: the absolute expiry time in Unix milliseconds;
    /// `None` means never.
    pub expire_at_ms: Option<i64>,
}

/// A queue message written by an atomic write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enqueue {
    /// V8-serialized message.
    pub payload: Vec<u8>,
    /// Earliest delivery time, Unix milliseconds.
    pub deadline_ms: i64,
    /// Encoded keys that receive the payload if delivery finally fails.
    pub keys_if_undelivered: Vec<Vec<u8>>,
    /// Retry intervals in milliseconds; `None` means Deno's default schedule.
    pub backoff_schedule: Option<Vec<u32>>,
}

/// An atomic write: all checks, then all mutations in order, then the enqueues — all applied
/// together with one versionstamp, or nothing at all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AtomicWrite {
    /// Preconditions.
    pub checks: Vec<Check>,
    /// Mutations, applied in order.
    pub mutations: Vec<Mutation>,
    /// Queue messages.
    pub enqueues: Vec<Enqueue>,
}

/// The outcome of an atomic write that reached the store.
///
/// Deliberately not `#[non_exhaustive]`: the wire layer maps every outcome without a
/// catch-all, so a new one must break its build until it has a wire form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Everything was applied; this is the commit's versionstamp.
    Committed {
        /// Shared by every mutation of the write.
        versionstamp: Versionstamp,
    },
    /// At least one check failed; nothing was applied.
    CheckFailed {
        /// Indexes (in the write's check list) of every check that failed.
        failed_checks: Vec<u32>,
    },
}

impl CommitOutcome {
    /// True if the write was applied.
    pub fn is_committed(&self) -> bool {
        self.versionstamp().is_some()
    }

    /// The commit's versionstamp, if it was applied.
    pub fn versionstamp(&self) -> Option<Versionstamp> {
        match self {
            CommitOutcome::Committed { versionstamp } => Some(*versionstamp),
            CommitOutcome::CheckFailed { .. } => None,
        }
    }
}

/// One committed change, as published on the change feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeEvent {
    /// The versionstamp the change committed at.
    pub versionstamp: Versionstamp,
    /// Encoded keys whose value changed (written, deleted or expired).
    ///
    /// **Empty means "unknown keys"**: a commit another process made to the same file (the
    /// SQLite backend notices those by polling, see `docs/design.md` §12), or a commit of this
    /// process that only enqueued. A follower cannot tell the two apart and must treat the
    /// event as "anything may have changed": re-read what it follows and compare
    /// ([`ChangeEvent::may_affect`] says so).
    pub keys: Arc<[Vec<u8>]>,
}

impl ChangeEvent {
    /// An event that names no key: anything may have changed, as of `versionstamp`.
    pub fn unknown_keys(versionstamp: Versionstamp) -> ChangeEvent {
        ChangeEvent { versionstamp, keys: Arc::from(Vec::new()) }
    }

    /// True if this change may have changed `key` (encoded): it names it, or it names no key
    /// at all.
    pub fn may_affect(&self, key: &[u8]) -> bool {
        self.keys.is_empty() || self.keys.iter().any(|k| k.as_slice() == key)
    }
}

/// What [`Backend::watch`] yields: one entry (or `None`: absent) per watched key, in order.
pub type WatchSnapshots = futures::stream::BoxStream<'static, Result<Vec<Option<RawEntry>>>>;

/// A queue message taken for delivery (leased to the taker until it finishes or the lease
/// runs out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedMessage {
    /// The message's id (a UUID string in Deno's tables).
    pub id: String,
    /// V8-serialized message.
    pub payload: Vec<u8>,
    /// When it was due, Unix milliseconds.
    pub due_ms: i64,
    /// The retry intervals left, in milliseconds.
    pub backoff_schedule: Vec<u32>,
    /// Encoded keys that receive the payload if the last attempt fails.
    pub keys_if_undelivered: Vec<Vec<u8>>,
    /// Which delivery attempt this is, from 1 (counted by the backend, across restarts).
    pub attempt: u32,
}

/// Where a queue message stands, as [`QueueBackend::queue_inspect`] sees it at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum QueueMessageState {
    /// Due now: the next take delivers it. This includes a message whose lease ran out (its
    /// listener is presumed dead): it is delivered again, and due since its lease ended.
    Ready,
    /// Waiting until a later time: enqueued with a delay, or waiting out a backoff interval
    /// after a failed attempt.
    Delayed,
    /// Leased to a listener (in flight): an attempt is under way until it finishes or the
    /// lease runs out.
    Running,
}

/// One queue message as an operator sees it (what [`QueueBackend::queue_inspect`] lists).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueMessageInfo {
    /// The message's id (a UUID string in Deno's tables), stable across attempts: what
    /// [`QueueBackend::queue_change`] takes.
    pub id: String,
    /// The enqueued value as stored: always [`Value::V8`] (a Deno queue holds V8-serialized
    /// messages), for `Value::to_js`, `value_to_json` or `decode`.
    pub payload: Value,
    /// Ready, delayed or running, at the moment of the listing.
    pub state: QueueMessageState,
    /// Unix milliseconds: when it is (or was) due; for a running message, when its lease runs
    /// out (it is delivered again then unless its listener renews or finishes it).
    pub due_at_ms: i64,
    /// Delivery attempts started so far (a running message's current attempt included): 0
    /// for a message never taken. Counted by openkv's backends; on a SQLite file, a take by
    /// Deno CLI (which keeps no count) is not counted.
    pub attempts: u32,
    /// The retry intervals left, in milliseconds: each failed attempt uses the first one.
    /// Empty: the next failure is the last, and sends the payload to `keys_if_undelivered`.
    pub backoff_ms: Vec<u32>,
    /// Encoded keys (`Key::decode` reads them) that receive the payload if its last attempt
    /// fails; empty: it is dropped then.
    pub keys_if_undelivered: Vec<Vec<u8>>,
}

impl QueueMessageInfo {
    /// A message's description (the struct is `#[non_exhaustive]`: backends outside this
    /// crate build it here). The fields say what each argument is.
    pub fn new(
        id: String,
        payload: Value,
        state: QueueMessageState,
        due_at_ms: i64,
        attempts: u32,
        backoff_ms: Vec<u32>,
        keys_if_undelivered: Vec<Vec<u8>>,
    ) -> QueueMessageInfo {
        QueueMessageInfo {
            id,
            payload,
            state,
            due_at_ms,
            attempts,
            backoff_ms,
            keys_if_undelivered,
        }
    }

    /// The order of a listing: running messages first, then by due time, then by id.
    pub fn listing_order(&self) -> (bool, i64, &str) {
        (self.state != QueueMessageState::Running, self.due_at_ms, self.id.as_str())
    }
}

/// A database's queue at one moment ([`QueueBackend::queue_inspect`]): how many messages are
/// in each state (all of them, read in one transaction, so the counts agree with each other
/// and with the list), and the first messages in [listing order](QueueMessageInfo::listing_order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueListing {
    /// Messages due now (lapsed leases included).
    pub ready: u64,
    /// Messages due later.
    pub delayed: u64,
    /// Messages leased to a listener.
    pub running: u64,
    /// Up to the `limit` asked for: running ones first, then by due time, then by id.
    pub messages: Vec<QueueMessageInfo>,
}

impl QueueListing {
    /// A listing of these counts and messages (the struct is `#[non_exhaustive]`: backends
    /// outside this crate build it here).
    pub fn new(
        ready: u64,
        delayed: u64,
        running: u64,
        messages: Vec<QueueMessageInfo>,
    ) -> QueueListing {
        QueueListing { ready, delayed, running, messages }
    }

    /// Every message's total.
    pub fn total(&self) -> u64 {
        self.ready + self.delayed + self.running
    }
}

/// An operator's change to one queue message ([`QueueBackend::queue_change`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum QueueChange {
    /// Deletes the message, waiting or running. A listener that later finishes a removed
    /// running message changes nothing (finishing ignores ids no longer running): it is never
    /// delivered again and its dead-letter keys are not written.
    Remove,
    /// Makes a waiting message (delayed, or ready) due at the clock's now — one already due
    /// keeps its earlier due time, and so its place — and wakes the listeners. A running
    /// message is refused with [`Error::QueueMessageInFlight`](crate::Error::QueueMessageInFlight):
    /// its attempt is under way.
    DueNow,
}

/// A storage engine under `openkv::Kv`.
///
/// Implementations may assume their input passed `Kv`'s validation (limits, non-empty write
/// keys, `U64` operands are the caller's business only in the sense that a non-`U64` operand
/// must produce [`Error::TypeMismatch`](crate::Error::TypeMismatch), not a panic).
#[async_trait]
pub trait Backend: Send + Sync + Debug + 'static {
    /// Reads every range at one consistent point in time and returns one entry list per range,
    /// in request order. Expired entries are never returned.
    async fn snapshot_read(
        &self,
        ranges: Vec<ReadRange>,
        consistency: Consistency,
    ) -> Result<Vec<Vec<RawEntry>>>;

    /// Applies an atomic write all-or-nothing. A failed check is `Ok(CheckFailed)`; an error
    /// means nothing was applied (or, for storage errors, that the store is now poisoned).
    async fn atomic_write(&self, write: AtomicWrite) -> Result<CommitOutcome>;

    /// Subscribes to the change feed: one event per commit (and per expiry sweep that removed
    /// keys) from the moment of subscribing. A lagging receiver gets `Lagged` and should
    /// re-read what it follows. A backend without a change feed (the KV Connect client)
    /// answers [`Error::Unsupported`](crate::Error::Unsupported).
    fn subscribe(&self) -> Result<broadcast::Receiver<ChangeEvent>>;

    /// Follows encoded keys: the first item is their current entries (`None`: absent), then
    /// a new snapshot whenever a versionstamp of one of them changed; never two equal ones in
    /// a row. An error item ends the stream. `Kv` has checked `keys` (1 to
    /// `max_watched_keys` keys, each a valid read key) and ends the stream when it is closed.
    ///
    /// A backend with a change feed answers
    /// [`watch::follow_change_feed(self, keys)`](crate::watch::follow_change_feed): it
    /// [`subscribe`](Self::subscribe)s first (so no commit between it and the first read is
    /// missed), then does one [`snapshot_read`](Self::snapshot_read) of the keys per event that
    /// [may affect](ChangeEvent::may_affect) one of them, or after a lag. A backend without one
    /// follows the keys its own way (the KV Connect client speaks `/watch`). (No default body:
    /// the follower is built on this trait, and the trait does not depend back on it.)
    fn watch(self: Arc<Self>, keys: Vec<Vec<u8>>) -> Result<WatchSnapshots>;

    /// A stable, random identifier of this database, kept with its data (KV Connect's
    /// `databaseId`). Created on first use.
    async fn database_id(&self) -> Result<uuid::Uuid>;

    /// Finishes queued writes and releases the storage. Later calls fail with `Closed`.
    async fn close(&self) -> Result<()>;

    /// This backend's queue delivery ([`QueueBackend`]), or why it has none
    /// ([`Error::Unsupported`](crate::Error::Unsupported), in words). A backend with queues
    /// implements the trait and answers `Ok(self)`. (Enqueuing is part of
    /// [`atomic_write`](Self::atomic_write) on every backend; this is delivery.)
    fn queues(self: Arc<Self>) -> Result<Arc<dyn QueueBackend>> {
        Err(crate::Error::Unsupported("this backend does not deliver queue messages".into()))
    }

    /// This backend's online backup and restore ([`BackupBackend`]), or why it has none
    /// ([`Error::Unsupported`](crate::Error::Unsupported), in words: the PostgreSQL backend
    /// points at `pg_dump` and `openkv export`).
    fn backups(self: Arc<Self>) -> Result<Arc<dyn BackupBackend>> {
        Err(crate::Error::Unsupported("this backend cannot make backups".into()))
    }

    /// This backend's change log and snapshots for followers
    /// ([`ReplicationSource`](crate::changelog::ReplicationSource)), or why it has none.
    fn replication(self: Arc<Self>) -> Result<Arc<dyn crate::changelog::ReplicationSource>> {
        Err(crate::Error::Unsupported("this backend keeps no change log to follow".into()))
    }

    /// This backend as a follower's local store
    /// ([`ReplicaTarget`](crate::changelog::ReplicaTarget)), or why it cannot be one.
    fn replica_target(self: Arc<Self>) -> Result<Arc<dyn crate::changelog::ReplicaTarget>> {
        Err(crate::Error::Unsupported("this backend cannot hold a replica".into()))
    }

    /// Starts rebuilding this database's whole content in one transaction
    /// ([`RestoreSession`]: a snapshot, then records, then
    /// `commit`), as a point-in-time restore into a live store does; or why it cannot.
    async fn begin_restore(self: Arc<Self>) -> Result<Box<dyn RestoreSession>> {
        Err(crate::Error::Unsupported(
            "this backend cannot be rebuilt in place from a snapshot and a log".into(),
        ))
    }

    /// True if [`Consistency::Eventual`] reads may be served from a copy that lags behind
    /// (a read replica's local copy, a PostgreSQL hot standby): `openkv serve` then lists an
    /// eventual endpoint in its metadata and answers reads there
    /// `read_is_strongly_consistent = false`. Default: false (every read is strong).
    fn lagging_eventual_reads(&self) -> bool {
        false
    }

    /// For a backend that follows a primary (a read replica), or a remote server that is
    /// one: how far behind it is. `None` for every other backend.
    async fn replica_status(&self) -> Result<Option<crate::changelog::ReplicaStatus>> {
        Ok(None)
    }

    /// The counters this backend keeps of its own work (commits, reads, sweeps, deliveries:
    /// [`EngineStats`](crate::stats::EngineStats)), shared with its writer and readers; a
    /// caller snapshots them when it needs the numbers. `None` (the default): it keeps none
    /// (a KV Connect database's engine is the server's).
    fn stats(&self) -> Option<Arc<crate::stats::EngineStats>> {
        None
    }

    /// Sizes and queue depths read from the store now ([`Gauges`](crate::stats::Gauges)),
    /// each with one cheap query; what a backend cannot tell is `None`. The default: nothing
    /// known. Meant for a scrape every few seconds, not for a hot path.
    async fn gauges(&self) -> Result<crate::stats::Gauges> {
        Ok(crate::stats::Gauges::default())
    }
}

/// Queue delivery, an optional capability of a [`Backend`] (handed out by
/// [`Backend::queues`]): the four steps `Kv::listen_queue` and `openkv serve`'s queue
/// endpoints are built on, and the wake-up that spares a listener from polling.
#[async_trait]
pub trait QueueBackend: Send + Sync + 'static {
    /// Takes up to `max` messages that are due, earliest first, leasing each for `lease` (a
    /// message whose lease runs out is due again: its taker is presumed dead).
    async fn queue_take(&self, max: usize, lease: Duration) -> Result<Vec<QueuedMessage>>;

    /// Extends the leases of running messages (ids no longer running are ignored).
    async fn queue_renew(&self, ids: Vec<String>, lease: Duration) -> Result<()>;

    /// Ends delivery attempts, one `(id, delivered)` per message, together (one transaction
    /// where the backend can): `delivered` removes the message; otherwise it is due again
    /// after the next backoff interval, or, with none left, its payload is written to its
    /// `keys_if_undelivered` keys (the engine's [`finish_attempt`](crate::engine::finish::finish_attempt)
    /// decides which). Ids that are no longer running are ignored.
    async fn queue_finish(&self, outcomes: Vec<(String, bool)>) -> Result<()>;

    /// When the queue next needs attention (Unix ms): a message falling due or a lease
    /// running out; `None` when the queue is empty.
    async fn queue_next_due(&self) -> Result<Option<i64>>;

    /// Changes (at least) when this process enqueues a message or closes the store, so that
    /// a listener need not poll for its own messages; a remote backend's changes when its
    /// server says a message is due. `None`: poll only.
    fn queue_wakeup(self: Arc<Self>) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// The queue for an operator (a console): the counts of ready, delayed and running
    /// messages (all of them) and up to `limit` messages with their payloads, running ones
    /// first, then by due time, then by id — all read in one transaction at the clock's now.
    /// Reads only. The default: [`Error::Unsupported`](crate::Error::Unsupported) (a KV
    /// Connect database: the protocol cannot list a queue).
    async fn queue_inspect(&self, limit: usize) -> Result<QueueListing> {
        let _ = limit;
        Err(crate::Error::Unsupported("this backend cannot list its queue messages".into()))
    }

    /// Applies an operator's `change` to the message `id` ([`QueueChange`]); `Ok(false)`
    /// when no message has that id (delivered, removed, or never there). The default:
    /// [`Error::Unsupported`](crate::Error::Unsupported), as for
    /// [`queue_inspect`](Self::queue_inspect).
    async fn queue_change(&self, id: &str, change: QueueChange) -> Result<bool> {
        let _ = (id, change);
        Err(crate::Error::Unsupported("this backend cannot change its queue messages".into()))
    }
}

/// A live store being rebuilt (a point-in-time restore into it), handed out by
/// [`Backend::begin_restore`]: the [`ReplicaTarget`](crate::changelog::ReplicaTarget) calls
/// (one snapshot, then chained records) all go into one transaction, which [`commit`]
/// makes visible at once — readers see the old content until then, never a part — and
/// dropping the session without committing abandons it, changing nothing.
///
/// [`commit`]: RestoreSession::commit
#[async_trait]
pub trait RestoreSession: crate::changelog::ReplicaTarget {
    /// Makes the rebuilt content the database's, atomically: the commit counter moves past
    /// both the old content's and the restored one's (later commits get greater
    /// versionstamps than anything before), the change log starts a new epoch (followers
    /// bootstrap again), watchers are woken. Returns what the database now holds.
    async fn commit(self: Box<Self>) -> Result<BackupSummary>;
}

/// Online backup and restore, an optional capability of a [`Backend`] (handed out by
/// [`Backend::backups`]). A backup is a SQLite file in Deno's format, whatever the backend.
#[async_trait]
pub trait BackupBackend: Send + Sync + 'static {
    /// Writes a consistent, verified copy of the whole database to the new file `dest` (see
    /// `Kv::backup`) while writers go on.
    async fn backup(&self, dest: std::path::PathBuf) -> Result<BackupSummary>;

    /// Replaces the database's whole content with the backup at `backup` (already verified
    /// by the caller), atomically, while it stays open (see `Kv::restore_from`).
    async fn restore_from(&self, backup: std::path::PathBuf) -> Result<BackupSummary>;
}
