//! The behaviours every backend must show, as `async fn(&Kv)` over a fresh, empty database.
//! They panic (with a message) on a difference; see the crate docs for how they are run.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use openkv::{
    key, CommitOutcome, Consistency, Entry, Error, JsValue, Key, KeyPart, Kv, KvU64, ListOptions,
    Selector, Value, Versionstamp,
};

fn bytes(s: &str) -> Value {
    Value::Bytes(s.as_bytes().to_vec())
}

async fn list_keys(kv: &Kv, selector: Selector, options: ListOptions) -> Vec<Key> {
    let entries: Vec<Entry> = kv.list(selector, options).unwrap().try_collect().await.unwrap();
    entries.into_iter().map(|e| e.key).collect()
}

async fn must_set(kv: &Kv, key: &Key, value: impl openkv::ToValue) -> Versionstamp {
    kv.set(key, value).await.unwrap_or_else(|e| panic!("set {key:?}: {e}"))
}

async fn value_of(kv: &Kv, key: &Key) -> Option<Value> {
    kv.get(key).await.unwrap().map(|e| e.value)
}

/// set, get, overwrite, delete; a missing key reads as `None`; deleting it is a no-op.
pub async fn set_get_delete(kv: &Kv) {
    let k = key!["users", "ada"];
    assert_eq!(kv.get(&k).await.unwrap(), None);
    let first = must_set(kv, &k, bytes("v1")).await;
    let entry = kv.get(&k).await.unwrap().expect("just written");
    assert_eq!(
        (entry.key.clone(), entry.value, entry.versionstamp),
        (k.clone(), bytes("v1"), first)
    );
    let second = must_set(kv, &k, bytes("v2")).await;
    assert!(second > first);
    assert_eq!(value_of(kv, &k).await, Some(bytes("v2")));
    kv.delete(&k).await.unwrap();
    assert_eq!(kv.get(&k).await.unwrap(), None);
    kv.delete(&k).await.expect("deleting a missing key is a no-op");
}

/// The three encodings (V8, raw bytes, `KvU64`) come back exactly, including edge values.
pub async fn value_encodings_round_trip(kv: &Kv) {
    let json = serde_json::json!({"name": "Ada", "tags": ["math", 1.5, null, true], "n": -0.0});
    let js = openkv::from_json(&json).unwrap();
    let values = [
        ("v8", Value::from_js(&js).unwrap()),
        ("empty bytes", Value::Bytes(Vec::new())),
        ("bytes", Value::Bytes((0..=255).collect())),
        ("u64 0", Value::from(KvU64(0))),
        ("u64 max", Value::from(KvU64(u64::MAX))),
        ("64 KiB", Value::Bytes(vec![7; 65536])),
    ];
    for (name, value) in values {
        let k = key!["value", name];
        must_set(kv, &k, value.clone()).await;
        assert_eq!(value_of(kv, &k).await, Some(value), "{name}");
    }
    let back = kv.get(&key!["value", "v8"]).await.unwrap().unwrap().value.to_js().unwrap();
    assert_eq!(back, js);
}

/// serde types go in and come out as the same Rust value.
pub async fn serde_values_round_trip(kv: &Kv) {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct User {
        name: String,
        age: u32,
        tags: Vec<String>,
        score: Option<f64>,
    }
    let ada = User { name: "Ada".into(), age: 36, tags: vec!["math".into()], score: Some(9.5) };
    let k = key!["users", "ada"];
    must_set(kv, &k, &ada).await;
    assert_eq!(kv.get_as::<User>(&k).await.unwrap().unwrap().value, ada);
    assert!(matches!(kv.get_as::<u64>(&k).await, Err(Error::Deserialize(_))));
}

/// Keys of every part type list in the order of their encodings: bytes < string < bigint <
/// number < false < true, and within a type by value.
pub async fn keys_of_every_type_sort_by_encoding(kv: &Kv) {
    let parts: Vec<KeyPart> = vec![
        KeyPart::Bool(true),
        KeyPart::Float(f64::INFINITY),
        KeyPart::Bytes(vec![]),
        KeyPart::Bytes(vec![0, 1]),
        KeyPart::String("b".into()),
        KeyPart::String("a\0".into()),
        KeyPart::String(String::new()),
        KeyPart::Int((-1000).into()),
        KeyPart::Int(0.into()),
        KeyPart::Int(300.into()), // two magnitude bytes
        KeyPart::Float(-0.0),
        KeyPart::Float(0.0),
        KeyPart::Float(-1e300),
        KeyPart::Float(f64::NAN),
        KeyPart::Bool(false),
    ];
    let mut expected: Vec<Key> = parts.into_iter().map(|p| key!["t"].with(p)).collect();
    for k in &expected {
        must_set(kv, k, bytes("x")).await;
    }
    expected.sort();
    let listed = list_keys(kv, Selector::prefix(key!["t"]), ListOptions::new()).await;
    assert_eq!(listed.len(), expected.len());
    for (got, want) in listed.iter().zip(&expected) {
        assert_eq!(got.encode().unwrap(), want.encode().unwrap());
    }
    let mut reversed = expected.clone();
    reversed.reverse();
    let listed = list_keys(kv, Selector::prefix(key!["t"]), ListOptions::new().reverse(true)).await;
    assert_eq!(listed.len(), reversed.len());
    assert_eq!(
        listed.last().unwrap().encode().unwrap(),
        reversed.last().unwrap().encode().unwrap()
    );
}

/// prefix, start/end, prefix+start, prefix+end, limit, reverse; the prefix itself excluded.
pub async fn list_selectors_and_options(kv: &Kv) {
    must_set(kv, &key!["p"], bytes("the prefix itself")).await;
    for i in 0..10i64 {
        must_set(kv, &key!["p", i], bytes("x")).await;
    }
    must_set(kv, &key!["q", 0i64], bytes("outside")).await;
    let ints = |keys: Vec<Key>| -> Vec<i64> {
        keys.iter()
            .map(|k| match &k.parts()[1] {
                KeyPart::Int(n) => i64::try_from(n).unwrap(),
                other => panic!("unexpected part {other:?}"),
            })
            .collect()
    };
    let all = ListOptions::new();
    assert_eq!(
        ints(list_keys(kv, Selector::prefix(key!["p"]), all.clone()).await),
        (0..10).collect::<Vec<_>>()
    );
    let range = Selector::range(key!["p", 3i64], key!["p", 6i64]);
    assert_eq!(ints(list_keys(kv, range, all.clone()).await), vec![3, 4, 5]);
    let from = Selector::prefix(key!["p"]).start(key!["p", 7i64]);
    assert_eq!(ints(list_keys(kv, from, all.clone()).await), vec![7, 8, 9]);
    let until = Selector::prefix(key!["p"]).end(key!["p", 2i64]);
    assert_eq!(ints(list_keys(kv, until, all.clone()).await), vec![0, 1]);
    let limited = ListOptions::new().limit(3).reverse(true);
    assert_eq!(ints(list_keys(kv, Selector::prefix(key!["p"]), limited).await), vec![9, 8, 7]);
    let strong = ListOptions::new().consistency(Consistency::Strong).batch_size(2);
    assert_eq!(list_keys(kv, Selector::prefix(key!["p"]), strong).await.len(), 10);
}

/// A cursor taken mid-list resumes right after the last entry returned, both directions.
pub async fn list_cursor_resumes_where_it_stopped(kv: &Kv) {
    for i in 0..25i64 {
        must_set(kv, &key!["c", i], bytes("x")).await;
    }
    for reverse in [false, true] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut options = ListOptions::new().limit(7).reverse(reverse);
            if let Some(c) = &cursor {
                options = options.cursor(c.clone());
            }
            let mut stream = kv.list(Selector::prefix(key!["c"]), options).unwrap();
            let mut page = Vec::new();
            while let Some(entry) = stream.try_next().await.unwrap() {
                page.push(entry.key);
            }
            seen.extend(page);
            // Deno's convention: the empty cursor means the range is exhausted.
            cursor = stream.cursor();
            match cursor.as_deref() {
                Some("") => break,
                None => panic!("no cursor after a page"),
                Some(_) => assert!(seen.len() < 25 + 7, "the cursor does not advance"),
            }
        }
        let mut expected: Vec<Key> = (0..25i64).map(|i| key!["c", i]).collect();
        if reverse {
            expected.reverse();
        }
        assert_eq!(seen, expected, "reverse = {reverse}");
    }
}

/// A list longer than one read (1000 entries) pages through further reads transparently.
pub async fn list_pages_past_one_read(kv: &Kv) {
    const N: i64 = 2500;
    for chunk in (0..N).collect::<Vec<_>>().chunks(500) {
        let mut op = kv.atomic();
        for &i in chunk {
            op = op.set(&key!["big", i], Value::from(KvU64(i as u64)));
        }
        assert!(op.commit().await.unwrap().is_committed());
    }
    let entries: Vec<Entry> = kv
        .list(Selector::prefix(key!["big"]), ListOptions::new())
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(entries.len(), N as usize);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.value, Value::from(KvU64(i as u64)));
    }
}

/// get_many: one answer per key, in request order, present or not.
pub async fn get_many_answers_in_order(kv: &Kv) {
    must_set(kv, &key!["m", 2i64], bytes("two")).await;
    must_set(kv, &key!["m", 0i64], bytes("zero")).await;
    let keys: Vec<Key> = [2i64, 1, 0, 2].iter().map(|&i| key!["m", i]).collect();
    let got: Vec<Option<Value>> =
        kv.get_many(&keys).await.unwrap().into_iter().map(|e| e.map(|e| e.value)).collect();
    assert_eq!(got, vec![Some(bytes("two")), None, Some(bytes("zero")), Some(bytes("two"))]);
}

/// Every commit's versionstamp is above the previous one; one commit's mutations share it.
pub async fn versionstamps_increase_and_are_shared_by_a_commit(kv: &Kv) {
    let mut last = Versionstamp::ZERO;
    for i in 0..20i64 {
        let v = must_set(kv, &key!["vs", i], bytes("x")).await;
        assert!(v > last, "{v} after {last}");
        last = v;
    }
    let out = kv.atomic().set(&key!["a"], bytes("1")).set(&key!["b"], bytes("2")).commit().await;
    let shared = out.unwrap().versionstamp().unwrap();
    assert!(shared > last);
    for k in [key!["a"], key!["b"]] {
        assert_eq!(kv.get(&k).await.unwrap().unwrap().versionstamp, shared);
    }
}

/// `check(key, None)` holds only while the key is absent; `check(key, Some(v))` only while
/// `v` is its versionstamp; a failed check writes nothing.
pub async fn check_on_missing_and_present_keys(kv: &Kv) {
    let k = key!["lock"];
    let create = kv.atomic().check(&k, None).set(&k, bytes("mine")).commit().await.unwrap();
    let v = create.versionstamp().expect("absent key: the check holds");
    let again = kv.atomic().check(&k, None).set(&k, bytes("theirs")).commit().await.unwrap();
    assert!(!again.is_committed(), "present key: the check fails");
    assert_eq!(value_of(kv, &k).await, Some(bytes("mine")));
    let update = kv.atomic().check(&k, Some(v)).set(&k, bytes("updated")).commit().await.unwrap();
    assert!(update.is_committed());
    let stale = kv.atomic().check(&k, Some(v)).set(&k, bytes("stale")).commit().await.unwrap();
    assert!(!stale.is_committed(), "an old versionstamp fails");
    assert_eq!(value_of(kv, &k).await, Some(bytes("updated")));
}

/// Mutations apply in the order given: set then delete deletes, delete then set sets.
pub async fn mutations_apply_in_order(kv: &Kv) {
    let (a, b) = (key!["a"], key!["b"]);
    let out = kv.atomic().set(&a, bytes("1")).delete(&a).delete(&b).set(&b, bytes("2")).commit();
    assert!(out.await.unwrap().is_committed());
    assert_eq!(value_of(kv, &a).await, None);
    assert_eq!(value_of(kv, &b).await, Some(bytes("2")));
}

/// `KvU64` sum wraps modulo 2^64; min and max keep the smaller/larger; a missing key takes
/// the operand.
pub async fn u64_sum_min_max(kv: &Kv) {
    let (s, lo, hi) = (key!["sum"], key!["min"], key!["max"]);
    let op = kv.atomic().sum(&s, u64::MAX - 1).min(&lo, 50).max(&hi, 50);
    assert!(op.commit().await.unwrap().is_committed());
    let op = kv.atomic().sum(&s, 3).min(&lo, 70).min(&lo, 20).max(&hi, 10).max(&hi, 90);
    assert!(op.commit().await.unwrap().is_committed());
    assert_eq!(value_of(kv, &s).await, Some(Value::from(KvU64(1))), "wraps");
    assert_eq!(value_of(kv, &lo).await, Some(Value::from(KvU64(20))));
    assert_eq!(value_of(kv, &hi).await, Some(Value::from(KvU64(90))));
    must_set(kv, &key!["text"], bytes("not a number")).await;
    let err = kv.atomic().sum(&key!["text"], 1).commit().await.expect_err("sum on bytes");
    assert!(err.is_client_error(), "{err:?}");
}

/// A versionstamped key gets the commit's versionstamp as a last string part.
pub async fn versionstamped_keys(kv: &Kv) {
    let v = kv.set_versionstamped(&key!["log"], bytes("entry")).await.unwrap();
    let keys = list_keys(kv, Selector::prefix(key!["log"]), ListOptions::new()).await;
    assert_eq!(keys, vec![key!["log", v.to_hex()]]);
    assert_eq!(value_of(kv, &keys[0]).await, Some(bytes("entry")));
}

/// Oversize keys and values, and too many checks, fail with typed errors and write nothing.
pub async fn limits_are_enforced_before_sending(kv: &Kv) {
    let big = key!["k", "x".repeat(2100)];
    assert!(matches!(kv.set(&big, bytes("v")).await, Err(Error::KeyTooLargeForWrite { .. })));
    let k = key!["v"];
    let huge = Value::Bytes(vec![0; 65537]);
    assert!(matches!(kv.set(&k, huge).await, Err(Error::ValueTooLarge { .. })));
    let mut op = kv.atomic().set(&k, bytes("v"));
    for i in 0..101i64 {
        op = op.check(&key!["c", i], None);
    }
    assert!(matches!(op.commit().await, Err(Error::TooManyChecks { .. })));
    assert_eq!(kv.get(&k).await.unwrap(), None);
}

/// An eventually consistent read still sees this client's acknowledged writes here (one
/// node, no replicas).
pub async fn eventual_reads_see_acknowledged_writes(kv: &Kv) {
    let k = key!["eventual"];
    let v = must_set(kv, &k, bytes("seen")).await;
    let entry = kv.get_with(&k, Consistency::Eventual).await.unwrap().unwrap();
    assert_eq!((entry.value, entry.versionstamp), (bytes("seen"), v));
}

/// The database id does not change between calls.
pub async fn database_id_is_stable(kv: &Kv) {
    assert_eq!(kv.database_id().await.unwrap(), kv.database_id().await.unwrap());
}

/// After close, every call fails with `Closed`.
pub async fn close_refuses_further_use(kv: &Kv) {
    must_set(kv, &key!["before"], bytes("x")).await;
    kv.close().await.unwrap();
    assert!(matches!(kv.get(&key!["before"]).await, Err(Error::Closed)));
    assert!(matches!(kv.set(&key!["after"], bytes("x")).await, Err(Error::Closed)));
}

/// Every failed check's index is reported, not just the first.
pub async fn failed_checks_name_every_index(kv: &Kv) {
    let (a, b, c) = (key!["a"], key!["b"], key!["c"]);
    let va = must_set(kv, &a, bytes("1")).await;
    must_set(kv, &b, bytes("1")).await;
    let out =
        kv.atomic().check(&a, Some(va)).check(&b, None).check(&c, Some(va)).set(&c, bytes("x"));
    assert_eq!(
        out.commit().await.unwrap(),
        CommitOutcome::CheckFailed { failed_checks: vec![1, 2] }
    );
    assert_eq!(kv.get(&c).await.unwrap(), None);
}

/// A mutation that fails late (a sum on a non-number) undoes the mutations before it.
pub async fn a_failing_mutation_rolls_back_the_write(kv: &Kv) {
    must_set(kv, &key!["text"], bytes("not a number")).await;
    let op = kv.atomic().set(&key!["first"], bytes("x")).sum(&key!["text"], 1);
    assert!(op.commit().await.is_err());
    assert_eq!(kv.get(&key!["first"]).await.unwrap(), None, "no partial commit");
}

/// `sum` on JS numbers, with bounds: clamped, or refused when not clamping.
pub async fn js_number_sums_with_limits(kv: &Kv) {
    let k = key!["score"];
    let n = |x: f64| JsValue::Number(x);
    must_set(kv, &k, Value::from_js(&n(8.0)).unwrap()).await;
    let op = kv.atomic().sum_js_with_limits(&k, &n(5.0), Some(&n(0.0)), Some(&n(10.0)), true);
    assert!(op.commit().await.unwrap().is_committed());
    assert_eq!(kv.get(&k).await.unwrap().unwrap().value.to_js().unwrap(), n(10.0), "clamped");
    let op = kv.atomic().sum_js_with_limits(&k, &n(1.0), None, Some(&n(10.0)), false);
    assert!(op.commit().await.is_err(), "over the bound without clamp");
    let op = kv.atomic().sum_js(&k, &n(-2.5));
    assert!(op.commit().await.unwrap().is_committed());
    assert_eq!(kv.get(&k).await.unwrap().unwrap().value.to_js().unwrap(), n(7.5));
}

/// An expired key disappears from reads and checks at its expiry time, not at a later sweep.
pub async fn expired_keys_are_invisible_at_once(kv: &Kv) {
    let k = key!["session"];
    let op = kv.atomic().set_with_expiry(&k, bytes("token"), Duration::from_millis(400));
    assert!(op.commit().await.unwrap().is_committed());
    assert_eq!(value_of(kv, &k).await, Some(bytes("token")));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(kv.get(&k).await.unwrap(), None);
    let recreate = kv.atomic().check(&k, None).set(&k, bytes("new")).commit().await.unwrap();
    assert!(recreate.is_committed(), "an expired key checks as absent");
}

/// The database id is a real one, kept with the data (denokv answers the nil UUID).
pub async fn database_id_is_not_nil(kv: &Kv) {
    assert!(!kv.database_id().await.unwrap().is_nil());
}

/// The versionstamps of a watch's next snapshot; fails on an error, the end of the stream or a
/// hang (20 s). (A helper, not a behaviour; `tests/remote.rs` uses it too.)
pub async fn next_snapshot(watch: &mut openkv::WatchStream) -> Vec<Option<Versionstamp>> {
    let snapshot = tokio::time::timeout(Duration::from_secs(20), watch.next())
        .await
        .expect("no snapshot came")
        .expect("the stream ended")
        .expect("the stream failed");
    snapshot.iter().map(|e| e.as_ref().map(|e| e.versionstamp)).collect()
}

/// `watch`: the current state first, then one snapshot per change (set, delete) — never for a
/// write to another key —, more than 10 keys refused, and the stream ends at close.
pub async fn watch_sees_changes(kv: &Kv) {
    let (a, b) = (key!["watch", "a"], key!["watch", "b"]);
    let first_a = must_set(kv, &a, bytes("a0")).await;
    let mut watch = kv.watch(&[a.clone(), b.clone()]).unwrap();
    assert_eq!(next_snapshot(&mut watch).await, vec![Some(first_a), None]);
    let set_b = must_set(kv, &b, bytes("b1")).await;
    assert_eq!(next_snapshot(&mut watch).await, vec![Some(first_a), Some(set_b)]);
    kv.delete(&a).await.unwrap();
    assert_eq!(next_snapshot(&mut watch).await, vec![None, Some(set_b)]);
    // A write elsewhere gives no snapshot: the next one is the next change of `b`.
    must_set(kv, &key!["watch", "elsewhere"], bytes("x")).await;
    let again = must_set(kv, &b, bytes("b2")).await;
    assert_eq!(next_snapshot(&mut watch).await, vec![None, Some(again)]);
    let entry = kv.get(&b).await.unwrap().unwrap();
    assert_eq!((entry.value, entry.versionstamp), (bytes("b2"), again), "as a read sees it");

    let eleven: Vec<Key> = (0..11).map(|i| key!["watch", i]).collect();
    assert!(matches!(kv.watch(&eleven), Err(Error::TooManyWatchedKeys { max: 10 })));

    kv.close().await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(20), watch.next()).await;
    assert!(end.expect("the stream ended at close").is_none());
}
