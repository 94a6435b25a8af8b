//! Topologies: the real processes a run starts (embedded workers, `openkv serve` on SQLite or
//! PostgreSQL, a read replica), the proxies between them, and what the nemesis can do to each.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openkv::{Kv, OpenOptions};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::ops::{BoxFuture, Exec, OpError, Request, Response};
use crate::proxy::{Mode, Proxy};
use crate::worker::WorkerConn;

/// Where the clients' requests go, and through what.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Topology {
    /// Two processes with embedded handles on one SQLite file.
    Embedded,
    /// One `openkv serve` on a SQLite file, KV Connect clients through a proxy.
    ServeSqlite,
    /// Two `openkv serve` on one PostgreSQL schema, each behind a proxy, each reaching
    /// PostgreSQL through a proxy too.
    ServePostgres,
    /// A primary `openkv serve` on SQLite and a read replica (`--replica-of`, following it
    /// through a proxy); clients of both, eventual reads on the replica.
    Replica,
}

impl Topology {
    /// Every topology.
    pub const ALL: [Topology; 4] =
        [Topology::Embedded, Topology::ServeSqlite, Topology::ServePostgres, Topology::Replica];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Topology::Embedded => "embedded",
            Topology::ServeSqlite => "serve-sqlite",
            Topology::ServePostgres => "serve-postgres",
            Topology::Replica => "replica",
        }
    }

    /// The topology called `name`.
    pub fn from_name(name: &str) -> Option<Topology> {
        Topology::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// What a run needs from its surroundings.
#[derive(Clone, Debug)]
pub struct Env {
    /// The `openkv` binary.
    pub openkv_bin: PathBuf,
    /// The command that starts an embedded worker (it calls [`crate::worker::worker_main`]).
    pub worker_command: Vec<OsString>,
    /// `scripts/postgres.sh` (for the PostgreSQL topology: a cluster of the run's own, which
    /// the nemesis may crash).
    pub postgres_script: PathBuf,
}

const TOKEN: &str = "jepsen-access-token-0123";

/// A process the nemesis can kill and pause.
#[derive(Debug)]
pub enum Node {
    /// An embedded worker.
    Worker(WorkerNode),
    /// An `openkv serve`.
    Server(Box<ServerNode>),
}

/// An embedded worker process and how to start it again.
#[derive(Debug)]
pub struct WorkerNode {
    name: String,
    db: PathBuf,
    command: Vec<OsString>,
    log: PathBuf,
    conn: Mutex<Option<Arc<WorkerConn>>>,
}

/// An `openkv serve` process, the proxies that lead to it, and how to start it again.
#[derive(Debug)]
pub struct ServerNode {
    name: String,
    bin: PathBuf,
    args: Vec<OsString>,
    log: PathBuf,
    /// Every proxy whose upstream is this server (updated when it restarts on a new port).
    proxies: Vec<Arc<Proxy>>,
    child: tokio::sync::Mutex<Option<tokio::process::Child>>,
    pid: Mutex<Option<u32>>,
}

impl Node {
    /// Its name in the nemesis's log.
    pub fn name(&self) -> &str {
        match self {
            Node::Worker(w) => &w.name,
            Node::Server(s) => &s.name,
        }
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Node::Worker(w) => w.current().map(|c| c.pid()),
            Node::Server(s) => *s.pid.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// SIGKILL; the process stays down until [`Node::start`].
    pub async fn kill(&self) {
        match self {
            Node::Worker(w) => {
                if let Some(conn) = w.conn.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    conn.kill();
                }
            }
            Node::Server(s) => {
                if let Some(mut child) = s.child.lock().await.take() {
                    let _ = child.kill().await;
                }
                *s.pid.lock().unwrap_or_else(|e| e.into_inner()) = None;
            }
        }
    }

    /// Starts it if it is down.
    pub async fn start(&self) -> std::io::Result<()> {
        match self {
            Node::Worker(w) => {
                if w.current().is_some() {
                    return Ok(());
                }
                let conn = WorkerConn::start(&w.command, &w.db, &w.log).await?;
                *w.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(conn));
                Ok(())
            }
            Node::Server(s) => s.start().await,
        }
    }

    /// SIGSTOP (`pause`) or SIGCONT.
    pub fn signal(&self, pause: bool) {
        if let Some(pid) = self.pid() {
            let sig = if pause { "-STOP" } else { "-CONT" };
            let _ = std::process::Command::new("kill").args([sig, &pid.to_string()]).status();
        }
    }
}

impl WorkerNode {
    fn current(&self) -> Option<Arc<WorkerConn>> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ServerNode {
    async fn start(&self) -> std::io::Result<()> {
        let mut child_slot = self.child.lock().await;
        if child_slot.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let mut child = tokio::process::Command::new(&self.bin)
            .args(&self.args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| std::io::Error::other("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .map_err(|_| std::io::Error::other(format!("{} did not start in 60 s", self.name)))??;
        let url = first.as_deref().and_then(|l| l.split_whitespace().last()).unwrap_or_default();
        let addr: SocketAddr = url.trim_start_matches("http://").parse().map_err(|_| {
            std::io::Error::other(format!(
                "{} did not print its URL (said {first:?}; its log: {})",
                self.name,
                self.log.display()
            ))
        })?;
        // Keep draining stdout so that the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        for proxy in &self.proxies {
            proxy.set_upstream(addr);
        }
        *self.pid.lock().unwrap_or_else(|e| e.into_inner()) = child.id();
        *child_slot = Some(child);
        Ok(())
    }
}

/// A link the nemesis can break.
#[derive(Debug)]
pub struct Link {
    /// Its name in the nemesis's log ("client->s1", "s1->postgres", …).
    pub name: String,
    /// The proxy carrying it.
    pub proxy: Arc<Proxy>,
}

/// The running processes of a topology.
#[derive(Debug)]
pub struct Cluster {
    /// The topology.
    pub topology: Topology,
    /// The processes.
    pub nodes: Vec<Arc<Node>>,
    /// The links.
    pub links: Vec<Link>,
    /// The run's own PostgreSQL cluster (its directory), if any.
    pub postgres_dir: Option<PathBuf>,
    postgres_script: PathBuf,
    /// PostgreSQL was crashed and not started again yet.
    postgres_down: std::sync::atomic::AtomicBool,
    /// The small filesystem (a tmpfs) holding the SQLite files, which the nemesis fills up;
    /// `None` where PostgreSQL holds the data, or when mounting is not allowed (not root).
    pub disk: Option<PathBuf>,
    /// Client entry points: a worker node, or a proxy URL (and whether eventual reads there
    /// go to a replica).
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
enum Entry {
    Worker(Arc<Node>),
    Url(String),
}

/// How to open a database handle of one's own: a KV Connect client of a server, or (for
/// the embedded topology) the SQLite file, opened in this process.
#[derive(Clone, Debug)]
pub enum Opener {
    /// The file.
    File(PathBuf),
    /// The server's (proxy's) URL.
    Url(String),
}

impl Opener {
    /// Opens it (a KV Connect client with the library's request timeout: a queue listener's
    /// long polls must not be cut short).
    pub async fn open(&self) -> Result<Kv, String> {
        self.open_with(None).await
    }

    /// Opens it; a KV Connect client gives up on one request after `request_timeout` and
    /// retries for 6 s in all.
    async fn open_with(&self, request_timeout: Option<Duration>) -> Result<Kv, String> {
        match self {
            Opener::File(db) => {
                Kv::open(db).await.map_err(|e| format!("opening {}: {e}", db.display()))
            }
            Opener::Url(url) => {
                let mut options = OpenOptions::new()
                    .access_token(TOKEN)
                    .remote_retry_timeout(Duration::from_secs(6));
                if let Some(timeout) = request_timeout {
                    options = options.remote_request_timeout(timeout);
                }
                options.open(url).await.map_err(|e| format!("cannot connect to {url}: {e}"))
            }
        }
    }
}

/// Requests for a worker node that may be down, killed or restarted at any time.
struct WorkerExec(Arc<Node>);

impl Exec for WorkerExec {
    fn exec(&self, request: Request) -> BoxFuture<'_, Result<Response, OpError>> {
        Box::pin(async move {
            let Node::Worker(w) = &*self.0 else {
                return Err(OpError::Failed("not a worker".into()));
            };
            match w.current() {
                Some(conn) => conn.exec(request).await,
                None => {
                    // Down: nothing was sent. Do not spin while the nemesis keeps it down.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Err(OpError::Failed(format!("{} is down", w.name)))
                }
            }
        })
    }
}

/// What `Cluster::start` builds up.
#[derive(Default)]
struct Parts {
    nodes: Vec<Arc<Node>>,
    links: Vec<Link>,
    entries: Vec<Entry>,
}

impl Parts {
    /// Adds an `openkv serve` named `name` on `db`, which clients reach through a proxy of
    /// its own (the link "client->`name`"); `more` are other proxies leading to it.
    async fn server(
        &mut self,
        name: &str,
        env: &Env,
        db: &str,
        extra: &[String],
        dir: &Path,
        more: Vec<Arc<Proxy>>,
    ) -> std::io::Result<()> {
        let mut args: Vec<OsString> = vec!["--db".into(), db.into(), "serve".into()];
        for a in ["--addr", "127.0.0.1:0", "--access-token", TOKEN] {
            args.push(a.into());
        }
        args.extend(extra.iter().map(OsString::from));
        let client = proxy().await?;
        let mut proxies = vec![client.clone()];
        proxies.extend(more);
        self.nodes.push(Arc::new(Node::Server(Box::new(ServerNode {
            name: name.to_owned(),
            bin: env.openkv_bin.clone(),
            args,
            log: dir.join(format!("{name}.log")),
            proxies,
            child: tokio::sync::Mutex::new(None),
            pid: Mutex::new(None),
        }))));
        self.entries.push(Entry::Url(url(&client)));
        self.links.push(Link { name: format!("client->{name}"), proxy: client });
        Ok(())
    }
}

async fn proxy() -> std::io::Result<Arc<Proxy>> {
    // The upstream is set when the server starts.
    Ok(Arc::new(Proxy::start(SocketAddr::from(([127, 0, 0, 1], 9))).await?))
}

fn url(proxy: &Proxy) -> String {
    format!("http://{}", proxy.addr())
}

impl Cluster {
    /// Starts `topology` in `dir` (which holds its files and process logs).
    pub async fn start(
        topology: Topology,
        env: &Env,
        dir: &Path,
        seed: u64,
    ) -> std::io::Result<Cluster> {
        let mut parts = Parts::default();
        let mut postgres_dir = None;
        let mut disk = None;
        if matches!(topology, Topology::Embedded | Topology::ServeSqlite) {
            disk = mount_tmpfs(&dir.join("disk"));
        }
        let data = disk.clone().unwrap_or_else(|| dir.to_owned());
        match topology {
            Topology::Embedded => {
                let db = data.join("embedded.sqlite3");
                for i in 1..=2 {
                    let node = Arc::new(Node::Worker(WorkerNode {
                        name: format!("worker{i}"),
                        db: db.clone(),
                        command: env.worker_command.clone(),
                        log: dir.join(format!("worker{i}.log")),
                        conn: Mutex::new(None),
                    }));
                    parts.entries.push(Entry::Worker(node.clone()));
                    parts.nodes.push(node);
                }
            }
            Topology::ServeSqlite => {
                let db = data.join("serve.sqlite3");
                parts.server("server", env, &db.to_string_lossy(), &[], dir, vec![]).await?;
            }
            Topology::ServePostgres => {
                let pg = dir.join("postgres");
                std::fs::create_dir_all(&pg)?;
                set_mode_755(&pg)?;
                set_mode_755(dir)?;
                let out = tokio::process::Command::new(&env.postgres_script)
                    .arg("start")
                    .arg(&pg)
                    .stderr(Stdio::inherit())
                    .output()
                    .await?;
                if !out.status.success() {
                    return Err(std::io::Error::other("scripts/postgres.sh start failed"));
                }
                postgres_dir = Some(pg);
                let pg_url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                let pg_addr: SocketAddr = pg_url
                    .split('@')
                    .nth(1)
                    .and_then(|rest| rest.split('/').next())
                    .and_then(|a| a.parse().ok())
                    .ok_or_else(|| std::io::Error::other(format!("unexpected URL {pg_url}")))?;
                for i in 1..=2 {
                    let to_pg = Arc::new(Proxy::start(pg_addr).await?);
                    let db = format!(
                        "postgres://openkv@{}/openkv?openkv_schema=jepsen_{seed}",
                        to_pg.addr()
                    );
                    let name = format!("server{i}");
                    parts.server(&name, env, &db, &[], dir, vec![]).await?;
                    parts.links.push(Link { name: format!("{name}->postgres"), proxy: to_pg });
                }
            }
            Topology::Replica => {
                // The replica follows the primary through a link of its own.
                let link = proxy().await?;
                let db = dir.join("primary.sqlite3");
                parts
                    .server("primary", env, &db.to_string_lossy(), &[], dir, vec![link.clone()])
                    .await?;
                let db = dir.join("replica.sqlite3");
                let extra = vec!["--replica-of".to_owned(), url(&link)];
                parts.server("replica", env, &db.to_string_lossy(), &extra, dir, vec![]).await?;
                parts.links.push(Link { name: "replica->primary".into(), proxy: link });
            }
        }
        let Parts { nodes, links, entries } = parts;
        let cluster = Cluster {
            topology,
            nodes,
            links,
            postgres_dir,
            postgres_script: env.postgres_script.clone(),
            postgres_down: std::sync::atomic::AtomicBool::new(false),
            disk,
            entries,
        };
        for node in &cluster.nodes {
            node.start().await?;
        }
        Ok(cluster)
    }

    /// Whether clients may ask for eventual reads (a replica answers them).
    pub fn has_replica(&self) -> bool {
        self.topology == Topology::Replica
    }

    /// How many client entry points there are.
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// A client handle on entry point `i` (modulo their number).
    pub async fn client(&self, i: usize) -> Result<Arc<dyn Exec>, String> {
        match &self.entries[i % self.entries.len()] {
            Entry::Worker(node) => Ok(Arc::new(WorkerExec(node.clone()))),
            Entry::Url(url) => {
                // Short: a request the nemesis black-holes ends (as unknown, for a write)
                // instead of hanging the client for the library's default minute.
                let timeout = Some(Duration::from_secs(2));
                Ok(Arc::new(Opener::Url(url.clone()).open_with(timeout).await?))
            }
        }
    }

    /// How to open a database handle of its own on entry point `i` (for a queue listener).
    pub fn opener(&self, i: usize) -> Opener {
        match &self.entries[i % self.entries.len()] {
            Entry::Worker(node) => match &**node {
                Node::Worker(w) => Opener::File(w.db.clone()),
                Node::Server(_) => Opener::File(PathBuf::new()),
            },
            Entry::Url(url) => Opener::Url(url.clone()),
        }
    }

    /// Crashes the run's PostgreSQL (`pg_ctl stop -m immediate`), or starts it again.
    pub async fn postgres(&self, up: bool) -> std::io::Result<()> {
        let Some(dir) = &self.postgres_dir else { return Ok(()) };
        if self.postgres_down.load(std::sync::atomic::Ordering::SeqCst) != up {
            return Ok(()); // already so
        }
        let verb = if up { "resume" } else { "halt" };
        let status =
            tokio::process::Command::new(&self.postgres_script).arg(verb).arg(dir).status().await?;
        if !status.success() {
            return Err(std::io::Error::other(format!("scripts/postgres.sh {verb} failed")));
        }
        self.postgres_down.store(!up, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Fills the data filesystem up (a ballast file taking every free byte), or frees it.
    pub async fn fill_disk(&self, full: bool) -> std::io::Result<()> {
        let Some(disk) = &self.disk else { return Ok(()) };
        let ballast = disk.join("ballast");
        if !full {
            return match tokio::fs::remove_file(&ballast).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        use tokio::io::AsyncWriteExt;
        let mut file = tokio::fs::File::create(&ballast).await?;
        let chunk = vec![0u8; 1 << 20];
        // Until the filesystem says it is full (then byte by byte the last megabyte).
        while file.write_all(&chunk).await.is_ok() {}
        while file.write_all(&chunk[..4096]).await.is_ok() {}
        Ok(())
    }

    /// Undoes every fault: processes resumed and running, links passing, PostgreSQL up, the
    /// disk freed.
    pub async fn heal(&self) -> std::io::Result<()> {
        self.fill_disk(false).await?;
        self.postgres(true).await?;
        for link in &self.links {
            link.proxy.set_mode(Mode::Pass);
        }
        for node in &self.nodes {
            node.signal(false);
            node.start().await?;
        }
        Ok(())
    }

    /// Stops everything (PostgreSQL included).
    pub async fn stop(self) {
        for node in &self.nodes {
            node.signal(false);
            node.kill().await;
        }
        if let Some(dir) = &self.postgres_dir {
            let _ = tokio::process::Command::new(&self.postgres_script)
                .arg("stop")
                .arg(dir)
                .status()
                .await;
        }
        if let Some(disk) = &self.disk {
            let _ = tokio::process::Command::new("umount").arg(disk).status().await;
        }
    }
}

/// A 512 MiB tmpfs at `at`, for the SQLite files: small enough to fill in a moment. `None`
/// (and the files go elsewhere, without the disk-full fault) when mounting is not allowed.
fn mount_tmpfs(at: &Path) -> Option<PathBuf> {
    std::fs::create_dir_all(at).ok()?;
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=512m", "tmpfs"])
        .arg(at)
        .stderr(Stdio::null())
        .status()
        .ok()?;
    status.success().then(|| at.to_owned())
}

/// PostgreSQL runs as another user when we are root: it must reach its directory.
fn set_mode_755(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}
