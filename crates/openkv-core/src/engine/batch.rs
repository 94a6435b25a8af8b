//! The writer's batch, shared by every backend's writer loop: writes collect here (up to
//! [`MAX_WRITE_BATCH`]), commit together, and are answered
//! together — after the commit returned, the change events are published and the queue
//! listeners woken, then every caller hears its outcome.

use tokio::sync::{broadcast, oneshot};

use super::plan::BatchPlan;
use crate::backend::{AtomicWrite, ChangeEvent, CommitOutcome};
use crate::error::Result;
use crate::limits::MAX_WRITE_BATCH;
use crate::queue::QueueSignal;

/// Where a caller waits for its write's outcome.
pub type Reply = oneshot::Sender<Result<CommitOutcome>>;

/// Writes waiting to commit together, with their callers.
#[derive(Debug, Default)]
pub struct Batch {
    writes: Vec<AtomicWrite>,
    replies: Vec<Reply>,
}

impl Batch {
    /// Adds a write and where its caller waits.
    pub fn push(&mut self, write: AtomicWrite, reply: Reply) {
        self.writes.push(write);
        self.replies.push(reply);
    }

    /// The writes, in arrival order (the order they commit in).
    pub fn writes(&self) -> &[AtomicWrite] {
        &self.writes
    }

    /// How many writes wait.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// True if no write waits.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// True once the batch holds as many writes as one commit may.
    pub fn is_full(&self) -> bool {
        self.writes.len() >= MAX_WRITE_BATCH
    }

    /// Answers every caller once the batch's transaction has ended: on `Ok`, the plan's change
    /// events are published (and queue listeners woken if it enqueued) before the callers hear
    /// their outcomes, so a caller that watches sees its own write; on `Err` every caller gets
    /// the error (nothing of the batch committed).
    pub fn settle(
        self,
        result: Result<BatchPlan>,
        changes: &broadcast::Sender<ChangeEvent>,
        queue: &QueueSignal,
    ) {
        match result {
            Ok(plan) => {
                publish(changes, queue, plan.events, !plan.enqueues.is_empty());
                for (reply, outcome) in self.replies.into_iter().zip(plan.outcomes) {
                    // A caller that stopped waiting is not an error.
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                for reply in self.replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Publishes committed changes (no subscriber is not an error) and, if messages were
/// enqueued, wakes this process's queue listeners.
pub fn publish(
    changes: &broadcast::Sender<ChangeEvent>,
    queue: &QueueSignal,
    events: impl IntoIterator<Item = ChangeEvent>,
    enqueued: bool,
) {
    for event in events {
        let _ = changes.send(event);
    }
    if enqueued {
        queue.wake();
    }
}
