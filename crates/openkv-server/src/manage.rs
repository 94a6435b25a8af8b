//! The admin API of a server of many databases (docs/protocol-extensions.md, "Admin API"):
//! JSON over HTTP, for `openkv db …`, `openkv token …` and `openkv info`.
//!
//! - `GET /admin/databases`: the databases the token reaches, with their figures;
//!   `GET /admin/databases/<name>`: one;
//! - `POST /admin/databases` `{"name"}`: create (201); `DELETE /admin/databases/<name>`;
//! - `GET /admin/tokens`; `POST /admin/tokens` `{"databases": ["*"] | [names], "scope",
//!   "expiresInSeconds"?, "description"?}` (201, the secret in the answer, once);
//!   `DELETE /admin/tokens/<id>` (revoke).
//!
//! Every call needs an `admin` token; creating and deleting databases and everything about
//! tokens needs one that reaches every database (a token cannot make a stronger one).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use openkv::catalog::{CatalogError, DatabaseName, Reach, Scope, TokenRecord};
use openkv::{Clock, Key, ListOptions, Selector};

use crate::auth::{presented_token, refusal};
use crate::registry::{Registry, DATABASES_PATH};
use crate::response::{bad_request, engine_error, plain, typed_json};
use crate::tokens::{mint, Principal};

/// The caller, if its token is an admin token (reaching `database`, if given); the refusal
/// otherwise.
fn admin(
    registry: &Registry,
    headers: &HeaderMap,
    database: Option<&DatabaseName>,
) -> Result<Principal, Box<Response>> {
    registry
        .tokens
        .check(presented_token(headers), database, Scope::Admin)
        .map_err(|denied| Box::new(refusal(&registry.metrics, denied, Scope::Admin, database)))
}

/// The caller, if it may manage databases and tokens.
fn manager(registry: &Registry, headers: &HeaderMap) -> Result<Principal, Box<Response>> {
    let principal = admin(registry, headers, None)?;
    if !principal.manages() {
        registry.metrics.auth_failure(crate::metrics::AuthFailure::Forbidden);
        return Err(Box::new(plain(
            StatusCode::FORBIDDEN,
            "managing databases and tokens needs an admin token that reaches every database",
        )));
    }
    Ok(principal)
}

/// The body of a request that manages databases or tokens, if the caller may (see
/// [`manager`]) and the body is the JSON `shape` says.
fn managing_request<T: serde::de::DeserializeOwned>(
    registry: &Registry,
    headers: &HeaderMap,
    body: &Bytes,
    shape: &str,
) -> Result<T, Box<Response>> {
    manager(registry, headers)?;
    serde_json::from_slice(body)
        .map_err(|e| Box::new(bad_request(format!("expected {shape}: {e}"))))
}

fn catalog_error(e: CatalogError) -> Response {
    match e {
        CatalogError::InvalidName(_) | CatalogError::InvalidToken(_) => bad_request(e.to_string()),
        CatalogError::Exists(_) => plain(StatusCode::CONFLICT, e.to_string()),
        CatalogError::NotFound(_) => plain(StatusCode::NOT_FOUND, e.to_string()),
        CatalogError::Storage(e) => engine_error(e),
        // `CatalogError` may grow: until a new kind is mapped here, a server failure.
        other => plain(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

/// What `GET /admin/databases` shows of a database.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct DatabaseInfo {
    name: String,
    /// The URL path clients open (`Deno.openKv("https://host" + url)`).
    url: String,
    database_id: String,
    /// Live entries (a scan of the whole database: as slow as `openkv count`).
    entries: u64,
    /// The newest versionstamp of a live entry.
    latest_versionstamp: String,
    /// The database's size on disk (SQLite: the file without its WAL; PostgreSQL: its
    /// schema's tables), if the store can tell.
    size_bytes: Option<u64>,
    /// SQLite's `-wal` file.
    wal_bytes: Option<u64>,
    /// Queue messages due now, not due yet, and leased to a listener.
    queue_ready: Option<u64>,
    queue_delayed: Option<u64>,
    queue_in_flight: Option<u64>,
}

async fn figures(name: &DatabaseName, registry: &Registry) -> Result<DatabaseInfo, Response> {
    let Some(served) = registry.get(name.as_str()) else {
        return Err(crate::auth::no_such_database(Some(name)));
    };
    let kv = &served.state.kv;
    let mut entries = 0u64;
    let mut latest = openkv::Versionstamp::ZERO;
    let mut stream = kv
        .list(Selector::prefix(Key::default()), ListOptions::new().batch_size(1000))
        .map_err(engine_error)?;
    while let Some(entry) = stream.try_next().await.map_err(engine_error)? {
        entries += 1;
        latest = latest.max(entry.versionstamp);
    }
    let gauges = kv.gauges().await.map_err(engine_error)?;
    Ok(DatabaseInfo {
        size_bytes: gauges.database_bytes,
        wal_bytes: gauges.wal_bytes,
        queue_ready: gauges.queue_ready,
        queue_delayed: gauges.queue_delayed,
        queue_in_flight: gauges.queue_in_flight,
        name: name.to_string(),
        url: format!("{DATABASES_PATH}{name}/connect"),
        database_id: served.state.database_id.clone(),
        entries,
        latest_versionstamp: latest.to_string(),
    })
}

/// `GET /admin/databases`.
pub(crate) async fn list_databases(
    State(registry): State<Arc<Registry>>,
    headers: HeaderMap,
) -> Response {
    let principal = match admin(&registry, &headers, None) {
        Ok(p) => p,
        Err(refused) => return *refused,
    };
    let mut databases = Vec::new();
    for (name, _) in registry.all() {
        if !principal.reaches(&name) {
            continue;
        }
        match figures(&name, &registry).await {
            Ok(info) => databases.push(info),
            // Deleted while listing: not listed.
            Err(_) if registry.get(name.as_str()).is_none() => {}
            Err(e) => return e,
        }
    }
    typed_json(&serde_json::json!({ "databases": databases }))
}

/// `GET /admin/databases/<name>`.
pub(crate) async fn database_info(
    State(registry): State<Arc<Registry>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let name = DatabaseName::new(&name).ok();
    if let Err(refused) = admin(&registry, &headers, name.as_ref()) {
        return *refused;
    }
    let Some(name) = name else { return crate::auth::no_such_database(None) };
    match figures(&name, &registry).await {
        Ok(info) => typed_json(&info),
        Err(refused) => refused,
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateDatabase {
    name: String,
}

/// `POST /admin/databases`.
pub(crate) async fn create_database(
    State(registry): State<Arc<Registry>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: CreateDatabase =
        match managing_request(&registry, &headers, &body, r#"{"name": "…"}"#) {
            Ok(r) => r,
            Err(refused) => return *refused,
        };
    let name = match DatabaseName::new(&request.name) {
        Ok(name) => name,
        Err(e) => return catalog_error(e),
    };
    if let Err(e) = registry.create(&name).await {
        return catalog_error(e);
    }
    match figures(&name, &registry).await {
        Ok(info) => (StatusCode::CREATED, typed_json(&info)).into_response(),
        Err(refused) => refused,
    }
}

/// `DELETE /admin/databases/<name>`.
pub(crate) async fn delete_database(
    State(registry): State<Arc<Registry>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = manager(&registry, &headers) {
        return *refused;
    }
    let name = match DatabaseName::new(&name) {
        Ok(name) => name,
        Err(e) => return catalog_error(e),
    };
    match registry.delete(&name).await {
        Ok(()) => typed_json(&serde_json::json!({ "deleted": name.as_str() })),
        Err(e) => catalog_error(e),
    }
}

/// A token as the admin API shows it: never its secret or the secret's hash.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenInfo {
    id: String,
    /// `["*"]` for every database.
    databases: Vec<String>,
    scope: &'static str,
    /// `active`, `expired` or `revoked`.
    state: &'static str,
    created_at: String,
    expires_at: Option<String>,
    revoked_at: Option<String>,
    description: String,
    /// The token itself: only in the answer that created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

fn rfc3339(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(at).to_string()
}

fn token_info(t: &TokenRecord, now_ms: u64) -> TokenInfo {
    let databases = match &t.reach {
        Reach::All => vec!["*".to_owned()],
        Reach::Only(names) => names.iter().map(|n| n.to_string()).collect(),
        _ => Vec::new(),
    };
    let state = if t.revoked_at_ms.is_some() {
        "revoked"
    } else if t.expires_at_ms.is_some_and(|at| at <= now_ms) {
        "expired"
    } else {
        "active"
    };
    TokenInfo {
        id: t.id.clone(),
        databases,
        scope: t.scope.as_str(),
        state,
        created_at: rfc3339(t.created_at_ms),
        expires_at: t.expires_at_ms.map(rfc3339),
        revoked_at: t.revoked_at_ms.map(rfc3339),
        description: t.description.clone(),
        token: None,
    }
}

fn now_ms() -> u64 {
    u64::try_from(openkv::SystemClock.now_ms()).unwrap_or(0)
}

/// `GET /admin/tokens`.
pub(crate) async fn list_tokens(
    State(registry): State<Arc<Registry>>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = manager(&registry, &headers) {
        return *refused;
    }
    match registry.catalog.tokens().await {
        Ok(tokens) => {
            let now = now_ms();
            let tokens: Vec<TokenInfo> = tokens.iter().map(|t| token_info(t, now)).collect();
            typed_json(&serde_json::json!({ "tokens": tokens }))
        }
        Err(e) => catalog_error(e),
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateToken {
    databases: Vec<String>,
    scope: String,
    #[serde(default)]
    expires_in_seconds: Option<u64>,
    #[serde(default)]
    description: String,
}

/// The longest description a token may carry.
const MAX_DESCRIPTION: usize = 256;

/// `POST /admin/tokens`.
pub(crate) async fn create_token(
    State(registry): State<Arc<Registry>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let shape = r#"{"databases": ["*"] or [names], "scope": "read|write|admin", "expiresInSeconds"?: n, "description"?: "…"}"#;
    let request: CreateToken = match managing_request(&registry, &headers, &body, shape) {
        Ok(r) => r,
        Err(refused) => return *refused,
    };
    let scope = match Scope::parse(&request.scope) {
        Ok(scope) => scope,
        Err(e) => return catalog_error(e),
    };
    let reach = if request.databases == ["*"] {
        Reach::All
    } else if request.databases.is_empty() || request.databases.iter().any(|d| d == "*") {
        return bad_request("databases: [\"*\"] alone, or one or more database names");
    } else {
        let mut names = Vec::new();
        for name in &request.databases {
            match DatabaseName::new(name) {
                // A token for a database that does not exist is most likely a typo.
                Ok(name) if registry.get(name.as_str()).is_none() => {
                    return bad_request(format!("no database {name}"))
                }
                Ok(name) => names.push(name),
                Err(e) => return catalog_error(e),
            }
        }
        Reach::Only(names)
    };
    if request.description.len() > MAX_DESCRIPTION {
        return bad_request(format!("the description is longer than {MAX_DESCRIPTION} bytes"));
    }
    let now = now_ms();
    let mut minted = mint(reach, scope, now);
    if let Some(seconds) = request.expires_in_seconds {
        if seconds == 0 {
            return bad_request("expiresInSeconds must be at least 1");
        }
        minted.record.expires_at_ms = Some(now.saturating_add(seconds.saturating_mul(1000)));
    }
    minted.record.description = request.description;
    if let Err(e) = registry.add_token(minted.record.clone()).await {
        return catalog_error(e);
    }
    let mut info = token_info(&minted.record, now);
    info.token = Some(minted.token);
    tracing::info!(token_id = %info.id, "created a token");
    (StatusCode::CREATED, typed_json(&info)).into_response()
}

/// `DELETE /admin/tokens/<id>`.
pub(crate) async fn revoke_token(
    State(registry): State<Arc<Registry>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = manager(&registry, &headers) {
        return *refused;
    }
    if let Err(e) = registry.revoke_token(&id, now_ms()).await {
        return catalog_error(e);
    }
    tracing::warn!(token_id = %id, "revoked a token");
    typed_json(&serde_json::json!({ "revoked": id }))
}
