//! The queue console's calls on a Deno-format file: a message as Deno writes it into its
//! `queue` table (a V8 payload, JSON columns) is listed with its payload decoded and its
//! columns read, and the operator's changes leave Deno's schema as it was. (The behaviours on
//! every backend: `openkv-testsuite`'s `queue_console`.)

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use openkv::{
    key, EnqueueOptions, Key, Kv, ManualClock, OpenOptions, QueueChange, QueueMessageState, Value,
};

const NOW: i64 = 1_700_000_000_000;

fn schema(path: &std::path::Path) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt =
        conn.prepare("select name, coalesce(sql, '') from sqlite_master order by name").unwrap();
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    rows.collect::<rusqlite::Result<_>>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_in_denos_table_is_listed_decoded_and_changed_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deno.sqlite3");
    let clock = ManualClock::new(NOW);
    let open = || OpenOptions::new().clock(clock.clone()).open(&path);
    // Deno's schema, then a message written the way Deno writes one (no openkv table).
    open().await.unwrap().close().await.unwrap();
    let job = serde_json::json!({"to": "ada@example.com", "tries": [1, 2.5], "urgent": true});
    let Value::V8(payload) = Value::from_js(&openkv::from_json(&job).unwrap()).unwrap() else {
        panic!("a JavaScript value is stored as V8")
    };
    let dead = key!["failed", "mail"].encode().unwrap();
    let keys_json = serde_json::to_string(&[&dead]).unwrap();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "insert into queue (ts, id, data, backoff_schedule, keys_if_undelivered) \
             values (?1, 'deno-message', ?2, '[100,200]', ?3)",
            rusqlite::params![NOW + 60_000, payload, keys_json],
        )
        .unwrap();
    }
    let before = schema(&path);

    let kv: Kv = open().await.unwrap();
    let listing = kv.queue_inspect(10).await.unwrap();
    assert_eq!((listing.ready, listing.delayed, listing.running), (0, 1, 0));
    let m = &listing.messages[0];
    assert_eq!(m.id, "deno-message");
    assert_eq!(m.payload.decode::<serde_json::Value>().unwrap(), job, "the payload, decoded");
    // What a console shows: the typed JSON of the stored value.
    let shown = openkv::value_to_json(&m.payload).unwrap().to_string();
    assert!(shown.contains("ada@example.com"), "{shown}");
    assert_eq!((m.state, m.due_at_ms, m.attempts), (QueueMessageState::Delayed, NOW + 60_000, 0));
    assert_eq!(m.backoff_ms, [100, 200]);
    let keys: Vec<Key> = m.keys_if_undelivered.iter().map(|k| Key::decode(k).unwrap()).collect();
    assert_eq!(keys, [key!["failed", "mail"]]);

    // Made due in place: still Deno's row, in Deno's table, due now.
    assert!(kv.queue_change("deno-message", QueueChange::DueNow).await.unwrap());
    let due = kv.queue_inspect(10).await.unwrap();
    assert_eq!((due.messages[0].state, due.messages[0].due_at_ms), (QueueMessageState::Ready, NOW));
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let ts: i64 = conn
            .query_row("select ts from queue where id = 'deno-message'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ts, NOW);
    }
    // An openkv message beside it, then both removed.
    kv.enqueue(&"mine".to_string(), &EnqueueOptions::new().delay(Duration::from_secs(1)))
        .await
        .unwrap();
    let mine = kv.queue_inspect(10).await.unwrap().messages[1].id.clone();
    assert!(kv.queue_change("deno-message", QueueChange::Remove).await.unwrap());
    assert!(kv.queue_change(&mine, QueueChange::Remove).await.unwrap());
    assert_eq!(kv.queue_inspect(10).await.unwrap().total(), 0);
    kv.close().await.unwrap();
    drop(kv);
    assert_eq!(schema(&path), before, "listing and changing leave Deno's schema alone");
}
