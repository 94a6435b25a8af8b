//! The KV Connect client: a [`Backend`] that sends each snapshot read and atomic write to a
//! remote server (`openkv serve`, `denokv`, or anything else speaking the protocol Deno's
//! `Deno.openKv("http://…")` speaks).
//!
//! The client side of the protocol (shared/spec/KV-CONNECT.md §2–3):
//! - **Metadata exchange** at open, with the access token: the server picks the protocol
//!   version (we offer 1, 2 and 3), names its endpoints and hands out a data-path token that
//!   expires. The metadata is fetched again before it expires — at the latest 60 s after the
//!   last fetch, as Deno does — and at once if a data-path request answers 401.
//! - **Retries.** A request that fails on the network, or that the server answers with a 5xx,
//!   is retried with exponential backoff and jitter until `retry_timeout` has passed, then
//!   fails with [`Error::Unavailable`]; [`RemoteConfig::on_retry`] is told of each retry (a
//!   command line says "still trying" through it). A 4xx is final: [`Error::Remote`] with the server's
//!   message.
//! - **No write applied twice.** An atomic write is retried only when the server cannot have
//!   applied it: it never reached the server (connect failure) or the server answered with a
//!   failure. When the answer is lost after the request was sent (a reset, a timeout, a
//!   gateway's 502/504), the outcome is unknown and the call fails with
//!   [`Error::OutcomeUnknown`] instead of risking a second application. (Deno's client retries
//!   those too, which can apply a `sum` twice.)
//! - **Distrust of answers**: a malformed or impossible answer (wrong range count, entries
//!   outside their range, a 9-byte versionstamp) is [`Error::Protocol`], never a panic.
//!
//! - **Eventual reads and watches** go to the first `eventual` endpoint the metadata lists (a
//!   read replica), as Deno's clients send them; everything else to the `strong` one.
//! - **Watch** (protocol version 3): `/watch`'s stream of frames, reconnected when it breaks
//!   (see `watch.rs`). There is no change feed: `subscribe` is [`Error::Unsupported`].
//!
//! Not here (yet): queue delivery.
// A library reports through its return values and `tracing`, never on stdout/stderr;
// `unsafe_code`, `missing_docs` and the rest: `[workspace.lints]` in the root Cargo.toml.
#![deny(clippy::print_stdout, clippy::print_stderr)]

// The layers below, under the names this crate's modules use (`crate::backend::…`).
use openkv_core::{backend, clock, error, queue, versionstamp};

mod client;
#[doc(hidden)]
pub mod fuzzing;
mod replica;
mod watch;
mod wire;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use openkv_proto::queue as queue_ext;
use prost::Message;
use tokio::sync::broadcast;

use crate::backend::{
    AtomicWrite, Backend, BackupBackend, ChangeEvent, CommitOutcome, Consistency, QueueBackend,
    QueuedMessage, RawEntry, ReadRange, WatchSnapshots,
};
use crate::error::{Error, Failure, Result};
use crate::queue::QueueSignal;
use client::{decode, lock, truncate, wait_for_due};

pub use client::{RemoteBackend, RemoteConfig, RemoteRetry, RetryObserver};
pub use replica::{ReplicaBackend, ReplicaOptions};

#[async_trait]
impl Backend for RemoteBackend {
    async fn snapshot_read(
        &self,
        ranges: Vec<ReadRange>,
        consistency: Consistency,
    ) -> Result<Vec<Vec<RawEntry>>> {
        let body = openkv_proto::convert::read_to_wire(&ranges).encode_to_vec();
        let eventual = consistency == Consistency::Eventual;
        let (metadata, answer) = self.call("snapshot_read", body, eventual, false).await?;
        let output = decode(&answer, "snapshot_read")?;
        // A read sent to the strong endpoint must come back strongly consistent.
        let strong = !eventual || metadata.eventual.is_none();
        wire::snapshot_read_output(&ranges, output, metadata.version, strong)
    }

    async fn atomic_write(&self, write: AtomicWrite) -> Result<CommitOutcome> {
        let body = openkv_proto::convert::write_to_wire(&write).encode_to_vec();
        let (_, answer) = self.call("atomic_write", body, false, true).await?;
        wire::atomic_write_output(&write, decode(&answer, "atomic_write")?)
    }

    fn subscribe(&self) -> Result<broadcast::Receiver<ChangeEvent>> {
        Err(Error::Unsupported(
            "a remote database has no change feed (Kv::watch works: it speaks KV Connect's \
             /watch)"
                .into(),
        ))
    }

    fn watch(self: Arc<Self>, keys: Vec<Vec<u8>>) -> Result<WatchSnapshots> {
        watch::follow(self, keys)
    }

    async fn database_id(&self) -> Result<uuid::Uuid> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(self.metadata().await?.database_id)
    }

    async fn close(&self) -> Result<()> {
        // Nothing is buffered on the client: every write was answered before it returned.
        self.closed.store(true, Ordering::Release);
        if let Some((signal, task)) = lock(&self.queue_waiter).take() {
            // No long poll outlives the handle; its listener sees the change, then `Closed`.
            task.abort();
            signal.wake();
        }
        Ok(())
    }

    fn queues(self: Arc<Self>) -> Result<Arc<dyn QueueBackend>> {
        Ok(self)
    }

    fn backups(self: Arc<Self>) -> Result<Arc<dyn BackupBackend>> {
        Ok(self)
    }

    async fn replica_status(&self) -> Result<Option<openkv_core::changelog::ReplicaStatus>> {
        self.server_replica_status().await
    }
}

/// The messages of a queue `take` answer (a server's JSON: payloads in base64).
fn take_answer(answer: &[u8]) -> Result<Vec<QueuedMessage>> {
    let taken: queue_ext::TakeResponse = serde_json::from_slice(answer)
        .map_err(|e| Error::Protocol(format!("queue take answer: {e}")))?;
    taken
        .messages
        .into_iter()
        .map(|m| {
            use base64::Engine as _;
            let payload = base64::engine::general_purpose::STANDARD
                .decode(&m.payload)
                .map_err(|e| Error::Protocol(format!("queue message payload: {e}")))?;
            Ok(QueuedMessage {
                id: m.id,
                payload,
                due_ms: m.due_ms,
                // The server keeps the schedule and the dead-letter keys; a remote
                // listener only reports outcomes.
                backoff_schedule: Vec::new(),
                keys_if_undelivered: Vec::new(),
                attempt: m.attempt,
            })
        })
        .collect()
}

#[async_trait]
impl QueueBackend for RemoteBackend {
    async fn queue_take(&self, max: usize, lease: Duration) -> Result<Vec<QueuedMessage>> {
        self.queue_taken.notify_one();
        // The server caps both; ask within its bounds rather than be refused.
        let max = max.clamp(1, queue_ext::MAX_TAKE);
        let lease_ms = queue_ext::lease_ms_within_bounds(lease);
        let answer = self.queue_call("take", &queue_ext::TakeRequest { max, lease_ms }).await?;
        take_answer(&answer)
    }

    async fn queue_renew(&self, ids: Vec<String>, lease: Duration) -> Result<()> {
        let lease_ms = queue_ext::lease_ms_within_bounds(lease);
        self.queue_call("renew", &queue_ext::RenewRequest { ids, lease_ms }).await?;
        Ok(())
    }

    async fn queue_finish(&self, outcomes: Vec<(String, bool)>) -> Result<()> {
        let results = outcomes
            .into_iter()
            .map(|(id, delivered)| queue_ext::FinishResult { id, delivered })
            .collect();
        self.queue_call("finish", &queue_ext::FinishRequest { results }).await?;
        Ok(())
    }

    async fn queue_next_due(&self) -> Result<Option<i64>> {
        // Unknown from here: the listener polls (OpenOptions::queue_poll_interval), and the
        // server's long-poll (queue_wakeup) wakes it sooner.
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(None)
    }

    fn queue_wakeup(self: Arc<Self>) -> Option<tokio::sync::watch::Receiver<u64>> {
        let mut slot = lock(&self.queue_waiter);
        if let Some((signal, task)) = slot.as_ref() {
            // A task still running for a listener that still holds its signal: share it.
            if !task.is_finished() && !signal.is_closed() {
                return Some(signal.subscribe());
            }
        }
        // Outside a runtime there is nothing to run the long poll on: poll only.
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let signal = Arc::new(QueueSignal::new());
        let receiver = signal.subscribe();
        let task = runtime.spawn(wait_for_due(
            Arc::downgrade(&self),
            signal.clone(),
            self.queue_taken.clone(),
        ));
        *slot = Some((signal, task));
        Some(receiver)
    }
}

#[async_trait]
impl BackupBackend for RemoteBackend {
    async fn backup(&self, dest: std::path::PathBuf) -> Result<crate::backend::BackupSummary> {
        use openkv_sqlite::backup::{install, temporary_beside, verify_own_copy};
        use std::io::Write as _;
        if dest.exists() {
            return Err(Error::InvalidOption(format!(
                "{} already exists: a backup never overwrites a file",
                dest.display()
            )));
        }
        let metadata = self.metadata().await?;
        let request = self.data_request(&metadata, "openkv/backup", Vec::new(), false);
        // No retries: a backup is one long download, started again by its caller if need be.
        let mut response = request
            .timeout(Duration::from_secs(24 * 3600))
            .send()
            .await
            .map_err(|e| Error::Unavailable(Failure::caused("backup request", e)))?;
        let status = response.status();
        if !status.is_success() {
            let text = truncate(response.text().await.unwrap_or_default());
            return Err(match status.as_u16() {
                404 => Error::Unsupported(
                    "the server cannot make backups (openkv serve can; denokv cannot)".into(),
                ),
                code @ 400..=499 => Error::Remote { status: code, message: text },
                code => Error::Unavailable(Failure::new(format!("backup: HTTP {code}: {text}"))),
            });
        }
        let temporary = temporary_beside(&dest);
        let download = async {
            let mut file = std::fs::File::create(&temporary).map_err(|e| {
                Error::storage_caused(format_args!("creating {}", temporary.display()), e)
            })?;
            while let Some(chunk) = response.chunk().await.map_err(|e| {
                Error::Unavailable(Failure::caused("the backup download broke off", e))
            })? {
                file.write_all(&chunk).map_err(|e| {
                    Error::storage_caused(format_args!("writing {}", temporary.display()), e)
                })?;
            }
            let (temporary, dest) = (temporary.clone(), dest.clone());
            tokio::task::spawn_blocking(move || {
                let summary = verify_own_copy(&temporary)?;
                install(&temporary, &dest)?;
                Ok(summary)
            })
            .await
            .map_err(|e| Error::Internal(format!("verifying the backup panicked: {e}")))?
        };
        let result = download.await;
        if result.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        result
    }

    async fn restore_from(
        &self,
        backup: std::path::PathBuf,
    ) -> Result<crate::backend::BackupSummary> {
        use tokio::io::AsyncReadExt;
        let summary = {
            let checked = backup.clone();
            tokio::task::spawn_blocking(move || openkv_sqlite::verify_backup(&checked))
                .await
                .map_err(|e| Error::Internal(format!("verifying the backup panicked: {e}")))??
        };
        let file = tokio::fs::File::open(&backup)
            .await
            .map_err(|e| Error::storage_caused(format_args!("opening {}", backup.display()), e))?;
        // Streamed from disk: a backup may be far larger than memory should hold.
        let chunks = futures::stream::unfold(file, |mut file| async move {
            let mut buf = vec![0u8; 256 * 1024];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok::<_, std::io::Error>(buf), file))
                }
                Err(e) => Some((Err(e), file)),
            }
        });
        let metadata = self.metadata().await?;
        // No retries: replacing a database is not something to do twice behind the caller's
        // back. A lost answer is OutcomeUnknown.
        let response = self
            .data_request(&metadata, "openkv/restore", Vec::new(), false)
            .body(reqwest::Body::wrap_stream(chunks))
            .timeout(Duration::from_secs(24 * 3600))
            .send()
            .await
            .map_err(|e| Error::OutcomeUnknown(Failure::caused("restore upload", e)))?;
        let status = response.status();
        let text = truncate(response.text().await.unwrap_or_default());
        match status.as_u16() {
            200..=299 => Ok(summary),
            404 => Err(Error::Unsupported(
                "the server cannot restore backups (openkv serve can; denokv cannot)".into(),
            )),
            code @ 400..=499 => Err(Error::Remote { status: code, message: text }),
            code => Err(Error::Unavailable(Failure::new(format!("restore: HTTP {code}: {text}")))),
        }
    }
}
