//! The data path: `POST /v2/snapshot_read` and `/v2/atomic_write` (protobuf), the check of the
//! data-path headers every `/v2` endpoint shares, and the mapping between wire and engine types.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use openkv::{
    AtomicWrite, Check, CommitOutcome, Consistency, Enqueue, Error, Mutation, MutationKind,
    ReadRange, Value, Versionstamp,
};
use prost::Message;

use crate::proto::{self, AtomicWriteStatus, MutationType, SnapshotReadStatus, ValueEncoding};
use crate::response::{bad_request, engine_error, protobuf};
use crate::AppState;

/// Checks the data-path headers (database id, protocol version): the response that rejects
/// the request, or `None` if it may go on. The token was checked before, by the auth layer.
pub(crate) fn reject_headers(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (database_id, version) = match get("x-denokv-version") {
        Some(v @ ("2" | "3")) => (get("x-denokv-database-id"), v),
        Some(other) => {
            return Some(bad_request(format!("unsupported x-denokv-version {other:?}")));
        }
        None => (get("x-transaction-domain-id"), "1"),
    };
    match database_id {
        Some(id) if id.eq_ignore_ascii_case(&state.database_id) => None,
        Some(id) => Some(bad_request(format!(
            "database id {id:?} does not match this server's database (protocol version {version})"
        ))),
        None => Some(bad_request(format!(
            "missing database id header (x-denokv-database-id for protocol 2+, \
             x-transaction-domain-id for 1; protocol version {version})"
        ))),
    }
}

/// Checks the data-path headers, then decodes the protobuf body: the message, or the response
/// that rejects the request.
pub(crate) fn decode_request<M: Message + Default>(
    state: &AppState,
    headers: &HeaderMap,
    body: Bytes,
    what: &str,
) -> Result<M, Box<Response>> {
    if let Some(rejected) = reject_headers(state, headers) {
        return Err(Box::new(rejected));
    }
    M::decode(body).map_err(|e| Box::new(bad_request(format!("invalid {what} protobuf: {e}"))))
}

/// `POST /v2/snapshot_read`.
pub(crate) async fn snapshot_read(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: proto::SnapshotRead = match decode_request(&state, &headers, body, "SnapshotRead")
    {
        Ok(r) => r,
        Err(rejected) => return *rejected,
    };
    let mut ranges = Vec::with_capacity(request.ranges.len());
    for r in request.ranges {
        let Ok(limit) = u32::try_from(r.limit) else {
            return bad_request(format!("a read range's limit must be positive, got {}", r.limit));
        };
        ranges.push(ReadRange { start: r.start, end: r.end, limit, reverse: r.reverse });
    }
    match state.kv.snapshot_read(ranges, Consistency::Strong).await {
        Ok(results) => protobuf(&proto::SnapshotReadOutput {
            ranges: results
                .into_iter()
                .map(|entries| proto::ReadRangeOutput {
                    values: entries.into_iter().map(entry_to_wire).collect(),
                })
                .collect(),
            read_disabled: false,
            read_is_strongly_consistent: true,
            status: SnapshotReadStatus::SrSuccess as i32,
        }),
        Err(e) => engine_error(e),
    }
}

fn encoding_of(v: &Value) -> ValueEncoding {
    match v {
        Value::V8(_) => ValueEncoding::VeV8,
        Value::U64(_) => ValueEncoding::VeLe64,
        _ => ValueEncoding::VeBytes,
    }
}

/// An engine entry as a wire entry (snapshot reads and watch frames).
pub(crate) fn entry_to_wire(e: openkv::RawEntry) -> proto::KvEntry {
    proto::KvEntry {
        key: e.key,
        encoding: encoding_of(&e.value) as i32,
        value: e.value.to_bytes(),
        versionstamp: e.versionstamp.as_bytes().to_vec(),
    }
}

/// A wire value as an engine value: unknown encodings and LE64 of the wrong length are the
/// client's mistakes.
fn value_from_wire(v: Option<proto::KvValue>, what: &str) -> Result<Value, String> {
    let v = v.ok_or_else(|| format!("{what} needs a value"))?;
    match ValueEncoding::try_from(v.encoding) {
        Ok(ValueEncoding::VeV8) => Ok(Value::V8(v.data)),
        Ok(ValueEncoding::VeBytes) => Ok(Value::Bytes(v.data)),
        Ok(ValueEncoding::VeLe64) => {
            let n = <[u8; 8]>::try_from(v.data.as_slice()).map_err(|_| {
                format!("a KvU64 (VE_LE64) value must be 8 bytes, got {}", v.data.len())
            })?;
            Ok(Value::U64(u64::from_le_bytes(n)))
        }
        _ => Err(format!("unknown value encoding {}", v.encoding)),
    }
}

fn write_from_wire(w: proto::AtomicWrite) -> Result<AtomicWrite, String> {
    let checks = w
        .checks
        .into_iter()
        .map(|c| {
            let versionstamp = match c.versionstamp.len() {
                0 => None,
                10 => Some(Versionstamp::from_slice(&c.versionstamp).expect("10 bytes")),
                n => return Err(format!("a check's versionstamp must be 0 or 10 bytes, got {n}")),
            };
            Ok(Check { key: c.key, versionstamp })
        })
        .collect::<Result<_, _>>()?;
    let mutations = w
        .mutations
        .into_iter()
        .map(|m| {
            let expire_at_ms = match m.expire_at_ms {
                0 | -1 => None,
                t if t > 0 => Some(t),
                t => return Err(format!("invalid expire_at_ms {t}")),
            };
            let kind = match MutationType::try_from(m.mutation_type) {
                Ok(MutationType::MSet) => MutationKind::Set(value_from_wire(m.value, "M_SET")?),
                Ok(MutationType::MDelete) => MutationKind::Delete,
                Ok(MutationType::MSum) => {
                    let operand = value_from_wire(m.value, "M_SUM")?;
                    let bound = |b: Vec<u8>| (!b.is_empty()).then_some(Value::V8(b));
                    let (min, max) = (bound(m.sum_min), bound(m.sum_max));
                    if min.is_none() && max.is_none() && !m.sum_clamp {
                        MutationKind::Sum(operand)
                    } else {
                        MutationKind::SumWithLimits { operand, min, max, clamp: m.sum_clamp }
                    }
                }
                Ok(MutationType::MMin) => MutationKind::Min(value_from_wire(m.value, "M_MIN")?),
                Ok(MutationType::MMax) => MutationKind::Max(value_from_wire(m.value, "M_MAX")?),
                Ok(MutationType::MSetSuffixVersionstampedKey) => {
                    MutationKind::SetSuffixVersionstampedKey(value_from_wire(
                        m.value,
                        "M_SET_SUFFIX_VERSIONSTAMPED_KEY",
                    )?)
                }
                _ => return Err(format!("unknown mutation type {}", m.mutation_type)),
            };
            Ok(Mutation { key: m.key, kind, expire_at_ms })
        })
        .collect::<Result<_, _>>()?;
    let enqueues = w
        .enqueues
        .into_iter()
        .map(|e| Enqueue {
            payload: e.payload,
            deadline_ms: e.deadline_ms,
            keys_if_undelivered: e.keys_if_undelivered,
            backoff_schedule: (!e.backoff_schedule.is_empty()).then_some(e.backoff_schedule),
        })
        .collect();
    Ok(AtomicWrite { checks, mutations, enqueues })
}

/// `POST /v2/atomic_write`.
pub(crate) async fn atomic_write(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: proto::AtomicWrite = match decode_request(&state, &headers, body, "AtomicWrite") {
        Ok(r) => r,
        Err(rejected) => return *rejected,
    };
    if state.config.read_only {
        return protobuf(&proto::AtomicWriteOutput {
            status: AtomicWriteStatus::AwWriteDisabled as i32,
            ..Default::default()
        });
    }
    let write = match write_from_wire(request) {
        Ok(w) => w,
        Err(message) => return bad_request(message),
    };
    match state.kv.atomic_write(write).await {
        Ok(CommitOutcome::Committed { versionstamp }) => protobuf(&proto::AtomicWriteOutput {
            status: AtomicWriteStatus::AwSuccess as i32,
            versionstamp: versionstamp.as_bytes().to_vec(),
            failed_checks: vec![],
        }),
        Ok(CommitOutcome::CheckFailed { failed_checks }) => protobuf(&proto::AtomicWriteOutput {
            status: AtomicWriteStatus::AwCheckFailure as i32,
            versionstamp: vec![],
            failed_checks,
        }),
        Ok(other) => engine_error(Error::Internal(format!("unknown commit outcome {other:?}"))),
        Err(e) => engine_error(e),
    }
}
