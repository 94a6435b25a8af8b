//! Queues: at least once, and dead letters only after the schedule.
//!
//! Producers enqueue uniquely numbered messages; some are *poison* (their handler always
//! fails; their schedule allows [`POISON_ATTEMPTS`] attempts). Listeners record every attempt
//! as it starts and every successful handling; the nemesis kills listeners and servers. After
//! everything healed and the queue drained:
//! - every acknowledged message was handled successfully at least once, and every
//!   acknowledged poison message reached its dead-letter key ([`LostWrite`](AnomalyKind::LostWrite));
//! - no message was delivered that was never enqueued ([`PhantomWrite`](AnomalyKind::PhantomWrite))
//!   or whose enqueue definitely failed ([`AbortedRead`](AnomalyKind::AbortedRead));
//! - a dead letter exists only for a poison message attempted at least [`POISON_ATTEMPTS`]
//!   times ([`EarlyDeadLetter`](AnomalyKind::EarlyDeadLetter)). (Ordinary messages carry a
//!   schedule of many retries, so the nemesis's kills cannot exhaust it.)
//!
//! Duplicated deliveries are allowed: that is what "at least once" permits.

use std::collections::{BTreeMap, BTreeSet};

use super::{Anomaly, AnomalyKind};
use crate::history::{Op, Outcome};

/// The attempts a poison message gets (its backoff schedule has one fewer entries).
pub const POISON_ATTEMPTS: u32 = 3;

/// An enqueue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Enqueue {
    /// The message's number.
    pub id: u64,
    /// Its handler always fails.
    pub poison: bool,
}

/// What the listeners saw, and the dead letters at the end.
#[derive(Clone, Debug, Default)]
pub struct Deliveries {
    /// Attempts started, by message.
    pub attempts: BTreeMap<u64, u32>,
    /// Messages handled successfully.
    pub handled: BTreeSet<u64>,
    /// Messages found at their dead-letter keys.
    pub dead: BTreeSet<u64>,
}

/// Every anomaly of the enqueues `history` given what was delivered.
pub fn check(history: &[Op<Enqueue, ()>], deliveries: &Deliveries) -> Vec<Anomaly> {
    let mut anomalies = Vec::new();
    let mut enqueued: BTreeMap<u64, (&Op<Enqueue, ()>, bool)> = BTreeMap::new();
    for op in history {
        enqueued.insert(op.call.id, (op, op.call.poison));
        let seen = deliveries.attempts.contains_key(&op.call.id);
        match op.outcome {
            Outcome::Ok(()) if op.call.poison && !deliveries.dead.contains(&op.call.id) => {
                anomalies.push(Anomaly::new(
                    AnomalyKind::LostWrite,
                    format!("poison message {} never reached its dead-letter key", op.call.id),
                ));
            }
            Outcome::Ok(()) if !op.call.poison && !deliveries.handled.contains(&op.call.id) => {
                anomalies.push(Anomaly::new(
                    AnomalyKind::LostWrite,
                    format!(
                        "message {} was enqueued but never handled ({} attempts)",
                        op.call.id,
                        deliveries.attempts.get(&op.call.id).unwrap_or(&0)
                    ),
                ));
            }
            Outcome::Fail if seen => anomalies.push(Anomaly::new(
                AnomalyKind::AbortedRead,
                format!("message {} was delivered, but its enqueue failed", op.call.id),
            )),
            _ => {}
        }
    }
    for id in deliveries.attempts.keys().chain(deliveries.dead.iter()) {
        if !enqueued.contains_key(id) {
            anomalies.push(Anomaly::new(
                AnomalyKind::PhantomWrite,
                format!("message {id} was delivered but never enqueued"),
            ));
        }
    }
    for id in &deliveries.dead {
        let attempts = deliveries.attempts.get(id).copied().unwrap_or(0);
        let poison = enqueued.get(id).is_some_and(|(_, p)| *p);
        if !poison || attempts < POISON_ATTEMPTS {
            anomalies.push(Anomaly::new(
                AnomalyKind::EarlyDeadLetter,
                format!(
                    "message {id} ({}) is a dead letter after {attempts} attempts",
                    if poison { "poison" } else { "its handler accepts it" }
                ),
            ));
        }
    }
    anomalies
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enqueue(id: u64, poison: bool, outcome: Outcome<()>) -> Op<Enqueue, ()> {
        Op { client: 0, invoke: 0, complete: Some(1), call: Enqueue { id, poison }, outcome }
    }

    #[test]
    fn at_least_once_and_dead_letters_after_the_schedule() {
        let history = vec![
            enqueue(1, false, Outcome::Ok(())),
            enqueue(2, true, Outcome::Ok(())),
            enqueue(3, false, Outcome::Info),
        ];
        let mut good = Deliveries::default();
        good.attempts.extend([(1, 2), (2, 3)]);
        good.handled.insert(1);
        good.dead.insert(2);
        assert_eq!(check(&history, &good), vec![]);

        let kinds = |d: &Deliveries, h: &[Op<Enqueue, ()>]| -> Vec<AnomalyKind> {
            check(h, d).into_iter().map(|a| a.kind).collect()
        };
        let mut lost = good.clone();
        lost.handled.clear();
        assert_eq!(kinds(&lost, &history), vec![AnomalyKind::LostWrite]);
        let mut early = good.clone();
        early.attempts.insert(2, 2);
        assert_eq!(kinds(&early, &history), vec![AnomalyKind::EarlyDeadLetter]);
        let mut wrong = good.clone();
        wrong.dead.insert(1);
        assert_eq!(kinds(&wrong, &history), vec![AnomalyKind::EarlyDeadLetter]);
        let mut phantom = good.clone();
        phantom.attempts.insert(9, 1);
        assert_eq!(kinds(&phantom, &history), vec![AnomalyKind::PhantomWrite]);
        let failed = vec![enqueue(1, false, Outcome::Fail)];
        let mut delivered = Deliveries::default();
        delivered.attempts.insert(1, 1);
        assert_eq!(kinds(&delivered, &failed), vec![AnomalyKind::AbortedRead]);
    }
}
