//! Prometheus metrics of `openkv serve`: the server's own counters ([`HttpMetrics`]) and
//! [`render`], which writes them with each database's engine figures
//! ([`openkv::StatsSnapshot`], [`openkv::Gauges`]) in Prometheus's text exposition format
//! (version 0.0.4, `Content-Type: text/plain; version=0.0.4`).
//!
//! # Metrics
//!
//! Every name starts with `openkv_`; every per-database metric has a `database` label. A
//! metric whose value is unknown (a gauge the backend cannot read, the engine counters of a
//! KV Connect database, the lag of a database that is no replica) is left out, not shown as 0.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `openkv_build_info` | gauge | `version` | always 1; the version of `openkv` serving |
//! | `openkv_commits_total` | counter | `database`, `outcome` | atomic writes that ended: `ok` (committed), `check_failed` (a check failed, nothing applied), `error` (a mutation the engine rejected, or a batch whose transaction failed) |
//! | `openkv_commit_duration_seconds` | histogram | `database` | time of each group-commit transaction (read, plan, store, `COMMIT` with its fsync), 50 µs to 10 s |
//! | `openkv_commit_batch_size` | histogram | `database` | atomic writes per group-commit transaction, buckets 1, 2, 4, … 512 |
//! | `openkv_read_entries_total` | counter | `database` | entries snapshot reads returned (watches' re-reads included) |
//! | `openkv_read_bytes_total` | counter | `database` | key + value bytes of those entries |
//! | `openkv_written_entries_total` | counter | `database` | mutations committed atomic writes applied |
//! | `openkv_written_bytes_total` | counter | `database` | key + value bytes of those mutations |
//! | `openkv_expired_keys_swept_total` | counter | `database` | expired keys the expiry sweep deleted |
//! | `openkv_expiry_lag_seconds` | histogram | `database` | how long after its expiry the sweep deleted each key, 10 ms to a day (reads never see an expired key; this is space reclaimed late) |
//! | `openkv_queue_deliveries_total` | counter | `database`, `outcome` | ended delivery attempts: `delivered`, `retried` (due again after its backoff), `dead_lettered` (last attempt failed: written to its `keys_if_undelivered`, or dropped) |
//! | `openkv_database_size_bytes` | gauge | `database` | the SQLite file (without its WAL); on PostgreSQL the schema's tables with indexes and TOAST |
//! | `openkv_wal_size_bytes` | gauge | `database` | SQLite's `-wal` file (PostgreSQL: absent, its WAL is the cluster's) |
//! | `openkv_queue_messages` | gauge | `database`, `state` | queue messages `ready` (due, waiting for a listener), `delayed` (not due yet), `in_flight` (leased to a listener) |
//! | `openkv_queue_oldest_ready_age_seconds` | gauge | `database` | how long the oldest ready message has been due (absent when none is ready) |
//! | `openkv_replica_lag_seconds` | gauge | `database` | a read replica: how long it has been behind its primary (0 when caught up) |
//! | `openkv_backup_last_success_timestamp_seconds` | gauge | `database` | continuous backup: when the last object landed (Unix time) |
//! | `openkv_http_requests_total` | counter | `database`, `endpoint`, `status` | requests answered, by endpoint and HTTP status (`other`: a status not listed in `STATUSES`) |
//! | `openkv_http_request_duration_seconds` | histogram | `database`, `endpoint` | time to the response's head (a watch's or a snapshot's streamed body not included), 100 µs to 60 s |
//! | `openkv_watch_streams` | gauge | `database` | watch streams open now |
//! | `openkv_auth_failures_total` | counter | `reason` | requests refused before any database was touched: `missing` (no token), `invalid` (unknown token), `expired`, `revoked`, `forbidden` (a token without the right to that database or endpoint), `unknown_database` |
//!
//! The engine's figures count this process's work since the database opened (a restart
//! starts them at 0, which Prometheus's `rate()` understands as a counter reset).
//!
//! # Why by hand
//!
//! The text format is a few lines per sample and has not changed since 2014; writing it here
//! costs one small module and no dependency. The official `prometheus-client` crate would
//! not save much: the engine's figures are snapshots taken at scrape time (`openkv-core`
//! knows no Prometheus), which it could only show through a custom collector; its encoder
//! writes OpenMetrics, not 0.0.4; and its histogram takes a lock on every observation (in
//! the versions read when this was written), where the hot path here is atomics only.

use std::fmt::{Display, Write as _};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openkv::stats::{Histogram, HistogramSnapshot};
use openkv::{Gauges, StatsSnapshot};

/// Upper bounds of the request-duration buckets, in microseconds: 100 µs (a point read on
/// loopback) to 60 s (a queue long poll, a large restore upload).
const REQUEST_DURATION_BOUNDS_US: [u64; 18] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

/// The endpoints requests are counted by: one per route of the server, the `/metrics`
/// endpoint itself, and `Other` (an unknown path: the 404 fallback).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Metadata,
    SnapshotRead,
    AtomicWrite,
    Watch,
    EventualSnapshotRead,
    EventualWatch,
    QueueTake,
    QueueWait,
    QueueRenew,
    QueueFinish,
    ReplicationSnapshot,
    ReplicationLog,
    ReplicationStatus,
    Backup,
    Restore,
    Metrics,
    /// The web console's API (`/console/api/…`), all of it under one label.
    Console,
    Other,
}

impl Endpoint {
    /// Every endpoint, in the order of its `index`.
    const ALL: [Endpoint; 18] = [
        Endpoint::Metadata,
        Endpoint::SnapshotRead,
        Endpoint::AtomicWrite,
        Endpoint::Watch,
        Endpoint::EventualSnapshotRead,
        Endpoint::EventualWatch,
        Endpoint::QueueTake,
        Endpoint::QueueWait,
        Endpoint::QueueRenew,
        Endpoint::QueueFinish,
        Endpoint::ReplicationSnapshot,
        Endpoint::ReplicationLog,
        Endpoint::ReplicationStatus,
        Endpoint::Backup,
        Endpoint::Restore,
        Endpoint::Metrics,
        Endpoint::Console,
        Endpoint::Other,
    ];

    /// The endpoint a request path names (the server's routes as `crate::ROUTES` lists them,
    /// and `/metrics`); `Other` for any other path. A match on the string: no allocation.
    pub(crate) fn from_path(path: &str) -> Endpoint {
        match path {
            "/" => Endpoint::Metadata,
            "/v2/snapshot_read" => Endpoint::SnapshotRead,
            "/v2/atomic_write" => Endpoint::AtomicWrite,
            "/v2/watch" => Endpoint::Watch,
            "/v2/eventual/snapshot_read" => Endpoint::EventualSnapshotRead,
            "/v2/eventual/watch" => Endpoint::EventualWatch,
            "/v2/openkv/queue/take" => Endpoint::QueueTake,
            "/v2/openkv/queue/wait" => Endpoint::QueueWait,
            "/v2/openkv/queue/renew" => Endpoint::QueueRenew,
            "/v2/openkv/queue/finish" => Endpoint::QueueFinish,
            "/v2/openkv/replication/snapshot" => Endpoint::ReplicationSnapshot,
            "/v2/openkv/replication/log" => Endpoint::ReplicationLog,
            "/v2/openkv/replication/status" => Endpoint::ReplicationStatus,
            "/v2/openkv/backup" => Endpoint::Backup,
            "/v2/openkv/restore" => Endpoint::Restore,
            "/metrics" => Endpoint::Metrics,
            _ if path.starts_with("/console/api/") => Endpoint::Console,
            _ => Endpoint::Other,
        }
    }

    /// The `endpoint` label's value.
    fn label(self) -> &'static str {
        match self {
            Endpoint::Metadata => "metadata",
            Endpoint::SnapshotRead => "snapshot_read",
            Endpoint::AtomicWrite => "atomic_write",
            Endpoint::Watch => "watch",
            Endpoint::EventualSnapshotRead => "eventual_snapshot_read",
            Endpoint::EventualWatch => "eventual_watch",
            Endpoint::QueueTake => "queue_take",
            Endpoint::QueueWait => "queue_wait",
            Endpoint::QueueRenew => "queue_renew",
            Endpoint::QueueFinish => "queue_finish",
            Endpoint::ReplicationSnapshot => "replication_snapshot",
            Endpoint::ReplicationLog => "replication_log",
            Endpoint::ReplicationStatus => "replication_status",
            Endpoint::Backup => "backup",
            Endpoint::Restore => "restore",
            Endpoint::Metrics => "metrics",
            Endpoint::Console => "console",
            Endpoint::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The HTTP statuses counted one by one (and their label values): every status the server or
/// its HTTP stack answers (axum's extractors and body limits included). Any other lands in a
/// slot of its own, rendered as `status="other"`.
const STATUSES: [(u16, &str); 19] = [
    (200, "200"),
    (204, "204"),
    (400, "400"),
    (401, "401"),
    (403, "403"),
    (404, "404"),
    (405, "405"),
    (408, "408"),
    (409, "409"),
    (410, "410"),
    (413, "413"),
    (415, "415"),
    (422, "422"),
    (429, "429"),
    (431, "431"),
    (500, "500"),
    (502, "502"),
    (503, "503"),
    (504, "504"),
];

/// Slots per endpoint: one per listed status, then `other`.
const STATUS_SLOTS: usize = STATUSES.len() + 1;

/// The slot counting `status`.
fn status_slot(status: u16) -> usize {
    // 19 comparisons at most, on two cache lines: cheaper than any hashing.
    STATUSES.iter().position(|&(s, _)| s == status).unwrap_or(STATUSES.len())
}

/// Why a request was refused before it reached a database (`openkv_auth_failures_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    /// No `Authorization: Bearer` token.
    Missing,
    /// A token the server does not know.
    Invalid,
    /// A token past its expiry.
    Expired,
    /// A token that was revoked.
    Revoked,
    /// A known token without the right to this database or endpoint.
    Forbidden,
    /// A database name the server does not serve.
    UnknownDatabase,
}

impl AuthFailure {
    const ALL: [AuthFailure; 6] = [
        AuthFailure::Missing,
        AuthFailure::Invalid,
        AuthFailure::Expired,
        AuthFailure::Revoked,
        AuthFailure::Forbidden,
        AuthFailure::UnknownDatabase,
    ];

    fn label(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Invalid => "invalid",
            AuthFailure::Expired => "expired",
            AuthFailure::Revoked => "revoked",
            AuthFailure::Forbidden => "forbidden",
            AuthFailure::UnknownDatabase => "unknown_database",
        }
    }
}

/// The server's own metrics: per database (handles registered once, [`HttpMetrics::database`])
/// and the authentication failures. Cheap on the hot path: a request is counted with a few
/// relaxed atomic adds at indexes its endpoint and status select, with no lock, no lookup
/// by name and no formatting; only registering a database and rendering take the lock.
#[derive(Debug)]
pub(crate) struct HttpMetrics {
    /// Registered databases, in registration order (the order they are rendered in).
    databases: RwLock<Vec<Arc<DatabaseHttp>>>,
    /// Indexed like [`AuthFailure::ALL`].
    auth_failures: [AtomicU64; AuthFailure::ALL.len()],
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics::new()
    }
}

impl HttpMetrics {
    pub(crate) fn new() -> HttpMetrics {
        HttpMetrics {
            databases: RwLock::new(Vec::new()),
            auth_failures: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// The handle that counts requests to the database `name`: registered on the first call
    /// with that name, the same handle afterwards. Resolve it once per database (when it
    /// opens) and keep it; this call takes a lock and compares names.
    pub(crate) fn database(&self, name: &str) -> Arc<DatabaseHttp> {
        let mut databases = self.databases.write().unwrap_or_else(|e| e.into_inner());
        if let Some(db) = databases.iter().find(|db| db.name == name) {
            return db.clone();
        }
        let db = Arc::new(DatabaseHttp::new(name));
        databases.push(db.clone());
        db
    }

    /// Counts a request refused for `reason`.
    /// Stops reporting the database `name` (it was deleted).
    pub(crate) fn forget(&self, name: &str) {
        let mut databases = self.databases.write().unwrap_or_else(|e| e.into_inner());
        databases.retain(|db| db.name != name);
    }

    pub(crate) fn auth_failure(&self, reason: AuthFailure) {
        self.auth_failures[reason as usize].fetch_add(1, Relaxed);
    }
}

/// One database's request counters (a handle from [`HttpMetrics::database`]).
#[derive(Debug)]
pub(crate) struct DatabaseHttp {
    name: String,
    /// `[endpoint][status slot]`, indexed by [`Endpoint::index`] and [`status_slot`].
    requests: [[AtomicU64; STATUS_SLOTS]; Endpoint::ALL.len()],
    /// Microseconds to the response's head, per endpoint.
    durations: [Histogram; Endpoint::ALL.len()],
    /// Watch streams open now; moved only by [`WatchStream`] guards, so never negative.
    watch_streams: AtomicI64,
}

impl DatabaseHttp {
    fn new(name: &str) -> DatabaseHttp {
        DatabaseHttp {
            name: name.to_owned(),
            requests: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            durations: std::array::from_fn(|_| Histogram::new(&REQUEST_DURATION_BOUNDS_US, 1e6)),
            watch_streams: AtomicI64::new(0),
        }
    }

    /// Counts one request to `endpoint` answered with `status` after `took` (to the
    /// response's head).
    pub(crate) fn request(&self, endpoint: Endpoint, status: u16, took: Duration) {
        let i = endpoint.index();
        self.requests[i][status_slot(status)].fetch_add(1, Relaxed);
        self.durations[i].observe_duration(took);
    }

    /// Counts a watch stream open until the returned guard is dropped (with the response
    /// body, when the client goes away or the server stops).
    pub(crate) fn watch_opened(self: &Arc<Self>) -> WatchStream {
        self.watch_streams.fetch_add(1, Relaxed);
        WatchStream(self.clone())
    }
}

/// An open watch stream, counted in `openkv_watch_streams` while it lives.
#[derive(Debug)]
pub(crate) struct WatchStream(Arc<DatabaseHttp>);

impl Drop for WatchStream {
    fn drop(&mut self) {
        self.0.watch_streams.fetch_sub(1, Relaxed);
    }
}

/// One database's figures for [`render`]: what its engine counted, what its store holds now,
/// and what the server knows of it besides. `None`: unknown (left out of the output).
#[derive(Clone, Debug, Default)]
pub(crate) struct DatabaseMetrics<'a> {
    /// The `database` label's value.
    pub(crate) name: &'a str,
    /// `Kv::stats`: `None` for a KV Connect database.
    pub(crate) stats: Option<StatsSnapshot>,
    /// `Kv::gauges`: `None` when reading them failed.
    pub(crate) gauges: Option<Gauges>,
    /// A read replica's lag (`ReplicaStatus::lag_ms`); `None` for any other database.
    pub(crate) replica_lag: Option<Duration>,
    /// When the continuous backup last shipped an object (`BackupStatus::last_success_ms`,
    /// Unix ms); `None` without a backup, or before its first success.
    pub(crate) last_backup_success_ms: Option<i64>,
}

/// Appends every metric (see the module's table) to `out` in Prometheus's text format 0.0.4:
/// each family once, its `HELP` and `TYPE` first, then its samples for every database.
pub(crate) fn render(out: &mut String, http: &HttpMetrics, databases: &[DatabaseMetrics<'_>]) {
    let mut w = Writer { out };
    w.family("openkv_build_info", "gauge", "The version of openkv serving (always 1).");
    w.sample("openkv_build_info", "", &[("version", env!("CARGO_PKG_VERSION"))], 1);

    engine(&mut w, databases);
    store(&mut w, databases);

    let registered = http.databases.read().unwrap_or_else(|e| e.into_inner()).clone();
    let name = "openkv_http_requests_total";
    w.family(name, "counter", "HTTP requests answered, by endpoint and status.");
    for db in &registered {
        for endpoint in Endpoint::ALL {
            let slots = &db.requests[endpoint.index()];
            for (slot, count) in slots.iter().enumerate() {
                let count = count.load(Relaxed);
                if count == 0 {
                    continue;
                }
                let status = STATUSES.get(slot).map_or("other", |(_, text)| text);
                let labels = [
                    ("database", db.name.as_str()),
                    ("endpoint", endpoint.label()),
                    ("status", status),
                ];
                w.sample(name, "", &labels, count);
            }
        }
    }
    let name = "openkv_http_request_duration_seconds";
    w.family(name, "histogram", "Time from a request to its response's head, by endpoint.");
    for db in &registered {
        for endpoint in Endpoint::ALL {
            let h = db.durations[endpoint.index()].snapshot();
            if h.count > 0 {
                w.histogram(name, &[("database", &db.name), ("endpoint", endpoint.label())], &h);
            }
        }
    }
    let name = "openkv_watch_streams";
    w.family(name, "gauge", "Watch streams open now.");
    for db in &registered {
        w.sample(name, "", &[("database", &db.name)], db.watch_streams.load(Relaxed));
    }
    let name = "openkv_auth_failures_total";
    w.family(name, "counter", "Requests refused before reaching a database, by reason.");
    for (reason, count) in AuthFailure::ALL.iter().zip(&http.auth_failures) {
        w.sample(name, "", &[("reason", reason.label())], count.load(Relaxed));
    }
}

/// Where a counter, a histogram, a gauge is in the engine's figures.
type CountOf = fn(&StatsSnapshot) -> u64;
type HistogramOf = fn(&StatsSnapshot) -> &HistogramSnapshot;
type GaugeOf = fn(&Gauges) -> Option<u64>;

/// The engine's counters and histograms of every database that keeps them.
fn engine(w: &mut Writer<'_>, databases: &[DatabaseMetrics<'_>]) {
    let counted: Vec<(&str, &StatsSnapshot)> =
        databases.iter().filter_map(|d| Some((d.name, d.stats.as_ref()?))).collect();
    if counted.is_empty() {
        return;
    }
    // Counters with one more label than `database`: (its value, the count) for each.
    type Outcomes = [(&'static str, CountOf); 3];
    let labelled: [(&str, &str, &str, Outcomes); 2] = [
        (
            "openkv_commits_total",
            "Atomic writes that ended, by outcome.",
            "outcome",
            [
                ("ok", |s| s.commits_ok),
                ("check_failed", |s| s.commits_check_failed),
                ("error", |s| s.commits_error),
            ],
        ),
        (
            "openkv_queue_deliveries_total",
            "Ended queue delivery attempts, by outcome.",
            "outcome",
            [
                ("delivered", |s| s.queue_delivered),
                ("retried", |s| s.queue_retried),
                ("dead_lettered", |s| s.queue_dead_lettered),
            ],
        ),
    ];
    for (name, help, label, values) in labelled {
        w.family(name, "counter", help);
        for (db, stats) in &counted {
            for (value, get) in values {
                w.sample(name, "", &[("database", db), (label, value)], get(stats));
            }
        }
    }
    let histograms: [(&str, &str, HistogramOf); 3] = [
        (
            "openkv_commit_duration_seconds",
            "Time of each group-commit transaction, fsync included.",
            |s| &s.commit_duration,
        ),
        ("openkv_commit_batch_size", "Atomic writes per group-commit transaction.", |s| {
            &s.batch_size
        }),
        (
            "openkv_expiry_lag_seconds",
            "How long after its expiry the sweep deleted each key.",
            |s| &s.expiry_lag,
        ),
    ];
    for (name, help, get) in histograms {
        w.family(name, "histogram", help);
        for (db, stats) in &counted {
            w.histogram(name, &[("database", db)], get(stats));
        }
    }
    let counters: [(&str, &str, CountOf); 5] = [
        ("openkv_read_entries_total", "Entries snapshot reads returned.", |s| s.read_entries),
        ("openkv_read_bytes_total", "Key and value bytes snapshot reads returned.", |s| {
            s.read_bytes
        }),
        ("openkv_written_entries_total", "Mutations committed atomic writes applied.", |s| {
            s.written_entries
        }),
        ("openkv_written_bytes_total", "Key and value bytes of the mutations applied.", |s| {
            s.written_bytes
        }),
        ("openkv_expired_keys_swept_total", "Expired keys the expiry sweep deleted.", |s| {
            s.expired_swept
        }),
    ];
    for (name, help, get) in counters {
        w.family(name, "counter", help);
        for (db, stats) in &counted {
            w.sample(name, "", &[("database", db)], get(stats));
        }
    }
}

/// The gauges read from the stores, and the server's per-database extras: each family only
/// if some database has a value for it.
fn store(w: &mut Writer<'_>, databases: &[DatabaseMetrics<'_>]) {
    type Get = fn(&DatabaseMetrics<'_>) -> Option<f64>;
    fn gauge(d: &DatabaseMetrics<'_>, get: GaugeOf) -> Option<f64> {
        d.gauges.as_ref().and_then(get).map(|v| v as f64)
    }
    fn secs(d: Option<Duration>) -> Option<f64> {
        d.map(|d| d.as_secs_f64())
    }
    let families: [(&str, &str, Get); 5] = [
        ("openkv_database_size_bytes", "Bytes the database takes (without its WAL).", |d| {
            gauge(d, |g| g.database_bytes)
        }),
        ("openkv_wal_size_bytes", "Bytes of the database's write-ahead log.", |d| {
            gauge(d, |g| g.wal_bytes)
        }),
        (
            "openkv_queue_oldest_ready_age_seconds",
            "How long the oldest ready queue message has been due.",
            |d| secs(d.gauges.as_ref()?.queue_oldest_ready_age),
        ),
        (
            "openkv_replica_lag_seconds",
            "How long this read replica has been behind its primary.",
            |d| secs(d.replica_lag),
        ),
        (
            "openkv_backup_last_success_timestamp_seconds",
            "When the continuous backup last shipped an object (Unix time).",
            |d| d.last_backup_success_ms.map(|ms| ms as f64 / 1e3),
        ),
    ];
    for (name, help, get) in families {
        if databases.iter().all(|d| get(d).is_none()) {
            continue;
        }
        w.family(name, "gauge", help);
        for d in databases {
            if let Some(value) = get(d) {
                w.sample(name, "", &[("database", d.name)], Float(value));
            }
        }
    }
    let states: [(&str, GaugeOf); 3] = [
        ("ready", |g| g.queue_ready),
        ("delayed", |g| g.queue_delayed),
        ("in_flight", |g| g.queue_in_flight),
    ];
    let name = "openkv_queue_messages";
    if databases.iter().any(|d| states.iter().any(|(_, get)| gauge(d, *get).is_some())) {
        w.family(name, "gauge", "Queue messages by state: ready, delayed, in flight.");
        for d in databases {
            for (state, get) in states {
                if let Some(n) = d.gauges.as_ref().and_then(get) {
                    w.sample(name, "", &[("database", d.name), ("state", state)], n);
                }
            }
        }
    }
}

/// A float as Prometheus reads it (Go's `ParseFloat`: `+Inf`, `-Inf`, `NaN`, decimals).
struct Float(f64);

impl Display for Float {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            v if v.is_nan() => f.write_str("NaN"),
            v if v == f64::INFINITY => f.write_str("+Inf"),
            v if v == f64::NEG_INFINITY => f.write_str("-Inf"),
            // Rust's shortest round-trip decimal, which Go parses back exactly.
            v => write!(f, "{v}"),
        }
    }
}

/// Writes lines of the text format to a `String`.
struct Writer<'a> {
    out: &'a mut String,
}

impl Writer<'_> {
    /// A family's `HELP` and `TYPE` lines.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        // HELP text escapes only backslashes and line feeds.
        for c in help.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                c => self.out.push(c),
            }
        }
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind);
        self.out.push('\n');
    }

    /// One sample line: `name suffix {labels} value`.
    fn sample(&mut self, name: &str, suffix: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        self.out.push_str(suffix);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(label);
                self.out.push_str("=\"");
                escape_label_value(self.out, value);
                self.out.push('"');
            }
            self.out.push('}');
        }
        // Writing to a String cannot fail.
        let _ = writeln!(self.out, " {value}");
    }

    /// A histogram's samples: cumulative `_bucket`s (`le` last among the labels), the
    /// `+Inf` bucket (= the count), `_sum` and `_count`.
    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramSnapshot) {
        let les: Vec<String> = h.bounds.iter().map(|b| Float(*b).to_string()).collect();
        let mut with_le: Vec<(&str, &str)> = labels.to_vec();
        with_le.push(("le", "+Inf"));
        let le = with_le.len() - 1;
        for (bound, count) in les.iter().zip(&h.cumulative) {
            with_le[le].1 = bound;
            self.sample(name, "_bucket", &with_le, count);
        }
        with_le[le].1 = "+Inf";
        self.sample(name, "_bucket", &with_le, h.count);
        self.sample(name, "_sum", labels, Float(h.sum));
        self.sample(name, "_count", labels, h.count);
    }
}

/// A label value as the text format quotes it: backslash, double quote and line feed
/// escaped.
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Figures of a database that did a little of everything.
    fn busy_database(name: &str) -> DatabaseMetrics<'_> {
        let stats = openkv::EngineStats::new();
        stats.record_commits(5, 1, 2);
        stats.record_batch(1, Duration::from_micros(40));
        stats.record_batch(4, Duration::from_millis(3));
        stats.record_read(7, 700);
        stats.record_written(6, 600);
        stats.record_expired(Duration::from_millis(1500));
        let mut gauges = Gauges::default();
        gauges.database_bytes = Some(4096);
        gauges.wal_bytes = Some(0);
        gauges.queue_ready = Some(2);
        gauges.queue_delayed = Some(1);
        gauges.queue_in_flight = Some(0);
        gauges.queue_oldest_ready_age = Some(Duration::from_millis(250));
        DatabaseMetrics {
            name,
            stats: Some(stats.snapshot()),
            gauges: Some(gauges),
            replica_lag: Some(Duration::from_secs(2)),
            last_backup_success_ms: Some(1_700_000_000_500),
        }
    }

    fn rendered(http: &HttpMetrics, databases: &[DatabaseMetrics<'_>]) -> String {
        let mut out = String::new();
        render(&mut out, http, databases);
        out
    }

    fn lines_of<'a>(out: &'a str, prefix: &str) -> Vec<&'a str> {
        out.lines().filter(|l| l.starts_with(prefix)).collect()
    }

    #[test]
    fn label_values_are_escaped_and_help_text_too() {
        let mut out = String::new();
        escape_label_value(&mut out, "a\\b\"c\nd");
        assert_eq!(out, r#"a\\b\"c\nd"#);
        let http = HttpMetrics::new();
        let db = http.database("we\"ird\\name\n");
        db.request(Endpoint::SnapshotRead, 200, Duration::from_micros(10));
        let mut out = rendered(&http, &[]);
        assert!(
            out.contains(
                "openkv_http_requests_total{database=\"we\\\"ird\\\\name\\n\",\
                 endpoint=\"snapshot_read\",status=\"200\"} 1\n"
            ),
            "{out}"
        );
        let mut w = Writer { out: &mut out };
        w.family("x", "gauge", "back\\slash\nnewline");
        assert!(out.ends_with("# HELP x back\\\\slash\\nnewline\n# TYPE x gauge\n"), "{out}");
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_the_count() {
        let out = rendered(&HttpMetrics::new(), &[busy_database("db")]);
        let buckets = lines_of(&out, "openkv_commit_duration_seconds_bucket{");
        // 40 µs is under the first bound; 3 ms under the 5 ms one and every one after.
        assert_eq!(
            buckets[0],
            "openkv_commit_duration_seconds_bucket{database=\"db\",le=\"0.00005\"} 1"
        );
        assert_eq!(
            buckets[5],
            "openkv_commit_duration_seconds_bucket{database=\"db\",le=\"0.0025\"} 1"
        );
        assert_eq!(
            buckets[6],
            "openkv_commit_duration_seconds_bucket{database=\"db\",le=\"0.005\"} 2"
        );
        assert_eq!(
            *buckets.last().unwrap(),
            "openkv_commit_duration_seconds_bucket{database=\"db\",le=\"+Inf\"} 2"
        );
        let counts: Vec<u64> =
            buckets.iter().map(|l| l.rsplit(' ').next().unwrap().parse().unwrap()).collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "not cumulative: {counts:?}");
        assert!(
            out.contains("openkv_commit_duration_seconds_sum{database=\"db\"} 0.00304\n"),
            "{out}"
        );
        assert!(out.contains("openkv_commit_duration_seconds_count{database=\"db\"} 2\n"));
        assert!(out.contains("openkv_commit_batch_size_bucket{database=\"db\",le=\"4\"} 2\n"));
        assert!(out.contains("openkv_commit_batch_size_bucket{database=\"db\",le=\"512\"} 2\n"));
    }

    #[test]
    fn every_figure_is_rendered_under_its_name_and_labels() {
        let http = HttpMetrics::new();
        let db = http.database("db");
        assert!(Arc::ptr_eq(&db, &http.database("db")), "one handle per name");
        db.request(Endpoint::AtomicWrite, 200, Duration::from_millis(1));
        db.request(Endpoint::AtomicWrite, 200, Duration::from_millis(2));
        db.request(Endpoint::from_path("/nope"), 404, Duration::from_micros(50));
        db.request(Endpoint::Watch, 418, Duration::from_micros(50));
        let watch = db.watch_opened();
        let _second = db.watch_opened();
        drop(watch);
        http.auth_failure(AuthFailure::Missing);
        http.auth_failure(AuthFailure::UnknownDatabase);
        http.auth_failure(AuthFailure::UnknownDatabase);
        let remote = DatabaseMetrics { name: "remote", ..Default::default() };
        let out = rendered(&http, &[busy_database("db"), remote]);
        for line in [
            format!("openkv_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION")).as_str(),
            "openkv_commits_total{database=\"db\",outcome=\"ok\"} 5",
            "openkv_commits_total{database=\"db\",outcome=\"check_failed\"} 1",
            "openkv_commits_total{database=\"db\",outcome=\"error\"} 2",
            "openkv_read_entries_total{database=\"db\"} 7",
            "openkv_read_bytes_total{database=\"db\"} 700",
            "openkv_written_entries_total{database=\"db\"} 6",
            "openkv_written_bytes_total{database=\"db\"} 600",
            "openkv_expired_keys_swept_total{database=\"db\"} 1",
            "openkv_expiry_lag_seconds_sum{database=\"db\"} 1.5",
            "openkv_queue_deliveries_total{database=\"db\",outcome=\"delivered\"} 0",
            "openkv_database_size_bytes{database=\"db\"} 4096",
            "openkv_wal_size_bytes{database=\"db\"} 0",
            "openkv_queue_messages{database=\"db\",state=\"ready\"} 2",
            "openkv_queue_messages{database=\"db\",state=\"delayed\"} 1",
            "openkv_queue_messages{database=\"db\",state=\"in_flight\"} 0",
            "openkv_queue_oldest_ready_age_seconds{database=\"db\"} 0.25",
            "openkv_replica_lag_seconds{database=\"db\"} 2",
            "openkv_backup_last_success_timestamp_seconds{database=\"db\"} 1700000000.5",
            "openkv_http_requests_total{database=\"db\",endpoint=\"atomic_write\",status=\"200\"} 2",
            "openkv_http_requests_total{database=\"db\",endpoint=\"other\",status=\"404\"} 1",
            "openkv_http_requests_total{database=\"db\",endpoint=\"watch\",status=\"other\"} 1",
            "openkv_http_request_duration_seconds_count{database=\"db\",endpoint=\"atomic_write\"} 2",
            "openkv_watch_streams{database=\"db\"} 1",
            "openkv_auth_failures_total{reason=\"missing\"} 1",
            "openkv_auth_failures_total{reason=\"unknown_database\"} 2",
            "openkv_auth_failures_total{reason=\"revoked\"} 0",
        ] {
            assert!(out.lines().any(|l| l == line), "no line {line:?} in\n{out}");
        }
        // A database without engine counters or gauges shows none (not zeros).
        assert!(!out.contains("database=\"remote\""), "{out}");
        // Every family once, HELP before TYPE before its samples.
        let mut seen = std::collections::HashSet::new();
        for line in lines_of(&out, "# TYPE ") {
            assert!(seen.insert(line.split(' ').nth(2).unwrap()), "{line} twice");
        }
    }

    #[test]
    fn every_route_of_the_server_is_an_endpoint_of_its_own() {
        let mut labels = std::collections::HashSet::new();
        for path in crate::ROUTES {
            let endpoint = Endpoint::from_path(path);
            assert_ne!(endpoint, Endpoint::Other, "{path} is counted as other");
            // The console's API is one endpoint in the metrics (a page's calls, not a
            // protocol's), every other route one of its own.
            if path.starts_with("/console/api/") {
                assert_eq!(endpoint, Endpoint::Console, "{path}");
                continue;
            }
            assert!(labels.insert(endpoint.label()), "{path} shares its label");
        }
        for (i, endpoint) in Endpoint::ALL.iter().enumerate() {
            assert_eq!(endpoint.index(), i);
        }
        for (i, reason) in AuthFailure::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i);
        }
    }

    #[test]
    fn statuses_have_their_own_slots_and_the_rest_share_one() {
        assert_eq!(STATUSES[status_slot(503)], (503, "503"));
        assert_eq!(status_slot(418), STATUSES.len());
        assert_eq!(status_slot(599), STATUSES.len());
        for (code, text) in STATUSES {
            assert_eq!(code.to_string(), text);
        }
    }

    /// Prometheus's own linter (`promtool check metrics`, Debian's `prometheus` package)
    /// reads the output and finds nothing to say. Found as `$OPENKV_PROMTOOL`, else on the
    /// `PATH`; skipped without it — unless `OPENKV_REQUIRE_PROMTOOL=1` (scripts/test.sh sets
    /// it after installing the package), which makes its absence a failure.
    #[test]
    // The crate root denies printing (a library reports through tracing); a skipped test
    // says so on stderr, as the integration tests do.
    #[allow(clippy::print_stderr)]
    fn promtool_accepts_the_output() {
        use std::io::Write;
        use std::process::{Command, Stdio};

        let promtool = std::env::var_os("OPENKV_PROMTOOL").unwrap_or_else(|| "promtool".into());
        let child = Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) => {
                assert_ne!(
                    std::env::var("OPENKV_REQUIRE_PROMTOOL").as_deref(),
                    Ok("1"),
                    "OPENKV_REQUIRE_PROMTOOL=1 but {promtool:?} cannot run ({e}): install \
                     Debian's `prometheus` package or set OPENKV_PROMTOOL"
                );
                eprintln!("{promtool:?} cannot run ({e}): skipping (apt-get install prometheus)");
                return;
            }
        };
        let http = HttpMetrics::new();
        let db = http.database("main");
        db.request(Endpoint::SnapshotRead, 200, Duration::from_micros(300));
        db.request(Endpoint::Other, 404, Duration::from_micros(30));
        let _watch = db.watch_opened();
        http.auth_failure(AuthFailure::Invalid);
        let databases = [
            busy_database("main"),
            busy_database("we\"ird\\name"),
            DatabaseMetrics { name: "remote", ..Default::default() },
        ];
        let out = rendered(&http, &databases);
        child.stdin.take().unwrap().write_all(out.as_bytes()).unwrap();
        let result = child.wait_with_output().unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        );
        assert!(result.status.success() && said.trim().is_empty(), "promtool: {said}\n{out}");
    }
}
