//! The server at the HTTP level, on a real socket on 127.0.0.1: the metadata exchange, the
//! data path, and every kind of bad input — each answered 4xx with a plain-text message,
//! nothing partly written, and the server still answering afterwards; and a corrupt stored
//! row, which is the server's failure (500), not the client's, and poisons nothing.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/watch_frames.rs"]
mod watch_frames;

use openkv::{key, Key, Kv, Value};
use openkv_server::proto::{self, AtomicWriteStatus, MutationType, ValueEncoding};
use openkv_server::{serve, ServerConfig};
use prost::Message;
use reqwest::StatusCode;
use tokio::sync::oneshot;
use watch_frames::next_frame;

const TOKEN: &str = "test-token-0123456789";

struct Server {
    url: String,
    kv: Kv,
    database_id: String,
    client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

async fn start(read_only: bool) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let kv = Kv::open(dir.path().join("db.sqlite3")).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let config = ServerConfig::new(TOKEN).read_only(read_only);
    let served = kv.clone();
    let task = tokio::spawn(async move {
        serve(served, listener, config, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    let database_id = kv.database_id().await.unwrap().to_string();
    Server {
        url,
        kv,
        database_id,
        client: reqwest::Client::new(),
        stop: Some(stop),
        task: Some(task),
        _dir: dir,
    }
}

impl Server {
    async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (StatusCode, String, Vec<u8>) {
        let mut req = self.client.post(format!("{}{path}", self.url)).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let ctype = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, ctype, resp.bytes().await.unwrap().to_vec())
    }

    fn auth(&self) -> Vec<(&'static str, String)> {
        vec![
            ("authorization", format!("Bearer {TOKEN}")),
            ("x-denokv-database-id", self.database_id.clone()),
            ("x-denokv-version", "3".into()),
        ]
    }

    async fn data(&self, endpoint: &str, body: Vec<u8>) -> (StatusCode, String, Vec<u8>) {
        let h = self.auth();
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.post(&format!("/v2/{endpoint}"), &h, body).await
    }

    /// Opens a watch of `keys`; the response streams until the server shuts down.
    async fn open_watch(&self, keys: &[Vec<u8>]) -> reqwest::Response {
        let keys = keys.iter().map(|k| proto::WatchKey { key: k.clone() }).collect();
        let mut req = self
            .client
            .post(format!("{}/v2/watch", self.url))
            .body(proto::Watch { keys }.encode_to_vec());
        for (k, v) in self.auth() {
            req = req.header(k, v);
        }
        req.send().await.unwrap()
    }

    async fn write(&self, w: proto::AtomicWrite) -> (StatusCode, String, Vec<u8>) {
        self.data("atomic_write", w.encode_to_vec()).await
    }

    /// The server still answers a well-formed read.
    async fn still_alive(&self) {
        let read = proto::SnapshotRead {
            ranges: vec![proto::ReadRange {
                start: vec![0],
                end: vec![0xff],
                limit: 1,
                reverse: false,
            }],
        };
        let (status, _, _) = self.data("snapshot_read", read.encode_to_vec()).await;
        assert_eq!(status, StatusCode::OK, "the server stopped answering");
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
        self.kv.close().await.unwrap();
    }
}

fn enc(k: &Key) -> Vec<u8> {
    k.encode().unwrap()
}

fn set(k: &Key, value: Vec<u8>, encoding: ValueEncoding) -> proto::Mutation {
    proto::Mutation {
        key: enc(k),
        value: Some(proto::KvValue { data: value, encoding: encoding as i32 }),
        mutation_type: MutationType::MSet as i32,
        ..Default::default()
    }
}

fn write_of(mutations: Vec<proto::Mutation>) -> proto::AtomicWrite {
    proto::AtomicWrite { mutations, ..Default::default() }
}

fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

#[tokio::test]
async fn metadata_exchange() {
    let s = start(false).await;
    let auth = format!("Bearer {TOKEN}");
    let (status, ctype, body) = s
        .post("/", &[("authorization", &auth)], br#"{"supportedVersions":[1,2,3]}"#.to_vec())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(ctype.starts_with("application/json"));
    let meta: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(meta["version"], 3);
    assert_eq!(meta["databaseId"], s.database_id.as_str());
    assert_ne!(s.database_id, "00000000-0000-0000-0000-000000000000");
    assert_eq!(meta["endpoints"][0]["url"], "/v2");
    assert_eq!(meta["endpoints"][0]["consistency"], "strong");
    assert_eq!(meta["token"], TOKEN);
    assert!(meta["expiresAt"].as_str().unwrap().ends_with('Z'));
    // Version 2 only; and no body means version 1, with an absolute endpoint URL.
    let (_, _, body) =
        s.post("/", &[("authorization", &auth)], br#"{"supportedVersions":[2]}"#.to_vec()).await;
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&body).unwrap()["version"], 2);
    let (status, _, body) = s.post("/", &[("authorization", &auth)], vec![]).await;
    assert_eq!(status, StatusCode::OK);
    let meta: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(meta["version"], 1);
    assert_eq!(meta["endpoints"][0]["url"], format!("{}/v2", s.url));
    // The id is kept with the data: the same after a restart.
    let id = s.database_id.clone();
    let dir_path = s._dir.path().join("db.sqlite3");
    s.kv.close().await.unwrap();
    let kv = Kv::open(&dir_path).await.unwrap();
    assert_eq!(kv.database_id().await.unwrap().to_string(), id);
}

#[tokio::test]
async fn bad_metadata_requests_are_4xx() {
    let s = start(false).await;
    let auth = format!("Bearer {TOKEN}");
    let body = br#"{"supportedVersions":[1,2,3]}"#.to_vec();
    for (headers, expect) in [
        (vec![], StatusCode::UNAUTHORIZED),
        (vec![("authorization", "Bearer wrong-token-0123456")], StatusCode::UNAUTHORIZED),
        (vec![("authorization", "Basic abc")], StatusCode::UNAUTHORIZED),
        (vec![("authorization", &format!("Bearer {TOKEN}x")[..])], StatusCode::UNAUTHORIZED),
    ] {
        let (status, ctype, _) = s.post("/", &headers, body.clone()).await;
        assert_eq!(status, expect);
        assert!(ctype.starts_with("text/plain"));
    }
    let (status, _, msg) = s.post("/", &[("authorization", &auth)], b"{not json".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text(&msg).contains("invalid metadata request"), "{}", text(&msg));
    let (status, _, msg) =
        s.post("/", &[("authorization", &auth)], br#"{"supportedVersions":[7]}"#.to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text(&msg).contains("no common protocol version"), "{}", text(&msg));
    s.still_alive().await;
    s.stop().await;
}

#[tokio::test]
async fn data_path_headers_are_checked() {
    let s = start(false).await;
    let read = proto::SnapshotRead::default().encode_to_vec();
    let auth = format!("Bearer {TOKEN}");
    /// Request headers, expected status, a phrase of the expected message.
    type Case<'a> = (Vec<(&'a str, &'a str)>, StatusCode, &'a str);
    let cases: Vec<Case> = vec![
        (vec![], StatusCode::UNAUTHORIZED, "access token"),
        (
            vec![("authorization", &auth), ("x-denokv-version", "3")],
            StatusCode::BAD_REQUEST,
            "missing database id",
        ),
        (
            vec![
                ("authorization", &auth),
                ("x-denokv-version", "3"),
                ("x-denokv-database-id", "00000000-0000-0000-0000-000000000000"),
            ],
            StatusCode::BAD_REQUEST,
            "does not match",
        ),
        (
            vec![
                ("authorization", &auth),
                ("x-denokv-version", "9"),
                ("x-denokv-database-id", &s.database_id),
            ],
            StatusCode::BAD_REQUEST,
            "unsupported x-denokv-version",
        ),
    ];
    for (headers, status, message) in cases {
        let (got, ctype, body) = s.post("/v2/snapshot_read", &headers, read.clone()).await;
        assert_eq!(got, status, "{}", text(&body));
        assert!(ctype.starts_with("text/plain"));
        assert!(text(&body).contains(message), "{}", text(&body));
    }
    // Version 1 names the database in x-transaction-domain-id.
    let (got, _, _) = s
        .post(
            "/v2/snapshot_read",
            &[("authorization", &auth), ("x-transaction-domain-id", &s.database_id)],
            read,
        )
        .await;
    assert_eq!(got, StatusCode::OK);
    let (got, _, _) = s.post("/v2/nonsense", &[("authorization", &auth)], vec![]).await;
    assert_eq!(got, StatusCode::NOT_FOUND);
    s.still_alive().await;
    s.stop().await;
}

#[tokio::test]
async fn reads_and_writes_over_the_wire() {
    let s = start(false).await;
    let (a, b) = (key!["a"], key!["b"]);
    let (status, ctype, body) = s
        .write(write_of(vec![
            set(&a, vec![0xff, 0x0f, 0x49, 0x02], ValueEncoding::VeV8),
            set(&b, 7u64.to_le_bytes().to_vec(), ValueEncoding::VeLe64),
        ]))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ctype, "application/x-protobuf");
    let out = proto::AtomicWriteOutput::decode(&body[..]).unwrap();
    assert_eq!(out.status, AtomicWriteStatus::AwSuccess as i32);
    assert_eq!(out.versionstamp.len(), 10);
    // Both ranges, in order, one of them reversed.
    let read = proto::SnapshotRead {
        ranges: vec![
            proto::ReadRange {
                start: enc(&b),
                end: [enc(&b), vec![0]].concat(),
                limit: 1,
                reverse: false,
            },
            proto::ReadRange { start: vec![0], end: vec![0xff], limit: 10, reverse: true },
        ],
    };
    let (status, _, body) = s.data("snapshot_read", read.encode_to_vec()).await;
    assert_eq!(status, StatusCode::OK);
    let out = proto::SnapshotReadOutput::decode(&body[..]).unwrap();
    assert!(out.read_is_strongly_consistent);
    assert_eq!(out.status, proto::SnapshotReadStatus::SrSuccess as i32);
    assert_eq!(out.ranges[0].values[0].encoding, ValueEncoding::VeLe64 as i32);
    assert_eq!(out.ranges[0].values[0].value, 7u64.to_le_bytes());
    let keys: Vec<_> = out.ranges[1].values.iter().map(|e| e.key.clone()).collect();
    assert_eq!(keys, vec![enc(&b), enc(&a)]);
    // A failing check: every failing index, nothing written.
    let w = proto::AtomicWrite {
        checks: vec![
            proto::Check { key: enc(&a), versionstamp: vec![] },
            proto::Check { key: enc(&key!["nope"]), versionstamp: vec![] },
            proto::Check { key: enc(&b), versionstamp: vec![0; 10] },
        ],
        mutations: vec![set(&key!["c"], vec![1], ValueEncoding::VeBytes)],
        enqueues: vec![],
    };
    let (_, _, body) = s.write(w).await;
    let out = proto::AtomicWriteOutput::decode(&body[..]).unwrap();
    assert_eq!(out.status, AtomicWriteStatus::AwCheckFailure as i32);
    assert_eq!(out.failed_checks, vec![0, 2]);
    assert!(s.kv.get(&key!["c"]).await.unwrap().is_none());
    s.stop().await;
}

#[tokio::test]
async fn bad_writes_are_4xx_and_write_nothing() {
    let s = start(false).await;
    let x = key!["x"];
    let sum = |k: &Key, v: Vec<u8>, e: ValueEncoding| proto::Mutation {
        mutation_type: MutationType::MSum as i32,
        ..set(k, v, e)
    };
    s.kv.set(&key!["text"], Value::V8(vec![0xff, 0x0f, 0x22, 0x01, b'a'])).await.unwrap();
    let big_key = key![vec![7u8; 2047]];
    let cases: Vec<(proto::AtomicWrite, &str)> = vec![
        (write_of(vec![set(&x, vec![1, 2, 3], ValueEncoding::VeLe64)]), "must be 8 bytes"),
        (write_of(vec![set(&x, vec![1], ValueEncoding::VeUnspecified)]), "unknown value encoding"),
        (
            write_of(vec![proto::Mutation {
                value: Some(proto::KvValue { data: vec![1], encoding: 42 }),
                ..set(&x, vec![], ValueEncoding::VeBytes)
            }]),
            "unknown value encoding 42",
        ),
        (
            write_of(vec![proto::Mutation {
                mutation_type: 77,
                ..set(&x, vec![1], ValueEncoding::VeBytes)
            }]),
            "unknown mutation type 77",
        ),
        (
            write_of(vec![proto::Mutation {
                value: None,
                ..set(&x, vec![], ValueEncoding::VeBytes)
            }]),
            "M_SET needs a value",
        ),
        (
            write_of(vec![proto::Mutation {
                expire_at_ms: -5,
                ..set(&x, vec![1], ValueEncoding::VeBytes)
            }]),
            "invalid expire_at_ms -5",
        ),
        (
            proto::AtomicWrite {
                checks: vec![proto::Check { key: enc(&x), versionstamp: vec![1; 5] }],
                ..Default::default()
            },
            "0 or 10 bytes",
        ),
        (
            write_of(vec![set(&big_key, vec![1], ValueEncoding::VeBytes)]),
            "Key too large for write (max 2048 bytes)",
        ),
        (
            write_of(vec![set(&x, vec![0; 65_537], ValueEncoding::VeBytes)]),
            "Value too large (max 65536 bytes)",
        ),
        (
            proto::AtomicWrite {
                checks: (0..101u32)
                    .map(|i| proto::Check { key: enc(&key!["c", i]), versionstamp: vec![] })
                    .collect(),
                ..Default::default()
            },
            "Too many checks (max 100)",
        ),
        (
            write_of(
                (0..1001u32).map(|i| set(&key!["m", i], vec![1], ValueEncoding::VeBytes)).collect(),
            ),
            "Too many mutations (max 1000)",
        ),
        (write_of(vec![set(&key![], vec![1], ValueEncoding::VeBytes)]), "key cannot be empty"),
        // All or nothing: the set before the failing sum is not written.
        (
            write_of(vec![
                set(&x, vec![1], ValueEncoding::VeBytes),
                sum(&key!["text"], 1u64.to_le_bytes().to_vec(), ValueEncoding::VeLe64),
            ]),
            "Failed to perform 'sum' mutation on a non-U64 value in the database",
        ),
    ];
    for (w, message) in cases {
        let (status, ctype, body) = s.write(w).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{message}: {}", text(&body));
        assert!(ctype.starts_with("text/plain"));
        assert!(text(&body).contains(message), "expected {message:?}, got {:?}", text(&body));
        assert!(s.kv.get(&x).await.unwrap().is_none(), "nothing written ({message})");
        s.still_alive().await;
    }
    // Malformed protobuf, and reads beyond the limits.
    for endpoint in ["atomic_write", "snapshot_read"] {
        let (status, _, body) = s.data(endpoint, vec![0xff, 0xff, 0xff]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(text(&body).contains("invalid"), "{}", text(&body));
    }
    let range = |limit| proto::ReadRange { start: vec![0], end: vec![0xff], limit, reverse: false };
    for (read, message) in [
        (
            proto::SnapshotRead { ranges: (0..11).map(|_| range(1)).collect() },
            "Too many ranges (max 10)",
        ),
        (proto::SnapshotRead { ranges: vec![range(1001)] }, "Too many entries (max 1000)"),
        (proto::SnapshotRead { ranges: vec![range(0)] }, "at least 1"),
        (proto::SnapshotRead { ranges: vec![range(-3)] }, "must be positive"),
        (
            proto::SnapshotRead {
                ranges: vec![proto::ReadRange { start: vec![1; 2050], ..range(1) }],
            },
            "Key too large for read",
        ),
    ] {
        let (status, _, body) = s.data("snapshot_read", read.encode_to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{message}");
        assert!(text(&body).contains(message), "expected {message:?}, got {:?}", text(&body));
    }
    s.still_alive().await;
    s.stop().await;
}

#[tokio::test]
async fn a_corrupt_row_is_a_server_error_and_the_store_goes_on() {
    let s = start(false).await;
    let k = key!["counter"];
    let counter = set(&k, 7u64.to_le_bytes().to_vec(), ValueEncoding::VeLe64);
    assert_eq!(s.write(write_of(vec![counter])).await.0, StatusCode::OK);
    // Behind the server's back: a KvU64 of 2 bytes, and a queue message whose backoff
    // schedule is not JSON.
    let conn = rusqlite::Connection::open(s._dir.path().join("db.sqlite3")).unwrap();
    conn.execute("update kv set v = x'0102' where k = ?1", [enc(&k)]).unwrap();
    conn.execute(
        "insert into queue (ts, id, data, backoff_schedule, keys_if_undelivered) \
         values (0, 'bad-row', x'ff0f', '{not json', '[]')",
        [],
    )
    .unwrap();
    drop(conn);

    // Not the client's mistake (500, not 400), and said as such.
    let read = proto::SnapshotRead {
        ranges: vec![proto::ReadRange {
            start: enc(&k),
            end: [enc(&k), vec![0]].concat(),
            limit: 1,
            reverse: false,
        }],
    };
    let (status, _, body) = s.data("snapshot_read", read.encode_to_vec()).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{}", text(&body));
    assert!(text(&body).starts_with("corrupt stored data: "), "{}", text(&body));
    let take = br#"{"max":1,"leaseMs":5000}"#.to_vec();
    let (status, _, body) = s.data("openkv/queue/take", take).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{}", text(&body));
    assert!(text(&body).contains("bad-row"), "{}", text(&body));

    // Neither poisoned the store: writes still commit.
    let after = set(&key!["after"], vec![1], ValueEncoding::VeBytes);
    let (status, _, body) = s.write(write_of(vec![after])).await;
    assert_eq!(status, StatusCode::OK, "{}", text(&body));
    s.still_alive().await;
    s.stop().await;
}

#[tokio::test]
async fn read_only_answers_write_disabled() {
    let s = start(true).await;
    let (status, _, body) =
        s.write(write_of(vec![set(&key!["x"], vec![1], ValueEncoding::VeBytes)])).await;
    assert_eq!(status, StatusCode::OK);
    let out = proto::AtomicWriteOutput::decode(&body[..]).unwrap();
    assert_eq!(out.status, AtomicWriteStatus::AwWriteDisabled as i32);
    assert!(s.kv.get(&key!["x"]).await.unwrap().is_none());
    s.still_alive().await;
    s.stop().await;
}

#[tokio::test]
async fn http2_prior_knowledge_works_on_the_same_port() {
    let s = start(false).await;
    let client = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let resp = client
        .post(format!("{}/", s.url))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(r#"{"supportedVersions":[3]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::OK);
    // Version 1's absolute endpoint URL comes from HTTP/2's `:authority` (there is no `Host`).
    let resp = client
        .post(format!("{}/", s.url))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    let meta: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(meta["endpoints"][0]["url"], format!("{}/v2", s.url));
    s.stop().await;
}

#[tokio::test]
async fn a_weak_token_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let kv = Kv::open(dir.path().join("db")).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = serve(kv, listener, ServerConfig::new("short"), async {}).await.unwrap_err();
    assert_eq!(err.to_string(), "the access token must be at least 12 characters long");
}

#[tokio::test]
async fn watch_streams_the_state_then_each_change() {
    let s = start(false).await;
    let (w1, w2) = (key!["w", 1], key!["w", 2]);
    let v1 = s.kv.set(&w1, Value::Bytes(b"one".to_vec())).await.unwrap();
    let mut resp = s.open_watch(&[enc(&w1), enc(&w2)]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut buf = Vec::new();
    let first =
        proto::WatchOutput::decode(&next_frame(&mut resp, &mut buf).await.unwrap()[..]).unwrap();
    assert_eq!(first.keys.len(), 2);
    assert!(first.keys.iter().all(|k| k.changed));
    assert_eq!(first.keys[0].entry_if_changed.as_ref().unwrap().versionstamp, v1.as_bytes());
    assert!(first.keys[1].entry_if_changed.is_none());
    // A write to another key: no frame. A write to w2: a frame with the whole state (every key
    // marked changed; see the server's note on the Deno client).
    s.kv.set(&key!["other"], Value::U64(1)).await.unwrap();
    let v2 = s.kv.set(&w2, Value::Bytes(b"two".to_vec())).await.unwrap();
    let second =
        proto::WatchOutput::decode(&next_frame(&mut resp, &mut buf).await.unwrap()[..]).unwrap();
    assert!(second.keys.iter().all(|k| k.changed), "{second:?}");
    assert_eq!(second.keys[0].entry_if_changed.as_ref().unwrap().versionstamp, v1.as_bytes());
    assert_eq!(second.keys[1].entry_if_changed.as_ref().unwrap().versionstamp, v2.as_bytes());
    // A delete: changed, no entry.
    s.kv.delete(&w1).await.unwrap();
    let third =
        proto::WatchOutput::decode(&next_frame(&mut resp, &mut buf).await.unwrap()[..]).unwrap();
    assert!(third.keys[0].changed && third.keys[0].entry_if_changed.is_none());
    assert_eq!(third.keys[1].entry_if_changed.as_ref().unwrap().versionstamp, v2.as_bytes());
    // Shutdown ends the stream (graceful shutdown does not wait for it forever).
    let kv = s.kv.clone();
    let _ = s.stop.unwrap().send(());
    assert!(next_frame(&mut resp, &mut buf).await.is_none(), "the stream ends at shutdown");
    s.task.unwrap().await.unwrap();
    kv.close().await.unwrap();
}

/// Every route of the router (`ROUTES` is the table the router is built from, so none is left
/// out) answers 401 to a missing, wrong or malformed token — with every other header right, so
/// a route that skipped the authentication layer would answer something else.
#[tokio::test]
async fn every_route_requires_the_token() {
    let s = start(false).await;
    assert!(openkv_server::ROUTES.contains(&"/"), "{:?}", openkv_server::ROUTES);
    let wrong = [
        None,
        Some("Bearer wrong-token-0123456".to_owned()),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("bearer {TOKEN}")),
        Some("Basic abc".to_owned()),
    ];
    for route in openkv_server::ROUTES {
        for authorization in &wrong {
            let mut req = s
                .client
                .post(format!("{}{route}", s.url))
                .header("x-denokv-database-id", &s.database_id)
                .header("x-denokv-version", "3");
            if let Some(authorization) = authorization {
                req = req.header("authorization", authorization);
            }
            let resp = req.send().await.unwrap();
            // The status first: an unauthenticated watch would stream forever.
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{route} with {authorization:?}");
            let ctype = resp.headers()["content-type"].to_str().unwrap().to_owned();
            assert!(ctype.starts_with("text/plain"), "{route}: {ctype}");
            assert_eq!(resp.text().await.unwrap(), "invalid or missing access token", "{route}");
        }
    }
    // Not routes: an unknown path and a wrong method answer as they always did, token or not.
    let (status, _, _) = s.post("/v2/nonsense", &[], vec![]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let resp = s.client.get(format!("{}/v2/snapshot_read", s.url)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    s.still_alive().await;
    s.stop().await;
}

/// The watch answers that are the server's own rather than the library's: too many keys (the
/// server's message), an empty list (a frame of no keys, then keep-alives), keep-alives on an
/// idle stream, and a commit another connection makes to the file (an event naming no keys).
#[tokio::test]
async fn watch_limits_empty_lists_keep_alives_and_other_writers() {
    let s = start(false).await;
    let eleven: Vec<Vec<u8>> = (0..11).map(|i| enc(&key!["w", i])).collect();
    let resp = s.open_watch(&eleven).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.text().await.unwrap(), "Too many keys to watch (max 10)");
    let too_long = vec![vec![7u8; openkv::Limits::default().max_read_key_size + 1]];
    let resp = s.open_watch(&too_long).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.text().await.unwrap().to_lowercase().contains("too large"));

    let (mut empty, mut empty_buf) = (s.open_watch(&[]).await, Vec::new());
    assert_eq!(empty.status(), StatusCode::OK);
    let first =
        proto::WatchOutput::decode(&next_frame(&mut empty, &mut empty_buf).await.unwrap()[..])
            .unwrap();
    assert!(first.keys.is_empty(), "{first:?}");
    let w = key!["w", "other writer"];
    let (mut watch, mut buf) = (s.open_watch(&[enc(&w)]).await, Vec::new());
    let first =
        proto::WatchOutput::decode(&next_frame(&mut watch, &mut buf).await.unwrap()[..]).unwrap();
    assert!(first.keys[0].entry_if_changed.is_none());
    // Idle: an empty keep-alive frame on both, within a WATCH_KEEPALIVE and some slack.
    let slack = openkv_server::WATCH_KEEPALIVE + std::time::Duration::from_secs(5);
    for (resp, buf) in [(&mut empty, &mut empty_buf), (&mut watch, &mut buf)] {
        let frame = tokio::time::timeout(slack, next_frame(resp, buf)).await.unwrap().unwrap();
        assert!(frame.is_empty(), "a keep-alive is an empty frame: {frame:?}");
    }
    // Another connection to the same file: the server hears of its commit as an event with no
    // keys, re-reads, and sends the new state.
    let other = Kv::open(s._dir.path().join("db.sqlite3")).await.unwrap();
    let stamp = other.set(&w, Value::Bytes(b"from elsewhere".to_vec())).await.unwrap();
    let changed = tokio::time::timeout(slack, async {
        loop {
            let frame = next_frame(&mut watch, &mut buf).await.unwrap();
            if !frame.is_empty() {
                return proto::WatchOutput::decode(&frame[..]).unwrap();
            }
        }
    })
    .await
    .expect("the other connection's commit was not seen");
    assert_eq!(changed.keys[0].entry_if_changed.as_ref().unwrap().versionstamp, stamp.as_bytes());
    other.close().await.unwrap();
    s.stop().await;
    assert!(next_frame(&mut empty, &mut empty_buf).await.is_none());
    assert!(next_frame(&mut watch, &mut buf).await.is_none());
}

/// A refused request's body is treated as when each handler checked the token itself: the
/// endpoints that take a body read it under the body limit first (413 beyond it, 401 within),
/// backup and restore answer 401 without reading it.
#[tokio::test]
async fn a_refused_requests_body_is_read_as_before() {
    let s = start(false).await;
    let limit = openkv::Limits::default().max_total_mutation_size * 2 + (1 << 20);
    let at_once = ["/v2/openkv/backup", "/v2/openkv/restore", "/console/api/import"];
    for route in openkv_server::ROUTES {
        let expected = if at_once.contains(route) {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::PAYLOAD_TOO_LARGE
        };
        let (status, _, body) = s.post(route, &[], vec![0; limit + 1]).await;
        assert_eq!(status, expected, "{route}: {}", text(&body));
        let (status, _, body) = s.post(route, &[], vec![0; limit]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{route}: {}", text(&body));
    }
    s.still_alive().await;
    s.stop().await;
}

/// The replication endpoints (docs/protocol-extensions.md §6) on a database without a change
/// log: refusals are 4xx, the log is `410 noLog`, the head and the snapshot still answer, and
/// the eventual endpoint of a primary reads strongly.
#[tokio::test]
async fn replication_endpoints_refuse_bad_input_and_answer_without_a_log() {
    let s = start(false).await;
    s.kv.set(&key!["a"], &1i64).await.unwrap();
    for (body, why) in [
        (&b"{"[..], "invalid log request"),
        (br#"{"after": 0, "maxBytes": 1, "waitMs": 60001}"#, "waitMs is at most"),
        (br#"{"after": 0, "maxBytes": 8388609}"#, "maxBytes is at most"),
        (br#"{"after": 0, "maxBytes": 1, "surprise": 1}"#, "unknown field"),
    ] {
        let (status, _, answer) = s.data("openkv/replication/log", body.to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{}", text(&answer));
        assert!(text(&answer).contains(why), "{}", text(&answer));
    }
    let (status, ctype, answer) =
        s.data("openkv/replication/log", br#"{"after": 0, "maxBytes": 100}"#.to_vec()).await;
    assert_eq!(status, StatusCode::GONE);
    assert_eq!(ctype, "application/json");
    let gone: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(gone["reason"], "noLog");
    // The head needs no log.
    let (status, _, answer) =
        s.data("openkv/replication/log", br#"{"after": 0, "maxBytes": 0}"#.to_vec()).await;
    assert_eq!(status, StatusCode::OK);
    let batch = openkv_server::proto::replication::LogBatch::decode(&answer[..]).unwrap();
    assert_eq!(batch.head, 1);
    // A snapshot: header (no epoch: no log), the entry, the end marker with the count.
    let (status, _, answer) = s.data("openkv/replication/snapshot", b"{}".to_vec()).await;
    assert_eq!(status, StatusCode::OK);
    let mut buffer = answer;
    let mut frames = Vec::new();
    while let Some(f) = openkv_server::proto::replication::next_frame(&mut buffer).unwrap() {
        frames.push(f);
    }
    assert!(buffer.is_empty());
    let header = frames[0].header.clone().unwrap();
    assert_eq!((header.epoch.as_str(), header.version), ("", 1));
    assert_eq!(header.database_id, s.database_id);
    assert_eq!(frames[1].entries.len(), 1);
    assert_eq!(frames.last().unwrap().end.clone().unwrap().entries, 1);
    // A primary's eventual endpoint is strongly consistent, with no lag headers.
    let read = proto::SnapshotRead {
        ranges: vec![proto::ReadRange {
            start: vec![0],
            end: vec![0xff],
            limit: 10,
            reverse: false,
        }],
    };
    let (status, _, answer) = s.data("eventual/snapshot_read", read.encode_to_vec()).await;
    assert_eq!(status, StatusCode::OK);
    let out = proto::SnapshotReadOutput::decode(&answer[..]).unwrap();
    assert!(out.read_is_strongly_consistent);
    assert_eq!(out.ranges[0].values.len(), 1);
    let (status, _, answer) = s.data("openkv/replication/status", b"{}".to_vec()).await;
    assert_eq!(status, StatusCode::OK);
    let st: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!((st["replica"].as_bool(), st["version"].as_u64()), (Some(false), Some(1)));
    s.stop().await;
}

/// With a change log, a log request waiting for a record returns when a commit lands, with
/// that commit's record, long before its wait is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_log_request_returns_when_a_commit_lands() {
    let dir = tempfile::tempdir().unwrap();
    let kv = openkv::OpenOptions::new()
        .change_log(openkv::changelog::LogRetention::default())
        .open(dir.path().join("db.sqlite3"))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let served = kv.clone();
    let task = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        serve(served, listener, ServerConfig::new(TOKEN), shutdown).await.unwrap();
    });
    let id = kv.database_id().await.unwrap().to_string();
    let writer = kv.clone();
    let write = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        writer.set(&key!["late"], &1i64).await.unwrap();
    });
    let started = std::time::Instant::now();
    let answer = reqwest::Client::new()
        .post(format!("{url}/v2/openkv/replication/log"))
        .bearer_auth(TOKEN)
        .header("x-denokv-database-id", &id)
        .header("x-denokv-version", "3")
        .body(r#"{"after": 0, "maxBytes": 1000000, "waitMs": 30000}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let batch =
        openkv_server::proto::replication::LogBatch::decode(answer.bytes().await.unwrap()).unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "the wait was not woken");
    assert_eq!(batch.records.len(), 1);
    assert_eq!((batch.records[0].prev_version, batch.records[0].version), (0, 1));
    assert_eq!(batch.records[0].changes[0].key, enc(&key!["late"]));
    write.await.unwrap();
    let _ = stop.send(());
    task.await.unwrap();
    kv.close().await.unwrap();
}
