//! The engine layer: the semantics of a commit, written once, under every storage backend.
//!
//! A backend stores rows and allocates versions; everything a write *means* is decided here:
//! - [`plan`]: the commit planner — checks, each mutation's new row, versionstamps,
//!   versionstamped keys, expiry rules, enqueued messages, the change events of a batch.
//! - [`finish`]: the end of a queue delivery attempt — remove, retry after the backoff, or
//!   write the dead letters.
//! - [`batch`]: the writer's batch and how its callers are answered (publish, wake, reply).
//! - [`measure`]: what a backend counts in its [`EngineStats`](crate::stats::EngineStats) for
//!   a batch, a read, a sweep and a delivery attempt.
//!
//! The SQLite and PostgreSQL writers only read the rows a plan needs
//! ([`plan::keys_to_read`]), bump their version counter, flush the plan, commit, and settle
//! the batch. The layer is public so that a backend can live outside this crate: the
//! `openkv-memory` crate is one, written only against this API, and passes the behaviour
//! suite.

pub mod batch;
pub mod finish;
pub mod measure;
pub mod plan;

pub use crate::queue::QueueSignal;
