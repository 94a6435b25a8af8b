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
//! - **Many databases** ([`serve_many`], `openkv serve --data-dir`): every database of an
//!   [`openkv::catalog::Catalog`] at `/databases/<name>/connect`, the admin API
//!   (`/admin/databases`, `/admin/tokens`), and **scoped tokens** — each reaching some
//!   databases with a scope (`read`, `write`, `admin`) and an optional expiry, re-read from
//!   the catalog every [`TOKEN_REFRESH`]: 401 for no, unknown, expired or revoked tokens, 404
//!   for a database the token does not reach (as for one that does not exist), 403 for a
//!   scope that falls short. `docs/protocol-extensions.md` §7.
//! - **Health**: `GET /healthz` and `GET /readyz` on either kind of server, without a token.
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
mod console;
mod console_api;
mod datapath;
mod health;
mod limits;
mod listen;
mod manage;
mod metadata;
mod metrics;
mod queues;
mod registry;
mod replication;
mod response;
mod routes;
mod state;
mod tls;
mod tokens;
mod watch;
pub use config::{ServeError, ServerConfig, WebhookConfig, DEFAULT_READY_MAX_LAG};
pub use health::READY_TIMEOUT;
pub use limits::{
    ServerLimits, DEFAULT_HEADER_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_QUEUE_WAITS, DEFAULT_MAX_WATCHES_PER_TOKEN,
    MIN_HEADER_BYTES,
};
pub use metadata::{METADATA_TTL, SUPPORTED_VERSIONS};
pub use queues::{LEASE_RANGE_MS, MAX_TAKE};
pub use tls::{TlsConfig, TlsError, DEFAULT_HANDSHAKE_TIMEOUT};
pub use tokens::TOKEN_REFRESH;
pub use watch::WATCH_KEEPALIVE;

use std::future::Future;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{any, delete, get};
use axum::Router;
use openkv::Kv;
use tokio::net::TcpListener;

use crate::limits::Admission;
use crate::listen::Admitting;
use crate::response::plain;
use crate::state::AppState;

/// The paths of a database's endpoints (at `/` on a single-database server, beneath
/// `/databases/<name>` on a server of many), all with `POST` and all only to a request whose
/// token has the endpoint's scope (401 without one). The router is built from the same table,
/// so this list is complete; `/healthz` and `/readyz` (GET, no token) are not in it.
pub const ROUTES: &[&str] = &{
    let mut paths = [""; routes::ENDPOINTS.len()];
    let mut i = 0;
    while i < routes::ENDPOINTS.len() {
        paths[i] = routes::ENDPOINTS[i].path;
        i += 1;
    }
    paths
};

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
    check_config(&config)?;
    let database_id = kv.database_id().await?.to_string();
    let limits = config.limits.clone();
    let body_limit = limits.request_body_for(kv.limits());
    let (stop_tx, stopping) = tokio::sync::watch::channel(false);
    let webhook = config
        .queue_webhook
        .clone()
        .map(|webhook| tokio::spawn(queues::run_webhook(kv.clone(), webhook, stopping.clone())));
    let admission = Admission::new(limits.clone());
    let tokens = Arc::new(tokens::Tokens::root_only(config.access_token.clone()));
    let metrics = Arc::new(metrics::HttpMetrics::new());
    let http = config.metrics.then(|| metrics.database(health::SINGLE_DATABASE));
    let tls = config.tls.clone();
    let metrics_addr = config.metrics_addr;
    let state = Arc::new(AppState {
        kv,
        config,
        database_id,
        stopping: stopping.clone(),
        admission,
        database: None,
        base_path: String::new(),
        tokens,
        metrics,
        http,
    });
    let served = health::Served::One(state.clone());
    let app = routes::database_router(state)
        .merge(operators_routes(served.clone(), false))
        .merge(console::routes(served.clone()));
    let app = around(app, body_limit);
    let shutdown = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    let operators = serve_operators(metrics_addr, served, &limits, stopping.clone()).await?;
    run(listener, tls, app, &limits, shutdown, stopping).await;
    if let Some(operators) = operators {
        let _ = operators.await;
    }
    if let Some(webhook) = webhook {
        // It ends once `stopping` flipped; a delivery in flight is redelivered after restart.
        let _ = webhook.await;
    }
    Ok(())
}

/// Serves every database of `catalog` (`openkv serve --data-dir`), each at
/// `/databases/<name>/connect` (the metadata exchange; its data path beneath), with the
/// admin API (`/admin/…`), until `shutdown` completes; then stops accepting, lets requests in
/// flight finish, closes every database and returns. Databases are opened with `options`.
///
/// Tokens: [`ServerConfig::access_token`] is all-powerful; scoped tokens come from the
/// catalog, read again every [`TOKEN_REFRESH`] (with the list of databases: one created or
/// deleted through another server on the same catalog is served or dropped by then).
pub async fn serve_many(
    catalog: Arc<dyn openkv::catalog::Catalog>,
    options: openkv::OpenOptions,
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    check_config(&config)?;
    if config.queue_webhook.is_some() {
        return Err(ServeError::NotWithManyDatabases("a queue webhook"));
    }
    let limits = config.limits.clone();
    let body_limit = limits.request_body_for(&openkv::Limits::default());
    let (stop_tx, stopping) = tokio::sync::watch::channel(false);
    let clock: Arc<dyn openkv::Clock> = Arc::new(openkv::SystemClock);
    let tokens = Arc::new(tokens::Tokens::with_catalog(config.access_token.clone(), clock));
    let tls = config.tls.clone();
    let metrics_addr = config.metrics_addr;
    let registry = Arc::new(registry::Registry::new(
        catalog,
        options,
        config,
        Admission::new(limits.clone()),
        tokens,
        Arc::new(metrics::HttpMetrics::new()),
    ));
    // The first read of the catalog must work: a server that cannot read its catalog would
    // answer every database with 404.
    registry.refresh().await.map_err(ServeError::Catalog)?;
    let refresher = tokio::spawn(refresh_loop(registry.clone(), stopping.clone()));
    let app = Router::new()
        .route("/admin/databases", get(manage::list_databases).post(manage::create_database))
        .route(
            "/admin/databases/{name}",
            get(manage::database_info).delete(manage::delete_database),
        )
        .route("/admin/tokens", get(manage::list_tokens).post(manage::create_token))
        .route("/admin/tokens/{id}", delete(manage::revoke_token))
        .route("/databases/{*rest}", any(registry::dispatch))
        .with_state(registry.clone());
    let served = health::Served::Many(registry.clone());
    let app =
        app.merge(operators_routes(served.clone(), false)).merge(console::routes(served.clone()));
    let app = around(app, body_limit);
    let stopping_registry = registry.clone();
    let shutdown = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
        stopping_registry.stop_all();
    };
    let operators = serve_operators(metrics_addr, served, &limits, stopping.clone()).await?;
    run(listener, tls, app, &limits, shutdown, stopping).await;
    if let Some(operators) = operators {
        let _ = operators.await;
    }
    let _ = refresher.await;
    registry.close_all().await;
    Ok(())
}

/// Reads the catalog every [`TOKEN_REFRESH`] until the server stops.
async fn refresh_loop(
    registry: Arc<registry::Registry>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TOKEN_REFRESH) => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
        if let Err(e) = registry.refresh().await {
            tracing::warn!("reading the catalog failed (the last copy stays in force): {e}");
        }
    }
}

fn check_config(config: &ServerConfig) -> Result<(), ServeError> {
    if config.access_token.chars().count() < 12 {
        return Err(ServeError::WeakToken);
    }
    if config.read_only && config.queue_webhook.is_some() {
        return Err(ServeError::ReadOnlyWebhook);
    }
    if let Some(why) = config.limits.invalid() {
        return Err(ServeError::InvalidLimits(why));
    }
    Ok(())
}

/// `/healthz`, `/readyz` (no token) and `/metrics` (absent with metrics off): see
/// `health.rs`. `/metrics` wants a token on the server's port, none on the listener of
/// [`ServerConfig::metrics_addr`] (`tokenless`).
fn operators_routes(served: health::Served, tokenless: bool) -> Router {
    let app =
        Router::new().route("/healthz", get(health::healthz)).route("/readyz", get(health::readyz));
    let app = match (served.config().metrics, tokenless) {
        (false, _) => app,
        (true, false) => app.route("/metrics", get(health::metrics)),
        (true, true) => app.route("/metrics", get(health::metrics_open)),
    };
    app.with_state(served)
}

/// The listener of [`ServerConfig::metrics_addr`], if any: `/metrics`, `/healthz` and
/// `/readyz` without a token, plain HTTP, until the server stops.
async fn serve_operators(
    addr: Option<std::net::SocketAddr>,
    served: health::Served,
    limits: &ServerLimits,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> Result<Option<tokio::task::JoinHandle<()>>, ServeError> {
    let Some(addr) = addr else { return Ok(None) };
    let listener = TcpListener::bind(addr).await?;
    tracing::info!("metrics and health at http://{}/metrics", listener.local_addr()?);
    let app = around(operators_routes(served, true), 64 * 1024);
    let limits = limits.clone();
    let mut until = stopping.clone();
    Ok(Some(tokio::spawn(async move {
        let tcp = Admitting::new(listener, limits::connection_cap(limits.max_connections));
        let shutdown = async move {
            let _ = until.wait_for(|stop| *stop).await;
        };
        listen::run(tcp, app, &limits, shutdown, stopping).await;
    })))
}

/// The fallback, the body limit and the request log around a server's routes.
fn around(app: Router, body_limit: usize) -> Router {
    app.fallback(|| async { plain(StatusCode::NOT_FOUND, "no such KV Connect endpoint") })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(log_request))
}

async fn run(
    listener: TcpListener,
    tls: Option<TlsConfig>,
    app: Router,
    limits: &ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    stopping: tokio::sync::watch::Receiver<bool>,
) {
    let tcp = Admitting::new(listener, limits::connection_cap(limits.max_connections));
    match tls {
        None => listen::run(tcp, app, limits, shutdown, stopping).await,
        // The same server on a listener that hands over TLS-terminated connections.
        Some(tls) => {
            let tls = tls::TlsListener::new(tcp, &tls);
            listen::run(tls, app, limits, shutdown, stopping).await
        }
    }
}

/// One log line per request: `debug` when it succeeded, `warn` for the client's mistakes (4xx),
/// `error` for the server's failures (5xx). A watch is logged when its stream starts.
///
/// Every request gets an id: the client's `x-request-id` when it is well formed
/// ([`request_id`]), else a new random one; the response carries it back in `x-request-id`.
/// The request runs in a span named `request` with the fields `request_id`, `method` and
/// `path`, and `database`, `token_id` and `refusal` (why the authentication layer refused it:
/// `tokens::Denied::reason`) declared empty, for the handlers to fill with
/// `tracing::Span::current().record(..)` once they know them. Nothing of the request's
/// headers but the id is logged (never the token).
async fn log_request(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use tracing::Instrument as _;
    let id = request_id(request.headers().get(REQUEST_ID));
    let span = tracing::info_span!(
        "request",
        request_id = %id.to_str().unwrap_or_default(),
        method = %request.method(),
        path = %request.uri().path(),
        database = tracing::field::Empty,
        token_id = tracing::field::Empty,
        refusal = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let micros = started.elapsed().as_micros() as u64;
    span.in_scope(|| {
        if response.status().is_server_error() {
            tracing::error!(status, micros, "request failed on the server");
        } else if response.status().is_client_error() {
            tracing::warn!(status, micros, "request rejected");
        } else {
            tracing::debug!(status, micros, "request");
        }
    });
    response.headers_mut().insert(REQUEST_ID, id);
    response
}

/// The header carrying a request's id, both ways.
const REQUEST_ID: axum::http::HeaderName = axum::http::HeaderName::from_static("x-request-id");

/// The longest client-supplied request id taken as is.
const MAX_REQUEST_ID_LEN: usize = 128;

/// A request's id: the client's `x-request-id` if it is 1 to [`MAX_REQUEST_ID_LEN`] visible
/// ASCII characters (no spaces, no control characters: it goes into log lines as is), else
/// a new random one (128 random bits in 32 hex digits).
fn request_id(given: Option<&axum::http::HeaderValue>) -> axum::http::HeaderValue {
    let well_formed = |v: &&axum::http::HeaderValue| {
        (1..=MAX_REQUEST_ID_LEN).contains(&v.len()) && v.as_bytes().iter().all(u8::is_ascii_graphic)
    };
    match given.filter(well_formed) {
        Some(id) => id.clone(),
        // Hex digits are always a valid header value. The thread's generator, not the OS's:
        // no system call per request.
        None => axum::http::HeaderValue::from_str(&format!("{:032x}", rand::random::<u128>()))
            .unwrap_or(axum::http::HeaderValue::from_static("-")),
    }
}
