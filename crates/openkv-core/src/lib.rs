//! # openkv-core — what every openkv backend shares
//!
//! The layer under every storage engine of [openkv](https://docs.rs/openkv) (users depend on
//! the `openkv` crate, which re-exports what they need from here): Deno KV's data model —
//! [`Key`]s, [`Value`]s, [`Versionstamp`]s, [`limits`], typed [`Error`]s (the JavaScript value
//! codec under them is the `openkv-js` crate, re-exported as [`js`]) — and the seam a storage engine implements: the [`Backend`] trait, the
//! [`engine`] that decides what every commit does (so a backend only reads rows, allocates
//! versions and flushes plans), the queue mechanics ([`queue`]), the change-feed follower
//! behind `watch` ([`watch`]) and the engine's counters ([`stats`]: what `/metrics` shows).
//!
//! A backend crate depends on this crate alone (`openkv-sqlite`, `openkv-postgres`,
//! `openkv-remote`, and `openkv-memory`, the in-memory one the behaviour suite runs over to prove
//! this seam is enough). Nothing here knows SQL, HTTP or protobuf.
//!
//! ```
//! use openkv_core::engine::plan::{keys_to_read, plan_batch};
//! use openkv_core::{AtomicWrite, Mutation, MutationKind, Value, Versionstamp};
//!
//! // One write: set "a". Nothing is stored yet, so the planner needs no row.
//! let write = AtomicWrite {
//!     mutations: vec![Mutation {
//!         key: b"\x02a\x00".to_vec(),
//!         kind: MutationKind::Set(Value::U64(1)),
//!         expire_at_ms: None,
//!     }],
//!     ..Default::default()
//! };
//! let writes = [write];
//! assert!(keys_to_read(&writes).is_empty());
//! let mut rng = rand::rng();
//! let plan = plan_batch(&writes, Default::default(), 0, |i| {
//!     Ok(Versionstamp::from_version(1 + i as u64))
//! }, &mut rng)?;
//! assert_eq!(plan.last_versionstamp(), Some(Versionstamp::from_version(1)));
//! assert_eq!(plan.rows.len(), 1);
//! # Ok::<(), openkv_core::Error>(())
//! ```
// A library reports through its return values and `tracing`, never on stdout/stderr;
// `unsafe_code`, `missing_docs` and the rest: `[workspace.lints]` in the root Cargo.toml.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod backend;
pub mod catalog;
pub mod changelog;
pub mod clock;
pub mod engine;
pub mod error;
pub mod export;
/// The JavaScript value layer under this crate (`openkv-js`), under the path it always had.
pub use openkv_js as js;
pub mod key;
pub mod limits;
pub mod queue;
pub mod row;
pub mod stats;
mod sum;
pub mod value;
pub mod versionstamp;
pub mod watch;

pub use backend::{
    AtomicWrite, Backend, BackupBackend, BackupSummary, ChangeEvent, Check, CommitOutcome,
    Consistency, Enqueue, Mutation, MutationKind, QueueBackend, QueueChange, QueueListing,
    QueueMessageInfo, QueueMessageState, QueuedMessage, RawEntry, ReadRange, RestoreSession,
    WatchSnapshots,
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
pub use limits::Limits;
pub use queue::{QueueSignal, QUEUE_LEASE, QUEUE_LEASE_RENEWAL};
pub use stats::{EngineStats, Gauges, HistogramSnapshot, StatsSnapshot};
pub use value::{
    value_from_json, value_to_json, KvU64, ToValue, Value, ENCODING_BYTES, ENCODING_LE64,
    ENCODING_V8,
};
pub use versionstamp::Versionstamp;
