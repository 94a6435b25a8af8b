//! The server's limits (`ServerLimits`), each against a real server on 127.0.0.1 configured
//! with small values, so that one client cannot hurt the others:
//! - a client that sends half a request header (slowloris), trickles one, sends nothing, or
//!   stops halfway through its second request is cut off within the header timeout, while
//!   other clients are served meanwhile (before, such a connection stayed open 85 s and more);
//! - an oversized header is answered 431 (HTTP/1 and HTTP/2);
//! - an idle connection is closed after the idle timeout (HTTP/1 and HTTP/2), but a watch
//!   stream or a queue long poll lasting several idle timeouts is not cut;
//! - connections beyond the cap are closed at once (TLS handshakes in progress count), the
//!   ones held are untouched, and a freed place is taken again;
//! - a token's watch stream beyond its limit and a queue long poll beyond the server's are
//!   429, and a stream or poll that ends — or whose client goes away — frees its place;
//! - a 2 GiB chunked upload to /v2/atomic_write is refused with 413 after a few MB, and the
//!   server's memory (this process's RSS: the server runs in it) does not grow with it;
//! - limits that would refuse everything are refused at start.
//!
//! Timing bounds are generous (seconds of slack): they tell a timeout from "never" and from
//! "at once", nothing finer.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/pki.rs"]
mod pki;
#[path = "support/watch_frames.rs"]
mod watch_frames;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use openkv::{key, Kv};
use openkv_server::proto;
use openkv_server::{serve, ServeError, ServerConfig, ServerLimits, TlsConfig};
use prost::Message;
use reqwest::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use watch_frames::next_frame;

const TOKEN: &str = "limits-test-token-0123456789";
/// Slack for "promptly" on a loaded machine.
const SLACK: Duration = Duration::from_secs(5);
const METADATA_BODY: &str = r#"{"supportedVersions":[1,2,3]}"#;

struct Server {
    api: Api,
    kv: Kv,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
    _dir: tempfile::TempDir,
}

/// Where a server is, for the requests tasks make.
#[derive(Clone)]
struct Api {
    addr: SocketAddr,
    database_id: String,
}

impl std::ops::Deref for Server {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

async fn start(limits: ServerLimits) -> Server {
    start_with(ServerConfig::new(TOKEN).limits(limits)).await
}

async fn start_with(config: ServerConfig) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let kv = Kv::open(dir.path().join("db.sqlite3")).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(kv.clone(), listener, config, async {
        let _ = stopped.await;
    }));
    let database_id = kv.database_id().await.unwrap().to_string();
    Server { api: Api { addr, database_id }, kv, stop: Some(stop), task, _dir: dir }
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A data-path request with the token and headers (`path` below `/v2`).
    fn request(
        &self,
        client: &reqwest::Client,
        path: &str,
        body: Vec<u8>,
    ) -> reqwest::RequestBuilder {
        client
            .post(self.url(&format!("/v2{path}")))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("x-denokv-database-id", &self.database_id)
            .header("x-denokv-version", "3")
            .body(body)
    }

    /// Opens a watch of one key on `path` (`/watch` or `/eventual/watch`).
    async fn watch(&self, client: &reqwest::Client, path: &str) -> reqwest::Response {
        let keys = vec![proto::WatchKey { key: key!["watched"].encode().unwrap() }];
        self.request(client, path, proto::Watch { keys }.encode_to_vec()).send().await.unwrap()
    }

    /// A queue long poll of `timeout_ms`: its status and body.
    async fn queue_wait(&self, client: &reqwest::Client, timeout_ms: u64) -> (StatusCode, String) {
        let body = format!(r#"{{"timeoutMs": {timeout_ms}}}"#).into_bytes();
        let resp = self.request(client, "/openkv/queue/wait", body).send().await.unwrap();
        (resp.status(), resp.text().await.unwrap())
    }

    /// The server still answers a new client.
    /// The status of a metadata exchange sent through `client`.
    async fn metadata_status(&self, client: &reqwest::Client) -> StatusCode {
        let resp = client
            .post(self.url("/"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(METADATA_BODY)
            .send()
            .await
            .unwrap();
        resp.status()
    }

    async fn still_alive(&self) {
        let status = self.metadata_status(&reqwest::Client::new()).await;
        assert_eq!(status, StatusCode::OK, "the server stopped answering");
    }
}

impl Server {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("serve did not return after shutdown")
            .unwrap()
            .unwrap();
        self.kv.close().await.unwrap();
    }
}

/// The metadata exchange as raw HTTP/1.1 on a kept-alive connection.
fn metadata_request() -> Vec<u8> {
    format!(
        "POST / HTTP/1.1\r\nHost: kv\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{METADATA_BODY}",
        METADATA_BODY.len()
    )
    .into_bytes()
}

/// Reads one HTTP/1 response (a head, then a `Content-Length` body): its status and body, or
/// `None` if the connection closed (or was reset) first.
async fn read_response(stream: &mut (impl AsyncRead + Unpin)) -> Option<(u16, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |l| l.trim().parse().unwrap());
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    Some((status, body))
}

const H2_DATA: u8 = 0;
const H2_HEADERS: u8 = 1;
const H2_SETTINGS: u8 = 4;
const H2_PING: u8 = 6;
const H2_GOAWAY: u8 = 7;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;
const ACK: u8 = 1;

/// One HTTP/2 frame: type, flags, stream, payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut frame = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    frame.extend_from_slice(&[kind, flags]);
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The next HTTP/2 frame, or `None` at the end of the connection.
async fn read_h2_frame(tcp: &mut TcpStream) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    tcp.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    tcp.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], stream, payload))
}

/// The metadata exchange's header block in HPACK: `:method POST`, `:scheme http`, `:path /`
/// (static entries 3, 6, 4), then `:authority` and `authorization` as literals with indexed
/// names (1 and 23).
fn h2_metadata_headers() -> Vec<u8> {
    let mut block = vec![0x83, 0x86, 0x84, 0x40 | 1, 2];
    block.extend_from_slice(b"kv");
    let authorization = format!("Bearer {TOKEN}");
    block.extend_from_slice(&[0x40 | 23, authorization.len() as u8]);
    block.extend_from_slice(authorization.as_bytes());
    block
}

/// A kept-alive HTTP/1.1 connection that made one successful request.
async fn served_connection(addr: SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&metadata_request()).await.unwrap();
    let (status, _) = read_response(&mut tcp).await.expect("no answer");
    assert_eq!(status, 200);
    tcp
}

/// Waits until the server closes `stream` (end of stream or a reset; any bytes before are
/// skipped) and returns how long that took, failing after `limit`.
async fn closed_within(stream: &mut (impl AsyncRead + Unpin), limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the connection was still open after {limit:?}"));
    started.elapsed()
}

#[tokio::test]
async fn half_a_header_is_cut_off_within_the_header_timeout_and_others_are_served() {
    let timeout = Duration::from_secs(1);
    let s = start(ServerLimits::default().header_timeout(timeout)).await;
    let started = Instant::now();
    // Half a header; nothing at all; half the HTTP/2 preface (read before HTTP/1's parser
    // exists); and a kept-alive connection whose second header stops halfway.
    let mut half = TcpStream::connect(s.addr).await.unwrap();
    half.write_all(b"POST /v2/snapshot_read HTTP/1.1\r\nHost: kv\r\nAuthoriz").await.unwrap();
    let mut silent = TcpStream::connect(s.addr).await.unwrap();
    let mut preface = TcpStream::connect(s.addr).await.unwrap();
    preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let mut second = served_connection(s.addr).await;
    let second_started = Instant::now();
    second.write_all(b"POST / HTTP/1.1\r\nHost: kv\r\n").await.unwrap();
    // A header trickled a byte every 100 ms: each byte is activity, but the header is never
    // complete.
    let trickle = tokio::spawn({
        let addr = s.addr;
        async move {
            let (mut reader, mut writer) = TcpStream::connect(addr).await.unwrap().into_split();
            let started = Instant::now();
            let trickling = async {
                for byte in b"POST / HTTP/1.1\r\nHost: kv\r\nX-Slow: ".iter().cycle() {
                    if writer.write_all(&[*byte]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                std::future::pending::<()>().await
            };
            tokio::select! {
                closed = closed_within(&mut reader, timeout + SLACK) => closed,
                () = trickling => unreachable!(),
            };
            started.elapsed()
        }
    });
    // Meanwhile other clients are served as usual.
    let client = reqwest::Client::new();
    for _ in 0..5 {
        assert_eq!(s.metadata_status(&client).await, StatusCode::OK);
    }
    for (what, stream) in
        [("half a header", &mut half), ("nothing", &mut silent), ("half a preface", &mut preface)]
    {
        closed_within(stream, timeout + SLACK).await;
        // Not refused at once: cut off by the timeout.
        let after = started.elapsed();
        assert!(after >= timeout / 2, "{what}: closed after {after:?}");
    }
    closed_within(&mut second, timeout + SLACK).await;
    assert!(second_started.elapsed() >= timeout / 2);
    let trickled = trickle.await.unwrap();
    assert!(
        trickled >= timeout / 2 && trickled < timeout + SLACK,
        "trickle closed after {trickled:?}"
    );
    s.still_alive().await;
    s.stop().await;
}

#[tokio::test]
async fn an_oversized_header_is_refused_with_431() {
    let s = start(ServerLimits::default().max_header_bytes(openkv_server::MIN_HEADER_BYTES)).await;
    let padding = "a".repeat(2 * openkv_server::MIN_HEADER_BYTES);
    // HTTP/1: 431, then the connection is closed.
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    let request = format!("POST / HTTP/1.1\r\nHost: kv\r\nX-Padding: {padding}\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let (status, _) = read_response(&mut tcp).await.expect("no answer to an oversized header");
    assert_eq!(status, 431);
    closed_within(&mut tcp, SLACK).await;
    // More header lines than hyper's 100: 431 too.
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    let lines: String = (0..101).map(|i| format!("X-Line-{i}: x\r\n")).collect();
    tcp.write_all(format!("POST / HTTP/1.1\r\nHost: kv\r\n{lines}\r\n").as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut tcp).await.expect("no answer").0, 431);
    // Within the limit: served.
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    let fits = &padding[..openkv_server::MIN_HEADER_BYTES / 2];
    let mut request = format!("POST / HTTP/1.1\r\nHost: kv\r\nX-Padding: {fits}\r\n").into_bytes();
    request.extend_from_slice(&metadata_request()[b"POST / HTTP/1.1\r\nHost: kv\r\n".len()..]);
    tcp.write_all(&request).await.unwrap();
    assert_eq!(read_response(&mut tcp).await.expect("no answer").0, 200);
    // HTTP/2: the stream is answered 431, and the connection serves the next one.
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let resp = h2.post(s.url("/")).header("x-padding", &padding).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(s.metadata_status(&h2).await, StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn an_idle_connection_is_closed_but_a_long_watch_or_queue_wait_is_not() {
    let idle = Duration::from_secs(1);
    // A header timeout well above the idle timeout: what closes the connections below is the
    // idle timeout.
    let header = Duration::from_secs(8);
    let s = start(ServerLimits::default().idle_timeout(idle).header_timeout(header)).await;

    // HTTP/1: a kept-alive connection with nothing more to ask.
    let mut tcp = served_connection(s.addr).await;
    let closed = closed_within(&mut tcp, header + SLACK).await;
    assert!(
        closed >= idle / 2 && closed < header,
        "HTTP/1 idle connection closed after {closed:?}"
    );

    // HTTP/2 (h2c, frames by hand to see them): after one request, the server says GOAWAY,
    // pings, and closes once the ping is answered.
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    tcp.write_all(&h2_frame(H2_SETTINGS, 0, 0, &[])).await.unwrap();
    tcp.write_all(&h2_frame(H2_HEADERS, END_HEADERS, 1, &h2_metadata_headers())).await.unwrap();
    tcp.write_all(&h2_frame(H2_DATA, END_STREAM, 1, METADATA_BODY.as_bytes())).await.unwrap();
    let (mut answered, mut goaway, mut served) = (None, false, Instant::now());
    let closed = tokio::time::timeout(header + SLACK, async {
        while let Some((kind, flags, stream, payload)) = read_h2_frame(&mut tcp).await {
            match kind {
                H2_HEADERS if stream == 1 => answered = Some(payload[0]),
                H2_DATA if stream == 1 && flags & END_STREAM != 0 => served = Instant::now(),
                H2_SETTINGS if flags & ACK == 0 => {
                    tcp.write_all(&h2_frame(H2_SETTINGS, ACK, 0, &[])).await.unwrap()
                }
                H2_PING if flags & ACK == 0 => {
                    tcp.write_all(&h2_frame(H2_PING, ACK, 0, &payload)).await.unwrap()
                }
                H2_GOAWAY => goaway = true,
                _ => {}
            }
        }
        served.elapsed()
    })
    .await
    .expect("HTTP/2 idle connection still open");
    // 0x88: HPACK's static entry `:status 200`.
    assert_eq!(answered, Some(0x88), "the request was not answered 200");
    assert!(goaway, "the connection closed without GOAWAY");
    assert!(
        closed >= idle / 2 && closed < header,
        "HTTP/2 idle connection closed after {closed:?}"
    );

    // A watch stream over three idle timeouts, on HTTP/1 and HTTP/2: still open, and it
    // delivers the change made after them.
    let h1 = reqwest::Client::new();
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let mut watches = Vec::new();
    for client in [&h1, &h2] {
        let mut resp = s.watch(client, "/watch").await;
        assert_eq!(resp.status(), StatusCode::OK);
        let mut buf = Vec::new();
        assert!(next_frame(&mut resp, &mut buf).await.is_some(), "the first frame");
        watches.push((resp, buf));
    }
    // A queue long poll of three idle timeouts, meanwhile: answered when its time is up.
    let waited = {
        let (client, s) = (h1.clone(), &s);
        async move {
            let started = Instant::now();
            let answer = s.queue_wait(&client, 3 * idle.as_millis() as u64).await;
            (answer, started.elapsed())
        }
    };
    let ((status, body), took) = waited.await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, r#"{"due":false}"#));
    assert!(took >= 3 * idle - Duration::from_millis(100), "answered after {took:?}");
    let stamp = s.kv.set(&key!["watched"], &"after three idle timeouts").await.unwrap();
    for (resp, buf) in &mut watches {
        let frame = tokio::time::timeout(SLACK, async {
            loop {
                let frame = next_frame(resp, buf).await.expect("the watch stream was cut");
                if !frame.is_empty() {
                    return proto::WatchOutput::decode(&frame[..]).unwrap();
                }
            }
        })
        .await
        .expect("no frame for the change");
        let entry = frame.keys[0].entry_if_changed.as_ref().unwrap();
        assert_eq!(entry.versionstamp, stamp.as_bytes());
    }
    s.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_at_once_and_the_others_go_on() {
    let cap = 4;
    let s = start(ServerLimits::default().max_connections(cap)).await;
    let mut held = Vec::new();
    for _ in 0..cap {
        held.push(served_connection(s.addr).await);
    }
    // One more: the kernel accepts it, the server closes it without a byte.
    let mut extra = TcpStream::connect(s.addr).await.unwrap();
    let _ = extra.write_all(&metadata_request()).await;
    assert_eq!(read_response(&mut extra).await, None, "a connection beyond the cap was served");
    // The held ones are untouched.
    for tcp in &mut held {
        tcp.write_all(&metadata_request()).await.unwrap();
        assert_eq!(read_response(tcp).await.expect("a held connection was cut").0, 200);
    }
    // A place freed is taken again (once the server has seen the close).
    drop(held.pop());
    let deadline = Instant::now() + SLACK;
    loop {
        let mut tcp = TcpStream::connect(s.addr).await.unwrap();
        let _ = tcp.write_all(&metadata_request()).await;
        if let Some((status, _)) = read_response(&mut tcp).await {
            assert_eq!(status, 200);
            break;
        }
        assert!(Instant::now() < deadline, "the freed place was not given to a new connection");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(held);
    s.stop().await;
}

#[tokio::test]
async fn tls_handshakes_in_progress_count_toward_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::TestCa::new();
    let files = ca.write_server_files(dir.path());
    let handshake = Duration::from_secs(1);
    let tls =
        TlsConfig::from_pem_files(&files.cert, &files.key).unwrap().handshake_timeout(handshake);
    let limits = ServerLimits::default().max_connections(2);
    let s = start_with(ServerConfig::new(TOKEN).tls(tls).limits(limits)).await;
    // Two clients that never start their handshakes hold both places...
    let stalled =
        [TcpStream::connect(s.addr).await.unwrap(), TcpStream::connect(s.addr).await.unwrap()];
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ...so a third is closed at once...
    let mut third = TcpStream::connect(s.addr).await.unwrap();
    let closed = closed_within(&mut third, SLACK).await;
    assert!(closed < handshake, "closed after {closed:?}: it waited for a handshake timeout");
    // ...until the handshake timeout frees them, and an HTTPS client is served.
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    tokio::time::sleep(handshake).await;
    let deadline = Instant::now() + SLACK;
    let url = format!("https://localhost:{}/", s.addr.port());
    loop {
        let sent = client
            .post(&url)
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(METADATA_BODY)
            .send()
            .await;
        match sent {
            Ok(resp) => {
                assert_eq!(resp.status(), StatusCode::OK);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "no place freed: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(stalled);
    s.stop().await;
}

#[tokio::test]
async fn a_tokens_watch_streams_beyond_its_limit_are_429_until_one_ends() {
    let s = start(ServerLimits::default().max_watches_per_token(2)).await;
    let h1 = reqwest::Client::new();
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    // The two watch endpoints share the token's count.
    let mut open = Vec::new();
    for (client, path) in [(&h1, "/watch"), (&h2, "/eventual/watch")] {
        let mut resp = s.watch(client, path).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let mut buf = Vec::new();
        assert!(next_frame(&mut resp, &mut buf).await.is_some());
        open.push(resp);
    }
    for (client, path) in [(&h1, "/watch"), (&h2, "/eventual/watch")] {
        let resp = s.watch(client, path).await;
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()["content-type"].to_str().unwrap(), "text/plain; charset=utf-8");
        let message = resp.text().await.unwrap();
        assert!(
            message.starts_with("too many watch streams: this access token already has 2 open"),
            "{message}"
        );
    }
    // Other requests with the token are not limited.
    s.still_alive().await;
    // A client that goes away ends its stream and frees its place: on HTTP/1 (the connection
    // closes) and on HTTP/2 (the stream is reset).
    for gone in [open.remove(0), open.remove(0)] {
        drop(gone);
        let deadline = Instant::now() + SLACK;
        let mut resp = loop {
            let resp = s.watch(&h1, "/watch").await;
            if resp.status() == StatusCode::OK {
                break resp;
            }
            assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
            assert!(Instant::now() < deadline, "the place of a closed watch was not freed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut buf = Vec::new();
        assert!(next_frame(&mut resp, &mut buf).await.is_some());
        open.push(resp);
    }
    // Shutdown ends the streams, as before.
    s.stop().await;
    for mut resp in open {
        assert!(next_frame(&mut resp, &mut Vec::new()).await.is_none());
    }
}

#[tokio::test]
async fn queue_long_polls_beyond_the_limit_are_429_until_one_ends() {
    let s = start(ServerLimits::default().max_queue_waits(2)).await;
    let client = reqwest::Client::new();
    // A long poll that retries a 429 (as the clients do), so that the test's own probes
    // (which hold a place for an instant) cannot make it fail.
    let hold = |timeout_ms: u64| {
        let (api, client) = (s.api.clone(), client.clone());
        tokio::spawn(async move {
            loop {
                let (status, body) = api.queue_wait(&client, timeout_ms).await;
                if status != StatusCode::TOO_MANY_REQUESTS {
                    return (status, body);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // Probes with timeoutMs 0 (answered at once) until one is answered `want`.
    let probe_until = |want: StatusCode| {
        let (api, client) = (s.api.clone(), client.clone());
        async move {
            let deadline = Instant::now() + SLACK;
            loop {
                let (status, body) = api.queue_wait(&client, 0).await;
                if status == want {
                    return body;
                }
                assert!(Instant::now() < deadline, "never {want}: last {status} {body}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let short = hold(3000);
    let long = hold(60_000);
    let message = probe_until(StatusCode::TOO_MANY_REQUESTS).await;
    assert!(message.starts_with("too many queue waits: the server already holds 2"), "{message}");
    // One that ends by itself frees its place.
    assert_eq!(short.await.unwrap(), (StatusCode::OK, r#"{"due":false}"#.to_owned()));
    assert_eq!(probe_until(StatusCode::OK).await, r#"{"due":false}"#);
    // Full again; then a client that goes away (its connection closed mid-wait) frees its.
    let other = hold(60_000);
    probe_until(StatusCode::TOO_MANY_REQUESTS).await;
    long.abort();
    assert_eq!(probe_until(StatusCode::OK).await, r#"{"due":false}"#);
    // Shutdown answers the last one at once, as before.
    s.stop().await;
    assert_eq!(other.await.unwrap(), (StatusCode::OK, r#"{"due":false}"#.to_owned()));
}

/// This process's resident memory (the server runs in it), in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2_gib_chunked_upload_is_refused_with_413_without_the_memory_growing() {
    let s = start(ServerLimits::default()).await;
    s.still_alive().await;
    let before = rss();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let sampler = tokio::spawn({
        let peak = peak.clone();
        async move {
            loop {
                peak.fetch_max(rss(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    let tcp = TcpStream::connect(s.addr).await.unwrap();
    let (mut reader, mut writer) = tcp.into_split();
    let head = format!(
        "POST /v2/atomic_write HTTP/1.1\r\nHost: kv\r\nAuthorization: Bearer {TOKEN}\r\n\
         x-denokv-database-id: {}\r\nx-denokv-version: 3\r\n\
         Content-Type: application/x-protobuf\r\nTransfer-Encoding: chunked\r\n\r\n",
        s.database_id
    );
    const TOTAL: u64 = 2 << 30;
    let upload = tokio::spawn(async move {
        let chunk = vec![0x0a_u8; 1 << 20];
        let size = format!("{:x}\r\n", chunk.len());
        let mut sent = 0u64;
        if writer.write_all(head.as_bytes()).await.is_err() {
            return sent;
        }
        while sent < TOTAL {
            let wrote = async {
                writer.write_all(size.as_bytes()).await?;
                writer.write_all(&chunk).await?;
                writer.write_all(b"\r\n").await
            };
            if wrote.await.is_err() {
                break;
            }
            sent += chunk.len() as u64;
        }
        sent
    });
    let answer = tokio::time::timeout(Duration::from_secs(60), read_response(&mut reader))
        .await
        .expect("no answer to the upload");
    let (status, body) = answer.expect("the connection closed without an answer");
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    let sent = tokio::time::timeout(Duration::from_secs(60), upload)
        .await
        .expect("the server went on reading the upload")
        .unwrap();
    sampler.abort();
    let growth = peak.load(std::sync::atomic::Ordering::Relaxed).saturating_sub(before);
    println!(
        "413 after the client sent {} MiB of 2048; RSS growth {} KiB",
        sent >> 20,
        growth >> 10
    );
    assert!(sent < TOTAL / 8, "the server read {sent} bytes of a refused upload");
    assert!(growth < 64 << 20, "the server's memory grew by {growth} bytes");
    s.still_alive().await;
    s.stop().await;
}

#[tokio::test]
async fn limits_that_would_refuse_everything_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let kv = Kv::open(dir.path().join("db.sqlite3")).await.unwrap();
    for (limits, name) in [
        (ServerLimits::default().max_connections(0), "max_connections"),
        (ServerLimits::default().header_timeout(Duration::ZERO), "header_timeout"),
        (ServerLimits::default().max_header_bytes(1024), "max_header_bytes"),
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = ServerConfig::new(TOKEN).limits(limits);
        let e = serve(kv.clone(), listener, config, async {}).await.unwrap_err();
        assert!(matches!(e, ServeError::InvalidLimits(_)), "{e:?}");
        assert!(e.to_string().contains(name), "{e}");
    }
    kv.close().await.unwrap();
}
