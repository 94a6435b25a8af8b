//! The nemesis: faults scheduled from the seed, one at a time, each healed before the next.
//!
//! - `kill`: SIGKILL a server or an embedded worker, keep it down a while, start it again;
//! - `pause`: SIGSTOP it for longer than the clients' request timeout (2 s) and the queue
//!   leases, then SIGCONT — a process that comes back from the dead with stale state;
//! - `delay`, `black-hole`, `reset`: on a proxied link (client → server, replica → primary,
//!   server → PostgreSQL), slow every chunk, swallow every byte, or RST every connection;
//! - `postgres-crash`: `pg_ctl stop -m immediate` of the run's PostgreSQL, then start it
//!   again (it recovers from its WAL);
//! - `disk-full`: the SQLite files live on a 512 MiB tmpfs of their own (when the run may
//!   mount one: as root); a ballast file takes every free byte for a while, then goes.
//!
//! Each kind comes once in a seeded order before any comes twice. The schedule (which fault, where, for how long, and the quiet gaps between) depends only
//! on the seed and the topology, so a failing seed replays the same faults; their timing
//! against the clients' operations is the machine's.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::cluster::Cluster;
use crate::proxy::Mode;

/// One fault.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// SIGKILL node `.0`, down for `.1`.
    Kill(usize, Duration),
    /// SIGSTOP node `.0` for `.1`.
    Pause(usize, Duration),
    /// Delay every chunk on link `.0` by `.1`, for `.2`.
    Delay(usize, Duration, Duration),
    /// Swallow link `.0`'s bytes for `.1`.
    BlackHole(usize, Duration),
    /// Reset every connection of link `.0`.
    Reset(usize),
    /// Crash PostgreSQL, down for `.0`.
    PostgresCrash(Duration),
    /// Fill the SQLite files' filesystem for `.0`.
    DiskFull(Duration),
}

/// A fault as it happened.
#[derive(Clone, Debug)]
pub struct Applied {
    /// When it started (ms since the run started).
    pub at_ms: u64,
    /// What, in words ("kill server1 for 700 ms").
    pub what: String,
    /// Its kind's name, for the tally ("kill", "pause", …).
    pub kind: &'static str,
}

fn ms(rng: &mut StdRng, lo: u64, hi: u64) -> Duration {
    Duration::from_millis(rng.random_range(lo..=hi))
}

/// The names of the fault kinds, as `--faults` takes them.
pub const KINDS: [&str; 7] =
    ["kill", "pause", "delay", "black-hole", "reset", "postgres-crash", "disk-full"];

/// The fault kinds that apply to a cluster of `nodes` processes and `links` proxied links
/// (and PostgreSQL or not), among those `allowed` (names of [`KINDS`]).
pub fn applicable(
    nodes: usize,
    links: usize,
    postgres: bool,
    disk: bool,
    allowed: &[&str],
) -> Vec<&'static str> {
    KINDS
        .into_iter()
        .filter(|kind| {
            allowed.contains(kind)
                && match *kind {
                    "kill" | "pause" => nodes > 0,
                    "postgres-crash" => postgres,
                    "disk-full" => disk,
                    _ => links > 0,
                }
        })
        .collect()
}

/// A fault of `kind`, its target and durations drawn from `rng`.
pub fn fault(rng: &mut StdRng, kind: &str, nodes: usize, links: usize) -> Fault {
    match kind {
        "kill" => Fault::Kill(rng.random_range(0..nodes), ms(rng, 100, 1500)),
        "pause" => Fault::Pause(rng.random_range(0..nodes), ms(rng, 2500, 4000)),
        "delay" => Fault::Delay(rng.random_range(0..links), ms(rng, 20, 300), ms(rng, 500, 2000)),
        "black-hole" => Fault::BlackHole(rng.random_range(0..links), ms(rng, 500, 2500)),
        "reset" => Fault::Reset(rng.random_range(0..links)),
        "disk-full" => Fault::DiskFull(ms(rng, 500, 2000)),
        _ => Fault::PostgresCrash(ms(rng, 200, 2000)),
    }
}

/// Runs faults on `cluster` until `deadline`; returns what it did. Errors restarting a
/// process end the nemesis (and fail the run): a harness that cannot heal proves nothing.
pub async fn run(
    cluster: &Cluster,
    seed: u64,
    allowed: &[&str],
    start: Instant,
    deadline: Instant,
) -> Result<Vec<Applied>, String> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x006e_656d_6573_6973);
    let mut log = Vec::new();
    let (nodes, links) = (cluster.nodes.len(), cluster.links.len());
    let kinds =
        applicable(nodes, links, cluster.postgres_dir.is_some(), cluster.disk.is_some(), allowed);
    if kinds.is_empty() {
        tokio::time::sleep_until(deadline.into()).await;
        return Ok(log);
    }
    // Every kind once, in a seeded order, then again in another: a short run still sees
    // every kind of fault that applies.
    let mut order: Vec<&str> = Vec::new();
    // Let the clients get going first.
    tokio::time::sleep(ms(&mut rng, 300, 800)).await;
    while Instant::now() + Duration::from_millis(500) < deadline {
        if order.is_empty() {
            order = kinds.clone();
            order.shuffle(&mut rng);
        }
        let kind = order.pop().unwrap_or("kill");
        let fault = fault(&mut rng, kind, nodes, links);
        let at_ms = start.elapsed().as_millis() as u64;
        let (kind, what) = apply(cluster, &fault).await?;
        log.push(Applied { at_ms, what, kind });
        tokio::time::sleep(ms(&mut rng, 200, 800)).await;
    }
    Ok(log)
}

/// Applies `fault` and heals it; returns its kind and a description.
async fn apply(cluster: &Cluster, fault: &Fault) -> Result<(&'static str, String), String> {
    let node_name = |i: usize| cluster.nodes[i].name().to_owned();
    let link_name = |i: usize| cluster.links[i].name.clone();
    Ok(match *fault {
        Fault::Kill(n, down) => {
            let node = &cluster.nodes[n];
            node.kill().await;
            tokio::time::sleep(down).await;
            node.start().await.map_err(|e| format!("restarting {}: {e}", node.name()))?;
            ("kill", format!("kill -9 {} for {} ms", node_name(n), down.as_millis()))
        }
        Fault::Pause(n, d) => {
            let node = &cluster.nodes[n];
            node.signal(true);
            tokio::time::sleep(d).await;
            node.signal(false);
            ("pause", format!("SIGSTOP {} for {} ms", node_name(n), d.as_millis()))
        }
        Fault::Delay(l, by, d) => {
            let proxy = &cluster.links[l].proxy;
            proxy.set_mode(Mode::Delay(by));
            tokio::time::sleep(d).await;
            proxy.set_mode(Mode::Pass);
            (
                "delay",
                format!("delay {} by {} ms for {} ms", link_name(l), by.as_millis(), d.as_millis()),
            )
        }
        Fault::BlackHole(l, d) => {
            let proxy = &cluster.links[l].proxy;
            proxy.set_mode(Mode::BlackHole);
            tokio::time::sleep(d).await;
            // The connections that swallowed bytes are broken for good: reset them.
            proxy.set_mode(Mode::Pass);
            proxy.reset_all();
            ("black-hole", format!("black-hole {} for {} ms", link_name(l), d.as_millis()))
        }
        Fault::Reset(l) => {
            cluster.links[l].proxy.reset_all();
            ("reset", format!("reset {}", link_name(l)))
        }
        Fault::DiskFull(d) => {
            cluster.fill_disk(true).await.map_err(|e| format!("filling the disk: {e}"))?;
            tokio::time::sleep(d).await;
            cluster.fill_disk(false).await.map_err(|e| format!("freeing the disk: {e}"))?;
            ("disk-full", format!("fill the disk for {} ms", d.as_millis()))
        }
        Fault::PostgresCrash(down) => {
            cluster.postgres(false).await.map_err(|e| e.to_string())?;
            tokio::time::sleep(down).await;
            cluster.postgres(true).await.map_err(|e| e.to_string())?;
            ("postgres-crash", format!("crash PostgreSQL for {} ms", down.as_millis()))
        }
    })
}
