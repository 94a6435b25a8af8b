//! openkv's replication extension (docs/protocol-extensions.md §6): `POST
//! /v2/openkv/replication/snapshot` (a consistent snapshot, streamed in frames) and
//! `/v2/openkv/replication/log` (the change log after a position, long-polled; `410 Gone` when
//! the follower must bootstrap again). Messages, framing and bounds are `openkv_proto::replication`'s.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use openkv::changelog::LogRead;
use openkv_proto::replication as repl;

use crate::datapath::reject_headers;
use crate::response::{bad_request, engine_error, plain, protobuf};
use crate::state::AppState;

/// `POST /v2/openkv/replication/snapshot`.
pub(crate) async fn snapshot(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(rejected) = reject_headers(&state, &headers) {
        return rejected;
    }
    let source = match state.kv.replication_source() {
        Ok(source) => source,
        Err(e) => return engine_error(e),
    };
    let snapshot = match source.snapshot().await {
        Ok(snapshot) => snapshot,
        Err(e) => return engine_error(e),
    };
    let head = repl::framed(&repl::header_frame(&snapshot.header, &state.database_id));
    // A frame per chunk, then the end marker with the count. An error ends the stream without
    // it (and breaks the response), which the follower refuses.
    let frames = futures::stream::unfold(
        (snapshot.entries, 0u64, false),
        |(mut entries, count, done)| async move {
            if done {
                return None;
            }
            match entries.next().await {
                Some(Ok(chunk)) => {
                    let frame = repl::SnapshotFrame {
                        entries: chunk
                            .iter()
                            .map(|(k, row)| repl::change_to_wire(k, Some(row)))
                            .collect(),
                        ..Default::default()
                    };
                    let n = chunk.len() as u64;
                    Some((Ok(Bytes::from(repl::framed(&frame))), (entries, count + n, false)))
                }
                Some(Err(e)) => {
                    tracing::error!("a snapshot stream failed: {e}");
                    Some((Err(std::io::Error::other(e.to_string())), (entries, count, true)))
                }
                None => {
                    let end = repl::SnapshotFrame {
                        end: Some(repl::SnapshotEnd { entries: count }),
                        ..Default::default()
                    };
                    Some((Ok(Bytes::from(repl::framed(&end))), (entries, count, true)))
                }
            }
        },
    );
    let body = futures::stream::once(async move { Ok(Bytes::from(head)) }).chain(frames);
    ([(header::CONTENT_TYPE, "application/x-openkv-snapshot")], Body::from_stream(body))
        .into_response()
}

/// `POST /v2/openkv/replication/log`.
pub(crate) async fn log(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(rejected) = reject_headers(&state, &headers) {
        return rejected;
    }
    let request: repl::LogRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(format!("invalid log request: {e}")),
    };
    if request.wait_ms > repl::MAX_WAIT_MS {
        return bad_request(format!("waitMs is at most {}", repl::MAX_WAIT_MS));
    }
    if request.max_bytes > repl::MAX_LOG_BYTES {
        return bad_request(format!("maxBytes is at most {}", repl::MAX_LOG_BYTES));
    }
    let source = match state.kv.replication_source() {
        Ok(source) => source,
        Err(e) => return engine_error(e),
    };
    if request.max_bytes == 0 {
        return match source.head().await {
            Ok(head) => protobuf(&repl::LogBatch { epoch: String::new(), head, records: vec![] }),
            Err(e) => engine_error(e),
        };
    }
    // Subscribed before the first read: a commit between the two wakes the wait.
    let mut changes = state.kv.subscribe().ok();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(request.wait_ms);
    let mut stopping = state.stopping.clone();
    loop {
        let read = source.log_after(request.epoch.clone(), request.after, request.max_bytes).await;
        match read {
            Ok(LogRead::Records { epoch, head, records }) => {
                let waiting = records.is_empty() && tokio::time::Instant::now() < deadline;
                if !waiting || changes.is_none() {
                    return protobuf(&repl::LogBatch {
                        epoch,
                        head,
                        records: records.iter().map(repl::record_to_wire).collect(),
                    });
                }
            }
            Ok(LogRead::Gone(why)) => {
                let body = serde_json::to_string(&repl::GoneBody::new(&why)).unwrap_or_default();
                return (StatusCode::GONE, [(header::CONTENT_TYPE, "application/json")], body)
                    .into_response();
            }
            Ok(other) => {
                return plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("unexpected log answer {other:?}"),
                )
            }
            Err(e) => return engine_error(e),
        }
        let Some(feed) = changes.as_mut() else { continue };
        let mut feed_closed = false;
        tokio::select! {
            // Any commit (or a lag, which may hide one) is worth another look.
            event = feed.recv() => {
                feed_closed = matches!(event, Err(tokio::sync::broadcast::error::RecvError::Closed));
            }
            _ = tokio::time::sleep_until(deadline) => {}
            _ = stopping.wait_for(|&s| s) => {}
        }
        if feed_closed || *stopping.borrow() {
            // Answer what there is (shutdown waits for this response; a closed feed would
            // wake us at once forever).
            changes = None;
        }
    }
}

/// `POST /v2/openkv/replication/status`: where this server's data is, and on a replica how far
/// behind its primary (what `openkv info` shows).
pub(crate) async fn status(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(rejected) = reject_headers(&state, &headers) {
        return rejected;
    }
    let status = match state.kv.replica_status().await {
        Ok(status) => status,
        Err(e) => return engine_error(e),
    };
    let answer = match status {
        Some(s) => repl::StatusResponse {
            replica: true,
            version: s.applied,
            primary_head: s.primary_head,
            lag_versions: s.lag_versions(),
            lag_ms: s.lag_ms(openkv::Clock::now_ms(&openkv::SystemClock)),
            bootstraps: s.bootstraps,
            records_applied: s.records_applied,
            reads_local: s.reads_local,
            reads_forwarded: s.reads_forwarded,
            watches_local: s.watches_local,
            last_error: s.last_error,
            backup: None,
        },
        None => {
            let source = match state.kv.replication_source() {
                Ok(source) => source,
                Err(e) => return engine_error(e),
            };
            match source.head().await {
                Ok(version) => repl::StatusResponse { version, ..Default::default() },
                Err(e) => return engine_error(e),
            }
        }
    };
    let mut answer = answer;
    answer.backup = state.config.backup.as_ref().map(|status| {
        let s = status.borrow().clone();
        let now = openkv::Clock::now_ms(&openkv::SystemClock);
        repl::BackupStatusBody {
            location: s.location.clone(),
            shipped_version: s.shipped_version,
            lag_versions: s.lag_versions(),
            lag_ms: s.lag_ms(now),
            last_success_ms: s.last_success_ms,
            last_error: s.last_error,
            stopped: s.stopped,
        }
    });
    crate::response::typed_json(&answer)
}
