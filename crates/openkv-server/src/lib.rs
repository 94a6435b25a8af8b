//! # openkv-server — KV Connect over HTTP
//!
//! The server behind `openkv serve`: it speaks KV Connect, the protocol `Deno.openKv("http://…")`
//! and the npm client `@deno/kv` use, over HTTP/1.1 and HTTP/2 cleartext on one port, in front
//! of any [`openkv::Kv`] — or over HTTPS with [`ServerConfig::tls`].
//!
//! - **Metadata exchange** (`POST /`): protocol versions 1, 2 and 3; the database id is the
//!   database's own stable id ([`Kv::database_id`]), not the nil UUID.
//! - **Data path**: `POST /v2/snapshot_read`, `/v2/atomic_write` (protobuf), all limits of
//!   the engine enforced, `failed_checks` filled, writes all or nothing.
//! - **Errors**: every client mistake (bad token, malformed JSON or protobuf, wrong headers,
//!   bad database id, LE64 of the wrong length, unknown encodings, any limit + 1) is a 4xx
//!   with a plain-text message; 5xx only for server-side failures, which the Deno client
//!   retries. Tokens are compared in constant time.
//! - `read_only`: writes answer `AW_WRITE_DISABLED`, the protocol's own status.
//! - [`serve`] takes the listener and the shutdown signal as arguments: it stops accepting on
//!   shutdown, finishes requests in flight, and returns; the caller then closes the store.
//!
//! - **Watch** (`POST /v2/watch`, protocol v3): a stream of length-prefixed `WatchOutput`
//!   frames — the current state first, then a frame whenever a watched key's versionstamp
//!   changes (driven by the engine's change feed, no polling), and an empty keep-alive frame
//!   every 5 s. Watch streams end when the server shuts down.
//!
//! - **TLS** (optional): [`TlsConfig::from_pem_files`] loads a PEM certificate chain and key;
//!   the port then speaks HTTPS only, ALPN `h2` and `http/1.1` (rustls, ring). A client that
//!   fails or stalls its handshake (plain HTTP, an untrusted certificate, garbage) is dropped
//!   after at most [`DEFAULT_HANDSHAKE_TIMEOUT`] without holding up anyone else.
//!
//! - **Limits** ([`ServerLimits`], `limits.rs`; each default a named constant with its reason):
//!   a connection cap, a header timeout (a client trickling half a header — slowloris — is cut
//!   off), an idle timeout, header and body sizes (431, 413: an oversized upload is refused
//!   after reading at most the limit), watch streams per access token and queue long polls
//!   (429). One client cannot use up what the others need.
// A library reports through its return values and `tracing`, never on stdout/stderr;
// `unsafe_code`, `missing_docs` and the rest: `[workspace.lints]` in the root Cargo.toml.
#![deny(clippy::print_stdout, clippy::print_stderr)]

/// The data-path messages, re-exported from `openkv-proto` for the server's users and tests.
pub use openkv_proto as proto;

mod admin;
mod auth;
mod config;
mod datapath;
mod limits;
mod listen;
mod metadata;
mod metrics;
mod queues;
mod replication;
mod response;
mod state;
mod tls;
mod watch;
pub use config::{ServeError, ServerConfig, WebhookConfig};
pub use limits::{
    ServerLimits, DEFAULT_HEADER_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_QUEUE_WAITS, DEFAULT_MAX_WATCHES_PER_TOKEN,
    MIN_HEADER_BYTES,
};
pub use metadata::{METADATA_TTL, SUPPORTED_VERSIONS};
pub use queues::{LEASE_RANGE_MS, MAX_TAKE};
pub use tls::{TlsConfig, TlsError, DEFAULT_HANDSHAKE_TIMEOUT};
pub use watch::WATCH_KEEPALIVE;

use std::future::Future;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{post, MethodRouter};
use axum::Router;
use openkv::Kv;
use tokio::net::TcpListener;

use crate::auth::Refusal::{self, AfterBody, AtOnce};
use crate::limits::Admission;
use crate::listen::Admitting;
use crate::response::plain;
use crate::state::AppState;

/// One endpoint of the router: its path, how the authentication layer refuses a request
/// without the token, and its handler (every endpoint is `POST`).
struct Endpoint {
    path: &'static str,
    refusal: Refusal,
    handler: fn() -> MethodRouter<Arc<AppState>>,
}

impl Endpoint {
    const fn new(
        path: &'static str,
        refusal: Refusal,
        handler: fn() -> MethodRouter<Arc<AppState>>,
    ) -> Endpoint {
        Endpoint { path, refusal, handler }
    }
}

/// Every endpoint, and the only place the router takes its routes from: [`router`] puts each
/// one behind the authentication layer, so an endpoint added here needs the access token
/// without further ado. An endpoint meant to answer without it would need its own branch in
/// [`router`] — none does. The [`Refusal`]s keep what the handlers' arguments did with the
/// body when the handlers still checked the token themselves.
const ENDPOINTS: &[Endpoint] = &[
    Endpoint::new("/", AfterBody, || post(metadata::metadata)),
    Endpoint::new("/v2/snapshot_read", AfterBody, || post(datapath::snapshot_read)),
    Endpoint::new("/v2/atomic_write", AfterBody, || post(datapath::atomic_write)),
    Endpoint::new("/v2/watch", AfterBody, || post(watch::watch)),
    // A replica's eventual endpoint (listed in its metadata, and in a primary's for each
    // `--replica-endpoint`): reads from its local copy. On a primary it reads as `/v2` does.
    Endpoint::new("/v2/eventual/snapshot_read", AfterBody, || {
        post(datapath::snapshot_read_eventual)
    }),
    Endpoint::new("/v2/eventual/watch", AfterBody, || post(watch::watch)),
    Endpoint::new("/v2/openkv/queue/take", AfterBody, || post(queues::take)),
    Endpoint::new("/v2/openkv/queue/wait", AfterBody, || post(queues::wait)),
    Endpoint::new("/v2/openkv/queue/renew", AfterBody, || post(queues::renew)),
    Endpoint::new("/v2/openkv/queue/finish", AfterBody, || post(queues::finish)),
    Endpoint::new("/v2/openkv/replication/snapshot", AfterBody, || post(replication::snapshot)),
    Endpoint::new("/v2/openkv/replication/log", AfterBody, || post(replication::log)),
    Endpoint::new("/v2/openkv/replication/status", AfterBody, || post(replication::status)),
    Endpoint::new("/v2/openkv/backup", AtOnce, || post(admin::backup)),
    // A backup may be far larger than any KV Connect request: streamed to disk, no limit.
    Endpoint::new("/v2/openkv/restore", AtOnce, || {
        post(admin::restore).layer(DefaultBodyLimit::disable())
    }),
];

/// The paths the server answers, all with `POST` and all only to a request with the access
/// token (401 otherwise). The router is built from the same table, so this list is complete.
pub const ROUTES: &[&str] = &{
    let mut paths = [""; ENDPOINTS.len()];
    let mut i = 0;
    while i < ENDPOINTS.len() {
        paths[i] = ENDPOINTS[i].path;
        i += 1;
    }
    paths
};

/// The router: [`ENDPOINTS`], each behind the authentication layer, then the fallback, the
/// body limit and the request log around everything.
fn router(state: Arc<AppState>, body_limit: usize) -> Router {
    let mut app = Router::new();
    for endpoint in ENDPOINTS {
        // A route layer wraps the endpoint's handler only: a wrong method (405) and an unknown
        // path (404, the fallback) answer the same with or without a token, as they always did.
        let guard = auth::Guard { state: state.clone(), refusal: endpoint.refusal };
        let auth = axum::middleware::from_fn_with_state(guard, auth::require_token);
        app = app.route(endpoint.path, (endpoint.handler)().route_layer(auth));
    }
    app.fallback(|| async { plain(StatusCode::NOT_FOUND, "no such KV Connect endpoint") })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(log_request))
        .with_state(state)
}

/// Serves KV Connect for `kv` on `listener` until `shutdown` completes, then stops accepting,
/// lets requests in flight finish, and returns. The caller owns `kv` and closes it afterwards.
///
/// With [`ServerConfig::tls`] the listener speaks HTTPS; shutdown is the same.
pub async fn serve(
    kv: Kv,
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    if config.access_token.chars().count() < 12 {
        return Err(ServeError::WeakToken);
    }
    if config.read_only && config.queue_webhook.is_some() {
        return Err(ServeError::ReadOnlyWebhook);
    }
    if let Some(why) = config.limits.invalid() {
        return Err(ServeError::InvalidLimits(why));
    }
    let database_id = kv.database_id().await?.to_string();
    let limits = config.limits.clone();
    let body_limit = limits.request_body_for(kv.limits());
    let (stop_tx, stopping) = tokio::sync::watch::channel(false);
    let tls = config.tls.clone();
    let webhook = config
        .queue_webhook
        .clone()
        .map(|webhook| tokio::spawn(queues::run_webhook(kv.clone(), webhook, stopping.clone())));
    let admission = Admission::new(limits.clone());
    let state =
        Arc::new(AppState { kv, config, database_id, stopping: stopping.clone(), admission });
    let app = router(state, body_limit);
    let shutdown = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    let tcp = Admitting::new(listener, limits::connection_cap(limits.max_connections));
    match tls {
        None => listen::run(tcp, app, &limits, shutdown, stopping).await,
        // The same server on a listener that hands over TLS-terminated connections.
        Some(tls) => {
            let tls = tls::TlsListener::new(tcp, &tls);
            listen::run(tls, app, &limits, shutdown, stopping).await
        }
    }
    if let Some(webhook) = webhook {
        // It ends once `stopping` flipped; a delivery in flight is redelivered after restart.
        let _ = webhook.await;
    }
    Ok(())
}

/// One log line per request: `debug` when it succeeded, `warn` for the client's mistakes (4xx),
/// `error` for the server's failures (5xx). A watch is logged when its stream starts.
async fn log_request(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let micros = started.elapsed().as_micros() as u64;
    if response.status().is_server_error() {
        tracing::error!(%method, %path, status, micros, "request failed on the server");
    } else if response.status().is_client_error() {
        tracing::warn!(%method, %path, status, micros, "request rejected");
    } else {
        tracing::debug!(%method, %path, status, micros, "request");
    }
    response
}
