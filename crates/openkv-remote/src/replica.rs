//! Read replicas: a follower that copies a primary (`openkv serve` with its change log) into a
//! local store and keeps applying its log, and [`ReplicaBackend`], the [`Backend`] that serves
//! reads from that copy and sends the rest to the primary (docs/design.md §14).
//!
//! What a replica read gives:
//! - **Eventual reads** come from the local copy: a state the primary had (whole log records
//!   are applied in one transaction each, in order), never older than an earlier read on the
//!   same replica (the position only moves forward).
//! - **Strong reads** are served locally too, after a *read index*: the replica asks the
//!   primary for its commit counter and waits (up to [`ReplicaOptions::read_index_wait`])
//!   until it has applied that far. Any write acknowledged before the read began has a
//!   counter at or below it, so the read sees it. If the replica cannot get there in time, the
//!   read goes to the primary. This is what lets the Deno CLI — which sends every read,
//!   strong or eventual, to one endpoint without saying which — use a replica safely.
//! - **Writes and queues** go to the primary. A committed write is waited for (up to
//!   [`ReplicaOptions::write_visible_wait`]) before it is answered, so a client reads its own
//!   writes back from the same replica.
//! - Before the first bootstrap finished, everything goes to the primary. After a read the
//!   primary answered, the copy serves reads only once it has applied the primary's counter
//!   of that moment (a *floor*): a replica's reads never go back in time, also across the
//!   switch from forwarding to serving.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use openkv_core::changelog::{
    LogGone, LogRead, ReplicaPosition, ReplicaStatus, ReplicaTarget, Snapshot,
};
use openkv_core::engine::plan::Row;
use openkv_proto::replication as repl;
use tokio::sync::{broadcast, watch as tw};

use crate::backend::{
    AtomicWrite, Backend, BackupBackend, ChangeEvent, CommitOutcome, Consistency, QueueBackend,
    RawEntry, ReadRange, WatchSnapshots,
};
use crate::client::{decode, truncate, RemoteBackend, FIRST_BACKOFF, MAX_BACKOFF};
use crate::clock::Clock;
use crate::error::{Error, Failure, Result};

/// How a replica waits for its primary. The defaults suit a replica near its primary.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ReplicaOptions {
    /// How long a strong read waits for the replica to catch up with the primary's counter
    /// before it is sent to the primary instead. Default: 1 second.
    pub read_index_wait: Duration,
    /// How long a write waits to become visible on the replica before it is answered anyway.
    /// Default: 1 second.
    pub write_visible_wait: Duration,
    /// How long one log request waits at the primary for a new record (the long poll).
    /// Default: 20 seconds (kept under half the request timeout).
    pub log_wait: Duration,
    /// About how many bytes of changes one log request carries. Default: 4 MiB.
    pub log_batch_bytes: usize,
}

impl Default for ReplicaOptions {
    fn default() -> Self {
        ReplicaOptions {
            read_index_wait: Duration::from_secs(1),
            write_visible_wait: Duration::from_secs(1),
            log_wait: Duration::from_secs(20),
            log_batch_bytes: 4 << 20,
        }
    }
}

/// A read replica: the local copy, the primary, and the follower between them.
pub struct ReplicaBackend {
    local: Arc<dyn Backend>,
    primary: Arc<RemoteBackend>,
    status: tw::Sender<ReplicaStatus>,
    stop: tw::Sender<bool>,
    follower: Mutex<Option<tokio::task::JoinHandle<()>>>,
    options: ReplicaOptions,
    reads_local: AtomicU64,
    reads_forwarded: AtomicU64,
    watches_local: AtomicU64,
    /// The primary's counter after the last read it answered for this replica: the copy
    /// serves reads only once it has applied that far (reads never go back in time).
    floor: AtomicU64,
}

impl std::fmt::Debug for ReplicaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaBackend")
            .field("primary", &self.primary)
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

impl ReplicaBackend {
    /// Starts following `primary` into `local` (a backend that can hold a replica: a SQLite
    /// file opened as one). Resumes from the local copy's position if it follows the same
    /// primary; otherwise the follower bootstraps from a snapshot first. Returns at once: until
    /// the copy is ready, everything is served by the primary.
    pub async fn start(
        local: Arc<dyn Backend>,
        primary: Arc<RemoteBackend>,
        clock: Arc<dyn Clock>,
        options: ReplicaOptions,
    ) -> Result<ReplicaBackend> {
        let target = local.clone().replica_target()?;
        let primary_id = primary.database_id().await?;
        let position = target.replica_position().await?.filter(|p| p.primary_id == primary_id);
        let mut status = ReplicaStatus::default();
        status.applied = position.as_ref().map_or(0, |p| p.version);
        status.primary_head = status.applied;
        status.ready = position.is_some();
        let (status, _) = tw::channel(status);
        let (stop, stopped) = tw::channel(false);
        let follower = Follower {
            target,
            primary: primary.clone(),
            status: status.clone(),
            clock,
            primary_id,
            options: options.clone(),
        };
        let task = tokio::spawn(follower.run(position, stopped));
        Ok(ReplicaBackend {
            local,
            primary,
            status,
            stop,
            follower: Mutex::new(Some(task)),
            options,
            reads_local: AtomicU64::new(0),
            reads_forwarded: AtomicU64::new(0),
            watches_local: AtomicU64::new(0),
            floor: AtomicU64::new(0),
        })
    }

    /// Waits until the replica has a copy to serve from (the first bootstrap finished), or
    /// `timeout` passed (`false`).
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut rx = self.status.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|s| s.ready)).await.is_ok_and(|r| r.is_ok())
    }

    fn ready(&self) -> bool {
        self.status.borrow().ready
    }

    /// A read the primary answers. Afterwards the primary's counter is a floor for this
    /// replica's later reads: what the primary showed, the copy must not show older.
    async fn forward(
        &self,
        ranges: Vec<ReadRange>,
        consistency: Consistency,
    ) -> Result<Vec<Vec<RawEntry>>> {
        self.reads_forwarded.fetch_add(1, Ordering::Relaxed);
        let answer = self.primary.snapshot_read(ranges, consistency).await?;
        // Read after the answer, so the answer's state is at or below it.
        match self.primary.replication_head().await {
            Ok(head) => {
                self.floor.fetch_max(head, Ordering::AcqRel);
            }
            Err(e) => tracing::debug!("replica: no head after a forwarded read: {e}"),
        }
        Ok(answer)
    }

    /// Waits until the copy has applied `version`, at most `wait`; true if it has.
    async fn applied(&self, version: u64, wait: Duration) -> bool {
        let mut rx = self.status.subscribe();
        let reached = tokio::time::timeout(wait, rx.wait_for(|s| s.applied >= version)).await;
        reached.is_ok_and(|r| r.is_ok())
    }
}

#[async_trait]
impl Backend for ReplicaBackend {
    async fn snapshot_read(
        &self,
        ranges: Vec<ReadRange>,
        consistency: Consistency,
    ) -> Result<Vec<Vec<RawEntry>>> {
        if !self.ready() {
            return self.forward(ranges, consistency).await;
        }
        // Never older than a read this replica already answered (one the primary answered
        // before the copy was ready, say): wait for the copy to get there, or forward.
        let floor = self.floor.load(Ordering::Acquire);
        if floor > self.status.borrow().applied
            && !self.applied(floor, self.options.read_index_wait).await
        {
            return self.forward(ranges, consistency).await;
        }
        if consistency != Consistency::Eventual {
            // The read index: as fresh as the primary at this moment, or the primary answers.
            let head = self.primary.replication_head().await;
            let caught_up = match head {
                Ok(head) => self.applied(head, self.options.read_index_wait).await,
                Err(e) => {
                    tracing::debug!("replica: no read index from the primary: {e}");
                    false
                }
            };
            if !caught_up {
                return self.forward(ranges, Consistency::Strong).await;
            }
        }
        self.reads_local.fetch_add(1, Ordering::Relaxed);
        self.local.snapshot_read(ranges, Consistency::Strong).await
    }

    async fn atomic_write(&self, write: AtomicWrite) -> Result<CommitOutcome> {
        let outcome = self.primary.atomic_write(write).await?;
        if let Some(vs) = outcome.versionstamp() {
            if self.ready() && !self.applied(vs.version(), self.options.write_visible_wait).await {
                tracing::debug!("replica: write {} not applied in time", vs.to_hex());
            }
        }
        Ok(outcome)
    }

    fn subscribe(&self) -> Result<broadcast::Receiver<ChangeEvent>> {
        self.local.subscribe()
    }

    fn watch(self: Arc<Self>, keys: Vec<Vec<u8>>) -> Result<WatchSnapshots> {
        if !self.ready() {
            return self.primary.clone().watch(keys);
        }
        self.watches_local.fetch_add(1, Ordering::Relaxed);
        self.local.clone().watch(keys)
    }

    async fn database_id(&self) -> Result<uuid::Uuid> {
        // The primary's: a client may switch between the two endpoints of one database.
        self.primary.database_id().await
    }

    async fn close(&self) -> Result<()> {
        let _ = self.stop.send(true);
        let task = self.follower.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            // The follower stops between steps or abandons a step at an await point; an
            // abandoned install or apply rolls back (one transaction each).
            let _ = task.await;
        }
        self.primary.close().await?;
        self.local.close().await
    }

    fn queues(self: Arc<Self>) -> Result<Arc<dyn QueueBackend>> {
        // Queue delivery stays with the primary.
        self.primary.clone().queues()
    }

    fn backups(self: Arc<Self>) -> Result<Arc<dyn BackupBackend>> {
        self.local.clone().backups()
    }

    fn lagging_eventual_reads(&self) -> bool {
        true
    }

    async fn replica_status(&self) -> Result<Option<ReplicaStatus>> {
        let mut status = self.status.borrow().clone();
        status.reads_local = self.reads_local.load(Ordering::Relaxed);
        status.reads_forwarded = self.reads_forwarded.load(Ordering::Relaxed);
        status.watches_local = self.watches_local.load(Ordering::Relaxed);
        Ok(Some(status))
    }

    /// The local copy's: the reads it served (writes are the primary's to count; applying
    /// the log is not a commit).
    fn stats(&self) -> Option<Arc<openkv_core::EngineStats>> {
        self.local.stats()
    }

    /// The local copy's sizes; no queue depths (the queue is the primary's; the copy's
    /// queue tables stay empty).
    async fn gauges(&self) -> Result<openkv_core::Gauges> {
        let local = self.local.gauges().await?;
        let mut gauges = openkv_core::Gauges::default();
        gauges.database_bytes = local.database_bytes;
        gauges.wal_bytes = local.wal_bytes;
        Ok(gauges)
    }
}

/// The task that keeps the copy following the primary.
struct Follower {
    target: Arc<dyn ReplicaTarget>,
    primary: Arc<RemoteBackend>,
    status: tw::Sender<ReplicaStatus>,
    clock: Arc<dyn Clock>,
    primary_id: uuid::Uuid,
    options: ReplicaOptions,
}

impl Follower {
    async fn run(self, mut position: Option<ReplicaPosition>, mut stop: tw::Receiver<bool>) {
        let mut pause = FIRST_BACKOFF;
        loop {
            if *stop.borrow() {
                return;
            }
            let step = tokio::select! {
                _ = stop.changed() => return,
                step = self.step(&mut position) => step,
            };
            match step {
                Ok(()) => {
                    pause = FIRST_BACKOFF;
                    self.status.send_modify(|s| s.last_error = None);
                }
                Err(Error::Closed) => return,
                Err(e @ Error::Unsupported(_)) => {
                    // A configuration that cannot work: retrying would only repeat it. Reads
                    // and writes keep going to the primary.
                    tracing::error!(
                        "replica: cannot follow the primary, serving from it only: {e}"
                    );
                    self.status.send_modify(|s| s.last_error = Some(e.to_string()));
                    return;
                }
                Err(e) => {
                    tracing::warn!(
                        "replica: following the primary failed, retrying in {pause:?}: {e}"
                    );
                    self.status.send_modify(|s| s.last_error = Some(e.to_string()));
                    tokio::select! {
                        _ = stop.changed() => return,
                        _ = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// One round: a bootstrap if there is no position, else one log request and its apply.
    async fn step(&self, position: &mut Option<ReplicaPosition>) -> Result<()> {
        let Some(at) = position.as_mut() else {
            let (database_id, snapshot) = self.primary.replication_snapshot().await?;
            if database_id != self.primary_id.to_string() {
                return Err(Error::Protocol(format!(
                    "the snapshot is of database {database_id}, not {}",
                    self.primary_id
                )));
            }
            let header = snapshot.header.clone();
            if header.epoch.is_empty() {
                return Err(Error::Unsupported(
                    "the primary keeps no change log to follow (start it with openkv serve, \
                     without --log-retention off)"
                        .into(),
                ));
            }
            let version = self.target.install_snapshot(self.primary_id, snapshot).await?;
            tracing::info!(
                "replica: bootstrapped from the primary's snapshot at version {version}"
            );
            self.status.send_modify(|s| {
                s.applied = version;
                s.primary_head = s.primary_head.max(version);
                s.behind_since_ms = (s.primary_head > version).then_some(header.taken_at_ms);
                s.bootstraps += 1;
                s.ready = true;
            });
            *position =
                Some(ReplicaPosition { epoch: header.epoch, primary_id: self.primary_id, version });
            return Ok(());
        };
        let wait = self.options.log_wait.min(self.primary.config.request_timeout / 2);
        let request = repl::LogRequest {
            epoch: Some(at.epoch.clone()),
            after: at.version,
            wait_ms: u64::try_from(wait.as_millis()).unwrap_or(repl::MAX_WAIT_MS),
            max_bytes: self.options.log_batch_bytes.clamp(1, repl::MAX_LOG_BYTES),
        };
        match self.primary.replication_log(&request).await? {
            LogRead::Records { head, records, .. } => {
                let count = records.len() as u64;
                if let (Some(first), Some(last)) = (records.first(), records.last()) {
                    let (first_at, last_version, last_at) =
                        (first.committed_at_ms, last.version, last.committed_at_ms);
                    self.status.send_modify(|s| {
                        s.primary_head = s.primary_head.max(head);
                        s.behind_since_ms.get_or_insert(first_at);
                    });
                    let applied = self.target.apply_log(records).await?;
                    debug_assert_eq!(applied, last_version);
                    at.version = applied;
                    self.status.send_modify(|s| {
                        s.applied = applied;
                        s.records_applied += count;
                        s.behind_since_ms = (head > applied).then_some(last_at);
                    });
                } else {
                    self.status.send_modify(|s| {
                        s.primary_head = head;
                        s.behind_since_ms = (head > s.applied).then(|| self.clock.now_ms());
                    });
                }
                Ok(())
            }
            LogRead::Gone(why) => {
                tracing::warn!("replica: bootstrapping again: {why}");
                *position = None;
                Ok(())
            }
            // `LogRead` is non-exhaustive: an answer this build does not know is a bug.
            other => Err(Error::Protocol(format!("unexpected log answer {other:?}"))),
        }
    }
}

impl RemoteBackend {
    /// The primary's log after a position (docs/protocol-extensions.md §6).
    pub(crate) async fn replication_log(&self, request: &repl::LogRequest) -> Result<LogRead> {
        let op = format!("{}log", repl::PATH_PREFIX);
        let body = serde_json::to_vec(request)
            .map_err(|e| Error::Internal(format!("encoding a log request: {e}")))?;
        match self.call(&op, body, false, false).await {
            Ok((_, answer)) => {
                let batch: repl::LogBatch = decode(&answer, "replication log")?;
                let records = batch
                    .records
                    .into_iter()
                    .map(repl::record_from_wire)
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| Error::Protocol(e.to_string()))?;
                Ok(LogRead::Records { epoch: batch.epoch, head: batch.head, records })
            }
            Err(Error::Remote { status: 410, message }) => {
                let gone = serde_json::from_str::<repl::GoneBody>(&message)
                    .map(|g| g.to_gone())
                    .unwrap_or(LogGone::EpochChanged { epoch: String::new() });
                Ok(LogRead::Gone(gone))
            }
            Err(Error::Remote { status: 404, .. }) => Err(Error::Unsupported(
                "the primary has no replication endpoints (openkv serve has; denokv has not)"
                    .into(),
            )),
            Err(e) => Err(e),
        }
    }

    /// The server's replication status: `Some` if it is a replica (`openkv serve
    /// --replica-of`), `None` if it is not or has no replication endpoints (denokv).
    pub(crate) async fn server_replica_status(&self) -> Result<Option<ReplicaStatus>> {
        let op = format!("{}status", repl::PATH_PREFIX);
        let answer = match self.call(&op, b"{}".to_vec(), false, false).await {
            Ok((_, answer)) => answer,
            Err(Error::Remote { status: 400 | 404, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let s: repl::StatusResponse = serde_json::from_slice(&answer)
            .map_err(|e| Error::Protocol(format!("replication status answer: {e}")))?;
        if !s.replica {
            return Ok(None);
        }
        let now = self.clock.now_ms();
        let mut status = ReplicaStatus::default();
        status.applied = s.version;
        status.primary_head = s.primary_head;
        status.behind_since_ms = (s.lag_ms > 0).then(|| now - s.lag_ms as i64);
        status.bootstraps = s.bootstraps;
        status.records_applied = s.records_applied;
        status.reads_local = s.reads_local;
        status.reads_forwarded = s.reads_forwarded;
        status.watches_local = s.watches_local;
        status.last_error = s.last_error;
        status.ready = true;
        Ok(Some(status))
    }

    /// The primary's commit counter now (a log request for no records).
    pub(crate) async fn replication_head(&self) -> Result<u64> {
        let request = repl::LogRequest { epoch: None, after: 0, wait_ms: 0, max_bytes: 0 };
        match self.replication_log(&request).await? {
            LogRead::Records { head, .. } => Ok(head),
            LogRead::Gone(why) => Err(Error::Unsupported(why.to_string())),
            other => Err(Error::Protocol(format!("unexpected log answer {other:?}"))),
        }
    }

    /// The primary's snapshot, streamed: its database id and the snapshot.
    pub(crate) async fn replication_snapshot(&self) -> Result<(String, Snapshot)> {
        let metadata = self.metadata().await?;
        let op = format!("{}snapshot", repl::PATH_PREFIX);
        let mut response = self
            .data_request(&metadata, &op, b"{}".to_vec(), false)
            // One long download: the request timeout is for ordinary calls.
            .timeout(Duration::from_secs(24 * 3600))
            .send()
            .await
            .map_err(|e| Error::Unavailable(Failure::caused("snapshot request", e)))?;
        let status = response.status();
        if !status.is_success() {
            let text = truncate(response.text().await.unwrap_or_default());
            return Err(match status.as_u16() {
                404 => Error::Unsupported(
                    "the primary serves no snapshots (openkv serve does; denokv does not)".into(),
                ),
                code @ 400..=499 => Error::Remote { status: code, message: text },
                code => Error::Unavailable(Failure::new(format!("snapshot: HTTP {code}: {text}"))),
            });
        }
        let mut buffer = Vec::new();
        let header = loop {
            if let Some(frame) = repl::next_frame(&mut buffer).map_err(protocol)? {
                break frame.header.ok_or_else(|| {
                    Error::Protocol("a snapshot stream must start with its header".into())
                })?;
            }
            match response.chunk().await {
                Ok(Some(chunk)) => buffer.extend_from_slice(&chunk),
                Ok(None) => return Err(broke_off("before its header")),
                Err(e) => return Err(Error::Unavailable(Failure::caused("snapshot stream", e))),
            }
        };
        let database_id = header.database_id.clone();
        let state = Frames { response, buffer, count: 0, done: false };
        let entries = futures::stream::unfold(state, |mut st| async move {
            if st.done {
                return None;
            }
            let item = st.next_chunk().await;
            match item {
                Ok(None) => None,
                Ok(Some(chunk)) => Some((Ok(chunk), st)),
                Err(e) => {
                    st.done = true;
                    Some((Err(e), st))
                }
            }
        });
        Ok((
            database_id,
            Snapshot { header: repl::header_from_wire(header), entries: entries.boxed() },
        ))
    }
}

fn protocol(e: repl::ReplicationWireError) -> Error {
    Error::Protocol(e.to_string())
}

fn broke_off(when: &str) -> Error {
    Error::Unavailable(Failure::new(format!("the snapshot stream broke off {when}")))
}

/// The frames of a snapshot stream after its header.
struct Frames {
    response: reqwest::Response,
    buffer: Vec<u8>,
    count: u64,
    done: bool,
}

impl Frames {
    /// The next chunk of entries; `None` after the end marker (whose count must match).
    async fn next_chunk(&mut self) -> Result<Option<Vec<(Vec<u8>, Row)>>> {
        loop {
            if let Some(frame) = repl::next_frame(&mut self.buffer).map_err(protocol)? {
                if let Some(end) = frame.end {
                    self.done = true;
                    if end.entries != self.count {
                        return Err(Error::Protocol(format!(
                            "the snapshot announced {} entries but carried {}",
                            end.entries, self.count
                        )));
                    }
                    return Ok(None);
                }
                let mut chunk = Vec::with_capacity(frame.entries.len());
                for change in frame.entries {
                    match repl::change_from_wire(change).map_err(protocol)? {
                        (key, Some(row)) => chunk.push((key, row)),
                        (_, None) => {
                            return Err(Error::Protocol(
                                "a snapshot entry cannot be a deletion".into(),
                            ))
                        }
                    }
                }
                self.count += chunk.len() as u64;
                return Ok(Some(chunk));
            }
            match self.response.chunk().await {
                Ok(Some(bytes)) => self.buffer.extend_from_slice(&bytes),
                Ok(None) => return Err(broke_off("before its end marker")),
                Err(e) => return Err(Error::Unavailable(Failure::caused("snapshot stream", e))),
            }
        }
    }
}
