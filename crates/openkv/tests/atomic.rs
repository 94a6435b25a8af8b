//! Atomic operations: checks, ordering, all-or-nothing, sum/min/max, versionstamps, and
//! concurrent commits through the group-committing writer.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fresh;

use std::collections::HashSet;
use std::time::Duration;

use fresh::{bytes, file_kv};
use openkv::{key, CommitOutcome, Error, Kv, KvU64, ManualClock, OpenOptions, Value, Versionstamp};

#[tokio::test]
async fn failed_checks_report_every_failing_index_and_write_nothing() {
    let (_d, kv) = file_kv().await;
    let (a, b, c) = (key!["a"], key!["b"], key!["c"]);
    let va = kv.set(&a, bytes("1")).await.unwrap();
    kv.set(&b, bytes("1")).await.unwrap();
    let out = kv
        .atomic()
        .check(&a, Some(va)) // holds
        .check(&b, None) // fails: b exists
        .check(&c, Some(va)) // fails: c does not exist
        .set(&c, bytes("x"))
        .commit()
        .await
        .unwrap();
    assert_eq!(out, CommitOutcome::CheckFailed { failed_checks: vec![1, 2] });
    assert_eq!(kv.get(&c).await.unwrap(), None);
}

#[tokio::test]
async fn mutations_apply_in_order_and_share_one_versionstamp() {
    let (_d, kv) = file_kv().await;
    let (a, b) = (key!["a"], key!["b"]);
    let out = kv
        .atomic()
        .set(&a, bytes("first"))
        .delete(&a)
        .delete(&b)
        .set(&b, bytes("second"))
        .set(&key!["c"], bytes("c"))
        .commit()
        .await
        .unwrap();
    let vs = out.versionstamp().unwrap();
    assert_eq!(kv.get(&a).await.unwrap(), None, "set then delete deletes");
    let b_entry = kv.get(&b).await.unwrap().unwrap();
    assert_eq!(b_entry.value, bytes("second"), "delete then set sets");
    assert_eq!(b_entry.versionstamp, vs);
    assert_eq!(kv.get(&key!["c"]).await.unwrap().unwrap().versionstamp, vs);
}

#[tokio::test]
async fn a_failing_mutation_rolls_back_the_whole_write() {
    //! The reference server commits the mutations before the failing one; we must not.
    let (_d, kv) = file_kv().await;
    let before = kv.set(&key!["text"], bytes("not a number")).await.unwrap();
    let err = kv
        .atomic()
        .set(&key!["x"], bytes("would be written first"))
        .sum(&key!["counter"], 5)
        .sum(&key!["text"], 1)
        .commit()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TypeMismatch(_)), "{err}");
    assert_eq!(
        err.to_string(),
        "Failed to perform 'sum' mutation on a non-U64 value in the database"
    );
    assert_eq!(kv.get(&key!["x"]).await.unwrap(), None);
    assert_eq!(kv.get(&key!["counter"]).await.unwrap(), None);
    assert_eq!(kv.get(&key!["text"]).await.unwrap().unwrap().versionstamp, before);
    // The store keeps working, and the failed write used no versionstamp.
    let next = kv.set(&key!["y"], bytes("y")).await.unwrap();
    assert_eq!(next.version(), before.version() + 1);
}

#[tokio::test]
async fn sum_min_max_semantics() {
    let (_d, kv) = file_kv().await;
    let k = key!["n"];
    kv.atomic().sum(&k, 5).commit().await.unwrap();
    kv.atomic().sum(&k, 10).commit().await.unwrap();
    assert_eq!(kv.get(&k).await.unwrap().unwrap().value, Value::U64(15));
    kv.atomic().sum(&k, u64::MAX).commit().await.unwrap();
    assert_eq!(kv.get(&k).await.unwrap().unwrap().value, Value::U64(14), "wraps mod 2^64");
    kv.atomic().min(&k, 3).commit().await.unwrap();
    assert_eq!(kv.get(&k).await.unwrap().unwrap().value, Value::U64(3));
    kv.atomic().max(&k, 9).commit().await.unwrap();
    kv.atomic().max(&k, 4).commit().await.unwrap();
    assert_eq!(kv.get(&k).await.unwrap().unwrap().value, Value::from(KvU64(9)));
    kv.atomic().min(&key!["fresh_min"], 8).max(&key!["fresh_max"], 2).commit().await.unwrap();
    assert_eq!(kv.get(&key!["fresh_min"]).await.unwrap().unwrap().value, Value::U64(8));
    assert_eq!(kv.get(&key!["fresh_max"]).await.unwrap().unwrap().value, Value::U64(2));
    for v in [Value::V8(vec![0xff, 0x10, 0x49, 0x02]), bytes("b")] {
        kv.set(&key!["other"], v).await.unwrap();
        for op in ["min", "max"] {
            let a = kv.atomic();
            let a = if op == "min" { a.min(&key!["other"], 1) } else { a.max(&key!["other"], 1) };
            let err = a.commit().await.unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("Failed to perform '{op}' mutation on a non-U64 value in the database")
            );
        }
    }
    // A non-U64 operand through the raw mutation path is a type error, not a panic.
    let raw = openkv::Mutation {
        key: key!["n"].encode().unwrap(),
        kind: openkv::MutationKind::Min(bytes("1")),
        expire_at_ms: None,
    };
    let err = kv.atomic().mutate(raw).commit().await.unwrap_err();
    assert_eq!(err.to_string(), "Failed to perform 'min' mutation on a non-U64 operand");
}

#[tokio::test]
async fn sum_clears_an_expiry_and_set_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let kv = OpenOptions::new().clock(clock.clone()).open(dir.path().join("db")).await.unwrap();
    kv.atomic()
        .set_with_expiry(&key!["c"], Value::U64(1), Duration::from_secs(10))
        .commit()
        .await
        .unwrap();
    kv.atomic().sum(&key!["c"], 1).commit().await.unwrap();
    kv.set_with_expiry(&key!["s"], bytes("a"), Duration::from_secs(10)).await.unwrap();
    kv.set(&key!["s"], bytes("b")).await.unwrap();
    clock.advance(Duration::from_secs(11));
    assert_eq!(kv.get(&key!["c"]).await.unwrap().unwrap().value, Value::U64(2));
    assert_eq!(kv.get(&key!["s"]).await.unwrap().unwrap().value, bytes("b"));
}

#[tokio::test]
async fn versionstamped_keys_end_with_the_commit_versionstamp() {
    let (_d, kv) = file_kv().await;
    let vs = kv.set_versionstamped(&key!["log"], bytes("event")).await.unwrap();
    let full = key!["log", vs.to_hex()];
    let entry = kv.get(&full).await.unwrap().expect("stored under the suffixed key");
    assert_eq!(entry.versionstamp, vs);
    // The stored bytes are the prefix + 0x02 + 20 hex digits + 0x00, as in Deno.
    let mut expected = key!["log"].encode().unwrap();
    expected.push(0x02);
    expected.extend_from_slice(vs.to_hex().as_bytes());
    expected.push(0);
    assert_eq!(full.encode().unwrap(), expected);
}

#[tokio::test]
async fn versionstamps_increase_across_commits_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let kv = Kv::open(&path).await.unwrap();
    let mut last = Versionstamp::ZERO;
    for i in 0..20u32 {
        let vs = kv.set(&key!["k", i], bytes("v")).await.unwrap();
        assert!(vs > last);
        last = vs;
    }
    kv.close().await.unwrap();
    assert!(matches!(kv.get(&key!["k", 0]).await, Err(Error::Closed)));
    assert!(matches!(kv.set(&key!["k", 0], bytes("v")).await, Err(Error::Closed)));
    let kv = Kv::open(&path).await.unwrap();
    assert!(kv.set(&key!["after"], bytes("v")).await.unwrap() > last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_each_get_their_own_stamp_and_none_is_lost() {
    //! 64 tasks × 50 writes, plus 8 tasks racing check+set increments on one key: group commit
    //! must give every write a distinct versionstamp and apply each check against the effects
    //! of the writes committed before it in the same group.
    let (_d, kv) = file_kv().await;
    let counter = key!["counter"];
    kv.set(&counter, Value::U64(0)).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..64u32 {
        let kv = kv.clone();
        tasks.push(tokio::spawn(async move {
            let mut stamps = Vec::new();
            for i in 0..50u32 {
                stamps.push(kv.set(&key!["w", t, i], Value::U64(i.into())).await.unwrap());
            }
            (stamps, 0u64)
        }));
    }
    for _ in 0..8 {
        let kv = kv.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut stamps = Vec::new();
            let mut wins = 0;
            for _ in 0..40 {
                loop {
                    let e = kv.get(&counter).await.unwrap().unwrap();
                    let n = e.value.as_u64().unwrap();
                    let out = kv
                        .atomic()
                        .check(&counter, Some(e.versionstamp))
                        .set(&counter, Value::U64(n + 1))
                        .commit()
                        .await
                        .unwrap();
                    if let Some(vs) = out.versionstamp() {
                        stamps.push(vs);
                        wins += 1;
                        break;
                    }
                }
            }
            (stamps, wins)
        }));
    }
    let mut all = HashSet::new();
    let mut wins = 0;
    for t in tasks {
        let (stamps, w) = t.await.unwrap();
        assert!(stamps.windows(2).all(|p| p[0] < p[1]), "a task's own commits increase");
        wins += w;
        for s in stamps {
            assert!(all.insert(s), "duplicate versionstamp {s}");
        }
    }
    assert_eq!(all.len(), 64 * 50 + 8 * 40);
    assert_eq!(wins, 8 * 40);
    assert_eq!(kv.get(&counter).await.unwrap().unwrap().value, Value::U64(8 * 40));
}

#[tokio::test]
async fn change_feed_publishes_each_commit() {
    let (_d, kv) = file_kv().await;
    let mut feed = kv.subscribe().unwrap();
    let vs = kv.atomic().set(&key!["a"], bytes("1")).delete(&key!["b"]).commit().await.unwrap();
    let event = feed.recv().await.unwrap();
    assert_eq!(Some(event.versionstamp), vs.versionstamp());
    assert_eq!(&*event.keys, &[key!["a"].encode().unwrap(), key!["b"].encode().unwrap()]);
}

#[tokio::test]
async fn in_memory_databases_are_independent_and_complete() {
    let one = Kv::open_in_memory().await.unwrap();
    let two = Kv::open_in_memory().await.unwrap();
    one.set(&key!["a"], bytes("1")).await.unwrap();
    assert!(two.get(&key!["a"]).await.unwrap().is_none());
    let out =
        one.atomic().check(&key!["a"], None).set(&key!["a"], bytes("2")).commit().await.unwrap();
    assert!(!out.is_committed());
    one.atomic().sum(&key!["n"], 2).commit().await.unwrap();
    assert_eq!(one.get(&key!["n"]).await.unwrap().unwrap().value, Value::U64(2));
}

#[tokio::test]
async fn enqueue_stores_a_message_in_denos_queue_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let clock = ManualClock::new(5_000);
    let kv = OpenOptions::new().clock(clock).rng_seed(7).open(&path).await.unwrap();
    let write = openkv::AtomicWrite {
        enqueues: vec![openkv::Enqueue {
            payload: vec![0xff, 0x10, 0x49, 0x02],
            deadline_ms: 6_000,
            keys_if_undelivered: vec![key!["dead"].encode().unwrap()],
            backoff_schedule: None,
        }],
        ..Default::default()
    };
    assert!(kv.atomic_write(write).await.unwrap().is_committed());
    kv.close().await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let (ts, id, data, schedule, keys): (i64, String, Vec<u8>, String, String) = conn
        .query_row(
            "select ts, id, data, backoff_schedule, keys_if_undelivered from queue",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(ts, 6_000);
    assert_eq!(id.len(), 36, "a UUID");
    assert_eq!(data, vec![0xff, 0x10, 0x49, 0x02]);
    assert_eq!(schedule, "[100,1000,5000,30000,60000]");
    // Deno writes this JSON as text into the blob-typed column; so do we.
    assert_eq!(keys, "[[2,100,101,97,100,0]]");
}

#[tokio::test]
async fn v8_number_and_bigint_sums() {
    use num_bigint::BigInt;
    use openkv::{decode_v8, JsValue};
    let (_d, kv) = file_kv().await;
    let (n, b) = (key!["n"], key!["b"]);
    for _ in 0..3 {
        kv.atomic()
            .sum_js(&n, &JsValue::Number(1.5))
            .sum_js(&b, &JsValue::BigInt(BigInt::from(10)))
            .commit()
            .await
            .unwrap();
    }
    let js = |v: Value| match v {
        Value::V8(bytes) => decode_v8(&bytes).unwrap(),
        other => panic!("expected V8, got {other:?}"),
    };
    assert_eq!(js(kv.get(&n).await.unwrap().unwrap().value), JsValue::Number(4.5));
    assert_eq!(js(kv.get(&b).await.unwrap().unwrap().value), JsValue::BigInt(BigInt::from(30)));
    // Bounded: clamp, or fail and write nothing.
    let max = JsValue::BigInt(BigInt::from(35));
    kv.atomic()
        .sum_js_with_limits(&b, &JsValue::BigInt(BigInt::from(10)), None, Some(&max), true)
        .commit()
        .await
        .unwrap();
    assert_eq!(js(kv.get(&b).await.unwrap().unwrap().value), JsValue::BigInt(BigInt::from(35)));
    let err = kv
        .atomic()
        .set(&key!["side"], Value::U64(1))
        .sum_js_with_limits(&b, &JsValue::BigInt(BigInt::from(1)), None, Some(&max), false)
        .commit()
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "The result of a Sum operation would exceed its range limit");
    assert!(kv.get(&key!["side"]).await.unwrap().is_none(), "all or nothing");
    let err = kv.atomic().sum_js(&n, &JsValue::BigInt(BigInt::from(1))).commit().await.unwrap_err();
    assert_eq!(err.to_string(), "Cannot sum Number with BigInt");
}
