//! `openkv-bench`: openkv against the disk's fdatasync rate and against Deno CLI's local KV.
//!
//! ```text
//! cargo run --release -p openkv-bench -- [--n N] [--deno PATH] [--dir DIR] [--markdown]
//!                                        [--rounds R] [--only w1,w2] [--no-deno]
//! ```
//!
//! Every workload runs on a real SQLite file, a fresh one per workload, in a temporary
//! directory under `--dir` (default: the system temp directory). In the same run the Deno
//! script `tests/deno/bench_local.ts` measures Deno CLI's own local KV on the same disk (Deno:
//! `--deno`, else `$DENO_BIN`, else `tests/deno/node_modules/.bin/deno`, installed with
//! `npm ci` if missing; without it the Deno columns read n/a). Each openkv row is compared
//! with its like-for-like Deno figure (ratio openkv/Deno). Rows:
//!
//! | row | workload | target |
//! |---|---|---|
//! | `fdatasync` | raw disk: rewrite 4 KiB at offset 0 + `fdatasync`, for ~1 s | (reference) |
//! | `raw_sqlite_commit` | rusqlite alone, same pragmas and table: N one-row durable transactions | (the ceiling of `seq_set`) |
//! | `seq_set` | N sequential awaited `set`s, each a durable commit | ≥ 0.8 × fdatasync |
//! | `concurrent64_set` | 64 tasks (2-worker runtime), N sets in total | ≥ 20 × Deno CLI |
//! | `concurrent64_set_log` | the same with the change log on (`OpenOptions::change_log`) | ≥ 0.9 × `concurrent64_set` |
//! | `get_1t` | point gets of 10k preloaded keys, one thread | ≥ 150k/s |
//! | `get_2t` | the same on two threads | ≥ 1.8 × `get_1t` (0.9 × 2 threads) |
//! | `list_10k` | list a 10k-entry prefix (batch size 1000), ≥ 5 times | ≥ 1M entries/s |
//! | `list_10k_2t` | the same on two threads | ≥ 1.8 × `list_10k` |
//! | `atomic_check_set` | N/4 × (get, check + set, commit) on distinct keys | — |
//! | `sum_hot` | N/4 sequential `sum(["hot"], 1)` | — |
//! | `sum_hot_64` | 64 tasks, N sums on one key in total (final value checked) | — |
//! | `queue_enqueue` | 64 tasks enqueue N messages in total (one commit each) | — |
//! | `queue_deliver` | one `listen_queue` delivers those N messages (handler returns at once) | — |
//! | `watch_notify_p50` / `_p99` | a watcher of one key; 200 sets, each timed from the call to `set` until the watcher has the new value (µs: lower is better) | — |
//! | `v8_decode_1k` / `v8_encode_1k` | the V8 codec on a typical ~1 KiB object, for ~1 s | — |
//!
//! The targets are those of the performance issue: a sequential durable set costs little
//! more than the fdatasync it must wait for; group commit makes 64 concurrent setters at least
//! 20 times faster than Deno CLI's local KV; reads run from SQLite's page cache.
//!
//! The write workloads run a fixed number of operations (N, default 2000, as Deno's script
//! does). Reads are much faster, so `get_*` and `list_10k` run for a fixed time (about one
//! second each, after a warm-up pass) instead. The table says whether each target was met,
//! but nothing here asserts on timings. Disk and scheduling noise from other processes moves
//! the write figures a lot: `--rounds R` runs everything R times (openkv and Deno
//! alternately) and reports medians; `--only` runs some workloads, `--no-deno` skips Deno.

// why: a benchmark tool, not product code; a failed setup or measurement ends the run with a
// panic naming it, which is what this tool should do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::error::Error;
use std::fs::OpenOptions as FileOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Barrier;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use futures::StreamExt;
use openkv::{decode_v8, encode_v8, key, JsValue, Kv, ListOptions, Selector, Value};
use tokio::runtime::{Builder, Runtime};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// How long the time-based workloads (fdatasync, gets, list) measure.
const MEASURE: Duration = Duration::from_secs(1);
/// Keys preloaded for the get and list workloads.
const PRELOAD: usize = 10_000;
/// Sets per atomic operation when preloading.
const PRELOAD_BATCH: usize = 500;
/// Concurrent tasks of the `*_64` workloads.
const TASKS: usize = 64;
/// Timed sets of the watch workload.
const WATCH_SETS: usize = 200;
/// Full passes of `list_10k`, at least.
const MIN_LIST_PASSES: usize = 5;
/// How long Deno's script may run before it is killed.
const DENO_TIMEOUT: Duration = Duration::from_secs(600);

/// Benchmarks openkv against the disk's fdatasync rate and Deno CLI's local KV.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Operations of each write workload (N; `atomic_check_set` and `sum_hot` run N/4).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(64..))]
    n: u64,
    /// The Deno CLI binary [default: tests/deno/node_modules/.bin/deno in the workspace].
    #[arg(long, env = "DENO_BIN")]
    deno: Option<PathBuf>,
    /// Where to create the temporary databases [default: the system temp directory].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print a Markdown table (with date, nproc and CPU model) instead of a plain one.
    #[arg(long)]
    markdown: bool,
    /// Run only these workloads (comma-separated), e.g. `--only seq_set,get_1t`.
    #[arg(long, value_delimiter = ',', value_parser = workload_name)]
    only: Vec<String>,
    /// Do not run Deno CLI (its columns show n/a).
    #[arg(long)]
    no_deno: bool,
    /// Run everything (openkv and Deno alternately) this many times and report medians:
    /// steadier figures on a machine that is doing other work.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    rounds: u64,
}

/// Parses a workload name of `--only`.
fn workload_name(name: &str) -> Result<String, String> {
    if WORKLOADS.iter().any(|w| w.name == name) {
        Ok(name.to_owned())
    } else {
        let names: Vec<_> = WORKLOADS.iter().map(|w| w.name).collect();
        Err(format!("unknown workload; one of {}", names.join(", ")))
    }
}

/// What a row is measured against.
#[derive(Clone, Copy, Debug)]
enum Target {
    None,
    /// At least this fraction of the disk's fdatasync rate.
    OfFsync(f64),
    /// At least this multiple of Deno's figure.
    OfDeno(f64),
    /// At least this many per second.
    Rate(f64),
    /// At least this multiple of another row of the same run (thread scaling).
    OfRow(&'static str, f64),
}

/// Where the Deno column comes from.
#[derive(Clone, Copy, Debug)]
enum DenoKey {
    /// No Deno counterpart.
    None,
    /// This field of the script's JSON line.
    Field(&'static str),
}

/// One workload: its row's name, unit, Deno counterpart and target.
#[derive(Clone, Copy, Debug)]
struct Spec {
    name: &'static str,
    unit: &'static str,
    deno: DenoKey,
    target: Target,
}

const fn spec(name: &'static str, unit: &'static str, deno: DenoKey, target: Target) -> Spec {
    Spec { name, unit, deno, target }
}

/// Every workload, in the order they run and are printed.
const WORKLOADS: [Spec; 18] = [
    spec("fdatasync", "syncs/s", DenoKey::None, Target::None),
    spec("raw_sqlite_commit", "ops/s", DenoKey::None, Target::None),
    spec("seq_set", "ops/s", DenoKey::Field("seq_set_ops"), Target::OfFsync(0.8)),
    spec("concurrent64_set", "ops/s", DenoKey::Field("concurrent64_set_ops"), Target::OfDeno(20.0)),
    spec("concurrent64_set_log", "ops/s", DenoKey::None, Target::None),
    spec("get_1t", "ops/s", DenoKey::Field("get_ops"), Target::Rate(150e3)),
    spec("get_2t", "ops/s", DenoKey::None, Target::OfRow("get_1t", 1.8)),
    spec("list_10k", "entries/s", DenoKey::Field("list_entries_per_s"), Target::Rate(1e6)),
    spec("list_10k_2t", "entries/s", DenoKey::None, Target::OfRow("list_10k", 1.8)),
    spec("atomic_check_set", "ops/s", DenoKey::Field("atomic_check_set_ops"), Target::None),
    spec("sum_hot", "ops/s", DenoKey::Field("sum_hot_ops"), Target::None),
    spec("sum_hot_64", "ops/s", DenoKey::None, Target::None),
    spec("queue_enqueue", "msgs/s", DenoKey::Field("queue_enqueue_msgs"), Target::None),
    spec("queue_deliver", "msgs/s", DenoKey::Field("queue_deliver_msgs"), Target::None),
    spec("watch_notify_p50", "µs", DenoKey::Field("watch_p50_us"), Target::None),
    spec("watch_notify_p99", "µs", DenoKey::Field("watch_p99_us"), Target::None),
    spec("v8_decode_1k", "values/s", DenoKey::None, Target::None),
    spec("v8_encode_1k", "values/s", DenoKey::None, Target::None),
];

/// One measured row.
#[derive(Debug)]
struct Row {
    spec: Spec,
    openkv: f64,
    deno: Option<f64>,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("openkv-bench: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Res<()> {
    let n = args.n as usize;
    let rounds = args.rounds as usize;
    let load = load_average();
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::Builder::new().prefix("openkv-bench-").tempdir_in(&base)?;
    eprintln!("openkv-bench: N = {n}, {rounds} round(s), databases in {}", tmp.path().display());

    let specs: Vec<Spec> = WORKLOADS
        .into_iter()
        .filter(|w| args.only.is_empty() || args.only.iter().any(|o| o == w.name))
        .collect();
    let mut deno = if args.no_deno {
        Err("--no-deno".to_owned())
    } else if !specs.iter().any(|w| matches!(w.deno, DenoKey::Field(_))) {
        Err("no selected workload has a Deno counterpart".to_owned())
    } else {
        deno_binary(&args).map_err(|e| e.to_string())
    };

    let rt = Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut openkv: Vec<Vec<f64>> = vec![Vec::new(); specs.len()];
    let mut deno_runs = Vec::new();
    for round in 1..=rounds {
        if rounds > 1 {
            eprintln!("openkv-bench: round {round} of {rounds}");
        }
        let dir = &tmp.path().join(format!("round{round}"));
        std::fs::create_dir(dir)?;
        let mut gets = None;
        let mut lists = None;
        let mut queue = None;
        let mut watch = None;
        for (spec, results) in specs.iter().zip(&mut openkv) {
            let rate = match spec.name {
                "fdatasync" => bench_fdatasync(&dir.join("fdatasync.bin"))?,
                "raw_sqlite_commit" => bench_raw_sqlite(&dir.join("raw.sqlite3"), n)?,
                "seq_set" => bench_seq_set(&rt, dir, n)?,
                "concurrent64_set" => bench_concurrent_set(&rt, dir, n, false)?,
                "concurrent64_set_log" => bench_concurrent_set(&rt, dir, n, true)?,
                "get_1t" | "get_2t" => {
                    one_of_pair(&mut gets, spec.name == "get_1t", || bench_gets(&rt, dir))?
                }
                "list_10k" | "list_10k_2t" => {
                    one_of_pair(&mut lists, spec.name == "list_10k", || bench_lists(&rt, dir))?
                }
                "atomic_check_set" => bench_atomic_check_set(&rt, dir, n)?,
                "sum_hot" => bench_sum_hot(&rt, dir, n)?,
                "sum_hot_64" => bench_sum_hot_64(&rt, dir, n)?,
                "queue_enqueue" | "queue_deliver" => {
                    one_of_pair(&mut queue, spec.name == "queue_enqueue", || {
                        bench_queue(&rt, dir, n)
                    })?
                }
                "watch_notify_p50" | "watch_notify_p99" => {
                    one_of_pair(&mut watch, spec.name == "watch_notify_p50", || {
                        bench_watch(&rt, dir)
                    })?
                }
                "v8_decode_1k" => bench_v8(false),
                "v8_encode_1k" => bench_v8(true),
                other => unreachable!("workload {other} has no implementation"),
            };
            eprintln!("  {:<18} {} {}", spec.name, fmt_rate(rate), spec.unit);
            results.push(rate);
        }
        if let Ok((bin, _)) = &deno {
            match run_deno(bin, dir, n) {
                Ok(json) => {
                    eprintln!("  Deno CLI: {json}");
                    deno_runs.push(json);
                }
                Err(e) => deno = Err(e.to_string()),
            }
        }
    }
    drop(rt);

    let rows: Vec<Row> = specs
        .iter()
        .zip(&openkv)
        .map(|(&spec, results)| {
            let deno = match spec.deno {
                DenoKey::Field(f) if deno.is_ok() => median(
                    deno_runs.iter().filter_map(|j| j.get(f).and_then(serde_json::Value::as_f64)),
                ),
                _ => None,
            };
            Row { spec, openkv: median(results.iter().copied()).unwrap_or(f64::NAN), deno }
        })
        .collect();
    let deno_note = match &deno {
        Ok((_, version)) => format!("Deno CLI: {version}"),
        Err(e) => {
            eprintln!("openkv-bench: Deno CLI not measured: {e}");
            format!("Deno CLI not measured ({e}): its columns are n/a")
        }
    };
    let fsync = rows.iter().find(|r| r.spec.name == "fdatasync").map(|r| r.openkv);
    let rounds_note =
        if rounds > 1 { format!("median of {rounds} rounds; ") } else { String::new() };
    let header = header(n, &load, &format!("{rounds_note}{deno_note}"));
    let table = Table { rows: &rows, fsync };
    if args.markdown {
        println!("**openkv-bench** — {header}");
        println!();
        print!("{}", table.render(true));
    } else {
        println!("openkv-bench — {header}");
        println!();
        print!("{}", table.render(false));
    }
    if rows.iter().any(|r| r.spec.unit == "µs") {
        println!();
        println!(
            "µs rows are latencies: lower is better (openkv/Deno below 1 means openkv is faster)"
        );
    }
    let seq = rows.iter().find(|r| r.spec.name == "seq_set");
    if let (Some(fsync), Some(seq)) = (fsync, seq) {
        println!();
        println!(
            "disk fdatasync: {} syncs/s; seq_set / fdatasync = {:.2} (target >= 0.8)",
            fmt_rate(fsync),
            seq.openkv / fsync
        );
    }
    let size = encode_v8(&typical_object()).map(|b| b.len()).unwrap_or(0) as f64;
    for name in ["v8_decode_1k", "v8_encode_1k"] {
        if let Some(r) = rows.iter().find(|r| r.spec.name == name) {
            println!(
                "{name}: {}-byte object, {} values/s = {:.0} MB/s",
                size,
                fmt_rate(r.openkv),
                r.openkv * size / 1e6
            );
        }
    }
    let plain = rows.iter().find(|r| r.spec.name == "concurrent64_set");
    let logged = rows.iter().find(|r| r.spec.name == "concurrent64_set_log");
    if let (Some(plain), Some(logged)) = (plain, logged) {
        println!(
            "change log: concurrent64_set_log / concurrent64_set = {:.2} (target >= 0.9)",
            logged.openkv / plain.openkv
        );
    }
    let raw = rows.iter().find(|r| r.spec.name == "raw_sqlite_commit");
    if let (Some(raw), Some(seq)) = (raw, seq) {
        let vs_fsync = fsync.map(|f| format!(", itself {:.2} x fdatasync", raw.openkv / f));
        println!(
            "raw SQLite durable commit: {} commits/s{}; seq_set / raw SQLite = {:.2}",
            fmt_rate(raw.openkv),
            vs_fsync.unwrap_or_default(),
            seq.openkv / raw.openkv
        );
    }
    Ok(())
}

/// The median of some figures; `None` if there are none.
fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => None,
        len if len % 2 == 1 => Some(v[len / 2]),
        len => Some((v[len / 2 - 1] + v[len / 2]) / 2.0),
    }
}

// ---------------------------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------------------------

/// The raw disk: rewrite one 4 KiB block at offset 0 and `fdatasync`, for about [`MEASURE`].
fn bench_fdatasync(path: &Path) -> Res<f64> {
    let file = FileOptions::new().create(true).truncate(true).read(true).write(true).open(path)?;
    let mut block = vec![0xa5u8; 4096];
    // Allocate the block first, so the timed syncs flush data only, as a WAL rewrite does.
    file.write_all_at(&block, 0)?;
    file.sync_all()?;
    let start = Instant::now();
    let mut syncs = 0u64;
    while syncs < 10 || start.elapsed() < MEASURE {
        block[..8].copy_from_slice(&syncs.to_le_bytes());
        file.write_all_at(&block, 0)?;
        file.sync_data()?;
        syncs += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(path)?;
    Ok(syncs as f64 / secs)
}

/// The practical ceiling of `seq_set`: rusqlite alone, the same pragmas (WAL,
/// `synchronous = FULL`) and Deno's `kv` table with its expiry index, one row inserted and the
/// commit counter bumped per transaction, N transactions.
fn bench_raw_sqlite(path: &Path, n: usize) -> Res<f64> {
    let conn = rusqlite::Connection::open(path)?;
    conn.query_row("pragma journal_mode = wal", [], |_| Ok(()))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "create table data_version (k integer primary key, version integer not null);
         insert into data_version values (0, 0);
         create table kv (k blob primary key, v blob not null, v_encoding integer not null,
           version integer not null, seq integer not null default 0,
           expiration_ms integer not null default -1) without rowid;
         create index kv_expiration_ms_idx on kv (expiration_ms);",
    )?;
    let start = Instant::now();
    for i in 0..n {
        conn.execute_batch("begin immediate")?;
        let version: i64 = conn
            .prepare_cached(
                "update data_version set version = version + 1 where k = 0 returning version",
            )?
            .query_row([], |r| r.get(0))?;
        conn.prepare_cached(
            "insert into kv (k, v, v_encoding, version, expiration_ms) values (?, ?, 1, ?, -1)",
        )?
        .execute(rusqlite::params![
            key!["seq", i].encode()?,
            v8_smi(i).to_bytes(),
            version
        ])?;
        conn.execute_batch("commit")?;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    drop(conn);
    Ok(rate)
}

/// N sequential awaited sets, each its own durable commit.
fn bench_seq_set(rt: &Runtime, dir: &Path, n: usize) -> Res<f64> {
    rt.block_on(async {
        let kv = Kv::open(dir.join("seq_set.sqlite3")).await?;
        let start = Instant::now();
        for i in 0..n {
            kv.set(&key!["seq", i], v8_smi(i)).await?;
        }
        let rate = n as f64 / start.elapsed().as_secs_f64();
        kv.close().await?;
        Ok(rate)
    })
}

/// Runs `op(kv, task, i)` from [`TASKS`] tasks, `n` times in total, each task awaiting its
/// own operations one after the other.
async fn in_tasks<F, Fut, T>(kv: &Kv, n: usize, op: F) -> Res<()>
where
    F: Fn(Kv, usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = openkv::Result<T>> + Send,
{
    let tasks = (0..TASKS).map(|w| {
        let (kv, op) = (kv.clone(), op.clone());
        let count = share(n, w);
        tokio::spawn(async move {
            for i in 0..count {
                op(kv.clone(), w, i).await?;
            }
            Ok::<_, openkv::Error>(())
        })
    });
    for done in futures::future::join_all(tasks.collect::<Vec<_>>()).await {
        done??;
    }
    Ok(())
}

/// 64 tasks on the 2-worker runtime, each awaiting its own sets; N sets in total. `log`: with
/// the change log on (what `openkv serve` runs with), to measure its cost.
fn bench_concurrent_set(rt: &Runtime, dir: &Path, n: usize, log: bool) -> Res<f64> {
    rt.block_on(async {
        let name = if log { "concurrent64_set_log.sqlite3" } else { "concurrent64_set.sqlite3" };
        let mut options = openkv::OpenOptions::new();
        if log {
            options = options.change_log(openkv::changelog::LogRetention::default());
        }
        let kv = options.open(dir.join(name)).await?;
        let start = Instant::now();
        in_tasks(&kv, n, move |kv, w, i| async move { kv.set(&key!["c", w, i], v8_smi(i)).await })
            .await?;
        let rate = n as f64 / start.elapsed().as_secs_f64();
        kv.close().await?;
        Ok(rate)
    })
}

/// Queue throughput: [`TASKS`] tasks enqueue `n` messages (one commit each), then one
/// listener delivers them all; every message is checked to arrive (at least) once.
fn bench_queue(rt: &Runtime, dir: &Path, n: usize) -> Res<(f64, f64)> {
    rt.block_on(async {
        let kv = Kv::open(dir.join("queue.sqlite3")).await?;
        let start = Instant::now();
        in_tasks(&kv, n, move |kv, w, i| async move {
            kv.enqueue(v8_smi(w * n + i), &openkv::EnqueueOptions::new()).await
        })
        .await?;
        let enqueued = n as f64 / start.elapsed().as_secs_f64();

        let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        let (all_tx, mut all_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let start = Instant::now();
        let log = seen.clone();
        let listener = tokio::spawn(kv.clone().listen_queue(move |message| {
            let (log, all_tx) = (log.clone(), all_tx.clone());
            async move {
                let mut seen = log.lock().unwrap_or_else(|e| e.into_inner());
                seen.insert(message.id);
                if seen.len() == n {
                    let _ = all_tx.send(());
                }
                Ok::<(), String>(())
            }
        }));
        tokio::time::timeout(Duration::from_secs(300), all_rx.recv())
            .await
            .map_err(|_| "the queue did not deliver every message within 300 s")?;
        let delivered = n as f64 / start.elapsed().as_secs_f64();
        kv.close().await?;
        listener.await??;
        Ok((enqueued, delivered))
    })
}

/// Watch notification latency: one watcher on `["w"]`; each of [`WATCH_SETS`] sets is timed
/// from the call to `set` until the watcher yields the new value. Returns (p50, p99) in µs.
fn bench_watch(rt: &Runtime, dir: &Path) -> Res<(f64, f64)> {
    rt.block_on(async {
        let kv = Kv::open(dir.join("watch.sqlite3")).await?;
        let mut watch = kv.watch(&[key!["w"]])?;
        watch.next().await.ok_or("the watch ended")??;
        let mut micros = Vec::with_capacity(WATCH_SETS);
        for i in 0..WATCH_SETS {
            let start = Instant::now();
            let value = v8_smi(i);
            kv.set(&key!["w"], value.clone()).await?;
            loop {
                let snapshot = watch.next().await.ok_or("the watch ended")??;
                if snapshot[0].as_ref().map(|e| &e.value) == Some(&value) {
                    break;
                }
            }
            micros.push(start.elapsed().as_secs_f64() * 1e6);
        }
        kv.close().await?;
        micros.sort_by(f64::total_cmp);
        let at = |q: f64| micros[((micros.len() as f64 * q) as usize).min(micros.len() - 1)];
        Ok((at(0.5), at(0.99)))
    })
}

/// Point gets of [`PRELOAD`] existing keys, on one thread, then on two.
fn bench_gets(rt: &Runtime, dir: &Path) -> Res<(f64, f64)> {
    one_and_two_threads(rt, dir, "get", |kv, t, barrier| get_loop(kv, t * PRELOAD / 2, barrier))
}

/// `list_10k` and `list_10k_2t`: entries per second listed on one thread, then on two.
fn bench_lists(rt: &Runtime, dir: &Path) -> Res<(f64, f64)> {
    one_and_two_threads(rt, dir, "list", |kv, _, barrier| list_loop(kv, barrier))
}

/// Preloads a fresh database `<what>.sqlite3`, runs `work` on this thread, then on two threads
/// started together (each with its own current-thread runtime); `work(kv, thread, barrier)`
/// returns (operations, seconds). Returns the rates (one thread, two threads).
fn one_and_two_threads(
    rt: &Runtime,
    dir: &Path,
    what: &str,
    work: impl Fn(&Kv, usize, Option<&Barrier>) -> Res<(u64, f64)> + Sync,
) -> Res<(f64, f64)> {
    let kv = rt.block_on(async {
        let kv = Kv::open(dir.join(format!("{what}.sqlite3"))).await?;
        preload(&kv, what).await?;
        Ok::<_, openkv::Error>(kv)
    })?;

    let (ops, secs) = work(&kv, 0, None)?;
    let one = ops as f64 / secs;

    let barrier = Barrier::new(2);
    let results: Vec<Res<(u64, f64)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let (kv, barrier, work) = (&kv, &barrier, &work);
                s.spawn(move || work(kv, t, Some(barrier)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("worker thread panicked")).collect()
    });
    let mut total = 0;
    let mut longest = 0f64;
    for r in results {
        let (ops, secs) = r?;
        total += ops;
        longest = longest.max(secs);
    }
    let two = total as f64 / longest;
    rt.block_on(kv.close())?;
    Ok((one, two))
}

/// One figure of a workload that measures two at once (`first`: the first of the pair),
/// measured on the first call and kept in `cache` for the other row.
fn one_of_pair(
    cache: &mut Option<(f64, f64)>,
    first: bool,
    measure: impl FnOnce() -> Res<(f64, f64)>,
) -> Res<f64> {
    let (a, b) = match *cache {
        Some(pair) => pair,
        None => *cache.insert(measure()?),
    };
    Ok(if first { a } else { b })
}

/// One thread's gets: a warm-up pass over every key, then gets for [`MEASURE`].
/// Returns (gets, seconds).
fn get_loop(kv: &Kv, offset: usize, barrier: Option<&Barrier>) -> Res<(u64, f64)> {
    let rt = Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        // Visits every key in a scattered order (7919 is prime, so coprime with PRELOAD).
        let key_at = |i: usize| key!["get", (offset + i * 7919) % PRELOAD];
        for i in 0..PRELOAD {
            kv.get(&key_at(i)).await?.ok_or("a preloaded key is missing")?;
        }
        if let Some(b) = barrier {
            b.wait();
        }
        let start = Instant::now();
        let mut ops = 0u64;
        let mut i = 0;
        while start.elapsed() < MEASURE {
            for _ in 0..256 {
                kv.get(&key_at(i)).await?.ok_or("a preloaded key is missing")?;
                i += 1;
            }
            ops += 256;
        }
        Ok((ops, start.elapsed().as_secs_f64()))
    })
}

/// Lists all [`PRELOAD`] entries of a prefix (batch size 1000), at least
/// [`MIN_LIST_PASSES`] times and for at least [`MEASURE`], after a warm-up pass.
/// One thread's lists of the whole preloaded prefix: one pass to warm up, then passes for at
/// least [`MEASURE`] and [`MIN_LIST_PASSES`]. Returns (entries, seconds).
fn list_loop(kv: &Kv, barrier: Option<&Barrier>) -> Res<(u64, f64)> {
    let local = Builder::new_current_thread().enable_all().build()?;
    local.block_on(async {
        let pass = || async {
            let options = ListOptions::new().batch_size(1000);
            let mut entries = kv.list(Selector::prefix(key!["list"]), options)?;
            let mut count = 0u64;
            while let Some(entry) = entries.next().await {
                entry?;
                count += 1;
            }
            if count != PRELOAD as u64 {
                return Err(format!("list returned {count} entries, expected {PRELOAD}").into());
            }
            Res::Ok(count)
        };
        pass().await?;
        if let Some(b) = barrier {
            b.wait();
        }
        let start = Instant::now();
        let mut total = 0;
        let mut passes = 0;
        while passes < MIN_LIST_PASSES || start.elapsed() < MEASURE {
            total += pass().await?;
            passes += 1;
        }
        Res::Ok((total, start.elapsed().as_secs_f64()))
    })
}

/// N/4 × (get, `check(key, versionstamp read)` + set, commit) on distinct keys, sequentially:
/// Deno's script, where every key is new, so the check is "the key does not exist".
fn bench_atomic_check_set(rt: &Runtime, dir: &Path, n: usize) -> Res<f64> {
    let quarter = (n / 4).max(1);
    rt.block_on(async {
        let kv = Kv::open(dir.join("atomic_check_set.sqlite3")).await?;
        let start = Instant::now();
        for i in 0..quarter {
            let k = key!["acs", i];
            let seen = kv.get(&k).await?.map(|e| e.versionstamp);
            let outcome = kv.atomic().check(&k, seen).set(&k, v8_smi(i)).commit().await?;
            if !outcome.is_committed() {
                return Err(format!("check + set of {k} failed its check").into());
            }
        }
        let rate = quarter as f64 / start.elapsed().as_secs_f64();
        kv.close().await?;
        Res::Ok(rate)
    })
}

/// N/4 sequential `sum(["hot"], 1)` commits.
fn bench_sum_hot(rt: &Runtime, dir: &Path, n: usize) -> Res<f64> {
    let quarter = (n / 4).max(1);
    rt.block_on(async {
        let kv = Kv::open(dir.join("sum_hot.sqlite3")).await?;
        let hot = key!["hot"];
        let start = Instant::now();
        for _ in 0..quarter {
            kv.atomic().sum(&hot, 1).commit().await?;
        }
        let rate = quarter as f64 / start.elapsed().as_secs_f64();
        check_counter(&kv, quarter).await?;
        kv.close().await?;
        Ok(rate)
    })
}

/// 64 tasks summing into one key, N sums in total; the final value must be N.
/// A typical stored object of about 1 KiB: a user record with nested data, as a JS app
/// would keep it.
fn typical_object() -> JsValue {
    let tags = JsValue::array(["admin", "beta", "eu-west", "newsletter"].map(JsValue::from));
    let scores = JsValue::array((0..24).map(|i| JsValue::Number(f64::from(i) * 1.25)));
    let history = JsValue::array((0..6).map(|i| {
        JsValue::object([
            ("at", JsValue::Date(1.7e12 + f64::from(i) * 86_400_000.0)),
            ("action", JsValue::from(format!("login from device {i}"))),
            ("ok", JsValue::Bool(i % 3 != 0)),
        ])
    }));
    JsValue::object([
        ("id", JsValue::Number(123_456.0)),
        ("name", JsValue::from("Ada Lovelace")),
        ("email", JsValue::from("ada@example.com")),
        ("bio", JsValue::from("Mathematician; wrote the first published algorithm ✓")),
        ("tags", tags),
        ("scores", scores),
        ("balance", JsValue::BigInt(123_456_789_012_345_678u64.into())),
        ("created", JsValue::Date(1.6e12)),
        ("avatar", JsValue::uint8_array((0u8..=127).collect())),
        ("history", history),
        (
            "settings",
            JsValue::object([
                ("theme", JsValue::from("dark")),
                ("lang", JsValue::from("en-GB")),
                ("notifications", JsValue::Bool(true)),
                ("timezone", JsValue::from("Europe/London")),
            ]),
        ),
    ])
}

/// V8 codec throughput on [`typical_object`]: values per second, decoding or encoding, for
/// about [`MEASURE`]. The summary line turns it into MB/s.
fn bench_v8(encode: bool) -> f64 {
    let value = typical_object();
    let bytes = encode_v8(&value).expect("the object encodes");
    let start = Instant::now();
    let mut n = 0u64;
    while n < 1000 || start.elapsed() < MEASURE {
        for _ in 0..100 {
            if encode {
                std::hint::black_box(encode_v8(std::hint::black_box(&value)).expect("encodes"));
            } else {
                std::hint::black_box(decode_v8(std::hint::black_box(&bytes)).expect("decodes"));
            }
        }
        n += 100;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn bench_sum_hot_64(rt: &Runtime, dir: &Path, n: usize) -> Res<f64> {
    rt.block_on(async {
        let kv = Kv::open(dir.join("sum_hot_64.sqlite3")).await?;
        let start = Instant::now();
        let tasks = (0..TASKS).map(|w| {
            let kv = kv.clone();
            let count = share(n, w);
            tokio::spawn(async move {
                let hot = key!["hot"];
                for _ in 0..count {
                    kv.atomic().sum(&hot, 1).commit().await?;
                }
                Ok::<_, openkv::Error>(())
            })
        });
        for done in futures::future::join_all(tasks.collect::<Vec<_>>()).await {
            done??;
        }
        let rate = n as f64 / start.elapsed().as_secs_f64();
        check_counter(&kv, n).await?;
        kv.close().await?;
        Ok(rate)
    })
}

/// Writes [`PRELOAD`] keys `[prefix, i]`, [`PRELOAD_BATCH`] per atomic operation.
async fn preload(kv: &Kv, prefix: &str) -> openkv::Result<()> {
    for first in (0..PRELOAD).step_by(PRELOAD_BATCH) {
        let mut op = kv.atomic();
        for i in first..(first + PRELOAD_BATCH).min(PRELOAD) {
            op = op.set(&key![prefix, i], v8_smi(i));
        }
        op.commit().await?;
    }
    Ok(())
}

/// Fails unless `["hot"]` holds the `KvU64` `expected`.
async fn check_counter(kv: &Kv, expected: usize) -> Res<()> {
    let value = kv.get(&key!["hot"]).await?.map(|e| e.value);
    if value != Some(Value::U64(expected as u64)) {
        return Err(format!("[\"hot\"] is {value:?} after {expected} sums of 1").into());
    }
    Ok(())
}

/// Worker `w`'s share of `n` operations split over [`TASKS`] workers (as Deno's script).
fn share(n: usize, w: usize) -> usize {
    n / TASKS + usize::from(w < n % TASKS)
}

/// `i` as V8 serializes a small integer (what Deno stores for `kv.set(key, i)`): header
/// `FF 0F`, tag `I`, zigzag varint.
fn v8_smi(i: usize) -> Value {
    let n = i as i32;
    let mut zigzag = ((n << 1) ^ (n >> 31)) as u32;
    let mut bytes = vec![0xff, 0x0f, b'I'];
    loop {
        let low = (zigzag & 0x7f) as u8;
        zigzag >>= 7;
        if zigzag == 0 {
            bytes.push(low);
            break;
        }
        bytes.push(low | 0x80);
    }
    Value::V8(bytes)
}

// ---------------------------------------------------------------------------------------------
// Deno
// ---------------------------------------------------------------------------------------------

/// The workspace root (this crate is `crates/openkv-bench`).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Finds the Deno binary: `--deno`, else `DENO_BIN`, else the pinned one in `tests/deno`
/// (installed with `npm ci` if missing). Returns it with its version line.
fn deno_binary(args: &Args) -> Res<(PathBuf, String)> {
    let deno = match &args.deno {
        Some(path) => path.clone(),
        None => pinned_deno()?,
    };
    let version = Command::new(&deno)
        .arg("--version")
        .output()
        .map_err(|e| format!("could not run {}: {e}", deno.display()))?;
    if !version.status.success() {
        return Err(format!("`{} --version` failed ({})", deno.display(), version.status).into());
    }
    let version = String::from_utf8_lossy(&version.stdout);
    let version = version.lines().next().unwrap_or("deno (unknown version)").to_owned();
    Ok((deno, version))
}

/// `tests/deno/node_modules/.bin/deno`, running `npm ci --prefix tests/deno` if it is missing.
fn pinned_deno() -> Res<PathBuf> {
    let deno_dir = workspace_root().join("tests/deno");
    let pinned = deno_dir.join("node_modules/.bin/deno");
    if !pinned.exists() {
        eprintln!("openkv-bench: installing the pinned Deno CLI (npm ci --prefix tests/deno)");
        let status = Command::new("npm")
            .arg("ci")
            .arg("--prefix")
            .arg(&deno_dir)
            .args(["--no-audit", "--no-fund", "--loglevel=error"])
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("{} is missing and npm could not run: {e}", pinned.display()))?;
        if !status.success() || !pinned.exists() {
            return Err(
                format!("{} is missing and `npm ci` failed ({status})", pinned.display()).into()
            );
        }
    }
    Ok(pinned)
}

/// Runs `tests/deno/bench_local.ts` on a fresh database in `dir`; returns its JSON line.
fn run_deno(deno: &Path, dir: &Path, n: usize) -> Res<serde_json::Value> {
    let script = workspace_root().join("tests/deno/bench_local.ts");
    let out_path = dir.join("deno.out");
    let mut child = Command::new(deno)
        .args(["run", "-A", "--unstable-kv"])
        .arg(&script)
        .arg(dir.join("deno.sqlite3"))
        .arg(n.to_string())
        .env("DENO_NO_UPDATE_CHECK", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path)?)
        .spawn()
        .map_err(|e| format!("could not run {}: {e}", deno.display()))?;
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > DENO_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("bench_local.ts ran longer than {DENO_TIMEOUT:?}").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if !status.success() {
        return Err(format!("bench_local.ts failed ({status})").into());
    }
    let out = std::fs::read_to_string(&out_path)?;
    let line = out
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or("bench_local.ts printed no JSON line")?;
    Ok(serde_json::from_str(line)?)
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

struct Table<'a> {
    rows: &'a [Row],
    /// The disk's rate, if measured.
    fsync: Option<f64>,
}

impl Table<'_> {
    fn render(&self, markdown: bool) -> String {
        let header = ["workload", "openkv", "Deno CLI", "openkv/Deno", "unit", "target", "met"];
        let mut cells: Vec<[String; 7]> = vec![header.map(String::from)];
        for r in self.rows {
            let deno = match (r.spec.deno, r.deno) {
                (DenoKey::None, _) => "-".to_owned(),
                (_, Some(d)) => fmt_rate(d),
                (_, None) => "n/a".to_owned(),
            };
            let ratio = match r.deno {
                Some(d) if d > 0.0 => format!("{:.2}x", r.openkv / d),
                _ if matches!(r.spec.deno, DenoKey::None) => "-".to_owned(),
                _ => "n/a".to_owned(),
            };
            let (target, met) = self.target(r);
            cells.push([
                r.spec.name.to_owned(),
                fmt_rate(r.openkv),
                deno,
                ratio,
                r.spec.unit.to_owned(),
                target,
                met,
            ]);
        }
        let mut widths = [0; 7];
        for row in &cells {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        // Numbers right-aligned, words left-aligned.
        let right = [false, true, true, true, false, false, false];
        let mut out = String::new();
        for (i, row) in cells.iter().enumerate() {
            let padded: Vec<String> = row
                .iter()
                .zip(widths)
                .zip(right)
                .map(|((c, w), r)| if r { format!("{c:>w$}") } else { format!("{c:<w$}") })
                .collect();
            if markdown {
                out += &format!("| {} |\n", padded.join(" | "));
                if i == 0 {
                    let rule: Vec<String> =
                        widths
                            .iter()
                            .zip(right)
                            .map(|(&w, r)| {
                                if r {
                                    format!("{}:", "-".repeat(w + 1))
                                } else {
                                    "-".repeat(w + 2)
                                }
                            })
                            .collect();
                    out += &format!("|{}|\n", rule.join("|"));
                }
            } else {
                out += padded.join("  ").trim_end();
                out.push('\n');
                if i == 0 {
                    let len = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
                    out += &"-".repeat(len);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// The target's text and whether it was met: "yes", `"NO: <what was reached>"`, "n/a", or
    /// nothing for a row without a target.
    fn target(&self, r: &Row) -> (String, String) {
        match r.spec.target {
            Target::None => (String::new(), String::new()),
            Target::OfFsync(f) => {
                (format!(">= {f}x fdatasync"), relative(r.openkv, self.fsync, f, "fdatasync"))
            }
            Target::OfDeno(f) => (format!(">= {f}x Deno"), relative(r.openkv, r.deno, f, "Deno")),
            Target::OfRow(name, f) => {
                let base = self.rows.iter().find(|o| o.spec.name == name).map(|o| o.openkv);
                (format!(">= {f}x {name}"), relative(r.openkv, base, f, name))
            }
            Target::Rate(x) => {
                let met = if r.openkv >= x {
                    "yes".to_owned()
                } else {
                    format!("NO: {:.0}% of target", 100.0 * r.openkv / x)
                };
                (format!(">= {}/s", fmt_si(x)), met)
            }
        }
    }
}

/// Whether `value` is at least `multiple` times `base` ("n/a" without a base).
fn relative(value: f64, base: Option<f64>, multiple: f64, name: &str) -> String {
    match base {
        None => "n/a".to_owned(),
        Some(b) if value >= multiple * b => "yes".to_owned(),
        Some(b) => format!("NO: {:.2}x {name}", value / b),
    }
}

/// The header line: date (UTC), nproc, CPU model, the load average when the run started
/// (other processes skew the figures, the disk's especially), N and Deno's version.
fn header(n: usize, load: &str, deno_note: &str) -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!(
        "{y:04}-{m:02}-{d:02}, nproc {nproc}, {cpu}, load average {load} at start; \
         N = {n}; {deno_note}"
    )
}

/// The 1-minute load average, from `/proc/loadavg`.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A rate with thousands separators (one decimal below 100).
fn fmt_rate(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".to_owned();
    }
    if x < 100.0 {
        return format!("{x:.1}");
    }
    let digits = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// 150000 → "150k", 1000000 → "1M".
fn fmt_si(x: f64) -> String {
    if x >= 1e6 {
        format!("{}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{}k", x / 1e3)
    } else {
        format!("{x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
    }

    #[test]
    fn numbers() {
        assert_eq!(fmt_rate(1234567.4), "1,234,567");
        assert_eq!(fmt_rate(123.0), "123");
        assert_eq!(fmt_rate(12.34), "12.3");
        assert_eq!(fmt_si(150e3), "150k");
        assert_eq!(fmt_si(1e6), "1M");
    }

    #[test]
    fn v8_small_integers() {
        assert_eq!(v8_smi(0), Value::V8(vec![0xff, 0x0f, b'I', 0]));
        assert_eq!(v8_smi(1), Value::V8(vec![0xff, 0x0f, b'I', 2]));
        assert_eq!(v8_smi(100), Value::V8(vec![0xff, 0x0f, b'I', 0xc8, 0x01]));
    }

    #[test]
    fn shares_add_up() {
        for n in [64, 100, 2000, 2001] {
            assert_eq!((0..TASKS).map(|w| share(n, w)).sum::<usize>(), n);
        }
    }
}
