//! Eventual reads from a PostgreSQL hot standby (`PostgresConfig::read_replica`), on a real
//! primary and a real streaming standby (`scripts/postgres.sh standby`):
//! - eventual reads are answered by the standby: with its WAL replay paused, an eventual read
//!   still sees the value a later write replaced, while a strong read sees the new one; after
//!   the replay resumes, eventual reads catch up; no read fell back;
//! - a standby that goes away (every connection to it cut, new ones refused) makes eventual
//!   reads fall back to the primary: each one answered, with the primary's latest data, and
//!   counted; strong reads and writes go on; once the standby is back, eventual reads return
//!   to it;
//! - a standby that is down when the database opens does not keep it from opening.
//!
//! The standby is reached through a TCP proxy of the test's own (a standby "going away" is the
//! proxy dropping every connection and its port), so the shared standby of the test run stays
//! up for the other tests.
//!
//! Needs `$OPENKV_TEST_POSTGRES_URL` (each test works in a fresh schema of it) and
//! `$OPENKV_TEST_POSTGRES_STANDBY_URL`, a hot standby of that server; skipped when the latter
//! is unset, unless `OPENKV_REQUIRE_POSTGRES=1` (then they fail). `scripts/test.sh` starts both.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use openkv_core::backend::{AtomicWrite, Backend, Consistency, Mutation, MutationKind, ReadRange};
use openkv_core::clock::SystemClock;
use openkv_core::key::Key;
use openkv_core::value::Value;
use openkv_postgres::{PostgresBackend, PostgresConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The tests that pause the standby's replay or count its fallbacks run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The primary's and the standby's base URLs, or `None` (skip).
fn servers() -> Option<(String, String)> {
    let var = |name: &str| std::env::var(name).ok().filter(|u| !u.is_empty());
    match (var("OPENKV_TEST_POSTGRES_URL"), var("OPENKV_TEST_POSTGRES_STANDBY_URL")) {
        (Some(primary), Some(standby)) => Some((primary, standby)),
        _ => {
            assert_ne!(
                std::env::var("OPENKV_REQUIRE_POSTGRES").as_deref(),
                Ok("1"),
                "OPENKV_REQUIRE_POSTGRES=1 but OPENKV_TEST_POSTGRES_URL or \
                 OPENKV_TEST_POSTGRES_STANDBY_URL is not set (scripts/postgres.sh start DIR, \
                 then scripts/postgres.sh standby DIR STANDBY_DIR; or run scripts/test.sh)"
            );
            eprintln!("no PostgreSQL primary and standby: skipping this test");
            None
        }
    }
}

/// `base` with a fresh schema: (URL, schema name).
fn fresh_schema(base: &str) -> (String, String) {
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let separator = if base.contains('?') { '&' } else { '?' };
    (format!("{base}{separator}openkv_schema={schema}"), schema)
}

/// Opens the primary `url` with eventual reads from `standby`.
async fn open(url: &str, standby: Option<&str>) -> Arc<PostgresBackend> {
    let config = PostgresConfig::new(Duration::from_secs(3600), None, 4)
        .with_read_replica(standby.map(str::to_owned));
    Arc::new(PostgresBackend::open(url, Arc::new(SystemClock), config).await.unwrap())
}

/// A plain connection (no pool, no openkv) to `url`.
async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

fn key(name: &str) -> Vec<u8> {
    Key::new(vec![name.into()]).encode().unwrap()
}

async fn set(db: &PostgresBackend, k: &[u8], value: &str) {
    let mutation = Mutation {
        key: k.to_vec(),
        kind: MutationKind::Set(Value::Bytes(value.as_bytes().to_vec())),
        expire_at_ms: None,
    };
    let write = AtomicWrite { checks: vec![], mutations: vec![mutation], enqueues: vec![] };
    db.atomic_write(write).await.unwrap().versionstamp().expect("committed");
}

/// The value of `k` read with `consistency`, as a string (`None`: no entry).
async fn get(db: &PostgresBackend, k: &[u8], consistency: Consistency) -> Option<String> {
    let end = [k, &[0x00]].concat();
    let range = ReadRange { start: k.to_vec(), end, limit: 1, reverse: false };
    let mut read = db.snapshot_read(vec![range], consistency).await.unwrap();
    read.remove(0).pop().map(|e| match e.value {
        Value::Bytes(b) => String::from_utf8(b).unwrap(),
        other => panic!("unexpected value {other:?}"),
    })
}

/// Waits until the standby has replayed everything the primary has written so far.
async fn caught_up(primary: &tokio_postgres::Client, standby: &tokio_postgres::Client) {
    let lsn: String =
        primary.query_one("select pg_current_wal_lsn()::text", &[]).await.unwrap().get(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let row = standby
            .query_one(
                "select coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false)",
                &[&lsn],
            )
            .await
            .unwrap();
        if row.get::<_, bool>(0) {
            return;
        }
        assert!(Instant::now() < deadline, "the standby did not replay up to {lsn} in 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `body` with the standby's WAL replay paused (resumed afterwards, also on a panic).
/// Once `pg_wal_replay_pause()` returned, nothing written later is replayed.
async fn with_replay_paused<F: Future<Output = ()>>(standby: &tokio_postgres::Client, body: F) {
    standby.execute("select pg_wal_replay_pause()", &[]).await.unwrap();
    let outcome = std::panic::AssertUnwindSafe(body).catch_unwind().await;
    standby.execute("select pg_wal_replay_resume()", &[]).await.unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
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

    /// `url` (the target's) with the proxy's address instead of the target's.
    fn url(&self, url: &str) -> String {
        assert!(url.contains(&self.target), "{url} does not name {}", self.target);
        url.replacen(&self.target, &format!("127.0.0.1:{}", self.port), 1)
    }
}

/// `host:port` of a libpq URL.
fn address(url: &str) -> String {
    let config = tokio_postgres::Config::from_str(url).unwrap();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        other => panic!("{url}: a TCP host, please, not {other:?}"),
    };
    format!("{host}:{}", config.get_ports().first().copied().unwrap_or(5432))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventual_reads_are_answered_by_the_standby_and_strong_ones_by_the_primary() {
    let Some((primary_url, standby_url)) = servers() else { return };
    let _serial = SERIAL.lock().await;
    let (url, _) = fresh_schema(&primary_url);
    // The standby's URL names no schema: the primary's is taken.
    let db = open(&url, Some(&standby_url)).await;
    let (primary, standby) = (connect(&primary_url).await, connect(&standby_url).await);
    let (a, b) = (key("a"), key("b"));
    set(&db, &a, "a1").await;
    set(&db, &b, "b1").await;
    caught_up(&primary, &standby).await;
    assert_eq!(get(&db, &a, Consistency::Eventual).await.as_deref(), Some("a1"));

    with_replay_paused(&standby, async {
        set(&db, &a, "a2").await;
        assert_eq!(get(&db, &a, Consistency::Strong).await.as_deref(), Some("a2"));
        for _ in 0..5 {
            assert_eq!(
                get(&db, &a, Consistency::Eventual).await.as_deref(),
                Some("a1"),
                "an eventual read saw a write the standby has not replayed: the primary \
                 answered it"
            );
        }
        // Several ranges: one read-only snapshot on the standby.
        let range = |k: &[u8], reverse| ReadRange {
            start: k.to_vec(),
            end: [k, &[0x00]].concat(),
            limit: 10,
            reverse,
        };
        let read = db
            .snapshot_read(vec![range(&a, false), range(&b, true)], Consistency::Eventual)
            .await
            .unwrap();
        let values: Vec<_> = read.iter().map(|r| r[0].value.clone()).collect();
        assert_eq!(values, vec![Value::Bytes(b"a1".to_vec()), Value::Bytes(b"b1".to_vec())]);
    })
    .await;

    // Replay resumed: the standby catches up, eventual reads with it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&db, &a, Consistency::Eventual).await.as_deref() != Some("a2") {
        assert!(Instant::now() < deadline, "eventual reads never saw a2");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(db.eventual_fallbacks(), 0, "an eventual read fell back to the primary");
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_that_goes_away_makes_eventual_reads_fall_back_to_the_primary() {
    let Some((primary_url, standby_url)) = servers() else { return };
    let _serial = SERIAL.lock().await;
    let (url, schema) = fresh_schema(&primary_url);
    let mut proxy = Proxy::start(address(&standby_url)).await;
    // Naming the primary's schema is allowed too.
    let through_proxy = format!("{}?openkv_schema={schema}", proxy.url(&standby_url));
    let db = open(&url, Some(&through_proxy)).await;
    let (primary, standby) = (connect(&primary_url).await, connect(&standby_url).await);
    let k = key("k");
    set(&db, &k, "v1").await;
    caught_up(&primary, &standby).await;
    for _ in 0..3 {
        assert_eq!(get(&db, &k, Consistency::Eventual).await.as_deref(), Some("v1"));
    }
    assert_eq!(db.eventual_fallbacks(), 0);

    // The standby goes away: its pooled connections break, new ones are refused.
    proxy.stop().await;
    let mut reads = 0;
    for i in 2..12 {
        let value = format!("v{i}");
        set(&db, &k, &value).await;
        // Answered at once with the latest write: by the primary.
        assert_eq!(get(&db, &k, Consistency::Eventual).await.as_deref(), Some(value.as_str()));
        reads += 1;
        assert_eq!(get(&db, &k, Consistency::Strong).await.as_deref(), Some(value.as_str()));
        assert_eq!(db.eventual_fallbacks(), reads, "each eventual read falls back once");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    // Back: after its rest, the standby answers eventual reads again (no more fallbacks).
    proxy.restart().await;
    caught_up(&primary, &standby).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let before = db.eventual_fallbacks();
        assert_eq!(get(&db, &k, Consistency::Eventual).await.as_deref(), Some("v11"));
        if db.eventual_fallbacks() == before {
            break;
        }
        assert!(Instant::now() < deadline, "eventual reads never went back to the standby");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let settled = db.eventual_fallbacks();
    with_replay_paused(&standby, async {
        set(&db, &k, "v12").await;
        for _ in 0..5 {
            assert_eq!(get(&db, &k, Consistency::Eventual).await.as_deref(), Some("v11"));
        }
    })
    .await;
    assert_eq!(db.eventual_fallbacks(), settled);
    db.close().await.unwrap();
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_down_at_open_does_not_keep_the_database_from_opening() {
    let Some((primary_url, _)) = servers() else { return };
    let (url, _) = fresh_schema(&primary_url);
    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let started = Instant::now();
    let db = open(&url, Some(&format!("postgres://openkv@127.0.0.1:{port}/openkv"))).await;
    assert!(started.elapsed() < Duration::from_secs(10), "open waited for the standby");
    let k = key("k");
    set(&db, &k, "v").await;
    assert_eq!(get(&db, &k, Consistency::Eventual).await.as_deref(), Some("v"));
    assert_eq!(get(&db, &k, Consistency::Strong).await.as_deref(), Some("v"));
    assert_eq!(db.eventual_fallbacks(), 1);
    db.close().await.unwrap();
}

#[tokio::test]
async fn a_standby_url_naming_another_schema_is_refused() {
    let Some((primary_url, standby_url)) = servers() else { return };
    let (url, _) = fresh_schema(&primary_url);
    let (other, _) = fresh_schema(&standby_url);
    let config =
        PostgresConfig::new(Duration::from_secs(3600), None, 2).with_read_replica(Some(other));
    let err = PostgresBackend::open(&url, Arc::new(SystemClock), config).await.unwrap_err();
    assert!(err.to_string().contains("openkv_schema="), "{err}");
}
