//! `bench-postgres`: `openkv serve` on SQLite against `openkv serve` on PostgreSQL, one server
//! and two servers sharing one schema, with 64 Rust KV Connect clients.
//!
//! ```text
//! bench-postgres --pg-url postgres://USER@HOST:PORT/DB [--openkv PATH] [--seconds N]
//!                [--warmup S] [--clients C] [--setups sqlite,pg1,pg2]
//!                [--workloads check_set,set,get] [--dir DIR] [--json FILE] [--max-wait S]
//! ```
//!
//! `scripts/bench-postgres.sh` builds everything, starts a throwaway PostgreSQL cluster and
//! runs this. Setups, each on a fresh database:
//!
//! | setup | servers |
//! |---|---|
//! | `sqlite` | one `openkv serve --db <file>.sqlite3` |
//! | `pg1` | one `openkv serve --db postgres://…?openkv_schema=<fresh>` |
//! | `pg2` | two `openkv serve` on one fresh schema; clients split evenly (32/32) |
//!
//! Workloads, each run by C (default 64) concurrent clients — one `Kv` handle, hence its own
//! connection, per client — for `--warmup` + `--seconds` seconds; only operations that start
//! after the warm-up count:
//!
//! | workload | one operation |
//! |---|---|
//! | `check_set` | an atomic check (the key's last versionstamp) + set on the client's own key (64 distinct keys; the final value of each is checked against the commits counted) |
//! | `set` | a plain set of the client's own key |
//! | `get` | a get of one of 1,000 preloaded keys (~100-byte values), chosen at random |
//!
//! Per workload and setup it prints ops/s, p50 and p99 latency, errors, and where the CPU went
//! (the `openkv serve` processes, this process's clients, the `postgres` processes, the rest of
//! the machine), then the ratios and the targets of the PostgreSQL issue: ≥ 5,000 `check_set`/s
//! through one server, and two servers ≥ 1.6 × one server on `get`. Nothing asserts timings.

// why: a benchmark tool, not product code; a failed setup or measurement ends the run with a
// panic naming it, which is what this tool should do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::error::Error;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use openkv::{key, Key, Kv, KvU64, OpenOptions, Value, Versionstamp};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

const TOKEN: &str = "bench-postgres-token-0123456789";
/// Keys preloaded for the `get` workload.
const READ_KEYS: u64 = 1000;

#[derive(Parser, Debug)]
#[command(about = "openkv serve on SQLite vs PostgreSQL (one and two servers), 64 Rust clients")]
struct Args {
    /// Base URL of a PostgreSQL database (no openkv_schema: each setup makes a fresh schema).
    #[arg(long, env = "OPENKV_BENCH_POSTGRES_URL")]
    pg_url: Option<String>,
    /// The openkv binary (default: `openkv` next to this program).
    #[arg(long)]
    openkv: Option<PathBuf>,
    /// Measured seconds per workload.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Warm-up seconds per workload (operations not counted).
    #[arg(long, default_value_t = 1)]
    warmup: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Setups to run, in this order.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,pg1,pg2")]
    setups: Vec<String>,
    /// Workloads to run, in this order.
    #[arg(long, value_delimiter = ',', default_value = "check_set,set,get")]
    workloads: Vec<String>,
    /// Where the temporary directory (SQLite file) goes.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Also write every figure as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Before each setup, wait up to this many seconds (0: don't) for the rest of the machine
    /// to quiet down (under 20% of one core busy over one second): this VM is shared.
    #[arg(long, default_value_t = 300)]
    max_wait: u64,
}

/// One workload's figures on one setup.
#[derive(Clone, Debug)]
struct Figures {
    setup: String,
    workload: String,
    ops: u64,
    ops_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    first_error: Option<String>,
    check_failures: u64,
    /// Cores busy on average: the servers, this process, PostgreSQL, everything else.
    cpu_servers: f64,
    cpu_clients: f64,
    cpu_postgres: f64,
    cpu_other: f64,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("bench-postgres: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Res<()> {
    for w in &args.workloads {
        if !["check_set", "set", "get"].contains(&w.as_str()) {
            return Err(format!("unknown workload {w:?} (check_set, set, get)").into());
        }
    }
    for s in &args.setups {
        if !["sqlite", "pg1", "pg2"].contains(&s.as_str()) {
            return Err(format!("unknown setup {s:?} (sqlite, pg1, pg2)").into());
        }
        if s.starts_with("pg") && args.pg_url.is_none() {
            return Err("the pg1/pg2 setups need --pg-url (or OPENKV_BENCH_POSTGRES_URL)".into());
        }
    }
    if args.clients == 0 || args.seconds == 0 {
        return Err("--clients and --seconds must be positive".into());
    }
    let openkv = openkv_bench::openkv_binary(args.openkv.as_deref())?;
    let dir = match &args.dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    eprintln!(
        "bench-postgres: {} clients, {} s (+{} s warm-up) per workload; openkv {}",
        args.clients,
        args.seconds,
        args.warmup,
        openkv.display()
    );

    let mut all = Vec::new();
    for setup in &args.setups {
        let db = match setup.as_str() {
            "sqlite" => dir.path().join("bench.sqlite3").to_str().unwrap().to_owned(),
            _ => {
                let base = args.pg_url.as_deref().unwrap();
                let sep = if base.contains('?') { '&' } else { '?' };
                format!("{base}{sep}openkv_schema=bench_{}", random_hex())
            }
        };
        let n_servers = if setup == "pg2" { 2 } else { 1 };
        openkv_bench::wait_for_quiet("bench-postgres", args.max_wait);
        eprintln!("\n==> {setup}: {n_servers} server(s) on {db}");
        let mut servers = Vec::new();
        for _ in 0..n_servers {
            servers.push(ServerProcess::start(&openkv, &db)?);
        }
        let figures = rt.block_on(run_setup(&args, setup, &servers));
        for server in servers {
            server.stop()?;
        }
        all.extend(figures?);
    }
    print_report(&args, &all);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&to_json(&all))?)?;
        eprintln!("figures written to {}", path.display());
    }
    Ok(())
}

/// A running `openkv serve`.
struct ServerProcess {
    child: Child,
    url: String,
}

impl ServerProcess {
    fn start(openkv: &PathBuf, db: &str) -> Res<ServerProcess> {
        let mut child = Command::new(openkv)
            .args(["--db", db, "serve", "--addr", "127.0.0.1:0", "--access-token", TOKEN])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", openkv.display()))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line)?;
        let Some(url) = line.split_whitespace().last().filter(|u| u.starts_with("http")) else {
            let _ = child.kill();
            let status = child.wait()?;
            return Err(format!("openkv serve --db {db} did not start ({status})").into());
        };
        let url = url.to_owned();
        eprintln!("    openkv serve pid {} at {url}", child.id());
        Ok(ServerProcess { child, url })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(mut self) -> Res<()> {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        let status = self.child.wait()?;
        if !status.success() {
            return Err(format!("openkv serve exited with {status} after SIGTERM").into());
        }
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn run_setup(args: &Args, setup: &str, servers: &[ServerProcess]) -> Res<Vec<Figures>> {
    // Client i talks to server i mod n: 32/32 for two servers.
    let mut clients = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let url = &servers[i % servers.len()].url;
        let kv = OpenOptions::new()
            .access_token(TOKEN)
            .remote_retry_timeout(Duration::from_secs(30))
            .open(url)
            .await
            .map_err(|e| format!("opening {url}: {e}"))?;
        clients.push(kv);
    }
    preload(&clients[0], args.clients).await?;
    let pids: Vec<u32> = servers.iter().map(ServerProcess::pid).collect();
    let mut out = Vec::new();
    for workload in &args.workloads {
        let f = run_workload(args, setup, workload, &clients, &pids).await?;
        eprintln!(
            "    {workload:>9}: {:>9.0} ops/s  p50 {:>6.2} ms  p99 {:>6.2} ms  errors {}  \
             cpu: servers {:.2}, clients {:.2}, postgres {:.2}, other {:.2} cores",
            f.ops_per_s,
            f.p50_ms,
            f.p99_ms,
            f.errors,
            f.cpu_servers,
            f.cpu_clients,
            f.cpu_postgres,
            f.cpu_other
        );
        if let Some(e) = &f.first_error {
            eprintln!("    first error: {e}");
        }
        out.push(f);
    }
    for kv in &clients {
        kv.close().await?;
    }
    Ok(out)
}

fn own_key(prefix: &str, client: usize) -> Key {
    key![prefix, client as u64]
}

fn read_key(i: u64) -> Key {
    key!["r", i]
}

/// The clients' own keys (`check_set`, `set`) and the 1,000 read keys.
async fn preload(kv: &Kv, clients: usize) -> Res<()> {
    let value = Value::Bytes(vec![0x5a; 100]);
    for chunk in (0..READ_KEYS).collect::<Vec<_>>().chunks(200) {
        let mut op = kv.atomic();
        for &i in chunk {
            op = op.set(&read_key(i), &value);
        }
        op.commit().await?;
    }
    for chunk in (0..clients).collect::<Vec<_>>().chunks(200) {
        let mut op = kv.atomic();
        for &c in chunk {
            op = op.set(&own_key("cs", c), KvU64(0)).set(&own_key("set", c), KvU64(0));
        }
        op.commit().await?;
    }
    Ok(())
}

/// What one client did in one workload.
#[derive(Default)]
struct ClientRun {
    latencies_us: Vec<u32>,
    /// Every commit, warm-up included (for the final value check).
    commits: u64,
    errors: u64,
    first_error: Option<String>,
    check_failures: u64,
}

async fn client_loop(
    kv: Kv,
    client: usize,
    workload: String,
    measure_from: Instant,
    until: Instant,
) -> ClientRun {
    let mut run = ClientRun::default();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (client as u64).wrapping_mul(0x2545_f491_4f6c_dd1d);
    let cs_key = own_key("cs", client);
    let set_key = own_key("set", client);
    // check_set: the key's current value and versionstamp, then one atomic write per op.
    let mut current: Option<(u64, Versionstamp)> = None;
    if workload == "check_set" {
        match kv.get(&cs_key).await {
            Ok(Some(e)) => current = Some((e.value.as_u64().unwrap_or(0), e.versionstamp)),
            Ok(None) => {}
            Err(e) => {
                run.errors += 1;
                run.first_error = Some(e.to_string());
            }
        }
    }
    let mut n = 0u64;
    loop {
        let start = Instant::now();
        if start >= until {
            break;
        }
        let result: Result<bool, openkv::Error> = match workload.as_str() {
            "check_set" => {
                let (value, stamp) = match current {
                    Some((v, s)) => (v, Some(s)),
                    None => (0, None),
                };
                let outcome =
                    kv.atomic().check(&cs_key, stamp).set(&cs_key, KvU64(value + 1)).commit().await;
                match outcome.map(|o| o.versionstamp()) {
                    Ok(Some(v)) => {
                        current = Some((value + 1, v));
                        run.commits += 1;
                        Ok(true)
                    }
                    Ok(None) => {
                        // No one else writes this key: re-read and go on, but count it.
                        run.check_failures += 1;
                        if let Ok(Some(e)) = kv.get(&cs_key).await {
                            current = Some((e.value.as_u64().unwrap_or(0), e.versionstamp));
                        }
                        Ok(false)
                    }
                    Err(e) => Err(e),
                }
            }
            "set" => {
                n += 1;
                kv.set(&set_key, KvU64(n)).await.map(|_| true)
            }
            _ => {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                kv.get(&read_key(rng % READ_KEYS)).await.map(|e| e.is_some())
            }
        };
        let end = Instant::now();
        match result {
            Ok(_) if start >= measure_from && end <= until => {
                run.latencies_us.push((end - start).as_micros().min(u32::MAX as u128) as u32)
            }
            Ok(_) => {}
            Err(e) => {
                run.errors += 1;
                if run.first_error.is_none() {
                    run.first_error = Some(e.to_string());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    run
}

async fn run_workload(
    args: &Args,
    setup: &str,
    workload: &str,
    clients: &[Kv],
    server_pids: &[u32],
) -> Res<Figures> {
    let begin = Instant::now();
    let measure_from = begin + Duration::from_secs(args.warmup);
    let until = measure_from + Duration::from_secs(args.seconds);
    let before_cs =
        if workload == "check_set" { Some(read_own(clients, "cs").await?) } else { None };
    let mut tasks = Vec::new();
    // The CPU sample starts with the measured interval.
    let cpu = Arc::new(tokio::sync::Mutex::new(None));
    {
        let cpu = cpu.clone();
        let pids = server_pids.to_vec();
        tokio::spawn(async move {
            tokio::time::sleep_until(tokio::time::Instant::from_std(measure_from)).await;
            *cpu.lock().await = Some(CpuSample::take(&pids));
        });
    }
    for (i, kv) in clients.iter().enumerate() {
        tasks.push(tokio::spawn(client_loop(
            kv.clone(),
            i,
            workload.to_owned(),
            measure_from,
            until,
        )));
    }
    let mut runs = Vec::new();
    for t in tasks {
        runs.push(t.await?);
    }
    let cpu_end = CpuSample::take(server_pids);
    let cpu_start = cpu.lock().await.take();
    let [cpu_servers, cpu_clients, cpu_postgres, cpu_other] = match cpu_start {
        Some(start) => start.busy_cores_until(&cpu_end),
        None => [f64::NAN; 4],
    };

    // check_set: each key moved by exactly the commits its client counted.
    if let Some(before) = before_cs {
        let after = read_own(clients, "cs").await?;
        for (i, run) in runs.iter().enumerate() {
            if after[i] != before[i] + run.commits {
                return Err(format!(
                    "{setup}/check_set: client {i}'s key went from {} to {}, but it counted {} \
                     commits",
                    before[i], after[i], run.commits
                )
                .into());
            }
        }
    }

    let mut lat: Vec<u32> = runs.iter().flat_map(|r| r.latencies_us.iter().copied()).collect();
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i] as f64 / 1000.0
    };
    Ok(Figures {
        setup: setup.to_owned(),
        workload: workload.to_owned(),
        ops: lat.len() as u64,
        ops_per_s: lat.len() as f64 / args.seconds as f64,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors: runs.iter().map(|r| r.errors).sum(),
        first_error: runs.iter().find_map(|r| r.first_error.clone()),
        check_failures: runs.iter().map(|r| r.check_failures).sum(),
        cpu_servers,
        cpu_clients,
        cpu_postgres,
        cpu_other,
    })
}

/// The value of every client's own `prefix` key.
async fn read_own(clients: &[Kv], prefix: &str) -> Res<Vec<u64>> {
    let mut out = Vec::with_capacity(clients.len());
    for i in 0..clients.len() {
        let e = clients[0].get(&own_key(prefix, i)).await?;
        out.push(e.and_then(|e| e.value.as_u64()).ok_or(format!("{prefix} key {i} missing"))?);
    }
    Ok(out)
}

/// CPU counters, in jiffies: the machine's busy time, the servers', this process's and every
/// `postgres` process's.
struct CpuSample {
    at: Instant,
    machine_busy: u64,
    servers: u64,
    me: u64,
    postgres: u64,
}

impl CpuSample {
    fn take(server_pids: &[u32]) -> CpuSample {
        let servers = server_pids.iter().map(|p| proc_jiffies(&format!("/proc/{p}/stat"))).sum();
        CpuSample {
            at: Instant::now(),
            machine_busy: openkv_bench::machine_busy_jiffies(),
            servers,
            me: proc_jiffies("/proc/self/stat"),
            postgres: postgres_jiffies(),
        }
    }

    /// Average busy cores between two samples: servers, this process, PostgreSQL, the rest.
    fn busy_cores_until(&self, end: &CpuSample) -> [f64; 4] {
        // Linux reports jiffies at USER_HZ, 100 per second on every mainstream architecture.
        let ticks = (end.at - self.at).as_secs_f64() * 100.0;
        let servers = end.servers.saturating_sub(self.servers) as f64 / ticks;
        let me = end.me.saturating_sub(self.me) as f64 / ticks;
        // PostgreSQL backends come and go; those that exited in between are missed (the
        // clients' connections are long-lived, so few are).
        let postgres = end.postgres.saturating_sub(self.postgres) as f64 / ticks;
        let machine = end.machine_busy.saturating_sub(self.machine_busy) as f64 / ticks;
        [servers, me, postgres, (machine - servers - me - postgres).max(0.0)]
    }
}

/// utime + stime of every process named `postgres`.
fn postgres_jiffies() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    dir.filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())))
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "postgres")
        })
        .map(|e| proc_jiffies(e.path().join("stat").to_str().unwrap_or("")))
        .sum()
}

/// utime + stime of a `/proc/…/stat` file, in jiffies (0 if unreadable).
fn proc_jiffies(path: &str) -> u64 {
    let Ok(s) = std::fs::read_to_string(path) else { return 0 };
    // The command name (field 2) may contain spaces: fields after the last ')'.
    let Some(rest) = s.rsplit_once(')').map(|(_, r)| r) else { return 0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime 15.
    let get = |i: usize| f.get(i - 3).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    get(14) + get(15)
}

fn find<'a>(all: &'a [Figures], setup: &str, workload: &str) -> Option<&'a Figures> {
    all.iter().find(|f| f.setup == setup && f.workload == workload)
}

fn ratio(a: Option<&Figures>, b: Option<&Figures>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b.ops_per_s > 0.0 => format!("{:.2}×", a.ops_per_s / b.ops_per_s),
        _ => "n/a".into(),
    }
}

fn print_report(args: &Args, all: &[Figures]) {
    println!(
        "\n{} clients, {} s per workload (after {} s warm-up); CPU in cores busy on average \
         ({} cores here)\n",
        args.clients,
        args.seconds,
        args.warmup,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    println!(
        "| workload | setup | ops/s | p50 ms | p99 ms | errors | CPU: servers | clients | \
         PostgreSQL | other |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for f in all {
        let errors = if f.check_failures > 0 {
            format!("{} (+{} failed checks)", f.errors, f.check_failures)
        } else {
            f.errors.to_string()
        };
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
            f.workload,
            f.setup,
            f.ops_per_s,
            f.p50_ms,
            f.p99_ms,
            errors,
            f.cpu_servers,
            f.cpu_clients,
            f.cpu_postgres,
            f.cpu_other
        );
    }
    println!("\n| workload | pg1 ÷ sqlite | pg2 ÷ pg1 |");
    println!("|---|---:|---:|");
    for w in &args.workloads {
        let (sqlite, pg1, pg2) = (find(all, "sqlite", w), find(all, "pg1", w), find(all, "pg2", w));
        println!("| {w} | {} | {} |", ratio(pg1, sqlite), ratio(pg2, pg1));
    }
    println!("\nTargets:");
    match find(all, "pg1", "check_set") {
        Some(f) => println!(
            "- atomic writes (check_set) through one server on PostgreSQL ≥ 5,000/s: {:.0}/s — {}",
            f.ops_per_s,
            if f.ops_per_s >= 5000.0 { "met" } else { "NOT met" }
        ),
        None => println!("- atomic writes through one server on PostgreSQL: not measured"),
    }
    match (find(all, "pg2", "get"), find(all, "pg1", "get")) {
        (Some(two), Some(one)) if one.ops_per_s > 0.0 => {
            let r = two.ops_per_s / one.ops_per_s;
            println!(
                "- reads (get), two servers ≥ 1.6 × one server: {r:.2}× — {}",
                if r >= 1.6 { "met" } else { "NOT met" }
            )
        }
        _ => println!("- reads, two servers vs one: not measured"),
    }
}

fn to_json(all: &[Figures]) -> serde_json::Value {
    serde_json::Value::Array(
        all.iter()
            .map(|f| {
                serde_json::json!({
                    "setup": f.setup, "workload": f.workload, "ops": f.ops,
                    "ops_per_s": f.ops_per_s, "p50_ms": f.p50_ms, "p99_ms": f.p99_ms,
                    "errors": f.errors, "first_error": f.first_error,
                    "check_failures": f.check_failures, "cpu_servers": f.cpu_servers,
                    "cpu_clients": f.cpu_clients, "cpu_postgres": f.cpu_postgres,
                    "cpu_other": f.cpu_other,
                })
            })
            .collect(),
    )
}

/// 32 random hex digits, for schema names.
fn random_hex() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
