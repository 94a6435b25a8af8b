//! Property test: random sequences of every operation run against openkv on a real SQLite file
//! (and on PostgreSQL when the test command started one)
//! and against a `BTreeMap` model, with reopen, expiry (manual clock), reverse lists, limits
//! and cursor pagination. Every read is compared entry for entry, versionstamps included.
//!
//! The seed is fixed so that CI is reproducible; `PROPTEST_CASES=2000` searches longer.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use futures::TryStreamExt;
use openkv::{
    CommitOutcome, Entry, Key, KeyPart, Kv, ListOptions, ManualClock, OpenOptions, Selector, Value,
    Versionstamp,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

const SEED: u64 = 20_261_126;
const START_MS: i64 = 1_800_000_000_000;

/// A stored entry in the model: value, commit version, absolute expiry.
#[derive(Clone, Debug)]
struct Row {
    value: Value,
    version: u64,
    expire_at: Option<i64>,
}

#[derive(Default, Debug)]
struct Model {
    rows: BTreeMap<Vec<u8>, Row>,
    version: u64,
    now: i64,
}

impl Model {
    fn live(&self, k: &[u8]) -> Option<&Row> {
        self.rows.get(k).filter(|r| r.expire_at.is_none_or(|t| t > self.now))
    }

    fn entry(&self, k: &[u8]) -> Option<Entry> {
        self.live(k).map(|r| Entry {
            key: Key::decode(k).unwrap(),
            value: r.value.clone(),
            versionstamp: Versionstamp::from_version(r.version),
        })
    }

    fn range(&self, start: &[u8], end: &[u8], reverse: bool) -> Vec<Entry> {
        let keys: Vec<&Vec<u8>> = self
            .rows
            .range(start.to_vec()..end.to_vec())
            .map(|(k, _)| k)
            .filter(|k| self.live(k).is_some())
            .collect();
        let mut out: Vec<Entry> = keys.into_iter().map(|k| self.entry(k).unwrap()).collect();
        if reverse {
            out.reverse();
        }
        out
    }
}

#[derive(Clone, Debug)]
enum Mut {
    Set(Key, Value, Option<u64>),
    Delete(Key),
    Sum(Key, u64),
    Min(Key, u64),
    Max(Key, u64),
}

#[derive(Clone, Debug)]
enum Op {
    /// An atomic write: checks (key, use the current stamp or a wrong one), then mutations.
    Atomic(Vec<(Key, bool)>, Vec<Mut>),
    Get(Key),
    GetMany(Vec<Key>),
    List {
        prefix: Key,
        limit: Option<usize>,
        reverse: bool,
        batch: usize,
        page: usize,
    },
    ListRange(Key, Key, bool),
    Advance(u64),
    Reopen,
}

fn part() -> impl Strategy<Value = KeyPart> {
    prop_oneof![
        prop::sample::select(vec!["", "a", "ab", "b", "a\0"]).prop_map(KeyPart::from),
        prop::sample::select(vec![-300i64, -1, 0, 1, 255, 256]).prop_map(KeyPart::from),
        prop::sample::select(vec![-0.0f64, 0.0, 1.5, -2.5, f64::NAN, f64::INFINITY])
            .prop_map(KeyPart::from),
        any::<bool>().prop_map(KeyPart::from),
        prop::sample::select(vec![vec![], vec![0u8], vec![0, 1], vec![255]])
            .prop_map(KeyPart::from),
    ]
}

fn key() -> impl Strategy<Value = Key> {
    prop::collection::vec(part(), 1..=3).prop_map(Key::new)
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..20).prop_map(Value::Bytes),
        prop::collection::vec(any::<u8>(), 0..20).prop_map(|mut b| {
            b.insert(0, 0xff);
            Value::V8(b)
        }),
        prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>()].prop_map(Value::U64),
    ]
}

fn mutation() -> impl Strategy<Value = Mut> {
    let n = || prop_oneof![Just(1u64), Just(u64::MAX), any::<u64>()];
    prop_oneof![
        4 => (key(), value(), prop::option::of(1u64..5000)).prop_map(|(k, v, e)| Mut::Set(k, v, e)),
        2 => key().prop_map(Mut::Delete),
        1 => (key(), n()).prop_map(|(k, n)| Mut::Sum(k, n)),
        1 => (key(), n()).prop_map(|(k, n)| Mut::Min(k, n)),
        1 => (key(), n()).prop_map(|(k, n)| Mut::Max(k, n)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (prop::collection::vec((key(), any::<bool>()), 0..3),
              prop::collection::vec(mutation(), 1..4))
            .prop_map(|(c, m)| Op::Atomic(c, m)),
        3 => key().prop_map(Op::Get),
        1 => prop::collection::vec(key(), 1..=10).prop_map(Op::GetMany),
        3 => (prop::collection::vec(part(), 0..=1), prop::option::of(1usize..6), any::<bool>(),
              1usize..4, 1usize..4)
            .prop_map(|(p, limit, reverse, batch, page)| Op::List {
                prefix: Key::new(p), limit, reverse, batch, page
            }),
        1 => (key(), key(), any::<bool>()).prop_map(|(a, b, r)| Op::ListRange(a, b, r)),
        1 => (1u64..3000).prop_map(Op::Advance),
        1 => Just(Op::Reopen),
    ]
}

async fn open(path: &std::path::Path, clock: &ManualClock) -> Kv {
    OpenOptions::new()
        .clock(clock.clone())
        // The sweep bumps the version counter; keep it out of the model's way. Filtering on
        // read is what this test checks; tests/expiry.rs checks the sweep.
        .expiry_sweep_interval(Duration::from_secs(3600))
        .open(path)
        .await
        .unwrap()
}

async fn collect(kv: &Kv, sel: Selector, opts: ListOptions) -> (Vec<Entry>, Option<String>) {
    let mut stream = kv.list(sel, opts).unwrap();
    let mut out = Vec::new();
    while let Some(e) = stream.try_next().await.unwrap() {
        out.push(e);
    }
    (out, stream.cursor())
}

/// Runs one operation on both sides and compares what each returned.
async fn step(kv: &mut Kv, m: &mut Model, op: &Op, path: &std::path::Path, clock: &ManualClock) {
    match op {
        Op::Atomic(checks, muts) => {
            let mut a = kv.atomic();
            let mut expect_ok = true;
            let mut failed = Vec::new();
            for (i, (k, right)) in checks.iter().enumerate() {
                let enc = k.encode().unwrap();
                let current = m.live(&enc).map(|r| Versionstamp::from_version(r.version));
                let stamp = if *right {
                    current
                } else if current.is_some() {
                    None
                } else {
                    Some(Versionstamp::from_version(m.version + 7))
                };
                if stamp != current {
                    expect_ok = false;
                    failed.push(i as u32);
                }
                a = a.check(k, stamp);
            }
            // Apply to a scratch copy: a type error must leave the model (and store) untouched.
            let mut rows = m.rows.clone();
            let version = m.version + 1;
            let mut type_error = false;
            for mu in muts {
                a = match mu {
                    Mut::Set(k, v, e) => match e {
                        Some(ms) => a.set_with_expiry(k, v.clone(), Duration::from_millis(*ms)),
                        None => a.set(k, v.clone()),
                    },
                    Mut::Delete(k) => a.delete(k),
                    Mut::Sum(k, n) => a.sum(k, *n),
                    Mut::Min(k, n) => a.min(k, *n),
                    Mut::Max(k, n) => a.max(k, *n),
                };
                let live = |rows: &BTreeMap<Vec<u8>, Row>, k: &[u8]| {
                    rows.get(k).filter(|r| r.expire_at.is_none_or(|t| t > m.now)).cloned()
                };
                match mu {
                    Mut::Set(k, v, e) => {
                        let expire_at = e.map(|ms| m.now + ms as i64);
                        rows.insert(
                            k.encode().unwrap(),
                            Row { value: v.clone(), version, expire_at },
                        );
                    }
                    Mut::Delete(k) => {
                        rows.remove(&k.encode().unwrap());
                    }
                    Mut::Sum(k, n) | Mut::Min(k, n) | Mut::Max(k, n) => {
                        let enc = k.encode().unwrap();
                        let new = match live(&rows, &enc).map(|r| r.value) {
                            None => *n,
                            Some(Value::U64(old)) => match mu {
                                Mut::Sum(..) => old.wrapping_add(*n),
                                Mut::Min(..) => old.min(*n),
                                _ => old.max(*n),
                            },
                            Some(_) => {
                                type_error = true;
                                continue;
                            }
                        };
                        rows.insert(enc, Row { value: Value::U64(new), version, expire_at: None });
                    }
                }
            }
            let got = a.commit().await;
            if !expect_ok {
                assert_eq!(got.unwrap(), CommitOutcome::CheckFailed { failed_checks: failed });
            } else if type_error {
                let err = got.unwrap_err();
                assert!(matches!(err, openkv::Error::TypeMismatch(_)), "{err}");
            } else {
                assert_eq!(
                    got.unwrap(),
                    CommitOutcome::Committed { versionstamp: Versionstamp::from_version(version) }
                );
                m.rows = rows;
                m.version = version;
            }
        }
        Op::Get(k) => {
            let got = kv.get(k).await.unwrap();
            assert_eq!(got, m.entry(&k.encode().unwrap()), "get {k}");
        }
        Op::GetMany(keys) => {
            let got = kv.get_many(keys).await.unwrap();
            let want: Vec<_> = keys.iter().map(|k| m.entry(&k.encode().unwrap())).collect();
            assert_eq!(got, want);
        }
        Op::List { prefix, limit, reverse, batch, page } => {
            let p = prefix.encode().unwrap();
            let mut want = m.range(
                &[p.as_slice(), &[0]].concat(),
                &[p.as_slice(), &[0xff]].concat(),
                *reverse,
            );
            if let Some(l) = limit {
                want.truncate(*l);
            }
            let opts = || {
                let o = ListOptions::new().reverse(*reverse).batch_size(*batch);
                match limit {
                    Some(l) => o.limit(*l),
                    None => o,
                }
            };
            let (got, cursor) = collect(kv, Selector::prefix(prefix.clone()), opts()).await;
            assert_eq!(got, want, "list {prefix} {limit:?} reverse={reverse}");
            if limit.is_none_or(|l| want.len() < l) {
                assert_eq!(cursor.as_deref(), Some(""), "exhausted list cursor");
            }
            // Pagination: pages of `page` entries, each resuming from the last cursor, must
            // reassemble the whole list.
            let mut paged: Vec<Entry> = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut o = ListOptions::new().reverse(*reverse).limit(*page);
                if let Some(c) = &cursor {
                    o = o.cursor(c.clone());
                }
                let (chunk, next) = collect(kv, Selector::prefix(prefix.clone()), o).await;
                let n = chunk.len();
                paged.extend(chunk);
                match next {
                    Some(c) if !c.is_empty() && n == *page => cursor = Some(c),
                    _ => break,
                }
            }
            let all = m.range(
                &[p.as_slice(), &[0]].concat(),
                &[p.as_slice(), &[0xff]].concat(),
                *reverse,
            );
            assert_eq!(paged, all, "paginated list {prefix}");
        }
        Op::ListRange(a, b, reverse) => {
            let (ea, eb) = (a.encode().unwrap(), b.encode().unwrap());
            let res = kv
                .list(Selector::range(a.clone(), b.clone()), ListOptions::new().reverse(*reverse));
            if ea > eb {
                let err = res.unwrap_err();
                assert!(matches!(err, openkv::Error::InvalidSelector(_)), "{err}");
            } else {
                let got: Vec<Entry> = res.unwrap().try_collect().await.unwrap();
                assert_eq!(got, m.range(&ea, &eb, *reverse));
            }
        }
        Op::Advance(ms) => {
            clock.advance(Duration::from_millis(*ms));
            m.now += *ms as i64;
        }
        Op::Reopen => {
            kv.close().await.unwrap();
            *kv = open(path, clock).await;
        }
    }
}

#[test]
fn operations_match_a_btreemap_model() {
    run_model(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.sqlite3");
        (path, Some(dir))
    });
}

/// The same model on PostgreSQL (a fresh schema per case), when the test command started a
/// server (`OPENKV_TEST_POSTGRES_URL`); required in CI (`OPENKV_REQUIRE_POSTGRES=1`).
#[test]
fn operations_match_a_btreemap_model_on_postgres() {
    let Ok(base) = std::env::var("OPENKV_TEST_POSTGRES_URL") else {
        assert_ne!(
            std::env::var("OPENKV_REQUIRE_POSTGRES").as_deref(),
            Ok("1"),
            "OPENKV_REQUIRE_POSTGRES=1 but OPENKV_TEST_POSTGRES_URL is not set"
        );
        eprintln!("skipped: OPENKV_TEST_POSTGRES_URL is not set (scripts/test.sh sets it)");
        return;
    };
    let counter = std::sync::atomic::AtomicU32::new(0);
    let run = std::process::id();
    run_model(|| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let url = format!("{base}?openkv_schema=model_{run}_{n}");
        (std::path::PathBuf::from(url), None)
    });
}

/// Runs the model over databases made by `fresh` (a path or URL, and what keeps it alive).
fn run_model(fresh: impl Fn() -> (std::path::PathBuf, Option<tempfile::TempDir>)) {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(96);
    let config = Config {
        cases,
        rng_seed: RngSeed::Fixed(SEED),
        failure_persistence: None,
        ..Config::default()
    };
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut runner = TestRunner::new(config);
    runner
        .run(&prop::collection::vec(op(), 1..60), |ops| {
            rt.block_on(async {
                let (path, _dir) = fresh();
                let clock = ManualClock::new(START_MS);
                let mut kv = open(&path, &clock).await;
                let mut model = Model { now: START_MS, ..Model::default() };
                for op in &ops {
                    step(&mut kv, &mut model, op, &path, &clock).await;
                }
                // Finally everything, both directions, after one more reopen.
                kv.close().await.unwrap();
                let kv = open(&path, &clock).await;
                for reverse in [false, true] {
                    let (got, _) = collect(
                        &kv,
                        Selector::prefix(Key::default()),
                        ListOptions::new().reverse(reverse),
                    )
                    .await;
                    assert_eq!(got, model.range(&[0], &[0xff], reverse));
                }
                kv.close().await.unwrap();
            });
            Ok(())
        })
        .unwrap();
}
