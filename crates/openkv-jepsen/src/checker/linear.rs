//! Linearizability of one register: the Wing–Gong search with Lowe's memoization (the
//! algorithm of Knossos and porcupine), over one key's history.
//!
//! The history is a list of call and return entries in time order. The search walks it,
//! tentatively linearizing (applying to the model) an operation whose call it meets, and
//! backtracking when it meets the return of an operation not yet linearized — that operation
//! had to take effect before it returned. A `(linearized set, state)` pair already explored
//! is never explored again, which keeps histories with a handful of concurrent clients fast.
//!
//! Operations with an unknown outcome ([`Outcome::Info`]) return "at infinity": the search
//! may place them anywhere after their call, including after everything else, where they
//! change nothing anyone observed — "may or may not have happened". A definitely failed
//! operation had no effect and is left out. A read that failed says nothing either.

use std::collections::HashSet;

use crate::history::{Op, Outcome};

/// An operation on a register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegCall {
    /// Read the value.
    Read,
    /// Write a value.
    Write(u64),
    /// Compare-and-set: if the value is `.0`, write `.1`.
    Cas(u64, u64),
}

/// What a register operation returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegRet {
    /// The value read (`None`: never written).
    Read(Option<u64>),
    /// The write applied.
    Written,
    /// Whether the compare-and-set swapped.
    Cas(bool),
}

/// The answer of the search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Some total order of the operations, consistent with real time, explains every result.
    Linearizable,
    /// None does; the operation (index into the history given) the search could not place.
    NotLinearizable {
        /// Index of an operation whose return no linearization reached.
        stuck_at: usize,
    },
    /// The search gave up after its step budget (a history too concurrent to decide).
    Undecided,
}

/// The model: a register holding `None` until written. Returns whether `call` with result
/// `ret` (`None` for an operation of unknown outcome) is legal in `state`, and the new state.
fn step(state: Option<u64>, call: RegCall, ret: Option<RegRet>) -> Option<Option<u64>> {
    match (call, ret) {
        (RegCall::Read, Some(RegRet::Read(v))) => (v == state).then_some(state),
        (RegCall::Read, _) => Some(state),
        (RegCall::Write(v), Some(RegRet::Written) | None) => Some(Some(v)),
        (RegCall::Cas(from, to), Some(RegRet::Cas(true))) => {
            (state == Some(from)).then_some(Some(to))
        }
        (RegCall::Cas(from, _), Some(RegRet::Cas(false))) => (state != Some(from)).then_some(state),
        // Unknown outcome: if it took effect here, it swapped exactly when the value matched.
        (RegCall::Cas(from, to), None) => Some(if state == Some(from) { Some(to) } else { state }),
        // A result that does not belong to the call (a bug in the workload): never legal.
        (RegCall::Write(_) | RegCall::Cas(..), Some(_)) => None,
    }
}

/// Checks one register's history. `budget` bounds the search steps.
pub fn check_register(history: &[Op<RegCall, RegRet>], budget: u64) -> Verdict {
    // The operations that matter: completed ones and those of unknown outcome (reads of
    // unknown outcome and failed operations observed and changed nothing).
    let ops: Vec<(usize, &Op<RegCall, RegRet>)> = history
        .iter()
        .enumerate()
        .filter(|(_, op)| match (&op.outcome, op.call) {
            (Outcome::Ok(_), _) => true,
            (Outcome::Info, RegCall::Read) => false,
            (Outcome::Info, _) => true,
            (Outcome::Fail, _) => false,
        })
        .collect();
    let n = ops.len();
    if n == 0 {
        return Verdict::Linearizable;
    }
    // Entries 0..n are calls, n..2n returns; 2n is the list's head sentinel.
    let mut order: Vec<(u64, u8, usize)> = Vec::with_capacity(2 * n);
    for (i, (_, op)) in ops.iter().enumerate() {
        order.push((op.invoke, 0, i));
        // At equal times a return sorts after a call: the two overlap (the weaker claim).
        order.push((op.complete.unwrap_or(u64::MAX), 1, n + i));
    }
    order.sort_unstable();
    let head = 2 * n;
    let mut next = vec![usize::MAX; 2 * n + 1];
    let mut prev = vec![usize::MAX; 2 * n + 1];
    let mut last = head;
    for &(_, _, e) in &order {
        next[last] = e;
        prev[e] = last;
        last = e;
    }
    const END: usize = usize::MAX;
    next[last] = END;

    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, e: usize| {
        let (p, x) = (prev[e], next[e]);
        next[p] = x;
        if x != END {
            prev[x] = p;
        }
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, e: usize| {
        let (p, x) = (prev[e], next[e]);
        next[p] = e;
        if x != END {
            prev[x] = e;
        }
    };

    let words = n.div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut state: Option<u64> = None;
    let mut cache: HashSet<(Vec<u64>, Option<u64>)> = HashSet::new();
    let mut stack: Vec<(usize, Option<u64>)> = Vec::new();
    let mut entry = next[head];
    let mut steps = 0u64;
    while next[head] != END {
        steps += 1;
        if steps > budget {
            return Verdict::Undecided;
        }
        if entry == END {
            // Every remaining entry was tried; only returns are left to meet (cannot happen:
            // a return always follows its call), so this history has no linearization.
            return Verdict::NotLinearizable { stuck_at: ops[0].0 };
        }
        if entry < n {
            let i = entry;
            let (_, op) = ops[i];
            let ret = match &op.outcome {
                Outcome::Ok(r) => Some(*r),
                _ => None,
            };
            if let Some(new_state) = step(state, op.call, ret) {
                linearized[i / 64] |= 1 << (i % 64);
                if cache.insert((linearized.clone(), new_state)) {
                    stack.push((i, state));
                    state = new_state;
                    unlink(&mut next, &mut prev, i);
                    unlink(&mut next, &mut prev, n + i);
                    entry = next[head];
                    continue;
                }
                linearized[i / 64] &= !(1 << (i % 64));
            }
            entry = next[entry];
        } else {
            // The return of an operation not linearized yet: undo the last choice.
            let Some((i, old_state)) = stack.pop() else {
                return Verdict::NotLinearizable { stuck_at: ops[entry - n].0 };
            };
            state = old_state;
            linearized[i / 64] &= !(1 << (i % 64));
            relink(&mut next, &mut prev, n + i);
            relink(&mut next, &mut prev, i);
            entry = next[i];
        }
    }
    Verdict::Linearizable
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(
        client: usize,
        invoke: u64,
        complete: Option<u64>,
        call: RegCall,
        ret: Option<RegRet>,
    ) -> Op<RegCall, RegRet> {
        let outcome = match (complete, ret) {
            (None, _) => Outcome::Info,
            (Some(_), Some(r)) => Outcome::Ok(r),
            (Some(_), None) => Outcome::Fail,
        };
        Op { client, invoke, complete, call, outcome }
    }

    const BUDGET: u64 = 1_000_000;

    #[test]
    fn sequential_histories() {
        let h = vec![
            op(0, 0, Some(1), RegCall::Read, Some(RegRet::Read(None))),
            op(0, 2, Some(3), RegCall::Write(1), Some(RegRet::Written)),
            op(0, 4, Some(5), RegCall::Read, Some(RegRet::Read(Some(1)))),
            op(0, 6, Some(7), RegCall::Cas(1, 2), Some(RegRet::Cas(true))),
            op(0, 8, Some(9), RegCall::Cas(1, 3), Some(RegRet::Cas(false))),
            op(0, 10, Some(11), RegCall::Read, Some(RegRet::Read(Some(2)))),
        ];
        assert_eq!(check_register(&h, BUDGET), Verdict::Linearizable);
        // A stale read after the write completed is not.
        let mut bad = h.clone();
        bad[2] = op(0, 4, Some(5), RegCall::Read, Some(RegRet::Read(None)));
        assert!(matches!(check_register(&bad, BUDGET), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn concurrent_operations_may_take_effect_in_either_order() {
        // A write of 1 overlapping two reads that see 1 then nothing: the second read
        // started after the first completed, so values cannot go back.
        let h = vec![
            op(0, 0, Some(10), RegCall::Write(1), Some(RegRet::Written)),
            op(1, 1, Some(2), RegCall::Read, Some(RegRet::Read(Some(1)))),
            op(2, 3, Some(4), RegCall::Read, Some(RegRet::Read(None))),
        ];
        assert!(matches!(check_register(&h, BUDGET), Verdict::NotLinearizable { .. }));
        // Both reads seeing either value while the write is in flight is fine.
        let h = vec![
            op(0, 0, Some(10), RegCall::Write(1), Some(RegRet::Written)),
            op(1, 1, Some(2), RegCall::Read, Some(RegRet::Read(None))),
            op(2, 3, Some(4), RegCall::Read, Some(RegRet::Read(Some(1)))),
        ];
        assert_eq!(check_register(&h, BUDGET), Verdict::Linearizable);
    }

    #[test]
    fn unknown_outcomes_may_or_may_not_have_happened() {
        // A write whose answer was lost, and reads after it seeing it or not: both fine,
        // as long as they do not flip back.
        let seen = vec![
            op(0, 0, None, RegCall::Write(7), None),
            op(1, 5, Some(6), RegCall::Read, Some(RegRet::Read(Some(7)))),
        ];
        assert_eq!(check_register(&seen, BUDGET), Verdict::Linearizable);
        let unseen = vec![
            op(0, 0, None, RegCall::Write(7), None),
            op(1, 5, Some(6), RegCall::Read, Some(RegRet::Read(None))),
        ];
        assert_eq!(check_register(&unseen, BUDGET), Verdict::Linearizable);
        let flipped = vec![
            op(0, 0, None, RegCall::Write(7), None),
            op(1, 5, Some(6), RegCall::Read, Some(RegRet::Read(Some(7)))),
            op(1, 7, Some(8), RegCall::Read, Some(RegRet::Read(None))),
        ];
        assert!(matches!(check_register(&flipped, BUDGET), Verdict::NotLinearizable { .. }));
        // A failed write is left out: seeing its value is a violation.
        let failed = vec![
            op(0, 0, Some(1), RegCall::Write(7), None),
            op(1, 5, Some(6), RegCall::Read, Some(RegRet::Read(Some(7)))),
        ];
        assert!(matches!(check_register(&failed, BUDGET), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn two_compare_and_sets_from_one_value_cannot_both_win() {
        // The lost update a skipped check causes.
        let h = vec![
            op(0, 0, Some(1), RegCall::Write(1), Some(RegRet::Written)),
            op(1, 2, Some(5), RegCall::Cas(1, 2), Some(RegRet::Cas(true))),
            op(2, 2, Some(5), RegCall::Cas(1, 3), Some(RegRet::Cas(true))),
        ];
        assert!(matches!(check_register(&h, BUDGET), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn a_long_concurrent_history_is_decided() {
        // Five clients, 300 operations, every read returning the last write in real time.
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut h = Vec::new();
        let mut value = None;
        let mut t = 0;
        for i in 0..300u64 {
            // Operations overlap their neighbours; each takes effect at its midpoint, in order.
            let (invoke, complete) = (t, t + rng.random_range(3..12));
            t += 2;
            let call = if rng.random_bool(0.5) { RegCall::Read } else { RegCall::Write(i) };
            let ret = match call {
                RegCall::Read => RegRet::Read(value),
                _ => {
                    value = Some(i);
                    RegRet::Written
                }
            };
            h.push(op((i % 5) as usize, invoke, Some(complete), call, Some(ret)));
        }
        assert_eq!(check_register(&h, BUDGET), Verdict::Linearizable);
    }
}
