//! A server of many databases (`openkv serve --data-dir`): the open databases by name, kept
//! in step with the catalog, and the dispatch of `/databases/<name>/…` to each one's router.
//!
//! Invariants: a database is reachable (in `open`) only while its `Kv` is open; deleting one
//! takes it out of `open` first (new requests get 404), then ends its streams, closes it and
//! removes its storage; opening, creating, deleting and refreshing are serialized by `ops`,
//! so two of them never race on one name. Requests already inside a deleted database finish
//! with the store's `Closed` error (503).

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::uri::PathAndQuery;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use openkv::catalog::{Catalog, CatalogError, DatabaseName, Scope, TokenRecord};
use openkv::OpenOptions;
use tower::ServiceExt;

use crate::auth::{no_such_database, presented_token, refusal};
use crate::config::ServerConfig;
use crate::limits::Admission;
use crate::metrics::HttpMetrics;
use crate::response::plain;
use crate::routes::database_router;
use crate::state::AppState;
use crate::tokens::{Denied, Tokens};

/// The path every database's endpoints are beneath.
pub(crate) const DATABASES_PATH: &str = "/databases/";

/// One open database.
pub(crate) struct Served {
    pub(crate) state: Arc<AppState>,
    router: Router,
    /// Flips the database's `stopping` (server shutdown or deletion).
    stop: tokio::sync::watch::Sender<bool>,
}

/// What a server of many databases shares.
pub(crate) struct Registry {
    pub(crate) catalog: Arc<dyn Catalog>,
    options: OpenOptions,
    pub(crate) config: ServerConfig,
    pub(crate) admission: Arc<Admission>,
    pub(crate) tokens: Arc<Tokens>,
    pub(crate) metrics: Arc<HttpMetrics>,
    open: RwLock<BTreeMap<DatabaseName, Arc<Served>>>,
    ops: tokio::sync::Mutex<()>,
    /// Whether the last read of the catalog succeeded (`/readyz`).
    pub(crate) catalog_ok: std::sync::atomic::AtomicBool,
}

impl Registry {
    pub(crate) fn new(
        catalog: Arc<dyn Catalog>,
        options: OpenOptions,
        config: ServerConfig,
        admission: Arc<Admission>,
        tokens: Arc<Tokens>,
        metrics: Arc<HttpMetrics>,
    ) -> Registry {
        Registry {
            catalog,
            options,
            config,
            admission,
            tokens,
            metrics,
            open: RwLock::new(BTreeMap::new()),
            ops: tokio::sync::Mutex::new(()),
            catalog_ok: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The open database `name`.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<Served>> {
        self.open.read().unwrap_or_else(PoisonError::into_inner).get(name).cloned()
    }

    /// Every open database, by name.
    pub(crate) fn all(&self) -> Vec<(DatabaseName, Arc<Served>)> {
        let open = self.open.read().unwrap_or_else(PoisonError::into_inner);
        open.iter().map(|(name, served)| (name.clone(), served.clone())).collect()
    }

    async fn open_database(&self, name: &DatabaseName) -> openkv::Result<Arc<Served>> {
        let location = self.catalog.database_location(name);
        let kv = self.options.clone().open(&location).await?;
        let database_id = match kv.database_id().await {
            Ok(id) => id.to_string(),
            Err(e) => {
                let _ = kv.close().await;
                return Err(e);
            }
        };
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let state = Arc::new(AppState {
            kv,
            config: self.config.clone(),
            database_id,
            stopping,
            admission: self.admission.clone(),
            database: Some(name.clone()),
            base_path: format!("{DATABASES_PATH}{name}"),
            tokens: self.tokens.clone(),
            metrics: self.metrics.clone(),
            http: self.config.metrics.then(|| self.metrics.database(name.as_str())),
        });
        let router = database_router(state.clone());
        Ok(Arc::new(Served { state, router, stop }))
    }

    /// Reads the catalog: opens the databases it lists that are not open, closes those it no
    /// longer lists (deleted through another server), and reads the tokens again. A database
    /// that fails to open is logged and tried again at the next refresh.
    pub(crate) async fn refresh(&self) -> Result<(), CatalogError> {
        use std::sync::atomic::Ordering;
        let result = self.refresh_databases().await;
        let tokens = self.tokens.refresh(self.catalog.as_ref()).await;
        let ok = result.is_ok() && tokens.is_ok();
        self.catalog_ok.store(ok, Ordering::Relaxed);
        result.and(tokens)
    }

    async fn refresh_databases(&self) -> Result<(), CatalogError> {
        let _serialized = self.ops.lock().await;
        let listed = self.catalog.databases().await?;
        for name in &listed {
            if self.get(name.as_str()).is_some() {
                continue;
            }
            match self.open_database(name).await {
                Ok(served) => {
                    tracing::info!(database = %name, "serving database {name}");
                    self.insert(name, served);
                }
                Err(e) => tracing::error!(database = %name, "cannot open database {name}: {e}"),
            }
        }
        let gone: Vec<DatabaseName> = {
            let open = self.open.read().unwrap_or_else(PoisonError::into_inner);
            open.keys().filter(|name| !listed.contains(name)).cloned().collect()
        };
        for name in gone {
            if let Some(served) = self.remove(&name) {
                tracing::warn!(database = %name, "database {name} was deleted elsewhere");
                close(&name, &served).await;
            }
        }
        Ok(())
    }

    fn insert(&self, name: &DatabaseName, served: Arc<Served>) {
        self.open.write().unwrap_or_else(PoisonError::into_inner).insert(name.clone(), served);
    }

    fn remove(&self, name: &DatabaseName) -> Option<Arc<Served>> {
        self.open.write().unwrap_or_else(PoisonError::into_inner).remove(name)
    }

    /// Creates the database `name` and serves it.
    pub(crate) async fn create(&self, name: &DatabaseName) -> Result<(), CatalogError> {
        let _serialized = self.ops.lock().await;
        if self.get(name.as_str()).is_some() {
            return Err(CatalogError::Exists(format!("database {name}")));
        }
        self.catalog.create_database(name).await?;
        let served = self.open_database(name).await?;
        self.insert(name, served);
        tracing::info!(database = %name, "created database {name}");
        Ok(())
    }

    /// Stops serving the database `name` (its watch streams and long polls end), closes it
    /// and removes its storage.
    pub(crate) async fn delete(&self, name: &DatabaseName) -> Result<(), CatalogError> {
        let _serialized = self.ops.lock().await;
        if let Some(served) = self.remove(name) {
            close(name, &served).await;
        }
        self.catalog.delete_database(name).await?;
        tracing::warn!(database = %name, "deleted database {name}");
        Ok(())
    }

    /// Stores a new token in the catalog; in force on this server at once (on the others at
    /// their next refresh).
    pub(crate) async fn add_token(&self, token: TokenRecord) -> Result<(), CatalogError> {
        self.catalog.add_token(token).await?;
        self.tokens_changed().await;
        Ok(())
    }

    /// Revokes a token in the catalog; refused here at once (by the others at their next
    /// refresh).
    pub(crate) async fn revoke_token(&self, id: &str, at_ms: u64) -> Result<(), CatalogError> {
        self.catalog.revoke_token(id, at_ms).await?;
        self.tokens_changed().await;
        Ok(())
    }

    async fn tokens_changed(&self) {
        if let Err(e) = self.tokens.refresh(self.catalog.as_ref()).await {
            // The change is stored; the copy catches up at the next refresh.
            tracing::warn!("re-reading the tokens after a change failed: {e}");
        }
    }

    /// Ends every database's streams (server shutdown).
    pub(crate) fn stop_all(&self) {
        for (_, served) in self.all() {
            let _ = served.stop.send(true);
        }
    }

    /// Closes every database (after the server stopped).
    pub(crate) async fn close_all(&self) {
        let _serialized = self.ops.lock().await;
        let all = std::mem::take(&mut *self.open.write().unwrap_or_else(PoisonError::into_inner));
        for (name, served) in all {
            close(&name, &served).await;
        }
    }
}

async fn close(name: &DatabaseName, served: &Served) {
    let _ = served.stop.send(true);
    // A database no longer served has no metrics (its counters would go on being reported).
    served.state.metrics.forget(name.as_str());
    if let Err(e) = served.state.kv.close().await {
        tracing::error!(database = %name, "closing database {name} failed: {e}");
    }
}

/// `/databases/<name>/connect`, `/databases/<name>/v2/…` and the console's
/// `/databases/<name>/console/api/…`: the request, its path made
/// relative to the database (`connect` is the metadata exchange, `/`), goes to the database's
/// router. An unknown name answers as a database the token does not reach: 404 once the
/// token checked out, 401 before.
pub(crate) async fn dispatch(State(registry): State<Arc<Registry>>, request: Request) -> Response {
    let uri = request.uri();
    let rest = uri.path().strip_prefix(DATABASES_PATH).unwrap_or_default();
    let (name, inner) = rest.split_once('/').unwrap_or((rest, ""));
    // The database's own path: `/` for `connect`, else the `/v2/…` (or `/console/api/…`)
    // tail of this one.
    let inner = match inner {
        "connect" => "/",
        other if other.starts_with("v2/") || other.starts_with("console/api/") => {
            &rest[name.len()..]
        }
        _ => return plain(StatusCode::NOT_FOUND, "no such KV Connect endpoint"),
    };
    let Some(served) = registry.get(name) else {
        let denied =
            match registry.tokens.check(presented_token(request.headers()), None, Scope::Read) {
                Ok(_) => Denied::Unreachable,
                Err(denied) => denied,
            };
        let name = DatabaseName::new(name).ok();
        // Read what the client sends (under the body limit) before answering, as the
        // authentication layer does: an answer before the upload ended reads as a reset.
        let _ = Bytes::from_request(request, &()).await;
        return refusal(&registry.metrics, denied, Scope::Read, name.as_ref());
    };
    let path_and_query = match uri.query() {
        None => PathAndQuery::try_from(inner),
        Some(query) => PathAndQuery::try_from(format!("{inner}?{query}")),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = path_and_query.ok();
    let Ok(relative) = Uri::from_parts(parts) else { return no_such_database(None) };
    tracing::Span::current().record("database", name);
    let (mut head, body) = request.into_parts();
    head.uri = relative;
    match served.router.clone().oneshot(Request::from_parts(head, body)).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}
