//! Every limit of the engine, in one place.
//!
//! The defaults equal what the Deno CLI enforces (and the reference `denokv` server, except that
//! we allow 100 checks per atomic write like the Deno client, where `denokv` refuses more than
//! 10). An embedded user may raise them through `OpenOptions::limits`;
//! values larger than 64 KiB then work here, but a Deno program reading the same file or server
//! will refuse to *write* such values itself (it still reads them).

/// Largest encoded key of a write (set, delete, sum, min, max), in bytes.
pub const MAX_WRITE_KEY_SIZE: usize = 2048;
/// Largest encoded key of a read (get, list bounds, check), in bytes. One more than writes, so
/// that `prefix ‖ 0xFF` range ends of maximal keys stay readable.
pub const MAX_READ_KEY_SIZE: usize = 2049;
/// Largest value (and enqueue payload), in bytes.
pub const MAX_VALUE_SIZE: usize = 65_536;
/// Most ranges in one snapshot read (keys in one `get_many`).
pub const MAX_READ_RANGES: usize = 10;
/// Most entries one snapshot read may ask for (the sum of its ranges' limits; a list batch).
pub const MAX_READ_ENTRIES: usize = 1000;
/// Most checks in one atomic write (the Deno client's limit; `denokv` only allows 10).
pub const MAX_CHECKS: usize = 100;
/// Most mutations plus enqueues in one atomic write.
pub const MAX_MUTATIONS: usize = 1000;
/// Largest total size of one atomic write: the keys of its checks and mutations, its values,
/// its enqueue payloads and 4 bytes per backoff interval, in bytes (800 KiB).
pub const MAX_TOTAL_MUTATION_SIZE: usize = 819_200;
/// Largest total size of the mutation keys of one atomic write, in bytes (80 KiB).
pub const MAX_TOTAL_KEY_SIZE: usize = 81_920;
/// Most keys one `watch` may follow.
pub const MAX_WATCHED_KEYS: usize = 10;
/// Longest enqueue delay, in milliseconds (30 days).
pub const MAX_QUEUE_DELAY_MS: u64 = 30 * 24 * 60 * 60 * 1000;
/// Most intervals in an enqueue's backoff schedule.
pub const MAX_BACKOFF_INTERVALS: usize = 10;
/// Longest single backoff interval, in milliseconds (1 hour).
pub const MAX_BACKOFF_INTERVAL_MS: u32 = 3_600_000;
/// Most `keys_if_undelivered` of one enqueue.
pub const MAX_KEYS_IF_UNDELIVERED: usize = 10;
/// Most atomic writes a backend's writer commits in one transaction (one fsync). Also keeps
/// PostgreSQL's 2-byte in-batch versionstamp index far from overflowing.
pub const MAX_WRITE_BATCH: usize = 512;
/// Default list batch size when neither `limit` nor `batch_size` is given.
pub const DEFAULT_LIST_BATCH_SIZE: usize = 100;
/// When only `limit` is given, the batch size is `limit` clamped to this.
pub const MAX_LIST_BATCH_FROM_LIMIT: usize = 500;

/// The limits one `openkv::Kv` enforces. `Limits::default()` is Deno's set.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// See [`MAX_WRITE_KEY_SIZE`].
    pub max_write_key_size: usize,
    /// See [`MAX_READ_KEY_SIZE`].
    pub max_read_key_size: usize,
    /// See [`MAX_VALUE_SIZE`].
    pub max_value_size: usize,
    /// See [`MAX_READ_RANGES`].
    pub max_read_ranges: usize,
    /// See [`MAX_READ_ENTRIES`].
    pub max_read_entries: usize,
    /// See [`MAX_CHECKS`].
    pub max_checks: usize,
    /// See [`MAX_MUTATIONS`].
    pub max_mutations: usize,
    /// See [`MAX_TOTAL_MUTATION_SIZE`].
    pub max_total_mutation_size: usize,
    /// See [`MAX_TOTAL_KEY_SIZE`].
    pub max_total_key_size: usize,
    /// See [`MAX_WATCHED_KEYS`].
    pub max_watched_keys: usize,
    /// See [`MAX_QUEUE_DELAY_MS`].
    pub max_queue_delay_ms: u64,
    /// See [`MAX_BACKOFF_INTERVALS`].
    pub max_backoff_intervals: usize,
    /// See [`MAX_BACKOFF_INTERVAL_MS`].
    pub max_backoff_interval_ms: u32,
    /// See [`MAX_KEYS_IF_UNDELIVERED`].
    pub max_keys_if_undelivered: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_write_key_size: MAX_WRITE_KEY_SIZE,
            max_read_key_size: MAX_READ_KEY_SIZE,
            max_value_size: MAX_VALUE_SIZE,
            max_read_ranges: MAX_READ_RANGES,
            max_read_entries: MAX_READ_ENTRIES,
            max_checks: MAX_CHECKS,
            max_mutations: MAX_MUTATIONS,
            max_total_mutation_size: MAX_TOTAL_MUTATION_SIZE,
            max_total_key_size: MAX_TOTAL_KEY_SIZE,
            max_watched_keys: MAX_WATCHED_KEYS,
            max_queue_delay_ms: MAX_QUEUE_DELAY_MS,
            max_backoff_intervals: MAX_BACKOFF_INTERVALS,
            max_backoff_interval_ms: MAX_BACKOFF_INTERVAL_MS,
            max_keys_if_undelivered: MAX_KEYS_IF_UNDELIVERED,
        }
    }
}

impl Limits {
    /// Deno's limits (the same as `default()`).
    pub fn deno() -> Self {
        Self::default()
    }

    /// Sets the largest value size (and enqueue payload size); raises the total atomic write
    /// size with it so that one such value still fits in a write.
    pub fn with_max_value_size(mut self, bytes: usize) -> Self {
        self.max_value_size = bytes;
        let needed = bytes + self.max_write_key_size;
        if self.max_total_mutation_size < needed {
            self.max_total_mutation_size = needed;
        }
        self
    }
}
