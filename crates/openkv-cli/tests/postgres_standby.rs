//! `openkv serve --db postgres://primary… --read-replica postgres://standby…`, a real process
//! on a real primary and a real streaming hot standby (`scripts/postgres.sh standby`), reached
//! by the Rust KV Connect client:
//! - eventual reads (`Kv::get_with(.., Consistency::Eventual)`, sent to the server's
//!   /v2/eventual endpoint, which its metadata lists because it has a standby) are answered by
//!   the standby: with the standby's WAL replay paused, they still see the value a later write
//!   replaced, while strong reads see the new one; no fallback is logged;
//! - the standby going away (every connection cut, its port closed) leaves eventual reads
//!   answered — by the primary, with its latest writes — and strong reads and writes
//!   unaffected; the fallback is logged once (the warning is rate-limited), and once the
//!   standby is back eventual reads return to it; SIGTERM still exits cleanly;
//! - the standby crashed for real (`scripts/postgres.sh halt`: `pg_ctl stop -m immediate`):
//!   eventual reads answered by the primary, strong reads and writes unaffected, a fallback
//!   warning; started again (`resume`), it catches up and serves again;
//! - `--read-replica` is a usage error (exit 2) without a PostgreSQL --db, with a URL that is
//!   not postgres://, or with --replica-of.
//!
//! The standby is reached through a TCP proxy of the test's own (the standby "going away" is
//! the proxy dropping every connection and its port), so the shared standby of the test run
//! stays up. Needs `$OPENKV_TEST_POSTGRES_URL` (a fresh schema of it) and
//! `$OPENKV_TEST_POSTGRES_STANDBY_URL`, a hot standby of that server, and psql; skipped when
//! the standby URL is unset, unless `OPENKV_REQUIRE_POSTGRES=1` (then it fails).

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openkv::{key, Consistency, Key, Kv, KvU64, OpenOptions};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use common::{fresh_postgres_url, sigterm};

const TOKEN: &str = "postgres-standby-token-0123";

/// The tests of this file share the run's standby (one crashes it): one at a time.
static SERIAL: Mutex<()> = Mutex::new(());
/// What the server logs when eventual reads fall back to the primary.
const FALLBACK_WARNING: &str = "eventual reads fall back to the PostgreSQL primary";

/// The standby's URL and a fresh schema of the primary, or `None` (skip).
fn servers() -> Option<(String, String)> {
    let standby = std::env::var("OPENKV_TEST_POSTGRES_STANDBY_URL").ok().filter(|u| !u.is_empty());
    let Some(standby) = standby else {
        assert_ne!(
            std::env::var("OPENKV_REQUIRE_POSTGRES").as_deref(),
            Ok("1"),
            "OPENKV_REQUIRE_POSTGRES=1 but OPENKV_TEST_POSTGRES_STANDBY_URL is not set \
             (scripts/postgres.sh standby DIR STANDBY_DIR makes one; scripts/test.sh does)"
        );
        eprintln!("OPENKV_TEST_POSTGRES_STANDBY_URL is not set: skipping this test");
        return None;
    };
    Some((fresh_postgres_url()?, standby))
}

/// psql: from the PATH, else the newest of Debian's /usr/lib/postgresql/*/bin.
fn psql_bin() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("psql"))
        .find(|p| p.is_file());
    if let Some(psql) = on_path {
        return psql;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin/psql"))))
        .filter(|(_, p)| p.is_file())
        .collect();
    versions.sort();
    versions.pop().expect("psql is not installed (PATH, /usr/lib/postgresql/*/bin)").1
}

/// Runs one statement with psql on `url`; its output, trimmed.
fn psql(url: &str, sql: &str) -> String {
    let out = Command::new(psql_bin())
        .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .output()
        .expect("run psql");
    assert!(out.status.success(), "psql {sql:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Waits until the standby has replayed everything the primary has written so far.
async fn caught_up(primary: &str, standby: &str) {
    let lsn = psql(primary, "select pg_current_wal_lsn()");
    let query = format!("select coalesce(pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn, false)");
    let deadline = Instant::now() + Duration::from_secs(30);
    while psql(standby, &query) != "t" {
        assert!(Instant::now() < deadline, "the standby did not replay up to {lsn} in 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The standby's WAL replay, paused while this lives (resumed on drop, a panic included).
/// Once made, nothing written later is replayed.
struct ReplayPaused<'a>(&'a str);

impl<'a> ReplayPaused<'a> {
    fn new(standby: &'a str) -> Self {
        psql(standby, "select pg_wal_replay_pause()");
        ReplayPaused(standby)
    }
}

impl Drop for ReplayPaused<'_> {
    fn drop(&mut self) {
        // No panic here: this may run while a failed assertion unwinds.
        let resumed = Command::new(psql_bin())
            .args(["-X", "-q", "-d", self.0, "-c", "select pg_wal_replay_resume()"])
            .status();
        if !matches!(resumed, Ok(s) if s.success()) {
            eprintln!("could not resume the standby's WAL replay ({resumed:?})");
        }
    }
}

/// A TCP proxy to a server: stopping it drops every connection through it and its port (as a
/// server that died would); starting it again listens on the same port.
struct Proxy {
    port: u16,
    target: String,
    accept: Option<JoinHandle<()>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut proxy = Proxy { port, target, accept: None, connections: Arc::default() };
        proxy.serve(listener);
        proxy
    }

    fn serve(&mut self, listener: TcpListener) {
        let (target, connections) = (self.target.clone(), self.connections.clone());
        self.accept = Some(tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let forward = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                connections.lock().unwrap().push(forward);
            }
        }));
    }

    /// Closes the port and every connection (returns once they are closed).
    async fn stop(&mut self) {
        let mut tasks: Vec<_> = self.accept.take().into_iter().collect();
        tasks.append(&mut self.connections.lock().unwrap());
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
    }

    async fn restart(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.serve(listener);
    }
}

/// `host:port` of the URL `postgres://[user@]host:port/…`, and the URL through the proxy.
fn split_address(url: &str) -> (String, impl Fn(u16) -> String + '_) {
    let rest = url.split_once("://").expect("a postgres:// URL").1;
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let address = authority.rsplit_once('@').map_or(authority, |(_, a)| a).to_owned();
    assert!(address.contains(':'), "{url}: give the standby's port explicitly");
    let target = address.clone();
    (address, move |port| url.replacen(&target, &format!("127.0.0.1:{port}"), 1))
}

/// A real `openkv serve` whose stderr the test reads.
struct Server {
    child: Option<Child>,
    url: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(db: &str, args: &[&str]) -> Server {
        // A free port chosen here: the first line must name it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}");
        let mut child = Command::new(env!("CARGO_BIN_EXE_openkv"))
            .args(["--db", db, "serve", "--addr", &format!("127.0.0.1:{port}")])
            .args(["--access-token", TOKEN])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start openkv serve");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("[openkv serve] {line}");
                lines.lock().unwrap().push(line);
            }
        });
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        assert!(line.ends_with(&format!("{url}\n")), "unexpected first line {line:?}");
        Server { child: Some(child), url, stderr }
    }

    /// The stderr lines holding `needle` so far.
    fn logged(&self, needle: &str) -> Vec<String> {
        self.stderr.lock().unwrap().iter().filter(|l| l.contains(needle)).cloned().collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn get(kv: &Kv, key: &Key, consistency: Consistency) -> u64 {
    let entry = kv.get_with(key, consistency).await.unwrap().expect("the key has an entry");
    entry.value.as_u64().expect("a KvU64")
}

#[test]
fn eventual_reads_go_to_the_standby_and_fall_back_to_the_primary_when_it_is_gone() {
    let Some((db, standby)) = servers() else { return };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let primary = std::env::var("OPENKV_TEST_POSTGRES_URL").unwrap();
    eprintln!("database: {db}; standby: {standby}");
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let (address, through_proxy) = split_address(&standby);
        let mut proxy = Proxy::start(address).await;
        let mut server = Server::start(&db, &["--read-replica", &through_proxy(proxy.port)]);
        let kv = OpenOptions::new().access_token(TOKEN).open(&server.url).await.unwrap();
        let k = key!["k"];

        kv.set(&k, KvU64(1)).await.unwrap();
        caught_up(&primary, &standby).await;
        assert_eq!(get(&kv, &k, Consistency::Eventual).await, 1);
        {
            let _paused = ReplayPaused::new(&standby);
            kv.set(&k, KvU64(2)).await.unwrap();
            assert_eq!(get(&kv, &k, Consistency::Strong).await, 2);
            for _ in 0..5 {
                assert_eq!(
                    get(&kv, &k, Consistency::Eventual).await,
                    1,
                    "an eventual read saw a write the standby has not replayed: the primary \
                     answered it"
                );
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while get(&kv, &k, Consistency::Eventual).await != 2 {
            assert!(Instant::now() < deadline, "eventual reads never saw 2");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(server.logged(FALLBACK_WARNING), Vec::<String>::new());

        // The standby goes away: eventual reads are answered by the primary (its latest
        // writes at once), strong reads and writes go on.
        proxy.stop().await;
        let gone = Instant::now();
        for n in 3..=12 {
            kv.set(&k, KvU64(n)).await.unwrap();
            assert_eq!(get(&kv, &k, Consistency::Eventual).await, n);
            assert_eq!(get(&kv, &k, Consistency::Strong).await, n);
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while server.logged(FALLBACK_WARNING).is_empty() {
            assert!(Instant::now() < deadline, "no fallback warning on stderr");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let warnings = server.logged(FALLBACK_WARNING);
        if gone.elapsed() < Duration::from_secs(10) {
            // Several standby attempts failed (it is retried every second), one warning.
            assert_eq!(warnings.len(), 1, "the fallback warning is rate-limited: {warnings:?}");
        }

        // Back: eventual reads return to the standby (they see what it has replayed only).
        proxy.restart().await;
        caught_up(&primary, &standby).await;
        {
            let _paused = ReplayPaused::new(&standby);
            kv.set(&k, KvU64(13)).await.unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            while get(&kv, &k, Consistency::Eventual).await != 12 {
                assert!(Instant::now() < deadline, "eventual reads never went back to the standby");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert_eq!(get(&kv, &k, Consistency::Strong).await, 13);
        }

        kv.close().await.unwrap();
        let status = sigterm(server.child.as_mut().unwrap());
        server.child = None;
        assert!(status.success(), "openkv serve exited with {status} after SIGTERM");
        proxy.stop().await;
    });
}

/// `scripts/postgres.sh <command> <dir>`, which must succeed.
fn postgres_sh(command: &str, dir: &str) {
    let out = Command::new("scripts/postgres.sh")
        .args([command, dir])
        .current_dir(common::workspace_root())
        .output()
        .expect("run scripts/postgres.sh");
    assert!(
        out.status.success(),
        "scripts/postgres.sh {command} {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The standby crashed (`pg_ctl stop -m immediate`) while this lives; started again on drop,
/// a panic included, so that the tests after this one find it running.
struct Halted(String);

impl Halted {
    fn new(dir: &str) -> Halted {
        postgres_sh("halt", dir);
        Halted(dir.to_owned())
    }
}

impl Drop for Halted {
    fn drop(&mut self) {
        postgres_sh("resume", &self.0);
    }
}

#[test]
fn eventual_reads_are_answered_while_the_standby_is_crashed_and_after_it_restarts() {
    let Some((db, standby)) = servers() else { return };
    let Some(dir) = std::env::var("OPENKV_TEST_POSTGRES_STANDBY_DIR").ok() else {
        assert_ne!(
            std::env::var("OPENKV_REQUIRE_STANDBY_DIR").as_deref(),
            Ok("1"),
            "OPENKV_REQUIRE_STANDBY_DIR=1 but OPENKV_TEST_POSTGRES_STANDBY_DIR is not set"
        );
        eprintln!("OPENKV_TEST_POSTGRES_STANDBY_DIR is not set: skipping this test");
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let primary = std::env::var("OPENKV_TEST_POSTGRES_URL").unwrap();
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let mut server = Server::start(&db, &["--read-replica", &standby]);
        let kv = OpenOptions::new().access_token(TOKEN).open(&server.url).await.unwrap();
        let k = key!["k"];
        kv.set(&k, KvU64(1)).await.unwrap();
        caught_up(&primary, &standby).await;
        assert_eq!(get(&kv, &k, Consistency::Eventual).await, 1);
        assert_eq!(server.logged(FALLBACK_WARNING), Vec::<String>::new());
        {
            // The standby process is gone (immediate shutdown): eventual reads are answered
            // by the primary, with its latest writes; strong reads and writes go on.
            let _halted = Halted::new(&dir);
            for n in 2..=6 {
                kv.set(&k, KvU64(n)).await.unwrap();
                assert_eq!(get(&kv, &k, Consistency::Eventual).await, n);
                assert_eq!(get(&kv, &k, Consistency::Strong).await, n);
            }
            assert!(!server.logged(FALLBACK_WARNING).is_empty(), "no fallback warning");
        }
        // Started again: it catches up and serves eventual reads once more.
        caught_up(&primary, &standby).await;
        kv.set(&k, KvU64(7)).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while get(&kv, &k, Consistency::Eventual).await != 7 {
            assert!(Instant::now() < deadline, "eventual reads never saw 7");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        kv.close().await.unwrap();
        let status = sigterm(server.child.as_mut().unwrap());
        server.child = None;
        assert!(status.success(), "openkv serve exited with {status} after SIGTERM");
    });
}

/// `openkv <args>`: (exit code, stderr).
fn openkv(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_openkv"))
        .args(args)
        .env("OPENKV_ACCESS_TOKEN", TOKEN)
        .output()
        .expect("run openkv");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn read_replica_needs_a_postgres_db_and_a_postgres_url() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data.sqlite3");
    let file = file.to_str().unwrap();
    let standby = "postgres://openkv@127.0.0.1:1/openkv";

    let (code, stderr) = openkv(&["--db", file, "serve", "--read-replica", standby]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--read-replica needs a PostgreSQL --db"), "{stderr}");
    assert!(!std::path::Path::new(file).exists(), "a usage error created the database");

    let (code, stderr) =
        openkv(&["--db", "http://127.0.0.1:1", "serve", "--read-replica", standby]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--read-replica needs a PostgreSQL --db"), "{stderr}");

    let primary = "postgres://openkv@127.0.0.1:1/openkv";
    let (code, stderr) =
        openkv(&["--db", primary, "serve", "--read-replica", "http://127.0.0.1:2"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--read-replica") && stderr.contains("postgres://"), "{stderr}");

    let (code, stderr) = openkv(&[
        "--db",
        primary,
        "serve",
        "--read-replica",
        standby,
        "--replica-of",
        "http://127.0.0.1:3",
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}
