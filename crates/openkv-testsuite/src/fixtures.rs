//! Fresh databases on every backend, and the real servers behind the remote ones.
//!
//! PostgreSQL fixtures need a server: `OPENKV_TEST_POSTGRES_URL` (a base URL such as
//! `postgres://openkv@127.0.0.1:54329/openkv`, without `openkv_schema`), which
//! `scripts/test.sh` sets after starting a throwaway cluster (`scripts/postgres.sh`). Each
//! fixture works in a fresh schema of that database, so tests never see each other's data.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use openkv::{Kv, ManualClock, OpenOptions};
use openkv_server::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The access token every test server is started with.
pub const TOKEN: &str = "openkv-testsuite-token";

/// A fresh database and whatever keeps it alive (files, a server).
pub struct Fixture {
    /// The handle under test.
    pub kv: Kv,
    server: Option<Server>,
    denokv: Option<tokio::process::Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    /// Closes the handle and stops the server, checking that both went cleanly.
    pub async fn finish(self) {
        // A test may have closed the handle itself; a second close is harmless.
        let _ = self.kv.close().await;
        if let Some(server) = self.server {
            server.stop().await;
        }
        if let Some(mut child) = self.denokv {
            child.kill().await.expect("stopping denokv");
        }
    }
}

/// A SQLite file in a temporary directory.
pub async fn sqlite() -> Option<Fixture> {
    let dir = tempfile::tempdir().expect("temp dir");
    let kv = Kv::open(dir.path().join("db.sqlite3")).await.expect("opening SQLite");
    Some(Fixture { kv, server: None, denokv: None, _dir: Some(dir) })
}

/// The in-memory backend of `openkv-memory`, a crate written only against openkv's public
/// engine API: the proof that a backend can live outside the core crate.
pub async fn memory() -> Option<Fixture> {
    Some(Fixture { kv: openkv_memory::open(), server: None, denokv: None, _dir: None })
}

/// A SQLite file in a temporary directory, read at the time of `clock`.
pub async fn sqlite_on(clock: ManualClock) -> Option<Fixture> {
    let dir = tempfile::tempdir().expect("temp dir");
    let kv = OpenOptions::new()
        .clock(clock)
        .open(dir.path().join("db.sqlite3"))
        .await
        .expect("opening SQLite");
    Some(Fixture { kv, server: None, denokv: None, _dir: Some(dir) })
}

/// The in-memory backend ([`memory`]), its handle and backend reading the time of `clock`.
pub async fn memory_on(clock: ManualClock) -> Option<Fixture> {
    let backend = openkv_memory::MemoryBackend::new(std::sync::Arc::new(clock.clone()));
    let kv = OpenOptions::new().clock(clock).with_backend(std::sync::Arc::new(backend));
    Some(Fixture { kv, server: None, denokv: None, _dir: None })
}

/// A fresh PostgreSQL schema ([`postgres`]) read at the time of `clock`. `None`: no
/// PostgreSQL server here.
pub async fn postgres_on(clock: ManualClock) -> Option<Fixture> {
    let url = postgres_url()?;
    let kv = OpenOptions::new()
        .clock(clock)
        .open(&url)
        .await
        .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    Some(Fixture { kv, server: None, denokv: None, _dir: None })
}

/// `openkv serve` (in this process, on a real socket) on a fresh file, and a `Kv` that reaches
/// it over KV Connect.
pub async fn openkv_server() -> Option<Fixture> {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&dir.path().join("db.sqlite3"), ServerConfig::new(TOKEN)).await;
    let kv = remote(&server.url).await;
    Some(Fixture { kv, server: Some(server), denokv: None, _dir: Some(dir) })
}

/// The PostgreSQL server the tests use: `$OPENKV_TEST_POSTGRES_URL`. `None` (the test passes
/// without running, after a note) when it is not set — unless `OPENKV_REQUIRE_POSTGRES=1`,
/// which the project's test script sets after starting a cluster, so CI can never skip it.
pub fn postgres_base_url() -> Option<String> {
    match std::env::var("OPENKV_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("OPENKV_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "OPENKV_REQUIRE_POSTGRES=1 but OPENKV_TEST_POSTGRES_URL is not set \
                 (scripts/test.sh starts a cluster with scripts/postgres.sh and sets it)"
            );
            eprintln!(
                "OPENKV_TEST_POSTGRES_URL is not set: skipping \
                 (scripts/postgres.sh start DIR prints a URL to set it to)"
            );
            None
        }
    }
}

/// A fresh, empty database on the PostgreSQL server: the URL of a schema no one has used
/// (`t_` and 32 random hex digits; the backend creates it on first open). `None` as for
/// [`postgres_base_url`]. Schemas are left behind: the test cluster is thrown away.
pub fn postgres_url() -> Option<String> {
    let base = postgres_base_url()?;
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let separator = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{separator}openkv_schema={schema}"))
}

/// A `Kv` on a fresh PostgreSQL schema ([`postgres_url`]). `None`: no PostgreSQL server here.
pub async fn postgres() -> Option<Fixture> {
    let url = postgres_url()?;
    let kv = Kv::open(&url).await.unwrap_or_else(|e| panic!("opening {url}: {e}"));
    Some(Fixture { kv, server: None, denokv: None, _dir: None })
}

/// `openkv serve` (in this process, on a real socket) on a fresh PostgreSQL schema, and a `Kv`
/// that reaches it over KV Connect. `None`: no PostgreSQL server here.
pub async fn openkv_server_on_postgres() -> Option<Fixture> {
    let url = postgres_url()?;
    let server = Server::start(Path::new(&url), ServerConfig::new(TOKEN)).await;
    let kv = remote(&server.url).await;
    Some(Fixture { kv, server: Some(server), denokv: None, _dir: None })
}

/// The client options every remote fixture uses: retries short enough that a broken server
/// fails a test in seconds, not minutes.
pub fn client_options() -> OpenOptions {
    OpenOptions::new().access_token(TOKEN).remote_retry_timeout(Duration::from_secs(10))
}

/// Opens `url` with [`client_options`].
pub async fn remote(url: &str) -> Kv {
    client_options().open(url).await.unwrap_or_else(|e| panic!("opening {url}: {e}"))
}

/// An `openkv serve` running in this process on 127.0.0.1.
pub struct Server {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The socket address it listens on.
    pub addr: SocketAddr,
    /// The engine under the server (to look behind the client's back).
    pub kv: Kv,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), openkv_server::ServeError>>,
}

impl Server {
    /// Serves the store at `path` on a free port: a file, or a `postgres://` URL (as
    /// [`Kv::open`] takes it).
    pub async fn start(path: &Path, config: ServerConfig) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding a port");
        Self::start_on(listener, path, config).await
    }

    /// Serves the store at `path` (a file or a `postgres://` URL) on `listener`.
    pub async fn start_on(listener: TcpListener, path: &Path, config: ServerConfig) -> Server {
        let addr = listener.local_addr().expect("local address");
        let kv = Kv::open(path)
            .await
            .unwrap_or_else(|e| panic!("opening the served store {}: {e}", path.display()));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(openkv_server::serve(kv.clone(), listener, config, async {
            let _ = stopped.await;
        }));
        Server { url: format!("http://{addr}"), addr, kv, stop: Some(stop), task }
    }

    /// Shuts down gracefully and closes the store; panics if serving failed.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let served = tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("the server did not shut down within 10 s");
        served.expect("the server task panicked").expect("the server failed");
        self.kv.close().await.expect("closing the served store");
    }
}

/// Where the `denokv` binary is: `$OPENKV_DENOKV`, else `denokv` on the `PATH`, else
/// `~/.cargo/bin/denokv` (where `cargo install denokv --locked` puts it).
pub fn denokv_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("OPENKV_DENOKV") {
        return Some(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join("denokv")).find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let home = PathBuf::from(std::env::var_os("HOME")?);
        Some(home.join(".cargo/bin/denokv")).filter(|p| p.is_file())
    })
}

/// The reference server `denokv` on a fresh file, reached over KV Connect. `None` (the test
/// passes without running) when the binary is not installed — unless `OPENKV_REQUIRE_DENOKV=1`,
/// which the project's test script sets after installing it, so CI can never skip it.
pub async fn denokv() -> Option<Fixture> {
    let Some(binary) = denokv_binary() else {
        assert!(
            std::env::var("OPENKV_REQUIRE_DENOKV").as_deref() != Ok("1"),
            "OPENKV_REQUIRE_DENOKV=1 but no denokv binary (set OPENKV_DENOKV or install it)"
        );
        eprintln!("denokv is not installed: skipping (cargo install denokv --locked)");
        return None;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    // Take a free port from the OS, then hand it to denokv (which binds it itself).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = tokio::process::Command::new(&binary)
        .arg("--sqlite-path")
        .arg(dir.path().join("denokv.sqlite3"))
        .args(["serve", "--access-token", TOKEN, "--addr", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
    let url = format!("http://127.0.0.1:{port}");
    // The client's own retries wait for the server to start listening.
    let kv = remote(&url).await;
    Some(Fixture { kv, server: None, denokv: Some(child), _dir: Some(dir) })
}
