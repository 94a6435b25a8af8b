//! Queue mechanics every backend shares: Deno's default retry schedule and lease times, lease
//! arithmetic, the stored JSON columns, and the signal that wakes this process's listeners.
//! (The listener loop itself is the facade's: `openkv::Kv::listen_queue`.)

use std::time::Duration;

use crate::error::{Error, Result};

/// Deno's default queue retry schedule, in milliseconds.
pub const DEFAULT_BACKOFF_SCHEDULE: [u32; 5] = [100, 1000, 5000, 30000, 60000];

/// A lease as milliseconds for a backend's deadline arithmetic (`now + lease`): saturating far
/// below `i64::MAX`, so that the sum cannot overflow.
pub fn lease_millis(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2).min(i64::MAX / 2)
}

/// Parses a stored JSON column of a queue message (backoff schedule, dead-letter keys). One
/// that is not the JSON Deno writes is a corrupt row: reported, not guessed at.
pub fn parse_stored_json<T: serde::de::DeserializeOwned>(
    what: &str,
    id: &str,
    json: &str,
) -> Result<T> {
    serde_json::from_str(json).map_err(|e| {
        Error::corrupt_caused(
            format_args!("queue message {id}: its {what} {json:?} is not valid JSON"),
            e,
        )
    })
}

/// How long a taken message stays leased to its listener without a renewal (Deno: 5 s).
pub const QUEUE_LEASE: Duration = Duration::from_secs(5);
/// How often a listener renews the leases of the messages it is delivering (Deno: 2 s).
pub const QUEUE_LEASE_RENEWAL: Duration = Duration::from_secs(2);

/// Queue activity a listener can wait for instead of polling: a counter that changes (at
/// least) when this process enqueues a message or closes the store. A `watch` channel rather
/// than a `Notify`: any number of waiters (a listener, a server's long-polling remote
/// listeners) each see every change, and a change made while nobody waited is not lost.
#[derive(Debug)]
pub struct QueueSignal(tokio::sync::watch::Sender<u64>);

impl Default for QueueSignal {
    fn default() -> Self {
        Self::new()
    }
}

impl QueueSignal {
    /// A signal nobody waits on yet.
    pub fn new() -> Self {
        QueueSignal(tokio::sync::watch::Sender::new(0))
    }

    /// Tells every waiter that the queue may have something for them.
    pub fn wake(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that sees every later [`wake`](Self::wake): what
    /// [`QueueBackend::queue_wakeup`](crate::QueueBackend::queue_wakeup) hands out.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.subscribe()
    }

    /// Nobody holds a receiver any more.
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    /// Resolves once nobody holds a receiver any more.
    pub async fn closed(&self) {
        self.0.closed().await
    }
}

/// Waits for the next change of a queue signal; forever without one (or once its store is
/// gone, as the sender's end means the store closed: the caller's next call says so).
pub async fn queue_changed(signal: &mut Option<tokio::sync::watch::Receiver<u64>>) {
    let ended = match signal.as_mut() {
        Some(rx) => rx.changed().await.is_err(),
        None => std::future::pending().await,
    };
    if ended {
        *signal = None;
    }
}
