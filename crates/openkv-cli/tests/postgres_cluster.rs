//! Several real `openkv serve` processes on one PostgreSQL schema (`--db
//! postgres://…?openkv_schema=…`), reached by the Rust KV Connect client:
//! - 32 clients on two servers race check + set on one counter for 10 s: every commit is
//!   counted once, versionstamps are unique and follow commit order, the counter ends at the
//!   number of successful commits; blind writes alternating between the servers get ever
//!   larger versionstamps;
//! - a watcher on one server sees writes made through the other;
//! - queue messages enqueued through one server reach a listener connected to the other;
//! - kill -9 of one server under load from both sides: every acknowledged write is there,
//!   through the survivor and through the killed server once restarted.
//!
//! Each test uses a fresh schema of `$OPENKV_TEST_POSTGRES_URL` (skipped when unset, unless
//! `OPENKV_REQUIRE_POSTGRES=1`). The tests of this file run one at a time: each one loads the
//! servers and the cluster, and they share two cores in CI.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use openkv::{
    key, EnqueueOptions, Entry, Key, Kv, KvU64, ListOptions, OpenOptions, Selector, Value,
    Versionstamp, WatchStream,
};

use common::{fresh_postgres_url, sigterm, start_server};

const TOKEN: &str = "postgres-cluster-token-0123";

/// One test of this file at a time (see the module documentation).
static SERIAL: Mutex<()> = Mutex::new(());

/// Takes the file's lock, then runs `body` with the fresh schema's URL on a multi-threaded
/// runtime; skips (returns) without a PostgreSQL URL.
fn cluster_test<F: Future<Output = ()>>(body: impl FnOnce(String) -> F) {
    let Some(db) = fresh_postgres_url() else { return };
    let _serial: MutexGuard<'_, ()> = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    eprintln!("database: {db}");
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(body(db));
}

/// A real `openkv serve --db <postgres URL>` process.
struct Server {
    name: &'static str,
    url: String,
    child: Option<Child>,
}

impl Server {
    fn start(name: &'static str, db: &str) -> Server {
        let (child, url) = start_server(Path::new(db), TOKEN);
        eprintln!("server {name}: {url} (pid {})", child.id());
        Server { name, url, child: Some(child) }
    }

    /// SIGKILL: no shutdown of any kind.
    fn kill9(&mut self) {
        let mut child = self.child.take().expect("the server is running");
        child.kill().expect("kill -9");
        let status = child.wait().unwrap();
        eprintln!("server {} killed: {status}", self.name);
    }

    /// SIGTERM; the server must exit cleanly.
    fn stop(mut self) {
        let mut child = self.child.take().expect("the server is running");
        let status = sigterm(&mut child);
        assert!(status.success(), "openkv serve {} exited with {status} after SIGTERM", self.name);
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

/// A KV Connect client of `server`.
async fn client(server: &Server, retry_timeout: Duration) -> Kv {
    OpenOptions::new()
        .access_token(TOKEN)
        .remote_retry_timeout(retry_timeout)
        .open(&server.url)
        .await
        .unwrap_or_else(|e| panic!("opening server {} at {}: {e}", server.name, server.url))
}

/// Every entry under `prefix`, read through `kv`.
async fn list_all(kv: &Kv, prefix: Key) -> HashMap<Key, Value> {
    let mut stream = kv.list(Selector::prefix(prefix), ListOptions::new().batch_size(500)).unwrap();
    let mut all = HashMap::new();
    while let Some(entry) = stream.next().await {
        let entry = entry.unwrap_or_else(|e| panic!("listing failed: {e}"));
        all.insert(entry.key, entry.value);
    }
    all
}

/// What one counter client did.
#[derive(Default)]
struct CounterLog {
    /// (versionstamp, value written) of each successful commit, in this client's order.
    commits: Vec<(Versionstamp, u64)>,
    check_failures: u64,
    errors: Vec<String>,
}

/// Until `until`: read the counter, then check its versionstamp and set it to value + 1.
async fn counter_client(kv: Kv, until: Instant) -> CounterLog {
    let counter = key!["counter"];
    let mut log = CounterLog::default();
    while Instant::now() < until {
        let (value, stamp) = match kv.get(&counter).await {
            Ok(None) => (0, None),
            Ok(Some(entry)) => match entry.value.as_u64() {
                Some(n) => (n, Some(entry.versionstamp)),
                None => panic!("the counter holds {:?}, not a KvU64", entry.value),
            },
            Err(e) => {
                log.errors.push(format!("get: {e}"));
                if log.errors.len() >= 100 {
                    break;
                }
                continue;
            }
        };
        let outcome = kv.atomic().check(&counter, stamp).set(&counter, KvU64(value + 1)).commit();
        match outcome.await.map(|o| o.versionstamp()) {
            Ok(Some(versionstamp)) => log.commits.push((versionstamp, value + 1)),
            Ok(None) => log.check_failures += 1,
            Err(e) => log.errors.push(format!("commit: {e}")),
        }
    }
    log
}

#[test]
fn check_and_set_from_32_clients_on_two_servers_commits_each_increment_once_in_order() {
    cluster_test(|db| async move {
        let a = Server::start("A", &db);
        let b = Server::start("B", &db);
        const PER_SERVER: usize = 16;
        let mut clients = Vec::new();
        for server in [&a, &b] {
            for _ in 0..PER_SERVER {
                clients.push((server.name, client(server, Duration::from_secs(30)).await));
            }
        }
        let until = Instant::now() + Duration::from_secs(10);
        let tasks: Vec<_> = clients
            .iter()
            .map(|(name, kv)| (*name, tokio::spawn(counter_client(kv.clone(), until))))
            .collect();
        let mut logs = Vec::new();
        for (name, task) in tasks {
            logs.push((name, task.await.expect("a counter client panicked")));
        }

        let errors: Vec<&String> = logs.iter().flat_map(|(_, l)| &l.errors).collect();
        let total: u64 = logs.iter().map(|(_, l)| l.commits.len() as u64).sum();
        let failures: u64 = logs.iter().map(|(_, l)| l.check_failures).sum();
        let per_server = |s: &str| -> u64 {
            logs.iter().filter(|(n, _)| *n == s).map(|(_, l)| l.commits.len() as u64).sum()
        };
        eprintln!(
            "{total} commits ({} through A, {} through B), {failures} failed checks, {} errors",
            per_server("A"),
            per_server("B"),
            errors.len()
        );
        assert!(errors.is_empty(), "{} requests failed, e.g. {:?}", errors.len(), &errors[..]);
        assert!(per_server("A") > 0, "no commit through server A in 10 s");
        assert!(per_server("B") > 0, "no commit through server B in 10 s");

        // Each client's own commits: versionstamps strictly increase in its order.
        for (i, (name, log)) in logs.iter().enumerate() {
            for pair in log.commits.windows(2) {
                assert!(
                    pair[0].0 < pair[1].0,
                    "client {i} (server {name}) committed {:?} then got the smaller or equal \
                     versionstamp {:?}",
                    pair[0],
                    pair[1]
                );
            }
        }
        // All commits together: unique versionstamps, and ordered by versionstamp the values
        // written are 1, 2, 3, … with no gap and no repeat.
        let mut all: Vec<(Versionstamp, u64)> =
            logs.iter().flat_map(|(_, l)| l.commits.iter().copied()).collect();
        let unique: HashSet<Versionstamp> = all.iter().map(|(v, _)| *v).collect();
        assert_eq!(unique.len(), all.len(), "two commits were given the same versionstamp");
        all.sort();
        for (i, (stamp, value)) in all.iter().enumerate() {
            assert_eq!(
                *value,
                i as u64 + 1,
                "the commit at position {} in versionstamp order ({stamp:?}) wrote {value} \
                 (lost update or misordered versionstamps); neighbours: {:?}",
                i + 1,
                &all[i.saturating_sub(2)..(i + 3).min(all.len())]
            );
        }
        // Both servers read the final counter = the number of successful commits, stamped
        // with the last commit's versionstamp.
        let last = *all.last().unwrap();
        for (name, kv) in [("A", &clients[0].1), ("B", &clients[PER_SERVER].1)] {
            let entry = kv.get(&key!["counter"]).await.unwrap().expect("the counter exists");
            assert_eq!(
                (entry.value.as_u64(), entry.versionstamp),
                (Some(total), last.0),
                "server {name} reads the counter as {:?}@{:?}, but {total} commits succeeded",
                entry.value,
                entry.versionstamp
            );
        }

        // Blind writes (no check) alternating between the servers, each after the previous
        // one was acknowledged: ever larger versionstamps.
        let (on_a, on_b) = (&clients[0].1, &clients[PER_SERVER].1);
        let mut previous = Versionstamp::default();
        for i in 0..200u64 {
            let (name, kv) = if i % 2 == 0 { ("A", on_a) } else { ("B", on_b) };
            let stamp = kv.set(&key!["alternate"], KvU64(i)).await.unwrap();
            assert!(
                stamp > previous,
                "write {i} through server {name} got {stamp:?}, not above the previous \
                 write's {previous:?}"
            );
            previous = stamp;
        }
        for (name, kv) in [("A", on_a), ("B", on_b)] {
            let entry = kv.get(&key!["alternate"]).await.unwrap().unwrap();
            assert_eq!(
                (entry.value.as_u64(), entry.versionstamp),
                (Some(199), previous),
                "server {name} reads a stale value"
            );
        }

        for (_, kv) in &clients {
            kv.close().await.unwrap();
        }
        a.stop();
        b.stop();
    });
}

/// The watch's next snapshot, before `deadline`.
async fn next_snapshot(changes: &mut WatchStream, deadline: Instant) -> Vec<Option<Entry>> {
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, changes.next()).await {
        Ok(Some(Ok(snapshot))) => snapshot,
        Ok(Some(Err(e))) => panic!("the watch on server A failed: {e}"),
        Ok(None) => panic!("the watch on server A ended"),
        Err(_) => panic!("the watcher on server A saw nothing new in time"),
    }
}

#[test]
fn a_watcher_on_one_server_sees_writes_made_through_the_other() {
    cluster_test(|db| async move {
        let a = Server::start("A", &db);
        let b = Server::start("B", &db);
        let watcher = client(&a, Duration::from_secs(30)).await;
        let writer = client(&b, Duration::from_secs(30)).await;
        let watched = key!["watched"];
        let mut changes = watcher.watch(std::slice::from_ref(&watched)).unwrap();
        let first = next_snapshot(&mut changes, Instant::now() + Duration::from_secs(10)).await;
        assert_eq!(first.len(), 1);
        assert!(first[0].is_none(), "a fresh schema has no {watched}: {first:?}");

        // A write through B, then a delete through B: A's watcher sees each.
        let stamp = writer.set(&watched, KvU64(7)).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let snapshot = next_snapshot(&mut changes, deadline).await;
            match &snapshot[0] {
                Some(e) if e.versionstamp == stamp => {
                    assert_eq!(e.value, Value::U64(7));
                    break;
                }
                // Nothing else writes this key: only the state before the write may repeat.
                None => {}
                Some(e) => panic!("the watcher saw {e:?}, which no one wrote"),
            }
        }
        writer.delete(&watched).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let snapshot = next_snapshot(&mut changes, deadline).await;
            match &snapshot[0] {
                None => break,
                Some(e) => assert_eq!(e.versionstamp, stamp, "unexpected {e:?}"),
            }
        }
        watcher.close().await.unwrap();
        writer.close().await.unwrap();
        a.stop();
        b.stop();
    });
}

#[test]
fn queue_messages_enqueued_through_one_server_reach_a_listener_on_the_other() {
    cluster_test(|db| async move {
        let a = Server::start("A", &db);
        let b = Server::start("B", &db);
        let producer = client(&a, Duration::from_secs(30)).await;
        let consumer = OpenOptions::new()
            .access_token(TOKEN)
            .remote_retry_timeout(Duration::from_secs(30))
            .queue_poll_interval(Duration::from_millis(50))
            .open(&b.url)
            .await
            .unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let listener = tokio::spawn(consumer.clone().listen_queue(move |message| {
            let tx = tx.clone();
            async move {
                let text: String = message.value.decode().map_err(|e| e.to_string())?;
                tx.send(text).map_err(|e| e.to_string())
            }
        }));
        // One message before the listener could have polled, the rest while it listens.
        const N: usize = 20;
        let expected: HashSet<String> = (0..N).map(|i| format!("job {i} via A")).collect();
        for i in 0..N {
            producer.enqueue(&format!("job {i} via A"), &EnqueueOptions::new()).await.unwrap();
        }
        let mut delivered = HashSet::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while delivered.len() < N {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, rx.recv()).await {
                Ok(Some(text)) => {
                    assert!(expected.contains(&text), "delivered {text:?}, never enqueued");
                    delivered.insert(text);
                }
                Ok(None) => panic!("the listener on B stopped: {:?}", listener.await),
                Err(_) => panic!(
                    "after 30 s the listener on B has {} of the {N} messages enqueued through \
                     A; missing: {:?}",
                    delivered.len(),
                    expected.difference(&delivered).collect::<Vec<_>>()
                ),
            }
        }
        consumer.close().await.unwrap();
        listener.await.unwrap().expect("the listener ends cleanly at close");
        producer.close().await.unwrap();
        a.stop();
        b.stop();
    });
}

/// What the writers of one server saw.
#[derive(Default)]
struct WriteLog {
    /// Acknowledged writes: key → value.
    acked: Vec<(Key, u64)>,
    /// Writes whose outcome is unknown (the request failed): key → value.
    unknown: Vec<(Key, u64, String)>,
}

/// Sets `["w", server, writer, i]` = i for i = 0, 1, … until a write fails or `stop`.
async fn writer(
    kv: Kv,
    server: &'static str,
    w: u64,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<WriteLog>>,
) {
    for i in 0u64.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let k = key!["w", server, w, i];
        match kv.set(&k, KvU64(i)).await {
            Ok(_) => log.lock().unwrap().acked.push((k, i)),
            Err(e) => {
                log.lock().unwrap().unknown.push((k, i, e.to_string()));
                return;
            }
        }
    }
}

async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every acknowledged write of `logs` is in `found` with its value.
fn assert_all_acked_present(through: &str, found: &HashMap<Key, Value>, logs: &[&WriteLog]) {
    let mut acked = 0;
    for log in logs {
        for (k, v) in &log.acked {
            acked += 1;
            match found.get(k) {
                Some(Value::U64(n)) if n == v => {}
                other => {
                    panic!("acknowledged write {k} = {v} reads as {other:?} through {through}")
                }
            }
        }
    }
    let unknown: Vec<_> = logs.iter().flat_map(|l| &l.unknown).collect();
    let present = unknown.iter().filter(|(k, _, _)| found.contains_key(k)).count();
    eprintln!(
        "through {through}: all {acked} acknowledged writes present; {} writes with an unknown \
         outcome, {present} of them present; {} entries in all",
        unknown.len(),
        found.len()
    );
    // Nothing else was written under the prefix.
    for k in found.keys() {
        let known = logs.iter().any(|l| {
            l.acked.iter().any(|(a, _)| a == k) || l.unknown.iter().any(|(u, _, _)| u == k)
        });
        assert!(known, "{k} is in the database, but no writer wrote it");
    }
}

#[test]
fn kill_9_of_one_server_under_load_loses_no_acknowledged_write() {
    cluster_test(|db| async move {
        let mut a = Server::start("A", &db);
        let b = Server::start("B", &db);
        const WRITERS: u64 = 8;
        let log_a: Arc<Mutex<WriteLog>> = Arc::default();
        let log_b: Arc<Mutex<WriteLog>> = Arc::default();
        let stop_a = Arc::new(AtomicBool::new(false));
        let stop_b = Arc::new(AtomicBool::new(false));
        let mut tasks_a = Vec::new();
        let mut tasks_b = Vec::new();
        for w in 0..WRITERS {
            // A's clients give up 3 s after their server is gone.
            let kv = client(&a, Duration::from_secs(3)).await;
            tasks_a.push(tokio::spawn(writer(kv, "a", w, stop_a.clone(), log_a.clone())));
            let kv = client(&b, Duration::from_secs(30)).await;
            tasks_b.push(tokio::spawn(writer(kv, "b", w, stop_b.clone(), log_b.clone())));
        }
        let acked = |log: &Arc<Mutex<WriteLog>>| log.lock().unwrap().acked.len();
        wait_until("200 acknowledged writes through each server", Duration::from_secs(60), || {
            acked(&log_a) >= 200 && acked(&log_b) >= 200
        })
        .await;

        // Writes through both servers are in flight right now.
        a.kill9();
        let b_at_kill = acked(&log_b);
        // A's writers fail (retry timeout); B's keep committing.
        for task in tasks_a {
            tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .expect("a writer on the killed server still runs after 60 s")
                .unwrap();
        }
        wait_until("200 more writes through B after A died", Duration::from_secs(60), || {
            acked(&log_b) >= b_at_kill + 200
        })
        .await;
        stop_b.store(true, Ordering::Relaxed);
        for task in tasks_b {
            tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .expect("a writer on B did not stop")
                .unwrap();
        }
        stop_a.store(true, Ordering::Relaxed);
        let log_a = std::mem::take(&mut *log_a.lock().unwrap());
        let log_b = std::mem::take(&mut *log_b.lock().unwrap());
        eprintln!(
            "through A: {} acknowledged before the kill, {} failed; through B: {} acknowledged \
             ({b_at_kill} at the kill)",
            log_a.acked.len(),
            log_a.unknown.len(),
            log_b.acked.len()
        );
        assert_eq!(
            log_a.unknown.len() as u64,
            WRITERS,
            "each writer on the killed server ends with one failed write"
        );
        assert!(
            log_b.unknown.is_empty(),
            "writes through the surviving server B failed: {:?}",
            log_b.unknown
        );

        // Through the survivor.
        let reader_b = client(&b, Duration::from_secs(30)).await;
        let found = list_all(&reader_b, key!["w"]).await;
        assert_all_acked_present("B (the survivor)", &found, &[&log_a, &log_b]);

        // Through the killed server, restarted on the same schema; it also writes again, and B
        // reads that.
        let a2 = Server::start("A (restarted)", &db);
        let reader_a = client(&a2, Duration::from_secs(30)).await;
        let again = list_all(&reader_a, key!["w"]).await;
        assert_all_acked_present("A (restarted)", &again, &[&log_a, &log_b]);
        assert_eq!(again, found, "the restarted server reads other entries than B");
        let stamp = reader_a.set(&key!["after restart"], KvU64(1)).await.unwrap();
        let seen = reader_b.get(&key!["after restart"]).await.unwrap().expect("B sees it");
        assert_eq!(seen.versionstamp, stamp);

        reader_a.close().await.unwrap();
        reader_b.close().await.unwrap();
        a2.stop();
        b.stop();
    });
}
