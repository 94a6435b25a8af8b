//! Continuous backup: a task that ships a database's change log, and snapshots, to a
//! [`Location`] (docs/design.md §16).
//!
//! The shipper keeps no state of its own: where it is comes from the location itself at
//! start — the newest complete generation (`openkv/generations/`) and the last mutation range
//! (`logs/`, whose name ends with its last commit's versionstamp) — so a restart, also after
//! `kill -9`, continues exactly after the last object that landed. An object is never
//! written twice with different content: a range that failed to upload is retried as it is
//! (same name, same bytes) before anything newer is read.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, PutPayload};
use openkv_core::changelog::{LogGone, LogRead, LogRecord, ReplicationSource};
use openkv_core::clock::{Clock, SystemClock};
use openkv_core::error::{Error, Failure, Result};
use openkv_proto::backup as wire;
use tokio::sync::watch;

use crate::layout::{
    BackupMark, Generation, LogName, SnapshotName, BACKUP_MARK, DIFFERENTIAL, GENERATIONS, LOGS,
    MARK_FORMAT, SNAPSHOTS,
};
use crate::location::{storage_error, Location};

/// How the shipper works. The defaults suit a database of up to some GB.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ShipOptions {
    /// How often the change log is shipped: commits land in the location at most about this
    /// long after they were acknowledged (plus the upload). Default: 1 second.
    pub interval: Duration,
    /// Take a new snapshot this long after the last one, so that a restore replays at most
    /// this much log. `None`: only the first (and those a broken log forces). Default: 24 h.
    pub snapshot_every: Option<Duration>,
    /// Delete what is only needed for points older than this (whole snapshots and the log
    /// before the snapshot that covers the window). `None`: keep everything. Default: 7 days.
    pub retention: Option<Duration>,
    /// About how many bytes of changes one mutation range holds. Default: 4 MiB.
    pub range_bytes: usize,
    /// About how many bytes of entries one snapshot range holds. Default: 8 MiB.
    pub snapshot_range_bytes: usize,
    /// The clock of retention and status times. Default: the system clock.
    pub clock: Arc<dyn Clock>,
}

impl Default for ShipOptions {
    fn default() -> Self {
        ShipOptions {
            interval: Duration::from_secs(1),
            snapshot_every: Some(Duration::from_secs(24 * 3600)),
            retention: Some(Duration::from_secs(7 * 24 * 3600)),
            range_bytes: 4 << 20,
            snapshot_range_bytes: 8 << 20,
            clock: Arc::new(SystemClock),
        }
    }
}

/// How far the backup is, as the shipper last knew.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackupStatus {
    /// The location, as shown to people.
    pub location: String,
    /// The commit counter of the last commit in the backup (0: nothing yet).
    pub shipped_version: u64,
    /// The source's commit counter as last read.
    pub source_head: u64,
    /// When the last object landed (Unix ms).
    pub last_success_ms: Option<i64>,
    /// When the oldest commit not yet in the backup committed (Unix ms); `None`: caught up as
    /// far as the shipper knows.
    pub behind_since_ms: Option<i64>,
    /// The last failure, while the shipper is failing (`None` after a success).
    pub last_error: Option<String>,
    /// Snapshots written since the start.
    pub snapshots: u64,
    /// Mutation ranges written since the start.
    pub ranges: u64,
    /// Commits (transactions of the source) shipped since the start.
    pub commits: u64,
    /// The shipper stopped for good (a location it must not write to); the reason is in
    /// `last_error`.
    pub stopped: bool,
}

impl BackupStatus {
    /// Commit counter units not yet shipped.
    pub fn lag_versions(&self) -> u64 {
        self.source_head.saturating_sub(self.shipped_version)
    }

    /// How long ago the oldest unshipped commit committed, at `now_ms` (0: caught up).
    pub fn lag_ms(&self, now_ms: i64) -> u64 {
        self.behind_since_ms.map_or(0, |since| u64::try_from(now_ms - since).unwrap_or(0))
    }
}

/// A running continuous backup. Dropping it stops the shipper without a last round; call
/// [`ContinuousBackup::stop`] to ship what was committed until then first.
pub struct ContinuousBackup {
    status: watch::Receiver<BackupStatus>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl ContinuousBackup {
    /// Starts shipping `source` to `location` (on the current Tokio runtime).
    pub fn start(
        source: Arc<dyn ReplicationSource>,
        location: Location,
        options: ShipOptions,
    ) -> ContinuousBackup {
        let (status_tx, status) = watch::channel(BackupStatus {
            location: location.to_string(),
            ..BackupStatus::default()
        });
        let (stop, stop_rx) = watch::channel(false);
        let shipper = Shipper {
            source,
            location,
            options,
            status: status_tx,
            state: None,
            pending: None,
            last_retention_ms: 0,
        };
        let task = tokio::spawn(shipper.run(stop_rx));
        ContinuousBackup { status, stop, task: Mutex::new(Some(task)) }
    }

    /// The status now.
    pub fn status(&self) -> BackupStatus {
        self.status.borrow().clone()
    }

    /// Follows the status.
    pub fn subscribe(&self) -> watch::Receiver<BackupStatus> {
        self.status.clone()
    }

    /// Ships what was committed until now (one last round, at most `grace`), then stops.
    pub async fn stop(&self, grace: Duration) {
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut task) = task {
            if tokio::time::timeout(grace, &mut task).await.is_err() {
                tracing::warn!("continuous backup: the last round did not finish in {grace:?}");
                task.abort();
            }
        }
    }
}

impl Drop for ContinuousBackup {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
    }
}

/// Where the backup is: what the location says, then what the shipper adds.
#[derive(Debug)]
struct State {
    /// The source log's epoch the backup follows (the newest generation's, unless a log read
    /// since said otherwise).
    epoch: Option<String>,
    /// The commit counter of the last commit in the backup.
    position: u64,
    batch_index: bool,
    /// The monoseq of the next mutation range.
    next_range: u64,
    /// The number of the next generation.
    next_generation: u64,
    /// Complete generations, oldest first.
    generations: Vec<Generation>,
    /// Mutation ranges in the location, in name order (for retention).
    ranges: Vec<LogName>,
    /// A snapshot must be taken before the log can go on (none yet, or the log broke off).
    needs_snapshot: bool,
}

struct Shipper {
    source: Arc<dyn ReplicationSource>,
    location: Location,
    options: ShipOptions,
    status: watch::Sender<BackupStatus>,
    state: Option<State>,
    /// A mutation range read and encoded but not known to have landed: uploaded again, as
    /// is, before anything else.
    pending: Option<PendingRange>,
    last_retention_ms: i64,
}

struct PendingRange {
    name: LogName,
    body: Bytes,
    version: u64,
    commits: u64,
}

/// What one round did.
enum Round {
    /// The log had more than one range's worth: go on at once.
    More,
    /// Caught up: wait for the interval.
    Idle,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Shipper {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let stopping = *stop.borrow();
            match self.round().await {
                Ok(round) => {
                    backoff = FIRST_BACKOFF;
                    self.status.send_modify(|s| s.last_error = None);
                    if stopping {
                        if matches!(round, Round::Idle) {
                            return;
                        }
                        continue;
                    }
                    if matches!(round, Round::More) {
                        continue;
                    }
                    let wait = self.options.interval;
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => {}
                    }
                }
                Err(e) => {
                    let fatal = matches!(e, Error::InvalidBackup(_) | Error::InvalidOption(_));
                    tracing::error!(
                        location = %self.location,
                        "continuous backup failed{}: {e}",
                        if fatal { " for good" } else { ", retrying" }
                    );
                    // What the backup is behind of, while it cannot ship (cheap; a failure
                    // here changes nothing).
                    let head = self.source.head().await.ok();
                    self.status.send_modify(|s| {
                        s.last_error = Some(e.to_string());
                        s.stopped = fatal;
                        if let Some(head) = head {
                            s.source_head = s.source_head.max(head);
                        }
                    });
                    if fatal || stopping {
                        return;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    fn now(&self) -> i64 {
        self.options.clock.now_ms()
    }

    /// One round: resume (first), a snapshot if one is due, then the log since the position.
    async fn round(&mut self) -> Result<Round> {
        if self.state.is_none() {
            self.state = Some(self.resume().await?);
        }
        if let Some(pending) = self.pending.take() {
            self.put_range(pending).await?;
        }
        let due = self.snapshot_due();
        if due {
            self.snapshot().await?;
        }
        let round = self.ship_log().await?;
        self.retention().await?;
        Ok(round)
    }

    fn state(&mut self) -> Result<&mut State> {
        self.state.as_mut().ok_or_else(|| Error::Internal("the shipper has not resumed".into()))
    }

    async fn get(&self, name: &str) -> Result<Option<Bytes>> {
        match self.location.store.get(&self.location.path(name)).await {
            Ok(found) => Ok(Some(
                found
                    .bytes()
                    .await
                    .map_err(|e| storage_error(format_args!("reading {name}"), e))?,
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(storage_error(format_args!("reading {name}"), e)),
        }
    }

    async fn put(&self, name: &str, body: Bytes) -> Result<()> {
        self.location
            .store
            .put(&self.location.path(name), PutPayload::from_bytes(body))
            .await
            .map_err(|e| storage_error(format_args!("writing {name} to {}", self.location), e))?;
        Ok(())
    }

    async fn list(&self, dir: &str) -> Result<Vec<String>> {
        let prefix = self.location.path(dir.trim_end_matches('/'));
        let metas: Vec<object_store::ObjectMeta> =
            self.location.store.list(Some(&prefix)).try_collect().await.map_err(|e| {
                storage_error(format_args!("listing {dir} in {}", self.location), e)
            })?;
        let mut names: Vec<String> = metas
            .iter()
            .filter_map(|m| self.location.name(&m.location))
            .map(String::from)
            .collect();
        names.sort();
        Ok(names)
    }

    async fn delete(&self, name: &str) -> Result<()> {
        match self.location.store.delete(&self.location.path(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(storage_error(format_args!("deleting {name}"), e)),
        }
    }

    /// Reads where the backup in the location is.
    async fn resume(&self) -> Result<State> {
        match self.get(BACKUP_MARK).await? {
            Some(body) => {
                let mark: BackupMark = serde_json::from_slice(&body).map_err(|e| {
                    Error::InvalidBackup(Failure::caused(
                        format_args!("{} in {}", BACKUP_MARK, self.location),
                        e,
                    ))
                })?;
                if mark.format != MARK_FORMAT {
                    return Err(Error::InvalidBackup(Failure::new(format!(
                        "{} is a backup of format {:?}, which this build does not write",
                        self.location, mark.format
                    ))));
                }
            }
            None => {
                // Never write into what someone else made: a Deploy backup, other files.
                let root =
                    object_store::path::Path::from(self.location.prefix.trim_end_matches('/'));
                let mut anything =
                    self.location.store.list((!self.location.prefix.is_empty()).then_some(&root));
                if let Some(found) = anything.next().await {
                    let found = found.map_err(|e| storage_error("listing the location", e))?;
                    return Err(Error::InvalidOption(format!(
                        "{} is not empty ({} is there) and is not an openkv backup: back up into \
                         an empty location",
                        self.location, found.location
                    )));
                }
                let mark = BackupMark { format: MARK_FORMAT.into(), created_at_ms: self.now() };
                let body = serde_json::to_vec(&mark)
                    .map_err(|e| Error::Internal(format!("encoding the backup mark: {e}")))?;
                self.put(BACKUP_MARK, body.into()).await?;
            }
        }
        let mut generations = Vec::new();
        for name in self.list(GENERATIONS).await? {
            let body = self.get(&name).await?.ok_or_else(|| {
                Error::Unavailable(Failure::new(format!("{name} vanished while listed")))
            })?;
            let generation: Generation = serde_json::from_slice(&body).map_err(|e| {
                Error::InvalidBackup(Failure::caused(
                    format_args!("{name} in {}", self.location),
                    e,
                ))
            })?;
            generations.push(generation);
        }
        generations.sort_by_key(|g| g.generation);
        let mut ranges = Vec::new();
        for name in self.list(LOGS).await? {
            ranges.push(LogName::parse(&name)?);
        }
        ranges.sort();
        // Snapshot ranges of a generation that never completed (the shipper died while writing
        // it): no reader trusts them; remove them so a new generation starts clean.
        let complete = generations.last().map_or(0, |g| g.generation);
        let mut orphans = 0;
        for name in self.list(SNAPSHOTS).await? {
            let parsed = SnapshotName::parse(&name)?;
            if parsed.monoseq > complete {
                self.delete(&name).await?;
                orphans += 1;
            }
        }
        if orphans > 0 {
            tracing::info!(location = %self.location, orphans, "removed the ranges of an unfinished snapshot");
        }
        let last_range = ranges.last().map(|r| r.last_boundary().version());
        let latest = generations.last();
        let position = latest.map_or(0, |g| g.version).max(last_range.unwrap_or(0));
        let state = State {
            epoch: latest.map(|g| g.epoch.clone()),
            position,
            batch_index: latest.is_some_and(|g| g.batch_index),
            next_range: ranges.last().map_or(1, |r| r.monoseq + 1),
            next_generation: complete + 1,
            needs_snapshot: latest.is_none(),
            generations,
            ranges,
        };
        tracing::info!(
            location = %self.location,
            position = state.position,
            generations = state.generations.len(),
            ranges = state.ranges.len(),
            "continuous backup resumed"
        );
        self.status.send_modify(|s| s.shipped_version = state.position);
        Ok(state)
    }

    fn snapshot_due(&mut self) -> bool {
        let now = self.now();
        let every = self.options.snapshot_every;
        let Some(state) = self.state.as_ref() else { return false };
        if state.needs_snapshot {
            return true;
        }
        match (every, state.generations.last()) {
            (Some(every), Some(latest)) => {
                now.saturating_sub(latest.taken_at_ms)
                    >= i64::try_from(every.as_millis()).unwrap_or(i64::MAX)
            }
            _ => false,
        }
    }

    /// Writes a new generation: its ranges, then its record, then `differential`.
    async fn snapshot(&mut self) -> Result<()> {
        let snapshot = self.source.snapshot().await?;
        let header = snapshot.header.clone();
        let (generation, position, forced, known_epoch) = {
            let state = self.state()?;
            (state.next_generation, state.position, state.needs_snapshot, state.epoch.clone())
        };
        let restarts_log = forced || known_epoch.as_deref() != Some(header.epoch.as_str());
        if restarts_log && header.version < position {
            return Err(Error::InvalidOption(format!(
                "the database is at version {} but its backup in {} already reaches {position}: \
                 this is not the database backed up there (or it went back in time); back it up \
                 into a new location",
                header.version, self.location
            )));
        }
        let mut entries = snapshot.entries;
        let mut range: Vec<(Vec<u8>, openkv_core::engine::plan::Row)> = Vec::new();
        let mut bytes = 0usize;
        let mut seq = 0u64;
        let mut count = 0u64;
        loop {
            let chunk = entries.next().await.transpose()?;
            let end = chunk.is_none();
            for (key, row) in chunk.unwrap_or_default() {
                bytes += key.len() + row.bytes.len() + 32;
                count += 1;
                range.push((key, row));
                if bytes >= self.options.snapshot_range_bytes {
                    let body = wire::encode_snapshot_range(&range);
                    self.put(&SnapshotName::new(generation, seq).object(), body.into()).await?;
                    seq += 1;
                    range.clear();
                    bytes = 0;
                }
            }
            if end {
                break;
            }
        }
        if !range.is_empty() {
            let body = wire::encode_snapshot_range(&range);
            self.put(&SnapshotName::new(generation, seq).object(), body.into()).await?;
            seq += 1;
        }
        // An earlier attempt at this generation that failed part-way may have left more
        // ranges than this one wrote: they go before the record says how many there are.
        for name in self.list(SNAPSHOTS).await? {
            let parsed = SnapshotName::parse(&name)?;
            if parsed.monoseq == generation && parsed.seq >= seq {
                self.delete(&name).await?;
            }
        }
        let boundary = wire::boundary_of(header.version, header.batch_index);
        let record = Generation {
            generation,
            version: header.version,
            versionstamp: boundary.to_hex(),
            epoch: header.epoch.clone(),
            taken_at_ms: header.taken_at_ms,
            batch_index: header.batch_index,
            ranges: seq,
            entries: count,
            restarts_log,
        };
        let body = serde_json::to_vec_pretty(&record)
            .map_err(|e| Error::Internal(format!("encoding a generation record: {e}")))?;
        self.put(&Generation::object(generation), body.into()).await?;
        self.put(DIFFERENTIAL, Bytes::from(boundary.to_hex())).await?;
        tracing::info!(
            location = %self.location,
            generation,
            version = header.version,
            entries = count,
            ranges = seq,
            "snapshot written"
        );
        let state = self.state()?;
        state.generations.push(record);
        state.next_generation = generation + 1;
        state.needs_snapshot = false;
        state.batch_index = header.batch_index;
        if restarts_log {
            state.epoch = Some(header.epoch);
            state.position = header.version;
        }
        let shipped = state.position;
        self.status.send_modify(|s| {
            s.snapshots += 1;
            s.shipped_version = shipped;
            s.last_success_ms = Some(header.taken_at_ms);
        });
        Ok(())
    }

    /// Reads the log after the position and ships it as one mutation range.
    async fn ship_log(&mut self) -> Result<Round> {
        let (epoch, position, batch_index, next_range) = {
            let state = self.state()?;
            (state.epoch.clone(), state.position, state.batch_index, state.next_range)
        };
        let read = self.source.log_after(epoch.clone(), position, self.options.range_bytes).await?;
        let (head, records) = match read {
            LogRead::Records { epoch: log_epoch, head, records } => {
                if epoch.as_deref().is_some_and(|e| e != log_epoch) {
                    self.log_broke(LogGone::EpochChanged { epoch: log_epoch })?;
                    return Ok(Round::More);
                }
                (head, records)
            }
            LogRead::Gone(gone) => {
                self.log_broke(gone)?;
                return Ok(Round::More);
            }
            // `LogRead` is non-exhaustive (the core crate's).
            _ => return Err(Error::Internal("an unknown answer to a log read".into())),
        };
        let oldest = records.first().map(|r| r.committed_at_ms);
        self.status.send_modify(|s| {
            s.source_head = head;
            s.behind_since_ms = oldest;
        });
        if records.is_empty() {
            return Ok(Round::Idle);
        }
        let size: usize = records.iter().map(record_size).sum();
        // The source caps a read by its own measure of bytes (and a record count), so a read
        // cut by the cap looks a little under `range_bytes` here: a read that is behind the
        // head and at least half full (or long) means a backlog — ship the next at once.
        // (Measured: "full" alone shipped one range per interval, ~30k entries/s catching up.)
        // Under a steady trickle the head moves on after a small read: that waits.
        let backlog = size * 2 >= self.options.range_bytes || records.len() >= 5_000;
        let version = records.last().map_or(position, |r| r.version);
        let encoded = wire::encode_mutation_range(&records, batch_index)
            .map_err(|e| Error::Internal(format!("encoding a mutation range: {e}")))?;
        let pending = PendingRange {
            name: LogName::new(next_range, encoded.first, encoded.last),
            body: encoded.body.into(),
            version,
            commits: records.len() as u64,
        };
        self.put_range(pending).await?;
        let caught_up = version >= head;
        if caught_up {
            self.status.send_modify(|s| s.behind_since_ms = None);
        }
        Ok(if backlog && !caught_up { Round::More } else { Round::Idle })
    }

    /// Uploads a range; until it landed, it stays pending (and is uploaded again as is).
    async fn put_range(&mut self, range: PendingRange) -> Result<()> {
        let object = range.name.object();
        if let Err(e) = self.put(&object, range.body.clone()).await {
            self.pending = Some(range);
            return Err(e);
        }
        let now = self.now();
        let state = self.state()?;
        state.position = range.version;
        state.next_range = range.name.monoseq + 1;
        state.ranges.push(range.name);
        let position = state.position;
        self.status.send_modify(|s| {
            s.shipped_version = position;
            s.ranges += 1;
            s.commits += range.commits;
            s.last_success_ms = Some(now);
        });
        Ok(())
    }

    fn log_broke(&mut self, gone: LogGone) -> Result<()> {
        tracing::warn!(
            location = %self.location,
            "the change log cannot be followed from the backup's position ({gone}): taking a \
             new snapshot; points between the backup's last commit and it are not recoverable"
        );
        self.state()?.needs_snapshot = true;
        Ok(())
    }

    /// Deletes generations and log older than the retention needs (at most every minute).
    async fn retention(&mut self) -> Result<()> {
        let Some(keep) = self.options.retention else { return Ok(()) };
        let now = self.now();
        if now - self.last_retention_ms < 60_000 {
            return Ok(());
        }
        self.last_retention_ms = now;
        let cutoff = now.saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
        let state = self.state()?;
        // The newest generation taken before the window starts covers the whole window;
        // everything it makes unnecessary goes.
        let Some(base) = state.generations.iter().rposition(|g| g.taken_at_ms <= cutoff) else {
            return Ok(());
        };
        let old: Vec<Generation> = state.generations.drain(..base).collect();
        let base_boundary = state.generations[0].boundary()?;
        let (stale, kept): (Vec<LogName>, Vec<LogName>) =
            state.ranges.drain(..).partition(|r| r.last_boundary() <= base_boundary);
        state.ranges = kept;
        // Generation records first (a reader never sees a generation lacking ranges), then
        // its ranges, then the log only they needed.
        for generation in &old {
            self.delete(&Generation::object(generation.generation)).await?;
            for seq in 0..generation.ranges {
                self.delete(&SnapshotName::new(generation.generation, seq).object()).await?;
            }
        }
        for range in &stale {
            self.delete(&range.object()).await?;
        }
        if !old.is_empty() || !stale.is_empty() {
            tracing::info!(
                location = %self.location,
                generations = old.len(),
                ranges = stale.len(),
                "retention removed what only older points needed"
            );
        }
        Ok(())
    }
}

fn record_size(record: &LogRecord) -> usize {
    record
        .changes
        .iter()
        .map(|(k, row)| k.len() + row.as_ref().map_or(0, |r| r.bytes.len()) + 24)
        .sum::<usize>()
        + 24
}
