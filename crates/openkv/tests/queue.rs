//! Queues: delays and ordering, retries on the backoff schedule (on a manual clock),
//! dead-letter keys, panics, atomic enqueue with a failed check, the concurrency cap, close,
//! at-least-once across a SIGKILL of the listening process, and Deno-file compatibility with
//! the real Deno CLI in both directions.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openkv::{
    key, EnqueueOptions, Error, JsValue, Kv, KvU64, ManualClock, OpenOptions, QueueMessage, Value,
};
use tokio::sync::mpsc;

/// Polls often, so that a test advancing the manual clock sees the effect quickly.
fn options(clock: &ManualClock) -> OpenOptions {
    OpenOptions::new().clock(clock.clone()).queue_poll_interval(Duration::from_millis(10))
}

async fn manual_kv() -> (tempfile::TempDir, ManualClock, Kv) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    let kv = options(&clock).open(dir.path().join("q.sqlite3")).await.unwrap();
    (dir, clock, kv)
}

fn text(message: &QueueMessage) -> String {
    message.value.decode::<String>().unwrap()
}

/// Starts a listener that forwards every message's text (and the clock at delivery) and
/// answers with `outcome(text, attempt_of_that_text)`.
fn listen(
    kv: &Kv,
    clock: &ManualClock,
    outcome: impl Fn(&str, usize) -> bool + Send + Sync + 'static,
) -> (mpsc::UnboundedReceiver<(String, i64)>, tokio::task::JoinHandle<openkv::Result<()>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let clock = clock.clone();
    let attempts =
        Arc::new(std::sync::Mutex::new(std::collections::HashMap::<String, usize>::new()));
    let listener = tokio::spawn(kv.clone().listen_queue(move |message| {
        let t = text(&message);
        let attempt = {
            let mut a = attempts.lock().unwrap();
            let n = a.entry(t.clone()).or_default();
            *n += 1;
            *n
        };
        let _ = tx.send((t.clone(), clock.now_ms()));
        let ok = outcome(&t, attempt);
        async move {
            if ok {
                Ok(())
            } else {
                Err(format!("refusing {t} (attempt {attempt})"))
            }
        }
    }));
    (rx, listener)
}

/// The next delivery, or a failure if none comes within 10 s.
async fn next(rx: &mut mpsc::UnboundedReceiver<(String, i64)>) -> (String, i64) {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no delivery within 10 s"))
        .expect("the listener is running")
}

/// Waits until no delivery is in progress (the listener has recorded the outcome of the last
/// one), by looking at Deno's `queue_running` table. The backoff interval counts from that
/// moment, so a test must not move the clock before it.
async fn settled(db: &std::path::Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let running: i64 =
            conn.query_row("select count(*) from queue_running", [], |r| r.get(0)).unwrap();
        if running == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "a delivery never finished");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Asserts that nothing is delivered for a while (the listener polls every 10 ms).
async fn nothing_for_a_while(rx: &mut mpsc::UnboundedReceiver<(String, i64)>) {
    if let Ok(Some(got)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
        panic!("unexpected delivery {got:?}");
    }
}

use openkv::Clock as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delays_are_honoured_and_messages_come_in_due_order() {
    let (dir, clock, kv) = manual_kv().await;
    let delayed = |ms| EnqueueOptions::new().delay(Duration::from_millis(ms));
    kv.enqueue(&"in 2s".to_string(), &delayed(2000)).await.unwrap();
    kv.enqueue(&"in 1s".to_string(), &delayed(1000)).await.unwrap();
    kv.enqueue(&"now".to_string(), &EnqueueOptions::new()).await.unwrap();
    let start = clock.now_ms();
    let (mut rx, listener) = listen(&kv, &clock, |_, _| true);
    assert_eq!(next(&mut rx).await, ("now".into(), start));
    nothing_for_a_while(&mut rx).await;
    settled(&dir.path().join("q.sqlite3")).await;
    clock.advance(Duration::from_millis(999));
    nothing_for_a_while(&mut rx).await;
    clock.advance(Duration::from_millis(1));
    assert_eq!(next(&mut rx).await.0, "in 1s");
    clock.advance(Duration::from_millis(1000));
    assert_eq!(next(&mut rx).await.0, "in 2s");
    kv.close().await.unwrap();
    listener.await.unwrap().expect("close ends the listener with Ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_follow_the_backoff_schedule_then_go_to_the_dead_letter_keys() {
    let (dir, clock, kv) = manual_kv().await;
    let options = EnqueueOptions::new()
        .backoff_schedule([Duration::from_secs(1), Duration::from_secs(3)])
        .keys_if_undelivered([key!["dead", 1], key!["dead", 2]]);
    kv.enqueue(&"doomed".to_string(), &options).await.unwrap();
    let (mut rx, listener) = listen(&kv, &clock, |_, _| false);
    let db = dir.path().join("q.sqlite3");
    let t0 = next(&mut rx).await.1;
    settled(&db).await;
    clock.advance(Duration::from_millis(999));
    nothing_for_a_while(&mut rx).await;
    clock.advance(Duration::from_millis(1));
    assert_eq!(next(&mut rx).await.1, t0 + 1000, "second attempt after 1 s");
    settled(&db).await;
    clock.advance(Duration::from_millis(2999));
    nothing_for_a_while(&mut rx).await;
    assert_eq!(kv.get(&key!["dead", 1]).await.unwrap(), None, "not before the last attempt");
    clock.advance(Duration::from_millis(1));
    assert_eq!(next(&mut rx).await.1, t0 + 4000, "third and last attempt after 3 s more");
    // The dead-letter write happens once the last attempt has failed.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = kv.get_many(&[key!["dead", 1], key!["dead", 2]]).await.unwrap();
        if got.iter().all(Option::is_some) {
            for entry in got.into_iter().flatten() {
                assert_eq!(entry.value.decode::<String>().unwrap(), "doomed");
            }
            break;
        }
        assert!(Instant::now() < deadline, "dead-letter keys never written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    clock.advance(Duration::from_secs(3600));
    nothing_for_a_while(&mut rx).await;
    kv.close().await.unwrap();
    listener.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_a_failed_attempt() {
    let (_dir, _clock, kv) = manual_kv().await;
    let options = EnqueueOptions::new().backoff_schedule([Duration::ZERO]);
    kv.enqueue(&"boom".to_string(), &options).await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let calls = Arc::new(AtomicUsize::new(0));
    let listener = tokio::spawn(kv.clone().listen_queue(move |message| {
        let (tx, calls) = (tx.clone(), calls.clone());
        async move {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            let _ = tx.send((text(&message), i64::from(message.attempt)));
            if n == 1 {
                panic!("the first attempt panics");
            }
            Ok::<(), String>(())
        }
    }));
    assert_eq!(next(&mut rx).await, ("boom".into(), 1));
    assert_eq!(next(&mut rx).await, ("boom".into(), 2), "delivered again after the panic");
    nothing_for_a_while(&mut rx).await;
    kv.close().await.unwrap();
    listener.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_in_a_failed_atomic_write_is_never_delivered() {
    let (_dir, clock, kv) = manual_kv().await;
    kv.set(&key!["exists"], Value::from(KvU64(1))).await.unwrap();
    let failed = kv
        .atomic()
        .check(&key!["exists"], None)
        .enqueue(&"rolled back".to_string(), &EnqueueOptions::new())
        .commit()
        .await
        .unwrap();
    assert!(!failed.is_committed());
    let committed = kv
        .atomic()
        .check(&key!["absent"], None)
        .set(&key!["absent"], Value::from(KvU64(2)))
        .enqueue(&"committed".to_string(), &EnqueueOptions::new())
        .commit()
        .await
        .unwrap();
    assert!(committed.is_committed());
    let (mut rx, listener) = listen(&kv, &clock, |_, _| true);
    assert_eq!(next(&mut rx).await.0, "committed");
    nothing_for_a_while(&mut rx).await;
    kv.close().await.unwrap();
    listener.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_capped_and_a_second_listener_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let kv = OpenOptions::new()
        .queue_max_concurrency(3)
        .open(dir.path().join("q.sqlite3"))
        .await
        .unwrap();
    for i in 0..12 {
        kv.enqueue(&format!("m{i}"), &EnqueueOptions::new()).await.unwrap();
    }
    let (now, max) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let done = Arc::new(AtomicUsize::new(0));
    let listener = {
        let (now, max, done) = (now.clone(), max.clone(), done.clone());
        tokio::spawn(kv.clone().listen_queue(move |_| {
            let (now, max, done) = (now.clone(), max.clone(), done.clone());
            async move {
                let running = now.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(running, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(30)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                done.fetch_add(1, Ordering::SeqCst);
                Ok::<(), String>(())
            }
        }))
    };
    // Once the first listener is surely running, a second one is refused.
    while done.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let second = kv.clone().listen_queue(|_| async { Ok::<(), String>(()) }).await;
    assert!(matches!(second, Err(Error::InvalidOption(_))), "{second:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while done.load(Ordering::SeqCst) < 12 {
        assert!(Instant::now() < deadline, "only {} of 12 delivered", done.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(max.load(Ordering::SeqCst), 3, "3 at once, never more");
    kv.close().await.unwrap();
    listener.await.unwrap().unwrap();
}

#[tokio::test]
async fn bad_enqueues_are_refused_with_deno_messages() {
    let kv = Kv::open_in_memory().await.unwrap();
    let month = EnqueueOptions::new().delay(Duration::from_secs(31 * 24 * 3600));
    let err = kv.enqueue(&1, &month).await.unwrap_err();
    assert_eq!(err.to_string(), "Delay cannot be greater than 30 days");
    let keys = EnqueueOptions::new().keys_if_undelivered((0..11).map(|i| key!["k", i]));
    assert!(matches!(kv.enqueue(&1, &keys).await, Err(Error::InvalidEnqueue(_))));
    let hour_and_a_bit = EnqueueOptions::new().backoff_schedule([Duration::from_secs(3601)]);
    assert!(matches!(kv.enqueue(&1, &hour_and_a_bit).await, Err(Error::InvalidEnqueue(_))));
    let counter = kv.enqueue(Value::from(KvU64(1)), &EnqueueOptions::new()).await;
    assert!(matches!(counter, Err(Error::InvalidEnqueue(_))), "{counter:?}");
    // Raw bytes are enqueued as a Uint8Array, as Deno would.
    kv.enqueue(Value::Bytes(vec![1, 2, 3]), &EnqueueOptions::new()).await.unwrap();
}

// --- at least once across SIGKILL ----------------------------------------------------------

const CHILD_ENV: &str = "OPENKV_QUEUE_CHILD";

/// The child: listens on the file named by `OPENKV_QUEUE_CHILD`, says which message it got,
/// and never finishes handling it.
#[test]
fn queue_child_that_hangs() {
    let Ok(db) = std::env::var(CHILD_ENV) else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let kv = Kv::open(&db).await.unwrap();
        let _ = kv
            .listen_queue(|message| async move {
                println!("got {}", text(&message));
                std::future::pending::<()>().await;
                Ok::<(), String>(())
            })
            .await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_listener_is_killed_is_delivered_again() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("q.sqlite3");
    let kv = Kv::open(&db).await.unwrap();
    kv.enqueue(&"survivor".to_string(), &EnqueueOptions::new()).await.unwrap();
    kv.close().await.unwrap();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["queue_child_that_hangs", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let got = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout).lines().map_while(Result::ok).find(|l| l.contains("got "))
    })
    .await
    .unwrap();
    assert!(got.unwrap().contains("got survivor"), "the child received the message");
    // SIGKILL: no chance to put the message back.
    child.kill().unwrap();
    child.wait().unwrap();

    let killed_at = Instant::now();
    let kv = Kv::open(&db).await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let listener = tokio::spawn(kv.clone().listen_queue(move |message| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(text(&message));
            Ok::<(), String>(())
        }
    }));
    let again = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.unwrap().unwrap();
    assert_eq!(again, "survivor");
    // Not before the dead listener's lease ran out: it might still have been working on it.
    assert!(killed_at.elapsed() >= openkv::QUEUE_LEASE - Duration::from_secs(2));
    kv.close().await.unwrap();
    listener.await.unwrap().unwrap();
}

// --- Deno CLI compatibility -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_deno_enqueued_are_delivered_to_openkv() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("from-deno.sqlite3");
    let out =
        common::run_deno(&common::deno_scripts().join("queue_enqueue.ts"), &[db.as_path()]).await;
    assert!(out.contains("enqueued 3"), "{out}");
    let kv =
        OpenOptions::new().queue_poll_interval(Duration::from_millis(20)).open(&db).await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let listener = tokio::spawn(kv.clone().listen_queue(move |message| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(message.value.to_js().map_err(|e| e.to_string())?);
            Ok::<(), String>(())
        }
    }));
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap());
    }
    let field = |v: &JsValue, name: &str| match v {
        JsValue::Object(props) => props.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
        other => panic!("not an object: {other:?}"),
    };
    let mut ns: Vec<f64> = got
        .iter()
        .map(|v| match field(v, "n") {
            Some(JsValue::Number(n)) => n,
            other => panic!("n = {other:?}"),
        })
        .collect();
    ns.sort_by(f64::total_cmp);
    assert_eq!(ns, vec![1.0, 2.0, 3.0]);
    let first = got.iter().find(|v| field(v, "n") == Some(JsValue::Number(1.0))).unwrap();
    assert_eq!(field(first, "big"), Some(JsValue::BigInt("12345678901234567890".parse().unwrap())));
    kv.close().await.unwrap();
    listener.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_openkv_enqueued_are_delivered_to_deno() {
    #[derive(serde::Serialize)]
    struct Job {
        from: &'static str,
        n: u32,
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("to-deno.sqlite3");
    let kv = Kv::open(&db).await.unwrap();
    kv.enqueue(&Job { from: "openkv", n: 1 }, &EnqueueOptions::new()).await.unwrap();
    let later = EnqueueOptions::new().delay(Duration::from_millis(300));
    kv.atomic().enqueue(&Job { from: "openkv", n: 2 }, &later).commit().await.unwrap();
    kv.close().await.unwrap();
    let two = std::path::Path::new("2");
    let out =
        common::run_deno(&common::deno_scripts().join("queue_listen.ts"), &[db.as_path(), two])
            .await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, vec![r#"{"from":"openkv","n":1}"#, r#"{"from":"openkv","n":2}"#], "{out}");
}
