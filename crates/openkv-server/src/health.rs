//! `GET /healthz` and `GET /readyz`: for load balancers and orchestrators, without a token
//! and without data (no database names, keys or figures; a failing check is counted, not
//! named — the log names it).
//!
//! - `/healthz`: the process answers HTTP (200 `ok`).
//! - `/readyz`: 200 `ready` when every served database answers a strong read and its queue
//!   (a store whose writer failed fatally does not: poisoned, closed), and a read replica is
//!   within [`ServerConfig::ready_max_lag`](crate::ServerConfig::ready_max_lag) of its
//!   primary; on a server of many databases, also when the last read of the catalog
//!   succeeded. 503 `not ready: …` otherwise. Each check is bounded by [`READY_TIMEOUT`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use openkv::{Clock, Consistency, Kv};

use crate::registry::Registry;
use crate::response::plain;
use crate::state::AppState;

/// How long one database's readiness check may take before it counts as not ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

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

/// `GET /readyz` of a single-database server.
pub(crate) async fn readyz_single(State(state): State<Arc<AppState>>) -> Response {
    match not_ready(&state.kv, state.config.ready_max_lag).await {
        None => plain(StatusCode::OK, "ready"),
        Some(why) => {
            tracing::warn!("not ready: {why}");
            plain(StatusCode::SERVICE_UNAVAILABLE, "not ready: the database is not")
        }
    }
}

/// `GET /readyz` of a server of many databases.
pub(crate) async fn readyz_many(State(registry): State<Arc<Registry>>) -> Response {
    let checks = registry.all().into_iter().map(|(name, served)| {
        let max_lag = registry.config.ready_max_lag;
        async move { (name, not_ready(&served.state.kv, max_lag).await) }
    });
    let mut failing = 0usize;
    for (name, why) in futures::future::join_all(checks).await {
        if let Some(why) = why {
            tracing::warn!(database = %name, "database {name} is not ready: {why}");
            failing += 1;
        }
    }
    let catalog = registry.catalog_ok.load(Ordering::Relaxed);
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
