//! `bench-scale`: how openkv's figures move as the database grows — 10k, 1M and 10M entries, on
//! a SQLite file and on PostgreSQL.
//!
//! ```text
//! bench-scale [--sizes 10k,1m,10m] [--backends sqlite,pg] [--pg-url URL] [--pg-restart CMD]
//!             [--openkv PATH] [--dir DIR] [--keep] [--seconds S] [--writes W] [--seed N]
//!             [--json FILE] [--max-wait S] [--time PATH]
//! ```
//!
//! `scripts/bench-scale.sh` builds everything, starts a throwaway PostgreSQL cluster and runs
//! this. **The data**: entry `i` (0 ≤ i < N) has the key `["tenant", "acme-TTTTTT", "orders",
//! ID]` — tenant `i / 10,000` (a string), order id `1,000,000 + 3 × (i mod 10,000)` (a bigint),
//! so key order is `i` order and every full tenant holds 10,000 entries — and a JavaScript
//! string value of 100 B – 4 KiB: 90% of sizes uniform in 100–400 B, 10% uniform in 400 B –
//! 4 KiB (mean ≈ 450 B; 10M entries ≈ 4.5 GB of values), random letters and digits. Both are
//! functions of `i` and `--seed`: nothing holds the key set in memory, a random get picks a
//! random `i`. Per size, an NDJSON file in `openkv export`'s line format is written once (in
//! key order, as an export is) and imported into each backend.
//!
//! Per backend and size, in this order (each timed step after [`wait_for_quiet`]):
//!
//! | row | what is measured |
//! |---|---|
//! | import | `openkv --db DB import -i FILE` as a child process, spawn to exit: entries/s; its peak RSS (`/usr/bin/time -f %M`, i.e. `wait4`'s `ru_maxrss`) |
//! | on disk | SQLite: the file + its WAL after `wal_checkpoint(TRUNCATE)`; PostgreSQL: `pg_total_relation_size` of the schema's tables (indexes and TOAST included): MB, and bytes per entry |
//! | backup / restore | `openkv --db DB backup FILE`, then `openkv --db NEW restore FILE`, child processes: seconds, and MB of database file per second (SQLite only: `openkv backup` does not do PostgreSQL) |
//! | get cold / warm, 1 / 2 threads | random existing keys, for `--seconds` each: p50 and p99 of each `get` (µs) and gets/s; one current-thread runtime per thread |
//! | list 1,000 | `list` of a random tenant's prefix, limit 1,000 (one batch), repeated for `--seconds` (at least 5 times): median ms |
//! | count of a prefix | as `openkv count --prefix` does it (a list in batches of 1,000, counted): a random full tenant (10,000 entries; N if smaller), 3 times: median ms, and the count |
//! | set, 64 tasks | `--writes` (20,000) sets of new keys (appended to random tenants), 64 concurrent tasks on a 2-worker runtime: sets/s |
//! | check+set, 8 tasks | `--writes`/10 × (get a random existing key, `check` its versionstamp + `set`, commit), 8 tasks: ops/s |
//! | measuring process's peak RSS | everything from the gets on runs in a fresh child process (`bench-scale measure …`): its `VmHWM` at the end, MB |
//!
//! **Cold** gets: before each cold run the OS page cache is dropped (`sync`, `echo 3 >
//! /proc/sys/vm/drop_caches`: root only; the table says when it could not be) and the database
//! is opened anew (SQLite's page cache is per connection); on PostgreSQL, with `--pg-restart
//! CMD`, a `CHECKPOINT` then CMD (a shell command restarting the cluster, which
//! scripts/bench-scale.sh passes) empty `shared_buffers` too — without it they stay warm. A
//! small database (10k entries: 8 MB) is cold only for a cold run's first few hundred gets.
//! **Warm** gets: after every file of the database was read once (SQLite's file; PostgreSQL's
//! relation files, found with `pg_relation_filepath`) and a second of random gets.
//!
//! The report is one Markdown table per backend, one column per size, then the targets of the
//! issue: get p99 (warm) at the largest size ≤ 2 × at the smallest; import ≥ 100,000 entries/s
//! on SQLite; the measuring process's peak RSS not growing with the database (largest size ≤
//! 1.5 × the smallest's); backup ≥ 100 MB/s. Every figure also goes to `--json`. Nothing
//! asserts timings. Disk: a size needs the NDJSON (~650 B/entry), the SQLite file (~750
//! B/entry), its backup and the restored copy (removed right after), then the PostgreSQL copy
//! (~630 B/entry, and its WAL): about 30 GB at 10M entries.

// why: a benchmark tool, not product code; a failed setup or measurement ends the run with a
// panic naming it, which is what this tool should do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::error::Error;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use futures::StreamExt;
use openkv::export::entry_line;
use openkv::{
    encode_v8, key, JsValue, Key, Kv, ListOptions, OpenOptions, RawEntry, Selector, Value,
    Versionstamp,
};
use openkv_bench::wait_for_quiet;
use serde_json::{json, Map, Value as Json};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// Entries per tenant (key prefix `["tenant", NAME]`).
const PER_TENANT: u64 = 10_000;
/// Entries of the `list` row.
const LIST_LIMIT: usize = 1000;
/// Concurrent tasks of the `set` row.
const SET_TASKS: u64 = 64;
/// Concurrent tasks of the `check+set` row.
const CHECK_SET_TASKS: u64 = 8;
/// Timed passes of the `count` row.
const COUNT_PASSES: usize = 3;

#[derive(Parser, Debug)]
#[command(about = "openkv as the database grows (10k, 1M, 10M entries), on SQLite and PostgreSQL")]
struct Args {
    #[command(subcommand)]
    measure: Option<Sub>,
    /// Database sizes, in entries (`10k`, `1m`, or a plain number).
    #[arg(long, value_delimiter = ',', default_value = "10k,1m,10m", value_parser = parse_size)]
    sizes: Vec<Size>,
    /// Backends, in this order: `sqlite`, `pg`.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,pg")]
    backends: Vec<String>,
    /// Base URL of a PostgreSQL database (no openkv_schema: each size gets a fresh schema).
    #[arg(long, env = "OPENKV_BENCH_POSTGRES_URL")]
    pg_url: Option<String>,
    /// A shell command restarting that PostgreSQL, run before each cold run (after a
    /// CHECKPOINT) so that shared_buffers start empty too.
    #[arg(long)]
    pg_restart: Option<String>,
    /// The openkv binary (default: `openkv` next to this program).
    #[arg(long)]
    openkv: Option<PathBuf>,
    /// Where the temporary directory (NDJSON, SQLite files, backups) goes.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep that directory, the SQLite files and the PostgreSQL schemas.
    #[arg(long)]
    keep: bool,
    /// Seconds of each get run (and of the list row).
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Sets of the `set` row (`check+set` runs a tenth as many).
    #[arg(long, default_value_t = 20_000)]
    writes: u64,
    /// Seed of the values' sizes and contents and of the random keys.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also write every figure as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Before each timed step, wait up to this many seconds (0: don't) for the rest of the
    /// machine to quiet down (under 20% of one core busy over one second): this VM is shared.
    #[arg(long, default_value_t = 300)]
    max_wait: u64,
    /// GNU time, for the child processes' peak RSS (without it those rows read n/a).
    #[arg(long, default_value = "/usr/bin/time")]
    time: PathBuf,
}

#[derive(Subcommand, Debug)]
enum Sub {
    /// (internal) The reads and writes of one database, in a process of their own; prints
    /// the figures as one JSON object.
    #[command(hide = true)]
    Measure(MeasureArgs),
}

#[derive(clap::Args, Debug, Clone)]
struct MeasureArgs {
    #[arg(long)]
    backend: String,
    /// A SQLite path, or a PostgreSQL URL with openkv_schema.
    #[arg(long)]
    db: String,
    /// PostgreSQL: the base URL (for psql) and the schema.
    #[arg(long)]
    pg_url: Option<String>,
    #[arg(long)]
    schema: Option<String>,
    #[arg(long)]
    pg_restart: Option<String>,
    #[arg(long)]
    entries: u64,
    #[arg(long)]
    seconds: f64,
    #[arg(long)]
    writes: u64,
    #[arg(long)]
    seed: u64,
}

/// A database size: as typed, and in entries.
#[derive(Clone, Debug)]
struct Size {
    label: String,
    n: u64,
}

fn parse_size(text: &str) -> Result<Size, String> {
    let lower = text.trim().to_ascii_lowercase();
    let (digits, unit) = match lower.strip_suffix('k') {
        Some(d) => (d, 1_000),
        None => match lower.strip_suffix('m') {
            Some(d) => (d, 1_000_000),
            None => (lower.as_str(), 1),
        },
    };
    let n: u64 = digits.parse().map_err(|_| format!("{text:?}: not a size (10k, 1m, 5000)"))?;
    if n == 0 {
        return Err("a size must be positive".into());
    }
    Ok(Size { label: lower.clone(), n: n * unit })
}

fn main() {
    let args = Args::parse();
    let result = match &args.measure {
        Some(Sub::Measure(m)) => measure(m.clone()),
        None => run(args),
    };
    if let Err(e) = result {
        eprintln!("bench-scale: {e}");
        std::process::exit(1);
    }
}

// --- the data ------------------------------------------------------------------------------

/// splitmix64's finalizer: a well-mixed 64-bit function of `z`.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A small fast generator (xorshift64*), for the random keys of the measurements.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(mix(seed) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn tenant_name(tenant: u64) -> String {
    format!("acme-{tenant:06}")
}

/// The key of entry `i`.
fn key_of(i: u64) -> Key {
    key!["tenant", tenant_name(i / PER_TENANT), "orders", 1_000_000 + 3 * (i % PER_TENANT)]
}

/// The `k`-th new key of the `set` row: after every loaded order of its tenant.
fn new_key(tenant: u64, k: u64) -> Key {
    key!["tenant", tenant_name(tenant), "orders", 1_000_000 + 3 * (PER_TENANT + k)]
}

/// The size in bytes of value `i`: 90% uniform in 100..=400, 10% uniform in 400..=4096.
fn value_len(seed: u64, i: u64) -> usize {
    let h = mix(seed ^ mix(i));
    let (low, high) = if h % 10 == 0 { (400, 4096) } else { (100, 400) };
    (low + (h >> 8) % (high - low + 1)) as usize
}

/// Value `i`: a string of [`value_len`] random letters, digits, `-` and `_`.
fn value_of(seed: u64, i: u64) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let len = value_len(seed, i);
    let mut state = mix(seed.rotate_left(17) ^ i) | 1;
    let mut s = String::with_capacity(len);
    while s.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let mut bits = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
        for _ in 0..10 {
            if s.len() == len {
                break;
            }
            s.push(ALPHABET[(bits & 63) as usize] as char);
            bits >>= 6;
        }
    }
    s
}

fn v8_string(s: String) -> Value {
    Value::V8(encode_v8(&JsValue::String(s)).expect("a string encodes"))
}

/// Writes the `n` entries as `openkv export` lines into `path` (through a temporary file).
fn write_ndjson(path: &Path, n: u64, seed: u64) -> Res<()> {
    let tmp = path.with_extension("ndjson.partial");
    let mut out = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
    for i in 0..n {
        let entry = RawEntry {
            key: key_of(i).encode()?,
            value: v8_string(value_of(seed, i)),
            versionstamp: Versionstamp::from_version(i + 1),
            expire_at_ms: None,
        };
        writeln!(out, "{}", entry_line(&entry))?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

// --- latencies -----------------------------------------------------------------------------

/// Nanosecond latencies in log-linear buckets (32 per power of two: ±1.6%), in fixed memory:
/// the measuring process's RSS must not grow with the number of operations.
#[derive(Clone)]
struct Histogram {
    counts: Vec<u64>,
    n: u64,
}

const SUB_BUCKETS: u64 = 32;

impl Histogram {
    fn new() -> Histogram {
        Histogram { counts: vec![0; (SUB_BUCKETS * 60) as usize], n: 0 }
    }

    fn bucket(ns: u64) -> usize {
        if ns < SUB_BUCKETS {
            return ns as usize;
        }
        let exp = 63 - u64::from(ns.leading_zeros()); // ≥ 5
        let sub = (ns >> (exp - 5)) - SUB_BUCKETS;
        (SUB_BUCKETS + (exp - 5) * SUB_BUCKETS + sub) as usize
    }

    /// The middle of a bucket, in nanoseconds.
    fn value(bucket: usize) -> f64 {
        let b = bucket as u64;
        if b < SUB_BUCKETS {
            return b as f64;
        }
        let exp = (b - SUB_BUCKETS) / SUB_BUCKETS + 5;
        let sub = (b - SUB_BUCKETS) % SUB_BUCKETS;
        let width = 1u64 << (exp - 5);
        ((SUB_BUCKETS + sub) * width) as f64 + width as f64 / 2.0
    }

    fn record(&mut self, d: Duration) {
        let ns = d.as_nanos().min(u128::from(u64::MAX >> 1)) as u64;
        self.counts[Self::bucket(ns)] += 1;
        self.n += 1;
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.n += other.n;
    }

    /// The `p` quantile in microseconds (NaN when empty).
    fn quantile_us(&self, p: f64) -> f64 {
        if self.n == 0 {
            return f64::NAN;
        }
        let rank = ((self.n as f64 * p).ceil() as u64).clamp(1, self.n);
        let mut seen = 0;
        for (bucket, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Self::value(bucket) / 1000.0;
            }
        }
        f64::NAN
    }
}

/// A run's figures: operations, per second, p50 and p99 in µs.
fn run_json(hist: &Histogram, secs: f64) -> Json {
    json!({
        "ops": hist.n,
        "ops_per_s": hist.n as f64 / secs,
        "p50_us": hist.quantile_us(0.50),
        "p99_us": hist.quantile_us(0.99),
    })
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}

// --- the measuring child -------------------------------------------------------------------

fn measure(m: MeasureArgs) -> Res<()> {
    let n = m.entries;
    let mut out = Map::new();
    // Opens, closes and the writes run here; its workers also drive PostgreSQL's connections
    // while the get threads (each its own current-thread runtime) wait on them.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;

    // Cold: a fresh handle on each run, after the caches were emptied.
    for threads in [1, 2] {
        let restarted = match (&m.pg_restart, m.backend.as_str()) {
            (Some(cmd), "pg") => {
                psql(m.pg_url.as_deref().unwrap(), "CHECKPOINT")?;
                let status = Command::new("sh").args(["-c", cmd]).stdout(Stdio::null()).status()?;
                if !status.success() {
                    return Err(format!("--pg-restart {cmd:?} failed ({status})").into());
                }
                true
            }
            _ => false,
        };
        let dropped = drop_page_cache();
        let kv = open(&rt, &m.db, n)?;
        let hist = get_threads(&kv, threads, (n, m.seed), m.seed ^ 0xc01d, m.seconds)?;
        rt.block_on(kv.close())?;
        let mut fig = run_json(&hist.0, hist.1);
        fig["page_cache_dropped"] = json!(dropped);
        fig["pg_restarted"] = json!(restarted);
        out.insert(format!("get_cold_{threads}t"), fig);
    }

    let kv = open(&rt, &m.db, n)?;

    // Warm: every file of the database read once, then a second of random gets.
    let files = database_files(&m)?;
    let started = Instant::now();
    let mut bytes = 0u64;
    for f in &files {
        bytes += read_through(f).map_err(|e| format!("reading {}: {e}", f.display()))?;
    }
    eprintln!(
        "    warm-up: read {} files ({:.0} MB) in {:.1} s",
        files.len(),
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    get_threads(&kv, 1, (n, m.seed), m.seed ^ 0xface, m.seconds.clamp(0.2, 1.0))?;
    for threads in [1, 2] {
        let (hist, secs) = get_threads(&kv, threads, (n, m.seed), m.seed ^ threads, m.seconds)?;
        out.insert(format!("get_warm_{threads}t"), run_json(&hist, secs));
    }

    // List 1,000 entries of a random full tenant.
    let full_tenants = (n / PER_TENANT).max(1);
    let expect = LIST_LIMIT.min(n as usize);
    let local = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut rng = Rng::new(m.seed ^ 0x1157);
    let mut times = Vec::new();
    let started = Instant::now();
    while times.len() < 5 || started.elapsed().as_secs_f64() < m.seconds {
        let prefix = key!["tenant", tenant_name(rng.below(full_tenants))];
        let t0 = Instant::now();
        let got = local.block_on(count_prefix(&kv, prefix, Some(LIST_LIMIT)))?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
        if got != expect as u64 {
            return Err(format!("list returned {got} entries, expected {expect}").into());
        }
    }
    let passes = times.len();
    out.insert("list_1000".into(), json!({ "passes": passes, "median_ms": median(times) }));

    // Count a random full tenant.
    let mut times = Vec::new();
    let mut counted = 0;
    for _ in 0..COUNT_PASSES {
        let prefix = key!["tenant", tenant_name(rng.below(full_tenants))];
        let t0 = Instant::now();
        counted = local.block_on(count_prefix(&kv, prefix, None))?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    out.insert("count".into(), json!({ "entries": counted, "median_ms": median(times) }));

    // Writes.
    let (hist, secs) = rt.block_on(sets(&kv, n, m.writes, m.seed))?;
    out.insert("set_64".into(), run_json(&hist, secs));
    let (hist, secs, failed) = rt.block_on(check_sets(&kv, n, (m.writes / 10).max(1), m.seed))?;
    let mut fig = run_json(&hist, secs);
    fig["failed_checks"] = json!(failed);
    out.insert("check_set_8".into(), fig);
    rt.block_on(kv.close())?;

    out.insert("rss_kb".into(), json!(vm_hwm_kb()));
    println!("{}", Json::Object(out));
    Ok(())
}

/// Opens the database on `rt`, with a few connections in its pool: on PostgreSQL a connection
/// is driven by a task of the runtime that opened it, and one the get threads' own runtimes
/// opened would die with them.
fn open(rt: &tokio::runtime::Runtime, db: &str, n: u64) -> Res<Kv> {
    rt.block_on(async {
        let kv = OpenOptions::new().open(db).await?;
        let keys: Vec<Key> = (0..4).map(|i| key_of(i % n)).collect();
        for entry in futures::future::join_all(keys.iter().map(|k| kv.get(k))).await {
            entry?;
        }
        Res::Ok(kv)
    })
}

/// Empties the OS page cache (root only): whether it did.
fn drop_page_cache() -> bool {
    Command::new("sync").status().is_ok_and(|s| s.success())
        && std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// This process's peak resident set size, in kB (0 if unreadable).
fn vm_hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// Reads a file to its end (into the OS page cache, not into this process): its size.
fn read_through(path: &Path) -> std::io::Result<u64> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        match file.read(&mut buf)? {
            0 => return Ok(total),
            k => total += k as u64,
        }
    }
}

/// The files holding the database: SQLite's file and WAL; PostgreSQL's relation files of the
/// schema (tables, indexes, TOAST; every 1 GB segment).
fn database_files(m: &MeasureArgs) -> Res<Vec<PathBuf>> {
    if m.backend != "pg" {
        let wal = PathBuf::from(format!("{}-wal", m.db));
        return Ok([PathBuf::from(&m.db), wal].into_iter().filter(|p| p.exists()).collect());
    }
    let url = m.pg_url.as_deref().unwrap();
    let schema = m.schema.as_deref().unwrap();
    let data = PathBuf::from(psql(url, "SHOW data_directory")?);
    let rels = psql(
        url,
        &format!(
            "WITH s AS (SELECT c.oid, c.reltoastrelid FROM pg_class c JOIN pg_namespace n \
             ON n.oid = c.relnamespace WHERE n.nspname = '{schema}') \
             SELECT pg_relation_filepath(oid) FROM s \
             UNION ALL SELECT pg_relation_filepath(reltoastrelid) FROM s WHERE reltoastrelid <> 0 \
             UNION ALL SELECT pg_relation_filepath(i.indexrelid) FROM pg_index i \
             JOIN s ON i.indrelid = s.reltoastrelid"
        ),
    )?;
    let mut files = Vec::new();
    for rel in rels.lines().filter(|l| !l.is_empty()) {
        let base = data.join(rel);
        if base.exists() {
            files.push(base.clone());
        }
        for seg in 1.. {
            let p = PathBuf::from(format!("{}.{seg}", base.display()));
            if !p.exists() {
                break;
            }
            files.push(p);
        }
    }
    Ok(files)
}

/// `threads` threads (each its own current-thread runtime) getting random existing keys (of
/// `n` loaded with `load_seed`; the order from `seed`) for `secs` seconds: every get's latency,
/// and the longest thread's seconds.
fn get_threads(
    kv: &Kv,
    threads: u64,
    (n, load_seed): (u64, u64),
    seed: u64,
    secs: f64,
) -> Res<(Histogram, f64)> {
    let barrier = Barrier::new(threads as usize);
    let results: Vec<Res<(Histogram, f64)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                    let mut rng = Rng::new(seed.wrapping_add(t));
                    let mut hist = Histogram::new();
                    barrier.wait();
                    let start = Instant::now();
                    let limit = Duration::from_secs_f64(secs);
                    rt.block_on(async {
                        loop {
                            let i = rng.below(n);
                            let k = key_of(i);
                            let t0 = Instant::now();
                            let entry = kv.get(&k).await?;
                            let t1 = Instant::now();
                            hist.record(t1 - t0);
                            check_value(entry.map(|e| e.value), load_seed, i)?;
                            if t1 - start >= limit {
                                break;
                            }
                        }
                        Res::Ok(())
                    })?;
                    Ok((hist, start.elapsed().as_secs_f64()))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a get thread panicked")).collect()
    });
    let mut all = Histogram::new();
    let mut longest = 0f64;
    for r in results {
        let (h, secs) = r?;
        all.merge(&h);
        longest = longest.max(secs);
    }
    Ok((all, longest))
}

/// A loaded entry is there and its value has the size it was written with (the check+set
/// rewrites values with the same size).
fn check_value(value: Option<Value>, seed: u64, i: u64) -> Res<()> {
    let len = value_len(seed, i);
    match value {
        // V8: a 2-byte header, the string tag, a varint length, the Latin-1 bytes.
        Some(Value::V8(b)) if b.len() >= len + 3 && b.len() <= len + 6 => Ok(()),
        Some(v) => {
            Err(format!("entry {i}: unexpected value ({} bytes)", v.to_bytes().len()).into())
        }
        None => Err(format!("entry {i} ({}) is missing", key_of(i)).into()),
    }
}

/// Counts a prefix's entries as `openkv count` does (batches of 1,000), up to `limit`.
async fn count_prefix(kv: &Kv, prefix: Key, limit: Option<usize>) -> Res<u64> {
    let mut options = ListOptions::new().batch_size(LIST_LIMIT);
    if let Some(l) = limit {
        options = options.limit(l);
    }
    let mut stream = kv.list(Selector::prefix(prefix), options)?;
    let mut count = 0;
    while let Some(entry) = stream.next().await {
        entry?;
        count += 1;
    }
    Ok(count)
}

/// `writes` sets of new keys by [`SET_TASKS`] tasks.
async fn sets(kv: &Kv, n: u64, writes: u64, seed: u64) -> Res<(Histogram, f64)> {
    let next = Arc::new(AtomicU64::new(0));
    let tenants = n.div_ceil(PER_TENANT);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..SET_TASKS {
        let (kv, next) = (kv.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::new();
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= writes {
                    return Res::Ok(hist);
                }
                let key = new_key(mix(seed ^ k) % tenants, k);
                let value = v8_string(value_of(seed ^ 0x5e75, k));
                let t0 = Instant::now();
                kv.set(&key, value).await?;
                hist.record(t0.elapsed());
            }
        }));
    }
    let mut all = Histogram::new();
    for t in tasks {
        all.merge(&t.await??);
    }
    Ok((all, start.elapsed().as_secs_f64()))
}

/// `ops` × (get a random loaded key, check its versionstamp + set, commit) by
/// [`CHECK_SET_TASKS`] tasks; the values keep their size. Returns the failed checks too (two
/// tasks on one key at once; not retried).
async fn check_sets(kv: &Kv, n: u64, ops: u64, seed: u64) -> Res<(Histogram, f64, u64)> {
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..CHECK_SET_TASKS {
        let (kv, next, failed) = (kv.clone(), next.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::new();
            let mut rng = Rng::new(seed ^ 0xc5 ^ (t << 32));
            while next.fetch_add(1, Ordering::Relaxed) < ops {
                let i = rng.below(n);
                let key = key_of(i);
                let t0 = Instant::now();
                let seen = kv.get(&key).await?.ok_or_else(|| format!("entry {i} is missing"))?;
                // Same length as the loaded value, other letters.
                let mut text = value_of(seed, i);
                text.replace_range(0..1, if text.starts_with('x') { "y" } else { "x" });
                let outcome = kv
                    .atomic()
                    .check(&key, Some(seen.versionstamp))
                    .set(&key, v8_string(text))
                    .commit()
                    .await?;
                hist.record(t0.elapsed());
                if !outcome.is_committed() {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            Res::Ok(hist)
        }));
    }
    let mut all = Histogram::new();
    for t in tasks {
        all.merge(&t.await??);
    }
    Ok((all, start.elapsed().as_secs_f64(), failed.load(Ordering::Relaxed)))
}

/// Runs a query with psql on `url`: its output (unaligned, tuples only), trimmed.
fn psql(url: &str, sql: &str) -> Res<String> {
    let out = Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        // No NOTICEs (DROP SCHEMA … CASCADE lists every table).
        .env("PGOPTIONS", "-c client_min_messages=warning")
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running psql: {e}"))?;
    if !out.status.success() {
        return Err(format!("psql {sql:?} failed ({})", out.status).into());
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

// --- the orchestrating parent --------------------------------------------------------------

/// What the run needs besides the arguments.
struct Settings {
    args: Args,
    openkv: PathBuf,
    time: Option<PathBuf>,
}

/// A child process's run: seconds (spawn to exit), peak RSS in kB, stdout.
struct Ran {
    secs: f64,
    rss_kb: Option<u64>,
    stdout: String,
}

/// Runs `program args` to its end under GNU time (when there is one), timing it.
fn run_timed(s: &Settings, scratch: &Path, program: &Path, args: &[String]) -> Res<Ran> {
    let rss_file = scratch.join("time.out");
    let mut cmd = match &s.time {
        Some(time) => {
            let mut c = Command::new(time);
            c.args(["-f", "%M", "-o"]).arg(&rss_file).arg(program);
            c
        }
        None => Command::new(program),
    };
    cmd.args(args).env("RUST_LOG", "warn").stdout(Stdio::piped()).stderr(Stdio::inherit());
    let started = Instant::now();
    let out = cmd.output().map_err(|e| format!("starting {}: {e}", program.display()))?;
    let secs = started.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(
            format!("{} {} failed ({})", program.display(), args.join(" "), out.status).into()
        );
    }
    let rss_kb = s.time.as_ref().and_then(|_| {
        let text = std::fs::read_to_string(&rss_file).ok()?;
        text.lines().last()?.trim().parse().ok()
    });
    Ok(Ran { secs, rss_kb, stdout: String::from_utf8(out.stdout)? })
}

fn openkv_cli(s: &Settings, scratch: &Path, db: &str, args: &[&str]) -> Res<Ran> {
    let mut all = vec!["--db".to_owned(), db.to_owned()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    run_timed(s, scratch, &s.openkv, &all)
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn run(args: Args) -> Res<()> {
    for b in &args.backends {
        if b != "sqlite" && b != "pg" {
            return Err(format!("unknown backend {b:?} (sqlite, pg)").into());
        }
        if b == "pg" && args.pg_url.is_none() {
            return Err("the pg backend needs --pg-url (or OPENKV_BENCH_POSTGRES_URL)".into());
        }
    }
    if args.seconds <= 0.0 || args.writes == 0 {
        return Err("--seconds and --writes must be positive".into());
    }
    let openkv = openkv_bench::openkv_binary(args.openkv.as_deref())?;
    let time = Some(args.time.clone()).filter(|t| t.is_file());
    if time.is_none() {
        eprintln!("bench-scale: no {}: the child processes' RSS reads n/a", args.time.display());
    }
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new().prefix("openkv-bench-scale-").tempdir_in(&base)?;
    let dir_path = dir.path().to_owned();
    if args.keep {
        // Kept: not removed when `dir` would be dropped.
        let _ = dir.keep();
    }
    let s = Settings { args, openkv, time };
    eprintln!(
        "bench-scale: sizes {}, backends {}, {} s per get run, {} writes; in {}",
        s.args.sizes.iter().map(|z| z.label.as_str()).collect::<Vec<_>>().join(","),
        s.args.backends.join(","),
        s.args.seconds,
        s.args.writes,
        dir_path.display()
    );

    let mut points: Vec<(String, Size, Map<String, Json>)> = Vec::new();
    for size in &s.args.sizes {
        let ndjson = dir_path.join(format!("scale-{}.ndjson", size.label));
        eprintln!("\n==> {} entries: writing {}", size.n, ndjson.display());
        let started = Instant::now();
        write_ndjson(&ndjson, size.n, s.args.seed)?;
        let gen_secs = started.elapsed().as_secs_f64();
        eprintln!("    {:.0} MB in {gen_secs:.1} s", file_len(&ndjson) as f64 / 1e6);
        for backend in &s.args.backends {
            let mut fig = Map::new();
            fig.insert("ndjson_bytes".into(), json!(file_len(&ndjson)));
            let r = SizeRun { s: &s, dir: &dir_path, size, ndjson: &ndjson };
            let result =
                if backend == "pg" { run_pg(&r, &mut fig) } else { run_sqlite(&r, &mut fig) };
            result.map_err(|e| format!("{backend}, {} entries: {e}", size.n))?;
            points.push((backend.clone(), size.clone(), fig));
        }
        if !s.args.keep {
            std::fs::remove_file(&ndjson)?;
        }
    }

    print_report(&s, &points);
    if let Some(path) = &s.args.json {
        let all: Vec<Json> = points
            .iter()
            .map(|(b, z, f)| json!({"backend": b, "size": z.label, "entries": z.n, "figures": f}))
            .collect();
        std::fs::write(path, serde_json::to_string_pretty(&all)?)?;
        eprintln!("figures written to {}", path.display());
    }
    if s.args.keep {
        eprintln!("bench-scale: kept {}", dir_path.display());
    }
    Ok(())
}

/// The import's figures, from its run and its `--json` report.
fn import(
    s: &Settings,
    dir: &Path,
    db: &str,
    ndjson: &Path,
    n: u64,
    fig: &mut Map<String, Json>,
) -> Res<()> {
    wait_for_quiet("bench-scale", s.args.max_wait);
    let ran =
        openkv_cli(s, dir, db, &["import", "-i", path_str(ndjson), "--no-progress", "--json"])?;
    let report: Json = serde_json::from_str(ran.stdout.trim())?;
    if report["written"].as_u64() != Some(n) {
        return Err(format!("the import wrote {} entries, not {n}", report["written"]).into());
    }
    eprintln!(
        "    import: {:.1} s, {:.0} entries/s, peak RSS {}",
        ran.secs,
        n as f64 / ran.secs,
        mb(ran.rss_kb.map(|k| k * 1024))
    );
    fig.insert("import_s".into(), json!(ran.secs));
    fig.insert("import_entries_per_s".into(), json!(n as f64 / ran.secs));
    fig.insert("import_rss_kb".into(), json!(ran.rss_kb));
    Ok(())
}

/// Runs the measuring child on `db`; its figures go into `fig`.
fn measure_child(
    s: &Settings,
    backend: &str,
    db: &str,
    pg: Option<(&str, &str)>,
    n: u64,
    fig: &mut Map<String, Json>,
) -> Res<()> {
    wait_for_quiet("bench-scale", s.args.max_wait);
    let mut args = vec![
        "measure".to_owned(),
        "--backend".into(),
        backend.into(),
        "--db".into(),
        db.into(),
        "--entries".into(),
        n.to_string(),
        "--seconds".into(),
        s.args.seconds.to_string(),
        "--writes".into(),
        s.args.writes.to_string(),
        "--seed".into(),
        s.args.seed.to_string(),
    ];
    if let Some((url, schema)) = pg {
        args.extend(["--pg-url".into(), url.into(), "--schema".into(), schema.into()]);
        if let Some(cmd) = &s.args.pg_restart {
            args.extend(["--pg-restart".into(), cmd.clone()]);
        }
    }
    let started = Instant::now();
    let out = Command::new(std::env::current_exe()?)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("the measuring process failed ({})", out.status).into());
    }
    let text = String::from_utf8(out.stdout)?;
    let figures: Json = serde_json::from_str(text.trim())?;
    let Json::Object(map) = figures else {
        return Err("the measuring process printed no object".into());
    };
    for (k, v) in map {
        fig.insert(k, v);
    }
    eprintln!(
        "    measured in {:.1} s: warm get p99 {:.1} µs (1 thread), peak RSS {}",
        started.elapsed().as_secs_f64(),
        fig["get_warm_1t"]["p99_us"].as_f64().unwrap_or(f64::NAN),
        mb(fig["rss_kb"].as_u64().map(|k| k * 1024))
    );
    Ok(())
}

/// One size on one backend: what its steps need.
struct SizeRun<'a> {
    s: &'a Settings,
    dir: &'a Path,
    size: &'a Size,
    ndjson: &'a Path,
}

/// `openkv --db DB backup|restore FILE`, timed: MB of `measured` (the file copied) per second.
fn timed_copy(
    r: &SizeRun,
    db: &str,
    what: &str,
    file: &Path,
    measured: &Path,
    fig: &mut Map<String, Json>,
) -> Res<()> {
    let ran = openkv_cli(r.s, r.dir, db, &[what, path_str(file)])?;
    let rate = file_len(measured) as f64 / 1e6 / ran.secs;
    eprintln!("    {what}: {:.2} s ({rate:.0} MB/s)", ran.secs);
    fig.insert(format!("{what}_s"), json!(ran.secs));
    fig.insert(format!("{what}_mb_per_s"), json!(rate));
    fig.insert(format!("{what}_rss_kb"), json!(ran.rss_kb));
    Ok(())
}

fn run_sqlite(r: &SizeRun, fig: &mut Map<String, Json>) -> Res<()> {
    let (s, dir, size) = (r.s, r.dir, r.size);
    let db = dir.join(format!("scale-{}.sqlite3", size.label));
    let db_s = path_str(&db).to_owned();
    eprintln!("--> sqlite: {db_s}");
    import(s, dir, &db_s, r.ndjson, size.n, fig)?;

    // On disk, after a checkpoint (the import's close checkpoints already; this makes sure).
    {
        let conn = rusqlite::Connection::open(&db)?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    }
    let wal = PathBuf::from(format!("{db_s}-wal"));
    let on_disk = file_len(&db) + file_len(&wal);
    fig.insert("disk_bytes".into(), json!(on_disk));
    fig.insert("disk_bytes_per_entry".into(), json!(on_disk as f64 / size.n as f64));

    // Backup and restore.
    wait_for_quiet("bench-scale", s.args.max_wait);
    let backup = dir.join(format!("scale-{}.backup.sqlite3", size.label));
    timed_copy(r, &db_s, "backup", &backup, &db, fig)?;
    let restored = dir.join(format!("scale-{}.restored.sqlite3", size.label));
    timed_copy(r, path_str(&restored), "restore", &backup, &backup, fig)?;
    if !s.args.keep {
        std::fs::remove_file(&backup)?;
        std::fs::remove_file(&restored)?;
    }

    measure_child(s, "sqlite", &db_s, None, size.n, fig)?;
    if !s.args.keep {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{db_s}{suffix}"));
        }
    }
    Ok(())
}

fn run_pg(r: &SizeRun, fig: &mut Map<String, Json>) -> Res<()> {
    let (s, size) = (r.s, r.size);
    let base = s.args.pg_url.as_deref().unwrap();
    let schema =
        format!("scale_{}_{}", size.label, &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let sep = if base.contains('?') { '&' } else { '?' };
    let db = format!("{base}{sep}openkv_schema={schema}");
    eprintln!("--> pg: {db}");
    import(s, r.dir, &db, r.ndjson, size.n, fig)?;
    let bytes: u64 = psql(
        base,
        &format!(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = '{schema}' AND c.relkind = 'r'"
        ),
    )?
    .parse()?;
    fig.insert("disk_bytes".into(), json!(bytes));
    fig.insert("disk_bytes_per_entry".into(), json!(bytes as f64 / size.n as f64));
    measure_child(s, "pg", &db, Some((base, &schema)), size.n, fig)?;
    if !s.args.keep {
        psql(base, &format!("DROP SCHEMA {schema} CASCADE"))?;
    }
    Ok(())
}

// --- the report ----------------------------------------------------------------------------

fn mb(bytes: Option<u64>) -> String {
    match bytes {
        Some(b) => format!("{:.0} MB", b as f64 / 1e6),
        None => "n/a".into(),
    }
}

/// A number with thousands separators (no decimals).
fn thousands(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 {
        out.insert(0, '-');
    }
    out
}

/// Two or three significant figures, enough for latencies.
fn short(x: f64) -> String {
    if !x.is_finite() {
        "n/a".into()
    } else if x >= 100.0 {
        thousands(x)
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn num(f: &Map<String, Json>, path: &[&str]) -> f64 {
    let mut v = f.get(path[0]);
    for p in &path[1..] {
        v = v.and_then(|x| x.get(p));
    }
    v.and_then(Json::as_f64).unwrap_or(f64::NAN)
}

/// A get run's cell: p50 / p99 µs, gets/s.
fn get_cell(f: &Map<String, Json>, run: &str) -> String {
    let mut cell = format!(
        "{} / {} µs, {}/s",
        short(num(f, &[run, "p50_us"])),
        short(num(f, &[run, "p99_us"])),
        thousands(num(f, &[run, "ops_per_s"]))
    );
    if run.starts_with("get_cold")
        && f.get(run).and_then(|r| r.get("page_cache_dropped")) == Some(&json!(false))
    {
        cell += " (cache not dropped)";
    }
    cell
}

/// A write row's cell: ops/s (p99 ms).
fn writes_cell(f: &Map<String, Json>, run: &str) -> String {
    let rate = thousands(num(f, &[run, "ops_per_s"]));
    format!("{rate} ({})", short(num(f, &[run, "p99_us"]) / 1e3))
}

/// A copy's cell (`backup`, `restore`): seconds (MB/s); n/a where not measured.
fn copy_cell(f: &Map<String, Json>, what: &str) -> String {
    let secs = format!("{what}_s");
    if !f.contains_key(&secs) {
        return "n/a".into();
    }
    format!("{} ({})", short(num(f, &[&secs])), thousands(num(f, &[&format!("{what}_mb_per_s")])))
}

/// A peak RSS in kB, in MB.
fn rss_cell(f: &Map<String, Json>, field: &str) -> String {
    mb(f.get(field).and_then(Json::as_u64).map(|k| k * 1024))
}

type RowFn = fn(&Map<String, Json>) -> String;

const ROWS: &[(&str, RowFn)] = &[
    ("import, entries/s", |f| {
        let rate = thousands(num(f, &["import_entries_per_s"]));
        format!("{rate} ({} s)", short(num(f, &["import_s"])))
    }),
    ("import, peak RSS", |f| rss_cell(f, "import_rss_kb")),
    ("on disk, MB (B/entry)", |f| {
        let total = thousands(num(f, &["disk_bytes"]) / 1e6);
        format!("{total} ({})", thousands(num(f, &["disk_bytes_per_entry"])))
    }),
    ("backup, s (MB/s)", |f| copy_cell(f, "backup")),
    ("restore, s (MB/s)", |f| copy_cell(f, "restore")),
    ("get cold, 1 thread: p50 / p99, gets/s", |f| get_cell(f, "get_cold_1t")),
    ("get cold, 2 threads", |f| get_cell(f, "get_cold_2t")),
    ("get warm, 1 thread", |f| get_cell(f, "get_warm_1t")),
    ("get warm, 2 threads", |f| get_cell(f, "get_warm_2t")),
    ("list 1,000 entries, ms (median)", |f| short(num(f, &["list_1000", "median_ms"]))),
    ("count of a prefix, ms (entries)", |f| {
        let ms = short(num(f, &["count", "median_ms"]));
        format!("{ms} ({})", thousands(num(f, &["count", "entries"])))
    }),
    ("set, 64 tasks, sets/s (p99 ms)", |f| writes_cell(f, "set_64")),
    ("check+set, 8 tasks, ops/s (p99 ms)", |f| {
        let failed = num(f, &["check_set_8", "failed_checks"]);
        let cell = writes_cell(f, "check_set_8");
        if failed > 0.0 {
            format!("{cell}, {} failed checks", thousands(failed))
        } else {
            cell
        }
    }),
    ("measuring process, peak RSS", |f| rss_cell(f, "rss_kb")),
];

fn print_report(s: &Settings, points: &[(String, Size, Map<String, Json>)]) {
    println!(
        "\nbench-scale: {} s per get run, {} sets, seed {}; {} cores; values 100 B – 4 KiB (mean ≈ 450 B)",
        s.args.seconds,
        s.args.writes,
        s.args.seed,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    for backend in &s.args.backends {
        let cols: Vec<&(String, Size, Map<String, Json>)> =
            points.iter().filter(|p| &p.0 == backend).collect();
        if cols.is_empty() {
            continue;
        }
        let name = if backend == "pg" { "PostgreSQL" } else { "SQLite" };
        println!("\n**{name}**\n");
        let header: Vec<String> =
            cols.iter().map(|c| format!("{} entries", thousands(c.1.n as f64))).collect();
        println!("| metric | {} |", header.join(" | "));
        println!("|---|{}", "---:|".repeat(cols.len()));
        for (label, row) in ROWS {
            let cells: Vec<String> = cols.iter().map(|c| row(&c.2)).collect();
            println!("| {label} | {} |", cells.join(" | "));
        }
        if backend == "pg" {
            let restarted = cols.iter().all(|c| {
                c.2.get("get_cold_1t").and_then(|r| r.get("pg_restarted")) == Some(&json!(true))
            });
            println!(
                "\nCold gets on PostgreSQL: OS page cache dropped{}. The peak RSS rows are the \
                 client process's; PostgreSQL's own memory (shared_buffers: fixed) is not in them.",
                if restarted {
                    ", cluster restarted (shared_buffers empty)"
                } else {
                    "; shared_buffers stay warm (no --pg-restart)"
                }
            );
        }
    }
    print_targets(s, points);
}

fn print_targets(s: &Settings, points: &[(String, Size, Map<String, Json>)]) {
    println!("\nTargets:");
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    for backend in &s.args.backends {
        let cols: Vec<_> = points.iter().filter(|p| &p.0 == backend).collect();
        let (Some(small), Some(large)) = (cols.first(), cols.last()) else { continue };
        let name = if backend == "pg" { "PostgreSQL" } else { "SQLite" };
        if cols.len() > 1 {
            for run in ["get_warm_1t", "get_warm_2t"] {
                let (a, b) = (num(&small.2, &[run, "p99_us"]), num(&large.2, &[run, "p99_us"]));
                println!(
                    "- {name}: get p99 (warm, {} thread{}) at {} ≤ 2 × at {}: {} vs {} µs = {:.2}× — {}",
                    &run[9..10],
                    if run.ends_with("1t") { "" } else { "s" },
                    large.1.label,
                    small.1.label,
                    short(b),
                    short(a),
                    b / a,
                    verdict(b <= 2.0 * a)
                );
            }
            let (a, b) = (num(&small.2, &["rss_kb"]), num(&large.2, &["rss_kb"]));
            println!(
                "- {name}: peak RSS of the measuring process at {} ≤ 1.5 × at {} (bounded by the caches, not the data): {:.0} vs {:.0} MB — {}",
                large.1.label,
                small.1.label,
                b / 1e3,
                a / 1e3,
                verdict(b <= 1.5 * a)
            );
        } else {
            println!("- {name}: get p99 and RSS against size: one size only, nothing to compare");
        }
        if backend == "sqlite" {
            for c in &cols {
                let rate = num(&c.2, &["import_entries_per_s"]);
                println!(
                    "- SQLite: import ≥ 100,000 entries/s at {}: {} — {}",
                    c.1.label,
                    thousands(rate),
                    verdict(rate >= 1e5)
                );
            }
            for c in &cols {
                let rate = num(&c.2, &["backup_mb_per_s"]);
                println!(
                    "- SQLite: backup ≥ 100 MB/s of database file at {}: {} MB/s — {}",
                    c.1.label,
                    thousands(rate),
                    verdict(rate >= 100.0)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_is_a_function_of_the_index_and_the_seed() {
        let mut total = 0usize;
        let mut large = 0;
        for i in 0..20_000 {
            let v = value_of(1, i);
            assert_eq!(v, value_of(1, i));
            assert_eq!(v.len(), value_len(1, i));
            assert!((100..=4096).contains(&v.len()), "value {i}: {} bytes", v.len());
            assert!(v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            total += v.len();
            large += usize::from(v.len() > 400);
        }
        let mean = total as f64 / 20_000.0;
        assert!((400.0..500.0).contains(&mean), "mean value size {mean}");
        assert!((1_500..2_500).contains(&large), "{large} values over 400 B");
        assert_ne!(value_of(1, 7), value_of(2, 7));
        // Key order is index order (the NDJSON is in key order, as an export).
        for i in [0, 9_999, 10_000, 123_456, 9_999_998] {
            assert!(key_of(i).encode().unwrap() < key_of(i + 1).encode().unwrap());
        }
        assert_eq!(key_of(12_345).to_string(), key_of(12_345).to_string());
    }

    #[test]
    fn histogram_quantiles_are_within_two_percent() {
        let mut h = Histogram::new();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.quantile_us(0.5);
        let p99 = h.quantile_us(0.99);
        assert!((p50 / 500.0 - 1.0).abs() < 0.02, "p50 {p50}");
        assert!((p99 / 990.0 - 1.0).abs() < 0.02, "p99 {p99}");
        assert_eq!(Histogram::bucket(5), 5);
        assert!(Histogram::bucket(u64::MAX >> 1) < h.counts.len());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("10k").unwrap().n, 10_000);
        assert_eq!(parse_size("10M").unwrap().n, 10_000_000);
        assert_eq!(parse_size("2500").unwrap().n, 2500);
        assert!(parse_size("0").is_err() && parse_size("ten").is_err());
    }
}
