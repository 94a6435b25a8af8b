//! `bench-replica`: read replicas and the change log of `openkv serve`, measured with Rust KV
//! Connect clients on this machine.
//!
//! ```text
//! bench-replica [--openkv PATH] [--quick] [--rounds R] [--seconds S] [--warmup S]
//!               [--apply-n N] [--read-keys K] [--clients C] [--pollers P] [--dir DIR]
//!               [--keep] [--json FILE] [--max-wait S] [--pid-file FILE] [--command-line TEXT]
//! ```
//!
//! `scripts/bench-replica.sh` builds everything and runs this. Every round starts from fresh
//! SQLite files in a temporary directory; the servers are `openkv serve` processes, the clients
//! are tasks of this process (a 2-worker runtime), one `Kv` handle — hence one connection —
//! per task. One round, in this order:
//!
//! 1. A primary (change log on, the default) and a replica (`--replica-of`) on fresh files;
//!    K keys `["r", i]` (~100-byte values) are written and the replica catches up.
//! 2. **Replication lag**: C (64) writers, each doing sequential `set`s of its own key
//!    `["w", i]` on the primary for the warm-up + S seconds. P pollers (2) sample commits
//!    acknowledged in the measured window: an idle poller takes the next acknowledged commit,
//!    then reads the key eventually on the replica (back to back, 1 ms apart) until the
//!    versionstamp it reads is at least the acknowledged one. Lag = acknowledgement → the
//!    return of that read: an upper bound, by up to one read and one pause.
//! 3. The replica is killed (SIGKILL). **Eventual reads, primary alone**: C readers doing
//!    `get_with(Eventual)` of random `["r", i]` against the primary.
//! 4. **Apply rate**: with the replica down, N entries `["a", round, i]` are written to the
//!    primary in atomic writes of 1,000 sets (4 writers at once); the replica is restarted on
//!    its file and port, and timed from the spawn until its status `version` reaches the
//!    primary's head (polled every 5 ms): N entries ÷ that time.
//! 5. **Eventual reads, replica**: the same readers, opened at the replica's URL, whose
//!    metadata lists itself as the eventual endpoint (checked: its `readsLocal` counts them).
//! 6. **Bootstrap rate**: the replica is stopped; a fresh replica file is started against the
//!    primary (K + C + N entries) and timed from the spawn until `bootstraps == 1` and its
//!    `version` is the primary's head: entries ÷ that time.
//! 7. **Change-log cost**: `concurrent64_set` — C tasks, each doing sequential sets of fresh
//!    keys — against a fresh `openkv serve` with the change log on (default) and a fresh one
//!    with `--log-retention off`. Both run at once but take turns, in slices of about a second
//!    (A B B A A B …; who starts alternates by round), S seconds each: one server after the
//!    other for S seconds each varied by far more than 10% on this shared VM.
//!
//! Throughput counts the operations that started after the warm-up and ended within the
//! measured seconds. The report is the median of the rounds, each round's figure, and the
//! targets of the replication issue: lag p99 ≤ 100 ms under 64 writers, apply ≥ 50,000
//! entries/s, the change log costing ≤ 10% of `concurrent64_set`. Nothing asserts timings.
//!
//! Replica status comes from `POST /v2/openkv/replication/status` (plain HTTP/1.1 here).
//! `--pid-file` keeps the pids of the running servers in a file (rewritten as they come and
//! go), so that the calling script can stop them if this process is killed.

// why: a benchmark tool, not product code; a failed setup or measurement ends the run with a
// panic naming it, which is what this tool should do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use openkv::{key, Consistency, Key, Kv, KvU64, OpenOptions, Value, Versionstamp};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::oneshot;

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

const TOKEN: &str = "bench-replica-token-0123456789";
/// Sets per atomic write when preloading and filling.
const BATCH: usize = 1000;
/// Concurrent atomic writes when filling the primary for the apply measurement.
const FILL_TASKS: usize = 4;
/// Pause between two eventual reads of a lag poller.
const POLL_PAUSE: Duration = Duration::from_millis(1);
/// How often the replica's status is asked for while timing an apply or a bootstrap.
const STATUS_EVERY: Duration = Duration::from_millis(5);
/// Longest wait for a replica to catch up (or a sampled commit to show up) before failing.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(600);
/// Bytes of every preloaded / filled value.
const VALUE_BYTES: usize = 100;

#[derive(Parser, Debug)]
#[command(about = "openkv serve: replication lag, replica apply and bootstrap rates, eventual \
                   reads on a replica, and the cost of the change log")]
struct Args {
    /// The openkv binary (default: `openkv` next to this program).
    #[arg(long)]
    openkv: Option<PathBuf>,
    /// A fast smoke run (about a minute): defaults become 2 rounds, 2 s (+0.5 s warm-up) per
    /// timed workload, 20,000 applied entries, 2,000 read keys, --max-wait 10. Options given
    /// explicitly still win.
    #[arg(long)]
    quick: bool,
    /// Rounds; the report gives each metric's median [default: 3; --quick: 2].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    rounds: Option<u64>,
    /// Measured seconds of each timed workload (lag, reads, sets) [default: 10; --quick: 2].
    #[arg(long)]
    seconds: Option<f64>,
    /// Warm-up seconds before each timed workload [default: 1; --quick: 0.5].
    #[arg(long)]
    warmup: Option<f64>,
    /// Entries written while the replica is down, then applied [default: 200000; --quick:
    /// 20000].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1000..))]
    apply_n: Option<u64>,
    /// Keys the readers read (written first) [default: 10000; --quick: 2000].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    read_keys: Option<u64>,
    /// Concurrent writers (lag, concurrent64_set) and readers.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    clients: u64,
    /// Lag pollers (each follows one sampled commit at a time).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    pollers: u64,
    /// Where the temporary directory (databases, server logs) goes.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep that directory.
    #[arg(long)]
    keep: bool,
    /// Also write every figure as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Before each round, wait up to this many seconds (0: don't) for the rest of the machine
    /// to quiet down (under 20% of one core busy over one second): this VM is shared
    /// [default: 300; --quick: 10].
    #[arg(long)]
    max_wait: Option<u64>,
    /// Keep the pids of the running servers in this file (one a line).
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// The command line to print with the report (default: this program's own).
    #[arg(long)]
    command_line: Option<String>,
}

/// The settings in force (`Args` with the `--quick` or normal defaults filled in).
#[derive(Clone, Debug)]
struct Settings {
    openkv: PathBuf,
    rounds: u64,
    seconds: f64,
    warmup: f64,
    apply_n: u64,
    read_keys: u64,
    clients: usize,
    pollers: usize,
    max_wait: u64,
}

/// One round's figures.
#[derive(Clone, Debug, Default)]
struct Round {
    lag_p50_ms: f64,
    lag_p99_ms: f64,
    lag_max_ms: f64,
    lag_samples: usize,
    lag_writes_per_s: f64,
    reads_primary: f64,
    reads_replica: f64,
    apply_entries_per_s: f64,
    apply_secs: f64,
    apply_records: u64,
    fill_entries_per_s: f64,
    bootstrap_entries_per_s: f64,
    bootstrap_secs: f64,
    bootstrap_entries: u64,
    set_log_on: f64,
    set_log_off: f64,
    errors: u64,
}

impl Round {
    fn log_ratio(&self) -> f64 {
        self.set_log_on / self.set_log_off
    }
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("bench-replica: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Res<()> {
    let q = args.quick;
    let openkv = openkv_bench::openkv_binary(args.openkv.as_deref())?;
    let settings = Settings {
        openkv,
        rounds: args.rounds.unwrap_or(if q { 2 } else { 3 }),
        seconds: args.seconds.unwrap_or(if q { 2.0 } else { 10.0 }),
        warmup: args.warmup.unwrap_or(if q { 0.5 } else { 1.0 }),
        apply_n: args.apply_n.unwrap_or(if q { 20_000 } else { 200_000 }),
        read_keys: args.read_keys.unwrap_or(if q { 2_000 } else { 10_000 }),
        clients: args.clients as usize,
        pollers: args.pollers as usize,
        max_wait: args.max_wait.unwrap_or(if q { 10 } else { 300 }),
    };
    if !(settings.seconds > 0.0 && settings.warmup >= 0.0) {
        return Err("--seconds must be positive and --warmup not negative".into());
    }
    *PID_FILE.lock().unwrap() = args.pid_file.clone();
    let tmp = match &args.dir {
        Some(d) => tempfile::Builder::new().prefix("bench-replica.").tempdir_in(d)?,
        None => tempfile::Builder::new().prefix("bench-replica.").tempdir()?,
    };
    let command_line = args
        .command_line
        .clone()
        .unwrap_or_else(|| std::env::args().map(|a| shell_quote(&a)).collect::<Vec<_>>().join(" "));
    eprintln!(
        "bench-replica: {} round(s); {} s (+{} s warm-up) per timed workload; {} clients; \
         {} applied entries; {} read keys; openkv {}; files in {}",
        settings.rounds,
        settings.seconds,
        settings.warmup,
        settings.clients,
        settings.apply_n,
        settings.read_keys,
        settings.openkv.display(),
        tmp.path().display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.spawn(stop_servers_on_signal());
    let mut rounds = Vec::new();
    for round in 1..=settings.rounds {
        openkv_bench::wait_for_quiet("bench-replica", settings.max_wait);
        eprintln!("\n==> round {round}/{}", settings.rounds);
        let dir = tmp.path().join(format!("round{round}"));
        std::fs::create_dir(&dir)?;
        let figures = rt.block_on(run_round(&settings, round, &dir))?;
        if !args.keep {
            let _ = std::fs::remove_dir_all(&dir);
        }
        rounds.push(figures);
    }
    drop(rt);
    print_report(&settings, &rounds, &command_line);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&to_json(&settings, &rounds))?)?;
        eprintln!("figures written to {}", path.display());
    }
    if args.keep {
        eprintln!("bench-replica: kept {}", tmp.keep().display());
    }
    Ok(())
}

// --- servers -----------------------------------------------------------------------------

/// Where the pids of the running servers are kept, if anywhere.
static PID_FILE: Mutex<Option<PathBuf>> = Mutex::new(None);
/// The temporary directory, to remove on a signal (unless --keep).
static TEMP_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);
/// The pids of the running servers.
static PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn track_pid(pid: u32, running: bool) {
    let mut pids = PIDS.lock().unwrap();
    pids.retain(|&p| p != pid);
    if running {
        pids.push(pid);
    }
    if let Some(path) = PID_FILE.lock().unwrap().as_ref() {
        let text: String = pids.iter().map(|p| format!("{p}\n")).collect();
        let _ = std::fs::write(path, text);
    }
}

/// On SIGINT or SIGTERM: kills the running servers (no destructor runs when a signal ends
/// the process) and exits.
async fn stop_servers_on_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) =
        (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        return;
    };
    let code = tokio::select! {
        _ = int.recv() => 130,
        _ = term.recv() => 143,
    };
    let pids: Vec<String> = PIDS.lock().unwrap().iter().map(u32::to_string).collect();
    if !pids.is_empty() {
        let _ = std::process::Command::new("kill").arg("-KILL").args(&pids).status();
    }
    if let Some(dir) = TEMP_DIR.lock().unwrap().as_ref() {
        let _ = std::fs::remove_dir_all(dir);
    }
    eprintln!("bench-replica: interrupted; servers stopped");
    std::process::exit(code);
}

/// A running `openkv serve`; killed (SIGKILL) if dropped while running.
struct Server {
    child: Child,
    pid: u32,
    url: String,
    /// Its stdout, kept open: the server must never write to a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

impl Server {
    /// `openkv --db DB serve --addr ADDR --access-token … EXTRA…`, its stderr to `DB.log`;
    /// returns once it printed the URL it serves.
    async fn start(s: &Settings, db: &Path, addr: &str, extra: &[&str]) -> Res<Server> {
        let log_path = db.with_extension("log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
        let mut child = Command::new(&s.openkv)
            .arg("--db")
            .arg(db)
            .args(["serve", "--addr", addr, "--access-token", TOKEN])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", s.openkv.display()))?;
        let pid = child.id().ok_or("openkv serve exited at once")?;
        track_pid(pid, true);
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).await?;
        let Some(url) = line.split_whitespace().last().filter(|u| u.starts_with("http")) else {
            let _ = child.kill().await;
            track_pid(pid, false);
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(format!("openkv serve --db {} did not start:\n{log}", db.display()).into());
        };
        Ok(Server { url: url.to_owned(), child, pid, _stdout: stdout })
    }

    /// `host:port` it listens on.
    fn addr(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// SIGTERM, and waits for a graceful exit.
    async fn stop(mut self) -> Res<()> {
        std::process::Command::new("kill").args(["-TERM", &self.pid.to_string()]).status()?;
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        track_pid(self.pid, false);
        match status {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => {
                Err(format!("openkv serve exited with {status} after SIGTERM").into())
            }
            Ok(Err(e)) => Err(e.into()),
            Err(_) => {
                let _ = self.child.kill().await;
                Err("openkv serve ignored SIGTERM for 30 s".into())
            }
        }
    }

    /// SIGKILL.
    async fn kill(mut self) -> Res<()> {
        self.child.kill().await?;
        track_pid(self.pid, false);
        Ok(())
    }
}

async fn client(url: &str) -> Res<Kv> {
    let kv = OpenOptions::new()
        .access_token(TOKEN)
        .remote_retry_timeout(Duration::from_secs(30))
        .open(url)
        .await
        .map_err(|e| format!("opening {url}: {e}"))?;
    Ok(kv)
}

async fn clients(url: &str, n: usize) -> Res<Vec<Kv>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(client(url).await?);
    }
    Ok(out)
}

async fn close_all(kvs: Vec<Kv>) -> Res<()> {
    for kv in kvs {
        kv.close().await?;
    }
    Ok(())
}

/// `POST {url}/v2/openkv/replication/status` over a fresh HTTP/1.1 connection: its JSON.
async fn status(url: &str, database_id: &str) -> Res<serde_json::Value> {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!(
        "POST /v2/openkv/replication/status HTTP/1.1\r\nhost: {addr}\r\n\
         authorization: Bearer {TOKEN}\r\nx-denokv-version: 3\r\n\
         x-denokv-database-id: {database_id}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("status: a truncated HTTP answer")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("status from {url}: {head} {body}").into());
    }
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked { dechunk(body)? } else { body.to_owned() };
    Ok(serde_json::from_str(&body)?)
}

/// The payload of a chunked HTTP/1.1 body.
fn dechunk(mut body: &str) -> Res<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").ok_or("status: a bad chunk")?;
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16)?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..size).ok_or("status: a short chunk")?);
        body = rest.get(size + 2..).ok_or("status: a short chunk")?;
    }
}

fn field(status: &serde_json::Value, name: &str) -> u64 {
    status[name].as_u64().unwrap_or(0)
}

/// Polls the replica's status every [`STATUS_EVERY`] until `done` holds of it; the last status.
async fn wait_status(
    url: &str,
    database_id: &str,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> Res<serde_json::Value> {
    let deadline = Instant::now() + CATCH_UP_LIMIT;
    loop {
        // A replica still starting may refuse a connection: that is no status yet.
        if let Ok(s) = status(url, database_id).await {
            if done(&s) {
                return Ok(s);
            }
            if Instant::now() > deadline {
                return Err(format!("{what}: not done after {CATCH_UP_LIMIT:?}: {s}").into());
            }
        } else if Instant::now() > deadline {
            return Err(format!("{what}: no status after {CATCH_UP_LIMIT:?}").into());
        }
        tokio::time::sleep(STATUS_EVERY).await;
    }
}

// --- one round ----------------------------------------------------------------------------

fn value() -> Value {
    Value::Bytes(vec![0x5a; VALUE_BYTES])
}

/// Writes `keys` with ~100-byte values, [`BATCH`] per atomic write, `tasks` writes at once.
async fn write_batches(kv: &Kv, keys: Vec<Key>, tasks: usize) -> Res<()> {
    let chunks: Vec<Vec<Key>> = keys.chunks(BATCH).map(<[Key]>::to_vec).collect();
    let next = Arc::new(AtomicU64::new(0));
    let chunks = Arc::new(chunks);
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (kv, next, chunks) = (kv.clone(), next.clone(), chunks.clone());
        handles.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(chunk) = chunks.get(i) else { return Ok::<(), openkv::Error>(()) };
                let mut op = kv.atomic();
                for k in chunk {
                    op = op.set(k, value());
                }
                op.commit().await?;
            }
        }));
    }
    for h in handles {
        h.await??;
    }
    Ok(())
}

fn secs(d: f64) -> Duration {
    Duration::from_secs_f64(d)
}

async fn run_round(s: &Settings, round: u64, dir: &Path) -> Res<Round> {
    let mut r = Round::default();
    let primary = Server::start(s, &dir.join("primary.sqlite3"), "127.0.0.1:0", &[]).await?;
    let replica_db = dir.join("replica.sqlite3");
    let replica =
        Server::start(s, &replica_db, "127.0.0.1:0", &["--replica-of", &primary.url]).await?;
    let pkv = client(&primary.url).await?;
    let database_id = pkv.database_id().await?.to_string();
    let read_keys: Vec<Key> = (0..s.read_keys).map(|i| key!["r", i]).collect();
    write_batches(&pkv, read_keys, 1).await?;
    let head = field(&status(&primary.url, &database_id).await?, "version");
    wait_status(&replica.url, &database_id, "initial catch-up", |st| {
        field(st, "version") >= head && field(st, "bootstraps") >= 1
    })
    .await?;

    // 1. Replication lag under C writers.
    let lag = lag_workload(s, &primary.url, &replica.url).await?;
    r.lag_p50_ms = lag.p50_ms;
    r.lag_p99_ms = lag.p99_ms;
    r.lag_max_ms = lag.max_ms;
    r.lag_samples = lag.samples;
    r.lag_writes_per_s = lag.writes_per_s;
    r.errors += lag.errors;
    eprintln!(
        "    lag: {} samples, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {:.0} sets/s by {} \
         writers; errors {}{}",
        lag.samples,
        lag.p50_ms,
        lag.p99_ms,
        lag.max_ms,
        lag.writes_per_s,
        s.clients,
        lag.errors,
        lag.first_error.map(|e| format!(" (first: {e})")).unwrap_or_default()
    );

    // 2. The replica killed: eventual reads from the primary alone.
    let replica_addr = replica.addr().to_owned();
    replica.kill().await?;
    let reads = read_workload(s, &primary.url).await?;
    r.reads_primary = reads.ops_per_s;
    r.errors += reads.errors;
    eprintln!(
        "    eventual reads, primary alone: {:.0} ops/s, p99 {:.2} ms, errors {}",
        reads.ops_per_s, reads.p99_ms, reads.errors
    );

    // 3. N entries while the replica is down, then its restart, timed until it caught up.
    let fill_keys: Vec<Key> = (0..s.apply_n).map(|i| key!["a", round, i]).collect();
    let fill_start = Instant::now();
    write_batches(&pkv, fill_keys, FILL_TASKS).await?;
    r.fill_entries_per_s = s.apply_n as f64 / fill_start.elapsed().as_secs_f64();
    let head = field(&status(&primary.url, &database_id).await?, "version");
    let started = Instant::now();
    let replica =
        Server::start(s, &replica_db, &replica_addr, &["--replica-of", &primary.url]).await?;
    let serving = started.elapsed();
    let st =
        wait_status(&replica.url, &database_id, "apply", |st| field(st, "version") >= head).await?;
    let took = started.elapsed();
    if field(&st, "bootstraps") != 0 {
        return Err(format!("the restarted replica bootstrapped instead of applying: {st}").into());
    }
    r.apply_secs = took.as_secs_f64();
    r.apply_records = field(&st, "recordsApplied");
    r.apply_entries_per_s = s.apply_n as f64 / r.apply_secs;
    eprintln!(
        "    apply: {} entries ({} records) in {:.3} s from the spawn ({:.3} s to serving): \
         {:.0} entries/s; they had been written at {:.0} entries/s",
        s.apply_n,
        r.apply_records,
        r.apply_secs,
        serving.as_secs_f64(),
        r.apply_entries_per_s,
        r.fill_entries_per_s
    );

    // 4. Eventual reads from the replica's copy.
    let before = field(&status(&replica.url, &database_id).await?, "readsLocal");
    let reads = read_workload(s, &replica.url).await?;
    let local = field(&status(&replica.url, &database_id).await?, "readsLocal") - before;
    r.reads_replica = reads.ops_per_s;
    r.errors += reads.errors;
    eprintln!(
        "    eventual reads, replica: {:.0} ops/s, p99 {:.2} ms, errors {}; {} reads served \
         by its copy",
        reads.ops_per_s, reads.p99_ms, reads.errors, local
    );
    if local < reads.ops {
        return Err(format!(
            "the replica served {local} reads from its copy, fewer than the {} counted",
            reads.ops
        )
        .into());
    }
    replica.stop().await?;

    // 5. A fresh replica bootstraps from the primary.
    r.bootstrap_entries = s.read_keys + s.clients as u64 + s.apply_n;
    let head = field(&status(&primary.url, &database_id).await?, "version");
    let started = Instant::now();
    let fresh = Server::start(
        s,
        &dir.join("fresh-replica.sqlite3"),
        "127.0.0.1:0",
        &["--replica-of", &primary.url],
    )
    .await?;
    let serving = started.elapsed();
    wait_status(&fresh.url, &database_id, "bootstrap", |st| {
        field(st, "bootstraps") >= 1 && field(st, "version") >= head
    })
    .await?;
    let took = started.elapsed();
    r.bootstrap_secs = took.as_secs_f64();
    r.bootstrap_entries_per_s = r.bootstrap_entries as f64 / r.bootstrap_secs;
    // The last entry written is in the copy.
    let fkv = client(&fresh.url).await?;
    let last = key!["a", round, s.apply_n - 1];
    if fkv.get_with(&last, Consistency::Eventual).await?.is_none() {
        return Err("the bootstrapped replica lacks the last entry written".into());
    }
    fkv.close().await?;
    eprintln!(
        "    bootstrap: {} entries in {:.3} s from the spawn ({:.3} s to serving): {:.0} \
         entries/s",
        r.bootstrap_entries,
        r.bootstrap_secs,
        serving.as_secs_f64(),
        r.bootstrap_entries_per_s
    );
    fresh.stop().await?;
    pkv.close().await?;
    primary.stop().await?;

    // 6. concurrent64_set with the change log on and off: both servers up, measured in
    // alternating slices; who starts alternates by round.
    let log_on = Server::start(s, &dir.join("log-on.sqlite3"), "127.0.0.1:0", &[]).await?;
    let log_off =
        Server::start(s, &dir.join("log-off.sqlite3"), "127.0.0.1:0", &["--log-retention", "off"])
            .await?;
    let first_on = round % 2 == 1;
    let [on, off] = set_workload_paired(s, [&log_on.url, &log_off.url], first_on).await?;
    log_on.stop().await?;
    log_off.stop().await?;
    for (name, sets) in [("on", &on), ("off", &off)] {
        r.errors += sets.errors;
        eprintln!(
            "    concurrent{}_set, change log {name}: {:.0} ops/s, p99 {:.2} ms, errors {}",
            s.clients, sets.ops_per_s, sets.p99_ms, sets.errors
        );
    }
    r.set_log_on = on.ops_per_s;
    r.set_log_off = off.ops_per_s;
    eprintln!("    change log on ÷ off: {:.3}", r.log_ratio());
    Ok(r)
}

// --- workloads ----------------------------------------------------------------------------

/// A throughput workload's figures.
struct Throughput {
    ops: u64,
    ops_per_s: f64,
    p99_ms: f64,
    errors: u64,
}

/// What one task of a timed workload did.
#[derive(Default)]
struct TaskRun {
    latencies_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

impl TaskRun {
    fn record(
        &mut self,
        start: Instant,
        from: Instant,
        until: Instant,
        result: openkv::Result<()>,
    ) {
        let end = Instant::now();
        match result {
            Ok(()) if start >= from && end <= until => {
                self.latencies_us.push((end - start).as_micros().min(u32::MAX as u128) as u32)
            }
            Ok(()) => {}
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// The p-quantile (nearest rank) of sorted values, NaN if none.
fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn throughput(s: &Settings, runs: Vec<TaskRun>) -> Throughput {
    let mut lat: Vec<f64> =
        runs.iter().flat_map(|r| r.latencies_us.iter().map(|&us| us as f64 / 1000.0)).collect();
    lat.sort_unstable_by(f64::total_cmp);
    if let Some(e) = runs.iter().find_map(|r| r.first_error.clone()) {
        eprintln!("    first error: {e}");
    }
    Throughput {
        ops: lat.len() as u64,
        ops_per_s: lat.len() as f64 / s.seconds,
        p99_ms: quantile(&lat, 0.99),
        errors: runs.iter().map(|r| r.errors).sum(),
    }
}

/// The window of a timed workload starting now: (measured from, until).
fn window(s: &Settings) -> (Instant, Instant) {
    let from = Instant::now() + secs(s.warmup);
    (from, from + secs(s.seconds))
}

/// A xorshift step (the readers' key choice).
fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// C readers: `get_with(Eventual)` of random read keys on the server at `url`.
async fn read_workload(s: &Settings, url: &str) -> Res<Throughput> {
    let kvs = clients(url, s.clients).await?;
    let (from, until) = window(s);
    let mut tasks = Vec::new();
    for (i, kv) in kvs.iter().enumerate() {
        let (kv, n) = (kv.clone(), s.read_keys);
        tasks.push(tokio::spawn(async move {
            let mut run = TaskRun::default();
            let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (i as u64 + 1).wrapping_mul(0x2545_f491);
            loop {
                let start = Instant::now();
                if start >= until {
                    return run;
                }
                let k = key!["r", xorshift(&mut rng) % n];
                let result = match kv.get_with(&k, Consistency::Eventual).await {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) => Err(openkv::Error::Internal(format!("{k:?} is missing"))),
                    Err(e) => Err(e),
                };
                run.record(start, from, until, result);
            }
        }));
    }
    let mut runs = Vec::new();
    for t in tasks {
        runs.push(t.await?);
    }
    close_all(kvs).await?;
    Ok(throughput(s, runs))
}

/// How long one slice of [`set_workload_paired`] lasts, about.
const SLICE: f64 = 1.0;

/// concurrent64_set on two servers: C tasks per server, each doing sequential sets of fresh
/// keys. The servers take turns in slices of about [`SLICE`] (A B B A A B …, starting with the
/// first when `first` is true, else with the second), so both see the same machine — on this
/// shared VM the rest of the load and the disk's flush times drift by more than the difference
/// measured. After a warm-up on each, every server gets `--seconds` of measured slices; a
/// slice counts the sets that started and ended within it, and the next starts once its last
/// set returned.
async fn set_workload_paired(s: &Settings, urls: [&str; 2], first: bool) -> Res<[Throughput; 2]> {
    let kvs = [clients(urls[0], s.clients).await?, clients(urls[1], s.clients).await?];
    let slices = ((s.seconds / SLICE).round() as u64).max(2);
    let slice = s.seconds / slices as f64;
    let mut runs: [Vec<TaskRun>; 2] = [Vec::new(), Vec::new()];
    let start = usize::from(!first);
    for server in [start, 1 - start] {
        set_slice(&kvs[server], 0, s.warmup).await?;
    }
    for pair in 0..slices {
        let order = if pair % 2 == 0 { [start, 1 - start] } else { [1 - start, start] };
        for server in order {
            runs[server].extend(set_slice(&kvs[server], pair + 1, slice).await?);
        }
    }
    let [kvs_a, kvs_b] = kvs;
    close_all(kvs_a).await?;
    close_all(kvs_b).await?;
    let [runs_a, runs_b] = runs;
    Ok([throughput(s, runs_a), throughput(s, runs_b)])
}

/// One slice of `seconds` of sequential sets from every handle of `kvs` (keys
/// `["c", slice, task, j]`).
async fn set_slice(kvs: &[Kv], slice: u64, seconds: f64) -> Res<Vec<TaskRun>> {
    let from = Instant::now();
    let until = from + secs(seconds);
    let mut tasks = Vec::new();
    for (i, kv) in kvs.iter().enumerate() {
        let kv = kv.clone();
        tasks.push(tokio::spawn(async move {
            let mut run = TaskRun::default();
            for j in 0u64.. {
                let start = Instant::now();
                if start >= until {
                    break;
                }
                let k = key!["c", slice, i as u64, j];
                let result = kv.set(&k, KvU64(j)).await.map(|_| ());
                run.record(start, from, until, result);
            }
            run
        }));
    }
    let mut runs = Vec::new();
    for t in tasks {
        runs.push(t.await?);
    }
    Ok(runs)
}

/// The replication lag workload's figures.
struct Lag {
    samples: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    writes_per_s: f64,
    errors: u64,
    first_error: Option<String>,
}

/// A commit for a poller to follow: the writer's key, the versionstamp, when it was acked.
struct Sample {
    writer: u64,
    versionstamp: Versionstamp,
    acked: Instant,
}

/// Idle pollers waiting for a commit to follow. Pollers are few and writers only take a slot
/// when one is free, so the samples are the commits acknowledged while a poller was idle:
/// which ones does not depend on how fast they replicate.
type Slots = Arc<Mutex<Vec<oneshot::Sender<Sample>>>>;

async fn lag_workload(s: &Settings, primary: &str, replica: &str) -> Res<Lag> {
    let writers = clients(primary, s.clients).await?;
    let pollers = clients(replica, s.pollers).await?;
    let (from, until) = window(s);
    let slots: Slots = Arc::new(Mutex::new(Vec::new()));
    let mut writer_tasks = Vec::new();
    for (i, kv) in writers.iter().enumerate() {
        let (kv, slots) = (kv.clone(), slots.clone());
        writer_tasks.push(tokio::spawn(async move {
            let mut run = TaskRun::default();
            let k = key!["w", i as u64];
            for j in 0u64.. {
                let start = Instant::now();
                if start >= until {
                    break;
                }
                let result = kv.set(&k, KvU64(j)).await;
                let acked = Instant::now();
                if let Ok(versionstamp) = &result {
                    if start >= from && acked <= until {
                        let slot = slots.try_lock().ok().and_then(|mut s| s.pop());
                        if let Some(slot) = slot {
                            let sample =
                                Sample { writer: i as u64, versionstamp: *versionstamp, acked };
                            let _ = slot.send(sample);
                        }
                    }
                }
                run.record(start, from, until, result.map(|_| ()));
            }
            run
        }));
    }
    let mut poller_tasks = Vec::new();
    for kv in &pollers {
        let (kv, slots) = (kv.clone(), slots.clone());
        poller_tasks.push(tokio::spawn(async move {
            let mut lags_ms = Vec::new();
            let mut errors = 0u64;
            let mut first_error = None;
            loop {
                let (tx, rx) = oneshot::channel();
                slots.lock().unwrap().push(tx);
                let deadline = tokio::time::Instant::from_std(until);
                let Ok(Ok(sample)) = tokio::time::timeout_at(deadline, rx).await else {
                    break;
                };
                let k = key!["w", sample.writer];
                loop {
                    match kv.get_with(&k, Consistency::Eventual).await {
                        Ok(Some(e)) if e.versionstamp >= sample.versionstamp => {
                            lags_ms.push(sample.acked.elapsed().as_secs_f64() * 1000.0);
                            break;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert_with(|| e.to_string());
                        }
                    }
                    if sample.acked.elapsed() > CATCH_UP_LIMIT {
                        first_error.get_or_insert_with(|| "a commit never replicated".into());
                        errors += 1;
                        break;
                    }
                    tokio::time::sleep(POLL_PAUSE).await;
                }
            }
            (lags_ms, errors, first_error)
        }));
    }
    let mut runs = Vec::new();
    for t in writer_tasks {
        runs.push(t.await?);
    }
    let mut lags = Vec::new();
    let mut errors: u64 = runs.iter().map(|r| r.errors).sum();
    let mut first_error = runs.iter().find_map(|r| r.first_error.clone());
    for t in poller_tasks {
        let (l, e, f) = t.await?;
        lags.extend(l);
        errors += e;
        first_error = first_error.or(f);
    }
    let writes: usize = runs.iter().map(|r| r.latencies_us.len()).sum();
    close_all(writers).await?;
    close_all(pollers).await?;
    lags.sort_unstable_by(f64::total_cmp);
    Ok(Lag {
        samples: lags.len(),
        p50_ms: quantile(&lags, 0.50),
        p99_ms: quantile(&lags, 0.99),
        max_ms: lags.last().copied().unwrap_or(f64::NAN),
        writes_per_s: writes as f64 / s.seconds,
        errors,
        first_error,
    })
}

// --- machine ------------------------------------------------------------------------------

// --- report -------------------------------------------------------------------------------

fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A figure for the table: thousands separated for large ones, decimals for small ones.
fn fmt(x: f64) -> String {
    if x.is_nan() {
        return "n/a".into();
    }
    if x.abs() >= 1000.0 {
        let s = format!("{:.0}", x);
        let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        format!("{sign}{out}")
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// Whether a median meets a target.
type Met = fn(f64) -> bool;

/// A row of the table: a name, the rounds' values, a target and whether the median meets it.
struct Row {
    metric: String,
    values: Vec<f64>,
    /// `(text, met)`; `met` is None for a reference figure.
    target: (String, Option<Met>),
}

fn rows(s: &Settings, rounds: &[Round]) -> Vec<Row> {
    let col = |f: fn(&Round) -> f64| rounds.iter().map(f).collect::<Vec<f64>>();
    let c = s.clients;
    let none = || (String::from("—"), None);
    vec![
        Row {
            metric: format!("replication lag p50 under {c} writers (ms)"),
            values: col(|r| r.lag_p50_ms),
            target: none(),
        },
        Row {
            metric: format!("replication lag p99 under {c} writers (ms)"),
            values: col(|r| r.lag_p99_ms),
            target: ("≤ 100 ms".into(), Some(|x| x <= 100.0)),
        },
        Row {
            metric: "  (lag: samples per round)".into(),
            values: col(|r| r.lag_samples as f64),
            target: none(),
        },
        Row {
            metric: format!("  (lag: sets/s on the primary by the {c} writers)"),
            values: col(|r| r.lag_writes_per_s),
            target: none(),
        },
        Row {
            metric: "replica apply (entries/s)".into(),
            values: col(|r| r.apply_entries_per_s),
            target: ("≥ 50,000/s".into(), Some(|x| x >= 50_000.0)),
        },
        Row {
            metric: "bootstrap (entries/s)".into(),
            values: col(|r| r.bootstrap_entries_per_s),
            target: none(),
        },
        Row {
            metric: format!("eventual reads, primary alone ({c} readers, ops/s)"),
            values: col(|r| r.reads_primary),
            target: none(),
        },
        Row {
            metric: format!("eventual reads, replica ({c} readers, ops/s)"),
            values: col(|r| r.reads_replica),
            target: none(),
        },
        Row {
            metric: format!("concurrent{c}_set, change log on (ops/s)"),
            values: col(|r| r.set_log_on),
            target: none(),
        },
        Row {
            metric: format!("concurrent{c}_set, --log-retention off (ops/s)"),
            values: col(|r| r.set_log_off),
            target: none(),
        },
        Row {
            metric: "change log on ÷ off (per round)".into(),
            values: col(Round::log_ratio),
            target: ("≥ 0.90 (cost ≤ 10%)".into(), Some(|x| x >= 0.90)),
        },
    ]
}

fn print_report(s: &Settings, rounds: &[Round], command_line: &str) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    println!(
        "\n**openkv serve: read replicas and the change log** — {cores} cores ({cpu}); median \
         of {} round(s); {} s (+{} s warm-up) per timed workload; {} clients; {} applied \
         entries; {} read keys; servers, SQLite files and clients on this one machine\n",
        s.rounds, s.seconds, s.warmup, s.clients, s.apply_n, s.read_keys
    );
    println!("| metric | median | rounds | target |");
    println!("|---|---:|---|---|");
    for row in rows(s, rounds) {
        let m = median(&row.values);
        let each: Vec<String> = row.values.iter().map(|&v| fmt(v)).collect();
        let target = match row.target {
            (text, Some(met)) => {
                format!("{text}: {}", if met(m) { "met" } else { "**NOT met**" })
            }
            (text, None) => text,
        };
        println!("| {} | {} | {} | {target} |", row.metric, fmt(m), each.join(", "));
    }
    let errors: u64 = rounds.iter().map(|r| r.errors).sum();
    println!("\nErrors (all workloads, all rounds): {errors}");
    println!("\nCommand: `{command_line}`");
}

fn to_json(s: &Settings, rounds: &[Round]) -> serde_json::Value {
    let table: Vec<serde_json::Value> = rows(s, rounds)
        .into_iter()
        .map(
            |r| json!({"metric": r.metric.trim(), "median": median(&r.values), "rounds": r.values}),
        )
        .collect();
    json!({
        "settings": {
            "rounds": s.rounds, "seconds": s.seconds, "warmup": s.warmup, "applyN": s.apply_n,
            "readKeys": s.read_keys, "clients": s.clients, "pollers": s.pollers,
        },
        "table": table,
        "rounds": rounds.iter().map(|r| json!({
            "lagP50Ms": r.lag_p50_ms, "lagP99Ms": r.lag_p99_ms, "lagMaxMs": r.lag_max_ms,
            "lagSamples": r.lag_samples, "lagWritesPerS": r.lag_writes_per_s,
            "readsPrimary": r.reads_primary, "readsReplica": r.reads_replica,
            "applyEntriesPerS": r.apply_entries_per_s, "applySecs": r.apply_secs,
            "applyRecords": r.apply_records, "fillEntriesPerS": r.fill_entries_per_s,
            "bootstrapEntriesPerS": r.bootstrap_entries_per_s,
            "bootstrapSecs": r.bootstrap_secs, "bootstrapEntries": r.bootstrap_entries,
            "setLogOn": r.set_log_on, "setLogOff": r.set_log_off, "errors": r.errors,
        })).collect::<Vec<_>>(),
    })
}

/// `arg` as a shell word.
fn shell_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:=,@+".contains(&b))
    {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}
