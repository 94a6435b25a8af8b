//! Jepsen-style runs in CI (crates/openkv-jepsen): every workload (registers, bank, append,
//! versionstamps, queues) on every topology (two embedded processes on one file; `openkv serve` on
//! SQLite; two servers on one PostgreSQL; a primary and its read replica) under the nemesis
//! (kill -9, SIGSTOP, delayed, black-holed and reset links, PostgreSQL crashed, queue
//! listeners killed), each history
//! checked; then each checker shown to fail on a bug injected on purpose.
//!
//! A custom main (`harness = false`): the test binary is also the embedded worker process the
//! runs start. The seed is `OPENKV_JEPSEN_SEED`, else random; it is printed, and a failing run
//! is replayed with `scripts/jepsen.sh --seed N`. `OPENKV_JEPSEN_TIME` sets each topology's
//! run time (default 16s: long enough for every kind of fault to come once).

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use openkv_jepsen::checker::AnomalyKind;
use openkv_jepsen::{run, Bug, Env, Report, RunConfig, Topology, Workload};

fn env() -> Env {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    Env {
        openkv_bin: PathBuf::from(env!("CARGO_BIN_EXE_openkv")),
        worker_command: vec![OsString::from(std::env::current_exe().unwrap())],
        postgres_script: root.join("scripts/postgres.sh"),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Every workload on every topology with the nemesis: no anomaly, and real work done.
fn under_faults(seed: u64, time: Duration) {
    let rt = runtime();
    for topology in Topology::ALL {
        let config = RunConfig::new(topology, time).seed(seed);
        let report = rt.block_on(run(&config, &env())).unwrap_or_else(|e| {
            panic!("{} (seed {seed}): the harness failed: {e}", topology.name())
        });
        print!("{report}");
        assert!(
            report.is_valid(),
            "{} (seed {seed}): anomalies found; files and logs in {}; replay: scripts/jepsen.sh \
             --topology {} --seed {seed}",
            topology.name(),
            report.dir.display(),
            topology.name()
        );
        assert!(!report.faults.is_empty(), "{}: the nemesis did nothing", topology.name());
        for r in &report.results {
            assert!(
                r.counts.ok >= 50,
                "{} {}: too little work to check: {:?}",
                topology.name(),
                r.workload.name(),
                r.counts
            );
        }
    }
}

fn kinds(report: &Report, workload: Workload) -> BTreeSet<AnomalyKind> {
    report.anomalies().filter(|(w, _)| *w == workload).map(|(_, a)| a.kind).collect()
}

/// Each checker catches what it exists to catch: the same runs with a bug in every client.
fn checkers_fail_on_injected_bugs() {
    let rt = runtime();
    let expect: [(Bug, &[(Workload, AnomalyKind)]); 5] = [
        (
            // Lost updates: a compare-and-set that won on a stale value, transfers spending one
            // balance twice, appends overwriting each other.
            Bug::SkipChecks,
            &[
                (Workload::Registers, AnomalyKind::NotLinearizable),
                (Workload::Bank, AnomalyKind::WrongTotal),
                (Workload::Append, AnomalyKind::LostWrite),
            ],
        ),
        // The second application gives the keys another versionstamp than the one returned.
        (Bug::ApplyTwice, &[(Workload::Stamps, AnomalyKind::WrongVersionstamp)]),
        // Readers see half a transfer; a commit's keys carry two versionstamps.
        (
            Bug::TornBatch,
            &[
                (Workload::Bank, AnomalyKind::WrongTotal),
                (Workload::Stamps, AnomalyKind::WrongVersionstamp),
            ],
        ),
        (Bug::ReuseVersionstamp, &[(Workload::Stamps, AnomalyKind::DuplicateVersionstamp)]),
        // A listener that acknowledges messages it never handled: lost messages.
        (Bug::DropMessages, &[(Workload::Queue, AnomalyKind::LostWrite)]),
    ];
    for (bug, expected) in expect {
        let workloads: Vec<Workload> = expected.iter().map(|(w, _)| *w).collect();
        let config = RunConfig::new(Topology::ServeSqlite, Duration::from_secs(4))
            .seed(11)
            .nemesis(false)
            .workloads(workloads)
            .bug(bug);
        let report = rt.block_on(run(&config, &env())).unwrap();
        print!("with bug {}: {report}", bug.name());
        for (workload, kind) in expected {
            let found = kinds(&report, *workload);
            assert!(
                found.contains(kind),
                "bug {}: the {} checker did not report {kind:?} (found {found:?})",
                bug.name(),
                workload.name()
            );
        }
        // The evidence of an intended failure is not worth keeping.
        let _ = std::fs::remove_dir_all(&report.dir);
    }
}

fn main() {
    openkv_jepsen::worker::worker_main();
    // `cargo test` passes its own arguments (filters, --nocapture, …): a filter that names
    // neither part skips this binary, like the default harness would.
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let wanted =
        |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    let seed = std::env::var("OPENKV_JEPSEN_SEED")
        .ok()
        .map(|s| s.parse().expect("OPENKV_JEPSEN_SEED is a number"))
        .unwrap_or_else(rand::random::<u32>) as u64;
    let time = std::env::var("OPENKV_JEPSEN_TIME")
        .ok()
        .map(|s| humantime::parse_duration(&s).expect("OPENKV_JEPSEN_TIME like 12s or 2m"))
        .unwrap_or(Duration::from_secs(16));
    if wanted("jepsen_under_faults") {
        println!("jepsen_under_faults: seed {seed}, {} s per topology", time.as_secs());
        under_faults(seed, time);
        println!("test jepsen_under_faults ... ok");
    }
    if wanted("checkers_fail_on_injected_bugs") {
        checkers_fail_on_injected_bugs();
        println!("test checkers_fail_on_injected_bugs ... ok");
    }
}
