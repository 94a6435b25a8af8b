//! Continuous backup and point-in-time recovery for openkv, in the format Deno Deploy used.
//!
//! # Contract
//! - [`ContinuousBackup::start`] ships a database's change log (any backend that is a
//!   [`ReplicationSource`](openkv_core::changelog::ReplicationSource): SQLite, PostgreSQL) to
//!   a [`Location`] — a directory or S3-compatible object storage — every
//!   [`ShipOptions::interval`], after a first snapshot; new snapshots follow on a schedule and
//!   retention removes what only older points need. Where it is comes from the location
//!   itself: a restart continues after the last object that landed, with no gap and no
//!   commit twice. Storage that fails is retried with backoff; the database is never
//!   affected, and [`BackupStatus`] shows the lag and the error.
//! - The objects are Deno Deploy's (`snapshots/`, `logs/`, `differential`; protobuf messages
//!   of denokv's `backup.proto`): denokv's `pitr` tools and `serve --sync-from-s3` read what
//!   openkv writes, and [`Catalog`] reads what Deploy wrote. openkv adds, invisibly to those
//!   readers, a boundary marker per transaction (its start and commit time), a checksum seal
//!   per object, and small JSON records under `openkv/` (docs/design.md §16).
//! - [`Catalog::restore_to_file`] rebuilds the database as it was at a [`PointInTime`] — the
//!   transaction containing a versionstamp, or the last one at or before a time — with the
//!   original versionstamps, into a new Deno-format SQLite file; [`Catalog::restore_into`]
//!   into any [`ReplicaTarget`](openkv_core::changelog::ReplicaTarget). A backup that is
//!   incomplete, has a gap or a damaged object is refused, naming the object, before the
//!   target is touched. [`Catalog::verify`] replays it all into scratch files and checks it.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> openkv_core::Result<()> {
//! use openkv_backup::{Catalog, Location, PointInTime, S3Options};
//! let dir = tempfile::tempdir().unwrap();
//! let location = Location::parse(dir.path().join("backup").to_str().unwrap(), &S3Options::default())?;
//! // An empty location holds no backup yet: reading it says so.
//! let err = Catalog::open(&location).await.unwrap_err();
//! assert!(err.to_string().contains("holds no backup"));
//! assert_eq!(PointInTime::parse("latest")?, PointInTime::Latest);
//! assert!(PointInTime::parse("yesterday").is_err());
//! # Ok(()) }
//! ```

mod layout;
mod location;
mod restore;
mod ship;

pub use layout::{Generation, LogName, SnapshotName};
pub use location::{Location, S3Options};
pub use restore::{Base, Catalog, PointInTime, RecoveryPoint, RestoreSummary, VerifySummary};
pub use ship::{BackupStatus, ContinuousBackup, ShipOptions};

pub use layout::format_ms;
