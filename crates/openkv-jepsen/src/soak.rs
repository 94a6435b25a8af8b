//! Resource sampling for soak runs: every process of the cluster (and the runner itself)
//! sampled from `/proc` — resident memory, open file descriptors, sockets among them, threads
//! — and a verdict on whether any of them keeps growing.

use std::time::{Duration, Instant};

/// One sample of one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// When (ms since the run started).
    pub at_ms: u64,
    /// The process's name ("server", "worker1", "runner", …).
    pub node: String,
    /// Its pid (a restarted process is a new series).
    pub pid: u32,
    /// Resident memory, KiB.
    pub rss_kib: u64,
    /// Open file descriptors.
    pub fds: u64,
    /// Sockets among them (connections and listeners).
    pub sockets: u64,
    /// Threads.
    pub threads: u64,
}

/// Samples process `pid` named `node`, or `None` if it is gone.
pub fn sample(node: &str, pid: u32, start: Instant) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let (mut fds, mut sockets) = (0, 0);
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        fds += 1;
        if std::fs::read_link(entry.path())
            .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
        {
            sockets += 1;
        }
    }
    Some(Sample {
        at_ms: start.elapsed().as_millis() as u64,
        node: node.to_owned(),
        pid,
        rss_kib: field("VmRSS:"),
        fds,
        sockets,
        threads: field("Threads:"),
    })
}

/// The samples as CSV, with a header line.
pub fn to_csv(samples: &[Sample]) -> String {
    let mut out = String::from("at_ms,node,pid,rss_kib,fds,sockets,threads\n");
    for s in samples {
        out.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            s.at_ms, s.node, s.pid, s.rss_kib, s.fds, s.sockets, s.threads
        ));
    }
    out
}

/// A resource: its name, how to read it from a sample, and the growth that is allowed.
type Check = (&'static str, fn(&Sample) -> u64, u64);

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// What keeps growing: for every process with at least 8 samples, the median of its last
/// quarter against the median of its second quarter (the first is warm-up). A resource grows
/// if it rose by more than half *and* by more than an absolute slack (64 MiB of memory, 64
/// descriptors or sockets, 32 threads): caches filling up and connection pools settling are
/// neither.
pub fn growth(samples: &[Sample]) -> Vec<String> {
    let mut series: Vec<(&str, u32)> = samples.iter().map(|s| (s.node.as_str(), s.pid)).collect();
    series.sort_unstable();
    series.dedup();
    let mut found = Vec::new();
    for (node, pid) in series {
        let mine: Vec<&Sample> =
            samples.iter().filter(|s| s.node == node && s.pid == pid).collect();
        let n = mine.len();
        if n < 8 {
            continue;
        }
        let (second, last) = (&mine[n / 4..n / 2], &mine[n - n / 4..]);
        let checks: [Check; 4] = [
            ("resident memory (KiB)", |s| s.rss_kib, 64 * 1024),
            ("file descriptors", |s| s.fds, 64),
            ("sockets", |s| s.sockets, 64),
            ("threads", |s| s.threads, 32),
        ];
        for (what, get, slack) in checks {
            let before = median(second.iter().map(|s| get(s)).collect());
            let after = median(last.iter().map(|s| get(s)).collect());
            if after > before + slack && after * 2 > before * 3 {
                found.push(format!("{node} (pid {pid}): {what} grew from {before} to {after}"));
            }
        }
    }
    found
}

/// Samples `targets()` (name, pid) and this process every `every` until `deadline`.
pub async fn run(
    targets: impl Fn() -> Vec<(String, u32)>,
    every: Duration,
    start: Instant,
    deadline: Instant,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    while Instant::now() < deadline {
        let mut all = targets();
        all.push(("runner".to_owned(), std::process::id()));
        for (node, pid) in all {
            samples.extend(sample(&node, pid, start));
        }
        tokio::time::sleep(every).await;
    }
    samples
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(i: u64, rss: u64, fds: u64) -> Sample {
        Sample {
            at_ms: i,
            node: "server".into(),
            pid: 1,
            rss_kib: rss,
            fds,
            sockets: 3,
            threads: 8,
        }
    }

    #[test]
    fn a_leak_is_found_and_a_plateau_is_not() {
        let flat: Vec<Sample> = (0..40).map(|i| s(i, 50_000 + (i % 3) * 100, 20)).collect();
        assert_eq!(growth(&flat), Vec::<String>::new());
        let leak: Vec<Sample> = (0..40).map(|i| s(i, 50_000 + i * 10_000, 20 + i * 5)).collect();
        let found = growth(&leak);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("resident memory"), "{found:?}");
        assert!(found[1].contains("file descriptors"), "{found:?}");
    }

    #[test]
    fn this_process_can_be_sampled() {
        let me = sample("runner", std::process::id(), Instant::now()).expect("/proc/self");
        assert!(me.rss_kib > 0 && me.fds > 0 && me.threads > 0, "{me:?}");
    }
}
