//! Versionstamps: every commit writes a few fresh keys; at the end one strong read collects
//! every key with the versionstamp it carries. Then:
//! - each commit's versionstamp is its own ([`DuplicateVersionstamp`](AnomalyKind::DuplicateVersionstamp));
//! - a commit invoked after another was acknowledged has a larger one, whichever server or
//!   process took them ([`VersionstampOrder`](AnomalyKind::VersionstampOrder));
//! - every key of an acknowledged commit is there ([`LostWrite`](AnomalyKind::LostWrite))
//!   with the versionstamp the commit returned ([`WrongVersionstamp`](AnomalyKind::WrongVersionstamp));
//! - the keys of a commit of unknown outcome are all there with one versionstamp, or none is
//!   ([`TornCommit`](AnomalyKind::TornCommit));
//! - nothing else is there: no key of a failed commit ([`AbortedRead`](AnomalyKind::AbortedRead)),
//!   no key nobody wrote ([`PhantomWrite`](AnomalyKind::PhantomWrite)).
//!
//! A commit of unknown outcome that is visible joins the order checks with the versionstamp
//! its keys carry (as a later operation only: when it completed is unknown).

use std::collections::{BTreeMap, HashMap};

use super::{stamp_hex, Anomaly, AnomalyKind};
use crate::history::{Op, Outcome};

/// A commit setting fresh keys (their ids, unique across the run).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StampCall {
    /// The ids of the keys it sets.
    pub keys: Vec<u64>,
}

/// The versionstamp a commit returned.
pub type StampRet = [u8; 10];

/// Caps the anomalies of one kind in a report (a broken versionstamp source breaks them all).
const SHOWN: usize = 20;

/// Every anomaly of `history`, given the final state: key id → versionstamp.
pub fn check(
    history: &[Op<StampCall, StampRet>],
    final_state: &BTreeMap<u64, [u8; 10]>,
) -> Vec<Anomaly> {
    let mut anomalies = Vec::new();
    let push = |anomalies: &mut Vec<Anomaly>, kind: AnomalyKind, detail: String| {
        if anomalies.iter().filter(|a: &&Anomaly| a.kind == kind).count() < SHOWN {
            anomalies.push(Anomaly::new(kind, detail));
        }
    };
    let who = |i: usize| {
        let op = &history[i];
        format!(
            "commit of client {} at {} ms (keys {:?})",
            op.client,
            op.invoke / 1_000_000,
            op.call.keys
        )
    };
    // The final state, against the history.
    let mut writer: HashMap<u64, usize> = HashMap::new();
    for (i, op) in history.iter().enumerate() {
        for k in &op.call.keys {
            writer.insert(*k, i);
        }
    }
    for k in final_state.keys() {
        if !writer.contains_key(k) {
            push(
                &mut anomalies,
                AnomalyKind::PhantomWrite,
                format!("key {k} exists, but nobody wrote it"),
            );
        }
    }
    // Each commit's effective versionstamp: returned, or seen on its keys.
    let mut effective: Vec<Option<[u8; 10]>> = vec![None; history.len()];
    for (i, op) in history.iter().enumerate() {
        let present: Vec<(u64, [u8; 10])> =
            op.call.keys.iter().filter_map(|k| final_state.get(k).map(|s| (*k, *s))).collect();
        match &op.outcome {
            Outcome::Ok(stamp) => {
                effective[i] = Some(*stamp);
                for k in &op.call.keys {
                    match final_state.get(k) {
                        None => push(
                            &mut anomalies,
                            AnomalyKind::LostWrite,
                            format!("key {k} of the acknowledged {} is missing", who(i)),
                        ),
                        Some(s) if s != stamp => push(
                            &mut anomalies,
                            AnomalyKind::WrongVersionstamp,
                            format!(
                                "key {k} of {} carries {} but the commit returned {}",
                                who(i),
                                stamp_hex(s),
                                stamp_hex(stamp)
                            ),
                        ),
                        Some(_) => {}
                    }
                }
            }
            Outcome::Info => {
                if present.is_empty() {
                    continue;
                }
                let first = present[0].1;
                if present.len() != op.call.keys.len() || present.iter().any(|(_, s)| *s != first) {
                    push(
                        &mut anomalies,
                        AnomalyKind::TornCommit,
                        format!("{} (outcome unknown) left {present:?} of its keys", who(i)),
                    );
                }
                effective[i] = Some(first);
            }
            Outcome::Fail => {
                if !present.is_empty() {
                    push(
                        &mut anomalies,
                        AnomalyKind::AbortedRead,
                        format!("{} failed, but its keys {present:?} exist", who(i)),
                    );
                }
            }
        }
    }
    // Unique.
    let mut by_stamp: HashMap<[u8; 10], usize> = HashMap::new();
    for (i, stamp) in effective.iter().enumerate() {
        let Some(stamp) = stamp else { continue };
        if let Some(other) = by_stamp.insert(*stamp, i) {
            push(
                &mut anomalies,
                AnomalyKind::DuplicateVersionstamp,
                format!(
                    "{} and {} both have versionstamp {}",
                    who(other),
                    who(i),
                    stamp_hex(stamp)
                ),
            );
        }
    }
    // Increasing in real time: walk invocations in order, knowing the largest versionstamp
    // of every commit acknowledged before.
    let mut completions: Vec<(u64, usize)> = history
        .iter()
        .enumerate()
        .filter_map(|(i, op)| Some((op.complete?, i)))
        .filter(|(_, i)| effective[*i].is_some() && matches!(history[*i].outcome, Outcome::Ok(_)))
        .collect();
    completions.sort_unstable();
    let mut invocations: Vec<(u64, usize)> = history
        .iter()
        .enumerate()
        .filter(|(i, _)| effective[*i].is_some())
        .map(|(i, op)| (op.invoke, i))
        .collect();
    invocations.sort_unstable();
    let mut done = 0;
    let mut max_before: Option<([u8; 10], usize)> = None;
    for (invoke, i) in invocations {
        while done < completions.len() && completions[done].0 < invoke {
            let j = completions[done].1;
            let s = effective[j].unwrap_or_default();
            if max_before.is_none_or(|(m, _)| s > m) {
                max_before = Some((s, j));
            }
            done += 1;
        }
        let mine = effective[i].unwrap_or_default();
        if let Some((m, j)) = max_before {
            if mine <= m {
                push(
                    &mut anomalies,
                    AnomalyKind::VersionstampOrder,
                    format!(
                        "{} got {} although {} had {} and was acknowledged before it started",
                        who(i),
                        stamp_hex(&mine),
                        who(j),
                        stamp_hex(&m)
                    ),
                );
            }
        }
    }
    anomalies
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(client: usize, t: (u64, u64), keys: &[u64], stamp: u64) -> Op<StampCall, StampRet> {
        Op {
            client,
            invoke: t.0,
            complete: Some(t.1),
            call: StampCall { keys: keys.to_vec() },
            outcome: Outcome::Ok(vs(stamp)),
        }
    }

    fn vs(n: u64) -> [u8; 10] {
        let mut s = [0; 10];
        s[..8].copy_from_slice(&n.to_be_bytes());
        s
    }

    fn state(pairs: &[(u64, u64)]) -> BTreeMap<u64, [u8; 10]> {
        pairs.iter().map(|(k, s)| (*k, vs(*s))).collect()
    }

    fn kinds(a: &[Anomaly]) -> Vec<AnomalyKind> {
        let mut k: Vec<_> = a.iter().map(|a| a.kind).collect();
        k.sort();
        k.dedup();
        k
    }

    #[test]
    fn a_correct_history_passes() {
        let h = vec![
            commit(0, (0, 2), &[1, 2], 5),
            commit(1, (1, 3), &[3], 4),
            commit(0, (4, 5), &[4], 9),
        ];
        assert_eq!(check(&h, &state(&[(1, 5), (2, 5), (3, 4), (4, 9)])), vec![]);
    }

    #[test]
    fn each_violation_is_named() {
        // A reused versionstamp, out of real-time order.
        let h = vec![commit(0, (0, 1), &[1], 5), commit(1, (2, 3), &[2], 5)];
        let found = kinds(&check(&h, &state(&[(1, 5), (2, 5)])));
        assert_eq!(found, vec![AnomalyKind::DuplicateVersionstamp, AnomalyKind::VersionstampOrder]);
        // A lost key, a key with another stamp (applied twice), a phantom key.
        let h = vec![commit(0, (0, 1), &[1, 2], 5)];
        let found = kinds(&check(&h, &state(&[(1, 7), (3, 1)])));
        assert_eq!(
            found,
            vec![AnomalyKind::LostWrite, AnomalyKind::PhantomWrite, AnomalyKind::WrongVersionstamp]
        );
        // Unknown outcome: half there.
        let mut unknown = commit(0, (0, 1), &[1, 2], 0);
        unknown.outcome = Outcome::Info;
        unknown.complete = None;
        assert_eq!(check(&[unknown.clone()], &state(&[])), vec![]);
        assert_eq!(check(&[unknown.clone()], &state(&[(1, 3), (2, 3)])), vec![]);
        assert_eq!(kinds(&check(&[unknown], &state(&[(1, 3)]))), vec![AnomalyKind::TornCommit]);
        // A failed commit's keys exist.
        let mut failed = commit(0, (0, 1), &[1], 0);
        failed.outcome = Outcome::Fail;
        assert_eq!(kinds(&check(&[failed], &state(&[(1, 3)]))), vec![AnomalyKind::AbortedRead]);
    }
}
