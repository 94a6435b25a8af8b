//! The endpoints for operators, on either kind of server: `GET /healthz`, `GET /readyz` and
//! `GET /metrics`.
//!
//! - `/healthz`: the process answers HTTP (200 `ok`). No token.
//! - `/readyz`: 200 `ready` when every served database answers a strong read and its queue
//!   (a store whose writer failed fatally does not: poisoned, closed), and a read replica is
//!   within [`ServerConfig::ready_max_lag`] of its primary; on a server of many databases,
//!   also when the last read of the catalog succeeded. 503 `not ready: …` otherwise. Each
//!   check is bounded by [`READY_TIMEOUT`]. No token, and no data in the answer (no database
//!   names, keys or figures; the log names what failed).
//! - `/metrics`: Prometheus's text format (`crate::metrics`), for the `--metrics-token`, the
//!   access token or an admin token of every database; without a token on the
//!   [`ServerConfig::metrics_addr`] listener. 404 with [`ServerConfig::metrics`] off.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use openkv::catalog::Scope;
use openkv::{Clock, Consistency, Kv};
use subtle::ConstantTimeEq;

use crate::auth::{presented_token, refusal};
use crate::config::ServerConfig;
use crate::metrics::{render, AuthFailure, DatabaseMetrics, HttpMetrics};
use crate::registry::Registry;
use crate::response::plain;
use crate::state::AppState;
use crate::tokens::Tokens;

/// How long one database's readiness check (or its gauges for `/metrics`) may take before it
/// counts as not ready (or is left out).
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The label of a single-database server's database in `/metrics`.
pub(crate) const SINGLE_DATABASE: &str = "default";

/// What the operators' endpoints look at: the one database, or the registry of many.
#[derive(Clone)]
pub(crate) enum Served {
    One(Arc<AppState>),
    Many(Arc<Registry>),
}

impl Served {
    pub(crate) fn config(&self) -> &ServerConfig {
        match self {
            Served::One(state) => &state.config,
            Served::Many(registry) => &registry.config,
        }
    }

    pub(crate) fn tokens(&self) -> &Tokens {
        match self {
            Served::One(state) => &state.tokens,
            Served::Many(registry) => &registry.tokens,
        }
    }

    pub(crate) fn metrics(&self) -> &HttpMetrics {
        match self {
            Served::One(state) => &state.metrics,
            Served::Many(registry) => &registry.metrics,
        }
    }

    /// Every served database: its name (for logs and metrics) and store.
    fn databases(&self) -> Vec<(String, Kv)> {
        match self {
            Served::One(state) => vec![(SINGLE_DATABASE.to_owned(), state.kv.clone())],
            Served::Many(registry) => registry
                .all()
                .into_iter()
                .map(|(name, served)| (name.to_string(), served.state.kv.clone()))
                .collect(),
        }
    }
}

/// `GET /healthz`.
pub(crate) async fn healthz() -> Response {
    plain(StatusCode::OK, "ok")
}

/// Why `kv` is not ready, or `None`.
async fn not_ready(kv: &Kv, max_lag: Duration) -> Option<String> {
    let check = async {
        let probe = openkv::key!["openkv", "readyz"];
        kv.get_many_with(&[probe], Consistency::Strong).await.map_err(|e| e.to_string())?;
        if kv.lagging_eventual_reads() {
            if let Some(status) = kv.replica_status().await.map_err(|e| e.to_string())? {
                let lag = status.lag_ms(openkv::SystemClock.now_ms());
                if u128::from(lag) > max_lag.as_millis() {
                    return Err(format!("a replica {lag} ms behind its primary"));
                }
            }
        } else {
            // One look at the queue: it fails on a store whose writer is poisoned or closed.
            kv.queue_wait_due(Duration::ZERO).await.map_err(|e| e.to_string())?;
        }
        Ok::<(), String>(())
    };
    match tokio::time::timeout(READY_TIMEOUT, check).await {
        Ok(Ok(())) => None,
        Ok(Err(why)) => Some(why),
        Err(_) => Some(format!("no answer within {READY_TIMEOUT:?}")),
    }
}

/// `GET /readyz`.
pub(crate) async fn readyz(State(served): State<Served>) -> Response {
    let max_lag = served.config().ready_max_lag;
    let checks = served.databases().into_iter().map(|(name, kv)| async move {
        let why = not_ready(&kv, max_lag).await;
        (name, why)
    });
    let mut failing = 0usize;
    for (name, why) in futures::future::join_all(checks).await {
        if let Some(why) = why {
            tracing::warn!(database = %name, "database {name} is not ready: {why}");
            failing += 1;
        }
    }
    let catalog = match &served {
        Served::One(_) => true,
        Served::Many(registry) => registry.catalog_ok.load(Ordering::Relaxed),
    };
    match (failing, catalog) {
        (0, true) => plain(StatusCode::OK, "ready"),
        (0, false) => {
            plain(StatusCode::SERVICE_UNAVAILABLE, "not ready: the catalog cannot be read")
        }
        (n, _) => {
            plain(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {n} database(s) failing"))
        }
    }
}

/// `GET /metrics` on the server's port: for the metrics token, the access token, or an admin
/// token of every database.
pub(crate) async fn metrics(State(served): State<Served>, headers: HeaderMap) -> Response {
    let presented = presented_token(&headers);
    let metrics_token = served.config().metrics_token.as_deref();
    let by_metrics_token = match (presented, metrics_token) {
        (Some(p), Some(m)) => bool::from(p.as_bytes().ct_eq(m.as_bytes())),
        _ => false,
    };
    if !by_metrics_token {
        match served.tokens().check(presented, None, Scope::Admin) {
            Ok(principal) if principal.manages() => {}
            Ok(_) => {
                served.metrics().auth_failure(AuthFailure::Forbidden);
                return plain(
                    StatusCode::FORBIDDEN,
                    "/metrics needs the metrics token, or an admin token of every database",
                );
            }
            Err(denied) => return refusal(served.metrics(), denied, Scope::Admin, None),
        }
    }
    scrape(&served).await
}

/// `GET /metrics` on the [`ServerConfig::metrics_addr`] listener: no token.
pub(crate) async fn metrics_open(State(served): State<Served>) -> Response {
    scrape(&served).await
}

/// The figures of every database, rendered.
async fn scrape(served: &Served) -> Response {
    let backup = served.config().backup.as_ref().and_then(|rx| rx.borrow().last_success_ms);
    let gather = served.databases().into_iter().map(|(name, kv)| async move {
        let gauges = match tokio::time::timeout(READY_TIMEOUT, kv.gauges()).await {
            Ok(Ok(gauges)) => Some(gauges),
            Ok(Err(e)) => {
                tracing::warn!(database = %name, "reading {name}'s gauges failed: {e}");
                None
            }
            Err(_) => None,
        };
        let replica_lag = if kv.lagging_eventual_reads() {
            let now = openkv::SystemClock.now_ms();
            let status = kv.replica_status().await.ok().flatten();
            status.map(|s| Duration::from_millis(s.lag_ms(now)))
        } else {
            None
        };
        (name, kv.stats(), gauges, replica_lag)
    });
    let figures = futures::future::join_all(gather).await;
    let databases: Vec<DatabaseMetrics<'_>> = figures
        .iter()
        .map(|(name, stats, gauges, replica_lag)| DatabaseMetrics {
            name,
            stats: stats.clone(),
            gauges: gauges.clone(),
            replica_lag: *replica_lag,
            last_backup_success_ms: backup,
        })
        .collect();
    let mut out = String::with_capacity(16 * 1024);
    render(&mut out, served.metrics(), &databases);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out).into_response()
}
