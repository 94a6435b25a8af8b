//! What a backend counts in its [`EngineStats`], decided once: each function takes what the
//! backend has at hand anyway (a batch and its result, a read's entries, a finish decision)
//! so that every backend counts the same things the same way.
//!
//! Every function is called after the transaction it describes ended — a batch, a finish or
//! a sweep transaction retried on a busy file is counted once, with its final outcome.

use std::time::Duration;

use super::finish::Finish;
use super::plan::BatchPlan;
use crate::backend::{AtomicWrite, CommitOutcome, RawEntry};
use crate::error::Result;
use crate::stats::{Delivery, EngineStats};

/// Counts one batch transaction of `writes` that took `took` and ended with `result`: its
/// size and duration, each write's outcome, and the mutations of the committed ones. A
/// failed transaction (`Err`) counts every write as an error and nothing as written.
pub fn record_batch(
    stats: &EngineStats,
    writes: &[AtomicWrite],
    result: &Result<BatchPlan>,
    took: Duration,
) {
    stats.record_batch(writes.len(), took);
    let plan = match result {
        Ok(plan) => plan,
        Err(_) => return stats.record_commits(0, 0, writes.len() as u64),
    };
    let (mut ok, mut check_failed, mut error) = (0, 0, 0);
    let (mut entries, mut bytes) = (0u64, 0u64);
    // The planner answers one outcome per write, in order.
    for (write, outcome) in writes.iter().zip(&plan.outcomes) {
        match outcome {
            Ok(CommitOutcome::Committed { .. }) => {
                ok += 1;
                for m in &write.mutations {
                    entries += 1;
                    let value = m.kind.value().map_or(0, |v| v.encoded_len());
                    bytes += (m.key.len() + value) as u64;
                }
            }
            Ok(CommitOutcome::CheckFailed { .. }) => check_failed += 1,
            Err(_) => error += 1,
        }
    }
    stats.record_commits(ok, check_failed, error);
    stats.record_written(entries, bytes);
}

/// Counts the entries a snapshot read returned and their key + value bytes.
pub fn record_read(stats: &EngineStats, results: &[Vec<RawEntry>]) {
    let (mut entries, mut bytes) = (0u64, 0u64);
    for entry in results.iter().flatten() {
        entries += 1;
        bytes += (entry.key.len() + entry.value.encoded_len()) as u64;
    }
    stats.record_read(entries, bytes);
}

/// Counts keys the expiry sweep deleted at `now_ms`, each by how long ago it expired
/// (`expired_at_ms`; a clock that went back counts as no lag).
pub fn record_swept(
    stats: &EngineStats,
    now_ms: i64,
    expired_at_ms: impl IntoIterator<Item = i64>,
) {
    for at in expired_at_ms {
        let lag = u64::try_from(now_ms.saturating_sub(at)).unwrap_or(0);
        stats.record_expired(Duration::from_millis(lag));
    }
}

/// How an attempt that ended with `finish` counts: delivered if the handler succeeded,
/// retried if the message is due again, dead-lettered if it is removed after a failure.
pub fn delivery(delivered: bool, finish: &Finish) -> Delivery {
    if delivered {
        return Delivery::Delivered;
    }
    match finish {
        Finish::Retry { .. } => Delivery::Retried,
        Finish::Remove { .. } => Delivery::DeadLettered,
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::backend::{Check, Mutation, MutationKind};
    use crate::engine::plan::plan_batch;
    use crate::value::Value;
    use crate::versionstamp::Versionstamp;
    use crate::Error;

    fn set(key: &[u8], value: &[u8]) -> Mutation {
        Mutation {
            key: key.to_vec(),
            kind: MutationKind::Set(Value::Bytes(value.to_vec())),
            expire_at_ms: None,
        }
    }

    #[test]
    fn a_batch_counts_each_outcome_and_only_committed_mutations() {
        let writes = [
            AtomicWrite {
                mutations: vec![set(b"ab", b"xyz"), set(b"c", b"")],
                ..Default::default()
            },
            // Fails its check ("k" does not exist at version 1): not written.
            AtomicWrite {
                checks: vec![Check {
                    key: b"k".to_vec(),
                    versionstamp: Some(Versionstamp::from_version(1)),
                }],
                mutations: vec![set(b"k", b"vvvvvvv")],
                ..Default::default()
            },
            // A sum on bytes: rejected with an error.
            AtomicWrite {
                mutations: vec![
                    set(b"s", b"text"),
                    Mutation {
                        key: b"s".to_vec(),
                        kind: MutationKind::Sum(Value::U64(1)),
                        expire_at_ms: None,
                    },
                ],
                ..Default::default()
            },
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let plan = plan_batch(
            &writes,
            Default::default(),
            0,
            |i| Ok(Versionstamp::from_version(1 + i as u64)),
            &mut rng,
        );
        let stats = EngineStats::new();
        record_batch(&stats, &writes, &plan, Duration::from_millis(2));
        let s = stats.snapshot();
        assert_eq!((s.commits_ok, s.commits_check_failed, s.commits_error), (1, 1, 1));
        // "ab" + "xyz" and "c" + "".
        assert_eq!((s.written_entries, s.written_bytes), (2, 6));
        assert_eq!((s.batch_size.count, s.batch_size.sum), (1, 3.0));
        assert_eq!(s.commit_duration.sum, 0.002);

        record_batch(&stats, &writes, &Err(Error::Closed), Duration::ZERO);
        let s = stats.snapshot();
        assert_eq!((s.commits_ok, s.commits_error, s.written_entries), (1, 4, 2));
    }

    #[test]
    fn a_read_counts_entries_and_their_key_and_value_bytes() {
        let entry = |key: &[u8], value: Value| RawEntry {
            key: key.to_vec(),
            value,
            versionstamp: Versionstamp::from_version(1),
            expire_at_ms: None,
        };
        let stats = EngineStats::new();
        let results =
            vec![vec![entry(b"ab", Value::U64(1)), entry(b"c", Value::Bytes(vec![0; 5]))], vec![]];
        record_read(&stats, &results);
        let s = stats.snapshot();
        assert_eq!((s.read_entries, s.read_bytes), (2, 2 + 8 + 1 + 5));
    }

    #[test]
    fn a_sweep_counts_each_key_by_its_lag() {
        let stats = EngineStats::new();
        record_swept(&stats, 10_000, [9_000, 10_000, 12_000]);
        let s = stats.snapshot();
        assert_eq!(s.expired_swept, 3);
        // 1 s, none, and a clock that went back: none.
        assert_eq!(s.expiry_lag.sum, 1.0);
        assert_eq!(s.expiry_lag.cumulative[0], 2);
    }

    #[test]
    fn an_attempt_counts_by_what_the_finish_rule_decided() {
        let removed = Finish::Remove { dead_letters: vec![] };
        let retry = Finish::Retry { due_ms: 1, backoff_schedule: "[]".into() };
        assert_eq!(delivery(true, &removed), Delivery::Delivered);
        assert_eq!(delivery(false, &retry), Delivery::Retried);
        assert_eq!(delivery(false, &removed), Delivery::DeadLettered);
    }
}
