//! Queues: [`Kv::enqueue`](crate::Kv::enqueue) and [`Kv::listen_queue`](crate::Kv::listen_queue).
//!
//! Delivery is **at least once**: a message leaves the queue only after its handler returned
//! `Ok`. A handler that returns `Err` or panics is a failed attempt, retried after the next
//! interval of the message's backoff schedule (Deno's default `[100, 1000, 5000, 30000, 60000]`
//! ms when none was given); after the last one the message's value is written to its
//! `keys_if_undelivered`. A message whose listener dies mid-delivery (its process is killed)
//! is leased, not lost: when the lease runs out it is delivered again, by this process after a
//! restart or by any other process listening on the same file (Deno CLI included).

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::backend::QueuedMessage;
use crate::error::{Error, Result};
use crate::key::Key;
use crate::kv::Kv;
use crate::value::Value;
use openkv_core::queue::{queue_changed, QUEUE_LEASE, QUEUE_LEASE_RENEWAL};

/// How a message is enqueued: [`Kv::enqueue`](crate::Kv::enqueue) and
/// [`AtomicOperation::enqueue`](crate::AtomicOperation::enqueue).
///
/// | setting | default |
/// |---|---|
/// | [`delay`](Self::delay) | none: due at once |
/// | [`keys_if_undelivered`](Self::keys_if_undelivered) | none: a message that fails its last attempt is dropped |
/// | [`backoff_schedule`](Self::backoff_schedule) | Deno's: retries after 0.1, 1, 5, 30 and 60 s |
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EnqueueOptions {
    pub(crate) delay: Duration,
    pub(crate) keys_if_undelivered: Vec<Key>,
    pub(crate) backoff_schedule: Option<Vec<Duration>>,
}

impl EnqueueOptions {
    /// The defaults in the table above.
    pub fn new() -> Self {
        Self::default()
    }

    /// Delivers no earlier than `delay` from now (at most 30 days).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Keys that receive the message's value if its last delivery attempt fails (at most 10).
    pub fn keys_if_undelivered(mut self, keys: impl IntoIterator<Item = Key>) -> Self {
        self.keys_if_undelivered = keys.into_iter().collect();
        self
    }

    /// The waits between failed attempts (at most 5 intervals — Deno's client limit — each
    /// at most one hour; millisecond precision). An empty schedule means one attempt only.
    pub fn backoff_schedule(mut self, schedule: impl IntoIterator<Item = Duration>) -> Self {
        self.backoff_schedule = Some(schedule.into_iter().collect());
        self
    }
}

/// A message delivered to a [`Kv::listen_queue`](crate::Kv::listen_queue) handler.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct QueueMessage {
    /// The message's id, stable across attempts.
    pub id: String,
    /// The enqueued value (always [`Value::V8`]: `value.decode::<T>()` or `value.to_js()`).
    pub value: Value,
    /// When the message was due, Unix milliseconds.
    pub due_ms: i64,
    /// Which attempt this is: 1 for the first delivery, 2 for the first retry, …
    pub attempt: u32,
}

/// How often [`wait_due`] looks at the queue between signals: messages that other processes
/// enqueue (Deno CLI on the same file, another server on PostgreSQL) do not change this
/// process's signal.
pub(crate) const DUE_WAIT_POLL: Duration = Duration::from_secs(1);

/// Waits until some message is due — now, when it falls due, or when its lease runs out —
/// (`true`) or `timeout` passed (`false`). Behind `Kv::queue_wait_due`.
pub(crate) async fn wait_due(kv: &Kv, timeout: Duration) -> Result<bool> {
    let backend = kv.backend();
    let mut signal = backend.clone().queue_wakeup();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let now = kv.now_ms();
        let next = backend.queue_next_due().await?;
        if next.is_some_and(|due| due <= now) {
            return Ok(true);
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        let mut pause = left.min(DUE_WAIT_POLL);
        if let Some(due) = next {
            pause = pause.min(Duration::from_millis(due.saturating_sub(now) as u64));
        }
        tokio::select! {
            _ = queue_changed(&mut signal) => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// The listener loop behind `Kv::listen_queue`. Returns when the store closes.
pub(crate) async fn listen<F, Fut, E>(
    kv: Kv,
    listening: Arc<AtomicBool>,
    max_concurrent: usize,
    poll_interval: Duration,
    handler: F,
) -> Result<()>
where
    F: Fn(QueueMessage) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
    E: Display + Send + 'static,
{
    // One listener per store: two would only compete for the same messages.
    if listening.swap(true, Ordering::AcqRel) {
        return Err(Error::InvalidOption("this database already has a queue listener".into()));
    }
    struct Release(Arc<AtomicBool>);
    impl Drop for Release {
        fn drop(&mut self) {
            self.0.store(false, Ordering::Release);
        }
    }
    let _release = Release(listening);

    let backend = kv.backend();
    let mut wakeup = backend.clone().queue_wakeup();
    let handler = Arc::new(handler);
    // Deliveries in flight: task id → message id.
    let mut running: JoinSet<(String, bool)> = JoinSet::new();
    let mut in_flight: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut next_renewal = tokio::time::Instant::now() + QUEUE_LEASE_RENEWAL;
    loop {
        // Take what is due, up to the free delivery slots.
        let free = max_concurrent.saturating_sub(running.len());
        if free > 0 {
            let taken = match backend.queue_take(free, QUEUE_LEASE).await {
                Ok(taken) => taken,
                Err(Error::Closed) => return Ok(()),
                Err(e) => return Err(e),
            };
            for message in taken {
                let handler = handler.clone();
                let id = message.id.clone();
                let handle = running.spawn(deliver(handler, message));
                in_flight.insert(handle.id(), id);
            }
        }
        // Sleep until a delivery ends, a message falls due, our own process enqueues, a
        // renewal is due, or the poll interval (for other processes' messages) is over.
        let now = kv.now_ms();
        let until_due = match backend.queue_next_due().await {
            Ok(Some(due)) => Duration::from_millis(due.saturating_sub(now).max(0) as u64),
            Ok(None) => poll_interval,
            Err(Error::Closed) => return Ok(()),
            Err(e) => return Err(e),
        };
        let sleep = until_due.min(poll_interval);
        let mut sleep_until = tokio::time::Instant::now() + sleep;
        if !in_flight.is_empty() {
            // Leases to renew; an idle listener sleeps until there is work (or its poll).
            sleep_until = sleep_until.min(next_renewal);
        }
        tokio::select! {
            Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                // Report every delivery that has ended by now in one call (one transaction):
                // with many short handlers, that is one fsync per batch instead of per message.
                let mut outcomes = vec![outcome(&mut in_flight, done)];
                while let Some(done) = running.try_join_next_with_id() {
                    outcomes.push(outcome(&mut in_flight, done));
                }
                match backend.queue_finish(outcomes).await {
                    Ok(()) => {}
                    Err(Error::Closed) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            _ = queue_changed(&mut wakeup) => {}
            _ = tokio::time::sleep_until(sleep_until) => {}
        }
        if tokio::time::Instant::now() >= next_renewal {
            if !in_flight.is_empty() {
                let ids: Vec<String> = in_flight.values().cloned().collect();
                match backend.queue_renew(ids, QUEUE_LEASE).await {
                    Ok(()) => {}
                    Err(Error::Closed) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            next_renewal = tokio::time::Instant::now() + QUEUE_LEASE_RENEWAL;
        }
    }
}

/// The `(id, delivered)` of a delivery task that ended; forgets it from `in_flight`.
fn outcome(
    in_flight: &mut HashMap<tokio::task::Id, String>,
    done: std::result::Result<(tokio::task::Id, (String, bool)), tokio::task::JoinError>,
) -> (String, bool) {
    match done {
        Ok((task, (id, delivered))) => {
            in_flight.remove(&task);
            (id, delivered)
        }
        // deliver() turns handler errors into `false`, so a JoinError is a panic (or a
        // cancellation): a failed attempt.
        Err(e) => {
            let id = in_flight.remove(&e.id()).unwrap_or_default();
            tracing::warn!("openkv: queue handler panicked on message {id}: {e}");
            (id, false)
        }
    }
}

/// One delivery attempt; `true` if the handler accepted the message.
async fn deliver<F, Fut, E>(handler: Arc<F>, message: QueuedMessage) -> (String, bool)
where
    F: Fn(QueueMessage) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
    E: Display + Send + 'static,
{
    let id = message.id.clone();
    let delivered = QueueMessage {
        id: message.id,
        value: Value::V8(message.payload),
        due_ms: message.due_ms,
        attempt: message.attempt,
    };
    match handler(delivered).await {
        Ok(()) => (id, true),
        Err(e) => {
            tracing::info!("openkv: queue handler failed on message {id}: {e}");
            (id, false)
        }
    }
}
