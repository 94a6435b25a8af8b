//! What the benchmark programs of this package share: how busy the machine is, and waiting for
//! it to quiet down before a round (this VM is shared; the figures are only worth comparing
//! when nothing else runs).
// A benchmark reports on stdout/stderr and panics on a broken setup; see main.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

/// Busy jiffies of the whole machine (all but idle and iowait), 0 if unreadable.
pub fn machine_busy_jiffies() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let f: Vec<u64> = s
                .lines()
                .next()?
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal
            let total: u64 = f.iter().take(8).sum();
            Some(total - f.get(3)? - f.get(4)?)
        })
        .unwrap_or(0)
}

/// Waits up to `max_wait` seconds until the machine is under 20% of one core busy over one
/// second (call it when nothing of the benchmark runs). `who` prefixes what it prints: once
/// when it starts waiting, once if it gives up and measures anyway.
pub fn wait_for_quiet(who: &str, max_wait: u64) {
    if max_wait == 0 {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(max_wait);
    let mut said = false;
    loop {
        let before = machine_busy_jiffies();
        std::thread::sleep(Duration::from_secs(1));
        let busy = machine_busy_jiffies().saturating_sub(before);
        if busy < 20 {
            return;
        }
        if !said {
            eprintln!("{who}: waiting for the machine to quiet down ({busy}% of one core)");
            said = true;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "{who}: the machine is still busy ({busy}% of one core) after {max_wait} s: \
                 measuring anyway"
            );
            return;
        }
    }
}

/// The `openkv` binary the benchmarks start: `given` (their `--openkv`), else `openkv` next to
/// the running program (where cargo builds both); an error naming the path when it is not a
/// file.
pub fn openkv_binary(given: Option<&std::path::Path>) -> Result<std::path::PathBuf, String> {
    let path = match given {
        Some(p) => p.to_owned(),
        None => std::env::current_exe()
            .map_err(|e| format!("cannot tell where this program is: {e}"))?
            .with_file_name("openkv"),
    };
    if !path.is_file() {
        return Err(format!("no openkv binary at {} (use --openkv)", path.display()));
    }
    Ok(path)
}
