//! Queues over the network (docs/protocol-extensions.md), against a real `openkv serve` on
//! 127.0.0.1: the webhook (delivery, headers, JSON body, retries, dead-letter keys), the pull
//! endpoints' handling of bad requests, the long poll that wakes remote listeners, and remote
//! listeners through the Rust client. Each of those runs twice: the server on a SQLite file,
//! and on a fresh PostgreSQL schema. Then local listeners on two handles of one store (two
//! processes, as far as the store can tell): delays, retries and dead letters across handles,
//! and each message delivered once between two listeners.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use openkv::{key, EnqueueOptions, Error, Kv};
use openkv_server::{ServerConfig, WebhookConfig};
use openkv_testsuite::fixtures::{self, Server, TOKEN};
use tokio::net::TcpListener;

/// Where a test's data lives: a SQLite file in a temporary directory, or a fresh PostgreSQL
/// schema. `location` is what `Kv::open` and `Server::start` take.
struct Store {
    location: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Store {
    fn sqlite() -> Store {
        let dir = tempfile::tempdir().unwrap();
        Store { location: dir.path().join("db.sqlite3"), _dir: Some(dir) }
    }

    /// `None`: no PostgreSQL server here (see `fixtures::postgres_base_url`).
    fn postgres() -> Option<Store> {
        Some(Store { location: PathBuf::from(fixtures::postgres_url()?), _dir: None })
    }

    async fn serve(&self, config: ServerConfig) -> Server {
        Server::start(&self.location, config).await
    }
}

/// One test per store: `$sqlite` runs `$body` on a SQLite file, `$postgres` on a fresh
/// PostgreSQL schema.
macro_rules! on_each_store {
    ($body:ident: $sqlite:ident, $postgres:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            $body(Store::sqlite()).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            let Some(store) = Store::postgres() else { return };
            $body(store).await;
        }
    };
}

/// One request the webhook received: headers and JSON body.
type Received = (HeaderMap, serde_json::Value);

/// A webhook on 127.0.0.1 that records every request and answers `status(attempt_number)`.
async fn webhook(
    status: impl Fn(usize) -> StatusCode + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Received>>>) {
    let received: Arc<Mutex<Vec<Received>>> = Arc::default();
    let log = received.clone();
    let status = Arc::new(status);
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: String| {
        let (log, status) = (log.clone(), status.clone());
        async move {
            let json = serde_json::from_str(&body).expect("the webhook body is JSON");
            let n = {
                let mut log = log.lock().unwrap();
                log.push((headers, json));
                log.len()
            };
            status(n)
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers.get(name).unwrap_or_else(|| panic!("no {name} header")).to_str().unwrap().to_owned()
}

async fn server_with_webhook(store: &Store, url: &str) -> Server {
    store.serve(ServerConfig::new(TOKEN).queue_webhook(WebhookConfig::new(url))).await
}

on_each_store!(webhook_delivery:
    the_webhook_receives_each_message_as_typed_json_with_its_id_and_attempt,
    the_webhook_receives_each_message_as_typed_json_with_its_id_and_attempt_on_postgres);

async fn webhook_delivery(store: Store) {
    let (url, received) = webhook(|_| StatusCode::NO_CONTENT).await;
    let server = server_with_webhook(&store, &url).await;
    // Enqueued by a remote client, as @deno/kv would through this server.
    let kv = fixtures::remote(&server.url).await;
    let job = serde_json::json!({"to": "ada@example.com", "n": 1});
    kv.enqueue(&job, &EnqueueOptions::new()).await.unwrap();
    wait_for("the webhook call", || received.lock().unwrap().len() == 1).await;
    let (headers, body) = received.lock().unwrap()[0].clone();
    assert_eq!(body, job);
    assert_eq!(header(&headers, "content-type"), "application/json");
    assert_eq!(header(&headers, "x-openkv-attempt"), "1");
    assert_eq!(header(&headers, "x-openkv-message-id").len(), 36, "a UUID");
    // Delivered means gone: no second call.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(received.lock().unwrap().len(), 1);
    kv.close().await.unwrap();
    server.stop().await;
}

on_each_store!(webhook_retries:
    a_failing_webhook_sees_every_retry_then_the_dead_letter_key_is_written,
    a_failing_webhook_sees_every_retry_then_the_dead_letter_key_is_written_on_postgres);

async fn webhook_retries(store: Store) {
    let (url, received) = webhook(|_| StatusCode::INTERNAL_SERVER_ERROR).await;
    let server = server_with_webhook(&store, &url).await;
    let options = EnqueueOptions::new()
        .backoff_schedule([Duration::from_millis(50), Duration::from_millis(100)])
        .keys_if_undelivered([key!["failed", "job"]]);
    server.kv.enqueue(&"undeliverable".to_string(), &options).await.unwrap();
    wait_for("three attempts", || received.lock().unwrap().len() >= 3).await;
    wait_for_key(&server.kv, &key!["failed", "job"]).await;
    let log = received.lock().unwrap().clone();
    assert_eq!(log.len(), 3, "one attempt and two retries, no more");
    let attempts: Vec<String> = log.iter().map(|(h, _)| header(h, "x-openkv-attempt")).collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    let ids: Vec<String> = log.iter().map(|(h, _)| header(h, "x-openkv-message-id")).collect();
    assert!(ids.iter().all(|id| id == &ids[0]), "one message: {ids:?}");
    let dead = server.kv.get(&key!["failed", "job"]).await.unwrap().unwrap();
    assert_eq!(dead.value.decode::<String>().unwrap(), "undeliverable");
    server.stop().await;
}

async fn wait_for_key(kv: &Kv, key: &openkv::Key) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while kv.get(key).await.unwrap().is_none() {
        assert!(Instant::now() < deadline, "{key:?} never written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

on_each_store!(webhook_recovers:
    a_webhook_that_recovers_gets_the_message_on_a_retry,
    a_webhook_that_recovers_gets_the_message_on_a_retry_on_postgres);

async fn webhook_recovers(store: Store) {
    let (url, received) =
        webhook(|n| if n == 1 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK }).await;
    let server = server_with_webhook(&store, &url).await;
    let options = EnqueueOptions::new().backoff_schedule([Duration::from_millis(50)]);
    server.kv.enqueue(&"eventually".to_string(), &options).await.unwrap();
    wait_for("two attempts", || received.lock().unwrap().len() == 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(received.lock().unwrap().len(), 2, "delivered on the retry, not called again");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_server_refuses_a_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let kv = Kv::open(dir.path().join("db.sqlite3")).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config =
        ServerConfig::new(TOKEN).read_only(true).queue_webhook(WebhookConfig::new("http://x"));
    let err = openkv_server::serve(kv.clone(), listener, config, std::future::pending()).await;
    assert!(matches!(err, Err(openkv_server::ServeError::ReadOnlyWebhook)), "{err:?}");
    kv.close().await.unwrap();
}

/// The queue endpoints of a server, as a raw HTTP client sees them.
struct QueueEndpoints {
    client: reqwest::Client,
    url: String,
    database_id: String,
}

impl QueueEndpoints {
    async fn new(server: &Server) -> QueueEndpoints {
        let database_id = server.kv.database_id().await.unwrap().to_string();
        QueueEndpoints { client: reqwest::Client::new(), url: server.url.clone(), database_id }
    }

    /// `POST <url>/v2/openkv/queue/<path>` with the data path's headers.
    async fn post(&self, path: &str, token: &str, body: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/v2/openkv/queue/{path}", self.url))
            .bearer_auth(token)
            .header("x-denokv-database-id", &self.database_id)
            .header("x-denokv-version", "3")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }
}

on_each_store!(pull_endpoints:
    the_pull_endpoints_refuse_bad_requests_with_4xx,
    the_pull_endpoints_refuse_bad_requests_with_4xx_on_postgres);

/// The pull endpoints at the HTTP level: authentication and every malformed request → 4xx
/// with a message, and the server still answering.
async fn pull_endpoints(store: Store) {
    let server = store.serve(ServerConfig::new(TOKEN)).await;
    let endpoints = QueueEndpoints::new(&server).await;
    let cases = [
        ("take", TOKEN, r#"{"max": 1, "leaseMs": 5000}"#, 200),
        ("take", "wrong-token-123456", r#"{"max": 1, "leaseMs": 5000}"#, 401),
        ("take", TOKEN, "not json", 400),
        ("take", TOKEN, r#"{"max": 0, "leaseMs": 5000}"#, 400),
        ("take", TOKEN, r#"{"max": 101, "leaseMs": 5000}"#, 400),
        ("take", TOKEN, r#"{"max": 1, "leaseMs": 10}"#, 400),
        ("take", TOKEN, r#"{"max": 1, "leaseMs": 5000, "extra": 1}"#, 400),
        ("renew", TOKEN, r#"{"ids": ["x"], "leaseMs": 5000}"#, 200),
        ("renew", TOKEN, r#"{"ids": "x", "leaseMs": 5000}"#, 400),
        ("finish", TOKEN, r#"{"results": [{"id": "no-such", "delivered": true}]}"#, 200),
        ("finish", TOKEN, r#"{"results": [{"id": 7, "delivered": true}]}"#, 400),
        ("finish", TOKEN, r#"{"id": "x", "delivered": true}"#, 400),
        ("wait", TOKEN, r#"{"timeoutMs": 0}"#, 200),
        ("wait", "wrong-token-123456", r#"{"timeoutMs": 0}"#, 401),
        ("wait", TOKEN, r#"{"timeoutMs": 60001}"#, 400),
        ("wait", TOKEN, r#"{"timeoutMs": -1}"#, 400),
        ("wait", TOKEN, "{}", 400),
        ("nope", TOKEN, "{}", 404),
    ];
    for (path, token, body, want) in cases {
        let response = endpoints.post(path, token, body).await;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(status, want, "{path} {body}: {text}");
        if want >= 400 {
            assert!(!text.is_empty(), "{path} {body}: a message");
        }
    }
    server.stop().await;
}

on_each_store!(wait_endpoint:
    the_wait_endpoint_answers_once_a_message_is_due,
    the_wait_endpoint_answers_once_a_message_is_due_on_postgres);

/// `queue/wait` at the HTTP level: `due: false` after its timeout on an empty queue; for a
/// delayed message, `due: true` once it fell due — not before, and long before the timeout.
async fn wait_endpoint(store: Store) {
    let server = store.serve(ServerConfig::new(TOKEN)).await;
    let endpoints = &QueueEndpoints::new(&server).await;
    let wait = |timeout_ms: u64| async move {
        let body = format!(r#"{{"timeoutMs": {timeout_ms}}}"#);
        let response = endpoints.post("wait", TOKEN, &body).await;
        assert_eq!(response.status(), StatusCode::OK);
        serde_json::from_slice::<serde_json::Value>(&response.bytes().await.unwrap()).unwrap()
    };
    let started = Instant::now();
    assert_eq!(wait(300).await, serde_json::json!({"due": false}));
    assert!(started.elapsed() >= Duration::from_millis(300), "it waited its timeout");

    let delay = Duration::from_millis(800);
    let enqueued = Instant::now();
    server.kv.enqueue(&"later".to_string(), &EnqueueOptions::new().delay(delay)).await.unwrap();
    assert_eq!(wait(30_000).await, serde_json::json!({"due": true}));
    assert!(enqueued.elapsed() >= delay, "not before the message was due");
    server.stop().await;
}

on_each_store!(remote_listener_woken:
    a_remote_listener_hears_of_messages_without_polling,
    a_remote_listener_hears_of_messages_without_polling_on_postgres);

/// A remote listener whose poll interval is an hour still gets, within seconds, a message
/// enqueued through the server after it started waiting, and a delayed one when it falls
/// due: the server's long poll (`queue/wait`) wakes it.
async fn remote_listener_woken(store: Store) {
    let server = store.serve(ServerConfig::new(TOKEN)).await;
    let consumer = fixtures::client_options()
        .queue_poll_interval(Duration::from_secs(3600))
        .open(&server.url)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = tokio::spawn(consumer.clone().listen_queue(move |message| {
        let tx = tx.clone();
        async move {
            let text: String = message.value.decode().map_err(|e| e.to_string())?;
            tx.send(text).map_err(|e| e.to_string())
        }
    }));
    // Let the listener make its first (empty) take and settle into waiting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let producer = fixtures::remote(&server.url).await;
    let within = Duration::from_secs(20);
    producer.enqueue(&"now".to_string(), &EnqueueOptions::new()).await.unwrap();
    let got = tokio::time::timeout(within, rx.recv()).await.expect("delivered without polling");
    assert_eq!(got.unwrap(), "now");
    let delayed = EnqueueOptions::new().delay(Duration::from_millis(700));
    producer.enqueue(&"later".to_string(), &delayed).await.unwrap();
    let got = tokio::time::timeout(within, rx.recv()).await.expect("delivered without polling");
    assert_eq!(got.unwrap(), "later");
    consumer.close().await.unwrap();
    listener.await.unwrap().unwrap();
    server.stop().await;
}

/// `Kv::queue_wakeup` on a remote database needs a runtime for its long poll: asked from a
/// thread without one it answers `None` (poll only) rather than panicking; closing the handle
/// changes the signal, so a waiter learns of the close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_queue_signal_without_a_runtime_is_none_and_close_changes_it() {
    let store = Store::sqlite();
    let server = store.serve(ServerConfig::new(TOKEN)).await;
    let kv = fixtures::remote(&server.url).await;
    let elsewhere = kv.clone();
    let outside = std::thread::spawn(move || elsewhere.queue_wakeup().is_none()).join();
    assert!(outside.expect("no panic"), "no runtime: no signal");
    let mut signal = kv.queue_wakeup().expect("a signal inside the runtime");
    kv.close().await.unwrap();
    let changed = tokio::time::timeout(Duration::from_secs(10), signal.changed()).await;
    assert!(changed.is_ok(), "close changes the signal");
    server.stop().await;
}

/// A remote client with a fast poll, for the pull-based listener.
async fn remote_listener_kv(url: &str) -> Kv {
    fixtures::client_options()
        .queue_poll_interval(Duration::from_millis(30))
        .open(url)
        .await
        .unwrap()
}

on_each_store!(remote_listener_retries:
    a_remote_listener_retries_by_the_servers_schedule_then_dead_letters,
    a_remote_listener_retries_by_the_servers_schedule_then_dead_letters_on_postgres);

async fn remote_listener_retries(store: Store) {
    let server = store.serve(ServerConfig::new(TOKEN)).await;
    let options = EnqueueOptions::new()
        .backoff_schedule([Duration::from_millis(50)])
        .keys_if_undelivered([key!["dead"]]);
    let producer = fixtures::remote(&server.url).await;
    producer.enqueue(&"remote job".to_string(), &options).await.unwrap();
    let consumer = remote_listener_kv(&server.url).await;
    let attempts: Arc<Mutex<Vec<(String, u32)>>> = Arc::default();
    let log = attempts.clone();
    let listener = tokio::spawn(consumer.clone().listen_queue(move |message| {
        let log = log.clone();
        async move {
            let text: String = message.value.decode().map_err(|e| e.to_string())?;
            log.lock().unwrap().push((text, message.attempt));
            Err::<(), _>("the handler refuses".to_string())
        }
    }));
    wait_for_key(&server.kv, &key!["dead"]).await;
    let seen = attempts.lock().unwrap().clone();
    assert_eq!(seen, [("remote job".to_string(), 1), ("remote job".to_string(), 2)]);
    let dead = producer.get(&key!["dead"]).await.unwrap().unwrap();
    assert_eq!(dead.value.decode::<String>().unwrap(), "remote job");
    consumer.close().await.unwrap();
    listener.await.unwrap().unwrap();
    server.stop().await;
}

on_each_store!(remote_listener_vanishes:
    a_message_whose_remote_listener_vanishes_is_delivered_to_the_next,
    a_message_whose_remote_listener_vanishes_is_delivered_to_the_next_on_postgres);

async fn remote_listener_vanishes(store: Store) {
    let server = store.serve(ServerConfig::new(TOKEN)).await;
    server.kv.enqueue(&"orphan".to_string(), &EnqueueOptions::new()).await.unwrap();
    // The first listener takes the message and never answers; then it is gone (dropped: no
    // finish, no more renewals), like a crashed process.
    let first = remote_listener_kv(&server.url).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let hanging = tokio::spawn(first.clone().listen_queue(move |message| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(message.id.clone());
            std::future::pending::<()>().await;
            Ok::<(), String>(())
        }
    }));
    let id = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
    hanging.abort();
    let vanished_at = Instant::now();

    let second = remote_listener_kv(&server.url).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = tokio::spawn(second.clone().listen_queue(move |message| {
        let tx = tx.clone();
        async move { tx.send((message.id.clone(), message.attempt)).map_err(|e| e.to_string()) }
    }));
    let again = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.unwrap().unwrap();
    assert_eq!(again, (id, 2), "the same message, second attempt");
    assert!(
        vanished_at.elapsed() >= openkv::QUEUE_LEASE - Duration::from_secs(2),
        "not before the lease could have run out"
    );
    second.close().await.unwrap();
    listener.await.unwrap().unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denokv_has_no_remote_listeners_and_says_so() {
    let Some(fixture) = fixtures::denokv().await else { return };
    let err = fixture.kv.clone().listen_queue(|_| async { Ok::<(), String>(()) }).await;
    assert!(matches!(&err, Err(Error::Unsupported(m)) if m.contains("denokv")), "{err:?}");
    fixture.finish().await;
}

/// Two handles on one store: what one enqueues, a listener on the other gets.
async fn two_handles(store: &Store) -> (Kv, Kv) {
    let open = || {
        openkv::OpenOptions::new()
            .queue_poll_interval(Duration::from_millis(30))
            .open(&store.location)
    };
    (open().await.unwrap(), open().await.unwrap())
}

on_each_store!(listener_on_another_handle:
    a_listener_gets_delays_retries_and_dead_letters_enqueued_through_another_handle,
    a_listener_gets_delays_retries_and_dead_letters_enqueued_through_another_handle_on_postgres);

async fn listener_on_another_handle(store: Store) {
    let (producer, consumer) = two_handles(&store).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = tokio::spawn(consumer.clone().listen_queue(move |message| {
        let tx = tx.clone();
        async move {
            let text: String = message.value.decode().map_err(|e| e.to_string())?;
            let _ = tx.send((text.clone(), message.attempt, Instant::now()));
            if text == "fails" {
                Err("the handler refuses".to_string())
            } else {
                Ok(())
            }
        }
    }));
    let enqueued = Instant::now();
    let delayed = EnqueueOptions::new().delay(Duration::from_millis(800));
    producer.enqueue(&"later".to_string(), &delayed).await.unwrap();
    producer.enqueue(&"now".to_string(), &EnqueueOptions::new()).await.unwrap();
    let failing = EnqueueOptions::new()
        .backoff_schedule([Duration::from_millis(100), Duration::from_millis(200)])
        .keys_if_undelivered([key!["dead", "fails"]]);
    producer.enqueue(&"fails".to_string(), &failing).await.unwrap();

    let mut seen: Vec<(String, u32, Instant)> = Vec::new();
    while seen.len() < 5 {
        let next = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await;
        seen.push(next.expect("timed out waiting for a delivery").unwrap());
    }
    let attempts = |text: &str| -> Vec<(u32, Instant)> {
        seen.iter().filter(|(t, ..)| t == text).map(|&(_, n, at)| (n, at)).collect()
    };
    assert_eq!(attempts("now").len(), 1, "{seen:?}");
    let later = attempts("later");
    assert_eq!(later.len(), 1, "{seen:?}");
    assert!(later[0].1 - enqueued >= Duration::from_millis(800), "not before its delay");
    let fails = attempts("fails");
    assert_eq!(fails.iter().map(|a| a.0).collect::<Vec<_>>(), [1, 2, 3], "{seen:?}");
    assert!(fails[1].1 - fails[0].1 >= Duration::from_millis(100), "the first backoff");
    assert!(fails[2].1 - fails[1].1 >= Duration::from_millis(200), "the second backoff");
    // The dead-letter key, written once the last attempt failed, is seen by both handles.
    wait_for_key(&producer, &key!["dead", "fails"]).await;
    let dead = consumer.get(&key!["dead", "fails"]).await.unwrap().unwrap();
    assert_eq!(dead.value.decode::<String>().unwrap(), "fails");
    // Nothing more: no fourth attempt, no second delivery.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(rx.try_recv().is_err(), "a delivery after the last one");
    producer.close().await.unwrap();
    consumer.close().await.unwrap();
    listener.await.unwrap().unwrap();
}

on_each_store!(two_listeners_share_the_work:
    two_listeners_on_two_handles_get_each_message_once,
    two_listeners_on_two_handles_get_each_message_once_on_postgres);

/// One delivery: the message's number, the listener that got it, the attempt.
type Delivery = (u32, &'static str, u32);

async fn two_listeners_share_the_work(store: Store) {
    let (a, b) = two_handles(&store).await;
    const MESSAGES: u32 = 60;
    for i in 0..MESSAGES {
        let handle = if i % 2 == 0 { &a } else { &b };
        handle.enqueue(&i, &EnqueueOptions::new()).await.unwrap();
    }
    let deliveries: Arc<Mutex<Vec<Delivery>>> = Arc::default();
    let listen = |kv: &Kv, name: &'static str| {
        let log = deliveries.clone();
        tokio::spawn(kv.clone().listen_queue(move |message| {
            let log = log.clone();
            async move {
                let n: u32 = message.value.decode().map_err(|e| e.to_string())?;
                log.lock().unwrap().push((n, name, message.attempt));
                // Long enough for the other listener to want the same messages meanwhile.
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok::<(), String>(())
            }
        }))
    };
    let (la, lb) = (listen(&a, "a"), listen(&b, "b"));
    wait_for("every message", || deliveries.lock().unwrap().len() >= MESSAGES as usize).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = deliveries.lock().unwrap().clone();
    let mut per_message: HashMap<u32, usize> = HashMap::new();
    for &(n, _, attempt) in &log {
        *per_message.entry(n).or_default() += 1;
        assert_eq!(attempt, 1, "message {n} needed a retry: {log:?}");
    }
    assert_eq!(per_message.len(), MESSAGES as usize, "every message: {log:?}");
    assert!(per_message.values().all(|&count| count == 1), "each exactly once: {log:?}");
    a.close().await.unwrap();
    b.close().await.unwrap();
    la.await.unwrap().unwrap();
    lb.await.unwrap().unwrap();
}

on_each_store!(take_and_finish_through_different_handles:
    a_message_taken_through_one_handle_is_renewed_and_finished_through_another,
    a_message_taken_through_one_handle_is_renewed_and_finished_through_another_on_postgres);

/// Behind a load balancer, a remote listener's take, lease renewals and finish may each reach a
/// different server (a different handle on the store): each must act on the message.
async fn take_and_finish_through_different_handles(store: Store) {
    let (a, b) = two_handles(&store).await;
    a.enqueue(&"delivered".to_string(), &EnqueueOptions::new()).await.unwrap();
    let retry_after = EnqueueOptions::new().backoff_schedule([Duration::from_millis(300)]);
    a.enqueue(&"failed".to_string(), &retry_after).await.unwrap();
    let lease = Duration::from_secs(5);
    let taken = a.queue_take(10, lease).await.unwrap();
    assert_eq!(taken.len(), 2, "both messages are due");
    // [id of "delivered", id of "failed"] (taken in due order, then by random id).
    let contains = |m: &openkv::QueuedMessage, text: &[u8]| m.payload.ends_with(text);
    let delivered = taken.iter().find(|m| contains(m, b"delivered")).expect("taken").id.clone();
    let failed = taken.iter().find(|m| contains(m, b"failed")).expect("taken").id.clone();
    let ids = vec![delivered, failed];
    // Renewed through the other handle: still leased, so nobody can take them.
    b.queue_renew(ids.clone(), lease).await.unwrap();
    assert!(b.queue_take(10, lease).await.unwrap().is_empty(), "leased messages are not taken");
    // Finished through the other handle: the first is gone, the second comes back after its
    // backoff, as attempt 2 (long before the 5 s lease could have run out).
    let finished = Instant::now();
    b.queue_finish(vec![(ids[0].clone(), true), (ids[1].clone(), false)]).await.unwrap();
    let again = loop {
        let taken = a.queue_take(10, lease).await.unwrap();
        if !taken.is_empty() {
            break taken;
        }
        assert!(finished.elapsed() < Duration::from_secs(4), "the failed message never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(again.len(), 1, "only the failed message comes back: {again:?}");
    assert_eq!((again[0].id.as_str(), again[0].attempt), (ids[1].as_str(), 2));
    let waited = finished.elapsed();
    assert!(waited >= Duration::from_millis(250), "not before its backoff: {waited:?} {again:?}");
    a.queue_finish(vec![(ids[1].clone(), true)]).await.unwrap();
    a.close().await.unwrap();
    b.close().await.unwrap();
}

on_each_store!(due_now_through_another_handle:
    a_message_made_due_through_one_handle_is_taken_through_another,
    a_message_made_due_through_one_handle_wakes_the_listeners_of_another_on_postgres);

/// An operator's `DueNow` through one handle (a console's server) reaches the listeners of
/// another (another process): on PostgreSQL their wake-up fires, as for an enqueue (SQLite's
/// other processes find it at their next poll); either way the other handle takes it at once.
async fn due_now_through_another_handle(store: Store) {
    let (console, worker) = two_handles(&store).await;
    let postgres = store.location.to_string_lossy().starts_with("postgres");
    let mut wakeup = worker.queue_wakeup().expect("a local store wakes its listeners");
    let in_an_hour = EnqueueOptions::new().delay(Duration::from_secs(3_600));
    console.enqueue(&"in an hour".to_string(), &in_an_hour).await.unwrap();
    if postgres {
        // The enqueue's own notification first: the one below must be DueNow's.
        tokio::time::timeout(Duration::from_secs(10), wakeup.changed())
            .await
            .expect("the enqueue reached the other process")
            .unwrap();
    }
    wakeup.borrow_and_update();
    assert!(worker.queue_take(10, Duration::from_secs(5)).await.unwrap().is_empty());
    let listing = worker.queue_inspect(10).await.unwrap();
    assert_eq!((listing.ready, listing.delayed, listing.running), (0, 1, 0));
    let id = listing.messages[0].id.clone();

    assert!(console.queue_change(&id, openkv::QueueChange::DueNow).await.unwrap());
    if postgres {
        tokio::time::timeout(Duration::from_secs(10), wakeup.changed())
            .await
            .expect("DueNow woke the other process's listeners")
            .unwrap();
    }
    let taken = worker.queue_take(10, Duration::from_secs(5)).await.unwrap();
    assert_eq!(taken.len(), 1, "due at once: {taken:?}");
    assert_eq!(taken[0].id, id);
    worker.queue_finish(vec![(id, true)]).await.unwrap();
    console.close().await.unwrap();
    worker.close().await.unwrap();
}
