//! List append, after Elle (Kingsbury & Alvaro, VLDB 2020), simplified to what openkv's
//! transactions are: each transaction reads some lists in one snapshot and appends unique
//! values to some of them, committing with a versionstamp check on every key it read.
//!
//! Because every appended value is unique and a list only grows, a read of a list reveals
//! the whole order of the appends before it. The checker:
//! 1. recovers, per key, one order of appends: the longest list observed. Every other read of
//!    that key must be a prefix of it (else [`IncompatibleOrder`](AnomalyKind::IncompatibleOrder));
//!    no element may appear twice ([`DuplicateElement`](AnomalyKind::DuplicateElement): a
//!    commit applied twice);
//! 2. checks every element against the history: written by a transaction that definitely
//!    failed is [`AbortedRead`](AnomalyKind::AbortedRead), by none is
//!    [`PhantomWrite`](AnomalyKind::PhantomWrite); an acknowledged append missing from the
//!    final read is [`LostWrite`](AnomalyKind::LostWrite); a transaction of unknown outcome
//!    whose appends are visible on some keys but not others is
//!    [`TornCommit`](AnomalyKind::TornCommit);
//! 3. builds the dependency graph of the committed transactions — write-write (consecutive
//!    appends of one key), write-read (the appender of the last element a read saw precedes
//!    the reader), read-write (a reader precedes the appender of the first element it did not
//!    see) and real time (a transaction that finished before another started precedes it) —
//!    and reports every strongly connected component as a [`Cycle`](AnomalyKind::Cycle):
//!    no serial order, consistent with real time, explains those transactions. This covers
//!    Adya's G0, G1c and G2 and strict serializability's real-time order.
//!
//! Eventual reads take part in step 1 and 2 only (a replica may lag, so they are allowed to
//! be old, but never to disagree on the order or see what was not written).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{Anomaly, AnomalyKind};
use crate::history::{realtime_edges, Op, Outcome};

/// One step of a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Micro {
    /// Append a unique value to key `.0`'s list.
    Append(u64, u64),
    /// Read key `.0`'s list.
    Read(u64),
}

/// A transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendCall {
    /// Its steps. Reads see the snapshot the transaction started from.
    pub micro: Vec<Micro>,
    /// A read-only transaction answered by an eventual read.
    pub eventual: bool,
}

/// What a committed transaction read: `(key, list)` for each [`Micro::Read`], in order.
pub type AppendRet = Vec<(u64, Vec<u64>)>;

/// Every anomaly of `history`, given the lists a final strong read saw after all clients
/// stopped and every fault healed.
pub fn check(
    history: &[Op<AppendCall, AppendRet>],
    final_lists: &BTreeMap<u64, Vec<u64>>,
) -> Vec<Anomaly> {
    let mut anomalies = Vec::new();
    // Who appended each (key, value).
    let mut appender: HashMap<(u64, u64), usize> = HashMap::new();
    for (i, op) in history.iter().enumerate() {
        for m in &op.call.micro {
            if let Micro::Append(k, v) = m {
                appender.insert((*k, *v), i);
            }
        }
    }
    // Every observed list: (op index or None for the final read, key, list).
    let mut observed: Vec<(Option<usize>, u64, &[u64])> = Vec::new();
    for (i, op) in history.iter().enumerate() {
        if let Outcome::Ok(reads) = &op.outcome {
            for (k, list) in reads {
                observed.push((Some(i), *k, list));
            }
        }
    }
    for (k, list) in final_lists {
        observed.push((None, *k, list));
    }
    // 1. One order per key.
    let mut order: BTreeMap<u64, &[u64]> = BTreeMap::new();
    for (_, k, list) in &observed {
        let longest = order.entry(*k).or_insert(&[]);
        if list.len() > longest.len() {
            *longest = list;
        }
    }
    let who = |op: Option<usize>| match op {
        Some(i) => {
            let o = &history[i];
            format!("client {} op at {} ms {:?}", o.client, o.invoke / 1_000_000, o.call.micro)
        }
        None => "the final read".to_owned(),
    };
    let mut reported: HashSet<(AnomalyKind, u64, u64)> = HashSet::new();
    for (op, k, list) in &observed {
        let longest = order[k];
        if !longest.starts_with(list) {
            let at = list.iter().zip(longest.iter()).take_while(|(a, b)| a == b).count();
            anomalies.push(Anomaly::new(
                AnomalyKind::IncompatibleOrder,
                format!(
                    "key {k}: {} read {} elements diverging at index {at} ({:?} vs {:?}) from the \
                     longest read ({} elements)",
                    who(*op),
                    list.len(),
                    list.get(at),
                    longest.get(at),
                    longest.len()
                ),
            ));
        }
        let mut seen = HashSet::new();
        for v in list.iter() {
            if !seen.insert(*v) && reported.insert((AnomalyKind::DuplicateElement, *k, *v)) {
                anomalies.push(Anomaly::new(
                    AnomalyKind::DuplicateElement,
                    format!("key {k}: {v} appears twice in what {} read", who(*op)),
                ));
            }
            match appender.get(&(*k, *v)).map(|i| &history[*i].outcome) {
                None if reported.insert((AnomalyKind::PhantomWrite, *k, *v)) => {
                    anomalies.push(Anomaly::new(
                        AnomalyKind::PhantomWrite,
                        format!("key {k}: {} read {v}, which nobody appended", who(*op)),
                    ));
                }
                Some(Outcome::Fail) if reported.insert((AnomalyKind::AbortedRead, *k, *v)) => {
                    anomalies.push(Anomaly::new(
                        AnomalyKind::AbortedRead,
                        format!(
                            "key {k}: {} read {v}, appended by a transaction that failed ({})",
                            who(*op),
                            who(appender.get(&(*k, *v)).copied())
                        ),
                    ));
                }
                _ => {}
            }
        }
    }
    // 2. Acknowledged appends are there at the end; unknown ones entirely or not at all.
    let visible = |k: u64, v: u64| final_lists.get(&k).is_some_and(|l| l.contains(&v));
    for (i, op) in history.iter().enumerate() {
        let appends: Vec<(u64, u64)> = op
            .call
            .micro
            .iter()
            .filter_map(|m| match m {
                Micro::Append(k, v) => Some((*k, *v)),
                Micro::Read(_) => None,
            })
            .collect();
        let shown = appends.iter().filter(|(k, v)| visible(*k, *v)).count();
        match op.outcome {
            Outcome::Ok(_) if shown < appends.len() => anomalies.push(Anomaly::new(
                AnomalyKind::LostWrite,
                format!(
                    "{} was acknowledged, but {} of its {} appends are not in the final read",
                    who(Some(i)),
                    appends.len() - shown,
                    appends.len()
                ),
            )),
            Outcome::Info if shown > 0 && shown < appends.len() => anomalies.push(Anomaly::new(
                AnomalyKind::TornCommit,
                format!("{} shows {shown} of its {} appends", who(Some(i)), appends.len()),
            )),
            _ => {}
        }
    }
    // 3. The dependency graph of committed (or visibly applied) transactions.
    let in_graph: Vec<bool> = history
        .iter()
        .map(|op| match op.outcome {
            Outcome::Ok(_) => !op.call.eventual,
            Outcome::Info => {
                op.call.micro.iter().any(|m| matches!(m, Micro::Append(k, v) if visible(*k, *v)))
            }
            Outcome::Fail => false,
        })
        .collect();
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); history.len()];
    let mut add = |from: usize, to: usize| {
        if from != to && in_graph[from] && in_graph[to] {
            edges[from].push(to);
        }
    };
    for (k, list) in &order {
        for pair in list.windows(2) {
            if let (Some(&a), Some(&b)) =
                (appender.get(&(*k, pair[0])), appender.get(&(*k, pair[1])))
            {
                add(a, b); // ww
            }
        }
    }
    for (i, op) in history.iter().enumerate() {
        let Outcome::Ok(reads) = &op.outcome else { continue };
        for (k, list) in reads {
            if let Some(&w) = list.last().and_then(|v| appender.get(&(*k, *v))) {
                add(w, i); // wr
            }
            if let Some(&w) = order[k].get(list.len()).and_then(|v| appender.get(&(*k, *v))) {
                add(i, w); // rw
            }
        }
    }
    let nodes: Vec<usize> = (0..history.len()).filter(|i| in_graph[*i]).collect();
    let intervals: Vec<(u64, Option<u64>)> =
        nodes.iter().map(|&i| (history[i].invoke, history[i].complete)).collect();
    for (to, preds) in realtime_edges(&intervals).into_iter().enumerate() {
        for from in preds {
            add(nodes[from], nodes[to]); // rt
        }
    }
    for component in strongly_connected(&edges) {
        if component.len() > 1 {
            let shown: Vec<String> = component.iter().take(6).map(|i| who(Some(*i))).collect();
            anomalies.push(Anomaly::new(
                AnomalyKind::Cycle,
                format!(
                    "{} transactions depend on each other in a cycle: {}",
                    component.len(),
                    shown.join("; ")
                ),
            ));
        }
    }
    anomalies
}

/// Tarjan's strongly connected components, iteratively (histories are long enough that a
/// recursive walk could exhaust the stack).
pub fn strongly_connected(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = edges.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut components = Vec::new();
    let mut next_index = 0;
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        // (node, position in its edge list)
        let mut work = vec![(root, 0usize)];
        while let Some((v, pos)) = work.pop() {
            if pos == 0 && index[v] == usize::MAX {
                index[v] = next_index;
                low[v] = next_index;
                next_index += 1;
                stack.push(v);
                on_stack[v] = true;
            }
            if let Some(&w) = edges[v].get(pos) {
                work.push((v, pos + 1));
                if index[w] == usize::MAX {
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            // v is finished: fold its low link into its parent's, and pop a component.
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                components.push(component);
            }
        }
    }
    components
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(
        client: usize,
        t: (u64, u64),
        micro: Vec<Micro>,
        reads: AppendRet,
    ) -> Op<AppendCall, AppendRet> {
        Op {
            client,
            invoke: t.0,
            complete: Some(t.1),
            call: AppendCall { micro, eventual: false },
            outcome: Outcome::Ok(reads),
        }
    }

    fn finals(lists: &[(u64, &[u64])]) -> BTreeMap<u64, Vec<u64>> {
        lists.iter().map(|(k, l)| (*k, l.to_vec())).collect()
    }

    fn kinds(anomalies: &[Anomaly]) -> Vec<AnomalyKind> {
        let mut k: Vec<_> = anomalies.iter().map(|a| a.kind).collect();
        k.sort();
        k.dedup();
        k
    }

    #[test]
    fn a_serial_history_passes() {
        let h = vec![
            txn(0, (0, 1), vec![Micro::Append(0, 1)], vec![]),
            txn(1, (2, 3), vec![Micro::Read(0), Micro::Append(0, 2)], vec![(0, vec![1])]),
            txn(0, (4, 5), vec![Micro::Read(0)], vec![(0, vec![1, 2])]),
        ];
        assert_eq!(check(&h, &finals(&[(0, &[1, 2])])), vec![]);
    }

    #[test]
    fn a_lost_update_is_a_cycle() {
        // Both read [1] concurrently and both committed their append: a skipped check.
        // The final list keeps only one of them.
        let h = vec![
            txn(0, (0, 1), vec![Micro::Append(0, 1)], vec![]),
            txn(1, (2, 6), vec![Micro::Read(0), Micro::Append(0, 2)], vec![(0, vec![1])]),
            txn(2, (2, 6), vec![Micro::Read(0), Micro::Append(0, 3)], vec![(0, vec![1])]),
            txn(0, (7, 8), vec![Micro::Read(0)], vec![(0, vec![1, 3])]),
        ];
        let found = kinds(&check(&h, &finals(&[(0, &[1, 3])])));
        assert!(found.contains(&AnomalyKind::LostWrite), "{found:?}");
    }

    #[test]
    fn write_skew_is_a_cycle() {
        // T1 reads x, appends y; T2 reads y, appends x; each missed the other's append.
        let h = vec![
            txn(0, (0, 5), vec![Micro::Read(0), Micro::Append(1, 10)], vec![(0, vec![])]),
            txn(1, (0, 5), vec![Micro::Read(1), Micro::Append(0, 20)], vec![(1, vec![])]),
        ];
        let found = kinds(&check(&h, &finals(&[(0, &[20]), (1, &[10])])));
        assert_eq!(found, vec![AnomalyKind::Cycle]);
    }

    #[test]
    fn a_stale_read_after_a_commit_is_a_real_time_cycle() {
        let h = vec![
            txn(0, (0, 1), vec![Micro::Append(0, 1)], vec![]),
            txn(1, (2, 3), vec![Micro::Read(0)], vec![(0, vec![])]),
        ];
        assert_eq!(kinds(&check(&h, &finals(&[(0, &[1])]))), vec![AnomalyKind::Cycle]);
    }

    #[test]
    fn orders_duplicates_phantoms_and_aborted_reads() {
        let mut failed = txn(2, (0, 1), vec![Micro::Append(0, 9)], vec![]);
        failed.outcome = Outcome::Fail;
        let h = vec![
            txn(0, (0, 1), vec![Micro::Append(0, 1)], vec![]),
            txn(1, (0, 1), vec![Micro::Append(0, 2)], vec![]),
            failed,
            txn(3, (5, 6), vec![Micro::Read(0)], vec![(0, vec![2, 1])]),
        ];
        let found = kinds(&check(&h, &finals(&[(0, &[1, 2, 2, 9, 77])])));
        for kind in [
            AnomalyKind::IncompatibleOrder,
            AnomalyKind::DuplicateElement,
            AnomalyKind::AbortedRead,
            AnomalyKind::PhantomWrite,
        ] {
            assert!(found.contains(&kind), "{kind:?} not in {found:?}");
        }
        assert!(!found.contains(&AnomalyKind::LostWrite), "{found:?}");
    }

    #[test]
    fn unknown_outcomes_are_all_or_nothing() {
        let mut unknown = txn(0, (0, 1), vec![Micro::Append(0, 1), Micro::Append(1, 2)], vec![]);
        unknown.outcome = Outcome::Info;
        unknown.complete = None;
        let h = vec![unknown];
        assert_eq!(check(&h, &finals(&[(0, &[1]), (1, &[2])])), vec![]);
        assert_eq!(check(&h, &finals(&[])), vec![]);
        assert_eq!(kinds(&check(&h, &finals(&[(0, &[1])]))), vec![AnomalyKind::TornCommit]);
    }

    #[test]
    fn tarjan_finds_cycles_only() {
        let edges = vec![vec![1], vec![2], vec![0, 3], vec![]];
        let mut sizes: Vec<usize> = strongly_connected(&edges).iter().map(Vec::len).collect();
        sizes.sort();
        assert_eq!(sizes, vec![1, 3]);
    }
}
