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

use crate::backend::{Enqueue, QueueChange, QueueListing, QueuedMessage};
use crate::error::{Error, Result};
use crate::js::encode_v8;
use crate::key::Key;
use crate::kv::{committed, AtomicOperation, Kv};
use crate::value::{ToValue, Value};
use crate::versionstamp::Versionstamp;
use openkv_core::queue::{queue_changed, QUEUE_LEASE, QUEUE_LEASE_RENEWAL};

impl Kv {
    /// Waits until a queue message is due — one that falls due, is enqueued ready, or whose
    /// lease ran out — and returns `true`, or returns `false` once `timeout` passed with none.
    /// For a server that long-polls for remote listeners (`openkv serve`'s queue `wait`):
    /// this process's enqueues wake it at once, other processes' within about a second.
    pub async fn queue_wait_due(&self, timeout: Duration) -> Result<bool> {
        wait_due(self, timeout).await
    }

    /// Enqueues a message (any value [`set`](Self::set) takes but a `KvU64`, which Deno cannot
    /// enqueue either) for [`listen_queue`](Self::listen_queue) — in this process, another, or
    /// a Deno program on the same file. Returns the commit's versionstamp.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use openkv::{key, EnqueueOptions, Kv};
    /// let kv = Kv::open_in_memory().await?;
    /// let options = EnqueueOptions::new()
    ///     .delay(Duration::from_millis(10))
    ///     .keys_if_undelivered([key!["failed", "welcome-mail"]]);
    /// kv.enqueue(&serde_json::json!({"to": "ada@example.com"}), &options).await?;
    /// # Ok::<(), openkv::Error>(()) }).unwrap();
    /// ```
    pub async fn enqueue(
        &self,
        value: impl ToValue,
        options: &EnqueueOptions,
    ) -> Result<Versionstamp> {
        committed(self.atomic().enqueue(value, options).commit().await?)
    }

    /// Delivers queue messages to `handler` until the database is closed, then returns
    /// `Ok(())`. At least once: a message is removed only after `handler` returned `Ok`; an
    /// `Err` or a panic is a failed attempt, retried per the message's backoff schedule, and
    /// after the last attempt its value goes to its `keys_if_undelivered`. Up to
    /// [`OpenOptions::queue_max_concurrency`](crate::OpenOptions::queue_max_concurrency) messages are delivered at once, earliest due
    /// first. One listener per database: a second call fails while the first runs. Dropping
    /// the returned future stops listening; the messages it was delivering are delivered again
    /// once their lease ([`QUEUE_LEASE`](crate::QUEUE_LEASE)) runs out.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use openkv::{EnqueueOptions, Kv};
    /// let kv = Kv::open_in_memory().await?;
    /// kv.enqueue(&"hello".to_string(), &EnqueueOptions::new()).await?;
    /// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    /// let listener = tokio::spawn(kv.clone().listen_queue(move |message| {
    ///     let tx = tx.clone();
    ///     async move {
    ///         let text: String = message.value.decode().map_err(|e| e.to_string())?;
    ///         tx.send(text).map_err(|e| e.to_string())
    ///     }
    /// }));
    /// assert_eq!(rx.recv().await.unwrap(), "hello");
    /// kv.close().await?;
    /// listener.await.unwrap()?; // returns once the database is closed
    /// # Ok::<(), openkv::Error>(()) }).unwrap();
    /// ```
    pub async fn listen_queue<F, Fut, E>(self, handler: F) -> Result<()>
    where
        F: Fn(QueueMessage) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let (listening, max, poll) = self.queue_listener_settings();
        listen(self, listening, max, poll, handler).await
    }

    /// The queue as an operator sees it (a console): how many messages are ready, delayed
    /// and running (all of them), and up to `limit` of them with their payloads, state, due
    /// time, attempts so far, remaining backoff and dead-letter keys — running ones first,
    /// then by due time, then by id; all read at one moment. See
    /// [`QueueBackend::queue_inspect`](crate::QueueBackend::queue_inspect).
    /// [`Error::Unsupported`] on a KV Connect database.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use openkv::{EnqueueOptions, Kv, QueueMessageState};
    /// let kv = Kv::open_in_memory().await?;
    /// kv.enqueue(&"later".to_string(), &EnqueueOptions::new().delay(Duration::from_secs(60)))
    ///     .await?;
    /// let listing = kv.queue_inspect(10).await?;
    /// assert_eq!((listing.ready, listing.delayed, listing.running), (0, 1, 0));
    /// let message = &listing.messages[0];
    /// assert_eq!(message.state, QueueMessageState::Delayed);
    /// assert_eq!(message.payload.decode::<String>()?, "later");
    /// # Ok::<(), openkv::Error>(()) }).unwrap();
    /// ```
    pub async fn queue_inspect(&self, limit: usize) -> Result<QueueListing> {
        self.backend().queues()?.queue_inspect(limit).await
    }

    /// An operator's change to the queue message `id`: [`QueueChange::Remove`] deletes it
    /// (waiting or running; a listener finishing it later changes nothing),
    /// [`QueueChange::DueNow`] makes a waiting one due now and wakes the listeners (a running
    /// one is refused: [`Error::QueueMessageInFlight`]). `Ok(false)`: no message has that id.
    /// [`Error::Unsupported`] on a KV Connect database.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use openkv::{EnqueueOptions, Kv, QueueChange};
    /// let kv = Kv::open_in_memory().await?;
    /// kv.enqueue(&"later".to_string(), &EnqueueOptions::new().delay(Duration::from_secs(60)))
    ///     .await?;
    /// let id = kv.queue_inspect(1).await?.messages[0].id.clone();
    /// assert!(kv.queue_change(&id, QueueChange::DueNow).await?);
    /// assert_eq!(kv.queue_take(1, Duration::from_secs(5)).await?.len(), 1);
    /// assert!(!kv.queue_change("no-such-id", QueueChange::Remove).await?);
    /// # Ok::<(), openkv::Error>(()) }).unwrap();
    /// ```
    pub async fn queue_change(&self, id: &str, change: QueueChange) -> Result<bool> {
        self.backend().queues()?.queue_change(id, change).await
    }
}

impl AtomicOperation {
    /// Enqueues a message with this write: delivered only if the write commits. See
    /// [`Kv::enqueue`].
    pub fn enqueue(mut self, value: impl ToValue, options: &EnqueueOptions) -> Self {
        let payload = match self.stored(value) {
            Value::V8(bytes) => Ok(bytes),
            // Deno enqueues a Uint8Array as a V8 value; do the same for raw bytes.
            Value::Bytes(bytes) => crate::js::to_js(&crate::js::JsBytes(bytes))
                .map_err(|e| Error::InvalidValue(e.to_string()))
                .and_then(|js| encode_v8(&js).map_err(|e| Error::InvalidValue(e.to_string()))),
            Value::U64(_) => {
                Err(Error::InvalidEnqueue("a KvU64 cannot be enqueued (nor can it in Deno)".into()))
            }
        };
        let keys: Result<Vec<Vec<u8>>> =
            options.keys_if_undelivered.iter().map(Key::encode).collect();
        let schedule: Option<Vec<u32>> = options
            .backoff_schedule
            .as_ref()
            .map(|s| s.iter().map(|d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX)).collect());
        let delay_ms = i64::try_from(options.delay.as_millis()).unwrap_or(i64::MAX);
        match (payload, keys) {
            (Ok(payload), Ok(keys_if_undelivered)) => {
                self.write.enqueues.push(Enqueue {
                    payload,
                    deadline_ms: self.kv.now_ms().saturating_add(delay_ms),
                    keys_if_undelivered,
                    backoff_schedule: schedule,
                });
            }
            (Err(e), _) | (_, Err(e)) => {
                self.error.get_or_insert(e);
            }
        }
        self
    }
}

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
    let backend = kv.backend().queues()?;
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

    let backend = kv.backend().queues()?;
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
