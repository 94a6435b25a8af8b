//! # openkv — Deno KV in Rust
//!
//! An ordered, versioned key-value store with the data model of
//! [Deno KV](https://docs.deno.com/deploy/kv/manual/): keys are tuples of typed parts, every
//! commit gets a 10-byte versionstamp, atomic operations combine checks (optimistic locking)
//! with set, delete and `KvU64` sum/min/max, and keys can expire. It runs embedded on SQLite,
//! in **the very file format Deno CLI writes**: openkv opens a database Deno created and Deno
//! opens one openkv created.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use openkv::{key, Kv, KvU64, Value};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let kv = Kv::open(dir.path().join("app.sqlite3")).await?;
//!
//! let alice = key!["users", "alice"];
//! let stamp = kv.set(&alice, Value::Bytes(b"Alice".to_vec())).await?;
//! let entry = kv.get(&alice).await?.expect("just written");
//! assert_eq!(entry.value, Value::Bytes(b"Alice".to_vec()));
//! assert_eq!(entry.versionstamp, stamp);
//!
//! // Optimistic locking: only succeeds if nobody changed the key since we read it.
//! let visits = key!["visits"];
//! let outcome = kv
//!     .atomic()
//!     .check(&alice, Some(entry.versionstamp))
//!     .sum(&visits, 1)
//!     .commit()
//!     .await?;
//! assert!(outcome.is_committed());
//! assert_eq!(kv.get(&visits).await?.unwrap().value, Value::from(KvU64(1)));
//! kv.close().await?;
//! # Ok::<(), openkv::Error>(()) }).unwrap();
//! ```
//!
//! ## What it is
//! - [`Kv`]: the handle (cheap to clone, shared by any number of tasks and threads):
//!   [`get`](Kv::get), [`get_many`](Kv::get_many), [`list`](Kv::list) (a `Stream`, with Deno's
//!   selectors, limits, reverse order and cursors), [`set`](Kv::set) (optionally expiring),
//!   [`delete`](Kv::delete), [`atomic`](Kv::atomic).
//! - [`Key`] / [`KeyPart`] / [`key!`]: keys, encoded byte for byte as Deno encodes them, ordered
//!   as their encodings are.
//! - [`Value`]: the three storage encodings — V8-serialized bytes, raw bytes, `KvU64`.
//! - JavaScript values ([`js`]): [`JsValue`] decodes every value Deno stores (objects, arrays,
//!   `Map`, `Set`, `Date`, typed arrays, errors, shared and circular references, …) from its
//!   V8 bytes and encodes it back ([`decode_v8`], [`encode_v8`]); serde maps Rust types to the
//!   natural JS value (`kv.set(&key, &my_struct)`, [`Kv::get_as`], table at [`to_js`]); a
//!   typed JSON rendering ([`to_json`]) shows any value to humans and tools losslessly.
//! - [`Versionstamp`]: strictly increasing across commits, reopen and processes.
//! - [`Kv::watch`]: a [`WatchStream`] of up to 10 keys — their entries now, then a new
//!   snapshot whenever one changes (written, deleted, expired; also by another process on the
//!   same file, or through a KV Connect server's `/watch`).
//! - Queues: [`Kv::enqueue`] / [`AtomicOperation::enqueue`] ([`EnqueueOptions`]: delay,
//!   backoff schedule, dead-letter keys) and [`Kv::listen_queue`], delivering **at least
//!   once** in Deno's own queue tables — messages cross between openkv and Deno CLI processes
//!   sharing a file, survive a `kill -9` of the listener (leases), and reach remote listeners
//!   through `openkv serve` (docs/protocol-extensions.md).
//! - [`transfer`]: the database in and out as NDJSON (the [`export`] line format) —
//!   [`Importer`](transfer::Importer) (batched, resumable, with a per-line failure report),
//!   [`ExportScan`](transfer::ExportScan) and a consistent [`Snapshot`](transfer::Snapshot)
//!   to export from; what `openkv export`/`import` and `openkv serve`'s console run.
//! - [`default_database_path`]: where a program that opens no path keeps its database
//!   (`<data directory>/openkv/<app>/kv.sqlite3`, like Deno's per-script default).
//! - [`Backend`]: the seam under `Kv`; SQLite, PostgreSQL and the KV Connect client are its
//!   three implementations.
//! - A **PostgreSQL backend** (feature `postgres`, on by default):
//!   `Kv::open("postgres://user@host/db?openkv_schema=NAME")` keeps the database in one
//!   PostgreSQL schema (created and migrated on first use; default `openkv`), which any number of
//!   processes — many `openkv serve` behind a load balancer — use at once with the same
//!   semantics: versionstamps increase in commit order across all of them, checks serialize,
//!   watchers see every process's writes (`LISTEN`/`NOTIFY`), and each queue message goes to
//!   one listener of the cluster at a time. Limits: no TLS to PostgreSQL, no
//!   [`Kv::backup`] (use `pg_dump`, or `openkv export`/`import`). docs/design.md §13.
//! - A **KV Connect client** (feature `remote`, on by default): `Kv::open("http://…")` or
//!   `"https://…"` reaches `openkv serve`, `denokv` or any server Deno's
//!   `Deno.openKv(url)` reaches, with the same API as a local file. The token comes from
//!   [`OpenOptions::access_token`] or `DENO_KV_ACCESS_TOKEN`. Network failures and 5xx are
//!   retried with backoff (until [`OpenOptions::remote_retry_timeout`], then
//!   [`Error::Unavailable`]); the server's 4xx is final ([`Error::Remote`], with its message);
//!   a write whose answer was lost is [`Error::OutcomeUnknown`], never sent twice.
//!
//! ## What it is not
//! - Not a server: `openkv-server` serves a `Kv` over KV Connect.
//! - Not distributed on its own: one SQLite file serves the processes of one machine; to spread
//!   over machines, put the database in PostgreSQL and run stateless servers in front of it.
//!
//! ## Guarantees
//! - A commit that returned `Ok` is on disk (SQLite `synchronous = FULL` in WAL mode;
//!   PostgreSQL's `COMMIT` returned).
//! - An atomic operation applies all its mutations or none; a failed check is a normal
//!   [`CommitOutcome::CheckFailed`], not an error.
//! - Expired keys are invisible to every read and every check from the moment they expire.
//! - After an I/O error on the write path the store refuses writes ([`Error::Poisoned`])
//!   until it is reopened, rather than guess what reached the disk. A malformed stored row is
//!   [`Error::Corrupt`] and concerns that row only: the store goes on.
//! - Every error has an [`ErrorClass`] (client mistake, transient, outcome unknown,
//!   poisoned, …) for deciding what to do about it; errors from SQLite, PostgreSQL, the
//!   network and the file system keep them as their [`source`](std::error::Error::source).
//! - Reads run on the calling task (a few microseconds from SQLite's page cache, bounded by
//!   the read limits); writes go to one writer thread that commits waiting writes together.
//!
//! ## Errors
//! Every error is an [`Error`]; [`Error::class`] ([`ErrorClass`]) says what to do about it
//! (a client mistake, a passing condition, an unknown outcome, a poisoned store, …), and the
//! underlying library error stays reachable through `source()`:
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! // Walk the sources of an error to the library error under it.
//! let dir = tempfile::tempdir().unwrap();
//! let err = openkv::Kv::open(dir.path()).await.unwrap_err(); // a directory, not a file
//! let mut source = std::error::Error::source(&err);
//! let mut sqlite = None;
//! while let Some(cause) = source {
//!     sqlite = sqlite.or(cause.downcast_ref::<rusqlite::Error>());
//!     source = cause.source();
//! }
//! assert!(sqlite.is_some(), "{err:?}");
//! # });
//! ```
//!
//! ## Limits
//! Deno's, by default: see [`limits`] and [`Limits`]. Every violation is a typed [`Error`]
//! whose message names the limit. Embedded users may raise them with [`OpenOptions::limits`].
// A library reports through its return values and `tracing`, never on stdout/stderr;
// `unsafe_code`, `missing_docs` and the rest: `[workspace.lints]` in the root Cargo.toml.
#![deny(clippy::print_stdout, clippy::print_stderr)]

// The layers below, under the names this crate's modules use (`crate::backend::…`).
use openkv_core::{backend, clock, error, value, versionstamp};

mod kv;
mod list;
mod open;
mod paths;
mod queue;
pub mod transfer;
mod validate;
mod watch;

pub use openkv_core::{catalog, changelog, engine, export, js, key, limits, stats};

pub use backend::WatchSnapshots;
pub use backend::{
    AtomicWrite, Backend, BackupBackend, BackupSummary, ChangeEvent, Check, CommitOutcome,
    Consistency, Enqueue, Mutation, MutationKind, QueueBackend, QueueChange, QueueListing,
    QueueMessageInfo, QueueMessageState, QueuedMessage, RawEntry, ReadRange, RestoreSession,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, ErrorClass, Failure, Result};
pub use js::{
    decode_v8, encode_v8, from_js, from_json, to_js, to_json, ErrorKind, HostType, JsArray,
    JsBigInt, JsBlob, JsBlobPart, JsBytes, JsCryptoKey, JsDate, JsDomException, JsError, JsFile,
    JsMap, JsSerdeError, JsSet, JsUndefined, JsValue, JsonError, V8Error, ViewKind,
    V8_WRITE_VERSION,
};
pub use key::{Key, KeyPart};
pub use kv::{AtomicOperation, Entry, Kv, OpenOptions};
pub use limits::Limits;
pub use list::{ListOptions, ListStream, Selector};
pub use open::open_catalog;
pub use openkv_core::queue::{QUEUE_LEASE, QUEUE_LEASE_RENEWAL};
pub use openkv_core::stats::{EngineStats, Gauges, HistogramSnapshot, StatsSnapshot};
#[cfg(feature = "remote")]
pub use openkv_remote::{RemoteRetry, ReplicaOptions};
pub use openkv_sqlite::{restore_backup, verify_backup, SCHEMA_VERSION};
pub use paths::default_database_path;
pub use queue::{EnqueueOptions, QueueMessage};
pub use value::{
    value_from_json, value_to_json, KvU64, ToValue, Value, ENCODING_BYTES, ENCODING_LE64,
    ENCODING_V8,
};
pub use versionstamp::Versionstamp;
pub use watch::WatchStream;
