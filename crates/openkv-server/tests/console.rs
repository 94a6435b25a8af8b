//! The console's JSON API against a real server on a socket: what the page relies on, checked
//! without a browser (the browser tests are `openkv-cli/tests/console.rs`). Conflicts, the
//! tree's skipping, paging, cross-site refusals, imports, exports, the queue and the watch
//! stream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use openkv::{key, EnqueueOptions, Kv, Value};
use openkv_server::{serve, ServerConfig};
use reqwest::StatusCode;
use serde_json::{json, Value as Json};
use tokio::sync::oneshot;

const TOKEN: &str = "test-token-0123456789";

struct Server {
    url: String,
    kv: Kv,
    client: reqwest::Client,
    _stop: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start(config: ServerConfig) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let kv = Kv::open(dir.path().join("db.sqlite3")).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let served = kv.clone();
    tokio::spawn(async move {
        serve(served, listener, config, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Server { url, kv, client: reqwest::Client::new(), _stop: stop, _dir: dir }
}

impl Server {
    /// POSTs JSON to a console endpoint with the token: the status and the body as JSON (or
    /// as a JSON string when it is text).
    async fn api(&self, path: &str, body: Json) -> (StatusCode, Json) {
        let resp = self
            .client
            .post(format!("{}/console/api/{path}", self.url))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Json::String(text)))
    }
}

#[tokio::test]
async fn the_pages_carry_a_strict_policy_and_no_console_means_404() {
    let s = start(ServerConfig::new(TOKEN)).await;
    for path in ["/console", "/console/assets/console.js", "/console/assets/console.css"] {
        let resp = s.client.get(format!("{}{path}", s.url)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let csp = resp.headers()["content-security-policy"].to_str().unwrap().to_owned();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(resp.headers()["cache-control"], "no-store", "{path}");
        assert_eq!(resp.headers()["x-content-type-options"], "nosniff", "{path}");
    }
    let js = s.client.get(format!("{}/console/assets/console.js", s.url)).send().await.unwrap();
    assert!(js.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    // The page's script never parses a string as markup.
    let js = js.text().await.unwrap();
    for sink in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("] {
        assert!(!js.contains(sink), "console.js uses {sink}");
    }
    let missing = s.client.get(format!("{}/console/assets/x.js", s.url)).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let (status, body) = s.api("list", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let off = start(ServerConfig::new(TOKEN).console(false)).await;
    let page = off.client.get(format!("{}/console", off.url)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    let (status, _) = off.api("list", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = off.api("session", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_session_names_the_token_and_refuses_a_wrong_one() {
    let s = start(ServerConfig::new(TOKEN)).await;
    let (status, body) = s.api("session", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["token"]["scope"], "admin");
    assert_eq!(body["databases"], json!([{"name": null, "base": "", "scope": "admin"}]));
    let resp = s
        .client
        .post(format!("{}/console/api/session", s.url))
        .bearer_auth("wrong-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_write_from_another_site_is_refused_before_the_token_is_looked_at() {
    let s = start(ServerConfig::new(TOKEN)).await;
    let host = s.url.trim_start_matches("http://").to_owned();
    let cases: Vec<(Vec<(&str, String)>, StatusCode)> = vec![
        (vec![("origin", "http://evil.example".into())], StatusCode::FORBIDDEN),
        (vec![("sec-fetch-site", "cross-site".into())], StatusCode::FORBIDDEN),
        (vec![("sec-fetch-site", "same-site".into())], StatusCode::FORBIDDEN),
        (vec![("origin", format!("http://{host}"))], StatusCode::OK),
        // Behind a proxy that rewrites Host: the browser's own word decides.
        (
            vec![("origin", "https://kv.example".into()), ("sec-fetch-site", "same-origin".into())],
            StatusCode::OK,
        ),
        (
            vec![
                ("origin", "https://kv.example".into()),
                ("x-forwarded-host", "kv.example".into()),
            ],
            StatusCode::OK,
        ),
        (
            vec![
                ("origin", "https://evil.example".into()),
                ("x-forwarded-host", "kv.example".into()),
            ],
            StatusCode::FORBIDDEN,
        ),
    ];
    for (headers, expected) in cases {
        let mut request = s.client.post(format!("{}/console/api/set", s.url)).bearer_auth(TOKEN);
        for (name, value) in &headers {
            request = request.header(*name, value);
        }
        let resp =
            request.body(json!({"key": "[\"k\"]", "value": 1}).to_string()).send().await.unwrap();
        assert_eq!(resp.status(), expected, "{headers:?}");
    }
    // Only the three same-origin writes landed.
    let stored = s.kv.get(&key!["k"]).await.unwrap().unwrap();
    assert_eq!(stored.versionstamp.version(), 3);
}

#[tokio::test]
async fn a_save_over_a_changed_entry_is_a_conflict_that_stores_nothing() {
    let s = start(ServerConfig::new(TOKEN)).await;
    let (status, body) =
        s.api("set", json!({"key": "[\"doc\"]", "value": {"v": 1}, "expect": null})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let opened = body["versionstamp"].as_str().unwrap().to_owned();
    // Another client writes in between.
    s.kv.set(&key!["doc"], &json!({"v": "theirs"})).await.unwrap();
    let (status, body) =
        s.api("set", json!({"key": "[\"doc\"]", "value": {"v": "mine"}, "expect": opened})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["current"]["value"], json!({"v": "theirs"}));
    let theirs = body["current"]["versionstamp"].as_str().unwrap().to_owned();
    // "Must not exist" on an existing key is a conflict too; so is a stale delete.
    let (status, _) = s.api("set", json!({"key": "[\"doc\"]", "value": 2, "expect": null})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = s.api("delete", json!({"key": "[\"doc\"]", "expect": opened})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (_, body) = s.api("get", json!({"key": "[\"doc\"]"})).await;
    assert_eq!(body["entry"]["value"], json!({"v": "theirs"}), "nothing was overwritten");
    // Saving over theirs, knowingly.
    let (status, _) =
        s.api("set", json!({"key": "[\"doc\"]", "value": {"v": "mine"}, "expect": theirs})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = s.api("get", json!({"key": "[\"doc\"]"})).await;
    assert_eq!(body["entry"]["value"], json!({"v": "mine"}));
    // An encoding the typed JSON does not store as is refused, with how to write it.
    let (status, body) =
        s.api("set", json!({"key": "[\"n\"]", "value": 5, "encoding": "u64"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.as_str().unwrap().contains("$kvu64"), "{body}");
    let (status, _) =
        s.api("set", json!({"key": "[\"n\"]", "value": {"$kvu64": "5"}, "encoding": "u64"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s.kv.get(&key!["n"]).await.unwrap().unwrap().value, Value::U64(5));
    // An expiry, then one cleared by saving without it.
    let (status, _) =
        s.api("set", json!({"key": "[\"t\"]", "value": 1, "expireInMs": 60_000})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = s.api("get", json!({"key": "[\"t\"]"})).await;
    assert!(body["entry"]["expireAt"].as_i64().unwrap() > 0);
    s.api("set", json!({"key": "[\"t\"]", "value": 1})).await;
    let (_, body) = s.api("get", json!({"key": "[\"t\"]"})).await;
    assert_eq!(body["entry"]["expireAt"], Json::Null);
}

#[tokio::test]
async fn a_read_only_server_refuses_the_consoles_writes() {
    let s = start(ServerConfig::new(TOKEN).read_only(true)).await;
    let (_, session) = s.api("session", json!({})).await;
    assert_eq!(session["readOnly"], true);
    for (path, body) in [
        ("set", json!({"key": "[\"k\"]", "value": 1})),
        ("delete", json!({"key": "[\"k\"]"})),
        ("delete-prefix", json!({"prefix": "[]"})),
        ("queue/delete", json!({"id": "x"})),
    ] {
        let (status, _) = s.api(path, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
    }
}

#[tokio::test]
async fn the_tree_skips_through_keys_instead_of_reading_them_all() {
    let s = start(ServerConfig::new(TOKEN)).await;
    // 1,500 keys under "a", one key "b" that is also a prefix, 150 parts under "c".
    for chunk in (0..1500).collect::<Vec<i64>>().chunks(500) {
        let op = chunk.iter().fold(s.kv.atomic(), |op, i| op.set(&key!["a", *i], Value::U64(1)));
        op.commit().await.unwrap();
    }
    s.kv.set(&key!["b"], Value::U64(1)).await.unwrap();
    s.kv.set(&key!["b", "x"], Value::U64(1)).await.unwrap();
    for i in 0..150 {
        s.kv.set(&key!["c", format!("{i:03}")], Value::U64(1)).await.unwrap();
    }
    let before = s.kv.stats().unwrap().read_entries;
    let (status, body) = s.api("children", json!({"prefix": "[]"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let read = s.kv.stats().unwrap().read_entries - before;
    let children = body["children"].as_array().unwrap();
    let parts: Vec<&str> = children.iter().map(|c| c["part"].as_str().unwrap()).collect();
    assert_eq!(parts, ["\"a\"", "\"b\"", "\"c\""]);
    assert_eq!(
        (children[0]["count"].as_u64(), children[0]["more"].as_bool()),
        (Some(100), Some(true))
    );
    assert_eq!(children[1]["hasValue"], true);
    assert_eq!(children[1]["count"], 2);
    assert_eq!(children[2]["hasValue"], false);
    // Three skips of one entry and three capped counts: far from the 1,652 entries stored.
    assert!(read <= 3 + 3 * 101, "the tree read {read} entries");
    // A level with more children than one answer holds: the rest after the last one.
    let (status, first) = s.api("children", json!({"prefix": "[\"c\"]"})).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["children"].as_array().unwrap().len(), 100);
    assert_eq!(first["more"], true);
    let last = first["children"][99]["key"].as_str().unwrap();
    assert_eq!(last, "[\"c\", \"099\"]");
    let (_, rest) = s.api("children", json!({"prefix": "[\"c\"]", "after": last})).await;
    let rest = rest["children"].as_array().unwrap();
    assert_eq!(rest.len(), 50);
    assert_eq!(rest[0]["key"], "[\"c\", \"100\"]");
}

#[tokio::test]
async fn list_pages_cover_a_prefix_once_each_way_and_a_prefix_can_be_counted_and_deleted() {
    let s = start(ServerConfig::new(TOKEN)).await;
    for chunk in (0..1234i64).collect::<Vec<_>>().chunks(500) {
        let op = chunk.iter().fold(s.kv.atomic(), |op, i| op.set(&key!["many", *i], Value::U64(1)));
        op.commit().await.unwrap();
    }
    s.kv.set(&key!["other"], Value::U64(1)).await.unwrap();
    for reverse in [false, true] {
        let mut seen = Vec::new();
        let mut cursor = Json::Null;
        loop {
            let mut request = json!({"prefix": "[\"many\"]", "limit": 500, "reverse": reverse});
            if !cursor.is_null() {
                request["cursor"] = cursor.clone();
            }
            let (status, body) = s.api("list", request).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            for e in body["entries"].as_array().unwrap() {
                seen.push(e["key"].as_str().unwrap().to_owned());
            }
            cursor = body["cursor"].clone();
            if cursor.is_null() {
                break;
            }
        }
        let mut expected: Vec<String> = (0..1234).map(|i| format!("[\"many\", {i}n]")).collect();
        if reverse {
            expected.reverse();
        }
        assert_eq!(seen, expected, "reverse: {reverse}");
    }
    let (_, body) =
        s.api("list", json!({"start": "[\"many\", 10n]", "end": "[\"many\", 13n]"})).await;
    let keys: Vec<&str> =
        body["entries"].as_array().unwrap().iter().map(|e| e["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["[\"many\", 10n]", "[\"many\", 11n]", "[\"many\", 12n]"]);
    let (status, body) = s.api("list", json!({"prefix": "[\"many\"]", "start": "[\"a\"]"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.as_str().unwrap().contains("not under the prefix"), "{body}");
    let (_, body) =
        s.api("list", json!({"prefix": "[\"many\"]", "start": "[\"many\", 1232n]"})).await;
    assert_eq!(body["entries"].as_array().unwrap().len(), 2);
    let (status, body) = s.api("list", json!({"prefix": "[\"many\""})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = s.api("list", json!({"limit": 5000})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (_, body) = s.api("count", json!({"prefix": "[\"many\"]"})).await;
    assert_eq!(body["count"], 1234);
    let (_, body) = s.api("delete-prefix", json!({"prefix": "[\"many\"]"})).await;
    assert_eq!(body["deleted"], 1234);
    let (_, body) = s.api("count", json!({"prefix": "[]"})).await;
    assert_eq!(body["count"], 1, "only [\"other\"] is left");
}

#[tokio::test]
async fn bytes_and_undecodable_values_come_as_bytes_and_markup_as_data() {
    let s = start(ServerConfig::new(TOKEN)).await;
    s.kv.set(&key!["raw"], Value::Bytes(vec![0, 1, 255])).await.unwrap();
    // V8 bytes of a format no build knows (tag 0xff version 99).
    s.kv.set(&key!["odd"], Value::V8(vec![0xff, 99, 1, 2])).await.unwrap();
    s.kv.set(&key!["<b>"], &json!("<script>alert(1)</script>")).await.unwrap();
    let (_, body) = s.api("get", json!({"key": "[\"raw\"]"})).await;
    let entry = &body["entry"];
    assert_eq!(
        (entry["encoding"].as_str(), entry["valueBytes"].as_str()),
        (Some("bytes"), Some("AAH/"))
    );
    let (_, body) = s.api("get", json!({"key": "[\"odd\"]"})).await;
    assert_eq!(body["entry"]["value"], Json::Null);
    assert_eq!(body["entry"]["valueBytes"], "/2MBAg==");
    let (_, body) = s.api("get", json!({"key": "[\"<b>\"]"})).await;
    assert_eq!(body["entry"]["value"], "<script>alert(1)</script>");
}

#[tokio::test]
async fn import_reports_like_the_cli_and_export_gives_the_cli_lines() {
    let s = start(ServerConfig::new(TOKEN)).await;
    let long = format!("{{\"key\": \"[\\\"x\\\"]\", \"value\": \"{}\"}}", "y".repeat(5 << 20));
    let body = format!(
        "{}\nnot json\n\n{}\n{}\n{{\"key\": \"[\\\"b\\\"]\", \"value\": {{\"$bigint\": \"5\"}}}}",
        r#"{"key": "[\"a\", 1]", "value": {"$date": "2024-01-02T03:04:05.678Z"}}"#,
        r#"{"value": 1}"#,
        long,
    );
    let resp = s
        .client
        .post(format!("{}/console/api/import", s.url))
        .bearer_auth(TOKEN)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let report: Json = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(
        report["text"],
        "import: read 6 lines, wrote 2 entries, skipped 0 expired, 0 before --resume-from and \
         1 blank lines; 3 errors"
    );
    let lines: Vec<u64> = report["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [2, 4, 5]);
    assert!(report["failures"][2]["message"].as_str().unwrap().contains("longer than"));
    assert_eq!(report["stopped"], Json::Null);
    assert!(s.kv.get(&key!["b"]).await.unwrap().is_some());

    let resp = s
        .client
        .post(format!("{}/console/api/export", s.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-openkv-export"], "snapshot");
    let text = resp.text().await.unwrap();
    let mut expected = String::new();
    let stream = s.kv.list(openkv::Selector::prefix(key![]), openkv::ListOptions::new()).unwrap();
    let entries: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(stream).await.unwrap();
    for e in entries {
        let raw = openkv::RawEntry {
            key: e.key.encode().unwrap(),
            value: e.value,
            versionstamp: e.versionstamp,
            expire_at_ms: None,
        };
        expected.push_str(&openkv::export::entry_line(&raw).to_string());
        expected.push('\n');
    }
    assert_eq!(text, expected);
}

#[tokio::test]
async fn the_queue_view_lists_and_changes_messages() {
    let s = start(ServerConfig::new(TOKEN)).await;
    s.kv.enqueue(&json!({"job": 1}), &EnqueueOptions::new().keys_if_undelivered([key!["dead", 1]]))
        .await
        .unwrap();
    s.kv.enqueue(&json!({"job": 2}), &EnqueueOptions::new().delay(Duration::from_secs(3600)))
        .await
        .unwrap();
    let (_, q) = s.api("queue", json!({})).await;
    assert_eq!(
        (q["ready"].as_u64(), q["delayed"].as_u64(), q["running"].as_u64()),
        (Some(1), Some(1), Some(0))
    );
    let messages = q["messages"].as_array().unwrap();
    assert_eq!(messages[0]["payload"], json!({"job": 1}));
    assert_eq!(messages[0]["keysIfUndelivered"], json!(["[\"dead\", 1n]"]));
    let delayed = messages.iter().find(|m| m["state"] == "delayed").unwrap();
    let id = delayed["id"].as_str().unwrap().to_owned();
    let (status, _) = s.api("queue/due-now", json!({"id": id})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, q) = s.api("queue", json!({})).await;
    assert_eq!((q["ready"].as_u64(), q["delayed"].as_u64()), (Some(2), Some(0)));
    let (status, _) = s.api("queue/delete", json!({"id": id})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s.api("queue/delete", json!({"id": id})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, q) = s.api("queue", json!({})).await;
    assert_eq!(q["messages"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_watch_stream_follows_keys_and_a_prefix() {
    let s = start(ServerConfig::new(TOKEN)).await;
    s.kv.set(&key!["w", 1], Value::U64(1)).await.unwrap();
    let mut resp = s
        .client
        .post(format!("{}/console/api/watch", s.url))
        .bearer_auth(TOKEN)
        .body(json!({"keys": ["[\"w\", 1n]"], "prefix": "[\"p\"]"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut lines = Lines { buffer: String::new() };
    let first = lines.next(&mut resp).await;
    assert_eq!(first["entries"][0]["value"], json!({"$kvu64": "1"}));
    // Not under the prefix, not a watched key: no line for it.
    s.kv.set(&key!["q"], Value::U64(1)).await.unwrap();
    s.kv.set(&key!["p", "x"], Value::U64(1)).await.unwrap();
    assert_eq!(lines.next(&mut resp).await, json!({"prefix": "changed"}));
    s.kv.set(&key!["w", 1], Value::U64(2)).await.unwrap();
    assert_eq!(lines.next(&mut resp).await["entries"][0]["value"], json!({"$kvu64": "2"}));
}

struct Lines {
    buffer: String,
}

impl Lines {
    /// The next non-empty NDJSON line (keep-alives `{}` skipped), within 5 s.
    async fn next(&mut self, resp: &mut reqwest::Response) -> Json {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Some(nl) = self.buffer.find('\n') {
                    let line: String = self.buffer.drain(..=nl).collect();
                    let value: Json = serde_json::from_str(line.trim()).unwrap();
                    if value != json!({}) {
                        return value;
                    }
                    continue;
                }
                let chunk = resp.chunk().await.unwrap().expect("the stream ended");
                self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        })
        .await
        .expect("no line within 5 s")
    }
}
