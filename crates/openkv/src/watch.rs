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

impl Kv {
    /// Follows up to 10 keys (Deno's `kv.watch`): the stream yields their current entries
    /// first, then a new snapshot each time one of their versionstamps changes (a write, a
    /// delete, an expiry), and ends when the database is closed. See [`WatchStream`] for
    /// expiry latency, other processes and remote databases.
    ///
    /// Fails at once on an empty list, on more than [`Limits::max_watched_keys`](crate::Limits::max_watched_keys) keys
    /// ([`Error::TooManyWatchedKeys`]) or on a key too large to read. (Deno answers an empty
    /// list with a stream that ends at once; a watch of nothing is a mistake here.)
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use futures::StreamExt;
    /// use openkv::{key, Kv, Value};
    /// let kv = Kv::open_in_memory().await?;
    /// let mut changes = kv.watch(&[key!["config"]])?;
    /// assert_eq!(changes.next().await.unwrap()?, vec![None]); // the current state first
    /// let stamp = kv.set(&key!["config"], Value::Bytes(b"v1".to_vec())).await?;
    /// let now = changes.next().await.unwrap()?;
    /// assert_eq!(now[0].as_ref().unwrap().versionstamp, stamp);
    /// kv.close().await?;
    /// assert!(changes.next().await.is_none()); // it ends with the database
    /// # Ok::<(), openkv::Error>(()) }).unwrap();
    /// ```
    pub fn watch(&self, keys: &[Key]) -> Result<WatchStream> {
        let encoded = keys.iter().map(Key::encode).collect::<Result<Vec<_>>>()?;
        Ok(WatchStream::new(keys, self.watch_encoded(encoded)?))
    }

    /// [`watch`](Self::watch) on encoded keys, yielding raw entries: the building block of a
    /// KV Connect server's `/watch`. Checked like `watch`; ends when this `Kv` is closed.
    pub fn watch_encoded(&self, keys: Vec<Vec<u8>>) -> Result<crate::WatchSnapshots> {
        crate::validate::watch_keys(self.limits(), &keys)?;
        let snapshots = self.backend().watch(keys)?;
        Ok(until_closed(self.clone(), snapshots))
    }
}

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
