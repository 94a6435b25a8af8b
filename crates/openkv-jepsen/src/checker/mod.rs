//! The checkers: pure functions from a history to the anomalies it shows. docs/design.md §15
//! argues what each one proves and what it cannot see.

pub mod append;
pub mod bank;
pub mod linear;
pub mod queue;
pub mod stamps;

use std::fmt;

/// What kind of anomaly a checker found. Tests match on it; the report prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum AnomalyKind {
    /// A register's history has no linearization.
    NotLinearizable,
    /// A register's history was too concurrent for the search's budget (reported, so that
    /// a run never passes without having been checked).
    Undecided,
    /// A snapshot of the bank did not hold every account, or its balances did not add up.
    WrongTotal,
    /// Two reads of one list disagree on its order (neither is a prefix of the other).
    IncompatibleOrder,
    /// An element appears twice in one list (a commit applied twice).
    DuplicateElement,
    /// An acknowledged write is missing from the final state.
    LostWrite,
    /// A read saw a value written by an operation that definitely failed (Adya's G1a).
    AbortedRead,
    /// A read saw a value no operation wrote.
    PhantomWrite,
    /// Transactions whose dependencies form a cycle: no serial order explains them (G0, G1c,
    /// G2, or a real-time violation of strict serializability).
    Cycle,
    /// Two commits got the same versionstamp.
    DuplicateVersionstamp,
    /// A commit that started after another finished got a smaller versionstamp.
    VersionstampOrder,
    /// The keys of one commit carry different versionstamps, or only some of them exist.
    TornCommit,
    /// A key holds a versionstamp other than the one its commit returned.
    WrongVersionstamp,
    /// A queue message went to its dead-letter keys before its schedule of attempts ran
    /// out (or although its handler accepted it).
    EarlyDeadLetter,
}

/// One anomaly, with enough detail to find it in the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anomaly {
    /// What kind.
    pub kind: AnomalyKind,
    /// Where and what: keys, values, operations.
    pub detail: String,
}

impl Anomaly {
    /// An anomaly of `kind`.
    pub fn new(kind: AnomalyKind, detail: impl Into<String>) -> Anomaly {
        Anomaly { kind, detail: detail.into() }
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.detail)
    }
}

/// A versionstamp for messages.
pub(crate) fn stamp_hex(stamp: &[u8; 10]) -> String {
    hex::encode(stamp)
}
