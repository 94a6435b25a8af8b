//! `openkv-jepsen`: runs workloads against real openkv processes under a nemesis and checks
//! the histories. Exit code 0: no anomaly; 1: an anomaly was found; 2: the harness failed
//! (bad arguments, a process that would not start, a final read that failed after healing).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use openkv_jepsen::{run, Bug, Env, RunConfig, Topology, Workload};

/// Jepsen-style tests of openkv: workloads, a nemesis, checkers.
#[derive(Parser, Debug)]
#[command(name = "openkv-jepsen", args_override_self = true)]
struct Args {
    /// Topologies to run, one after the other: embedded, serve-sqlite, serve-postgres,
    /// replica (default: all).
    #[arg(long = "topology", value_parser = parse_topology)]
    topologies: Vec<Topology>,
    /// Workloads to run at once: registers, bank, append, stamps (default: all).
    #[arg(long = "workload", value_parser = parse_workload)]
    workloads: Vec<Workload>,
    /// How long clients run on each topology (e.g. 30s, 10m).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    time: Duration,
    /// The seed of the operations and the fault schedule (default: random, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Run without faults.
    #[arg(long)]
    no_nemesis: bool,
    /// The kinds of fault the nemesis may inject, comma-separated: kill, pause, delay,
    /// black-hole, reset, postgres-crash, disk-full (default: all that apply to the topology).
    #[arg(long, value_delimiter = ',', value_parser = parse_fault)]
    faults: Vec<&'static str>,
    /// Inject a bug into every client, to see the checkers fail: skip-checks, apply-twice,
    /// torn-batch, reuse-versionstamp.
    #[arg(long, value_parser = parse_bug)]
    bug: Option<Bug>,
    /// Clients per workload.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// A pause after every operation of every client (e.g. 20ms), to bound a long run's
    /// history.
    #[arg(long, value_parser = humantime::parse_duration)]
    throttle: Option<Duration>,
    /// Sample every process's memory, file descriptors, sockets and threads this often (e.g.
    /// 10s); the run fails (exit 1) if any of them keeps growing.
    #[arg(long, value_parser = humantime::parse_duration)]
    sample: Option<Duration>,
    /// With --sample: write the samples to this CSV file (one per topology: the topology's
    /// name is inserted before the extension).
    #[arg(long)]
    sample_csv: Option<PathBuf>,
    /// The openkv binary (default: `openkv` next to this one, as `cargo build --release`
    /// leaves them).
    #[arg(long)]
    openkv: Option<PathBuf>,
    /// scripts/postgres.sh, for the serve-postgres topology.
    #[arg(long)]
    postgres_script: Option<PathBuf>,
}

/// Prints each process's resources at the start and the end of the run, writes the CSV, and
/// returns true if something kept growing.
fn report_samples(report: &openkv_jepsen::Report, csv: Option<&std::path::Path>) -> bool {
    use openkv_jepsen::soak;
    let mut series: Vec<(&str, u32)> =
        report.samples.iter().map(|s| (s.node.as_str(), s.pid)).collect();
    series.dedup();
    series.sort_unstable();
    series.dedup();
    for (node, pid) in series {
        let mine: Vec<&soak::Sample> =
            report.samples.iter().filter(|s| s.node == node && s.pid == pid).collect();
        let (Some(first), Some(last)) = (mine.first(), mine.last()) else { continue };
        println!(
            "  {node:<8} pid {pid:>7}: {} samples; RSS {} → {} KiB, fds {} → {}, sockets {} → {}, threads {} → {}",
            mine.len(),
            first.rss_kib,
            last.rss_kib,
            first.fds,
            last.fds,
            first.sockets,
            last.sockets,
            first.threads,
            last.threads
        );
    }
    if let Some(csv) = csv {
        let stem = csv.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let path = csv.with_file_name(format!("{stem}-{}.csv", report.topology.name()));
        match std::fs::write(&path, soak::to_csv(&report.samples)) {
            Ok(()) => println!("  samples written to {}", path.display()),
            Err(e) => eprintln!("openkv-jepsen: writing {}: {e}", path.display()),
        }
    }
    let growing = soak::growth(&report.samples);
    for g in &growing {
        println!("  GROWING: {g}");
    }
    !growing.is_empty()
}

fn parse_topology(s: &str) -> Result<Topology, String> {
    Topology::from_name(s).ok_or_else(|| format!("unknown topology {s:?}"))
}
fn parse_workload(s: &str) -> Result<Workload, String> {
    Workload::from_name(s).ok_or_else(|| format!("unknown workload {s:?}"))
}
fn parse_fault(s: &str) -> Result<&'static str, String> {
    openkv_jepsen::nemesis::KINDS
        .into_iter()
        .find(|k| *k == s)
        .ok_or_else(|| format!("unknown fault {s:?}"))
}
fn parse_bug(s: &str) -> Result<Bug, String> {
    Bug::from_name(s).ok_or_else(|| format!("unknown bug {s:?}"))
}

fn main() -> ExitCode {
    openkv_jepsen::worker::worker_main();
    let args = Args::parse();
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("openkv-jepsen: cannot find my own binary: {e}");
            return ExitCode::from(2);
        }
    };
    let openkv_bin = args.openkv.clone().unwrap_or_else(|| exe.with_file_name("openkv"));
    if !openkv_bin.is_file() {
        eprintln!(
            "openkv-jepsen: no openkv binary at {} (build it: cargo build --release -p openkv-cli, or pass --openkv)",
            openkv_bin.display()
        );
        return ExitCode::from(2);
    }
    let postgres_script = args.postgres_script.clone().unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/postgres.sh")
    });
    let env = Env { openkv_bin, worker_command: vec![OsString::from(&exe)], postgres_script };
    let seed = args.seed.unwrap_or_else(rand::random);
    let topologies =
        if args.topologies.is_empty() { Topology::ALL.to_vec() } else { args.topologies.clone() };
    let workloads =
        if args.workloads.is_empty() { Workload::ALL.to_vec() } else { args.workloads.clone() };
    let rt =
        match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("openkv-jepsen: {e}");
                return ExitCode::from(2);
            }
        };
    let mut found = false;
    for topology in topologies {
        let mut config =
            RunConfig::new(topology, args.time).seed(seed).workloads(workloads.clone());
        config = config.nemesis(!args.no_nemesis);
        config.clients = args.clients;
        config.throttle = args.throttle;
        config.sample = args.sample;
        if !args.faults.is_empty() {
            config.faults = args.faults.clone();
        }
        if let Some(bug) = args.bug {
            config = config.bug(bug);
        }
        match rt.block_on(run(&config, &env)) {
            Ok(report) => {
                print!("{report}");
                if args.sample.is_some() {
                    found |= report_samples(&report, args.sample_csv.as_deref());
                }
                if !report.is_valid() {
                    println!("  files and logs kept in {}", report.dir.display());
                    found = true;
                }
            }
            Err(e) => {
                eprintln!("openkv-jepsen: {} (seed {seed}): {e}", topology.name());
                return ExitCode::from(2);
            }
        }
    }
    if found {
        println!("anomalies found; reproduce with --seed {seed}");
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
