//! A stored row: what the planner reads and writes, the change log records and a replica
//! stores. Its own module, below both the engine and the change log.

use crate::value::Value;
use crate::versionstamp::Versionstamp;

/// A stored row as the planner reads and writes it: the value in its stored encoding (so that
/// a row is never decoded unless a mutation combines with it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The value's encoding ([`ENCODING_V8`](crate::ENCODING_V8), …).
    pub encoding: i64,
    /// The value's stored bytes.
    pub bytes: Vec<u8>,
    /// The versionstamp of the write that stored it.
    pub versionstamp: Versionstamp,
    /// When it expires, in Unix milliseconds; `None`: never.
    pub expire_at_ms: Option<i64>,
}

impl Row {
    /// The row storing `value`.
    pub fn new(value: &Value, versionstamp: Versionstamp, expire_at_ms: Option<i64>) -> Row {
        Row { encoding: value.encoding(), bytes: value.to_bytes(), versionstamp, expire_at_ms }
    }

    /// True while the row has not expired at `now_ms`.
    pub fn is_live(&self, now_ms: i64) -> bool {
        self.expire_at_ms.is_none_or(|at| at > now_ms)
    }
}
