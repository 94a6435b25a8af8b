//! A malformed queue row in a real SQLite file (written by hand, by an old or buggy writer, or
//! by a bit flip that SQLite's own checks do not see) is reported as `Error::Corrupt` and
//! concerns that row only: the store is not poisoned, and writes and reads go on. (Stored
//! values that do not decode: `limits.rs`, `corrupt_rows_are_errors_not_panics`.)

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use openkv::{key, Error, ErrorClass, Kv, Value};

/// A store with one queue message whose `column` holds `json`, which is not the JSON Deno
/// writes: inserted with raw SQL into Deno's `queue` table, beside a normal entry.
async fn store_with_bad_queue_row(column: &str, json: &str) -> (tempfile::TempDir, Kv) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite3");
    let kv = Kv::open(&path).await.unwrap();
    kv.set(&key!["before"], Value::Bytes(b"kept".to_vec())).await.unwrap();
    kv.close().await.unwrap();
    drop(kv);

    let (schedule, keys) = match column {
        "backoff_schedule" => (json, "[]"),
        "keys_if_undelivered" => ("[100]", json),
        other => panic!("no such column {other}"),
    };
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "insert into queue (ts, id, data, backoff_schedule, keys_if_undelivered) \
         values (0, 'bad-row', x'ff0f', ?1, ?2)",
        [schedule, keys],
    )
    .unwrap();
    drop(conn);

    (dir, Kv::open(&path).await.unwrap())
}

/// The store still takes writes and serves reads.
async fn still_works(kv: &Kv) {
    let written = kv.set(&key!["after"], Value::Bytes(b"new".to_vec())).await;
    assert!(written.is_ok(), "a write after the corrupt row failed: {written:?}");
    let before = kv.get(&key!["before"]).await.unwrap();
    assert_eq!(before.map(|e| e.value), Some(Value::Bytes(b"kept".to_vec())));
    let after = kv.get(&key!["after"]).await.unwrap();
    assert_eq!(after.map(|e| e.value), Some(Value::Bytes(b"new".to_vec())));
}

fn assert_corrupt(err: &Error) {
    assert!(matches!(err, Error::Corrupt(_)), "expected a corrupt-row error, got {err:?}");
    assert_eq!(err.class(), ErrorClass::Corrupt);
    assert!(!err.is_client_error());
    // The JSON parser's own error is reachable, typed.
    let source = std::error::Error::source(err).expect("the corrupt-row error has a source");
    let mut chain = Some(source);
    let mut found = false;
    while let Some(cause) = chain {
        found |= cause.downcast_ref::<serde_json::Error>().is_some();
        chain = cause.source();
    }
    assert!(found, "no serde_json::Error among the sources of {err:?}");
}

#[tokio::test]
async fn a_malformed_queue_row_is_corrupt_and_does_not_poison_the_store() {
    for column in ["backoff_schedule", "keys_if_undelivered"] {
        let (_dir, kv) = store_with_bad_queue_row(column, "{not json").await;

        let err = kv.queue_take(10, Duration::from_secs(5)).await.unwrap_err();
        assert_corrupt(&err);
        assert!(err.to_string().contains("bad-row"), "the message names the message: {err}");
        still_works(&kv).await;

        // A listener meets the same row: it ends with the same error, and the store is still
        // usable afterwards.
        let listened = kv.clone().listen_queue(|_| async { Ok::<(), String>(()) }).await;
        assert_corrupt(&listened.unwrap_err());
        still_works(&kv).await;

        kv.close().await.expect("closing a store that was never poisoned");
    }
}
