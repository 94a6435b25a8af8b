//! What a storage engine did, counted as it happens: the numbers behind `openkv serve`'s
//! `/metrics` (the server renders them; this crate knows no HTTP or Prometheus).
//!
//! Two kinds of figures:
//! - [`EngineStats`]: counters and histograms a backend updates on its hot paths (commits,
//!   reads, the expiry sweep, queue deliveries) and a scrape copies with
//!   [`EngineStats::snapshot`]. A backend owns one (`Arc`) and hands it out through
//!   [`Backend::stats`](crate::Backend::stats).
//! - [`Gauges`]: sizes and queue depths read from the store at scrape time
//!   ([`Backend::gauges`](crate::Backend::gauges)), one cheap query each.
//!
//! What each counter means, and where the backends count it, is decided once in
//! [`engine::measure`](crate::engine::measure).
//!
//! **Cost.** Every update is a relaxed atomic add on memory allocated when the backend opened:
//! no lock, no allocation, no system call. Relaxed is enough because no reader infers anything
//! about other memory from a counter: a snapshot taken while writers run may show one counter
//! of a batch moved and another not yet, which a scrape every few seconds cannot tell from a
//! snapshot taken a moment earlier or later. A histogram's count is the sum of its buckets
//! (read once each), so its `+Inf` bucket always equals its count; its sum may be ahead of or
//! behind the buckets by the observations in flight.
//!
//! This module is the bottom of the crate's stats layer: of the crate it imports only
//! `limits` (the backend seam and the engine import it, never the other way round).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::limits::MAX_WRITE_BATCH;

/// Upper bounds of [`EngineStats`]' commit-duration buckets, in microseconds: 50 µs (a batch
/// in the page cache on a fast disk) to 10 s (a stalled disk), about 1-2.5-5 per decade.
pub const COMMIT_DURATION_BOUNDS_US: [u64; 17] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Upper bounds of the batch-size buckets, in writes: the powers of two up to
/// [`MAX_WRITE_BATCH`] (a writer never commits more at once).
pub const BATCH_SIZE_BOUNDS: [u64; BATCH_SIZE_BUCKETS] = batch_size_bounds();

/// How many batch-size buckets there are: one per power of two up to [`MAX_WRITE_BATCH`],
/// one more if it is not itself a power of two.
const BATCH_SIZE_BUCKETS: usize = {
    let powers = (usize::BITS - MAX_WRITE_BATCH.leading_zeros()) as usize;
    if MAX_WRITE_BATCH.is_power_of_two() {
        powers
    } else {
        powers + 1
    }
};

const fn batch_size_bounds() -> [u64; BATCH_SIZE_BUCKETS] {
    let mut bounds = [0u64; BATCH_SIZE_BUCKETS];
    let mut i = 0;
    while i < BATCH_SIZE_BUCKETS {
        let power = 1u64 << i;
        bounds[i] = if power > MAX_WRITE_BATCH as u64 { MAX_WRITE_BATCH as u64 } else { power };
        i += 1;
    }
    bounds
}

/// Upper bounds of the expiry-lag buckets, in milliseconds: 10 ms to a day. The sweep runs
/// every `expiry_sweep_interval` (1 s by default), so a healthy store's lag stays under about
/// that; the long tail is keys that expired while the store was closed, or a sweep that
/// could not keep up.
pub const EXPIRY_LAG_BOUNDS_MS: [u64; 14] = [
    10, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000, 3_600_000,
    86_400_000,
];

/// A histogram with fixed buckets, Prometheus style: observations are whole numbers of a unit
/// (microseconds, writes, …), counted in the first bucket whose upper bound is at least the
/// observation (or beyond the last bound, `+Inf`), and summed.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds, ascending, in the observed unit.
    bounds: &'static [u64],
    /// Observed units per reported unit (1 000 000 for microseconds reported as seconds).
    per_unit: f64,
    /// Observations per bucket, not cumulative; one more than `bounds` (the `+Inf` bucket).
    buckets: Box<[AtomicU64]>,
    /// The sum of all observations, in the observed unit. `fetch_add` wraps rather than
    /// panics; 2^64 µs is half a million years of commits, so it never does in practice.
    sum: AtomicU64,
}

impl Histogram {
    /// A histogram over `bounds` (ascending), reported in units of `per_unit` observed units.
    pub fn new(bounds: &'static [u64], per_unit: f64) -> Histogram {
        let buckets = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram { bounds, per_unit, buckets, sum: AtomicU64::new(0) }
    }

    /// Counts one observation of `value` (in the observed unit).
    pub fn observe(&self, value: u64) {
        // The first bound >= value; `bounds.len()` (the +Inf bucket) when there is none.
        let i = self.bounds.partition_point(|&b| b < value);
        if let Some(bucket) = self.buckets.get(i) {
            bucket.fetch_add(1, Relaxed);
        }
        self.sum.fetch_add(value, Relaxed);
    }

    /// Counts one duration, in microseconds (a histogram made with microsecond bounds).
    pub fn observe_duration(&self, d: Duration) {
        self.observe(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// The buckets as Prometheus reports them: cumulative, in the reported unit.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0u64;
        let cumulative: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| {
                total = total.saturating_add(b.load(Relaxed));
                total
            })
            .collect();
        HistogramSnapshot {
            // Dividing the integer (rather than multiplying by a fraction) gives the double
            // nearest the decimal bound, so 50 µs prints as 0.00005.
            bounds: self.bounds.iter().map(|&b| b as f64 / self.per_unit).collect(),
            // The +Inf bucket is last: the count is the total of every bucket.
            cumulative: cumulative[..self.bounds.len()].to_vec(),
            count: total,
            sum: self.sum.load(Relaxed) as f64 / self.per_unit,
        }
    }
}

/// A histogram's state at one moment, in the reported unit (seconds, writes).
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct HistogramSnapshot {
    /// Upper bounds of the buckets, ascending (the implicit last one is `+Inf`).
    pub bounds: Vec<f64>,
    /// Observations at most `bounds[i]`: cumulative, one per bound.
    pub cumulative: Vec<u64>,
    /// Every observation (the `+Inf` bucket).
    pub count: u64,
    /// The sum of every observation.
    pub sum: f64,
}

/// The end of one queue delivery attempt, as counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delivery {
    /// The handler succeeded; the message is gone.
    Delivered,
    /// The handler failed and the message is due again after its next backoff interval.
    Retried,
    /// The handler failed its last attempt: the payload went to the message's
    /// `keys_if_undelivered` (or, with none, was dropped).
    DeadLettered,
}

/// Queue delivery outcomes of one finish call, tallied before its transaction commits and
/// recorded ([`EngineStats::record_deliveries`]) only once it did, so a retried or failed
/// transaction counts nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryTally {
    delivered: u64,
    retried: u64,
    dead_lettered: u64,
}

impl DeliveryTally {
    /// Adds one outcome.
    pub fn add(&mut self, outcome: Delivery) {
        match outcome {
            Delivery::Delivered => self.delivered += 1,
            Delivery::Retried => self.retried += 1,
            Delivery::DeadLettered => self.dead_lettered += 1,
        }
    }
}

/// A storage engine's counters and histograms (see the module's documentation for their
/// cost). One per open backend, shared (`Arc`) by its writer, readers, sweep and queue paths;
/// [`snapshot`](Self::snapshot) copies them out.
#[derive(Debug)]
pub struct EngineStats {
    commits_ok: AtomicU64,
    commits_check_failed: AtomicU64,
    commits_error: AtomicU64,
    /// Microseconds per batch transaction.
    commit_duration: Histogram,
    /// Writes per batch.
    batch_size: Histogram,
    read_entries: AtomicU64,
    read_bytes: AtomicU64,
    written_entries: AtomicU64,
    written_bytes: AtomicU64,
    expired_swept: AtomicU64,
    /// Milliseconds between a key's expiry and the sweep that deleted it.
    expiry_lag: Histogram,
    queue_delivered: AtomicU64,
    queue_retried: AtomicU64,
    queue_dead_lettered: AtomicU64,
}

impl Default for EngineStats {
    fn default() -> Self {
        EngineStats::new()
    }
}

impl EngineStats {
    /// All zero.
    pub fn new() -> EngineStats {
        EngineStats {
            commits_ok: AtomicU64::new(0),
            commits_check_failed: AtomicU64::new(0),
            commits_error: AtomicU64::new(0),
            commit_duration: Histogram::new(&COMMIT_DURATION_BOUNDS_US, 1e6),
            batch_size: Histogram::new(&BATCH_SIZE_BOUNDS, 1.0),
            read_entries: AtomicU64::new(0),
            read_bytes: AtomicU64::new(0),
            written_entries: AtomicU64::new(0),
            written_bytes: AtomicU64::new(0),
            expired_swept: AtomicU64::new(0),
            expiry_lag: Histogram::new(&EXPIRY_LAG_BOUNDS_MS, 1e3),
            queue_delivered: AtomicU64::new(0),
            queue_retried: AtomicU64::new(0),
            queue_dead_lettered: AtomicU64::new(0),
        }
    }

    /// Atomic writes that ended: `ok` committed, `check_failed` failed a check, `error` ended
    /// with an error (a rejected mutation, or a batch whose transaction failed).
    pub fn record_commits(&self, ok: u64, check_failed: u64, error: u64) {
        add(&self.commits_ok, ok);
        add(&self.commits_check_failed, check_failed);
        add(&self.commits_error, error);
    }

    /// One batch transaction: how many writes it held and how long it took.
    pub fn record_batch(&self, writes: usize, took: Duration) {
        self.batch_size.observe(writes as u64);
        self.commit_duration.observe_duration(took);
    }

    /// Entries a snapshot read returned and their key + value bytes.
    pub fn record_read(&self, entries: u64, bytes: u64) {
        add(&self.read_entries, entries);
        add(&self.read_bytes, bytes);
    }

    /// Mutations committed writes applied and their key + value bytes.
    pub fn record_written(&self, entries: u64, bytes: u64) {
        add(&self.written_entries, entries);
        add(&self.written_bytes, bytes);
    }

    /// One expired key the sweep deleted, `lag` after it expired.
    pub fn record_expired(&self, lag: Duration) {
        self.expired_swept.fetch_add(1, Relaxed);
        self.expiry_lag.observe(u64::try_from(lag.as_millis()).unwrap_or(u64::MAX));
    }

    /// The outcomes of a committed finish call.
    pub fn record_deliveries(&self, tally: &DeliveryTally) {
        add(&self.queue_delivered, tally.delivered);
        add(&self.queue_retried, tally.retried);
        add(&self.queue_dead_lettered, tally.dead_lettered);
    }

    /// Every figure as it is now.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            commits_ok: self.commits_ok.load(Relaxed),
            commits_check_failed: self.commits_check_failed.load(Relaxed),
            commits_error: self.commits_error.load(Relaxed),
            commit_duration: self.commit_duration.snapshot(),
            batch_size: self.batch_size.snapshot(),
            read_entries: self.read_entries.load(Relaxed),
            read_bytes: self.read_bytes.load(Relaxed),
            written_entries: self.written_entries.load(Relaxed),
            written_bytes: self.written_bytes.load(Relaxed),
            expired_swept: self.expired_swept.load(Relaxed),
            expiry_lag: self.expiry_lag.snapshot(),
            queue_delivered: self.queue_delivered.load(Relaxed),
            queue_retried: self.queue_retried.load(Relaxed),
            queue_dead_lettered: self.queue_dead_lettered.load(Relaxed),
        }
    }
}

/// Adds `n` unless it is 0 (most calls add to one outcome of three: the others skip the
/// atomic's cache line).
fn add(counter: &AtomicU64, n: u64) {
    if n != 0 {
        counter.fetch_add(n, Relaxed);
    }
}

/// [`EngineStats`] at one moment: plain numbers, all counted since the backend opened.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Atomic writes committed.
    pub commits_ok: u64,
    /// Atomic writes that failed a check (nothing applied).
    pub commits_check_failed: u64,
    /// Atomic writes that ended with an error: a mutation the engine rejected (a `sum` on the
    /// wrong type, say), or every write of a batch whose transaction failed.
    pub commits_error: u64,
    /// Seconds per batch transaction (reading the rows, planning, storing, `COMMIT` with its
    /// fsync), whatever its outcome.
    pub commit_duration: HistogramSnapshot,
    /// Atomic writes per batch transaction (group commit), buckets 1, 2, 4, … up to
    /// [`MAX_WRITE_BATCH`].
    pub batch_size: HistogramSnapshot,
    /// Entries snapshot reads returned (watches' re-reads included).
    pub read_entries: u64,
    /// Key + value bytes of those entries.
    pub read_bytes: u64,
    /// Mutations committed atomic writes applied (a delete included; dead letters and the
    /// sweep's deletions are not mutations and are not counted).
    pub written_entries: u64,
    /// Key + value bytes of those mutations (a delete: its key; `sum`/`min`/`max`: the
    /// operand).
    pub written_bytes: u64,
    /// Expired keys the expiry sweep deleted (by this process).
    pub expired_swept: u64,
    /// Seconds between a key's expiry and the sweep that deleted it. Reads never see an
    /// expired key whatever this is; a growing lag means the space is reclaimed late.
    pub expiry_lag: HistogramSnapshot,
    /// Queue messages delivered (the handler succeeded).
    pub queue_delivered: u64,
    /// Failed delivery attempts that will be retried.
    pub queue_retried: u64,
    /// Messages whose last attempt failed: written to their `keys_if_undelivered`, or
    /// dropped when they named none.
    pub queue_dead_lettered: u64,
}

/// Figures read from the store when asked ([`Backend::gauges`](crate::Backend::gauges)):
/// `None` where a backend cannot tell (a KV Connect database: all of them; an in-memory one:
/// the sizes).
///
/// Queue messages are in exactly one of three states: ready (due, not leased — or leased
/// with the lease run out, so the next take gets it), delayed (not yet due) and in flight
/// (leased to a listener).
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Gauges {
    /// Bytes the database takes: the SQLite file (without its WAL); on PostgreSQL the
    /// schema's tables with their indexes and TOAST (`pg_total_relation_size`).
    pub database_bytes: Option<u64>,
    /// Bytes of SQLite's write-ahead log (`<file>-wal`; 0 when absent). PostgreSQL: `None`
    /// (its WAL is the cluster's, not a database's).
    pub wal_bytes: Option<u64>,
    /// Queue messages due and waiting for a listener.
    pub queue_ready: Option<u64>,
    /// Queue messages not due yet (enqueued with a delay, or waiting for a retry).
    pub queue_delayed: Option<u64>,
    /// Queue messages leased to a listener whose lease has not run out.
    pub queue_in_flight: Option<u64>,
    /// How long the oldest ready message has been due (since its due time, or since its lease
    /// ran out); `None` when no message is ready (or the backend cannot tell).
    pub queue_oldest_ready_age: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_each_observation_in_the_first_bucket_that_holds_it_cumulatively() {
        static BOUNDS: [u64; 3] = [10, 100, 1000];
        let h = Histogram::new(&BOUNDS, 1e3);
        for v in [0, 10, 11, 100, 5000, 1000] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.bounds, vec![0.01, 0.1, 1.0]);
        // <= 10: 0 and 10; <= 100: 11 and 100 more; <= 1000: 1000 more; 5000 only in +Inf.
        assert_eq!(s.cumulative, vec![2, 4, 5]);
        assert_eq!(s.count, 6);
        assert_eq!(s.sum, 6.121);
    }

    #[test]
    fn batch_size_buckets_are_the_powers_of_two_up_to_the_largest_batch() {
        assert_eq!(BATCH_SIZE_BOUNDS[0], 1);
        assert_eq!(*BATCH_SIZE_BOUNDS.last().unwrap(), MAX_WRITE_BATCH as u64);
        assert!(BATCH_SIZE_BOUNDS
            .windows(2)
            .all(|w| w[1] == (w[0] * 2).min(MAX_WRITE_BATCH as u64)));
    }

    #[test]
    fn bounds_print_as_their_decimals() {
        let s = EngineStats::new().snapshot();
        assert_eq!(s.commit_duration.bounds[0].to_string(), "0.00005");
        assert_eq!(s.commit_duration.bounds.last().unwrap().to_string(), "10");
        assert_eq!(s.expiry_lag.bounds[0].to_string(), "0.01");
    }

    #[test]
    fn records_move_their_own_counters_only() {
        let stats = EngineStats::new();
        stats.record_commits(3, 1, 0);
        stats.record_batch(4, Duration::from_micros(70));
        stats.record_read(2, 30);
        stats.record_written(5, 50);
        stats.record_expired(Duration::from_millis(1500));
        let mut tally = DeliveryTally::default();
        for d in [Delivery::Delivered, Delivery::Delivered, Delivery::Retried] {
            tally.add(d);
        }
        stats.record_deliveries(&tally);
        let s = stats.snapshot();
        assert_eq!((s.commits_ok, s.commits_check_failed, s.commits_error), (3, 1, 0));
        assert_eq!((s.commit_duration.count, s.commit_duration.cumulative[0]), (1, 0));
        assert_eq!(s.commit_duration.cumulative[1], 1, "70 µs is in the 100 µs bucket");
        assert_eq!(s.batch_size.cumulative[..3], [0, 0, 1], "4 writes: the bucket of 4");
        assert_eq!(
            (s.read_entries, s.read_bytes, s.written_entries, s.written_bytes),
            (2, 30, 5, 50)
        );
        assert_eq!((s.expired_swept, s.expiry_lag.sum), (1, 1.5));
        assert_eq!((s.queue_delivered, s.queue_retried, s.queue_dead_lettered), (2, 1, 0));
    }
}
