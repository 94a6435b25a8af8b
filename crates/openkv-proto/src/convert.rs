//! The engine's vocabulary ↔ KV Connect messages, both ways, once for the server and the
//! client. Decoding is strict: anything the engine cannot represent (an unknown encoding or
//! mutation type, a KvU64 that is not 8 bytes, a versionstamp that is not 10 bytes, a negative
//! limit or expiry) is a [`WireError`] naming the problem. The server answers it with a 400;
//! the client reports it as a protocol violation of the server. What the engine then checks
//! (limits, key validity) is the engine's business, not this module's.

use openkv_core::{
    AtomicWrite, Check, CommitOutcome, Enqueue, Mutation, MutationKind, RawEntry, ReadRange, Value,
    Versionstamp,
};

use crate::{AtomicWriteStatus, MutationType, SnapshotReadStatus, ValueEncoding};

/// A message the engine cannot take, and why (the text is shown to whoever sent it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireError(pub String);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WireError {}

type Result<T> = std::result::Result<T, WireError>;

fn err<T>(message: impl Into<String>) -> Result<T> {
    Err(WireError(message.into()))
}

/// The wire encoding of a value.
pub fn encoding_of(value: &Value) -> ValueEncoding {
    match value {
        Value::V8(_) => ValueEncoding::VeV8,
        Value::Bytes(_) => ValueEncoding::VeBytes,
        Value::U64(_) => ValueEncoding::VeLe64,
    }
}

/// A value as KV Connect carries it.
pub fn value_to_wire(value: &Value) -> crate::KvValue {
    crate::KvValue { data: value.to_bytes(), encoding: encoding_of(value) as i32 }
}

/// A value from its wire bytes and encoding.
pub fn value_from_wire(data: Vec<u8>, encoding: i32) -> Result<Value> {
    match ValueEncoding::try_from(encoding) {
        Ok(ValueEncoding::VeV8) => Ok(Value::V8(data)),
        Ok(ValueEncoding::VeBytes) => Ok(Value::Bytes(data)),
        Ok(ValueEncoding::VeLe64) => match <[u8; 8]>::try_from(data.as_slice()) {
            Ok(le) => Ok(Value::U64(u64::from_le_bytes(le))),
            Err(_) => err(format!("a KvU64 (VE_LE64) value must be 8 bytes, got {}", data.len())),
        },
        Ok(ValueEncoding::VeUnspecified) | Err(_) => {
            err(format!("unknown value encoding {encoding}"))
        }
    }
}

/// A versionstamp from its 10 wire bytes.
pub fn versionstamp_from_wire(bytes: &[u8]) -> Result<Versionstamp> {
    match <[u8; 10]>::try_from(bytes) {
        Ok(raw) => Ok(Versionstamp(raw)),
        Err(_) => err(format!("a versionstamp must be 10 bytes, got {}", bytes.len())),
    }
}

/// An entry as KV Connect carries it (snapshot reads and watch frames; no expiry on the wire).
pub fn entry_to_wire(entry: RawEntry) -> crate::KvEntry {
    crate::KvEntry {
        key: entry.key,
        encoding: encoding_of(&entry.value) as i32,
        value: entry.value.to_bytes(),
        versionstamp: entry.versionstamp.as_bytes().to_vec(),
    }
}

/// An entry from the wire (its expiry is unknown: KV Connect carries none).
pub fn entry_from_wire(entry: crate::KvEntry) -> Result<RawEntry> {
    Ok(RawEntry {
        versionstamp: versionstamp_from_wire(&entry.versionstamp)?,
        value: value_from_wire(entry.value, entry.encoding)?,
        key: entry.key,
        expire_at_ms: None,
    })
}

/// A snapshot read request.
pub fn read_to_wire(ranges: &[ReadRange]) -> crate::SnapshotRead {
    crate::SnapshotRead {
        ranges: ranges
            .iter()
            .map(|r| crate::ReadRange {
                start: r.start.clone(),
                end: r.end.clone(),
                // Limits are far below i32::MAX; saturate rather than wrap regardless.
                limit: i32::try_from(r.limit).unwrap_or(i32::MAX),
                reverse: r.reverse,
            })
            .collect(),
    }
}

/// A snapshot read request from the wire.
pub fn read_from_wire(read: crate::SnapshotRead) -> Result<Vec<ReadRange>> {
    read.ranges
        .into_iter()
        .map(|r| match u32::try_from(r.limit) {
            Ok(limit) => Ok(ReadRange { start: r.start, end: r.end, limit, reverse: r.reverse }),
            Err(_) => err(format!("a read range's limit must be positive, got {}", r.limit)),
        })
        .collect()
}

/// A successful, strongly consistent snapshot read's answer.
pub fn read_output_to_wire(ranges: Vec<Vec<RawEntry>>) -> crate::SnapshotReadOutput {
    crate::SnapshotReadOutput {
        ranges: ranges
            .into_iter()
            .map(|entries| crate::ReadRangeOutput {
                values: entries.into_iter().map(entry_to_wire).collect(),
            })
            .collect(),
        read_disabled: false,
        read_is_strongly_consistent: true,
        status: SnapshotReadStatus::SrSuccess as i32,
    }
}

/// An atomic write request.
pub fn write_to_wire(write: &AtomicWrite) -> crate::AtomicWrite {
    crate::AtomicWrite {
        checks: write
            .checks
            .iter()
            .map(|c| crate::Check {
                key: c.key.clone(),
                // Empty: "the key must not exist".
                versionstamp: c.versionstamp.map(|v| v.as_bytes().to_vec()).unwrap_or_default(),
            })
            .collect(),
        mutations: write.mutations.iter().map(mutation_to_wire).collect(),
        enqueues: write
            .enqueues
            .iter()
            .map(|e| crate::Enqueue {
                payload: e.payload.clone(),
                deadline_ms: e.deadline_ms,
                keys_if_undelivered: e.keys_if_undelivered.clone(),
                // Empty means "the server's default schedule", as Deno sends it; an empty
                // schedule of our own (no retries) needs openkv's extension field.
                backoff_schedule: e.backoff_schedule.clone().unwrap_or_default(),
                openkv_no_retries: e.backoff_schedule.as_ref().is_some_and(Vec::is_empty),
            })
            .collect(),
    }
}

fn mutation_to_wire(m: &Mutation) -> crate::Mutation {
    let mut out = crate::Mutation {
        key: m.key.clone(),
        value: m.kind.value().map(value_to_wire),
        mutation_type: 0,
        // 0 is "never" on the wire.
        expire_at_ms: m.expire_at_ms.unwrap_or(0),
        sum_min: Vec::new(),
        sum_max: Vec::new(),
        sum_clamp: false,
    };
    // Every kind is listed: a new one must get its wire form here before it compiles.
    let kind = match &m.kind {
        MutationKind::Set(_) => MutationType::MSet,
        MutationKind::Delete => MutationType::MDelete,
        MutationKind::Sum(_) => MutationType::MSum,
        MutationKind::SumWithLimits { min, max, clamp, .. } => {
            // Bounds are V8 values (the engine's validation guarantees it).
            let bound = |b: &Option<Value>| b.as_ref().map(Value::to_bytes).unwrap_or_default();
            out.sum_min = bound(min);
            out.sum_max = bound(max);
            out.sum_clamp = *clamp;
            MutationType::MSum
        }
        MutationKind::Min(_) => MutationType::MMin,
        MutationKind::Max(_) => MutationType::MMax,
        MutationKind::SetSuffixVersionstampedKey(_) => MutationType::MSetSuffixVersionstampedKey,
    };
    out.mutation_type = kind as i32;
    out
}

/// An atomic write request from the wire.
pub fn write_from_wire(write: crate::AtomicWrite) -> Result<AtomicWrite> {
    let checks = write
        .checks
        .into_iter()
        .map(|c| {
            let versionstamp = match c.versionstamp.len() {
                0 => None,
                10 => Some(versionstamp_from_wire(&c.versionstamp)?),
                n => return err(format!("a check's versionstamp must be 0 or 10 bytes, got {n}")),
            };
            Ok(Check { key: c.key, versionstamp })
        })
        .collect::<Result<_>>()?;
    let mutations = write.mutations.into_iter().map(mutation_from_wire).collect::<Result<_>>()?;
    let enqueues = write
        .enqueues
        .into_iter()
        .map(|e| Enqueue {
            payload: e.payload,
            deadline_ms: e.deadline_ms,
            keys_if_undelivered: e.keys_if_undelivered,
            backoff_schedule: if e.openkv_no_retries {
                Some(Vec::new())
            } else {
                (!e.backoff_schedule.is_empty()).then_some(e.backoff_schedule)
            },
        })
        .collect();
    Ok(AtomicWrite { checks, mutations, enqueues })
}

fn mutation_from_wire(m: crate::Mutation) -> Result<Mutation> {
    let expire_at_ms = match m.expire_at_ms {
        0 | -1 => None,
        t if t > 0 => Some(t),
        t => return err(format!("invalid expire_at_ms {t}")),
    };
    let value = |what: &str| match m.value.clone() {
        Some(v) => value_from_wire(v.data, v.encoding),
        None => err(format!("{what} needs a value")),
    };
    let kind = match MutationType::try_from(m.mutation_type) {
        Ok(MutationType::MSet) => MutationKind::Set(value("M_SET")?),
        Ok(MutationType::MDelete) => MutationKind::Delete,
        Ok(MutationType::MSum) => {
            let operand = value("M_SUM")?;
            let bound = |b: Vec<u8>| (!b.is_empty()).then_some(Value::V8(b));
            let (min, max) = (bound(m.sum_min), bound(m.sum_max));
            if min.is_none() && max.is_none() && !m.sum_clamp {
                MutationKind::Sum(operand)
            } else {
                MutationKind::SumWithLimits { operand, min, max, clamp: m.sum_clamp }
            }
        }
        Ok(MutationType::MMin) => MutationKind::Min(value("M_MIN")?),
        Ok(MutationType::MMax) => MutationKind::Max(value("M_MAX")?),
        Ok(MutationType::MSetSuffixVersionstampedKey) => {
            MutationKind::SetSuffixVersionstampedKey(value("M_SET_SUFFIX_VERSIONSTAMPED_KEY")?)
        }
        Ok(MutationType::MUnspecified) | Err(_) => {
            return err(format!("unknown mutation type {}", m.mutation_type))
        }
    };
    Ok(Mutation { key: m.key, kind, expire_at_ms })
}

/// An atomic write's answer.
pub fn outcome_to_wire(outcome: CommitOutcome) -> crate::AtomicWriteOutput {
    match outcome {
        CommitOutcome::Committed { versionstamp } => crate::AtomicWriteOutput {
            status: AtomicWriteStatus::AwSuccess as i32,
            versionstamp: versionstamp.as_bytes().to_vec(),
            failed_checks: vec![],
        },
        CommitOutcome::CheckFailed { failed_checks } => crate::AtomicWriteOutput {
            status: AtomicWriteStatus::AwCheckFailure as i32,
            versionstamp: vec![],
            failed_checks,
        },
    }
}

/// A watch request.
pub fn watch_to_wire(keys: &[Vec<u8>]) -> crate::Watch {
    crate::Watch { keys: keys.iter().map(|k| crate::WatchKey { key: k.clone() }).collect() }
}

/// A watch request from the wire: its keys, in order.
pub fn watch_from_wire(watch: crate::Watch) -> Vec<Vec<u8>> {
    watch.keys.into_iter().map(|k| k.key).collect()
}

#[cfg(test)]
mod tests {
    //! Every engine value, read, write and outcome goes to the wire and back unchanged; every
    //! wire message the engine cannot take is refused with a reason.

    use super::*;

    fn v8(bytes: &[u8]) -> Value {
        Value::V8(bytes.to_vec())
    }

    fn mutation(kind: MutationKind, expire_at_ms: Option<i64>) -> Mutation {
        Mutation { key: b"\x02k\x00".to_vec(), kind, expire_at_ms }
    }

    /// One of every mutation kind (the match makes this list fail to compile when one is
    /// added without a case here).
    fn one_of_every_kind() -> Vec<Mutation> {
        let kinds = vec![
            MutationKind::Set(v8(&[0xff, 0x0f, 0x49, 0x02])),
            MutationKind::Delete,
            MutationKind::Sum(Value::U64(3)),
            MutationKind::Sum(v8(&[0xff, 0x0f, 0x4e, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f])),
            MutationKind::SumWithLimits {
                operand: v8(&[0xff, 0x0f, 0x49, 0x02]),
                min: Some(v8(&[0xff, 0x0f, 0x49, 0x00])),
                max: None,
                clamp: true,
            },
            MutationKind::SumWithLimits {
                operand: v8(&[0xff, 0x0f, 0x49, 0x02]),
                min: None,
                max: Some(v8(&[0xff, 0x0f, 0x49, 0x08])),
                clamp: false,
            },
            MutationKind::Min(Value::U64(1)),
            MutationKind::Max(Value::U64(u64::MAX)),
            MutationKind::SetSuffixVersionstampedKey(Value::Bytes(vec![1, 2])),
        ];
        for kind in &kinds {
            match kind {
                MutationKind::Set(_)
                | MutationKind::Delete
                | MutationKind::Sum(_)
                | MutationKind::SumWithLimits { .. }
                | MutationKind::Min(_)
                | MutationKind::Max(_)
                | MutationKind::SetSuffixVersionstampedKey(_) => {}
            }
        }
        kinds.into_iter().map(|k| mutation(k, None)).collect()
    }

    #[test]
    fn writes_round_trip() {
        let mut mutations = one_of_every_kind();
        mutations.push(mutation(MutationKind::Set(Value::Bytes(vec![])), Some(1_700_000_000_000)));
        let write = AtomicWrite {
            checks: vec![
                Check { key: b"\x02a\x00".to_vec(), versionstamp: None },
                Check { key: b"\x02b\x00".to_vec(), versionstamp: Some(Versionstamp([7; 10])) },
            ],
            mutations,
            enqueues: vec![
                Enqueue {
                    payload: vec![0xff, 0x0f, 0x5f],
                    deadline_ms: 42,
                    keys_if_undelivered: vec![b"\x02dead\x00".to_vec()],
                    backoff_schedule: Some(vec![10, 20]),
                },
                Enqueue {
                    payload: vec![],
                    deadline_ms: 0,
                    keys_if_undelivered: vec![],
                    backoff_schedule: None,
                },
                // No retries at all: not the same as no schedule.
                Enqueue {
                    payload: vec![1],
                    deadline_ms: 0,
                    keys_if_undelivered: vec![],
                    backoff_schedule: Some(vec![]),
                },
            ],
        };
        assert_eq!(write_from_wire(write_to_wire(&write)), Ok(write));
    }

    #[test]
    fn reads_entries_values_outcomes_and_watches_round_trip() {
        let ranges = vec![
            ReadRange { start: vec![1], end: vec![2], limit: 10, reverse: true },
            ReadRange { start: vec![], end: vec![0xff], limit: 1000, reverse: false },
        ];
        assert_eq!(read_from_wire(read_to_wire(&ranges)), Ok(ranges));
        for value in [v8(&[0xff, 0x0f, 0x5f]), Value::Bytes(vec![0; 3]), Value::U64(u64::MAX)] {
            let wire = value_to_wire(&value);
            assert_eq!(value_from_wire(wire.data, wire.encoding), Ok(value.clone()));
            let entry = RawEntry {
                key: vec![2, b'k', 0],
                value,
                versionstamp: Versionstamp([9; 10]),
                expire_at_ms: None,
            };
            assert_eq!(entry_from_wire(entry_to_wire(entry.clone())), Ok(entry));
        }
        let committed =
            outcome_to_wire(CommitOutcome::Committed { versionstamp: Versionstamp([3; 10]) });
        assert_eq!(committed.status, AtomicWriteStatus::AwSuccess as i32);
        assert_eq!(versionstamp_from_wire(&committed.versionstamp), Ok(Versionstamp([3; 10])));
        let failed = outcome_to_wire(CommitOutcome::CheckFailed { failed_checks: vec![0, 2] });
        assert_eq!(
            (failed.status, failed.failed_checks),
            (AtomicWriteStatus::AwCheckFailure as i32, vec![0, 2])
        );
        let keys = vec![vec![1], vec![2, 3]];
        assert_eq!(watch_from_wire(watch_to_wire(&keys)), keys);
    }

    #[test]
    fn what_the_engine_cannot_take_is_refused_with_a_reason() {
        let bad_value =
            |data: Vec<u8>, encoding: i32| value_from_wire(data, encoding).unwrap_err().0;
        assert!(bad_value(vec![1; 7], ValueEncoding::VeLe64 as i32).contains("must be 8 bytes"));
        assert!(bad_value(vec![], 0).contains("unknown value encoding 0"));
        assert!(bad_value(vec![], 99).contains("unknown value encoding 99"));
        assert!(versionstamp_from_wire(&[0; 9]).is_err());
        let negative = crate::SnapshotRead {
            ranges: vec![crate::ReadRange {
                start: vec![],
                end: vec![1],
                limit: -1,
                reverse: false,
            }],
        };
        assert!(read_from_wire(negative).unwrap_err().0.contains("must be positive"));
        let write_with = |m: crate::Mutation| crate::AtomicWrite {
            checks: vec![],
            mutations: vec![m],
            enqueues: vec![],
        };
        let base = mutation_to_wire(&mutation(MutationKind::Set(Value::U64(1)), None));
        let cases = [
            ("unknown mutation type 99", crate::Mutation { mutation_type: 99, ..base.clone() }),
            ("unknown mutation type 0", crate::Mutation { mutation_type: 0, ..base.clone() }),
            ("M_SET needs a value", crate::Mutation { value: None, ..base.clone() }),
            ("invalid expire_at_ms -2", crate::Mutation { expire_at_ms: -2, ..base.clone() }),
        ];
        for (expected, m) in cases {
            let e = write_from_wire(write_with(m)).unwrap_err();
            assert!(e.0.contains(expected), "expected {expected:?}, got {e}");
        }
        let bad_check = crate::AtomicWrite {
            checks: vec![crate::Check { key: vec![1], versionstamp: vec![0; 3] }],
            mutations: vec![],
            enqueues: vec![],
        };
        assert!(write_from_wire(bad_check).unwrap_err().0.contains("0 or 10 bytes"));
    }
}
