//! The KV Connect client's own behaviour against a real `openkv serve`: tokens, the server's
//! 4xx messages, retries across a restart, giving up, metadata refresh, protocol versions 1–3,
//! read-only servers, and lost answers. Faults are injected by a small forwarding proxy
//! between the client and the real server.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use openkv::{key, Error, Kv, Limits, Value};
use openkv_server::ServerConfig;
use openkv_testsuite::fixtures::{self, client_options, Server, TOKEN};
use tokio::net::TcpListener;

fn bytes(s: &str) -> Value {
    Value::Bytes(s.as_bytes().to_vec())
}

async fn server() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("db.sqlite3"), ServerConfig::new(TOKEN)).await;
    (dir, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_fails_at_open_with_the_servers_message() {
    let (_dir, server) = server().await;
    let started = Instant::now();
    let err = client_options().access_token("not-the-token").open(&server.url).await.unwrap_err();
    match &err {
        Error::Remote { status: 401, message } => assert!(!message.is_empty(), "{err}"),
        other => panic!("expected a 401, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5), "a 4xx is not retried");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4xx_is_final_and_carries_the_servers_text() {
    let (_dir, server) = server().await;
    // The client is configured to allow 1 MiB values; the server keeps Deno's 64 KiB.
    let mut raised = Limits::default();
    raised.max_value_size = 1 << 20;
    let kv = client_options().limits(raised).open(&server.url).await.unwrap();
    let err = kv.set(&key!["big"], Value::Bytes(vec![1; 70_000])).await.unwrap_err();
    match &err {
        Error::Remote { status: 400, message } => {
            assert!(message.contains("Value too large"), "{message}")
        }
        other => panic!("expected the server's 400, got {other:?}"),
    }
    assert!(err.is_client_error());
    assert_eq!(server.kv.get(&key!["big"]).await.unwrap(), None, "nothing written");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_retried_until_the_server_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite3");
    let server = Server::start(&path, ServerConfig::new(TOKEN)).await;
    let addr = server.addr;
    let kv = fixtures::remote(&server.url).await;
    kv.set(&key!["before"], bytes("1")).await.unwrap();
    server.stop().await;

    // The write starts while nothing listens; the server comes back 700 ms later.
    let restart = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let listener = TcpListener::bind(addr).await.expect("re-binding the port");
        Server::start_on(listener, &path, ServerConfig::new(TOKEN)).await
    });
    let started = Instant::now();
    kv.set(&key!["during"], bytes("2")).await.expect("retried until the server was back");
    assert!(started.elapsed() >= Duration::from_millis(600), "it did wait for the restart");
    let server = restart.await.unwrap();
    assert_eq!(server.kv.get(&key!["during"]).await.unwrap().unwrap().value, bytes("2"));
    assert_eq!(kv.get(&key!["before"]).await.unwrap().unwrap().value, bytes("1"));
    kv.close().await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stays_down_gives_unavailable_after_the_retry_timeout() {
    let (_dir, server) = server().await;
    let kv = client_options()
        .remote_retry_timeout(Duration::from_millis(800))
        .open(&server.url)
        .await
        .unwrap();
    server.stop().await;
    let started = Instant::now();
    let err = kv.get(&key!["k"]).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert!(!err.is_client_error());
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(3), "gave up after {waited:?}");
}

/// What the proxy does to the traffic it forwards.
#[derive(Default)]
struct Faults {
    /// Answer this many data-path requests with 503 instead of forwarding them.
    unavailable: AtomicUsize,
    /// Answer this many data-path requests with 401 instead of forwarding them.
    unauthorized: AtomicUsize,
    /// Forward this many atomic writes (they apply), then answer 500 instead of the server's
    /// answer: what `openkv serve` says when a write's outcome is unknown.
    applied_then_500: AtomicUsize,
    /// Forward the next atomic write, then cut the connection: before the answer's headers
    /// (`LOST_BEFORE_HEADERS`) or in the middle of its body (`LOST_MID_BODY`).
    lose_write_answer: AtomicUsize,
    /// Rewrite the metadata's `expiresAt` to this many seconds from now.
    metadata_ttl_secs: Mutex<Option<u64>>,
    /// Replace the client's `supportedVersions`.
    offer_versions: Mutex<Option<&'static str>>,
    /// Counters.
    metadata_requests: AtomicUsize,
    data_requests: AtomicUsize,
    /// The protocol headers of the last data-path request.
    last_headers: Mutex<Option<HeaderMap>>,
}

const LOST_BEFORE_HEADERS: usize = 1;
const LOST_MID_BODY: usize = 2;

struct Proxy {
    url: String,
    faults: Arc<Faults>,
}

async fn proxy_to(upstream: &str) -> Proxy {
    let faults = Arc::new(Faults::default());
    let state = (upstream.to_owned(), faults.clone(), reqwest::Client::new());
    let app = axum::Router::new().fallback(forward).with_state(Arc::new(state));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Proxy { url, faults }
}

/// A real server, the proxy in front of it, and a client connected through the proxy.
async fn proxied() -> (tempfile::TempDir, Server, Proxy, Kv) {
    let (dir, server) = server().await;
    let proxy = proxy_to(&server.url).await;
    let kv = fixtures::remote(&proxy.url).await;
    (dir, server, proxy, kv)
}

type ProxyState = Arc<(String, Arc<Faults>, reqwest::Client)>;

async fn forward(State(state): State<ProxyState>, request: Request) -> Response {
    let (upstream, faults, client) = (&state.0, &state.1, &state.2);
    let path = request.uri().path().to_owned();
    let headers = request.headers().clone();
    let mut body = axum::body::to_bytes(request.into_body(), usize::MAX).await.unwrap();
    let is_metadata = path == "/";
    if is_metadata {
        faults.metadata_requests.fetch_add(1, Ordering::SeqCst);
        if let Some(versions) = *faults.offer_versions.lock().unwrap() {
            body = Bytes::from(format!("{{\"supportedVersions\":{versions}}}"));
        }
    } else {
        faults.data_requests.fetch_add(1, Ordering::SeqCst);
        *faults.last_headers.lock().unwrap() = Some(headers.clone());
        let take = |n: &AtomicUsize| {
            n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1)).is_ok()
        };
        if take(&faults.unavailable) {
            return (StatusCode::SERVICE_UNAVAILABLE, "injected: try again").into_response();
        }
        if take(&faults.unauthorized) {
            return (StatusCode::UNAUTHORIZED, "injected: token expired").into_response();
        }
    }
    let mut forwarded = client.post(format!("{upstream}{path}")).body(body);
    for (name, value) in headers.iter() {
        if name != "host" && name != "content-length" {
            forwarded = forwarded.header(name, value);
        }
    }
    let answer = forwarded.send().await.expect("upstream");
    let status = answer.status();
    let mut body = answer.bytes().await.unwrap();
    if is_metadata && status.is_success() {
        let mut json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if let Some(ttl) = *faults.metadata_ttl_secs.lock().unwrap() {
            let at = SystemTime::now() + Duration::from_secs(ttl);
            json["expiresAt"] = humantime::format_rfc3339_millis(at).to_string().into();
        }
        if json["version"] == 1 {
            // Version 1 endpoints are absolute: point them back through the proxy.
            let url = json["endpoints"][0]["url"].as_str().unwrap().to_owned();
            let path = url.splitn(4, '/').nth(3).unwrap_or_default().to_owned();
            json["endpoints"][0]["url"] = format!("{}/{path}", faults_url(&headers)).into();
        }
        body = Bytes::from(serde_json::to_vec(&json).unwrap());
    }
    if path.ends_with("/atomic_write")
        && faults
            .applied_then_500
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
            .is_ok()
    {
        return (StatusCode::INTERNAL_SERVER_ERROR, "injected: the outcome is unknown")
            .into_response();
    }
    let lose = if path.ends_with("/atomic_write") {
        faults.lose_write_answer.swap(0, Ordering::SeqCst)
    } else {
        0
    };
    if lose != 0 {
        // A body stream that fails makes the server abort the connection: at once (nothing
        // sent yet), or after the headers and a first chunk have gone out.
        let first = (lose == LOST_MID_BODY).then(|| Ok(Bytes::from_static(b"\x08")));
        let broken = futures::stream::iter(first).chain(futures::stream::once(async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Err(std::io::Error::other("injected: connection lost"))
        }));
        return Response::builder().status(status).body(Body::from_stream(broken)).unwrap();
    }
    (status, body).into_response()
}

/// The proxy's own base URL, from the request's Host header.
fn faults_url(headers: &HeaderMap) -> String {
    format!("http://{}", headers["host"].to_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_failures_are_retried_and_the_write_applies_once() {
    let (_dir, server, proxy, kv) = proxied().await;
    proxy.faults.unavailable.store(3, Ordering::SeqCst);
    let before = proxy.faults.data_requests.load(Ordering::SeqCst);
    kv.atomic().sum(&key!["n"], 5).commit().await.unwrap();
    assert_eq!(proxy.faults.data_requests.load(Ordering::SeqCst) - before, 4, "3 × 503 + 1");
    assert_eq!(server.kv.get(&key!["n"]).await.unwrap().unwrap().value, Value::U64(5));
    server.stop().await;
}

/// Regression (found by openkv-jepsen on PostgreSQL): a write answered 500 was retried. The
/// server answers 500 when the write's outcome is unknown — it may have applied — so the retry
/// applied it twice, or (with checks) failed its check and reported a write that had happened
/// as not applied. Only 503 and 429 are retried for writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_answered_500_is_an_unknown_outcome_and_never_sent_again() {
    let (_dir, server, proxy, kv) = proxied().await;
    proxy.faults.applied_then_500.store(1, Ordering::SeqCst);
    let before = proxy.faults.data_requests.load(Ordering::SeqCst);
    let err = kv.atomic().sum(&key!["n"], 5).commit().await.unwrap_err();
    assert!(matches!(err, Error::OutcomeUnknown(_)), "{err:?}");
    assert_eq!(proxy.faults.data_requests.load(Ordering::SeqCst) - before, 1, "sent once");
    assert_eq!(server.kv.get(&key!["n"]).await.unwrap().unwrap().value, Value::U64(5));
    // The handle goes on working.
    assert!(kv.get(&key!["n"]).await.unwrap().is_some());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_fetches_metadata_again_once() {
    let (_dir, server, proxy, kv) = proxied().await;
    assert_eq!(proxy.faults.metadata_requests.load(Ordering::SeqCst), 1);
    proxy.faults.unauthorized.store(1, Ordering::SeqCst);
    kv.set(&key!["k"], bytes("v")).await.expect("recovered with fresh metadata");
    assert_eq!(proxy.faults.metadata_requests.load(Ordering::SeqCst), 2);
    // Refused again even with fresh metadata: final, with the server's text.
    proxy.faults.unauthorized.store(2, Ordering::SeqCst);
    let err = kv.get(&key!["k"]).await.unwrap_err();
    match &err {
        Error::Remote { status: 401, message } => {
            assert!(message.contains("token expired"), "{err:?}")
        }
        other => panic!("expected the server's final 401, got {other:?}"),
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_is_fetched_again_before_it_expires() {
    let (_dir, server) = server().await;
    let proxy = proxy_to(&server.url).await;
    // Valid for 11 s: the client must refresh 10 s before expiry, i.e. after ~1 s.
    *proxy.faults.metadata_ttl_secs.lock().unwrap() = Some(11);
    let kv = fixtures::remote(&proxy.url).await;
    kv.set(&key!["k"], bytes("v")).await.unwrap();
    assert_eq!(proxy.faults.metadata_requests.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    kv.get(&key!["k"]).await.unwrap();
    assert_eq!(proxy.faults.metadata_requests.load(Ordering::SeqCst), 2, "refreshed");
    kv.get(&key!["k"]).await.unwrap();
    assert_eq!(proxy.faults.metadata_requests.load(Ordering::SeqCst), 2, "not on every call");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_write_answer_is_outcome_unknown_not_a_second_write() {
    let (_dir, server, proxy, kv) = proxied().await;
    for (n, mode) in [(1, LOST_BEFORE_HEADERS), (2, LOST_MID_BODY)] {
        proxy.faults.lose_write_answer.store(mode, Ordering::SeqCst);
        let err = kv.atomic().sum(&key!["n"], 1).commit().await.unwrap_err();
        assert!(matches!(err, Error::OutcomeUnknown(_)), "{err:?}");
        // The server did apply it — once.
        assert_eq!(server.kv.get(&key!["n"]).await.unwrap().unwrap().value, Value::U64(n));
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocol_version_works_with_its_own_headers() {
    let (_dir, server) = server().await;
    let proxy = proxy_to(&server.url).await;
    for (offer, header, version) in [
        ("[1]", "x-transaction-domain-id", None),
        ("[1,2]", "x-denokv-database-id", Some("2")),
        ("[1,2,3]", "x-denokv-database-id", Some("3")),
    ] {
        *proxy.faults.offer_versions.lock().unwrap() = Some(offer);
        let kv = fixtures::remote(&proxy.url).await;
        let k = key!["v", offer];
        let stamp = kv.set(&k, bytes(offer)).await.unwrap();
        let entry = kv.get(&k).await.unwrap().unwrap();
        assert_eq!((entry.value, entry.versionstamp), (bytes(offer), stamp), "{offer}");
        let headers = proxy.faults.last_headers.lock().unwrap().clone().unwrap();
        assert!(headers.contains_key(header), "{offer}: {headers:?}");
        assert_eq!(
            headers.get("x-denokv-version").map(|v| v.to_str().unwrap().to_owned()).as_deref(),
            version,
            "{offer}"
        );
        kv.close().await.unwrap();
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_server_refuses_writes_and_serves_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite3");
    {
        let kv = Kv::open(&path).await.unwrap();
        kv.set(&key!["k"], bytes("v")).await.unwrap();
        kv.close().await.unwrap();
    }
    let server = Server::start(&path, ServerConfig::new(TOKEN).read_only(true)).await;
    let kv = fixtures::remote(&server.url).await;
    assert_eq!(kv.get(&key!["k"]).await.unwrap().unwrap().value, bytes("v"));
    let err = kv.set(&key!["k"], bytes("w")).await.unwrap_err();
    assert!(matches!(err, Error::WriteDisabled), "{err:?}");
    assert_eq!(kv.database_id().await.unwrap(), server.kv.database_id().await.unwrap());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_reconnects_across_server_restarts_and_emits_only_changes() {
    use openkv_testsuite::behaviours::next_snapshot;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite3");
    let restart = |addr| {
        let path = path.clone();
        async move {
            let listener = TcpListener::bind(addr).await.expect("re-binding the port");
            Server::start_on(listener, &path, ServerConfig::new(TOKEN)).await
        }
    };
    let server = Server::start(&path, ServerConfig::new(TOKEN)).await;
    let addr = server.addr;
    let kv = fixtures::remote(&server.url).await;
    let k = key!["watched"];
    let mut watch = kv.watch(std::slice::from_ref(&k)).unwrap();
    assert_eq!(next_snapshot(&mut watch).await, vec![None]);

    // A restart that changes nothing, then a write behind the client's back while no server
    // runs, then a server again: the reconnect's state differs, so it is emitted — once.
    server.stop().await;
    restart(addr).await.stop().await;
    let offline = {
        let direct = Kv::open(&path).await.unwrap();
        let stamp = direct.set(&k, bytes("offline")).await.unwrap();
        direct.close().await.unwrap();
        stamp
    };
    let server = restart(addr).await;
    assert_eq!(next_snapshot(&mut watch).await, vec![Some(offline)]);
    let online = server.kv.set(&k, bytes("online")).await.unwrap();
    assert_eq!(next_snapshot(&mut watch).await, vec![Some(online)]);
    kv.close().await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_needs_protocol_version_3() {
    let (_dir, server) = server().await;
    let proxy = proxy_to(&server.url).await;
    *proxy.faults.offer_versions.lock().unwrap() = Some("[1,2]");
    let kv = fixtures::remote(&proxy.url).await;
    let err = kv.watch(&[key!["k"]]).unwrap_err();
    assert!(matches!(&err, Error::Unsupported(m) if m.contains("version 3")), "{err:?}");
    kv.close().await.unwrap();
    server.stop().await;
}

/// A protobuf field holding bytes (tag and a one-byte length: every use here is short).
fn pb_field(number: u8, bytes: &[u8]) -> Vec<u8> {
    assert!(bytes.len() < 128);
    [vec![number << 3 | 2, bytes.len() as u8], bytes.to_vec()].concat()
}

/// A KV Connect server of our own making (protocol version 3) whose `/watch` answers `body`,
/// one byte per chunk: the client must reassemble frames however the bytes arrive.
async fn fake_watch_server(body: Vec<u8>) -> String {
    let metadata = serde_json::json!({
        "version": 3,
        "databaseId": "6f1d4a3c-0000-4000-8000-000000000001",
        "endpoints": [{"url": "/v2", "consistency": "strong"}],
        "token": "data-path-token",
        "expiresAt": "2999-01-01T00:00:00Z",
    });
    let watch = move || {
        let chunks =
            body.clone().into_iter().map(|b| Ok::<_, std::io::Error>(Bytes::from(vec![b])));
        async move { Body::from_stream(futures::stream::iter(chunks)) }
    };
    let app = axum::Router::new()
        .route("/", axum::routing::post(move || async move { metadata.to_string() }))
        .route("/v2/watch", axum::routing::post(watch));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_frames_are_reassembled_and_a_bogus_length_is_a_protocol_error() {
    let k = key!["k"];
    // WatchOutput { status: SR_SUCCESS, keys: [{ changed: true, entry_if_changed: KvEntry {
    // key, value: "v", encoding: VE_BYTES, versionstamp: 0..10 } }] }, written out by hand.
    let entry = [
        pb_field(1, &k.encode().unwrap()),
        pb_field(2, b"v"),
        vec![3 << 3, 3],
        pb_field(4, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
    ]
    .concat();
    let key_output = [vec![1 << 3, 1], pb_field(2, &entry)].concat();
    let output = [vec![1 << 3, 1], pb_field(2, &key_output)].concat();
    let body = [
        (output.len() as u32).to_le_bytes().to_vec(),
        output,
        vec![0, 0, 0, 0],             // a keep-alive
        vec![0xff, 0xff, 0xff, 0xff], // a frame of 4 GiB
    ]
    .concat();
    let kv = fixtures::remote(&fake_watch_server(body).await).await;
    let mut watch = kv.watch(std::slice::from_ref(&k)).unwrap();
    let first = tokio::time::timeout(Duration::from_secs(20), watch.next()).await.unwrap();
    let first = first.expect("a first snapshot").expect("a valid first frame");
    let entry = first[0].as_ref().expect("the entry");
    assert_eq!((entry.key.clone(), entry.value.clone()), (k.clone(), bytes("v")));
    assert_eq!(entry.versionstamp.as_bytes(), &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let err = tokio::time::timeout(Duration::from_secs(20), watch.next()).await.unwrap();
    assert!(matches!(err, Some(Err(Error::Protocol(_)))), "{err:?}");
    assert!(watch.next().await.is_none(), "an error ends the stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_url_is_a_clear_error() {
    let err = client_options().open("http://[::1").await.unwrap_err();
    assert!(matches!(err, Error::InvalidOption(_)), "{err:?}");
    // Nothing listens on port 9 (discard): unavailable after the retry timeout.
    let err = client_options()
        .remote_retry_timeout(Duration::from_millis(300))
        .open("http://127.0.0.1:9")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
}

#[path = "../../openkv-server/tests/support/pki.rs"]
#[allow(dead_code)]
mod pki;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_private_ca_and_a_clear_error_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::TestCa::new();
    let files = ca.write_server_files(dir.path());
    let tls = openkv_server::TlsConfig::from_pem_files(&files.cert, &files.key).unwrap();
    let config = ServerConfig::new(TOKEN).tls(tls);
    let server = Server::start(&dir.path().join("db.sqlite3"), config).await;
    let url = format!("https://localhost:{}", server.addr.port());

    // Not trusted: refused at once (a certificate does not get better by retrying).
    let started = Instant::now();
    let err = client_options().open(&url).await.unwrap_err();
    assert!(
        matches!(&err, Error::Unavailable(m) if m.message().contains("certificate")),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "not retried");
    // The HTTP client's own error is kept, typed, among the sources.
    let mut source = std::error::Error::source(&err);
    let mut http = false;
    while let Some(cause) = source {
        http |= cause.downcast_ref::<reqwest::Error>().is_some();
        source = cause.source();
    }
    assert!(http, "no reqwest::Error among the sources of {err:?}");

    let pem = std::fs::read(&files.ca).unwrap();
    let kv = client_options().remote_root_certificate(pem).open(&url).await.unwrap();
    let stamp = kv.set(&key!["tls"], bytes("secret")).await.unwrap();
    let entry = kv.get(&key!["tls"]).await.unwrap().unwrap();
    assert_eq!((entry.value, entry.versionstamp), (bytes("secret"), stamp));
    assert_eq!(kv.database_id().await.unwrap(), server.kv.database_id().await.unwrap());
    kv.close().await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_watch_sees_commits_another_handle_makes_to_the_file() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite3");
    let server = Server::start(&path, ServerConfig::new(TOKEN)).await;
    let kv = fixtures::remote(&server.url).await;
    let mut watch = kv.watch(&[key!["shared"]]).unwrap();
    assert_eq!(watch.next().await.unwrap().unwrap(), vec![None]);
    // A second handle on the file: for the server's store, that is another process writing.
    let other = Kv::open(&path).await.unwrap();
    other.set(&key!["shared"], bytes("from elsewhere")).await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(10), watch.next()).await.unwrap();
    let entry = seen.unwrap().unwrap().pop().unwrap().expect("the key now exists");
    assert_eq!(entry.value, bytes("from elsewhere"));
    other.close().await.unwrap();
    kv.close().await.unwrap();
    server.stop().await;
}
