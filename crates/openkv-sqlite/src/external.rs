//! Commits of other processes: a poller that notices them while anyone follows the change feed.
//!
//! Another process writing the same file (Deno CLI, a second openkv) publishes nothing on this
//! process's change feed, yet every commit — theirs or ours — raises the file's commit counter
//! (`data_version.version`). While the feed has a subscriber besides the poller itself, a
//! thread reads that counter every [`POLL_INTERVAL`] and compares it with what this process's
//! own events explain: our writer (and the sweep, and a dead-lettering queue write) steps the
//! counter by exactly one per commit and publishes one event per step. A counter value that
//! our events do not reach — a gap, or a value above our last — means another process
//! committed; the poller then publishes an event with no keys ("unknown keys",
//! [`ChangeEvent::unknown_keys`]) and followers re-read what they follow.
//!
//! - **Cost**: nothing while nobody subscribes — no thread until the first subscription, and an
//!   idle poller blocks on a channel and holds no receiver (so the feed buffers nothing for
//!   it). While someone subscribes: one single-row read every 100 ms; a subscription made
//!   while the poller is idle also reads the counter once, as the baseline.
//! - **Latency**: a foreign commit is published within about one interval (plus [`GRACE`]).
//! - **Races**: our own commit reaches the file a moment before its event is published, so a
//!   value that looks foreign is checked again after [`GRACE`], and only published if still
//!   unexplained. Should a guess still be wrong (a thread paused for longer, a lagging
//!   receiver), followers re-read once for nothing; a change is never missed.
//! - **Baseline**: when the poller wakes from idle, the subscriber that woke it has already
//!   subscribed, and the baseline counter is read after the poller's own receiver exists; so
//!   a foreign commit after the subscriber's first read is above the baseline, and every own
//!   commit after the baseline has its event in the poller's receiver.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::broadcast::{self, error::TryRecvError};

use crate::backend::ChangeEvent;
use crate::error::Result;
use crate::shared::{lock, open_connection};
use crate::versionstamp::Versionstamp;

/// How often the counter is read while anyone subscribes.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How long an unexplained counter value is given for our own event to arrive.
pub(crate) const GRACE: Duration = Duration::from_millis(25);

const READ_COUNTER: &str = "select version from data_version where k = 0";

/// The poller of one file database.
#[derive(Debug)]
pub(super) struct Poller {
    inner: Arc<Inner>,
    /// The thread and the channel that wakes it (dropping the sender stops it).
    thread: Mutex<Option<(mpsc::Sender<()>, JoinHandle<()>)>>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    changes: broadcast::Sender<ChangeEvent>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Opened at first use.
    conn: Option<Connection>,
    /// Our own events; `Some` while active (someone else subscribes).
    own: Option<broadcast::Receiver<ChangeEvent>>,
    /// The counter value explained so far: the baseline, then each own event that follows.
    expected: u64,
    /// Own versions above `expected` not yet contiguous with it.
    ours: BTreeSet<u64>,
    /// The baseline could not be read: publish once at the next tick, to be safe.
    publish_anyway: bool,
    /// The last read failed (logged once until a read succeeds again).
    failing: bool,
    stopped: bool,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("active", &self.own.is_some())
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

impl Poller {
    pub(super) fn new(path: PathBuf, changes: broadcast::Sender<ChangeEvent>) -> Poller {
        let inner = Arc::new(Inner { path, changes, state: Mutex::new(State::default()) });
        Poller { inner, thread: Mutex::new(None) }
    }

    /// A subscriber was added (its receiver exists already): make sure the poller runs.
    pub(super) fn watching(&self) {
        {
            let mut state = lock(&self.inner.state);
            if state.stopped {
                return;
            }
            if state.own.is_none() {
                state.own = Some(self.inner.changes.subscribe());
                state.ours.clear();
                match read_counter(&self.inner.path, &mut state) {
                    Ok(version) => state.expected = version,
                    // No baseline (the failure is logged): publish at the first tick.
                    Err(_) => state.publish_anyway = true,
                }
            }
        }
        let mut thread = lock(&self.thread);
        if let Some((wake, _)) = thread.as_ref() {
            let _ = wake.send(());
            return;
        }
        let (wake, woken) = mpsc::channel();
        let inner = self.inner.clone();
        match std::thread::Builder::new()
            .name("openkv-external-changes".into())
            .spawn(move || inner.run(woken))
        {
            Ok(handle) => *thread = Some((wake, handle)),
            Err(e) => tracing::warn!(
                "openkv: could not start the thread that notices other processes' commits \
                 (watchers will not see them): {e}"
            ),
        }
    }

    /// Stops the thread and releases its connection; later subscriptions do not restart it.
    pub(super) fn stop(&self) {
        {
            let mut state = lock(&self.inner.state);
            state.stopped = true;
            state.own = None;
        }
        if let Some((wake, handle)) = lock(&self.thread).take() {
            drop(wake);
            let _ = handle.join();
        }
        lock(&self.inner.state).conn = None;
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Inner {
    fn run(&self, woken: mpsc::Receiver<()>) {
        let mut next_tick: Option<Instant> = None;
        loop {
            let active = lock(&self.state).own.is_some();
            let message = if active {
                let at = *next_tick.get_or_insert_with(|| Instant::now() + POLL_INTERVAL);
                woken.recv_timeout(at.saturating_duration_since(Instant::now()))
            } else {
                // Idle: sleep until a subscription wakes us; cost nothing meanwhile.
                next_tick = None;
                woken.recv().map_err(|_| RecvTimeoutError::Disconnected)
            };
            match message {
                // A wake-up does not move the next tick (frequent subscriptions must not
                // postpone it forever).
                Ok(()) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
            next_tick = None;
            let Some(suspect) = self.tick() else { continue };
            let grace_over = Instant::now() + GRACE;
            loop {
                match woken.recv_timeout(grace_over.saturating_duration_since(Instant::now())) {
                    Ok(()) if Instant::now() < grace_over => continue,
                    Ok(()) | Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            self.confirm(suspect);
        }
    }

    /// One poll. Returns a counter value our events do not explain (yet), if any.
    fn tick(&self) -> Option<u64> {
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        let own = state.own.as_mut()?;
        let still_open = drain(own, &mut state.ours);
        // Only the poller's own receiver left: nobody follows the feed, go idle.
        if !still_open || self.changes.receiver_count() <= 1 {
            state.own = None;
            state.ours.clear();
            return None;
        }
        let file = read_counter(&self.path, state).ok()?;
        advance(&mut state.expected, &mut state.ours);
        if std::mem::take(&mut state.publish_anyway) {
            self.publish(state, file);
            return None;
        }
        (file > state.expected).then_some(file)
    }

    /// After the grace: publishes `suspect` if our events still do not explain it.
    fn confirm(&self, suspect: u64) {
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        let Some(own) = state.own.as_mut() else { return };
        drain(own, &mut state.ours);
        advance(&mut state.expected, &mut state.ours);
        if state.expected < suspect {
            let file = read_counter(&self.path, state).unwrap_or(suspect).max(suspect);
            self.publish(state, file);
        }
    }

    fn publish(&self, state: &mut State, version: u64) {
        tracing::debug!("openkv: another process committed (commit counter at {version})");
        let _ = self.changes.send(ChangeEvent::unknown_keys(Versionstamp::from_version(version)));
        state.expected = state.expected.max(version);
        advance(&mut state.expected, &mut state.ours);
    }
}

/// Takes every queued own event into `ours`. False if the feed is closed.
fn drain(own: &mut broadcast::Receiver<ChangeEvent>, ours: &mut BTreeSet<u64>) -> bool {
    loop {
        match own.try_recv() {
            Ok(event) => {
                ours.insert(event.versionstamp.version());
            }
            // Missed own events leave gaps, which look foreign: at worst a needless re-read.
            Err(TryRecvError::Lagged(_)) => continue,
            Err(TryRecvError::Empty) => return true,
            Err(TryRecvError::Closed) => return false,
        }
    }
}

/// Moves `expected` over the own versions contiguous with it; forgets those at or below it.
fn advance(expected: &mut u64, ours: &mut BTreeSet<u64>) {
    while ours.remove(&(*expected + 1)) {
        *expected += 1;
    }
    *ours = ours.split_off(&(*expected + 1));
}

fn read_counter(path: &std::path::Path, state: &mut State) -> Result<u64> {
    let result = (|| {
        let conn = match &mut state.conn {
            Some(conn) => conn,
            empty => empty.insert(open_connection(path, true)?),
        };
        let version: i64 = conn.prepare_cached(READ_COUNTER)?.query_row([], |r| r.get(0))?;
        Ok(u64::try_from(version).unwrap_or(0))
    })();
    match &result {
        Ok(_) => state.failing = false,
        Err(e) => {
            if !std::mem::replace(&mut state.failing, true) {
                tracing::warn!("openkv: polling for other processes' commits failed: {e}");
            }
            // A broken connection is reopened next time.
            state.conn = None;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_versions_explain_the_counter_only_when_contiguous() {
        let mut expected = 10;
        let mut ours: BTreeSet<u64> = [9, 11, 12, 14].into_iter().collect();
        advance(&mut expected, &mut ours);
        // 13 is missing: another process committed it, so 14 does not count yet.
        assert_eq!(expected, 12);
        assert_eq!(ours.into_iter().collect::<Vec<_>>(), vec![14]);
    }
}
