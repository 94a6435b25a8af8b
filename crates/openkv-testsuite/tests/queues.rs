//! Queues over the network (docs/protocol-extensions.md), against a real `openkv serve` on
//! 127.0.0.1: the webhook (delivery, headers, JSON body, retries, dead-letter keys), the pull
//! endpoints' handling of bad requests, and remote listeners through the Rust client.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use openkv::{key, EnqueueOptions, Error, Kv};
use openkv_server::{ServerConfig, WebhookConfig};
use openkv_testsuite::fixtures::{self, Server, TOKEN};
use tokio::net::TcpListener;

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

async fn server_with_webhook(url: &str) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig::new(TOKEN).queue_webhook(WebhookConfig::new(url));
    let server = Server::start(&dir.path().join("db.sqlite3"), config).await;
    (dir, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_receives_each_message_as_typed_json_with_its_id_and_attempt() {
    let (url, received) = webhook(|_| StatusCode::NO_CONTENT).await;
    let (_dir, server) = server_with_webhook(&url).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_webhook_sees_every_retry_then_the_dead_letter_key_is_written() {
    let (url, received) = webhook(|_| StatusCode::INTERNAL_SERVER_ERROR).await;
    let (_dir, server) = server_with_webhook(&url).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_recovers_gets_the_message_on_a_retry() {
    let (url, received) =
        webhook(|n| if n == 1 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK }).await;
    let (_dir, server) = server_with_webhook(&url).await;
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

/// The pull endpoints at the HTTP level: authentication and every malformed request → 4xx
/// with a message, and the server still answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pull_endpoints_refuse_bad_requests_with_4xx() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("db.sqlite3"), ServerConfig::new(TOKEN)).await;
    let database_id = server.kv.database_id().await.unwrap().to_string();
    let client = reqwest::Client::new();
    let post = |path: &str, token: &str, body: &str| {
        client
            .post(format!("{}/v2/openkv/queue/{path}", server.url))
            .bearer_auth(token)
            .header("x-denokv-database-id", &database_id)
            .header("x-denokv-version", "3")
            .body(body.to_owned())
            .send()
    };
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
        ("nope", TOKEN, "{}", 404),
    ];
    for (path, token, body, want) in cases {
        let response = post(path, token, body).await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(status, want, "{path} {body}: {text}");
        if want >= 400 {
            assert!(!text.is_empty(), "{path} {body}: a message");
        }
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_listener_retries_by_the_servers_schedule_then_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("db.sqlite3"), ServerConfig::new(TOKEN)).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_remote_listener_vanishes_is_delivered_to_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("db.sqlite3"), ServerConfig::new(TOKEN)).await;
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
