//! The data path: `POST /v2/snapshot_read` and `/v2/atomic_write` (protobuf), the check of the
//! data-path headers every `/v2` endpoint shares. The mapping between wire and engine types is
//! `openkv_proto::convert`'s, shared with the client.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use openkv::Consistency;
use prost::Message;

use crate::proto::convert::{
    outcome_to_wire, read_from_wire, read_output_to_wire, write_from_wire,
};
use crate::proto::{self, AtomicWriteStatus};
use crate::response::{bad_request, engine_error, protobuf};
use crate::state::AppState;

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

/// `POST /v2/snapshot_read`: a strong read (on a replica, after its read index).
pub(crate) async fn snapshot_read(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    read(&state, &headers, body, Consistency::Strong).await
}

/// `POST /v2/eventual/snapshot_read`: on a replica, a read of its local copy as it is,
/// answered `read_is_strongly_consistent = false` with the replica's lag in headers
/// (`x-openkv-replica-lag-versions`, `x-openkv-replica-lag-ms`); elsewhere a strong read.
pub(crate) async fn snapshot_read_eventual(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    read(&state, &headers, body, Consistency::Eventual).await
}

async fn read(
    state: &AppState,
    headers: &HeaderMap,
    body: Bytes,
    consistency: Consistency,
) -> Response {
    let request: proto::SnapshotRead = match decode_request(state, headers, body, "SnapshotRead") {
        Ok(r) => r,
        Err(rejected) => return *rejected,
    };
    let ranges = match read_from_wire(request) {
        Ok(ranges) => ranges,
        Err(e) => return bad_request(e.to_string()),
    };
    let lagging = consistency == Consistency::Eventual && state.kv.lagging_eventual_reads();
    // Taken before the read: the lag it reports is at most the read's.
    let replica = if lagging { state.kv.replica_status().await.ok().flatten() } else { None };
    match state.kv.snapshot_read(ranges, consistency).await {
        Ok(results) => {
            let mut output = read_output_to_wire(results);
            output.read_is_strongly_consistent = !lagging;
            let Some(status) = replica else { return protobuf(&output) };
            let mut response = protobuf(&output);
            let lag_ms = status.lag_ms(openkv::Clock::now_ms(&openkv::SystemClock));
            let headers = response.headers_mut();
            headers.insert("x-openkv-replica-lag-versions", status.lag_versions().into());
            headers.insert("x-openkv-replica-lag-ms", lag_ms.into());
            response
        }
        Err(e) => engine_error(e),
    }
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
        Err(e) => return bad_request(e.to_string()),
    };
    match state.kv.atomic_write(write).await {
        Ok(outcome) => protobuf(&outcome_to_wire(outcome)),
        Err(e) => engine_error(e),
    }
}
