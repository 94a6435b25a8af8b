//! `POST /v2/watch` (protocol v3): [`openkv::Kv::watch_encoded`]'s snapshots as a stream of
//! length-prefixed `WatchOutput` frames, with keep-alives, ending at shutdown. Each stream
//! holds one of its token's watch slots (`ServerLimits::max_watches_per_token`) until it ends.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use openkv::{Error, RawEntry, WatchSnapshots};
use prost::Message;

use crate::auth::presented_token;
use crate::datapath::decode_request;
use crate::limits::WatchSlot;
use crate::proto::convert::{entry_to_wire, watch_from_wire};
use crate::proto::{self, SnapshotReadStatus};
use crate::response::{bad_request, engine_error};
use crate::state::AppState;

/// How often an idle watch stream sends an empty keep-alive frame.
pub const WATCH_KEEPALIVE: Duration = Duration::from_secs(5);

/// `POST /v2/watch`.
pub(crate) async fn watch(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: proto::Watch = match decode_request(&state, &headers, body, "Watch") {
        Ok(r) => r,
        Err(rejected) => return *rejected,
    };
    // Checked here, not left to `watch_encoded`: the server's message is its own (Deno's).
    let max = state.kv.limits().max_watched_keys;
    if request.keys.len() > max {
        return bad_request(format!("Too many keys to watch (max {max})"));
    }
    // Taken before the first read; it goes into the stream, so it is freed when the stream
    // ends — shutdown, a failed read, or the client going away (hyper drops the body).
    let token = state.admission.token_key(presented_token(&headers));
    let slot = match state.admission.watch(token) {
        Ok(slot) => slot,
        Err(refused) => return *refused,
    };
    let keys: Vec<Vec<u8>> = watch_from_wire(request);
    let (first, snapshots) = if keys.is_empty() {
        // `watch_encoded` refuses an empty list; the server has always answered it with a
        // frame of no keys, then keep-alives until shutdown. Kept for the clients that send it.
        (Vec::new(), futures::stream::pending().boxed())
    } else {
        // It subscribes to the change feed before its first read, so no commit between the
        // two is missed.
        let mut snapshots = match state.kv.watch_encoded(keys) {
            Ok(snapshots) => snapshots,
            Err(e) => return engine_error(e),
        };
        // The first snapshot is read before answering, so that a failure is still an HTTP
        // error rather than an empty stream.
        match snapshots.next().await {
            Some(Ok(first)) => (first, snapshots),
            Some(Err(e)) => return engine_error(e),
            // The stream ends at once only when the store was closed.
            None => return engine_error(Error::Closed),
        }
    };
    let first_frame = snapshot_frame(first);
    let follower = Follower {
        snapshots,
        stopping: state.stopping.clone(),
        _slot: slot,
        _counted: state.http.as_ref().map(|http| http.watch_opened()),
    };
    let stream = futures::stream::once(
        async move { Ok::<_, std::convert::Infallible>(first_frame) },
    )
    .chain(futures::stream::unfold(follower, |mut f| async move {
        let frame = f.next_frame().await?;
        Some((Ok(frame), f))
    }));
    ([(header::CONTENT_TYPE, "application/octet-stream")], axum::body::Body::from_stream(stream))
        .into_response()
}

/// One frame of a watch stream: `u32` little-endian length, then the message.
fn frame(message: &proto::WatchOutput) -> Bytes {
    let body = message.encode_to_vec();
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    Bytes::from(out)
}

/// A snapshot as a frame: every key's current entry, marked changed. The Deno CLI 2.9 client
/// shows a key reported `changed: false` as absent, so a frame always carries the whole state
/// (clients compare versionstamps and emit only real changes).
fn snapshot_frame(snapshot: Vec<Option<RawEntry>>) -> Bytes {
    frame(&proto::WatchOutput {
        status: SnapshotReadStatus::SrSuccess as i32,
        keys: snapshot
            .into_iter()
            .map(|e| proto::WatchKeyOutput {
                changed: true,
                entry_if_changed: e.map(entry_to_wire),
            })
            .collect(),
    })
}

/// The frames after the first.
struct Follower {
    /// Every item differs from the one before (`watch_encoded` compares versionstamps).
    snapshots: WatchSnapshots,
    stopping: tokio::sync::watch::Receiver<bool>,
    /// The token's watch slot, held as long as the stream.
    _slot: WatchSlot,
    /// Counts the stream in `openkv_watch_streams` while it lives.
    _counted: Option<crate::metrics::WatchStream>,
}

impl Follower {
    /// The next frame to send, or `None` to end the stream (shutdown, store closed, a failed
    /// read).
    async fn next_frame(&mut self) -> Option<Bytes> {
        if *self.stopping.borrow() {
            return None;
        }
        // `snapshots.next()` is cancel-safe: a read in progress lives in the stream, not in
        // the dropped future, so a keep-alive does not lose a change.
        tokio::select! {
            _ = self.stopping.changed() => None,
            _ = tokio::time::sleep(WATCH_KEEPALIVE) => Some(Bytes::from_static(&[0, 0, 0, 0])),
            snapshot = self.snapshots.next() => match snapshot? {
                Ok(snapshot) => Some(snapshot_frame(snapshot)),
                Err(e) => {
                    tracing::warn!("watch: a read of the watched keys failed, ending: {e}");
                    None
                }
            },
        }
    }
}
