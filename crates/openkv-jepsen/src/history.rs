//! Histories: every operation a client invoked, when, and how it ended.
//!
//! Times are nanoseconds since the run started, read in the runner process only (the clock
//! that matters is the clients'): an operation happened, if at all, somewhere between its
//! `invoke` and its `complete`. Waiting on a pipe or the network only widens that window,
//! which can hide an anomaly but never invent one.

use std::sync::Mutex;
use std::time::Instant;

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<R> {
    /// It took effect (or, for a read, returned) with this result.
    Ok(R),
    /// It definitely did not take effect (a failed check, a refused request, a read error).
    Fail,
    /// It may or may not have taken effect (the answer was lost, the process was killed):
    /// Jepsen's `:info`. Its completion time is unknown, so it is treated as infinite.
    Info,
}

/// One operation of a history.
#[derive(Clone, Debug)]
pub struct Op<C, R> {
    /// The client (logical process) that ran it; a client runs one operation at a time.
    pub client: usize,
    /// When it was invoked (ns since the start of the run).
    pub invoke: u64,
    /// When its result arrived; `None` for [`Outcome::Info`].
    pub complete: Option<u64>,
    /// What was asked.
    pub call: C,
    /// What happened.
    pub outcome: Outcome<R>,
}

impl<C, R> Op<C, R> {
    /// True if this operation completed before `other` was invoked (real-time order).
    pub fn precedes<C2, R2>(&self, other: &Op<C2, R2>) -> bool {
        self.complete.is_some_and(|c| c < other.invoke)
    }
}

/// A history being recorded by concurrent clients.
#[derive(Debug)]
pub struct Recorder<C, R> {
    start: Instant,
    ops: Mutex<Vec<Op<C, R>>>,
}

impl<C, R> Recorder<C, R> {
    /// A recorder whose clock starts at `start` (shared by every recorder of a run, so that
    /// histories and the nemesis's log line up).
    pub fn new(start: Instant) -> Self {
        Recorder { start, ops: Mutex::new(Vec::new()) }
    }

    /// Nanoseconds since the start of the run.
    pub fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Records a finished operation invoked at `invoke`: its completion time is now, unless
    /// the outcome is [`Outcome::Info`].
    pub fn record(&self, client: usize, invoke: u64, call: C, outcome: Outcome<R>) {
        let complete = match outcome {
            Outcome::Info => None,
            _ => Some(self.now()),
        };
        let op = Op { client, invoke, complete, call, outcome };
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).push(op);
    }

    /// A copy of the history so far.
    pub fn ops(&self) -> Vec<Op<C, R>>
    where
        C: Clone,
        R: Clone,
    {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The history, in the order operations completed.
    pub fn into_ops(self) -> Vec<Op<C, R>> {
        self.ops.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

/// Counts of a history's outcomes, for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Operations that took effect.
    pub ok: usize,
    /// Operations that definitely did not.
    pub fail: usize,
    /// Operations whose outcome is unknown.
    pub info: usize,
}

impl Counts {
    /// Counts the outcomes of `ops`.
    pub fn of<C, R>(ops: &[Op<C, R>]) -> Counts {
        let mut counts = Counts::default();
        for op in ops {
            match op.outcome {
                Outcome::Ok(_) => counts.ok += 1,
                Outcome::Fail => counts.fail += 1,
                Outcome::Info => counts.info += 1,
            }
        }
        counts
    }
}

/// Real-time predecessors, as a sparse graph: `edges[i]` lists operations that completed
/// before operation `i` was invoked, enough of them that every real-time pair is implied
/// transitively (Jepsen's "realtime" order, without its quadratic size). Only operations with
/// a known completion can precede; any operation can follow.
pub fn realtime_edges(intervals: &[(u64, Option<u64>)]) -> Vec<Vec<usize>> {
    // Events in time order; at equal times an invocation goes first (so that an operation
    // invoked at the instant another completes is not ordered after it: strict `<`).
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(intervals.len() * 2);
    for (i, (invoke, complete)) in intervals.iter().enumerate() {
        events.push((*invoke, false, i));
        if let Some(c) = complete {
            events.push((*c, true, i));
        }
    }
    events.sort_unstable();
    let mut edges = vec![Vec::new(); intervals.len()];
    // The frontier: completed operations not yet known to precede another completed one.
    let mut frontier: Vec<usize> = Vec::new();
    for (_, is_completion, i) in events {
        if is_completion {
            // Everything `i` follows is now implied through `i`.
            let before = &edges[i];
            frontier.retain(|f| !before.contains(f));
            frontier.push(i);
        } else {
            edges[i] = frontier.clone();
        }
    }
    edges
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reachable(edges: &[Vec<usize>], from: usize, to: usize) -> bool {
        // Edges point from an operation to its predecessors: search from `to` backwards.
        let mut stack = vec![to];
        let mut seen = vec![false; edges.len()];
        while let Some(n) = stack.pop() {
            for &p in &edges[n] {
                if p == from {
                    return true;
                }
                if !seen[p] {
                    seen[p] = true;
                    stack.push(p);
                }
            }
        }
        false
    }

    #[test]
    fn realtime_edges_imply_exactly_the_real_time_order() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..50 {
            let n = rng.random_range(1..30);
            let intervals: Vec<(u64, Option<u64>)> = (0..n)
                .map(|_| {
                    let a = rng.random_range(0..100u64);
                    let c = rng.random_bool(0.9).then(|| a + rng.random_range(0..30));
                    (a, c)
                })
                .collect();
            let edges = realtime_edges(&intervals);
            for a in 0..n {
                for b in 0..n {
                    let precedes = intervals[a].1.is_some_and(|c| c < intervals[b].0);
                    assert_eq!(reachable(&edges, a, b), precedes, "{a} -> {b} in {intervals:?}");
                }
            }
        }
    }
}
