//! Writes the seed corpus of every fuzz target into `fuzz/corpus/<target>/`, from real
//! encodings: values, keys, requests, answers, export lines and backups as openkv makes them,
//! so that the fuzzer starts from inputs that get deep and mutates from there.
//!
//! `cargo run -p openkv-fuzz-checks --example seeds` (then commit what changed). Files are
//! named after what they hold and overwritten; none is deleted. The backups hold a random
//! database id, so they differ at each run: regenerate only when their content must change.

// A generator for a developer: a panic is a clear enough report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use openkv::changelog::LogRecord;
use openkv::engine::plan::Row;
use openkv::export::entry_line;
use openkv::key::syntax::format_key;
use openkv::{
    encode_v8, from_json, key, AtomicWrite, Check, CommitOutcome, Enqueue, Key, Kv, Mutation,
    MutationKind, RawEntry, ReadRange, Value, Versionstamp,
};
use openkv_proto::convert::{
    entry_to_wire, outcome_to_wire, read_output_to_wire, read_to_wire, watch_to_wire, write_to_wire,
};
use openkv_proto::replication::{
    change_to_wire, framed, header_frame, record_to_wire, LogBatch, SnapshotEnd, SnapshotFrame,
};
use openkv_proto::{AtomicWriteOutput, AtomicWriteStatus, SnapshotReadStatus, WatchKeyOutput};
use prost::Message;
use serde_json::json;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = corpus().join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// A selector byte, then a body.
fn selected(selector: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![selector];
    out.extend_from_slice(body);
    out
}

fn k(key: Key) -> Vec<u8> {
    key.encode().unwrap()
}

/// Typed JSON renderings of values of every storable kind, by name.
fn js_values() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        ("null", json!(null)),
        ("true", json!(true)),
        ("smi", json!(-7)),
        ("int32_max", json!(2147483647)),
        ("double", json!(1.5)),
        ("nan", json!({"$number": "NaN"})),
        ("minus_zero", json!({"$number": "-0"})),
        ("one_byte_string", json!("ünïcödé")),
        ("two_byte_string", json!("emoji 🎉 and a lone \u{e9}")),
        ("bigint", json!({"$bigint": "-123456789012345678901234567890"})),
        ("undefined", json!({"$undefined": null})),
        ("object", json!({"name": "Ada", "tags": ["a", "b"], "nested": {"n": 1}})),
        ("dollar_object", json!({"$object": {"$a": 1, "b": 2}})),
        (
            "array_holes",
            json!({"$array": {"items": [1, {"$hole": null}, 3], "properties": {"x": 1}}}),
        ),
        ("sparse", json!({"$sparse": {"length": 1000, "elements": [[7, "x"]], "properties": {}}})),
        ("map", json!({"$map": [["k", 1], [2, "v"]]})),
        ("set", json!({"$set": [1, "a", null]})),
        ("date", json!({"$date": "2024-01-02T03:04:05.678Z"})),
        ("regexp", json!({"$regexp": {"source": "a+b", "flags": "gi"}})),
        ("arraybuffer", json!({"$arraybuffer": "AAECAw=="})),
        ("bytes", json!({"$bytes": "AAECAw=="})),
        (
            "float32array",
            json!({"$typedarray": {"kind": "Float32Array", "buffer": {"$arraybuffer": "AACAPwAAAEA="}, "byteOffset": 0, "byteLength": 8}}),
        ),
        (
            "dataview",
            json!({"$typedarray": {"kind": "DataView", "buffer": {"$arraybuffer": "AAECAw=="}, "byteOffset": 1, "byteLength": 2}}),
        ),
        (
            "error",
            json!({"$error": {"kind": "TypeError", "message": "m", "stack": "s", "cause": 1}}),
        ),
        ("shared", json!({"a": {"x": 1}, "b": {"$ref": 1}})),
        ("boxed", json!({"list": [{"$date": 0}, {"$bigint": "0"}, {"$number": "Infinity"}]})),
        (
            "blob",
            json!({"$blob": {"mimeType": "text/plain", "parts": [{"uuid": "5d2b0e22-0d8c-4a4b-9f6b-5f0a1a7b1c2d", "size": 3}], "size": 3}}),
        ),
        (
            "file",
            json!({"$file": {"mimeType": "", "parts": [], "size": 0, "name": "a.txt", "lastModified": 1700000000123u64}}),
        ),
        (
            "domexception",
            json!({"$domexception": {"message": "m", "name": "NotFoundError", "stack": "s"}}),
        ),
    ]
}

fn v8_seeds() {
    for (name, json) in js_values() {
        let value = from_json(&json).unwrap_or_else(|e| panic!("{name}: {e}"));
        write("v8_decode", name, &encode_v8(&value).unwrap());
    }
    // Older and newer format versions Deno wrote (13: Deno 1.x; 16: Deno 2.9): the number 1.
    write("v8_decode", "version13", &[0xff, 0x0d, 0x49, 0x02]);
    write("v8_decode", "version16", &[0xff, 0x10, 0x49, 0x02]);
}

/// Keys of every part type, and edge values.
fn keys() -> Vec<(&'static str, Key)> {
    vec![
        ("empty", key![]),
        ("string", key!["users"]),
        ("nul_in_string", key!["a\0b", ""]),
        ("bigints", key!["n", 0, -1, 255, 256, i64::MIN, u64::MAX]),
        ("huge_bigint", key![i128::MIN, u128::MAX]),
        ("floats", key![1.5, -0.0, 0.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1e300]),
        ("bools", key![true, false]),
        ("bytes", key![vec![0u8, 0xff, 1], Vec::<u8>::new()]),
        ("mixed", key!["users", 12, 3.5, true, vec![0u8, 1]]),
    ]
}

fn key_seeds() {
    for (name, key) in keys() {
        write("key_decode", name, &k(key.clone()));
        write("key_syntax", name, format_key(&key).as_bytes());
    }
    for (name, text) in [
        ("spaces_and_escapes", r#"[ "esc\"ape\\", "\u00e9\n" , b"AAE=" ]"#),
        ("numbers", "[1e3, -0, 1.25e-7, NaN, -NaN, Infinity, -Infinity, 16n]"),
        ("bigint_forms", "[12n, -340282366920938463463374607431768211456n]"),
        ("unterminated", r#"["a", 1"#),
    ] {
        write("key_syntax", name, text.as_bytes());
    }
}

fn import_seeds() {
    let entry = |key: Key, value: Value, expire_at_ms: Option<i64>| RawEntry {
        key: k(key),
        value,
        versionstamp: Versionstamp::from_version(42),
        expire_at_ms,
    };
    let v8 = |name: &str| {
        let json = js_values().into_iter().find(|(n, _)| *n == name).unwrap().1;
        Value::V8(encode_v8(&from_json(&json).unwrap()).unwrap())
    };
    let entries = [
        ("object", entry(key!["users", 12], v8("object"), None)),
        ("expiring_map", entry(key!["m"], v8("map"), Some(1_700_000_000_000))),
        ("bytes", entry(key![vec![1u8, 2]], Value::Bytes(vec![0, 1, 2]), None)),
        ("u64", entry(key!["count"], Value::U64(u64::MAX), None)),
        ("undecodable_v8", entry(key!["raw"], Value::V8(vec![0xff, 0x0f, 0x99]), None)),
        ("float_key", entry(key![f64::NAN, -0.0], v8("bigint"), None)),
    ];
    for (name, entry) in entries {
        write("import_line", name, entry_line(&entry).to_string().as_bytes());
    }
    // The other shapes an import reads: a key string alone, explicit nulls and an encoding.
    write("import_line", "key_string_only", br#"{"key": "[\"a\", 1n]", "value": {"$kvu64": "7"}}"#);
    write(
        "import_line",
        "nulls_and_encoding",
        br#"{"key": null, "keyBytes": "AmEA", "value": "x", "valueBytes": null, "encoding": "v8", "versionstamp": null, "expireAt": null}"#,
    );
}

/// V8 bytes of `body` after the version-15 header.
fn v8(body: &[u8]) -> Value {
    let mut bytes = vec![0xff, 0x0f];
    bytes.extend_from_slice(body);
    Value::V8(bytes)
}

fn request_seeds() {
    let (a, b, d, x) = (k(key!["a"]), k(key!["b"]), k(key!["d"]), k(key!["x"]));
    let read = |ranges: &[ReadRange]| selected(0, &read_to_wire(ranges).encode_to_vec());
    let range = |start: &[u8], end: &[u8], limit: u32, reverse: bool| ReadRange {
        start: start.to_vec(),
        end: end.to_vec(),
        limit,
        reverse,
    };
    write(
        "kv_connect_request",
        "read_point",
        &read(&[range(&a, &[a.as_slice(), &[0]].concat(), 1, false)]),
    );
    write(
        "kv_connect_request",
        "read_ranges",
        &read(&[range(&a, &x, 3, false), range(&[], &[0xff], 10, true), range(&x, &a, 5, false)]),
    );

    let set = |key: &[u8], value: Value| Mutation {
        key: key.to_vec(),
        kind: MutationKind::Set(value),
        expire_at_ms: None,
    };
    let kind =
        |key: &[u8], kind: MutationKind| Mutation { key: key.to_vec(), kind, expire_at_ms: None };
    let writes = [
        (
            "write_set_check",
            AtomicWrite {
                checks: vec![
                    Check { key: a.clone(), versionstamp: Some(Versionstamp::from_version(1)) },
                    Check { key: k(key!["new"]), versionstamp: None },
                ],
                mutations: vec![
                    set(&k(key!["new"]), v8(&[0x22, 0x01, b's'])),
                    Mutation {
                        expire_at_ms: Some(1_700_000_005_000),
                        ..set(&k(key!["tmp"]), Value::Bytes(vec![1]))
                    },
                ],
                enqueues: vec![],
            },
        ),
        (
            "write_sums",
            AtomicWrite {
                mutations: vec![
                    kind(&b, MutationKind::Sum(Value::U64(3))),
                    kind(&a, MutationKind::Sum(v8(&[0x4e, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f]))),
                    kind(
                        &d,
                        MutationKind::SumWithLimits {
                            operand: v8(&[0x5a, 0x10, 0x05, 0, 0, 0, 0, 0, 0, 0]),
                            min: Some(v8(&[0x5a, 0x00])),
                            max: Some(v8(&[0x5a, 0x10, 0x0c, 0, 0, 0, 0, 0, 0, 0])),
                            clamp: true,
                        },
                    ),
                    kind(&b, MutationKind::Min(Value::U64(1))),
                    kind(&b, MutationKind::Max(Value::U64(9))),
                ],
                ..AtomicWrite::default()
            },
        ),
        (
            // A KvU64 added to bytes: refused (a type mismatch, the client's mistake).
            "write_type_mismatch",
            AtomicWrite {
                mutations: vec![kind(&k(key!["c"]), MutationKind::Sum(Value::U64(1)))],
                ..AtomicWrite::default()
            },
        ),
        (
            "write_delete_versionstamped",
            AtomicWrite {
                mutations: vec![
                    kind(&x, MutationKind::Delete),
                    kind(&k(key!["log"]), MutationKind::SetSuffixVersionstampedKey(Value::U64(1))),
                ],
                ..AtomicWrite::default()
            },
        ),
        (
            "write_enqueues",
            AtomicWrite {
                enqueues: vec![
                    Enqueue {
                        payload: vec![0xff, 0x0f, 0x49, 0x02],
                        deadline_ms: 1_700_000_060_000,
                        keys_if_undelivered: vec![k(key!["dead"])],
                        backoff_schedule: Some(vec![100, 1000]),
                    },
                    Enqueue {
                        payload: vec![0xff, 0x0f, 0x5f],
                        deadline_ms: 0,
                        keys_if_undelivered: vec![],
                        backoff_schedule: Some(vec![]),
                    },
                ],
                ..AtomicWrite::default()
            },
        ),
    ];
    for (name, write_) in writes {
        write("kv_connect_request", name, &selected(1, &write_to_wire(&write_).encode_to_vec()));
    }
    let watch = watch_to_wire(&[a.clone(), x.clone(), k(key!["missing"])]);
    write("kv_connect_request", "watch", &selected(2, &watch.encode_to_vec()));
}

fn answer_seeds() {
    let (a, b) = (k(key!["a"]), k(key!["b"]));
    let metadata = |version: u32, url: &str, expires: &str| {
        json!({
            "version": version,
            "databaseId": "5d2b0e22-0d8c-4a4b-9f6b-5f0a1a7b1c2d",
            "endpoints": [{"url": url, "consistency": "strong"}, {"url": format!("{url}/eventual"), "consistency": "eventual"}],
            "token": "t",
            "expiresAt": expires,
        })
        .to_string()
    };
    write(
        "kv_connect_answer",
        "metadata_v3",
        &selected(0, metadata(3, "/v2", "2026-01-02T03:04:05Z").as_bytes()),
    );
    write(
        "kv_connect_answer",
        "metadata_v1",
        &selected(
            0,
            metadata(1, "http://db.example:4512/v2", "2026-01-02T03:04:05.123+00:00").as_bytes(),
        ),
    );
    let entry = |key: &[u8], value: Value| RawEntry {
        key: key.to_vec(),
        value,
        versionstamp: Versionstamp::from_version(7),
        expire_at_ms: None,
    };
    // Selector 1 | version 3 (2 << 2) | strong (0x10): the fixed question's two ranges.
    let read_answer = read_output_to_wire(vec![
        vec![entry(&a, Value::U64(1)), entry(&b, v8(&[0x49, 0x02]))],
        vec![entry(&b, Value::Bytes(vec![1]))],
    ]);
    write(
        "kv_connect_answer",
        "read_v3_strong",
        &selected(1 | 2 << 2 | 0x10, &read_answer.encode_to_vec()),
    );
    // Version 1 sends no status.
    let v1 = openkv_proto::SnapshotReadOutput {
        status: 0,
        read_is_strongly_consistent: false,
        ..read_answer
    };
    write("kv_connect_answer", "read_v1", &selected(1, &v1.encode_to_vec()));
    let outcomes = [
        (
            "write_committed",
            outcome_to_wire(CommitOutcome::Committed {
                versionstamp: Versionstamp::from_version(9),
            }),
        ),
        (
            "write_check_failed",
            outcome_to_wire(CommitOutcome::CheckFailed { failed_checks: vec![1] }),
        ),
        (
            "write_disabled",
            AtomicWriteOutput {
                status: AtomicWriteStatus::AwWriteDisabled as i32,
                ..Default::default()
            },
        ),
    ];
    for (name, outcome) in outcomes {
        write("kv_connect_answer", name, &selected(2, &outcome.encode_to_vec()));
    }
    // A watch stream: the whole state, a keep-alive, then a frame where "a" is unchanged.
    let frame = |keys: Vec<WatchKeyOutput>| {
        let message =
            openkv_proto::WatchOutput { status: SnapshotReadStatus::SrSuccess as i32, keys }
                .encode_to_vec();
        let mut out = (message.len() as u32).to_le_bytes().to_vec();
        out.extend(message);
        out
    };
    let changed = |e: Option<RawEntry>| WatchKeyOutput {
        changed: true,
        entry_if_changed: e.map(entry_to_wire),
    };
    let mut stream = frame(vec![changed(Some(entry(&a, Value::U64(1)))), changed(None)]);
    stream.extend([0, 0, 0, 0]);
    stream.extend(frame(vec![
        WatchKeyOutput { changed: false, entry_if_changed: None },
        changed(Some(entry(&b, Value::Bytes(vec![2])))),
    ]));
    write("kv_connect_answer", "watch_whole", &selected(3, &stream));
    write("kv_connect_answer", "watch_in_3_byte_chunks", &selected(3 | 3 << 4, &stream));
}

fn extension_seeds() {
    let seeds = [
        ("take", json!({"max": 10, "leaseMs": 30000})),
        ("wait", json!({"timeoutMs": 1000})),
        ("renew", json!({"ids": ["5d2b0e22-0d8c-4a4b-9f6b-5f0a1a7b1c2d"], "leaseMs": 30000})),
        (
            "finish",
            json!({"results": [{"id": "x", "delivered": false}, {"id": "y", "delivered": true}]}),
        ),
        ("log_request", json!({"epoch": "e1", "after": 3, "waitMs": 100, "maxBytes": 1000})),
        (
            "take_answer",
            json!({"messages": [{"id": "m1", "payload": BASE64.encode([0xff, 0x0f, 0x49, 0x02]), "dueMs": 1_700_000_000_000u64, "attempt": 1}]}),
        ),
        ("wait_answer", json!({"due": true})),
        ("gone_pruned", json!({"reason": "pruned", "message": "pruned up to 7", "version": 7})),
        ("gone_epoch", json!({"reason": "epoch", "message": "new epoch", "epoch": "e2"})),
        (
            "status_answer",
            json!({"replica": true, "version": 5, "primaryHead": 7, "lagVersions": 2, "lagMs": 10, "bootstraps": 1, "recordsApplied": 4, "readsLocal": 1, "readsForwarded": 0, "watchesLocal": 0, "lastError": null}),
        ),
    ];
    for (name, json) in seeds {
        write("extension_json", name, json.to_string().as_bytes());
    }
}

fn replication_seeds() {
    let row = |n: u8, encoding: i64, expire_at_ms: Option<i64>| Row {
        encoding,
        bytes: vec![n; 3],
        versionstamp: Versionstamp::from_version(u64::from(n)),
        expire_at_ms,
    };
    let records = [
        LogRecord {
            prev_version: 3,
            version: 4,
            committed_at_ms: 1_700_000_000_000,
            changes: vec![(k(key!["a"]), Some(row(4, 1, None))), (k(key!["b"]), None)],
        },
        LogRecord {
            prev_version: 4,
            version: 6,
            committed_at_ms: 1_700_000_000_100,
            changes: vec![(k(key!["c"]), Some(row(6, 2, Some(1_700_000_100_000))))],
        },
    ];
    let batch = LogBatch {
        epoch: "e1".into(),
        head: 6,
        records: records.iter().map(record_to_wire).collect(),
    };
    write("replication_stream", "log_batch", &selected(0, &batch.encode_to_vec()));
    let header = openkv::changelog::SnapshotHeader {
        epoch: "e1".into(),
        version: 6,
        taken_at_ms: 1_700_000_000_200,
        batch_index: false,
    };
    let mut stream = framed(&header_frame(&header, "5d2b0e22-0d8c-4a4b-9f6b-5f0a1a7b1c2d"));
    stream.extend(framed(&SnapshotFrame {
        entries: vec![
            change_to_wire(&k(key!["a"]), Some(&row(4, 1, None))),
            change_to_wire(&k(key!["c"]), Some(&row(6, 3, Some(5)))),
        ],
        ..Default::default()
    }));
    stream.extend(framed(&SnapshotFrame {
        end: Some(SnapshotEnd { entries: 2 }),
        ..Default::default()
    }));
    write("replication_stream", "snapshot", &selected(1, &stream));
}

/// A database of every value encoding and queued messages, backed up, and made small: 512-byte
/// pages, rolled back to a plain journal (a fuzzer mutates a 6 KiB file far better than a
/// 40 KiB one). Then the same with a few rows of shapes openkv never writes.
async fn backup_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let kv = Kv::open(dir.path().join("db.sqlite3")).await.unwrap();
    kv.set(&key!["a"], Value::U64(1)).await.unwrap();
    kv.set(&key!["b"], Value::Bytes(vec![1, 2])).await.unwrap();
    kv.set(&key!["c"], v8(&[0x22, 0x01, b's'])).await.unwrap();
    kv.set_with_expiry(&key!["d"], Value::U64(2), Duration::from_secs(3600)).await.unwrap();
    let options = openkv::EnqueueOptions::new()
        .keys_if_undelivered([key!["dead"]])
        .backoff_schedule([Duration::from_millis(10)]);
    kv.atomic().enqueue(Value::V8(vec![0xff, 0x0f, 0x49, 0x02]), &options).commit().await.unwrap();
    let backup = dir.path().join("backup.sqlite3");
    kv.backup(&backup).await.unwrap();
    kv.close().await.unwrap();
    let shrink = |path: &Path| {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch("pragma journal_mode = delete; pragma page_size = 512; vacuum;")
            .unwrap();
    };
    shrink(&backup);
    write("backup_file", "backup", &std::fs::read(&backup).unwrap());

    let odd = dir.path().join("odd.sqlite3");
    std::fs::copy(&backup, &odd).unwrap();
    {
        let conn = rusqlite::Connection::open(&odd).unwrap();
        conn.execute_batch(
            "insert into kv (k, v, v_encoding, version, seq, expiration_ms) values
               (x'0265', x'00', 99, 1, 0, -1),
               (x'0266', 'text, not a blob', 2, 1, 0, -1),
               (x'0267', x'0102', 2, -5, 0, -1);
             insert into queue (ts, id, data, backoff_schedule, keys_if_undelivered) values
               (0, 'bad-json', x'ff0f4902', 'not json', x'00'),
               (1, 'bad-keys', x'ff0f4902', '[1000]', '[[\"not bytes\"]]');",
        )
        .unwrap();
    }
    shrink(&odd);
    write("backup_file", "backup_odd_rows", &std::fs::read(&odd).unwrap());
}

fn main() {
    v8_seeds();
    key_seeds();
    import_seeds();
    request_seeds();
    answer_seeds();
    extension_seeds();
    replication_seeds();
    tokio::runtime::Runtime::new().unwrap().block_on(backup_seeds());
    println!("seeds written under {}", corpus().display());
}
