//! # openkv-memory — an openkv backend outside the core crate
//!
//! A whole Deno KV database in one process's memory, implementing [`openkv::Backend`] with
//! nothing but openkv's public API: the engine's planner ([`openkv::engine::plan`]) decides
//! every write, its finish rule ([`openkv::engine::finish`]) every queue delivery attempt, so
//! this crate only keeps rows, versions and messages. It exists to prove the backend seam (the
//! behaviour suite in `openkv-testsuite` runs over it) and as the model for a new backend
//! crate (FoundationDB, TiKV, …); it is not meant for data anyone wants to keep.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use openkv::{key, Value};
//!
//! let kv = openkv_memory::open();
//! kv.set(&key!["a"], Value::Bytes(b"1".to_vec())).await?;
//! assert_eq!(kv.get(&key!["a"]).await?.unwrap().value, Value::Bytes(b"1".to_vec()));
//! # Ok::<(), openkv::Error>(()) }).unwrap();
//! ```
//!
//! Semantics are the engine's: strong reads (every read sees every acknowledged write),
//! versionstamps `counter ‖ 0x0000` as in Deno's SQLite files, expired keys invisible at once
//! (and never swept: they are only dropped when overwritten), at-least-once queues with leases.
//! No persistence, no backup, no other process.
// A library reports through its return values and `tracing`, never on stdout/stderr;
// `unsafe_code`, `missing_docs` and the rest: `[workspace.lints]` in the root Cargo.toml.
#![deny(clippy::print_stdout, clippy::print_stderr)]

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use openkv::engine::batch::publish;
use openkv::engine::finish::{dead_letter_rows, finish_attempt, Finish};
use openkv::engine::measure;
use openkv::engine::plan::{keys_to_read, plan_batch, Row, Rows};
use openkv::engine::QueueSignal;
use openkv::stats::DeliveryTally;
use openkv::{
    AtomicWrite, Backend, ChangeEvent, Clock, CommitOutcome, Consistency, EngineStats, Error,
    Gauges, Kv, OpenOptions, QueueBackend, QueueChange, QueueListing, QueueMessageInfo,
    QueueMessageState, QueuedMessage, RawEntry, ReadRange, Result, SystemClock, Value,
    Versionstamp,
};
use openkv_core::queue::{lease_millis, parse_stored_json};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::broadcast;

/// A fresh, empty in-memory database behind a [`Kv`] with default options.
pub fn open() -> Kv {
    OpenOptions::new().with_backend(Arc::new(MemoryBackend::new(Arc::new(SystemClock))))
}

/// The in-memory backend. Every operation takes one mutex: simple, and plenty for tests.
#[derive(Debug)]
pub struct MemoryBackend {
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
    changes: broadcast::Sender<ChangeEvent>,
    queue_wakeup: QueueSignal,
    closed: AtomicBool,
    id: uuid::Uuid,
    /// Counted as the other backends count ([`measure`]); there is no sweep to count.
    stats: Arc<EngineStats>,
}

/// A queue message as this backend keeps it (the JSON columns as Deno's tables hold them, so
/// the engine's finish rule reads them as it reads every backend's).
#[derive(Clone, Debug)]
struct Message {
    payload: Vec<u8>,
    backoff_schedule: String,
    keys_if_undelivered: String,
    attempts: u32,
}

#[derive(Debug)]
struct State {
    rows: BTreeMap<Vec<u8>, Row>,
    /// The last committed version (0: nothing yet).
    version: u64,
    /// Waiting messages by (due time, id): taken earliest first.
    waiting: BTreeMap<(i64, String), Message>,
    /// Taken messages by id: (lease end, when it was due, the message).
    running: HashMap<String, (i64, i64, Message)>,
    rng: StdRng,
}

impl MemoryBackend {
    /// An empty database that reads time from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> MemoryBackend {
        MemoryBackend {
            state: Mutex::new(State {
                rows: BTreeMap::new(),
                version: 0,
                waiting: BTreeMap::new(),
                running: HashMap::new(),
                rng: StdRng::from_os_rng(),
            }),
            clock,
            changes: broadcast::channel(1024).0,
            queue_wakeup: QueueSignal::new(),
            closed: AtomicBool::new(false),
            id: uuid::Uuid::new_v4(),
            stats: Arc::default(),
        }
    }

    /// The state, if the store is open.
    fn open_state(&self) -> Result<MutexGuard<'_, State>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        // A panic while holding the lock cannot leave a half-applied write: rows are only
        // changed after the plan is complete, by inserts that do not panic.
        Ok(self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl State {
    /// Stores planned rows (`None`: delete) and moves the version to `last`.
    fn apply(&mut self, rows: Rows, last: Versionstamp) {
        for (key, row) in rows {
            match row {
                Some(row) => self.rows.insert(key, row),
                None => self.rows.remove(&key),
            };
        }
        self.version = last.version();
    }

    /// Puts every message whose lease ran out back in line, due at once.
    fn requeue_expired_leases(&mut self, now: i64) {
        let expired: Vec<String> = self
            .running
            .iter()
            .filter(|(_, (until, _, _))| *until <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some((_, _, message)) = self.running.remove(&id) {
                self.waiting.insert((now, id), message);
            }
        }
    }
}

fn entry(key: &[u8], row: &Row) -> Result<RawEntry> {
    Ok(RawEntry {
        key: key.to_vec(),
        value: Value::from_encoded(row.encoding, row.bytes.clone())?,
        versionstamp: row.versionstamp,
        expire_at_ms: row.expire_at_ms,
    })
}

/// The versionstamp of the `i`-th commit (from 0) after version `base`: `base + i + 1`, as
/// Deno's SQLite files number commits.
fn versionstamp_after(base: u64, i: usize) -> Result<Versionstamp> {
    let v = base.checked_add(i as u64 + 1);
    v.map(Versionstamp::from_version)
        .ok_or_else(|| Error::Internal("the version counter is exhausted".into()))
}

/// When a lease taken at `now` runs out (the core's saturating lease arithmetic).
fn lease_end(now: i64, lease: Duration) -> i64 {
    now.saturating_add(lease_millis(lease))
}

#[async_trait]
impl Backend for MemoryBackend {
    async fn snapshot_read(
        &self,
        ranges: Vec<ReadRange>,
        _consistency: Consistency,
    ) -> Result<Vec<Vec<RawEntry>>> {
        let state = self.open_state()?;
        let now = self.clock.now_ms();
        let mut out = Vec::with_capacity(ranges.len());
        for range in &ranges {
            if range.start >= range.end {
                out.push(Vec::new());
                continue;
            }
            let bounds = (Bound::Included(&range.start), Bound::Excluded(&range.end));
            let live = state.rows.range::<Vec<u8>, _>(bounds).filter(|(_, r)| r.is_live(now));
            let limit = range.limit as usize;
            let entries: Result<Vec<RawEntry>> = if range.reverse {
                live.rev().take(limit).map(|(k, r)| entry(k, r)).collect()
            } else {
                live.take(limit).map(|(k, r)| entry(k, r)).collect()
            };
            out.push(entries?);
        }
        measure::record_read(&self.stats, &out);
        Ok(out)
    }

    async fn atomic_write(&self, write: AtomicWrite) -> Result<CommitOutcome> {
        let (outcome, event, enqueued) = {
            let mut state = self.open_state()?;
            let started = std::time::Instant::now();
            let now = self.clock.now_ms();
            let writes = [write];
            let stored: HashMap<Vec<u8>, Row> = keys_to_read(&writes)
                .into_iter()
                .filter_map(|k| state.rows.get(&k).cloned().map(|row| (k, row)))
                .collect();
            let base = state.version;
            let planned =
                plan_batch(&writes, stored, now, |i| versionstamp_after(base, i), &mut state.rng);
            // A batch of one, "committed" when planned: nothing below can fail.
            measure::record_batch(&self.stats, &writes, &planned, started.elapsed());
            let mut plan = planned?;
            let outcome = plan.outcomes.pop().unwrap_or_else(|| {
                Err(Error::Internal("the planner answered no outcome for one write".into()))
            })?;
            let enqueued = !plan.enqueues.is_empty();
            if let Some(last) = plan.last_versionstamp() {
                for m in plan.enqueues {
                    let message = Message {
                        payload: m.payload,
                        backoff_schedule: m.backoff_schedule,
                        keys_if_undelivered: m.keys_if_undelivered,
                        attempts: 0,
                    };
                    state.waiting.insert((m.due_ms, m.id), message);
                }
                state.apply(plan.rows, last);
            }
            (outcome, plan.events, enqueued)
        };
        publish(&self.changes, &self.queue_wakeup, event, enqueued);
        Ok(outcome)
    }

    fn subscribe(&self) -> Result<broadcast::Receiver<ChangeEvent>> {
        Ok(self.changes.subscribe())
    }

    fn watch(self: Arc<Self>, keys: Vec<Vec<u8>>) -> Result<openkv_core::WatchSnapshots> {
        openkv_core::watch::follow_change_feed(self, keys)
    }

    async fn database_id(&self) -> Result<uuid::Uuid> {
        drop(self.open_state()?);
        Ok(self.id)
    }

    async fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        self.queue_wakeup.wake();
        Ok(())
    }

    fn queues(self: Arc<Self>) -> Result<Arc<dyn QueueBackend>> {
        Ok(self)
    }

    fn stats(&self) -> Option<Arc<EngineStats>> {
        Some(self.stats.clone())
    }

    /// The queue's depths; no sizes (nothing is stored anywhere that has one).
    async fn gauges(&self) -> Result<Gauges> {
        let state = self.open_state()?;
        let now = self.clock.now_ms();
        // Waiting messages in due order: the due ones first.
        let due: Vec<i64> =
            state.waiting.keys().map(|(at, _)| *at).take_while(|at| *at <= now).collect();
        // A lease that ran out is ready: the next take puts it back in line.
        let (lapsed, leased): (Vec<i64>, Vec<i64>) =
            state.running.values().map(|(until, _, _)| *until).partition(|until| *until <= now);
        let mut gauges = Gauges::default();
        gauges.queue_ready = Some((due.len() + lapsed.len()) as u64);
        gauges.queue_delayed = Some((state.waiting.len() - due.len()) as u64);
        gauges.queue_in_flight = Some(leased.len() as u64);
        gauges.queue_oldest_ready_age = due
            .first()
            .into_iter()
            .chain(&lapsed)
            .min()
            .map(|since| Duration::from_millis(u64::try_from(now - since).unwrap_or(0)));
        Ok(gauges)
    }
}

#[async_trait]
impl QueueBackend for MemoryBackend {
    async fn queue_take(&self, max: usize, lease: Duration) -> Result<Vec<QueuedMessage>> {
        let mut state = self.open_state()?;
        let now = self.clock.now_ms();
        state.requeue_expired_leases(now);
        let due: Vec<(i64, String)> =
            state.waiting.keys().take_while(|(at, _)| *at <= now).take(max).cloned().collect();
        let mut taken = Vec::with_capacity(due.len());
        for (at, id) in due {
            let Some(mut message) = state.waiting.remove(&(at, id.clone())) else { continue };
            message.attempts = message.attempts.saturating_add(1);
            taken.push(QueuedMessage {
                id: id.clone(),
                payload: message.payload.clone(),
                due_ms: at,
                backoff_schedule: parse_stored_json(
                    "backoff_schedule",
                    &id,
                    &message.backoff_schedule,
                )?,
                keys_if_undelivered: parse_stored_json(
                    "keys_if_undelivered",
                    &id,
                    &message.keys_if_undelivered,
                )?,
                attempt: message.attempts,
            });
            state.running.insert(id, (lease_end(now, lease), at, message));
        }
        Ok(taken)
    }

    async fn queue_renew(&self, ids: Vec<String>, lease: Duration) -> Result<()> {
        let mut state = self.open_state()?;
        let until = lease_end(self.clock.now_ms(), lease);
        for id in ids {
            if let Some(running) = state.running.get_mut(&id) {
                running.0 = until;
            }
        }
        Ok(())
    }

    async fn queue_finish(&self, outcomes: Vec<(String, bool)>) -> Result<()> {
        let mut retried = false;
        let mut tally = DeliveryTally::default();
        let event = {
            let mut state = self.open_state()?;
            let now = self.clock.now_ms();
            let mut dead_letters = Vec::new();
            for (id, delivered) in outcomes {
                let Some((_, _, mut message)) = state.running.remove(&id) else { continue };
                retried |= !delivered;
                let decided = finish_attempt(
                    &id,
                    &message.backoff_schedule,
                    &message.keys_if_undelivered,
                    delivered,
                    now,
                );
                if let Ok(finish) = &decided {
                    tally.add(measure::delivery(delivered, finish));
                }
                match decided {
                    Ok(Finish::Retry { due_ms, backoff_schedule }) => {
                        message.backoff_schedule = backoff_schedule;
                        state.waiting.insert((due_ms, id), message);
                    }
                    Ok(Finish::Remove { dead_letters: keys }) => {
                        dead_letters.extend(keys.into_iter().map(|k| (k, message.payload.clone())))
                    }
                    Err(e) => return Err(e),
                }
            }
            let vs = versionstamp_after(state.version, 0)?;
            match dead_letter_rows(dead_letters, vs) {
                Some((rows, event)) => {
                    state.apply(rows, vs);
                    Some(event)
                }
                None => None,
            }
        };
        self.stats.record_deliveries(&tally);
        // A retry falls due sooner than anything a waiting listener knew of.
        publish(&self.changes, &self.queue_wakeup, event, retried);
        Ok(())
    }

    async fn queue_next_due(&self) -> Result<Option<i64>> {
        let state = self.open_state()?;
        let waiting = state.waiting.keys().next().map(|(at, _)| *at);
        let leases = state.running.values().map(|(until, _, _)| *until).min();
        Ok(waiting.into_iter().chain(leases).min())
    }

    fn queue_wakeup(self: Arc<Self>) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.queue_wakeup.subscribe())
    }

    async fn queue_inspect(&self, limit: usize) -> Result<QueueListing> {
        let state = self.open_state()?;
        let now = self.clock.now_ms();
        let (mut ready, mut delayed, mut running) = (0, 0, 0);
        let mut all = Vec::with_capacity(state.waiting.len() + state.running.len());
        for ((at, id), message) in &state.waiting {
            let kind = if *at <= now {
                ready += 1;
                QueueMessageState::Ready
            } else {
                delayed += 1;
                QueueMessageState::Delayed
            };
            all.push((kind, *at, id, message));
        }
        for (id, (until, _, message)) in &state.running {
            // A lease that ran out is ready: the next take puts it back in line.
            let kind = if *until > now {
                running += 1;
                QueueMessageState::Running
            } else {
                ready += 1;
                QueueMessageState::Ready
            };
            all.push((kind, *until, id, message));
        }
        // Running first, then by due time, then by id.
        all.sort_by(|a, b| {
            let running = QueueMessageState::Running;
            (a.0 != running, a.1, a.2).cmp(&(b.0 != running, b.1, b.2))
        });
        let messages = all
            .into_iter()
            .take(limit)
            .map(|(kind, at, id, message)| {
                Ok(QueueMessageInfo::new(
                    id.clone(),
                    Value::V8(message.payload.clone()),
                    kind,
                    at,
                    message.attempts,
                    parse_stored_json("backoff_schedule", id, &message.backoff_schedule)?,
                    parse_stored_json("keys_if_undelivered", id, &message.keys_if_undelivered)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(QueueListing::new(ready, delayed, running, messages))
    }

    async fn queue_change(&self, id: &str, change: QueueChange) -> Result<bool> {
        let changed = {
            let mut state = self.open_state()?;
            let now = self.clock.now_ms();
            let waiting = state.waiting.keys().find(|(_, i)| i == id).cloned();
            match change {
                QueueChange::Remove => {
                    // A listener finishing a removed running message finds no lease: ignored.
                    let running = state.running.remove(id).is_some();
                    let waited = waiting.is_some_and(|k| state.waiting.remove(&k).is_some());
                    running || waited
                }
                QueueChange::DueNow => {
                    if let Some((until, _, _)) = state.running.get(id) {
                        if *until > now {
                            return Err(Error::QueueMessageInFlight { id: id.to_owned() });
                        }
                    }
                    if let Some((until, _, message)) = state.running.remove(id) {
                        // Its lease ran out: back in line as the next take would put it,
                        // due since its lease ended.
                        state.waiting.insert((until.min(now), id.to_owned()), message);
                        true
                    } else if let Some((at, key_id)) = waiting {
                        // One already due keeps its earlier time, and so its place in line.
                        if let Some(message) = state.waiting.remove(&(at, key_id.clone())) {
                            state.waiting.insert((at.min(now), key_id), message);
                        }
                        true
                    } else {
                        false
                    }
                }
                // `QueueChange` may grow; a change this build does not know is refused.
                other => {
                    return Err(Error::Unsupported(format!(
                        "the in-memory backend does not know the queue change {other:?}"
                    )))
                }
            }
        };
        if changed && change == QueueChange::DueNow {
            self.queue_wakeup.wake();
        }
        Ok(changed)
    }
}
