//! [`WatchStream`]: what [`Kv::watch`] returns, over the snapshots a backend yields
//! (`openkv_core::watch` follows a change feed; the KV Connect client speaks `/watch`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::stream::{BoxStream, Stream, StreamExt};

use crate::backend::{RawEntry, WatchSnapshots};
use crate::error::{Error, Result};
use crate::key::Key;
use crate::kv::{Entry, Kv};

/// The stream [`Kv::watch`] returns: the watched keys' current entries first, then a new
/// snapshot (one `Option<Entry>` per key, in the order given) each time at least one of
/// their versionstamps changes — a write, a delete, or an expiry. Two snapshots in a row always
/// differ.
///
/// - **Expiry**: an expired key is absent from every read at once, but a local database hears
///   of the expiry at its sweep, so the snapshot without the key arrives within one
///   [`expiry_sweep_interval`](crate::OpenOptions::expiry_sweep_interval) (default 1 s).
/// - **Other processes** writing the same SQLite file (Deno CLI, another openkv) are noticed
///   by a poll of the file's commit counter every 100 ms while anything watches.
/// - **Remote databases** (KV Connect protocol version 3) follow the server's `/watch`
///   stream, reconnecting with backoff if it breaks; a snapshot is emitted after a reconnect
///   only if it differs from the last one.
/// - The stream **ends** (`None`) when the `Kv` is closed. An error item (a failed read, a
///   remote server gone for longer than the retry timeout) is the last item.
///
/// It keeps the database open (it holds a clone of the `Kv`) until it is dropped.
pub struct WatchStream {
    keys: Arc<[Key]>,
    inner: BoxStream<'static, Result<Vec<Option<RawEntry>>>>,
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream").field("keys", &self.keys).finish_non_exhaustive()
    }
}

impl WatchStream {
    pub(crate) fn new(keys: &[Key], inner: WatchSnapshots) -> WatchStream {
        WatchStream { keys: keys.into(), inner }
    }

    /// The keys this stream follows, in the order of each snapshot.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }
}

impl Stream for WatchStream {
    type Item = Result<Vec<Option<Entry>>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        this.inner.poll_next_unpin(cx).map(|item| {
            item.map(|snapshot| {
                let snapshot = snapshot?;
                if snapshot.len() != this.keys.len() {
                    return Err(Error::Internal(format!(
                        "a watch of {} keys yielded {} entries",
                        this.keys.len(),
                        snapshot.len()
                    )));
                }
                // The backend answered for exactly these keys (point reads, or a remote
                // answer checked against them): reuse the caller's `Key`s, no decoding.
                Ok(snapshot
                    .into_iter()
                    .zip(this.keys.iter())
                    .map(|(raw, key)| {
                        raw.map(|raw| Entry {
                            key: key.clone(),
                            value: raw.value,
                            versionstamp: raw.versionstamp,
                        })
                    })
                    .collect())
            })
        })
    }
}

/// Ends `snapshots` when `kv` is closed; the stream keeps `kv` (and so the store) alive.
pub(crate) fn until_closed(kv: Kv, snapshots: WatchSnapshots) -> WatchSnapshots {
    let closed = async move { kv.closed().await };
    snapshots.take_until(closed).boxed()
}
