//! Bad input: every limit one past its edge, invalid keys and selectors — each a typed error
//! naming the limit, and the store still works afterwards.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use openkv::{
    key, AtomicWrite, Check, Enqueue, Error, Key, KeyPart, Kv, Limits, ListOptions, Mutation,
    MutationKind, OpenOptions, ReadRange, Selector, Value,
};

/// A key whose encoding is exactly `n` bytes: one bytes part (0x01 + body + 0x00).
fn key_of_size(n: usize) -> Key {
    key![vec![7u8; n - 2]]
}

async fn kv() -> (tempfile::TempDir, Kv) {
    let dir = tempfile::tempdir().unwrap();
    let kv = Kv::open(dir.path().join("db")).await.unwrap();
    (dir, kv)
}

async fn still_works(kv: &Kv) {
    let vs = kv.set(&key!["alive"], Value::U64(1)).await.unwrap();
    assert_eq!(kv.get(&key!["alive"]).await.unwrap().unwrap().versionstamp, vs);
}

#[tokio::test]
async fn key_size_limits() {
    let (_d, kv) = kv().await;
    kv.set(&key_of_size(2048), Value::U64(1)).await.unwrap();
    let err = kv.set(&key_of_size(2049), Value::U64(1)).await.unwrap_err();
    assert!(matches!(err, Error::KeyTooLargeForWrite { max: 2048, size: 2049 }));
    assert_eq!(err.to_string(), "Key too large for write (max 2048 bytes)");
    // Reads allow one byte more.
    assert!(kv.get(&key_of_size(2049)).await.unwrap().is_none());
    let err = kv.get(&key_of_size(2050)).await.unwrap_err();
    assert_eq!(err.to_string(), "Key too large for read (max 2049 bytes)");
    let err = kv.atomic().check(&key_of_size(2050), None).commit().await.unwrap_err();
    assert!(matches!(err, Error::KeyTooLargeForRead { .. }));
    still_works(&kv).await;
}

#[tokio::test]
async fn value_size_limit_and_raising_it() {
    let (dir, kv) = kv().await;
    kv.set(&key!["v"], Value::Bytes(vec![1; 65_536])).await.unwrap();
    let err = kv.set(&key!["v"], Value::Bytes(vec![1; 65_537])).await.unwrap_err();
    assert_eq!(err.to_string(), "Value too large (max 65536 bytes)");
    let err = kv.set(&key!["v"], Value::V8(vec![1; 65_537])).await.unwrap_err();
    assert!(matches!(err, Error::ValueTooLarge { max: 65_536, size: 65_537 }));
    still_works(&kv).await;
    kv.close().await.unwrap();
    // An embedded user may raise the limit.
    let big = OpenOptions::new()
        .limits(Limits::default().with_max_value_size(1 << 20))
        .open(dir.path().join("db"))
        .await
        .unwrap();
    big.set(&key!["big"], Value::Bytes(vec![9; 1 << 20])).await.unwrap();
    assert_eq!(big.get(&key!["big"]).await.unwrap().unwrap().value.encoded_len(), 1 << 20);
}

#[tokio::test]
async fn count_limits() {
    let (_d, kv) = kv().await;
    // 100 checks pass (the Deno client's limit), 101 do not.
    let mut a = kv.atomic();
    for i in 0..100u32 {
        a = a.check(&key!["c", i], None);
    }
    assert!(a.set(&key!["x"], Value::U64(1)).commit().await.unwrap().is_committed());
    let mut a = kv.atomic();
    for i in 0..101u32 {
        a = a.check(&key!["c", i], None);
    }
    assert_eq!(a.commit().await.unwrap_err().to_string(), "Too many checks (max 100)");
    // 1000 mutations pass, 1001 do not.
    let mut a = kv.atomic();
    for i in 0..1000u32 {
        a = a.set(&key!["m", i], Value::U64(1));
    }
    assert!(a.commit().await.unwrap().is_committed());
    let mut a = kv.atomic();
    for i in 0..1001u32 {
        a = a.set(&key!["m", i], Value::U64(1));
    }
    assert_eq!(a.commit().await.unwrap_err().to_string(), "Too many mutations (max 1000)");
    // get_many: 10 keys pass, 11 do not.
    let keys: Vec<Key> = (0..11u32).map(|i| key!["m", i]).collect();
    assert_eq!(kv.get_many(&keys[..10]).await.unwrap().len(), 10);
    assert_eq!(kv.get_many(&keys).await.unwrap_err().to_string(), "Too many ranges (max 10)");
    // Reads of more than 1000 entries.
    let ranges = vec![ReadRange { start: vec![0], end: vec![0xff], limit: 1001, reverse: false }];
    let err = kv.snapshot_read(ranges, Default::default()).await.unwrap_err();
    assert_eq!(err.to_string(), "Too many entries (max 1000)");
    let err = kv.list(Selector::prefix(key![]), ListOptions::new().batch_size(1001)).unwrap_err();
    assert!(matches!(err, Error::TooManyEntries { max: 1000 }));
    let err = kv.list(Selector::prefix(key![]), ListOptions::new().limit(0)).unwrap_err();
    assert!(matches!(err, Error::InvalidOption(_)));
    still_works(&kv).await;
}

#[tokio::test]
async fn total_size_limits() {
    let (_d, kv) = kv().await;
    // 13 values of 64 KiB = 832 KiB > 800 KiB.
    let mut a = kv.atomic();
    for i in 0..13u32 {
        a = a.set(&key!["big", i], Value::Bytes(vec![0; 65_536]));
    }
    assert_eq!(
        a.commit().await.unwrap_err().to_string(),
        "Total mutation size too large (max 819200 bytes)"
    );
    // 41 deletes of 2 KiB keys = 82 KiB of keys > 80 KiB.
    let mut a = kv.atomic();
    for i in 1..=41u8 {
        a = a.delete(&key![vec![i; 2000]]);
    }
    assert_eq!(
        a.commit().await.unwrap_err().to_string(),
        "Total key size too large (max 81920 bytes)"
    );
    assert!(kv.get(&key!["big", 0]).await.unwrap().is_none(), "nothing was written");
    still_works(&kv).await;
}

#[tokio::test]
async fn invalid_keys_and_selectors() {
    let (_d, kv) = kv().await;
    let err = kv.set(&key![], Value::U64(1)).await.unwrap_err();
    assert_eq!(err.to_string(), "invalid key: key cannot be empty");
    let huge: num_bigint::BigInt = num_bigint::BigInt::from(1) << 2040usize;
    let err = kv.set(&Key::new(vec![KeyPart::Int(huge)]), Value::U64(1)).await.unwrap_err();
    assert!(matches!(err, Error::InvalidKey(_)), "{err}");
    let sel = Selector::prefix(key!["a"]).start(key!["b", 1]);
    assert_eq!(
        kv.list(sel, ListOptions::new()).unwrap_err().to_string(),
        "Start key is not in the keyspace defined by prefix"
    );
    let sel = Selector::prefix(key!["a"]).end(key!["a"]);
    assert_eq!(
        kv.list(sel, ListOptions::new()).unwrap_err().to_string(),
        "End key is not in the keyspace defined by prefix"
    );
    let sel = Selector::prefix(key!["a"]).start(key!["a", 1]).end(key!["a", 2]);
    assert!(matches!(kv.list(sel, ListOptions::new()), Err(Error::InvalidSelector(_))));
    let sel = Selector::range(key!["b"], key!["a"]);
    assert_eq!(
        kv.list(sel, ListOptions::new()).unwrap_err().to_string(),
        "Start key is greater than end key"
    );
    let sel = || Selector::range(key!["a"], key!["a", 5]);
    let err = kv.list(sel(), ListOptions::new().cursor("!!!")).unwrap_err();
    assert!(matches!(err, Error::InvalidCursor(_)), "{err}");
    // "_w==" is the byte 0xff: reading backwards from there starts past the range's end.
    let err = kv.list(sel(), ListOptions::new().cursor("_w==").reverse(true)).unwrap_err();
    assert_eq!(err.to_string(), "invalid cursor: the cursor is outside the selector's range");
    // A malformed encoded key straight from the wire.
    let err = openkv::Key::decode(&[0x02, b'x']).unwrap_err();
    assert!(matches!(err, Error::InvalidEncodedKey(_)));
    still_works(&kv).await;
}

/// An atomic write with one enqueue of a tiny V8 payload (`null`).
fn enqueue(deadline_ms: i64, keys: Vec<Vec<u8>>, backoff: Option<Vec<u32>>) -> AtomicWrite {
    AtomicWrite {
        enqueues: vec![Enqueue {
            payload: vec![0xff, 0x10, 0x30],
            deadline_ms,
            keys_if_undelivered: keys,
            backoff_schedule: backoff,
        }],
        ..Default::default()
    }
}

#[tokio::test]
async fn raw_writes_are_validated_too() {
    let (_d, kv) = kv().await;
    let m = |kind, expire_at_ms| Mutation { key: key!["k"].encode().unwrap(), kind, expire_at_ms };
    let cases: Vec<(AtomicWrite, &str)> = vec![
        (
            AtomicWrite { mutations: vec![m(MutationKind::Delete, Some(5))], ..Default::default() },
            "only set mutations can expire",
        ),
        (
            AtomicWrite {
                mutations: vec![m(MutationKind::Set(Value::U64(1)), Some(-5))],
                ..Default::default()
            },
            "invalid expiry time -5 ms",
        ),
        (
            AtomicWrite {
                checks: vec![Check { key: vec![], versionstamp: None }],
                ..Default::default()
            },
            "invalid key: key cannot be empty",
        ),
        (enqueue(i64::MAX, vec![], None), "Delay cannot be greater than 30 days"),
        (
            enqueue(0, vec![], Some(vec![1; 11])),
            "Invalid backoffSchedule, max 10 intervals allowed",
        ),
        (
            enqueue(0, vec![], Some(vec![1, 3_600_001])),
            "Invalid backoffSchedule, interval at index 1 is invalid",
        ),
        (
            enqueue(0, vec![key!["d"].encode().unwrap(); 11], None),
            "Too many keysIfUndelivered (max 10)",
        ),
    ];
    for (write, msg) in cases {
        let err = kv.atomic_write(write).await.unwrap_err();
        assert_eq!(err.to_string(), msg);
        assert!(err.is_client_error());
    }
    still_works(&kv).await;
}

#[tokio::test]
async fn corrupt_rows_are_errors_not_panics() {
    //! A file edited by hand (or by a buggy writer) with an LE64 of the wrong length or an
    //! unknown encoding: reads and sums say so.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let kv = Kv::open(&path).await.unwrap();
    kv.set(&key!["short"], Value::U64(1)).await.unwrap();
    kv.set(&key!["weird"], Value::U64(1)).await.unwrap();
    kv.close().await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("update kv set v = x'0102' where k = ?", [key!["short"].encode().unwrap()])
        .unwrap();
    conn.execute("update kv set v_encoding = 9 where k = ?", [key!["weird"].encode().unwrap()])
        .unwrap();
    drop(conn);
    let kv = Kv::open(&path).await.unwrap();
    // A stored row that does not decode is corrupt data (not a bad request).
    assert!(matches!(kv.get(&key!["short"]).await, Err(Error::Corrupt(_))));
    let weird = kv.get(&key!["weird"]).await.unwrap_err();
    assert!(matches!(weird, Error::Corrupt(_)), "{weird:?}");
    assert!(weird.to_string().contains(r#"["weird"]"#), "the message names the key: {weird}");
    assert!(matches!(kv.atomic().sum(&key!["short"], 1).commit().await, Err(Error::Corrupt(_))));
    still_works(&kv).await;
}
