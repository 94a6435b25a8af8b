//! The server over HTTPS, on a real socket on 127.0.0.1 with certificates from a CA made in the
//! test: the metadata exchange and the data path over HTTP/1.1 and HTTP/2 (ALPN), clients that
//! fail or stall their handshake (none takes the server down or holds up another client),
//! graceful shutdown, every key format, and clear errors for bad certificate and key files.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/pki.rs"]
mod pki;
#[path = "support/watch_frames.rs"]
mod watch_frames;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use openkv::{key, Kv, Value};
use openkv_server::proto::{self, AtomicWriteStatus, MutationType, ValueEncoding};
use openkv_server::{serve, ServeError, ServerConfig, TlsConfig, TlsError};
use pki::TestCa;
use prost::Message;
use reqwest::{StatusCode, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use watch_frames::next_frame;

const TOKEN: &str = "tls-test-token-0123456789";
/// How long a good client may take (a request takes milliseconds; the margin is for a loaded
/// machine). Far below the handshake timeout of the stalled-handshake test, so a client that
/// had to wait for a stalled handshake misses it.
const PROMPT: Duration = Duration::from_secs(10);

struct TlsServer {
    addr: SocketAddr,
    kv: Kv,
    database_id: String,
    ca_pem: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
    _dir: tempfile::TempDir,
}

/// A CA, a server certificate for localhost/127.0.0.1 loaded from PEM files, and a server
/// using it; `adjust` may change the TLS configuration.
async fn start(adjust: impl FnOnce(TlsConfig) -> TlsConfig) -> TlsServer {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let files = ca.write_server_files(dir.path());
    let tls = adjust(TlsConfig::from_pem_files(&files.cert, &files.key).unwrap());
    start_with(dir, ca.cert_pem(), tls).await
}

async fn start_with(dir: tempfile::TempDir, ca_pem: String, tls: TlsConfig) -> TlsServer {
    let kv = Kv::open(dir.path().join("db.sqlite3")).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task =
        tokio::spawn(serve(kv.clone(), listener, ServerConfig::new(TOKEN).tls(tls), async {
            let _ = stopped.await;
        }));
    let database_id = kv.database_id().await.unwrap().to_string();
    TlsServer { addr, kv, database_id, ca_pem, stop: Some(stop), task, _dir: dir }
}

impl TlsServer {
    /// `https://localhost:PORT`: the name in the certificate.
    fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// A client trusting only the test CA; HTTP/1.1 only, or HTTP/2 when the server offers it.
    fn client(&self, http1_only: bool) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap();
        let builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca);
        let builder = if http1_only { builder.http1_only() } else { builder };
        builder.build().unwrap()
    }

    async fn metadata(
        &self,
        client: &reqwest::Client,
        url: &str,
        token: &str,
    ) -> reqwest::Response {
        client
            .post(format!("{url}/"))
            .header("authorization", format!("Bearer {token}"))
            .body(r#"{"supportedVersions":[1,2,3]}"#)
            .send()
            .await
            .unwrap()
    }

    /// A well-formed metadata exchange over HTTP/2 answers 200, promptly.
    async fn still_alive(&self) {
        let client = self.client(false);
        let resp = tokio::time::timeout(PROMPT, self.metadata(&client, &self.url(), TOKEN))
            .await
            .expect("a good client had to wait");
        assert_eq!(resp.status(), StatusCode::OK, "the server stopped answering");
    }

    async fn data(&self, client: &reqwest::Client, endpoint: &str, body: Vec<u8>) -> Vec<u8> {
        let resp = client
            .post(format!("{}/v2/{endpoint}", self.url()))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("x-denokv-database-id", &self.database_id)
            .header("x-denokv-version", "3")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.bytes().await.unwrap().to_vec()
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("serve returns after shutdown")
            .unwrap()
            .unwrap();
        self.kv.close().await.unwrap();
    }
}

#[tokio::test]
async fn metadata_and_data_path_over_https_with_http1_and_http2() {
    let s = start(|t| t).await;
    for (http1_only, version) in [(true, Version::HTTP_11), (false, Version::HTTP_2)] {
        let resp = s.metadata(&s.client(http1_only), &s.url(), TOKEN).await;
        assert_eq!(resp.version(), version, "ALPN chose the wrong protocol");
        assert_eq!(resp.status(), StatusCode::OK);
        let meta: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        assert_eq!(meta["version"], 3);
        assert_eq!(meta["databaseId"], s.database_id.as_str());
        assert_eq!(meta["endpoints"][0]["url"], "/v2");
        assert_eq!(meta["token"], TOKEN);
    }
    // The certificate names 127.0.0.1 too.
    let by_ip = format!("https://127.0.0.1:{}", s.addr.port());
    assert_eq!(s.metadata(&s.client(false), &by_ip, TOKEN).await.status(), StatusCode::OK);

    // A write, then a read of it, over HTTP/2.
    let client = s.client(false);
    let k = key!["over", "tls"].encode().unwrap();
    let write = proto::AtomicWrite {
        mutations: vec![proto::Mutation {
            key: k.clone(),
            value: Some(proto::KvValue {
                data: b"secret".to_vec(),
                encoding: ValueEncoding::VeBytes as i32,
            }),
            mutation_type: MutationType::MSet as i32,
            ..Default::default()
        }],
        ..Default::default()
    };
    let out = proto::AtomicWriteOutput::decode(
        &s.data(&client, "atomic_write", write.encode_to_vec()).await[..],
    )
    .unwrap();
    assert_eq!(out.status, AtomicWriteStatus::AwSuccess as i32);
    let read = proto::SnapshotRead {
        ranges: vec![proto::ReadRange {
            start: k.clone(),
            end: [k.as_slice(), &[0]].concat(),
            limit: 1,
            reverse: false,
        }],
    };
    let out = proto::SnapshotReadOutput::decode(
        &s.data(&client, "snapshot_read", read.encode_to_vec()).await[..],
    )
    .unwrap();
    let entry = &out.ranges[0].values[0];
    assert_eq!((entry.key.as_slice(), entry.value.as_slice()), (k.as_slice(), &b"secret"[..]));
    assert_eq!(
        s.kv.get(&key!["over", "tls"]).await.unwrap().unwrap().value,
        Value::Bytes(b"secret".to_vec())
    );
    s.stop().await;
}

#[tokio::test]
async fn version_1_endpoint_url_says_https_and_a_wrong_token_is_401() {
    let s = start(|t| t).await;
    let client = s.client(false);
    // Protocol 1 endpoint URLs are absolute: they must keep the client on HTTPS.
    let resp = client
        .post(format!("{}/", s.url()))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let meta: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(meta["version"], 1);
    assert_eq!(meta["endpoints"][0]["url"], format!("{}/v2", s.url()));

    let resp = s.metadata(&client, &s.url(), "not-the-token-0123456789").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.text().await.unwrap(), "invalid or missing access token");
    s.stop().await;
}

#[tokio::test]
async fn clients_that_fail_the_handshake_do_not_take_the_server_down() {
    let s = start(|t| t).await;
    // Plain HTTP to the HTTPS port.
    let plain = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{}/", s.addr.port());
    assert!(plain.post(url).body("{}").send().await.is_err(), "plain HTTP got an answer");
    s.still_alive().await;

    // Garbage instead of a ClientHello: the server closes the connection.
    let mut garbage = TcpStream::connect(s.addr).await.unwrap();
    garbage.write_all(b"\x00\x01\x02 this is not TLS \xff\xfe\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(PROMPT, garbage.read(&mut buf)).await;
    assert!(closed.is_ok(), "the server kept a garbage connection open");
    s.still_alive().await;

    // A client that does not trust the certificate, and one asking for a name the
    // certificate does not have: both refuse the server's certificate.
    let untrusting =
        reqwest::Client::builder().use_rustls_tls().tls_built_in_root_certs(false).build().unwrap();
    assert!(untrusting.post(format!("{}/", s.url())).send().await.is_err());
    let wrong_name_client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(s.ca_pem.as_bytes()).unwrap())
        .resolve("not-this-server.example", s.addr)
        .build()
        .unwrap();
    let url = format!("https://not-this-server.example:{}/", s.addr.port());
    let err = wrong_name_client.post(url).send().await.unwrap_err();
    assert!(format!("{err:?}").contains("NotValidForName"), "{err:?}");
    s.still_alive().await;
    s.stop().await;
}

#[tokio::test]
async fn stalled_handshakes_do_not_hold_up_other_clients() {
    // With a handshake timeout far beyond PROMPT, the stalled connections below stay open for
    // the whole test: a good client is served meanwhile or not at all.
    let s = start(|t| t.handshake_timeout(Duration::from_secs(600))).await;
    let _silent = TcpStream::connect(s.addr).await.unwrap();
    let mut partial = TcpStream::connect(s.addr).await.unwrap();
    // A TLS record header announcing a 512-byte ClientHello that never comes.
    partial.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..3 {
        s.still_alive().await;
    }
    // Shutdown does not wait for them either.
    s.stop().await;
}

#[tokio::test]
async fn a_handshake_that_never_completes_is_closed_after_the_timeout() {
    let s = start(|t| t.handshake_timeout(Duration::from_millis(300))).await;
    let started = Instant::now();
    let mut silent = TcpStream::connect(s.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("the server never closed a connection that did not handshake");
    // Closed (end of stream, or a reset), without a byte sent.
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() >= Duration::from_millis(250), "closed before the timeout");
    s.still_alive().await;
    s.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_over_tls() {
    let s = start(|t| t).await;
    // A watch stream open over HTTP/2 and an idle HTTP/1.1 keep-alive connection.
    let h2 = s.client(false);
    let watch = proto::Watch { keys: vec![proto::WatchKey { key: key!["w"].encode().unwrap() }] };
    let mut resp = h2
        .post(format!("{}/v2/watch", s.url()))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("x-denokv-database-id", &s.database_id)
        .header("x-denokv-version", "3")
        .body(watch.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut buf = Vec::new();
    assert!(next_frame(&mut resp, &mut buf).await.is_some(), "the watch sends the state first");
    let h1 = s.client(true);
    assert_eq!(s.metadata(&h1, &s.url(), TOKEN).await.status(), StatusCode::OK);

    let (addr, kv) = (s.addr, s.kv.clone());
    let _ = s.stop.unwrap().send(());
    // The watch stream ends cleanly, serve returns, and the port is closed.
    let ended = tokio::time::timeout(Duration::from_secs(10), next_frame(&mut resp, &mut buf));
    assert!(ended.await.expect("the watch stream did not end at shutdown").is_none());
    tokio::time::timeout(Duration::from_secs(10), s.task)
        .await
        .expect("serve did not return after shutdown")
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "the port still accepts after shutdown");
    kv.close().await.unwrap();
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

#[tokio::test]
async fn rsa_pkcs1_and_ec_sec1_keys_serve_https() {
    for (key_file, pkcs8_copy) in
        [("rsa_pkcs1.pem", "rsa_pkcs8.pem"), ("ec_sec1.pem", "ec_pkcs8.pem")]
    {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new();
        let key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(fixture(pkcs8_copy)).unwrap())
            .unwrap();
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, ca.server_cert_pem(&key)).unwrap();
        let tls = TlsConfig::from_pem_files(&cert, fixture(key_file))
            .unwrap_or_else(|e| panic!("{key_file}: {e}"));
        let s = start_with(dir, ca.cert_pem(), tls).await;
        for http1_only in [true, false] {
            let resp = s.metadata(&s.client(http1_only), &s.url(), TOKEN).await;
            assert_eq!(resp.status(), StatusCode::OK, "{key_file}");
        }
        s.stop().await;
    }
}

#[test]
fn bad_certificate_and_key_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let files = ca.write_server_files(dir.path());
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let load = |cert: &Path, key: &Path| TlsConfig::from_pem_files(cert, key).unwrap_err();
    let show = |p: &Path| p.display().to_string();

    let missing = dir.path().join("missing.pem");
    let e = load(&missing, &files.key);
    assert!(matches!(e, TlsError::Read { .. }), "{e:?}");
    assert!(e.to_string().starts_with(&format!("cannot read {}: ", show(&missing))), "{e}");
    let e = load(&files.cert, &missing);
    assert!(e.to_string().starts_with(&format!("cannot read {}: ", show(&missing))), "{e}");

    // The two files swapped: no certificate in the first.
    let e = load(&files.key, &files.cert);
    assert!(matches!(e, TlsError::NoCertificate { .. }), "{e:?}");
    assert!(e.to_string().starts_with(&format!("{} holds no PEM certificate", show(&files.key))));
    let empty = write("empty.pem", "");
    assert!(matches!(load(&empty, &files.key), TlsError::NoCertificate { .. }));

    // No key in the key file: a certificate, an encrypted key, nothing.
    let e = load(&files.cert, &files.cert);
    assert!(matches!(e, TlsError::NoKey { .. }), "{e:?}");
    assert!(e.to_string().starts_with(&format!("{} holds no PEM private key", show(&files.cert))));
    assert!(e.to_string().ends_with("were the certificate and key files swapped?"), "{e}");
    let encrypted = write(
        "encrypted.pem",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
    );
    let e = load(&files.cert, &encrypted);
    assert!(e.to_string().contains("encrypted key, which is not supported"), "{e}");
    assert!(matches!(load(&files.cert, &empty), TlsError::NoKey { .. }));

    // Broken PEM and a certificate that is not one.
    let unterminated = write("unterminated.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n");
    let e = load(&unterminated, &files.key);
    assert!(matches!(e, TlsError::Pem { .. }), "{e:?}");
    assert!(e.to_string().starts_with(&format!("{} is not valid PEM: ", show(&unterminated))));
    let not_der =
        write("not_der.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    let e = load(&not_der, &files.key);
    assert!(matches!(e, TlsError::Rejected { .. }), "{e:?}");
    assert!(e.to_string().contains(&show(&not_der)) && e.to_string().contains(&show(&files.key)));

    // The key of another certificate.
    let other_key = write("other_key.pem", &rcgen::KeyPair::generate().unwrap().serialize_pem());
    let e = load(&files.cert, &other_key);
    assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "the private key in {} does not match the certificate in {}",
            show(&other_key),
            show(&files.cert)
        )
    );

    // From memory: the same checks, naming which input is wrong.
    let cert_pem = std::fs::read(&files.cert).unwrap();
    let key_pem = std::fs::read(&files.key).unwrap();
    assert!(TlsConfig::from_pem(&cert_pem, &key_pem).is_ok());
    let e = TlsConfig::from_pem(&key_pem, &key_pem).unwrap_err();
    assert!(e.to_string().starts_with("the certificate PEM holds no PEM certificate"), "{e}");
}
