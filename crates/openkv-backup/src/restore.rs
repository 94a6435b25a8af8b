//! Reading a backup: its catalog, its recovery points, a restore to a point, verification
//! (docs/design.md §16).
//!
//! A restore to a point starts from the newest base snapshot at or before it and replays the
//! log's commits after the base up to the point: to the first commit boundary at or after a
//! versionstamp (the transaction that contains it: a group commit becomes visible whole, so
//! no reader ever saw a state inside one), or the last commit at or before a time. Everything
//! read is checked on the way — names against contents, openkv's seals, the chain of commits
//! (each starts where the previous ended) — and the first inconsistency refuses the restore,
//! naming the object; the target is only replaced once the whole rebuild verified.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use openkv_core::changelog::{LogRecord, ReplicaTarget, Snapshot, SnapshotChunk, SnapshotHeader};
use openkv_core::clock::SystemClock;
use openkv_core::engine::plan::Row;
use openkv_core::error::{Error, Failure, Result};
use openkv_core::versionstamp::Versionstamp;
use openkv_core::Backend;
use openkv_proto::backup as wire;
use openkv_sqlite::{SqliteBackend, SqliteConfig};

use crate::layout::{
    parse_differential, Generation, LogName, SnapshotName, BACKUP_MARK, DIFFERENTIAL, GENERATIONS,
    LOGS, SNAPSHOTS,
};
use crate::location::{storage_error, Location};

/// Where a restore goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PointInTime {
    /// The state after the transaction containing this versionstamp's commit.
    Versionstamp(Versionstamp),
    /// The state after the last transaction committed at or before this time (Unix ms).
    Time(i64),
    /// The newest state in the backup.
    Latest,
}

impl PointInTime {
    /// Parses `--at`: 20 hex digits (a versionstamp), an RFC 3339 time, or `latest`.
    pub fn parse(text: &str) -> Result<PointInTime> {
        if text == "latest" {
            return Ok(PointInTime::Latest);
        }
        if text.len() == 20 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(PointInTime::Versionstamp(text.parse()?));
        }
        let time = humantime::parse_rfc3339_weak(text).map_err(|_| {
            Error::InvalidOption(format!(
                "--at {text:?}: expected a versionstamp (20 hex digits), an RFC 3339 time \
                 (2026-12-04T08:30:00Z) or `latest`"
            ))
        })?;
        let ms = time
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| Error::InvalidOption(format!("--at {text:?}: before 1970")))?
            .as_millis();
        Ok(PointInTime::Time(i64::try_from(ms).unwrap_or(i64::MAX)))
    }
}

/// A snapshot a restore can start from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Base {
    /// Its number (openkv's generation; 0 for a Deploy backup's one snapshot).
    pub generation: u64,
    /// Its recovery point.
    pub boundary: Versionstamp,
    /// When it was taken (Unix ms), if the backup says.
    pub taken_at_ms: Option<i64>,
    /// Its snapshot ranges, in order.
    pub ranges: Vec<SnapshotName>,
    /// How many entries it has, if the backup says.
    pub entries: Option<u64>,
    /// The log starts afresh at it (see `Generation::restarts_log`).
    pub restarts_log: bool,
}

/// One point a restore can reach exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryPoint {
    /// The versionstamp to give `--at`.
    pub versionstamp: Versionstamp,
    /// When it committed (Unix ms): the transaction's own time in openkv's backups, the
    /// mutation range's in Deploy's.
    pub committed_at_ms: Option<i64>,
    /// A base snapshot rather than a commit of the log.
    pub snapshot: bool,
}

/// What a backup location holds.
#[derive(Clone, Debug)]
pub struct Catalog {
    location: Location,
    /// openkv wrote it: every object must carry openkv's seal and commits their markers.
    openkv: bool,
    /// Base snapshots, oldest first.
    pub bases: Vec<Base>,
    /// Mutation ranges, in name (upload) order.
    pub ranges: Vec<LogName>,
}

/// What a restore did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestoreSummary {
    /// The recovery point reached.
    pub versionstamp: Versionstamp,
    /// When it committed, if known.
    pub committed_at_ms: Option<i64>,
    /// The base it started from.
    pub base_generation: u64,
    /// Entries installed from the base.
    pub base_entries: u64,
    /// Commits replayed from the log.
    pub commits: u64,
    /// Entries in the result.
    pub entries: u64,
    /// Rows whose versionstamp carried a batch index a Deno-format SQLite file cannot store
    /// (a PostgreSQL or Deploy source): stored with the commit counter only.
    pub versionstamps_truncated: u64,
    /// The point asked for lies after the backup's last commit (a time): this is the last one.
    pub reached_end: bool,
}

fn invalid(message: String) -> Error {
    Error::InvalidBackup(Failure::new(message))
}

async fn get(location: &Location, name: &str) -> Result<Option<Bytes>> {
    match location.store.get(&location.path(name)).await {
        Ok(found) => Ok(Some(
            found.bytes().await.map_err(|e| storage_error(format_args!("reading {name}"), e))?,
        )),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(storage_error(format_args!("reading {name} from {location}"), e)),
    }
}

async fn fetch(location: &Location, name: &str) -> Result<Bytes> {
    get(location, name).await?.ok_or_else(|| {
        invalid(format!("{name} is missing from {location}: the backup is incomplete"))
    })
}

async fn list(location: &Location, dir: &str) -> Result<Vec<String>> {
    let prefix = location.path(dir.trim_end_matches('/'));
    let metas: Vec<object_store::ObjectMeta> = location
        .store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|e| storage_error(format_args!("listing {dir} in {location}"), e))?;
    let mut names: Vec<String> =
        metas.iter().filter_map(|m| location.name(&m.location)).map(String::from).collect();
    names.sort();
    Ok(names)
}

impl Catalog {
    /// Reads what `location` holds (names only, and openkv's small records).
    pub async fn open(location: &Location) -> Result<Catalog> {
        let openkv = get(location, BACKUP_MARK).await?.is_some();
        let mut snapshot_names = Vec::new();
        for name in list(location, SNAPSHOTS).await? {
            snapshot_names.push(SnapshotName::parse(&name)?);
        }
        snapshot_names.sort();
        let mut ranges = Vec::new();
        for name in list(location, LOGS).await? {
            ranges.push(LogName::parse(&name)?);
        }
        ranges.sort();
        let mut bases = Vec::new();
        if openkv {
            for name in list(location, GENERATIONS).await? {
                let body = fetch(location, &name).await?;
                let generation: Generation = serde_json::from_slice(&body).map_err(|e| {
                    Error::InvalidBackup(Failure::caused(format_args!("{name} in {location}"), e))
                })?;
                let own: Vec<SnapshotName> = snapshot_names
                    .iter()
                    .filter(|s| s.monoseq == generation.generation)
                    .copied()
                    .collect();
                if own.len() as u64 != generation.ranges
                    || own.iter().enumerate().any(|(i, s)| s.seq != i as u64)
                {
                    return Err(invalid(format!(
                        "snapshot {} of {location} should have {} ranges but {} are there: the \
                         backup is incomplete",
                        generation.generation,
                        generation.ranges,
                        own.len()
                    )));
                }
                bases.push(Base {
                    generation: generation.generation,
                    boundary: generation.boundary()?,
                    taken_at_ms: Some(generation.taken_at_ms),
                    ranges: own,
                    entries: Some(generation.entries),
                    restarts_log: generation.restarts_log,
                });
            }
            bases.sort_by_key(|b| b.boundary);
        } else {
            // Deno Deploy's: one snapshot (all ranges) at the versionstamp `differential` says.
            let Some(body) = get(location, DIFFERENTIAL).await? else {
                return Err(invalid(format!(
                    "{location} holds no backup: neither openkv's ({BACKUP_MARK}) nor Deno \
                     Deploy's ({DIFFERENTIAL})"
                )));
            };
            bases.push(Base {
                generation: 0,
                boundary: parse_differential(&body)?,
                taken_at_ms: None,
                ranges: snapshot_names,
                entries: None,
                restarts_log: true,
            });
        }
        if bases.is_empty() {
            return Err(invalid(format!(
                "{location} has no complete snapshot yet: nothing can be restored"
            )));
        }
        Ok(Catalog { location: location.clone(), openkv, bases, ranges })
    }

    /// True if openkv wrote the backup.
    pub fn is_openkv(&self) -> bool {
        self.openkv
    }

    /// Reads a mutation range, checking it against its name.
    async fn range(&self, name: &LogName) -> Result<wire::MutationRange> {
        let object = name.object();
        let body = fetch(&self.location, &object).await?;
        let range = wire::decode_mutation_range(&body, self.openkv)
            .map_err(|e| invalid(format!("{object} in {}: {e}", self.location)))?;
        if range.commits.is_empty() || range.first != name.first || range.last != name.last {
            return Err(invalid(format!(
                "{object} in {}: its entries do not span what its name says",
                self.location
            )));
        }
        Ok(range)
    }

    /// Every recovery point with a time in `[start, end)` (Unix ms; points of unknown time are
    /// included), oldest first. Reads the whole log.
    pub async fn recovery_points(
        &self,
        start: Option<i64>,
        end: Option<i64>,
    ) -> Result<Vec<RecoveryPoint>> {
        let within = |at: Option<i64>| {
            at.is_none_or(|at| start.is_none_or(|s| at >= s) && end.is_none_or(|e| at < e))
        };
        let mut points: Vec<RecoveryPoint> = self
            .bases
            .iter()
            .map(|b| RecoveryPoint {
                versionstamp: b.boundary,
                committed_at_ms: b.taken_at_ms,
                snapshot: true,
            })
            .collect();
        let oldest = self.bases[0].boundary;
        for name in &self.ranges {
            if name.last_boundary() <= oldest {
                continue;
            }
            let range = self.range(name).await?;
            for commit in range.commits {
                if commit.boundary > oldest {
                    points.push(RecoveryPoint {
                        versionstamp: commit.boundary,
                        committed_at_ms: Some(
                            commit
                                .committed_at_ms
                                .unwrap_or(i64::try_from(range.timestamp_ms).unwrap_or(0)),
                        ),
                        snapshot: false,
                    });
                }
            }
        }
        points
            .sort_by(|a, b| a.versionstamp.cmp(&b.versionstamp).then(b.snapshot.cmp(&a.snapshot)));
        points.dedup_by(|later, earlier| later.versionstamp == earlier.versionstamp);
        points.retain(|p| within(p.committed_at_ms));
        Ok(points)
    }

    /// The base a restore to `at` starts from.
    fn base_for(&self, at: PointInTime) -> Result<&Base> {
        let found = match at {
            PointInTime::Latest => self.bases.last(),
            PointInTime::Versionstamp(vs) => self.bases.iter().rev().find(|b| b.boundary <= vs),
            PointInTime::Time(t) => {
                if self.openkv {
                    self.bases.iter().rev().find(|b| b.taken_at_ms.is_some_and(|taken| taken <= t))
                } else {
                    self.bases.last()
                }
            }
        };
        found.ok_or_else(|| {
            invalid(format!(
                "{} is before the oldest recovery point of {} (versionstamp {}{})",
                describe(at),
                self.location,
                self.bases[0].boundary,
                self.bases[0]
                    .taken_at_ms
                    .map(|t| format!(", {}", crate::layout::format_ms(t)))
                    .unwrap_or_default()
            ))
        })
    }

    /// Rebuilds the database as it was at `at` into `target`, a store that takes a primary's
    /// rows as they are. `keeps_batch_index`: the target stores whole versionstamps
    /// (otherwise a versionstamp's last two bytes are dropped and counted).
    pub async fn restore_into(
        &self,
        at: PointInTime,
        base: Option<u64>,
        target: &dyn ReplicaTarget,
        keeps_batch_index: bool,
    ) -> Result<RestoreSummary> {
        let base = match base {
            Some(generation) => {
                self.bases.iter().find(|b| b.generation == generation).ok_or_else(|| {
                    invalid(format!("no snapshot {generation} in {}", self.location))
                })?
            }
            None => self.base_for(at)?,
        };
        let truncated = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let base_entries = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let header = SnapshotHeader {
            epoch: uuid::Uuid::new_v4().to_string(),
            version: base.boundary.version(),
            taken_at_ms: base.taken_at_ms.unwrap_or(0),
            batch_index: false,
        };
        let location = self.location.clone();
        let sealed = self.openkv;
        let (t, n) = (truncated.clone(), base_entries.clone());
        let entries = futures::stream::iter(base.ranges.clone())
            .map(move |name| {
                let location = location.clone();
                async move {
                    let object = name.object();
                    let body = fetch(&location, &object).await?;
                    wire::decode_snapshot_range(&body, sealed)
                        .map_err(|e| invalid(format!("{object} in {location}: {e}")))
                }
            })
            .buffered(4)
            .map_ok(move |mut chunk: SnapshotChunk| {
                n.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
                if !keeps_batch_index {
                    for (_, row) in &mut chunk {
                        truncate(row, &t);
                    }
                }
                chunk
            });
        target
            .install_snapshot(uuid::Uuid::nil(), Snapshot { header, entries: Box::pin(entries) })
            .await?;
        let base_entries = base_entries.load(std::sync::atomic::Ordering::Relaxed);
        if let Some(expected) = base.entries.filter(|e| *e != base_entries) {
            return Err(invalid(format!(
                "snapshot {} of {} should have {expected} entries but has {base_entries}",
                base.generation, self.location
            )));
        }

        let mut summary = RestoreSummary {
            versionstamp: base.boundary,
            committed_at_ms: base.taken_at_ms,
            base_generation: base.generation,
            base_entries,
            ..RestoreSummary::default()
        };
        if at == PointInTime::Versionstamp(base.boundary) {
            return Ok(summary);
        }
        let mut position = base.boundary.version();
        let mut batch: Vec<LogRecord> = Vec::new();
        let mut previous: Option<u64> = None;
        let mut done = false;
        let ranges: Vec<&LogName> =
            self.ranges.iter().filter(|r| r.last_boundary() > base.boundary).collect();
        for name in ranges {
            if self.openkv {
                if let Some(p) = previous.filter(|p| name.monoseq != p + 1) {
                    return Err(invalid(format!(
                        "{} lacks mutation ranges {} to {} (before {}): the backup has a gap",
                        self.location,
                        p + 1,
                        name.monoseq - 1,
                        name.object()
                    )));
                }
                previous = Some(name.monoseq);
            }
            let range = self.range(name).await?;
            for commit in range.commits {
                if commit.boundary <= base.boundary {
                    continue;
                }
                if summary.commits > 0 && commit.boundary <= summary.versionstamp {
                    return Err(invalid(format!(
                        "{} in {}: commit {} comes again after {}: the log repeats itself",
                        name.object(),
                        self.location,
                        commit.boundary,
                        summary.versionstamp
                    )));
                }
                let reached = match at {
                    PointInTime::Versionstamp(vs) => summary.versionstamp >= vs,
                    PointInTime::Time(t) => {
                        commit
                            .committed_at_ms
                            .unwrap_or(i64::try_from(range.timestamp_ms).unwrap_or(0))
                            > t
                    }
                    PointInTime::Latest => false,
                };
                if reached {
                    done = true;
                    break;
                }
                if self.openkv {
                    match commit.prev_version {
                        Some(prev) if prev == position => {}
                        Some(prev) => {
                            if let Some(restart) = self
                                .bases
                                .iter()
                                .find(|b| b.restarts_log && b.boundary.version() == prev)
                            {
                                return Err(invalid(format!(
                                    "{} is not in {}: its log stops at {} and starts again \
                                     with snapshot {} at {} (the database's log could not be \
                                     followed in between: restored, pruned, or written \
                                     without a log)",
                                    describe(at),
                                    self.location,
                                    summary.versionstamp,
                                    restart.generation,
                                    restart.boundary
                                )));
                            }
                            return Err(invalid(format!(
                                "{} in {}: the backup has a gap — the log goes from version \
                                 {position} to a transaction starting at {prev}",
                                name.object(),
                                self.location
                            )));
                        }
                        None => {
                            return Err(invalid(format!(
                                "{} in {}: a commit without openkv's boundary marker",
                                name.object(),
                                self.location
                            )))
                        }
                    }
                }
                let mut changes = commit.changes;
                if !keeps_batch_index {
                    for (_, row) in changes.iter_mut() {
                        if let Some(row) = row {
                            truncate(row, &truncated);
                        }
                    }
                }
                let version = commit.boundary.version().max(position + 1);
                let committed_at_ms = commit
                    .committed_at_ms
                    .unwrap_or(i64::try_from(range.timestamp_ms).unwrap_or(0));
                batch.push(LogRecord { prev_version: position, version, committed_at_ms, changes });
                position = version;
                summary.versionstamp = commit.boundary;
                summary.committed_at_ms = Some(committed_at_ms);
                summary.commits += 1;
            }
            if !batch.is_empty() {
                target.apply_log(std::mem::take(&mut batch)).await?;
            }
            if done {
                break;
            }
        }
        match at {
            PointInTime::Versionstamp(vs) if summary.versionstamp < vs => {
                return Err(invalid(format!(
                    "{vs} is after the last recovery point of {} ({}): the backup does not \
                     reach it (yet)",
                    self.location, summary.versionstamp
                )))
            }
            PointInTime::Time(_) => summary.reached_end = !done,
            _ => {}
        }
        summary.versionstamps_truncated = truncated.load(std::sync::atomic::Ordering::Relaxed);
        Ok(summary)
    }

    /// Rebuilds the database as it was at `at` into a new Deno-format SQLite file `dest`
    /// (which must not exist): built beside it, verified, then renamed into place.
    pub async fn restore_to_file(
        &self,
        at: PointInTime,
        base: Option<u64>,
        dest: &Path,
    ) -> Result<RestoreSummary> {
        if dest.exists() {
            return Err(Error::InvalidOption(format!(
                "{} already exists: a restore builds a new file",
                dest.display()
            )));
        }
        let temporary = openkv_sqlite::backup::temporary_beside(dest);
        let result = self.build_file(at, base, &temporary).await;
        let result = match result {
            Ok(summary) => openkv_sqlite::backup::install(&temporary, dest).map(|()| summary),
            Err(e) => Err(e),
        };
        if result.is_err() {
            remove_with_sidecars(&temporary);
        }
        result
    }

    async fn build_file(
        &self,
        at: PointInTime,
        base: Option<u64>,
        path: &Path,
    ) -> Result<RestoreSummary> {
        remove_with_sidecars(path);
        let text = path.to_str().ok_or_else(|| {
            Error::InvalidOption(format!("the path {} is not UTF-8", path.display()))
        })?;
        let config = SqliteConfig {
            sweep_interval: std::time::Duration::from_secs(3600),
            rng_seed: None,
            change_log: None,
            replica: true,
        };
        let text = text.to_owned();
        let backend = tokio::task::spawn_blocking(move || {
            SqliteBackend::open(&text, Arc::new(SystemClock), config)
        })
        .await
        .map_err(|e| Error::Internal(format!("opening the restore's file panicked: {e}")))??;
        let backend = Arc::new(backend);
        let restored = self.restore_into(at, base, backend.as_ref(), false).await;
        let closed = backend.close().await;
        let mut summary = restored?;
        closed?;
        let verified = openkv_sqlite::backup::verify(path)?;
        summary.entries = verified.entries;
        Ok(summary)
    }

    /// Replays the backup into scratch databases and checks it: every object reads and
    /// matches its name and seal; the log chains from each snapshot to the end of its
    /// stretch (up to the next snapshot that restarted the log, or the end); each snapshot
    /// has the entries it says; and within a stretch, replaying from its oldest snapshot and
    /// from its newest gives the same database.
    pub async fn verify(&self, scratch: &Path) -> Result<VerifySummary> {
        let points = self.recovery_points(None, None).await?;
        // Stretches of the log: each starts at a snapshot that restarted it.
        let mut stretches: Vec<Vec<&Base>> = Vec::new();
        for base in &self.bases {
            match stretches.last_mut() {
                Some(stretch) if !base.restarts_log => stretch.push(base),
                _ => stretches.push(vec![base]),
            }
        }
        let mut commits = 0;
        let mut last = None;
        for (i, stretch) in stretches.iter().enumerate() {
            let (oldest, newest) = (stretch[0], stretch[stretch.len() - 1]);
            // The stretch ends with its last point before the next stretch's snapshot.
            let end = match stretches.get(i + 1) {
                Some(next) => {
                    let next = next[0].boundary;
                    let end = points
                        .iter()
                        .filter(|p| p.versionstamp < next && !p.snapshot)
                        .map(|p| p.versionstamp)
                        .max()
                        .unwrap_or(newest.boundary)
                        .max(newest.boundary);
                    PointInTime::Versionstamp(end)
                }
                None => PointInTime::Latest,
            };
            let from_oldest = scratch.join(format!("stretch-{i}-oldest.sqlite3"));
            let summary = self.build_file(end, Some(oldest.generation), &from_oldest).await?;
            commits += summary.commits;
            if newest.generation != oldest.generation {
                let from_newest = scratch.join(format!("stretch-{i}-newest.sqlite3"));
                let other = self.build_file(end, Some(newest.generation), &from_newest).await?;
                let a = openkv_sqlite::backup::content_digest(&from_oldest)?;
                let b = openkv_sqlite::backup::content_digest(&from_newest)?;
                if a != b || other.versionstamp != summary.versionstamp {
                    return Err(invalid(format!(
                        "{}: replaying the log from snapshot {} and from snapshot {} gives \
                         different databases ({} and {} entries)",
                        self.location, oldest.generation, newest.generation, a.0, b.0
                    )));
                }
            }
            // The snapshots in between are read too (their entry counts checked).
            for base in stretch.iter().skip(1).take(stretch.len().saturating_sub(2)) {
                let mut entries = 0u64;
                for name in &base.ranges {
                    let object = name.object();
                    let body = fetch(&self.location, &object).await?;
                    entries += wire::decode_snapshot_range(&body, self.openkv)
                        .map_err(|e| invalid(format!("{object} in {}: {e}", self.location)))?
                        .len() as u64;
                }
                if base.entries.is_some_and(|e| e != entries) {
                    return Err(invalid(format!(
                        "snapshot {} of {} has {entries} entries, not what it says",
                        base.generation, self.location
                    )));
                }
            }
            last = Some(summary);
        }
        let last = last.ok_or_else(|| invalid(format!("{} has no snapshot", self.location)))?;
        Ok(VerifySummary {
            snapshots: self.bases.len() as u64,
            ranges: self.ranges.len() as u64,
            commits,
            entries: last.entries,
            first: self.bases[0].boundary,
            last: last.versionstamp,
            last_committed_at_ms: last.committed_at_ms,
        })
    }
}

/// What `verify` checked.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifySummary {
    /// Base snapshots.
    pub snapshots: u64,
    /// Mutation ranges.
    pub ranges: u64,
    /// Commits replayed from the oldest snapshot.
    pub commits: u64,
    /// Entries at the end.
    pub entries: u64,
    /// The oldest recovery point.
    pub first: Versionstamp,
    /// The newest recovery point.
    pub last: Versionstamp,
    /// When the newest committed, if known.
    pub last_committed_at_ms: Option<i64>,
}

/// A row's versionstamp without the batch index a Deno-format file cannot store.
fn truncate(row: &mut Row, count: &std::sync::atomic::AtomicU64) {
    if row.versionstamp.0[8..] != [0, 0] {
        row.versionstamp.0[8..].copy_from_slice(&[0, 0]);
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn describe(at: PointInTime) -> String {
    match at {
        PointInTime::Versionstamp(vs) => format!("versionstamp {vs}"),
        PointInTime::Time(t) => crate::layout::format_ms(t),
        PointInTime::Latest => "the newest point".into(),
    }
}

fn remove_with_sidecars(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(name));
    }
}
