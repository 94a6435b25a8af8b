//! One run: start a topology, run the workloads' clients with the nemesis for a while, heal,
//! read the final state, check every history.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bugs::{Bug, Buggy};
use crate::checker::Anomaly;
use crate::cluster::{Cluster, Env, Topology};
use crate::history::Counts;
use crate::nemesis::{self, Applied};
use crate::ops::{Exec, Range, Request, Response};
use crate::workload::{self, ClientCtx, Recording, Shared, Workload};

/// What to run.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RunConfig {
    /// Where.
    pub topology: Topology,
    /// What (all of them at once, on separate keys).
    pub workloads: Vec<Workload>,
    /// Decides every client's operations and the nemesis's schedule.
    pub seed: u64,
    /// How long clients invoke operations.
    pub time: Duration,
    /// Inject faults (default: yes).
    pub nemesis: bool,
    /// The kinds of fault the nemesis may inject (default: all of [`nemesis::KINDS`]).
    pub faults: Vec<&'static str>,
    /// A bug to inject into every client (default: none), to prove the checkers fail.
    pub bug: Option<Bug>,
    /// Clients per workload (default 4).
    pub clients: usize,
    /// A pause after every operation (default none): bounds the history of a long run.
    pub throttle: Option<Duration>,
    /// Sample every process's resources this often (default: never), for soak runs.
    pub sample: Option<Duration>,
    /// Where the run's files and process logs go (default: a temporary directory, removed
    /// after a run without anomalies and kept otherwise).
    pub dir: Option<PathBuf>,
}

impl RunConfig {
    /// Every workload on `topology` for `time`, with the nemesis, seed 1, four clients each.
    pub fn new(topology: Topology, time: Duration) -> RunConfig {
        RunConfig {
            topology,
            workloads: Workload::ALL.to_vec(),
            seed: 1,
            time,
            nemesis: true,
            faults: nemesis::KINDS.to_vec(),
            bug: None,
            clients: 4,
            throttle: None,
            sample: None,
            dir: None,
        }
    }

    /// Sets the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Runs only `workloads`.
    pub fn workloads(mut self, workloads: Vec<Workload>) -> Self {
        self.workloads = workloads;
        self
    }

    /// Turns the nemesis on or off.
    pub fn nemesis(mut self, on: bool) -> Self {
        self.nemesis = on;
        self
    }

    /// Injects `bug`.
    pub fn bug(mut self, bug: Bug) -> Self {
        self.bug = Some(bug);
        self
    }
}

/// One workload's result.
#[derive(Clone, Debug)]
pub struct WorkloadResult {
    /// Which.
    pub workload: Workload,
    /// Its operations by outcome.
    pub counts: Counts,
    /// What its checker found.
    pub anomalies: Vec<Anomaly>,
}

/// What a run did and found.
#[derive(Clone, Debug)]
pub struct Report {
    /// The topology.
    pub topology: Topology,
    /// The seed.
    pub seed: u64,
    /// Per workload.
    pub results: Vec<WorkloadResult>,
    /// The faults, in order.
    pub faults: Vec<Applied>,
    /// Where the files and logs are (kept when something was found).
    pub dir: PathBuf,
    /// Resource samples (with [`RunConfig::sample`]).
    pub samples: Vec<crate::soak::Sample>,
}

impl Report {
    /// Every anomaly of every workload.
    pub fn anomalies(&self) -> impl Iterator<Item = (Workload, &Anomaly)> {
        self.results.iter().flat_map(|r| r.anomalies.iter().map(move |a| (r.workload, a)))
    }

    /// True if no checker found anything.
    pub fn is_valid(&self) -> bool {
        self.anomalies().next().is_none()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kinds: Vec<&str> = self.faults.iter().map(|a| a.kind).collect();
        kinds.sort_unstable();
        let mut tally: Vec<String> = Vec::new();
        for kind in kinds.iter().copied() {
            if !tally.iter().any(|t| t.starts_with(kind)) {
                tally.push(format!("{kind} ×{}", kinds.iter().filter(|k| **k == kind).count()));
            }
        }
        writeln!(
            f,
            "topology {} seed {}: {} faults ({})",
            self.topology.name(),
            self.seed,
            self.faults.len(),
            if tally.is_empty() { "none".to_owned() } else { tally.join(", ") }
        )?;
        for r in &self.results {
            writeln!(
                f,
                "  {:<10} ops ok {:>6} fail {:>5} info {:>4}  anomalies {}",
                r.workload.name(),
                r.counts.ok,
                r.counts.fail,
                r.counts.info,
                r.anomalies.len()
            )?;
            for a in r.anomalies.iter().take(10) {
                writeln!(f, "    {a}")?;
            }
        }
        Ok(())
    }
}

/// Runs `config` in `env`. `Err` means the harness itself failed (a process would not start,
/// the final read failed after healing): never a pass.
pub async fn run(config: &RunConfig, env: &Env) -> Result<Report, String> {
    let mut temp = None;
    let dir = match &config.dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
            d.clone()
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix(&format!("openkv-jepsen-{}-", config.topology.name()))
                .tempdir()
                .map_err(|e| e.to_string())?;
            let path = t.path().to_owned();
            temp = Some(t);
            path
        }
    };
    let cluster = Cluster::start(config.topology, env, &dir, config.seed).await.map_err(|e| {
        format!("starting {}: {e} (logs in {})", config.topology.name(), dir.display())
    })?;
    let result = drive(config, &cluster).await;
    cluster.stop().await;
    let (results, faults, samples) =
        result.map_err(|e| format!("{e} (logs in {})", dir.display()))?;
    let report = Report {
        topology: config.topology,
        seed: config.seed,
        results,
        faults,
        dir: dir.clone(),
        samples,
    };
    if let Some(temp) = temp {
        if !report.is_valid() {
            // Keep the evidence.
            let kept = temp.keep();
            return Ok(Report { dir: kept, ..report });
        }
    }
    Ok(report)
}

type Driven = (Vec<WorkloadResult>, Vec<Applied>, Vec<crate::soak::Sample>);

async fn drive(config: &RunConfig, cluster: &Cluster) -> Result<Driven, String> {
    let checker = cluster.client(0).await?;
    for w in &config.workloads {
        workload::setup(*w, &*checker)
            .await
            .map_err(|e| format!("setting up {}: {e:?}", w.name()))?;
    }
    if cluster.has_replica() && config.workloads.contains(&Workload::Bank) {
        wait_for_bank_on_replica(cluster).await?;
    }
    let start = Instant::now();
    let deadline = start + config.time;
    let mut clients = Vec::new();
    let mut next = 0usize;
    let mut recordings = Vec::new();
    for w in &config.workloads {
        let recording = Arc::new(Recording::new(*w, start));
        let shared = Arc::new(Shared::default());
        for _ in 0..config.clients {
            let id = next;
            next += 1;
            let mut exec = cluster.client(id).await?;
            if let Some(bug) = config.bug {
                exec = Arc::new(Buggy::new(exec, bug));
            }
            let ctx = ClientCtx {
                id,
                seed: config.seed.wrapping_mul(1000).wrapping_add(id as u64),
                exec,
                eventual: cluster.has_replica(),
                deadline,
                throttle: config.throttle,
            };
            let (recording, shared) = (recording.clone(), shared.clone());
            clients.push(tokio::spawn(async move { recording.run_client(&shared, ctx).await }));
        }
        recordings.push((*w, recording));
    }
    // Queue listeners, one per entry point, killed and restarted by a nemesis of their own.
    let drop_some = config.bug == Some(Bug::DropMessages);
    let listeners = recordings
        .iter()
        .find_map(|(_, r)| r.deliveries())
        .map(|deliveries| Listeners::start(cluster, deliveries, drop_some));
    let listener_kills = match &listeners {
        Some(l) if config.nemesis => Some(l.kill_until(config.seed, deadline)),
        _ => None,
    };
    let sampler = config.sample.map(|every| {
        let nodes: Vec<(String, Arc<crate::cluster::Node>)> =
            cluster.nodes.iter().map(|n| (n.name().to_owned(), n.clone())).collect();
        let targets = move || {
            nodes.iter().filter_map(|(name, n)| Some((name.clone(), n.pid()?))).collect::<Vec<_>>()
        };
        tokio::spawn(crate::soak::run(targets, every, start, deadline))
    });
    let faults = if config.nemesis {
        nemesis::run(cluster, config.seed, &config.faults, start, deadline).await?
    } else {
        tokio::time::sleep_until(deadline.into()).await;
        Vec::new()
    };
    cluster.heal().await.map_err(|e| format!("healing: {e}"))?;
    // A client finishes its last operation within its retry budget; one that does not has hung.
    for client in clients {
        tokio::time::timeout(Duration::from_secs(60), client)
            .await
            .map_err(|_| "a client hung for 60 s after the faults healed".to_owned())?
            .map_err(|e| format!("a client panicked: {e}"))?;
    }
    let samples = match sampler {
        Some(task) => task.await.map_err(|e| format!("the sampler: {e}"))?,
        None => Vec::new(),
    };
    let mut faults = faults;
    if let Some(kills) = listener_kills {
        faults.extend(kills.await.map_err(|e| format!("the listener nemesis: {e}"))?);
        faults.sort_by_key(|f| f.at_ms);
    }
    let checker = cluster.client(0).await?;
    if let Some(listeners) = listeners {
        // Let the queue drain, then stop listening. Give up after 60 s, or after 15 s without
        // progress (three leases: a message a killed listener held is due again by then).
        let wait = Instant::now() + Duration::from_secs(60);
        for (_, recording) in &recordings {
            let mut progress = (recording.queue_progress(), Instant::now());
            while recording.queue_drained(&*checker).await == Some(false) && Instant::now() < wait {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let now = recording.queue_progress();
                if now != progress.0 {
                    progress = (now, Instant::now());
                } else if progress.1.elapsed() > Duration::from_secs(15) {
                    break;
                }
            }
        }
        listeners.stop();
    }
    let mut results = Vec::new();
    for (workload, recording) in recordings {
        let recording =
            Arc::try_unwrap(recording).map_err(|_| "a client outlived the run".to_owned())?;
        let (counts, anomalies) = final_check(recording, &*checker).await?;
        results.push(WorkloadResult { workload, counts, anomalies });
    }
    Ok((results, faults, samples))
}

/// The final reads, retried for a while: the processes the nemesis restarted last may still
/// be opening their databases.
async fn final_check(
    recording: Recording,
    checker: &dyn Exec,
) -> Result<(Counts, Vec<Anomaly>), String> {
    let wait = Instant::now() + Duration::from_secs(30);
    loop {
        let probe =
            checker.exec(Request::Read { ranges: vec![Range::point(&[2])], eventual: false }).await;
        if matches!(probe, Ok(Response::Read(_))) || Instant::now() > wait {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    recording.check(checker).await.map_err(|e| format!("final read: {e:?}"))
}

/// Queue listeners in this process, one per entry point of the cluster. Each slot listens
/// on a handle of its own until the listener nemesis kills it (its listening future dropped,
/// as in a crash: the messages it holds stay leased until their lease runs out), then opens a
/// new handle and listens again.
struct Listeners {
    kills: Vec<Arc<tokio::sync::Notify>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Listeners {
    fn start(
        cluster: &Cluster,
        deliveries: Arc<std::sync::Mutex<crate::checker::queue::Deliveries>>,
        drop_some: bool,
    ) -> Listeners {
        let mut kills = Vec::new();
        let mut tasks = Vec::new();
        for i in 0..cluster.entry_count() {
            let opener = cluster.opener(i);
            let kill = Arc::new(tokio::sync::Notify::new());
            let (deliveries, killed) = (deliveries.clone(), kill.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let Ok(kv) = opener.open().await else {
                        // The server is down right now.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    };
                    let handler = workload::queue_handler(deliveries.clone(), drop_some);
                    tokio::select! {
                        // It returns when the server stays unreachable past the retry budget.
                        _ = kv.clone().listen_queue(handler) => {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        _ = killed.notified() => {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                        }
                    }
                }
            }));
            kills.push(kill);
        }
        Listeners { kills, tasks }
    }

    fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }

    /// Kills a listener every 1–3 s (seeded) until `deadline`.
    fn kill_until(&self, seed: u64, deadline: Instant) -> tokio::task::JoinHandle<Vec<Applied>> {
        let kills = self.kills.clone();
        tokio::spawn(async move {
            use rand::{Rng, SeedableRng};
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x0071_7565_7565);
            let start = Instant::now();
            let mut log = Vec::new();
            loop {
                tokio::time::sleep(Duration::from_millis(rng.random_range(1000..3000))).await;
                if Instant::now() >= deadline || kills.is_empty() {
                    return log;
                }
                let i = rng.random_range(0..kills.len());
                kills[i].notify_one();
                log.push(Applied {
                    at_ms: start.elapsed().as_millis() as u64,
                    what: format!("kill queue listener {i}"),
                    kind: "listener-kill",
                });
            }
        })
    }
}

async fn wait_for_bank_on_replica(cluster: &Cluster) -> Result<(), String> {
    let replica = cluster.client(1).await?;
    let prefix = crate::ops::key(&[crate::ops::Part::S("bank")]);
    let wait = Instant::now() + Duration::from_secs(30);
    loop {
        let read = replica
            .exec(Request::Read { ranges: vec![Range::prefix(&prefix, 100)], eventual: true })
            .await;
        if let Ok(Response::Read(r)) = read {
            if r.first().is_some_and(|e| e.len() == workload::ACCOUNTS) {
                return Ok(());
            }
        }
        if Instant::now() > wait {
            return Err("the replica did not receive the bank's accounts in 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
