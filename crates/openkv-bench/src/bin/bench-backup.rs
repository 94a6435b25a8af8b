//! `bench-backup`: continuous backup (`openkv serve --backup-to`) measured with Rust KV Connect
//! clients on this machine, the backup going to S3-compatible storage (s3s-fs, by default).
//!
//! ```text
//! bench-backup [--openkv PATH] (--s3-endpoint URL [--bucket B] | --backup-dir DIR) [--quick]
//!              [--rounds R] [--seconds S] [--warmup S] [--cost-seconds S] [--slice S]
//!              [--entries N] [--clients C] [--interval-ms MS] [--poll-ms MS] [--dir DIR]
//!              [--keep] [--json FILE] [--max-wait S] [--pid-file FILE] [--command-line TEXT]
//! ```
//!
//! `scripts/bench-backup.sh` builds everything, starts s3s-fs (an S3 server over a directory,
//! on 127.0.0.1) and runs this. S3 credentials and region come from the usual AWS environment
//! variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`), for this program and
//! the servers it starts alike. Every round starts from fresh SQLite files and fresh backup
//! prefixes (`s3://BUCKET/bench-backup-<ms>/roundR/<what>`); the servers are `openkv serve`
//! processes with `--backup-to … --backup-interval` (1 s), the clients are tasks of this
//! process (a 2-worker runtime), one `Kv` handle — hence one connection — per task. One round,
//! in this order:
//!
//! 1. **Backup lag**: a server backing up to a fresh prefix (its first, empty, snapshot landed);
//!    C (64) writers, each doing sequential `set`s of its own key `["w", i]`, for the warm-up +
//!    S seconds. Every commit acknowledged in the measured window is a sample (its versionstamp
//!    and the time the client got the acknowledgement). A follower lists the prefix's `logs/`
//!    in the bucket every `--poll-ms` (20 ms; S3 `ListObjectsV2` with `start-after` the last
//!    name seen): an object `logs/0001_<monoseq>_<first>_<last>.bin` holds every commit up to
//!    the versionstamp in the first 10 bytes of `<last>`. Lag = acknowledgement → the return of
//!    the first listing that shows an object reaching the sample's versionstamp: an upper
//!    bound, by up to one poll period and one listing. A second follower does the same with
//!    the server's status endpoint (`backup.shippedVersion`, set right after an object
//!    landed), as a cross-check.
//! 2. **Restore, all in the log**: a fresh server backing up to a fresh prefix (its first
//!    snapshot: empty); N entries `["e", i]` (~100-byte values) written through it in atomic
//!    writes of 1,000 sets (4 writers at once); once `shippedVersion` reached the head, the
//!    server is stopped and `openkv --db NEW restore --from LOCATION --at latest` is timed end
//!    to end (the process, spawn to exit): N entries ÷ that time. The entry count it reports
//!    is checked.
//! 3. **Restore, mostly a snapshot**: a server on that same file (N entries) backing up to
//!    another fresh prefix: its first snapshot carries the N entries; then N/100 more entries
//!    `["s", i]` go to the log; shipped, stopped, restored and timed the same way (N + N/100
//!    entries ÷ the time).
//! 4. **Shipping's cost**: `concurrent64_set` — C tasks, each doing sequential sets of fresh
//!    keys — against a fresh server with `--backup-to` and a fresh one without (both with the
//!    change log, the default). Both run at once but take turns, in slices of `--slice` seconds
//!    (A B B A A B …; who starts alternates by round), `--cost-seconds` each. Shipping runs
//!    behind the commits: after every slice of the backup-on server the next slice waits (not
//!    timed) until that server's backup caught up, so its shipping never runs in the other
//!    server's slices; what was still unshipped when a slice ended is shipped outside any slice
//!    and not charged to it — its share of the slice's commits is reported (longer slices make
//!    it smaller). s3s-fs runs on this machine too, so its work counts against the backup.
//!
//! Throughput counts the operations that started after the warm-up and ended within the
//! measured seconds. The report is the median of the rounds, each round's figure, and the
//! targets of the continuous-backup issue: lag p99 ≤ 2 × the interval under 64 writers, restore
//! ≥ 100,000 entries/s, shipping costing ≤ 10% of `concurrent64_set`. Nothing asserts timings.
//!
//! Status comes from `POST /v2/openkv/replication/status` (plain HTTP/1.1 here). `--pid-file`
//! keeps the pids of the running servers in a file (rewritten as they come and go), so that the
//! calling script can stop them if this process is killed.

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
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStore};
use openkv::{key, Key, Kv, KvU64, OpenOptions, Value, Versionstamp};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::watch;

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

const TOKEN: &str = "bench-backup-token-0123456789";
/// Sets per atomic write when filling.
const BATCH: usize = 1000;
/// Concurrent atomic writes when filling.
const FILL_TASKS: usize = 4;
/// How often the status is asked for while waiting for the backup to catch up.
const STATUS_EVERY: Duration = Duration::from_millis(20);
/// Longest wait for the backup to catch up (or a sampled commit to show up) before failing.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(300);
/// Bytes of every filled value.
const VALUE_BYTES: usize = 100;

#[derive(Parser, Debug)]
#[command(about = "openkv serve --backup-to: backup lag, restore rates and the cost of shipping")]
struct Args {
    /// The openkv binary (default: `openkv` next to this program).
    #[arg(long)]
    openkv: Option<PathBuf>,
    /// The S3-compatible server the backups go to (e.g. s3s-fs at http://127.0.0.1:PORT);
    /// credentials and region from the AWS environment variables.
    #[arg(long, value_name = "URL", required_unless_present = "backup_dir")]
    s3_endpoint: Option<String>,
    /// The bucket (it must exist).
    #[arg(long, default_value = "bench")]
    bucket: String,
    /// Back up to directories under DIR instead of S3-compatible storage.
    #[arg(long, value_name = "DIR", conflicts_with = "s3_endpoint")]
    backup_dir: Option<PathBuf>,
    /// A fast smoke run (about a minute): defaults become 2 rounds, 2 s (+0.5 s warm-up) of
    /// lag, 4 s per server in slices of 2 s, 20,000 entries, --max-wait 10. Options given
    /// explicitly still win.
    #[arg(long)]
    quick: bool,
    /// Rounds; the report gives each metric's median [default: 3; --quick: 2].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    rounds: Option<u64>,
    /// Measured seconds of the lag workload [default: 10; --quick: 2].
    #[arg(long)]
    seconds: Option<f64>,
    /// Warm-up seconds before the lag workload and on each server of the cost comparison
    /// [default: 1; --quick: 0.5].
    #[arg(long)]
    warmup: Option<f64>,
    /// Measured seconds per server of the cost comparison [default: 20; --quick: 4].
    #[arg(long)]
    cost_seconds: Option<f64>,
    /// About how long one slice of the cost comparison lasts [default: 5; --quick: 2].
    #[arg(long)]
    slice: Option<f64>,
    /// Entries written, backed up and restored [default: 200000; --quick: 20000].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1000..))]
    entries: Option<u64>,
    /// Concurrent writers (lag, concurrent64_set).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    clients: u64,
    /// The servers' --backup-interval, in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    interval_ms: u64,
    /// How often the lag followers list the bucket / ask the status, in milliseconds.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    poll_ms: u64,
    /// Where the temporary directory (databases, restored files, server logs) goes.
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
    cost_seconds: f64,
    slice: f64,
    entries: u64,
    clients: usize,
    interval_ms: u64,
    poll: Duration,
    max_wait: u64,
}

impl Settings {
    /// Entries written to the log after the snapshot in the snapshot restore.
    fn extra_entries(&self) -> u64 {
        (self.entries / 100).max(1)
    }
}

/// One round's figures.
#[derive(Clone, Debug, Default)]
struct Round {
    lag_p50_ms: f64,
    lag_p99_ms: f64,
    lag_max_ms: f64,
    lag_samples: usize,
    lag_writes_per_s: f64,
    lag_commits_per_s: f64,
    lag_objects: u64,
    status_lag_p50_ms: f64,
    status_lag_p99_ms: f64,
    fill_entries_per_s: f64,
    /// From the end of the fill until all of it was shipped.
    catch_up_secs: f64,
    /// The entries not yet shipped at the end of the fill ÷ `catch_up_secs`.
    ship_entries_per_s: f64,
    log_restore: Restored,
    log_restore_ranges: u64,
    snap_restore: Restored,
    snapshot_secs: f64,
    set_backup_on: f64,
    set_backup_off: f64,
    unshipped_share: f64,
    errors: u64,
}

impl Round {
    fn cost_ratio(&self) -> f64 {
        self.set_backup_on / self.set_backup_off
    }
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("bench-backup: {e}");
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
        cost_seconds: args.cost_seconds.unwrap_or(if q { 4.0 } else { 20.0 }),
        slice: args.slice.unwrap_or(if q { 2.0 } else { 5.0 }),
        entries: args.entries.unwrap_or(if q { 20_000 } else { 200_000 }),
        clients: args.clients as usize,
        interval_ms: args.interval_ms,
        poll: Duration::from_millis(args.poll_ms),
        max_wait: args.max_wait.unwrap_or(if q { 10 } else { 300 }),
    };
    if !(settings.seconds > 0.0
        && settings.cost_seconds > 0.0
        && settings.slice > 0.0
        && settings.warmup >= 0.0)
    {
        return Err("--seconds, --cost-seconds and --slice must be positive and --warmup not \
                    negative"
            .into());
    }
    let storage = match (&args.s3_endpoint, &args.backup_dir) {
        (Some(endpoint), _) => {
            for var in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
                if std::env::var_os(var).is_none() {
                    return Err(format!("--s3-endpoint needs {var} in the environment").into());
                }
            }
            Storage::S3 { endpoint: endpoint.clone(), bucket: args.bucket.clone() }
        }
        (None, Some(dir)) => Storage::Dir(std::path::absolute(dir)?),
        (None, None) => return Err("--s3-endpoint or --backup-dir is required".into()),
    };
    *PID_FILE.lock().unwrap() = args.pid_file.clone();
    let tmp = match &args.dir {
        Some(d) => tempfile::Builder::new().prefix("bench-backup.").tempdir_in(d)?,
        None => tempfile::Builder::new().prefix("bench-backup.").tempdir()?,
    };
    if !args.keep {
        *TEMP_DIR.lock().unwrap() = Some(tmp.path().to_path_buf());
    }
    let command_line = args
        .command_line
        .clone()
        .unwrap_or_else(|| std::env::args().map(|a| shell_quote(&a)).collect::<Vec<_>>().join(" "));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let backups = {
        let _guard = rt.enter();
        Backups::new(storage)?
    };
    eprintln!(
        "bench-backup: {} round(s); lag {} s (+{} s warm-up); cost {} s per server in {} s \
         slices; {} clients; {} entries; --backup-interval {} ms; backups in {}; openkv {}; \
         files in {}",
        settings.rounds,
        settings.seconds,
        settings.warmup,
        settings.cost_seconds,
        settings.slice,
        settings.clients,
        settings.entries,
        settings.interval_ms,
        backups.describe(),
        settings.openkv.display(),
        tmp.path().display()
    );
    rt.spawn(stop_servers_on_signal());
    let mut rounds = Vec::new();
    for round in 1..=settings.rounds {
        openkv_bench::wait_for_quiet("bench-backup", settings.max_wait);
        eprintln!("\n==> round {round}/{}", settings.rounds);
        let dir = tmp.path().join(format!("round{round}"));
        std::fs::create_dir(&dir)?;
        let figures = rt.block_on(run_round(&settings, &backups, round, &dir))?;
        if !args.keep {
            let _ = std::fs::remove_dir_all(&dir);
        }
        rounds.push(figures);
    }
    drop(rt);
    print_report(&settings, &backups, &rounds, &command_line);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&to_json(&settings, &rounds))?)?;
        eprintln!("figures written to {}", path.display());
    }
    if args.keep {
        eprintln!("bench-backup: kept {}", tmp.keep().display());
    }
    Ok(())
}

// --- backup locations -----------------------------------------------------------------------

/// Where the backups go.
#[derive(Clone, Debug)]
enum Storage {
    /// S3-compatible storage at this endpoint, in this bucket.
    S3 { endpoint: String, bucket: String },
    /// Directories under this one.
    Dir(PathBuf),
}

/// The backups of this run: every one under `<run>/` of the storage.
struct Backups {
    storage: Storage,
    /// `bench-backup-<unix ms>`: a prefix no earlier run used.
    run: String,
    /// The storage as this program reads it (the lag follower's listings).
    store: Arc<dyn ObjectStore>,
}

impl Backups {
    fn new(storage: Storage) -> Res<Backups> {
        let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis();
        let run = format!("bench-backup-{ms}");
        let store: Arc<dyn ObjectStore> = match &storage {
            Storage::S3 { endpoint, bucket } => {
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_endpoint(endpoint)
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_virtual_hosted_style_request(false);
                if std::env::var_os("AWS_REGION").is_none()
                    && std::env::var_os("AWS_DEFAULT_REGION").is_none()
                {
                    builder = builder.with_region("us-east-1");
                }
                Arc::new(builder.build()?)
            }
            Storage::Dir(dir) => {
                std::fs::create_dir_all(dir)?;
                Arc::new(LocalFileSystem::new_with_prefix(dir)?)
            }
        };
        Ok(Backups { storage, run, store })
    }

    fn describe(&self) -> String {
        match &self.storage {
            Storage::S3 { endpoint, bucket } => {
                format!("s3://{bucket}/{}/ at {endpoint} (S3 protocol)", self.run)
            }
            Storage::Dir(dir) => format!("{} (a directory)", dir.join(&self.run).display()),
        }
    }

    /// The `--backup-to` / `--from` of backup `name`.
    fn location(&self, name: &str) -> String {
        match &self.storage {
            Storage::S3 { bucket, .. } => format!("s3://{bucket}/{}/{name}", self.run),
            Storage::Dir(dir) => dir.join(&self.run).join(name).display().to_string(),
        }
    }

    /// `--s3-endpoint URL`, if the backups are in S3-compatible storage.
    fn s3_args(&self) -> Vec<String> {
        match &self.storage {
            Storage::S3 { endpoint, .. } => vec!["--s3-endpoint".into(), endpoint.clone()],
            Storage::Dir(_) => Vec::new(),
        }
    }

    /// `openkv serve`'s options backing up to backup `name`.
    fn serve_args(&self, s: &Settings, name: &str) -> Vec<String> {
        let mut args = vec![
            "--backup-to".into(),
            self.location(name),
            "--backup-interval".into(),
            format!("{}ms", s.interval_ms),
        ];
        args.extend(self.s3_args());
        args
    }

    /// The store path of backup `name`'s `logs/`.
    fn logs(&self, name: &str) -> ObjectPath {
        ObjectPath::from(format!("{}/{name}/logs", self.run))
    }

    /// Every object under backup `name`'s `logs/`.
    async fn list_logs(&self, name: &str) -> Res<Vec<ObjectMeta>> {
        Ok(self.store.list(Some(&self.logs(name))).try_collect().await?)
    }
}

/// The commit a mutation range's object name says it ends with: the first 10 of the 12 bytes
/// after the last `_` of `0001_<monoseq:016x>_<first:24 hex>_<last:24 hex>.bin`.
fn last_commit(path: &ObjectPath) -> Option<Versionstamp> {
    let name = path.filename()?.strip_suffix(".bin")?;
    let last = name.rsplit('_').next()?;
    if last.len() != 24 {
        return None;
    }
    last.get(..20)?.parse().ok()
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
    eprintln!("bench-backup: interrupted; servers stopped");
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
    /// `openkv --db DB serve --addr 127.0.0.1:0 --access-token … EXTRA…`, its stderr to
    /// `DB.log`; returns once it printed the URL it serves.
    async fn start(s: &Settings, db: &Path, extra: &[String]) -> Res<Server> {
        let log_path = db.with_extension("log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
        let mut child = Command::new(&s.openkv)
            .arg("--db")
            .arg(db)
            .args(["serve", "--addr", "127.0.0.1:0", "--access-token", TOKEN])
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

    /// SIGTERM, and waits for a graceful exit (the backup ships its last commits first).
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

/// The server's head (`version`).
fn head(status: &serde_json::Value) -> u64 {
    status["version"].as_u64().unwrap_or(0)
}

/// The commit counter of the last commit in the backup (`backup.shippedVersion`).
fn shipped(status: &serde_json::Value) -> u64 {
    status["backup"]["shippedVersion"].as_u64().unwrap_or(0)
}

/// Polls the status every [`STATUS_EVERY`] until `done` holds of it; the last status. A backup
/// that stopped for good fails at once.
async fn wait_status(
    url: &str,
    database_id: &str,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> Res<serde_json::Value> {
    let deadline = Instant::now() + CATCH_UP_LIMIT;
    loop {
        let s = status(url, database_id).await?;
        if done(&s) {
            return Ok(s);
        }
        if s["backup"]["stopped"].as_bool() == Some(true) {
            return Err(format!("{what}: the backup stopped: {s}").into());
        }
        if Instant::now() > deadline {
            return Err(format!("{what}: not done after {CATCH_UP_LIMIT:?}: {s}").into());
        }
        tokio::time::sleep(STATUS_EVERY).await;
    }
}

/// Waits until the backup holds every commit up to the server's head now.
async fn wait_shipped(url: &str, database_id: &str, what: &str) -> Res<serde_json::Value> {
    let target = head(&status(url, database_id).await?);
    wait_status(url, database_id, what, |st| shipped(st) >= target).await
}

/// Waits until the backup's first snapshot landed (`backup.lastSuccessMs` set, and everything
/// up to the head at the start shipped).
async fn wait_first_snapshot(url: &str, database_id: &str) -> Res<()> {
    let target = head(&status(url, database_id).await?);
    wait_status(url, database_id, "the first snapshot", |st| {
        !st["backup"]["lastSuccessMs"].is_null() && shipped(st) >= target
    })
    .await?;
    Ok(())
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

async fn run_round(s: &Settings, b: &Backups, round: u64, dir: &Path) -> Res<Round> {
    let mut r = Round::default();

    // 1. Backup lag under C writers.
    let name = format!("round{round}/lag");
    let server = Server::start(s, &dir.join("lag.sqlite3"), &b.serve_args(s, &name)).await?;
    let kv = client(&server.url).await?;
    let database_id = kv.database_id().await?.to_string();
    kv.close().await?;
    wait_first_snapshot(&server.url, &database_id).await?;
    let lag = lag_workload(s, b, &name, &server.url, &database_id).await?;
    server.stop().await?;
    r.lag_p50_ms = lag.p50_ms;
    r.lag_p99_ms = lag.p99_ms;
    r.lag_max_ms = lag.max_ms;
    r.lag_samples = lag.samples;
    r.lag_writes_per_s = lag.writes_per_s;
    r.lag_commits_per_s = lag.commits_per_s;
    r.lag_objects = lag.objects;
    r.status_lag_p50_ms = lag.status_p50_ms;
    r.status_lag_p99_ms = lag.status_p99_ms;
    r.errors += lag.errors;
    eprintln!(
        "    lag (bucket listing): {} samples, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
         (status endpoint: p50 {:.1} ms, p99 {:.1} ms); {:.0} sets/s by {} writers ({:.0} \
         versions/s); {} log objects; errors {}{}",
        lag.samples,
        lag.p50_ms,
        lag.p99_ms,
        lag.max_ms,
        lag.status_p50_ms,
        lag.status_p99_ms,
        lag.writes_per_s,
        s.clients,
        lag.commits_per_s,
        lag.objects,
        lag.errors,
        lag.first_error.map(|e| format!(" (first: {e})")).unwrap_or_default()
    );

    // 2. N entries through a fresh server, all in the log; restored.
    let name = format!("round{round}/log");
    let db = dir.join("source.sqlite3");
    let server = Server::start(s, &db, &b.serve_args(s, &name)).await?;
    let kv = client(&server.url).await?;
    let database_id = kv.database_id().await?.to_string();
    wait_first_snapshot(&server.url, &database_id).await?;
    let keys: Vec<Key> = (0..s.entries).map(|i| key!["e", i]).collect();
    let started = Instant::now();
    write_batches(&kv, keys, FILL_TASKS).await?;
    r.fill_entries_per_s = s.entries as f64 / started.elapsed().as_secs_f64();
    let written = Instant::now();
    let st = status(&server.url, &database_id).await?;
    let backlog = head(&st).saturating_sub(shipped(&st));
    wait_shipped(&server.url, &database_id, "shipping the log").await?;
    let shipped_after = started.elapsed().as_secs_f64();
    r.catch_up_secs = written.elapsed().as_secs_f64();
    // Each commit of the fill is one atomic write of BATCH entries.
    r.ship_entries_per_s = (backlog * BATCH as u64).min(s.entries) as f64 / r.catch_up_secs;
    kv.close().await?;
    server.stop().await?;
    r.log_restore_ranges = b.list_logs(&name).await?.len() as u64;
    r.log_restore = restore(s, b, &name, &dir.join("restored-log.sqlite3"), s.entries).await?;
    eprintln!(
        "    restore, all in the log: {} entries ({} log objects) in {:.3} s end to end ({:.2} \
         s by openkv's count): {:.0} entries/s; written at {:.0} entries/s, all shipped {:.2} \
         s after the first write; the {} commits not shipped when the writes ended took \
         {:.2} s more: {:.0} entries/s",
        r.log_restore.entries,
        r.log_restore_ranges,
        r.log_restore.secs,
        r.log_restore.own_secs,
        r.log_restore.entries_per_s(),
        r.fill_entries_per_s,
        shipped_after,
        backlog,
        r.catch_up_secs,
        r.ship_entries_per_s
    );

    // 3. The same file backed up anew: its first snapshot carries the N entries; N/100 more in
    // the log.
    let name = format!("round{round}/snapshot");
    let started = Instant::now();
    let server = Server::start(s, &db, &b.serve_args(s, &name)).await?;
    let kv = client(&server.url).await?;
    let database_id = kv.database_id().await?.to_string();
    wait_first_snapshot(&server.url, &database_id).await?;
    r.snapshot_secs = started.elapsed().as_secs_f64();
    let keys: Vec<Key> = (0..s.extra_entries()).map(|i| key!["s", i]).collect();
    write_batches(&kv, keys, FILL_TASKS).await?;
    wait_shipped(&server.url, &database_id, "shipping the log after the snapshot").await?;
    kv.close().await?;
    server.stop().await?;
    let expected = s.entries + s.extra_entries();
    r.snap_restore = restore(s, b, &name, &dir.join("restored-snapshot.sqlite3"), expected).await?;
    eprintln!(
        "    restore, snapshot + log: {} entries ({} from the snapshot) in {:.3} s end to end \
         ({:.2} s by openkv's count): {:.0} entries/s; the snapshot landed {:.2} s after the \
         server's spawn",
        r.snap_restore.entries,
        r.snap_restore.base_entries,
        r.snap_restore.secs,
        r.snap_restore.own_secs,
        r.snap_restore.entries_per_s(),
        r.snapshot_secs
    );

    // 4. concurrent64_set with and without the backup: both servers up, measured in
    // alternating slices; who starts alternates by round.
    let name = format!("round{round}/cost");
    let on = Server::start(s, &dir.join("backup-on.sqlite3"), &b.serve_args(s, &name)).await?;
    let off = Server::start(s, &dir.join("backup-off.sqlite3"), &[]).await?;
    let first_on = round % 2 == 1;
    let paired = set_workload_paired(s, &on.url, &off.url, first_on).await?;
    on.stop().await?;
    off.stop().await?;
    for (what, sets) in [("with --backup-to", &paired.on), ("without", &paired.off)] {
        r.errors += sets.errors;
        eprintln!(
            "    concurrent{}_set, {what}: {:.0} ops/s, p99 {:.2} ms, errors {}",
            s.clients, sets.ops_per_s, sets.p99_ms, sets.errors
        );
    }
    r.set_backup_on = paired.on.ops_per_s;
    r.set_backup_off = paired.off.ops_per_s;
    r.unshipped_share = paired.unshipped_share;
    eprintln!(
        "    backup on ÷ off: {:.3}; {:.1}% of the backup-on slices' commits were shipped after \
         their slice",
        r.cost_ratio(),
        r.unshipped_share * 100.0
    );
    Ok(r)
}

// --- restore --------------------------------------------------------------------------------

/// What one `openkv restore --from` did.
#[derive(Clone, Debug, Default)]
struct Restored {
    /// Wall time of the process, spawn to exit.
    secs: f64,
    /// The time it reports itself (after reading the catalog).
    own_secs: f64,
    entries: u64,
    base_entries: u64,
}

impl Restored {
    fn entries_per_s(&self) -> f64 {
        self.entries as f64 / self.secs
    }
}

/// Times `openkv --db DB restore --from LOCATION --at latest`, end to end; checks that it
/// restored `expected` entries.
async fn restore(s: &Settings, b: &Backups, name: &str, db: &Path, expected: u64) -> Res<Restored> {
    let started = Instant::now();
    let out = Command::new(&s.openkv)
        .arg("--db")
        .arg(db)
        .args(["restore", "--from", &b.location(name), "--at", "latest"])
        .args(b.s3_args())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .await?;
    let secs = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("openkv restore --from {} failed: {stderr}", b.location(name)).into());
    }
    // openkv: restored FROM into DB at versionstamp V (committed T): E entries (B from
    // snapshot G, then C commits) in S s
    let line = stderr.lines().find(|l| l.starts_with("openkv: restored ")).unwrap_or("");
    let trailing_number = |text: &str| -> Option<f64> {
        let start = text.rfind(|c: char| !(c.is_ascii_digit() || c == '.')).map_or(0, |i| i + 1);
        text[start..].parse().ok()
    };
    let number_before = |marker: &str| trailing_number(&line[..line.find(marker)?]);
    let (Some(entries), Some(base), Some(own)) = (
        number_before(" entries ("),
        number_before(" from snapshot"),
        line.strip_suffix(" s").and_then(trailing_number),
    ) else {
        return Err(format!("openkv restore said something unexpected: {stderr}").into());
    };
    let restored =
        Restored { secs, own_secs: own, entries: entries as u64, base_entries: base as u64 };
    if restored.entries != expected {
        return Err(format!(
            "openkv restore --from {} restored {} entries, not {expected}: {stderr}",
            b.location(name),
            restored.entries
        )
        .into());
    }
    Ok(restored)
}

// --- workloads ----------------------------------------------------------------------------

/// A throughput workload's figures.
struct Throughput {
    ops_per_s: f64,
    p99_ms: f64,
    errors: u64,
}

/// What one task of a timed workload did.
#[derive(Default)]
struct TaskRun {
    latencies_us: Vec<u32>,
    /// Successful operations, counted or not.
    ok: u64,
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
            Ok(()) => {
                self.ok += 1;
                if start >= from && end <= until {
                    self.latencies_us.push((end - start).as_micros().min(u32::MAX as u128) as u32)
                }
            }
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

fn throughput(seconds: f64, runs: Vec<TaskRun>) -> Throughput {
    let mut lat: Vec<f64> =
        runs.iter().flat_map(|r| r.latencies_us.iter().map(|&us| us as f64 / 1000.0)).collect();
    lat.sort_unstable_by(f64::total_cmp);
    if let Some(e) = runs.iter().find_map(|r| r.first_error.clone()) {
        eprintln!("    first error: {e}");
    }
    Throughput {
        ops_per_s: lat.len() as f64 / seconds,
        p99_ms: quantile(&lat, 0.99),
        errors: runs.iter().map(|r| r.errors).sum(),
    }
}

/// concurrent64_set with and without the backup, and how much of the backup-on server's
/// commits were still unshipped when its slices ended.
struct Paired {
    on: Throughput,
    off: Throughput,
    unshipped_share: f64,
}

/// concurrent64_set on two servers (`on` backs up, `off` does not): C tasks per server, each
/// doing sequential sets of fresh keys. The servers take turns in slices of about `--slice`
/// (A B B A A B …, starting with `on` when `first_on`), so both see the same machine — on this
/// shared VM the rest of the load and the disk's flush times drift by more than the difference
/// measured. After a warm-up on each, every server gets `--cost-seconds` of measured slices; a
/// slice counts the sets that started and ended within it, and the next starts once its last
/// set returned and — after a slice of `on` — once `on`'s backup holds every commit.
async fn set_workload_paired(s: &Settings, on: &str, off: &str, first_on: bool) -> Res<Paired> {
    let kvs = [clients(on, s.clients).await?, clients(off, s.clients).await?];
    let database_id = kvs[0][0].database_id().await?.to_string();
    wait_first_snapshot(on, &database_id).await?;
    let slices = ((s.cost_seconds / s.slice).round() as u64).max(2);
    let slice = s.cost_seconds / slices as f64;
    let mut runs: [Vec<TaskRun>; 2] = [Vec::new(), Vec::new()];
    let (mut unshipped, mut committed) = (0u64, 0u64);
    let start = usize::from(!first_on);
    for server in [start, 1 - start] {
        set_slice(&kvs[server], 0, s.warmup).await?;
        if server == 0 {
            wait_shipped(on, &database_id, "catching up after a warm-up").await?;
        }
    }
    for pair in 0..slices {
        let order = if pair % 2 == 0 { [start, 1 - start] } else { [1 - start, start] };
        for server in order {
            let done = set_slice(&kvs[server], pair + 1, slice).await?;
            if server == 0 {
                let st = status(on, &database_id).await?;
                unshipped += head(&st).saturating_sub(shipped(&st));
                committed += done.iter().map(|r| r.ok).sum::<u64>();
                wait_shipped(on, &database_id, "catching up after a slice").await?;
            }
            runs[server].extend(done);
        }
    }
    let [kvs_on, kvs_off] = kvs;
    close_all(kvs_on).await?;
    close_all(kvs_off).await?;
    let [runs_on, runs_off] = runs;
    Ok(Paired {
        on: throughput(s.cost_seconds, runs_on),
        off: throughput(s.cost_seconds, runs_off),
        unshipped_share: unshipped as f64 / committed.max(1) as f64,
    })
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

/// The backup lag workload's figures.
struct Lag {
    samples: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    status_p50_ms: f64,
    status_p99_ms: f64,
    writes_per_s: f64,
    /// Commits (versions) per second while the writers ran.
    commits_per_s: f64,
    /// Mutation ranges written while it ran.
    objects: u64,
    errors: u64,
    first_error: Option<String>,
}

/// How a follower learns what the backup holds.
enum Probe {
    /// Lists `logs/` of the backup in the store (the names after `after`).
    Listing { store: Arc<dyn ObjectStore>, logs: ObjectPath, after: Option<ObjectPath> },
    /// Asks the server's status for `backup.shippedVersion`.
    Status { url: String, database_id: String },
}

impl Probe {
    /// The newest commit the backup is known to hold (ZERO: none yet).
    async fn newest(&mut self) -> Res<Versionstamp> {
        match self {
            Probe::Listing { store, logs, after } => {
                let metas: Vec<ObjectMeta> = match after {
                    Some(after) => store.list_with_offset(Some(logs), after).try_collect().await?,
                    None => store.list(Some(logs)).try_collect().await?,
                };
                let mut newest = Versionstamp::ZERO;
                for meta in metas {
                    if let Some(last) = last_commit(&meta.location) {
                        newest = newest.max(last);
                    }
                    if after.as_ref().is_none_or(|a| meta.location > *a) {
                        *after = Some(meta.location);
                    }
                }
                Ok(newest)
            }
            Probe::Status { url, database_id } => {
                let shipped = shipped(&status(url, database_id).await?);
                // Every versionstamp of that commit counter (SQLite's end in 0000).
                let mut vs = Versionstamp::from_version(shipped);
                vs.0[8..].fill(0xff);
                Ok(if shipped == 0 { Versionstamp::ZERO } else { vs })
            }
        }
    }
}

/// What a follower saw: each time the backup's newest commit grew, the new one and when that
/// was learnt (the return of the listing or status answer).
struct Followed {
    seen: Vec<(Versionstamp, Instant)>,
    errors: u64,
    first_error: Option<String>,
}

/// The last sampled commit, and when the writers were done: set once they are.
type Goal = watch::Receiver<Option<(Versionstamp, Instant)>>;

/// Asks `probe` every `period` until it shows the goal (or [`CATCH_UP_LIMIT`] after it was
/// set).
async fn follow(mut probe: Probe, period: Duration, goal: Goal) -> Followed {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut out = Followed { seen: Vec::new(), errors: 0, first_error: None };
    let mut best = Versionstamp::ZERO;
    loop {
        tick.tick().await;
        match probe.newest().await {
            Ok(newest) if newest > best => {
                best = newest;
                out.seen.push((newest, Instant::now()));
            }
            Ok(_) => {}
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert_with(|| e.to_string());
            }
        }
        let goal = *goal.borrow();
        if let Some((last, since)) = goal {
            if best >= last {
                return out;
            }
            if since.elapsed() > CATCH_UP_LIMIT {
                out.errors += 1;
                out.first_error.get_or_insert_with(|| {
                    format!("{last} not in the backup {CATCH_UP_LIMIT:?} after the last write")
                });
                return out;
            }
        }
    }
}

/// Each sample's lag: from its acknowledgement to the first time a follower saw the backup
/// reach it (None: never).
fn lags_ms(samples: &[(Versionstamp, Instant)], seen: &[(Versionstamp, Instant)]) -> Vec<f64> {
    let mut lags: Vec<f64> = samples
        .iter()
        .filter_map(|(vs, acked)| {
            let i = seen.partition_point(|(newest, _)| newest < vs);
            let (_, at) = seen.get(i)?;
            Some(at.saturating_duration_since(*acked).as_secs_f64() * 1000.0)
        })
        .collect();
    lags.sort_unstable_by(f64::total_cmp);
    lags
}

/// C writers on the server at `url`, backing up to backup `name`; every commit acknowledged in
/// the measured window is a sample, followed in the bucket's listing and in the status.
async fn lag_workload(
    s: &Settings,
    b: &Backups,
    name: &str,
    url: &str,
    database_id: &str,
) -> Res<Lag> {
    let writers = clients(url, s.clients).await?;
    let head_before = head(&status(url, database_id).await?);
    let writing = Instant::now();
    let from = Instant::now() + secs(s.warmup);
    let until = from + secs(s.seconds);
    let samples: Arc<Mutex<Vec<(Versionstamp, Instant)>>> = Arc::new(Mutex::new(Vec::new()));
    let (goal_tx, goal) = watch::channel(None);
    let listing = Probe::Listing { store: b.store.clone(), logs: b.logs(name), after: None };
    let listing = tokio::spawn(follow(listing, s.poll, goal.clone()));
    let probe = Probe::Status { url: url.to_owned(), database_id: database_id.to_owned() };
    let by_status = tokio::spawn(follow(probe, s.poll, goal));
    let mut writer_tasks = Vec::new();
    for (i, kv) in writers.iter().enumerate() {
        let (kv, samples) = (kv.clone(), samples.clone());
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
                        samples.lock().unwrap().push((*versionstamp, acked));
                    }
                }
                run.record(start, from, until, result.map(|_| ()));
            }
            run
        }));
    }
    let mut runs = Vec::new();
    for t in writer_tasks {
        runs.push(t.await?);
    }
    let commits_per_s = head(&status(url, database_id).await?).saturating_sub(head_before) as f64
        / writing.elapsed().as_secs_f64();
    let samples = std::mem::take(&mut *samples.lock().unwrap());
    let last = samples.iter().map(|(vs, _)| *vs).max().unwrap_or(Versionstamp::ZERO);
    goal_tx.send_replace(Some((last, Instant::now())));
    let listing = listing.await?;
    let by_status = by_status.await?;
    let mut errors: u64 = runs.iter().map(|r| r.errors).sum();
    errors += listing.errors + by_status.errors;
    let first_error = runs
        .iter()
        .find_map(|r| r.first_error.clone())
        .or(listing.first_error)
        .or(by_status.first_error);
    let writes: usize = runs.iter().map(|r| r.latencies_us.len()).sum();
    close_all(writers).await?;
    let lags = lags_ms(&samples, &listing.seen);
    let status_lags = lags_ms(&samples, &by_status.seen);
    let missing = samples.len() - lags.len();
    if missing > 0 {
        return Err(format!("{missing} sampled commits never showed up in the bucket").into());
    }
    let objects = b.list_logs(name).await?.len() as u64;
    Ok(Lag {
        samples: lags.len(),
        p50_ms: quantile(&lags, 0.50),
        p99_ms: quantile(&lags, 0.99),
        max_ms: lags.last().copied().unwrap_or(f64::NAN),
        status_p50_ms: quantile(&status_lags, 0.50),
        status_p99_ms: quantile(&status_lags, 0.99),
        writes_per_s: writes as f64 / s.seconds,
        commits_per_s,
        objects,
        errors,
        first_error,
    })
}

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

/// A row of the table: a name, the rounds' values, a target and whether the median meets it.
struct Row {
    metric: String,
    values: Vec<f64>,
    /// `(text, met)`; `met` is None for a reference figure.
    target: (String, Option<bool>),
}

fn rows(s: &Settings, rounds: &[Round]) -> Vec<Row> {
    let col = |f: fn(&Round) -> f64| rounds.iter().map(f).collect::<Vec<f64>>();
    let c = s.clients;
    let none = || (String::from("—"), None);
    let lag_limit = 2.0 * s.interval_ms as f64;
    let lag_p99 = col(|r| r.lag_p99_ms);
    let log_restore = col(|r| r.log_restore.entries_per_s());
    let snap_restore = col(|r| r.snap_restore.entries_per_s());
    let ratio = col(Round::cost_ratio);
    let restore_target = |v: &[f64]| (String::from("≥ 100,000/s"), Some(median(v) >= 100_000.0));
    let extra = s.extra_entries();
    vec![
        Row {
            metric: format!("backup lag p50 under {c} writers (ms; in the bucket's listing)"),
            values: col(|r| r.lag_p50_ms),
            target: none(),
        },
        Row {
            metric: format!("backup lag p99 under {c} writers (ms; in the bucket's listing)"),
            target: (
                format!("≤ 2 × interval = {} ms", fmt(lag_limit)),
                Some(median(&lag_p99) <= lag_limit),
            ),
            values: lag_p99,
        },
        Row { metric: "  (lag: max, ms)".into(), values: col(|r| r.lag_max_ms), target: none() },
        Row {
            metric: "  (lag: samples per round = sets acknowledged in the window)".into(),
            values: col(|r| r.lag_samples as f64),
            target: none(),
        },
        Row {
            metric: format!("  (lag: sets/s by the {c} writers)"),
            values: col(|r| r.lag_writes_per_s),
            target: none(),
        },
        Row {
            metric: "  (lag: versions/s, the commit counter's rate)".into(),
            values: col(|r| r.lag_commits_per_s),
            target: none(),
        },
        Row {
            metric: "  (lag: log objects written per round)".into(),
            values: col(|r| r.lag_objects as f64),
            target: none(),
        },
        Row {
            metric: "  (lag p50 per the status endpoint's shippedVersion, ms)".into(),
            values: col(|r| r.status_lag_p50_ms),
            target: none(),
        },
        Row {
            metric: "  (lag p99 per the status endpoint's shippedVersion, ms)".into(),
            values: col(|r| r.status_lag_p99_ms),
            target: none(),
        },
        Row {
            metric: format!(
                "restore, all {} entries in the log (entries/s, `openkv restore` end to end)",
                s.entries
            ),
            target: restore_target(&log_restore),
            values: log_restore,
        },
        Row {
            metric: "  (restore from the log: seconds end to end)".into(),
            values: col(|r| r.log_restore.secs),
            target: none(),
        },
        Row {
            metric: "  (restore from the log: seconds by openkv's own count)".into(),
            values: col(|r| r.log_restore.own_secs),
            target: none(),
        },
        Row {
            metric: "  (restore from the log: log objects)".into(),
            values: col(|r| r.log_restore_ranges as f64),
            target: none(),
        },
        Row {
            metric: format!(
                "  (writing the {} entries: entries/s, 4 × 1,000-set commits)",
                s.entries
            ),
            values: col(|r| r.fill_entries_per_s),
            target: none(),
        },
        Row {
            metric: "  (shipping the fill's backlog: entries unshipped at the last write ÷ seconds to all \
                     shipped)"
                .into(),
            values: col(|r| r.ship_entries_per_s),
            target: none(),
        },
        Row {
            metric: "  (… seconds from the last write to all shipped)".into(),
            values: col(|r| r.catch_up_secs),
            target: none(),
        },
        Row {
            metric: format!(
                "restore, snapshot of {} entries + {extra} in the log (entries/s, end to end)",
                s.entries
            ),
            target: restore_target(&snap_restore),
            values: snap_restore,
        },
        Row {
            metric: "  (restore from the snapshot: seconds end to end)".into(),
            values: col(|r| r.snap_restore.secs),
            target: none(),
        },
        Row {
            metric: "  (restore from the snapshot: seconds by openkv's own count)".into(),
            values: col(|r| r.snap_restore.own_secs),
            target: none(),
        },
        Row {
            metric: format!("  (first snapshot of {} entries: seconds from the spawn)", s.entries),
            values: col(|r| r.snapshot_secs),
            target: none(),
        },
        Row {
            metric: format!("concurrent{c}_set, with --backup-to (ops/s)"),
            values: col(|r| r.set_backup_on),
            target: none(),
        },
        Row {
            metric: format!("concurrent{c}_set, without (ops/s)"),
            values: col(|r| r.set_backup_off),
            target: none(),
        },
        Row {
            metric: "backup on ÷ off (per round)".into(),
            target: ("≥ 0.90 (cost ≤ 10%)".into(), Some(median(&ratio) >= 0.90)),
            values: ratio,
        },
        Row {
            metric: "  (share of the backup-on slices' commits shipped after the slice, %)".into(),
            values: col(|r| r.unshipped_share * 100.0),
            target: none(),
        },
    ]
}

fn print_report(s: &Settings, b: &Backups, rounds: &[Round], command_line: &str) {
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
    let storage = match &b.storage {
        Storage::S3 { .. } => "s3s-fs (S3 protocol) on 127.0.0.1",
        Storage::Dir(_) => "a local directory",
    };
    println!(
        "\n**openkv serve --backup-to: lag, restore and cost** — {cores} cores ({cpu}); median \
         of {} round(s); backup to {storage}, --backup-interval {} ms; lag: {} s (+{} s \
         warm-up), bucket listed every {} ms; restore: {} entries of {} bytes; cost: {} s per \
         server in {} s slices; {} clients; servers, object storage, SQLite files and clients \
         on this one machine\n",
        s.rounds,
        s.interval_ms,
        s.seconds,
        s.warmup,
        s.poll.as_millis(),
        s.entries,
        VALUE_BYTES,
        s.cost_seconds,
        s.slice,
        s.clients
    );
    println!("| metric | median | rounds | target |");
    println!("|---|---:|---|---|");
    for row in rows(s, rounds) {
        let m = median(&row.values);
        let each: Vec<String> = row.values.iter().map(|&v| fmt(v)).collect();
        let target = match row.target {
            (text, Some(met)) => format!("{text}: {}", if met { "met" } else { "**NOT met**" }),
            (text, None) => text,
        };
        println!("| {} | {} | {} | {target} |", row.metric, fmt(m), each.join(", "));
    }
    let errors: u64 = rounds.iter().map(|r| r.errors).sum();
    println!(
        "\nLag = a commit's acknowledgement at the client → the return of the first listing of \
         the backup's `logs/` (every {} ms) showing an object whose name's last versionstamp \
         reaches it: an upper bound, by up to one period and one listing.",
        s.poll.as_millis()
    );
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
            "rounds": s.rounds, "seconds": s.seconds, "warmup": s.warmup,
            "costSeconds": s.cost_seconds, "slice": s.slice, "entries": s.entries,
            "clients": s.clients, "intervalMs": s.interval_ms,
            "pollMs": s.poll.as_millis() as u64,
        },
        "table": table,
        "rounds": rounds.iter().map(|r| json!({
            "lagP50Ms": r.lag_p50_ms, "lagP99Ms": r.lag_p99_ms, "lagMaxMs": r.lag_max_ms,
            "lagSamples": r.lag_samples, "lagWritesPerS": r.lag_writes_per_s,
            "lagCommitsPerS": r.lag_commits_per_s,
            "lagObjects": r.lag_objects, "statusLagP50Ms": r.status_lag_p50_ms,
            "statusLagP99Ms": r.status_lag_p99_ms, "fillEntriesPerS": r.fill_entries_per_s,
            "catchUpSecs": r.catch_up_secs, "shipEntriesPerS": r.ship_entries_per_s,
            "logRestoreSecs": r.log_restore.secs, "logRestoreOwnSecs": r.log_restore.own_secs,
            "logRestoreEntries": r.log_restore.entries, "logRestoreRanges": r.log_restore_ranges,
            "snapshotRestoreSecs": r.snap_restore.secs,
            "snapshotRestoreOwnSecs": r.snap_restore.own_secs,
            "snapshotRestoreEntries": r.snap_restore.entries,
            "snapshotRestoreBaseEntries": r.snap_restore.base_entries,
            "snapshotSecs": r.snapshot_secs, "setBackupOn": r.set_backup_on,
            "setBackupOff": r.set_backup_off, "unshippedShare": r.unshipped_share,
            "errors": r.errors,
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
