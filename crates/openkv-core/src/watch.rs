//! `watch`: follow up to 10 keys and get a new snapshot of them whenever one changes.
//!
//! A backend yields [`WatchSnapshots`] (encoded keys, [`RawEntry`]s); the facade's `Kv::watch`
//! checks the keys, ends the stream when the `Kv` is closed, and turns it into a `WatchStream`
//! of entries. Backends with a change feed (SQLite, PostgreSQL) use [`follow_change_feed`], the
//! default of [`Backend::watch`]; the KV Connect client speaks `/watch` instead.
//!
//! How the change feed is followed (docs/design.md §12):
//! - **Subscribe before the first read**, so a commit between the two is seen as an event.
//! - **Re-read only when needed**: one `snapshot_read` of the keys per event that may affect
//!   one of them (it names one, or it names none: another process's commit), after first
//!   draining every event already queued — those commits are visible to the read, so a burst
//!   of writes costs one read, not one per write.
//! - **Compare before emitting**: a snapshot is emitted only if a key's versionstamp or
//!   presence differs from the last one emitted, so no two equal snapshots follow each other.
//! - **Never drop silently**: a lagging subscriber (`RecvError::Lagged`) re-reads and
//!   compares; the missed events cannot hide a change, since the read shows the latest state.
//!
//! Many watchers are cheap: they share the backend's one broadcast channel and do nothing
//! between events (no timers, no polling per watcher).

use std::future::Future;
use std::sync::Arc;

use futures::stream::StreamExt;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use crate::backend::{Backend, ChangeEvent, Consistency, RawEntry, ReadRange, WatchSnapshots};
use crate::error::{Error, Result};
use crate::versionstamp::Versionstamp;

/// One point read per key: `[key, key ‖ 0x00)`, limit 1.
pub fn point_ranges(keys: &[Vec<u8>]) -> Vec<ReadRange> {
    keys.iter()
        .map(|k| ReadRange {
            start: k.clone(),
            end: [k.as_slice(), &[0x00]].concat(),
            limit: 1,
            reverse: false,
        })
        .collect()
}

/// What a snapshot is compared by: each key's versionstamp, `None` for absent.
pub fn versions(snapshot: &[Option<RawEntry>]) -> Vec<Option<Versionstamp>> {
    snapshot.iter().map(|e| e.as_ref().map(|e| e.versionstamp)).collect()
}

/// The default [`Backend::watch`]: follows `backend`'s change feed (see the module docs).
pub fn follow_change_feed<B: Backend + ?Sized>(
    backend: Arc<B>,
    keys: Vec<Vec<u8>>,
) -> Result<WatchSnapshots> {
    // Subscribed now, before the first read (which happens at the first poll).
    let changes = backend.subscribe()?;
    let follower = Follower { backend, ranges: point_ranges(&keys), keys, changes, last: None };
    Ok(snapshot_stream(follower, |mut follower| async move {
        let item = follower.next().await?;
        Some((item, follower))
    }))
}

/// The stream of what `next(state)` yields, ending at its `None` or after its first error
/// (an error is reported once, then the stream is over).
pub fn snapshot_stream<S, F, Fut>(state: S, mut next: F) -> WatchSnapshots
where
    S: Send + 'static,
    F: FnMut(S) -> Fut + Send + 'static,
    Fut: Future<Output = Option<(Result<Vec<Option<RawEntry>>>, S)>> + Send + 'static,
{
    futures::stream::unfold(Some(state), move |state| {
        let step = state.map(&mut next);
        async move {
            let (item, state) = step?.await?;
            let state = item.is_ok().then_some(state);
            Some((item, state))
        }
    })
    .boxed()
}

struct Follower<B: ?Sized> {
    backend: Arc<B>,
    keys: Vec<Vec<u8>>,
    ranges: Vec<ReadRange>,
    changes: broadcast::Receiver<ChangeEvent>,
    /// The versions of the last snapshot emitted; `None` before the first.
    last: Option<Vec<Option<Versionstamp>>>,
}

impl<B: Backend + ?Sized> Follower<B> {
    /// The next snapshot to emit; `None` when the store is closed.
    async fn next(&mut self) -> Option<Result<Vec<Option<RawEntry>>>> {
        if self.last.is_some() {
            self.wait_for_relevant_event().await?;
        }
        loop {
            let snapshot = match self.read().await {
                Ok(snapshot) => snapshot,
                Err(Error::Closed) => return None,
                Err(e) => return Some(Err(e)),
            };
            let now = versions(&snapshot);
            if self.last.as_ref() != Some(&now) {
                self.last = Some(now);
                return Some(Ok(snapshot));
            }
            // Nothing we follow changed (another key of the same commit, a no-op, a commit of
            // another process elsewhere): wait for the next event.
            self.wait_for_relevant_event().await?;
        }
    }

    async fn read(&self) -> Result<Vec<Option<RawEntry>>> {
        let results = self.backend.snapshot_read(self.ranges.clone(), Consistency::Strong).await?;
        if results.len() != self.keys.len() {
            return Err(Error::Internal(format!(
                "a snapshot read of {} keys answered {} ranges",
                self.keys.len(),
                results.len()
            )));
        }
        Ok(results.into_iter().map(|mut r| r.pop()).collect())
    }

    /// Waits for an event that may affect a watched key (or a lag), then drains the events
    /// already queued: the read that follows sees their commits. `None`: the feed closed.
    async fn wait_for_relevant_event(&mut self) -> Option<()> {
        loop {
            match self.changes.recv().await {
                Ok(event) if self.concerns(&event) => break,
                Ok(_) => continue,
                // Missed events: re-read and compare rather than guess.
                Err(RecvError::Lagged(_)) => break,
                Err(RecvError::Closed) => return None,
            }
        }
        loop {
            match self.changes.try_recv() {
                Ok(_) | Err(TryRecvError::Lagged(_)) => continue,
                Err(TryRecvError::Empty) => return Some(()),
                // Read once more; the next wait ends the stream.
                Err(TryRecvError::Closed) => return Some(()),
            }
        }
    }

    fn concerns(&self, event: &ChangeEvent) -> bool {
        self.keys.iter().any(|k| event.may_affect(k))
    }
}
