//! The commit planner: what a batch of atomic writes does, decided once for every backend.
//!
//! A backend hands [`plan_batch`] the stored rows of the keys the batch reads
//! ([`keys_to_read`]: checked keys and the keys of `sum`/`min`/`max`), the time, and a way to
//! number its commits; the planner answers with everything the batch does: each write's
//! outcome, the final row of every key a committed write touched, the new queue messages, and
//! the change events to publish. The backend then only flushes the plan in the transaction it
//! read the rows in, and publishes the events after its commit returned.
//!
//! Invariants the planner keeps (and every backend inherits):
//! - A write commits all its mutations and enqueues, or none: a failed check or a rejected
//!   mutation leaves no trace in the plan (no savepoints needed in the engine).
//! - Writes apply in batch order; a later write sees an earlier one's effects (its checks too).
//! - Expired rows are absent to checks and to `sum`/`min`/`max`, also rows the batch itself
//!   wrote already expired.
//! - Committed writes get versionstamps from `versionstamp(0)`, `versionstamp(1)`, … in order;
//!   every row a write stores carries its write's versionstamp.
//! - The result of `sum`/`min`/`max` never expires (as in Deno).

use std::collections::{BTreeMap, HashMap};

use crate::backend::{AtomicWrite, ChangeEvent, CommitOutcome, Enqueue, MutationKind};
use crate::error::{Error, Result};
use crate::sum;
use crate::versionstamp::Versionstamp;

pub use crate::row::Row;

/// Final rows by key (`None`: the key is deleted), in key order: what a backend stores.
pub type Rows = BTreeMap<Vec<u8>, Option<Row>>;

/// One mutation's effect: a key and its new row (`None`: deleted).
type Change = (Vec<u8>, Option<Row>);

/// A new queue message as Deno's tables store it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMessage {
    /// A random UUID.
    pub id: String,
    /// When it is due, Unix milliseconds.
    pub due_ms: i64,
    /// The V8-serialized message.
    pub payload: Vec<u8>,
    /// The backoff schedule, a JSON list of milliseconds (Deno's default if none was given).
    pub backoff_schedule: String,
    /// The dead-letter keys, a JSON list of byte lists.
    pub keys_if_undelivered: String,
}

impl NewMessage {
    fn new(enqueue: &Enqueue, rng: &mut dyn rand::RngCore) -> Result<NewMessage> {
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        let id = uuid::Builder::from_random_bytes(id).into_uuid().to_string();
        let schedule =
            enqueue.backoff_schedule.as_deref().unwrap_or(&crate::queue::DEFAULT_BACKOFF_SCHEDULE);
        Ok(NewMessage {
            id,
            due_ms: enqueue.deadline_ms,
            payload: enqueue.payload.clone(),
            backoff_schedule: to_json(schedule)?,
            keys_if_undelivered: to_json(&enqueue.keys_if_undelivered)?,
        })
    }
}

/// Serializes a stored JSON column (lists of integers cannot fail; a failure is a bug).
pub(crate) fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| Error::Internal(format!("a queue column did not serialize: {e}")))
}

/// Everything a batch of atomic writes does.
#[derive(Debug, Default)]
pub struct BatchPlan {
    /// One outcome per write, in batch order.
    pub outcomes: Vec<Result<CommitOutcome>>,
    /// The final row of every key a committed write touched (`None`: delete it), in key
    /// order.
    pub rows: Rows,
    /// The queue messages committed writes enqueued.
    pub enqueues: Vec<NewMessage>,
    /// One change event per committed write, in commit order.
    pub events: Vec<ChangeEvent>,
}

impl BatchPlan {
    /// The versionstamp of the batch's last committed write; `None` if nothing commits (the
    /// backend then leaves its version counter alone).
    pub fn last_versionstamp(&self) -> Option<Versionstamp> {
        self.events.last().map(|e| e.versionstamp)
    }
}

/// The keys whose stored rows [`plan_batch`] needs, sorted and without repeats: every checked
/// key and every key of a mutation that combines with its stored value.
pub fn keys_to_read(writes: &[AtomicWrite]) -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = writes
        .iter()
        .flat_map(|w| {
            let checked = w.checks.iter().map(|c| &c.key);
            let combined =
                w.mutations.iter().filter(|m| m.kind.combines_stored_value()).map(|m| &m.key);
            checked.chain(combined)
        })
        .cloned()
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Why one write of a batch does not commit, without failing the batch.
enum Rejected {
    CheckFailed(Vec<u32>),
    Invalid(Error),
}

/// Plans a batch. `stored` holds the stored rows of (at least) [`keys_to_read`] — absent keys
/// are simply missing; expired rows may be included, the planner ignores them.
/// `versionstamp(i)` is the versionstamp of the batch's `i`-th committed write (from 0); `rng`
/// makes queue message ids. An `Err` is a failure of the whole batch (a bug, or a versionstamp
/// the backend cannot give); a single write's failure is its outcome.
pub fn plan_batch(
    writes: &[AtomicWrite],
    stored: HashMap<Vec<u8>, Row>,
    now_ms: i64,
    mut versionstamp: impl FnMut(usize) -> Result<Versionstamp>,
    rng: &mut dyn rand::RngCore,
) -> Result<BatchPlan> {
    // The batch's state so far: stored rows, then committed writes' rows (`None`: deleted) —
    // only of the keys some write of the batch reads (checks, sum/min/max): nothing else is
    // ever looked up, so a batch of plain sets copies no row twice.
    let read: std::collections::HashSet<Vec<u8>> = keys_to_read(writes).into_iter().collect();
    let mut view: HashMap<Vec<u8>, Option<Row>> =
        stored.into_iter().map(|(k, row)| (k, Some(row))).collect();
    let mut plan = BatchPlan { outcomes: Vec::with_capacity(writes.len()), ..Default::default() };
    for write in writes {
        let vs = versionstamp(plan.events.len())?;
        match plan_write(&view, write, vs, now_ms) {
            Ok(changes) => {
                for e in &write.enqueues {
                    plan.enqueues.push(NewMessage::new(e, rng)?);
                }
                let keys: Vec<Vec<u8>> = changes.iter().map(|(k, _)| k.clone()).collect();
                for (key, row) in changes {
                    if read.contains(&key) {
                        view.insert(key.clone(), row.clone());
                    }
                    plan.rows.insert(key, row);
                }
                plan.events.push(ChangeEvent { versionstamp: vs, keys: keys.into() });
                plan.outcomes.push(Ok(CommitOutcome::Committed { versionstamp: vs }));
            }
            Err(Rejected::CheckFailed(failed_checks)) => {
                plan.outcomes.push(Ok(CommitOutcome::CheckFailed { failed_checks }))
            }
            Err(Rejected::Invalid(e)) => plan.outcomes.push(Err(e)),
        }
    }
    Ok(plan)
}

/// One write's changes at `vs`, in mutation order (a key changed twice is listed twice; the
/// later change wins), or why it does not commit. Reads `view`, never writes it.
fn plan_write(
    view: &HashMap<Vec<u8>, Option<Row>>,
    write: &AtomicWrite,
    vs: Versionstamp,
    now_ms: i64,
) -> std::result::Result<Vec<Change>, Rejected> {
    let live = |row: Option<&Row>| row.filter(|r| r.is_live(now_ms)).cloned();
    let failed: Vec<u32> = write
        .checks
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            live(view.get(&c.key).and_then(Option::as_ref)).map(|r| r.versionstamp)
                != c.versionstamp
        })
        .map(|(i, _)| i as u32)
        .collect();
    if !failed.is_empty() {
        return Err(Rejected::CheckFailed(failed));
    }
    let mut changes: Vec<Change> = Vec::with_capacity(write.mutations.len());
    for m in &write.mutations {
        // The key's live row as this write has left it so far.
        let current = || match changes.iter().rev().find(|(k, _)| *k == m.key) {
            Some((_, row)) => live(row.as_ref()),
            None => live(view.get(&m.key).and_then(Option::as_ref)),
        };
        // Every kind is listed: a new one must be planned here before it compiles.
        let change = match &m.kind {
            MutationKind::Set(value) => (m.key.clone(), Some(Row::new(value, vs, m.expire_at_ms))),
            MutationKind::Delete => (m.key.clone(), None),
            MutationKind::SetSuffixVersionstampedKey(value) => (
                crate::backend::versionstamped_key(&m.key, vs),
                Some(Row::new(value, vs, m.expire_at_ms)),
            ),
            MutationKind::Sum(operand) => {
                let new = sum::sum(stored(current()), operand).map_err(Rejected::Invalid)?;
                (m.key.clone(), Some(Row::new(&new, vs, None)))
            }
            MutationKind::SumWithLimits { operand, min, max, clamp } => {
                let new =
                    sum::apply(stored(current()), operand, min.as_ref(), max.as_ref(), *clamp)
                        .map_err(Rejected::Invalid)?;
                (m.key.clone(), Some(Row::new(&new, vs, None)))
            }
            MutationKind::Min(operand) => {
                let new = sum::u64_op("min", std::cmp::min, stored(current()), operand)
                    .map_err(Rejected::Invalid)?;
                (m.key.clone(), Some(Row::new(&new, vs, None)))
            }
            MutationKind::Max(operand) => {
                let new = sum::u64_op("max", std::cmp::max, stored(current()), operand)
                    .map_err(Rejected::Invalid)?;
                (m.key.clone(), Some(Row::new(&new, vs, None)))
            }
        };
        changes.push(change);
    }
    Ok(changes)
}

/// A row in the form the numeric mutations read: `(bytes, encoding, _)`.
fn stored(row: Option<Row>) -> Option<(Vec<u8>, i64, i64)> {
    row.map(|r| (r.bytes, r.encoding, 0))
}

#[cfg(test)]
mod tests {
    //! The planner alone, on rows in memory: what every backend inherits.

    use crate::value::Value;

    use rand::SeedableRng;

    use super::*;
    use crate::backend::{Check, Mutation};

    const NOW: i64 = 1_000_000;

    fn vs(n: u64) -> Versionstamp {
        Versionstamp::from_version(n)
    }

    fn set(key: &[u8], value: Value, expire_at_ms: Option<i64>) -> Mutation {
        Mutation { key: key.to_vec(), kind: MutationKind::Set(value), expire_at_ms }
    }

    fn sum(key: &[u8], n: u64) -> Mutation {
        Mutation { key: key.to_vec(), kind: MutationKind::Sum(Value::U64(n)), expire_at_ms: None }
    }

    fn check(key: &[u8], versionstamp: Option<Versionstamp>) -> Check {
        Check { key: key.to_vec(), versionstamp }
    }

    fn write(checks: Vec<Check>, mutations: Vec<Mutation>) -> AtomicWrite {
        AtomicWrite { checks, mutations, enqueues: Vec::new() }
    }

    /// Plans `writes` over `stored`, committed write `i` at version `11 + i`.
    fn plan(writes: &[AtomicWrite], stored: Vec<(&[u8], Row)>) -> BatchPlan {
        let stored = stored.into_iter().map(|(k, r)| (k.to_vec(), r)).collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        plan_batch(writes, stored, NOW, |i| Ok(vs(11 + i as u64)), &mut rng).unwrap()
    }

    fn row(value: Value, at: u64, expire_at_ms: Option<i64>) -> Row {
        Row::new(&value, vs(at), expire_at_ms)
    }

    #[test]
    fn committed_writes_take_consecutive_versionstamps_and_later_writes_see_earlier_ones() {
        let writes = [
            write(vec![check(b"a", None)], vec![set(b"a", Value::Bytes(b"1".to_vec()), None)]),
            // Sees the first write's row: its check of "a" must now name version 11.
            write(vec![check(b"a", Some(vs(11)))], vec![sum(b"n", 2)]),
            write(vec![check(b"a", None)], vec![sum(b"n", 100)]),
            write(vec![], vec![sum(b"n", 3)]),
        ];
        let p = plan(&writes, vec![]);
        let stamps: Vec<Option<Versionstamp>> =
            p.outcomes.iter().map(|o| o.as_ref().unwrap().versionstamp()).collect();
        assert_eq!(stamps, vec![Some(vs(11)), Some(vs(12)), None, Some(vs(13))]);
        assert_eq!(p.rows[b"n".as_slice()], Some(row(Value::U64(5), 13, None)));
        assert_eq!(p.last_versionstamp(), Some(vs(13)));
        assert_eq!(p.events.len(), 3);
    }

    #[test]
    fn a_rejected_mutation_leaves_no_trace_of_its_write() {
        let stored = vec![(b"s".as_slice(), row(Value::Bytes(b"text".to_vec()), 3, None))];
        // The set of "x" comes before the sum that fails on the non-number "s".
        let writes = [
            write(vec![], vec![set(b"x", Value::U64(1), None), sum(b"s", 1)]),
            write(vec![], vec![]),
        ];
        let p = plan(&writes, stored);
        assert!(matches!(p.outcomes[0], Err(Error::TypeMismatch(_))), "{:?}", p.outcomes[0]);
        assert!(!p.rows.contains_key(b"x".as_slice()), "half of a rejected write was planned");
        // The next write still commits, at the first version.
        assert_eq!(p.outcomes[1].as_ref().unwrap().versionstamp(), Some(vs(11)));
    }

    #[test]
    fn expired_rows_are_absent_to_checks_and_sums_also_when_the_batch_wrote_them() {
        let stored = vec![(b"old".as_slice(), row(Value::U64(9), 2, Some(NOW)))];
        let writes = [
            // Stored but expired at NOW: absent.
            write(vec![check(b"old", None)], vec![sum(b"old", 1)]),
            // Written by this batch already expired: absent to the next write's check too.
            write(vec![], vec![set(b"gone", Value::U64(1), Some(NOW - 1))]),
            write(vec![check(b"gone", None)], vec![]),
        ];
        let p = plan(&writes, stored);
        assert!(p.outcomes.iter().all(|o| o.as_ref().unwrap().is_committed()), "{:?}", p.outcomes);
        // A sum's result never expires and starts from the operand when the row expired.
        assert_eq!(p.rows[b"old".as_slice()], Some(row(Value::U64(1), 11, None)));
    }

    #[test]
    fn every_failed_check_is_reported_by_index() {
        let stored = vec![(b"a".as_slice(), row(Value::U64(1), 5, None))];
        let writes = [write(
            vec![check(b"a", Some(vs(5))), check(b"a", None), check(b"b", Some(vs(1)))],
            vec![set(b"a", Value::U64(2), None)],
        )];
        let p = plan(&writes, stored);
        assert_eq!(
            p.outcomes[0].as_ref().unwrap(),
            &CommitOutcome::CheckFailed { failed_checks: vec![1, 2] }
        );
        assert!(p.rows.is_empty() && p.events.is_empty() && p.last_versionstamp().is_none());
    }

    #[test]
    fn keys_to_read_are_checked_and_combined_keys_once_each() {
        let writes = [
            write(vec![check(b"c", None)], vec![set(b"s", Value::U64(1), None), sum(b"n", 1)]),
            write(vec![check(b"n", None)], vec![sum(b"n", 1)]),
        ];
        assert_eq!(keys_to_read(&writes), vec![b"c".to_vec(), b"n".to_vec()]);
    }

    #[test]
    fn versionstamped_keys_and_enqueues_are_planned_with_their_write() {
        let mut w = write(
            vec![],
            vec![Mutation {
                key: b"\x02log\x00".to_vec(),
                kind: MutationKind::SetSuffixVersionstampedKey(Value::U64(1)),
                expire_at_ms: None,
            }],
        );
        w.enqueues.push(Enqueue {
            payload: vec![1, 2],
            deadline_ms: NOW + 5,
            keys_if_undelivered: vec![b"\x02dead\x00".to_vec()],
            backoff_schedule: None,
        });
        let p = plan(&[w], vec![]);
        let key = crate::backend::versionstamped_key(b"\x02log\x00", vs(11));
        assert_eq!(p.rows[&key], Some(row(Value::U64(1), 11, None)));
        assert_eq!(p.events[0].keys.as_ref(), [key]);
        assert_eq!(p.enqueues.len(), 1);
        assert_eq!(p.enqueues[0].due_ms, NOW + 5);
        assert_eq!(p.enqueues[0].backoff_schedule, "[100,1000,5000,30000,60000]");
        assert_eq!(
            p.enqueues[0].keys_if_undelivered,
            to_json(&[b"\x02dead\x00".to_vec()]).unwrap()
        );
    }
}
