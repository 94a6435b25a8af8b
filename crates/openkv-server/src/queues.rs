//! Queues over the network — what no other KV Connect server has (docs/protocol-extensions.md).
//!
//! - **Pull** (`POST <endpoint>/openkv/queue/{take,renew,finish}`, JSON, the data path's
//!   authentication): remote listeners — the Rust library's remote backend — lease messages,
//!   renew the leases while their handler runs, and report the outcome. A lease that runs out
//!   (a listener that vanished) makes the message due again. `wait` is a long poll: it
//!   answers once a message is due, so that listeners need not poll to hear of one.
//! - **Push** (`--queue-webhook <url>`): the server runs a listener of its own that POSTs each
//!   message to the webhook as JSON (the typed JSON rendering of the value). 2xx = delivered;
//!   anything else, a network error or a timeout = a failed attempt, retried per the message's
//!   backoff schedule, then written to its `keys_if_undelivered`.
//!
//! Both run on the engine's queue primitives, so messages that Deno CLI (or `@deno/kv`
//! through this server) enqueued are delivered too, with the same at-least-once guarantee.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use openkv::{Kv, QueueMessage};

use crate::config::WebhookConfig;
use crate::datapath::reject_headers;
use crate::response::{bad_request, engine_error, json, plain, typed_json};
use crate::state::AppState;

// The extension's bounds and messages are the wire layer's (`openkv_proto::queue`), shared with
// the client; re-exported at the crate root as they always were.
use crate::proto::queue::{
    FinishRequest, RenewRequest, TakeRequest, TakeResponse, TakenMessage, WaitRequest, WaitResponse,
};
pub use crate::proto::queue::{LEASE_RANGE_MS, MAX_TAKE, MAX_WAIT_MS};

/// Checks the data-path headers, refuses on a read-only server (delivering changes the queue),
/// and parses the JSON body.
fn json_request<T: serde::de::DeserializeOwned>(
    state: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, Box<Response>> {
    if let Some(rejected) = reject_headers(state, headers) {
        return Err(Box::new(rejected));
    }
    if state.config.read_only {
        let refusal = plain(StatusCode::FORBIDDEN, "the server is read-only: no queue delivery");
        return Err(Box::new(refusal));
    }
    serde_json::from_slice(body)
        .map_err(|e| Box::new(bad_request(format!("invalid JSON body: {e}"))))
}

fn lease(ms: u64) -> Result<Duration, Box<Response>> {
    if !LEASE_RANGE_MS.contains(&ms) {
        return Err(Box::new(bad_request(format!(
            "leaseMs must be between {} and {}",
            LEASE_RANGE_MS.start(),
            LEASE_RANGE_MS.end()
        ))));
    }
    Ok(Duration::from_millis(ms))
}

/// `POST <endpoint>/openkv/queue/take`.
pub(crate) async fn take(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: TakeRequest = match json_request(&state, &headers, &body) {
        Ok(r) => r,
        Err(rejected) => return *rejected,
    };
    if !(1..=MAX_TAKE).contains(&request.max) {
        return bad_request(format!("max must be between 1 and {MAX_TAKE}"));
    }
    let lease = match lease(request.lease_ms) {
        Ok(l) => l,
        Err(rejected) => return *rejected,
    };
    match state.kv.queue_take(request.max, lease).await {
        Ok(messages) => {
            let messages = messages
                .into_iter()
                .map(|m| TakenMessage {
                    payload: base64::engine::general_purpose::STANDARD.encode(&m.payload),
                    id: m.id,
                    due_ms: m.due_ms,
                    attempt: m.attempt,
                })
                .collect();
            typed_json(&TakeResponse { messages })
        }
        Err(e) => engine_error(e),
    }
}

/// `POST <endpoint>/openkv/queue/wait`: `{"due": true}` as soon as some message is due (one
/// enqueued through this server at once; by another process within about a second),
/// `{"due": false}` after `timeoutMs` without one, or at once when the server shuts down (a
/// long poll must not hold up the graceful shutdown). 429 when the server already holds
/// `ServerLimits::max_queue_waits` of them.
pub(crate) async fn wait(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: WaitRequest = match json_request(&state, &headers, &body) {
        Ok(r) => r,
        Err(rejected) => return *rejected,
    };
    if request.timeout_ms > MAX_WAIT_MS {
        return bad_request(format!("timeoutMs must be at most {MAX_WAIT_MS}"));
    }
    // Held while waiting; dropped with this future if the client goes away.
    let _slot = match state.admission.queue_wait() {
        Ok(slot) => slot,
        Err(refused) => return *refused,
    };
    let mut stopping = state.stopping.clone();
    tokio::select! {
        due = state.kv.queue_wait_due(Duration::from_millis(request.timeout_ms)) => match due {
            Ok(due) => typed_json(&WaitResponse { due }),
            Err(e) => engine_error(e),
        },
        _ = stopping.wait_for(|&stopping| stopping) => typed_json(&WaitResponse { due: false }),
    }
}

/// `POST <endpoint>/openkv/queue/renew`.
pub(crate) async fn renew(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: RenewRequest = match json_request(&state, &headers, &body) {
        Ok(r) => r,
        Err(rejected) => return *rejected,
    };
    if request.ids.len() > MAX_TAKE * 10 {
        return bad_request(format!("at most {} ids per renewal", MAX_TAKE * 10));
    }
    let lease = match lease(request.lease_ms) {
        Ok(l) => l,
        Err(rejected) => return *rejected,
    };
    match state.kv.queue_renew(request.ids, lease).await {
        Ok(()) => json(serde_json::json!({})),
        Err(e) => engine_error(e),
    }
}

/// `POST <endpoint>/openkv/queue/finish`.
pub(crate) async fn finish(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: FinishRequest = match json_request(&state, &headers, &body) {
        Ok(r) => r,
        Err(rejected) => return *rejected,
    };
    if request.results.len() > MAX_TAKE * 10 {
        return bad_request(format!("at most {} results per finish", MAX_TAKE * 10));
    }
    let outcomes = request.results.into_iter().map(|r| (r.id, r.delivered)).collect();
    match state.kv.queue_finish(outcomes).await {
        Ok(()) => json(serde_json::json!({})),
        Err(e) => engine_error(e),
    }
}

/// One webhook delivery attempt.
async fn post_to_webhook(
    client: &reqwest::Client,
    config: &WebhookConfig,
    message: QueueMessage,
) -> Result<(), String> {
    let body = message
        .value
        .to_js()
        .map(|js| openkv::to_json(&js))
        .map_err(|e| format!("message {} cannot be rendered as JSON: {e}", message.id))?;
    let response = client
        .post(&config.url)
        .timeout(config.timeout)
        .header(header::CONTENT_TYPE.as_str(), "application/json")
        .header("x-openkv-message-id", &message.id)
        .header("x-openkv-attempt", message.attempt.to_string())
        .header("x-openkv-due-ms", message.due_ms.to_string())
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| format!("webhook {}: {e}", config.url))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("webhook {} answered {}", config.url, response.status()))
    }
}

/// Runs webhook delivery until `stopping` flips. The listener is supervised: if it ever fails
/// (a storage error), the failure is logged at error level and delivery restarts after a
/// pause — it never dies silently.
pub(crate) async fn run_webhook(
    kv: Kv,
    config: WebhookConfig,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let client = reqwest::Client::new();
    let config = Arc::new(config);
    let mut pause = Duration::from_millis(100);
    loop {
        let (client, config) = (client.clone(), config.clone());
        let listening = kv.clone().listen_queue(move |message| {
            let (client, config) = (client.clone(), config.clone());
            async move { post_to_webhook(&client, &config, message).await }
        });
        tokio::select! {
            ended = listening => match ended {
                // The store was closed: nothing more to deliver.
                Ok(()) => return,
                Err(e) => tracing::error!("queue webhook delivery failed, restarting in {pause:?}: {e}"),
            },
            _ = stopping.wait_for(|stop| *stop) => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
        pause = (pause * 2).min(Duration::from_secs(30));
    }
}
