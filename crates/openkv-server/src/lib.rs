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
#![deny(unsafe_code)]
#![warn(missing_docs)]

/// The data-path messages, re-exported from `openkv-proto` for the server's users and tests.
pub use openkv_proto as proto;

mod queues;
mod tls;
pub use queues::{WebhookConfig, LEASE_RANGE_MS, MAX_TAKE};
pub use tls::{TlsConfig, TlsError, DEFAULT_HANDSHAKE_TIMEOUT};

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures::StreamExt;
use openkv::{
    AtomicWrite, Check, CommitOutcome, Consistency, Enqueue, Error, Kv, Mutation, MutationKind,
    ReadRange, Value, Versionstamp,
};
use prost::Message;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use crate::proto::{AtomicWriteStatus, MutationType, SnapshotReadStatus, ValueEncoding};

/// The protocol versions this server speaks.
pub const SUPPORTED_VERSIONS: [u64; 3] = [1, 2, 3];
/// How long a metadata response stays valid (clients refresh before it expires).
pub const METADATA_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// How the server runs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The bearer token clients must present (at least 12 characters).
    pub access_token: String,
    /// Refuse writes (`AW_WRITE_DISABLED`).
    pub read_only: bool,
    /// Serve HTTPS with this certificate instead of plain HTTP.
    pub tls: Option<TlsConfig>,
    /// Push every queue message to this webhook (see [`WebhookConfig`]).
    pub queue_webhook: Option<WebhookConfig>,
}

impl ServerConfig {
    /// A read-write server requiring `access_token`.
    pub fn new(access_token: impl Into<String>) -> Self {
        ServerConfig {
            access_token: access_token.into(),
            read_only: false,
            tls: None,
            queue_webhook: None,
        }
    }

    /// Delivers queue messages to a webhook (needs a writable server).
    pub fn queue_webhook(mut self, webhook: WebhookConfig) -> Self {
        self.queue_webhook = Some(webhook);
        self
    }

    /// Sets `read_only`.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Serves HTTPS with `tls` (see [`TlsConfig::from_pem_files`]).
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The access token is too short to be a secret.
    #[error("the access token must be at least 12 characters long")]
    WeakToken,
    /// A queue webhook on a read-only server (delivery changes the queue).
    #[error(
        "a read-only server cannot deliver queue messages: drop --queue-webhook or --read-only"
    )]
    ReadOnlyWebhook,
    /// The database could not give its id.
    #[error("cannot read the database id: {0}")]
    Database(#[from] Error),
    /// The listener failed.
    #[error("serving failed: {0}")]
    Io(#[from] std::io::Error),
}

struct AppState {
    kv: Kv,
    config: ServerConfig,
    database_id: String,
    /// Flips to `true` at shutdown, ending watch streams (graceful shutdown waits for every
    /// response body to finish, and a watch never finishes by itself).
    stopping: tokio::sync::watch::Receiver<bool>,
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
    let database_id = kv.database_id().await?.to_string();
    // The largest legal atomic write, with room for protobuf framing.
    let body_limit = kv.limits().max_total_mutation_size * 2 + (1 << 20);
    let (stop_tx, stopping) = tokio::sync::watch::channel(false);
    let tls = config.tls.clone();
    let webhook = config
        .queue_webhook
        .clone()
        .map(|webhook| tokio::spawn(queues::run_webhook(kv.clone(), webhook, stopping.clone())));
    let state = Arc::new(AppState { kv, config, database_id, stopping });
    let app = Router::new()
        .route("/", post(metadata))
        .route("/v2/snapshot_read", post(snapshot_read))
        .route("/v2/atomic_write", post(atomic_write))
        .route("/v2/watch", post(watch))
        .route("/v2/openkv/queue/take", post(queues::take))
        .route("/v2/openkv/queue/wait", post(queues::wait))
        .route("/v2/openkv/queue/renew", post(queues::renew))
        .route("/v2/openkv/queue/finish", post(queues::finish))
        .route("/v2/openkv/backup", post(backup))
        // A backup may be far larger than any KV Connect request: streamed to disk, no limit.
        .route("/v2/openkv/restore", post(restore).layer(DefaultBodyLimit::disable()))
        .fallback(|| async { plain(StatusCode::NOT_FOUND, "no such KV Connect endpoint") })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(log_request))
        .with_state(state);
    let shutdown = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    match tls {
        None => {
            // TCP_NODELAY: a response written in pieces must not wait ~40 ms for the client's
            // delayed ACK (Nagle). Without it, watch frames and sequential requests stall.
            use axum::serve::ListenerExt;
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::warn!("could not set TCP_NODELAY: {e}");
                }
            });
            axum::serve(listener, app).with_graceful_shutdown(shutdown).await?
        }
        // The same server on a listener that hands over TLS-terminated connections.
        Some(tls) => {
            let listener = tls::TlsListener::new(listener, &tls);
            axum::serve(listener, app).with_graceful_shutdown(shutdown).await?
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

fn plain(status: StatusCode, message: impl Into<String>) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], message.into()).into_response()
}

fn bad_request(message: impl Into<String>) -> Response {
    plain(StatusCode::BAD_REQUEST, message)
}

/// An engine error as HTTP, by its class: the client's mistakes are 4xx (fatal at the
/// client), the server's failures 5xx (the client retries) — 503 for a state that passes or
/// that a restart cures (busy, disk full, PostgreSQL unreachable, poisoned, shutting down),
/// 500 for the rest.
fn engine_error(e: Error) -> Response {
    use openkv::ErrorClass as C;
    let status = match e.class() {
        C::Client => return bad_request(e.to_string()),
        C::Transient | C::Poisoned | C::Closed => StatusCode::SERVICE_UNAVAILABLE,
        C::OutcomeUnknown | C::Storage | C::Corrupt | C::Incompatible | C::Internal => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        // `ErrorClass` may grow: until a new class is mapped here, it is a server failure.
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    tracing::error!("request failed on the server side: {e}");
    plain(status, e.to_string())
}

fn token_matches(headers: &HeaderMap, expected: &str) -> bool {
    let Some(presented) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    // Constant time in the token's content; the length is not secret.
    presented.as_bytes().ct_eq(expected.as_bytes()).into()
}

fn unauthorized() -> Response {
    plain(StatusCode::UNAUTHORIZED, "invalid or missing access token")
}

/// `POST /`: the metadata exchange.
async fn metadata(
    State(state): State<Arc<AppState>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !token_matches(&headers, &state.config.access_token) {
        return unauthorized();
    }
    // No body means "version 1 only" (the first clients sent none).
    let versions: Vec<u64> = if body.is_empty() {
        vec![1]
    } else {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Request {
            supported_versions: Vec<u64>,
        }
        match serde_json::from_slice::<Request>(&body) {
            Ok(r) => r.supported_versions,
            Err(e) => return bad_request(format!("invalid metadata request: {e}")),
        }
    };
    let Some(version) = versions.iter().copied().filter(|v| SUPPORTED_VERSIONS.contains(v)).max()
    else {
        return bad_request(format!(
            "no common protocol version: the client supports {versions:?}, this server \
             {SUPPORTED_VERSIONS:?}"
        ));
    };
    // Version 1 endpoint URLs are absolute; later ones are relative to the metadata URL.
    let url = if version == 1 {
        // HTTP/2 (ALPN `h2` over TLS, h2c) carries the host in the URI, HTTP/1.1 in `Host`.
        let host = uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()))
            .unwrap_or("localhost");
        let scheme = if state.config.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{host}/v2")
    } else {
        "/v2".to_string()
    };
    let expires_at = humantime::format_rfc3339_millis(SystemTime::now() + METADATA_TTL);
    let body = serde_json::json!({
        "version": version,
        "databaseId": state.database_id,
        "endpoints": [{ "url": url, "consistency": "strong" }],
        "token": state.config.access_token,
        "expiresAt": expires_at.to_string(),
    });
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// Checks the data-path headers (token, database id, protocol version): the response that
/// rejects the request, or `None` if it may go on.
fn reject_data_path(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    if !token_matches(headers, &state.config.access_token) {
        return Some(unauthorized());
    }
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
fn decode_request<M: Message + Default>(
    state: &AppState,
    headers: &HeaderMap,
    body: Bytes,
    what: &str,
) -> Result<M, Box<Response>> {
    if let Some(rejected) = reject_data_path(state, headers) {
        return Err(Box::new(rejected));
    }
    M::decode(body).map_err(|e| Box::new(bad_request(format!("invalid {what} protobuf: {e}"))))
}

fn protobuf(message: &impl Message) -> Response {
    ([(header::CONTENT_TYPE, "application/x-protobuf")], message.encode_to_vec()).into_response()
}

/// `POST /v2/openkv/backup`: an online backup of the served database, made with
/// [`Kv::backup`] into a temporary directory and streamed as the body
/// (`application/vnd.sqlite3`). Authenticated like the data path; allowed on a read-only
/// server (it only reads).
async fn backup(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(rejected) = reject_data_path(&state, &headers) {
        return rejected;
    }
    let dir = match tempfile::Builder::new().prefix("openkv-backup-").tempdir() {
        Ok(dir) => dir,
        Err(e) => return engine_error(Error::storage_caused("no temporary directory", e)),
    };
    let path = dir.path().join("backup.sqlite3");
    let summary = match state.kv.backup(&path).await {
        Ok(summary) => summary,
        Err(e) => return engine_error(e),
    };
    let file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(e) => return engine_error(Error::storage_caused("reopening the backup", e)),
    };
    // The stream owns the temporary directory: it is deleted once the body has been sent (or
    // the client went away).
    let chunks = futures::stream::unfold((file, dir), |(mut file, dir)| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), (file, dir)))
            }
            Err(e) => Some((Err(e), (file, dir))),
        }
    });
    tracing::info!("backup: {} entries, {} bytes", summary.entries, summary.size);
    (
        [
            (header::CONTENT_TYPE, "application/vnd.sqlite3".to_owned()),
            (header::CONTENT_LENGTH, summary.size.to_string()),
        ],
        axum::body::Body::from_stream(chunks),
    )
        .into_response()
}

/// `POST /v2/openkv/restore`: the body is a backup file; it is written to a temporary
/// directory, verified, and replaces the served database's content in one transaction
/// ([`Kv::restore_from`]) while the server keeps serving. Refused (403) when read-only.
async fn restore(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    use tokio::io::AsyncWriteExt;
    if let Some(rejected) = reject_data_path(&state, &headers) {
        return rejected;
    }
    if state.config.read_only {
        // Read the (authenticated) upload to its end before refusing: a client still sending
        // when the answer comes and the stream is reset sees a broken upload, not this 403
        // (seen about one run in three). Nothing is stored.
        let mut chunks = body.into_data_stream();
        while let Some(Ok(_)) = chunks.next().await {}
        return plain(StatusCode::FORBIDDEN, "the server is read-only: no restore");
    }
    let dir = match tempfile::Builder::new().prefix("openkv-restore-").tempdir() {
        Ok(dir) => dir,
        Err(e) => return engine_error(Error::storage_caused("no temporary directory", e)),
    };
    let path = dir.path().join("upload.sqlite3");
    let mut file = match tokio::fs::File::create(&path).await {
        Ok(file) => file,
        Err(e) => return engine_error(Error::storage_caused("storing the upload", e)),
    };
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let written = match chunk {
            Ok(bytes) => file.write_all(&bytes).await,
            Err(e) => return bad_request(format!("the upload broke off: {e}")),
        };
        if let Err(e) = written {
            return engine_error(Error::storage_caused("storing the upload", e));
        }
    }
    if let Err(e) = file.flush().await {
        return engine_error(Error::storage_caused("storing the upload", e));
    }
    drop(file);
    match state.kv.restore_from(&path).await {
        Ok(summary) => {
            tracing::warn!("restore: the database was replaced ({} entries)", summary.entries);
            let answer = serde_json::json!({"entries": summary.entries, "size": summary.size});
            ([(header::CONTENT_TYPE, "application/json")], answer.to_string()).into_response()
        }
        // A backup that does not verify is the client's mistake: `Error::InvalidBackup`, of
        // class `Client`, which engine_error answers with 400 and its message.
        Err(e) => engine_error(e),
    }
}

/// `POST /v2/snapshot_read`.
async fn snapshot_read(
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
async fn atomic_write(
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

/// How often an idle watch stream sends an empty keep-alive frame.
pub const WATCH_KEEPALIVE: Duration = Duration::from_secs(5);

fn entry_to_wire(e: openkv::RawEntry) -> proto::KvEntry {
    proto::KvEntry {
        key: e.key,
        encoding: encoding_of(&e.value) as i32,
        value: e.value.to_bytes(),
        versionstamp: e.versionstamp.as_bytes().to_vec(),
    }
}

/// One frame of a watch stream: `u32` little-endian length, then the message.
fn frame(message: &proto::WatchOutput) -> Bytes {
    let body = message.encode_to_vec();
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    Bytes::from(out)
}

/// Reads the watched keys; `None` entries for missing keys.
async fn read_keys(kv: &Kv, keys: &[Vec<u8>]) -> Result<Vec<Option<openkv::RawEntry>>, Error> {
    let ranges = keys
        .iter()
        .map(|k| ReadRange {
            start: k.clone(),
            end: [k.as_slice(), &[0]].concat(),
            limit: 1,
            reverse: false,
        })
        .collect();
    let results = kv.snapshot_read(ranges, Consistency::Strong).await?;
    Ok(results.into_iter().map(|mut r| r.pop()).collect())
}

/// `POST /v2/watch`.
async fn watch(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let request: proto::Watch = match decode_request(&state, &headers, body, "Watch") {
        Ok(r) => r,
        Err(rejected) => return *rejected,
    };
    let max = state.kv.limits().max_watched_keys;
    if request.keys.len() > max {
        return bad_request(format!("Too many keys to watch (max {max})"));
    }
    let keys: Vec<Vec<u8>> = request.keys.into_iter().map(|k| k.key).collect();
    // Subscribe before the first read, so no change between the two is missed.
    let changes = match state.kv.subscribe() {
        Ok(changes) => changes,
        Err(e) => return engine_error(e),
    };
    let first = match read_keys(&state.kv, &keys).await {
        Ok(entries) => entries,
        Err(e) => return engine_error(e),
    };
    let seen: Vec<Option<Versionstamp>> =
        first.iter().map(|e| e.as_ref().map(|e| e.versionstamp)).collect();
    let first_frame = frame(&proto::WatchOutput {
        status: SnapshotReadStatus::SrSuccess as i32,
        keys: first
            .into_iter()
            .map(|e| proto::WatchKeyOutput {
                changed: true,
                entry_if_changed: e.map(entry_to_wire),
            })
            .collect(),
    });
    let watcher =
        Watcher { kv: state.kv.clone(), keys, seen, changes, stopping: state.stopping.clone() };
    let stream = futures::stream::once(
        async move { Ok::<_, std::convert::Infallible>(first_frame) },
    )
    .chain(futures::stream::unfold(watcher, |mut w| async move {
        let frame = w.next_frame().await?;
        Some((Ok(frame), w))
    }));
    ([(header::CONTENT_TYPE, "application/octet-stream")], axum::body::Body::from_stream(stream))
        .into_response()
}

struct Watcher {
    kv: Kv,
    keys: Vec<Vec<u8>>,
    /// The versionstamp last sent for each key.
    seen: Vec<Option<Versionstamp>>,
    changes: tokio::sync::broadcast::Receiver<openkv::ChangeEvent>,
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl Watcher {
    /// The next frame to send, or `None` to end the stream (shutdown, store closed).
    async fn next_frame(&mut self) -> Option<Bytes> {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            if *self.stopping.borrow() {
                return None;
            }
            let event = tokio::select! {
                _ = self.stopping.changed() => return None,
                _ = tokio::time::sleep(WATCH_KEEPALIVE) => return Some(Bytes::from_static(&[0, 0, 0, 0])),
                event = self.changes.recv() => event,
            };
            let relevant = match event {
                // An event naming no keys (another process committed to the file) may have
                // changed any of them.
                Ok(e) => self.keys.iter().any(|k| e.may_affect(k)),
                // Missed events: re-read everything and compare.
                Err(RecvError::Lagged(_)) => true,
                Err(RecvError::Closed) => return None,
            };
            if !relevant {
                continue;
            }
            let entries = match read_keys(&self.kv, &self.keys).await {
                Ok(entries) => entries,
                Err(e) => {
                    tracing::warn!(
                        "watch: re-reading the watched keys failed, ending the stream: {e}"
                    );
                    return None;
                }
            };
            let now: Vec<Option<Versionstamp>> =
                entries.iter().map(|e| e.as_ref().map(|e| e.versionstamp)).collect();
            if now != self.seen {
                self.seen = now;
                // Every key's current entry, marked changed: the Deno CLI 2.9 client shows a key
                // reported `changed: false` as absent, so a frame always carries the whole state
                // (clients compare versionstamps and emit only real changes).
                let keys = entries
                    .into_iter()
                    .map(|e| proto::WatchKeyOutput {
                        changed: true,
                        entry_if_changed: e.map(entry_to_wire),
                    })
                    .collect();
                return Some(frame(&proto::WatchOutput {
                    status: SnapshotReadStatus::SrSuccess as i32,
                    keys,
                }));
            }
        }
    }
}
