//! The endpoints of one database and the router they make: every one behind the
//! authentication layer, with the scope it needs.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{post, MethodRouter};
use axum::Router;
use openkv::catalog::Scope;

use crate::auth::{self, Refusal, Refusal::AfterBody, Refusal::AtOnce};
use crate::console_api::{data, operate};
use crate::metrics::Endpoint as MetricsEndpoint;
use crate::state::AppState;
use crate::{admin, console_api, datapath, metadata, queues, replication, watch};

/// One endpoint of a database's router: its path, the scope a token needs for it, how the
/// authentication layer refuses a request without the token, and its handler (every
/// endpoint is `POST`).
pub(crate) struct Endpoint {
    pub(crate) path: &'static str,
    pub(crate) scope: Scope,
    refusal: Refusal,
    handler: fn() -> MethodRouter<Arc<AppState>>,
}

impl Endpoint {
    const fn new(
        path: &'static str,
        scope: Scope,
        refusal: Refusal,
        handler: fn() -> MethodRouter<Arc<AppState>>,
    ) -> Endpoint {
        Endpoint { path, scope, refusal, handler }
    }
}

use Scope::{Admin, Read, Write};

/// Every endpoint of a database, and the only place its router takes its routes from:
/// [`database_router`] puts each one behind the authentication layer, so an endpoint added
/// here needs a token with its scope without further ado. The [`Refusal`]s keep what the
/// handlers' arguments did with the body when the handlers still checked the token
/// themselves. Scopes: `read` reads (a replica's log and snapshot are reads of everything),
/// `write` adds writes and queues, `admin` adds whole-database backup and restore.
pub(crate) const ENDPOINTS: &[Endpoint] = &[
    Endpoint::new("/", Read, AfterBody, || post(metadata::metadata)),
    Endpoint::new("/v2/snapshot_read", Read, AfterBody, || post(datapath::snapshot_read)),
    Endpoint::new("/v2/atomic_write", Write, AfterBody, || post(datapath::atomic_write)),
    Endpoint::new("/v2/watch", Read, AfterBody, || post(watch::watch)),
    // A replica's eventual endpoint (listed in its metadata, and in a primary's for each
    // `--replica-endpoint`): reads from its local copy. On a primary it reads as `/v2` does.
    Endpoint::new("/v2/eventual/snapshot_read", Read, AfterBody, || {
        post(datapath::snapshot_read_eventual)
    }),
    Endpoint::new("/v2/eventual/watch", Read, AfterBody, || post(watch::watch)),
    Endpoint::new("/v2/openkv/queue/take", Write, AfterBody, || post(queues::take)),
    Endpoint::new("/v2/openkv/queue/wait", Write, AfterBody, || post(queues::wait)),
    Endpoint::new("/v2/openkv/queue/renew", Write, AfterBody, || post(queues::renew)),
    Endpoint::new("/v2/openkv/queue/finish", Write, AfterBody, || post(queues::finish)),
    Endpoint::new("/v2/openkv/replication/snapshot", Read, AfterBody, || {
        post(replication::snapshot)
    }),
    Endpoint::new("/v2/openkv/replication/log", Read, AfterBody, || post(replication::log)),
    Endpoint::new("/v2/openkv/replication/status", Read, AfterBody, || post(replication::status)),
    Endpoint::new("/v2/openkv/backup", Admin, AtOnce, || post(admin::backup)),
    // A backup may be far larger than any KV Connect request: streamed to disk, no limit.
    Endpoint::new("/v2/openkv/restore", Admin, AtOnce, || {
        post(admin::restore).layer(DefaultBodyLimit::disable())
    }),
    // The web console's API (`crate::console`): reads need `read`, changes `write`.
    Endpoint::new("/console/api/get", Read, AfterBody, || post(data::get)),
    Endpoint::new("/console/api/list", Read, AfterBody, || post(data::list)),
    Endpoint::new("/console/api/children", Read, AfterBody, || post(data::children)),
    Endpoint::new("/console/api/count", Read, AfterBody, || post(data::count)),
    Endpoint::new("/console/api/watch", Read, AfterBody, || post(data::watch)),
    Endpoint::new("/console/api/set", Write, AfterBody, || post(data::set)),
    Endpoint::new("/console/api/delete", Write, AfterBody, || post(data::delete)),
    Endpoint::new("/console/api/delete-prefix", Write, AfterBody, || post(data::delete_prefix)),
    Endpoint::new("/console/api/stats", Read, AfterBody, || post(operate::stats)),
    Endpoint::new("/console/api/export", Read, AfterBody, || post(operate::export)),
    Endpoint::new("/console/api/queue", Read, AfterBody, || post(operate::queue)),
    Endpoint::new("/console/api/queue/delete", Write, AfterBody, || post(operate::queue_delete)),
    Endpoint::new("/console/api/queue/due-now", Write, AfterBody, || post(operate::queue_due_now)),
    // An upload of any size, imported as it streams in (bounded memory): no body limit, and
    // refused before reading it.
    Endpoint::new("/console/api/import", Write, AtOnce, || {
        post(operate::import).layer(DefaultBodyLimit::disable())
    }),
];

/// One database's router: [`ENDPOINTS`], each behind the authentication layer. The caller
/// adds the fallback, the body limit and the request log around it (once for the whole
/// server).
pub(crate) fn database_router(state: Arc<AppState>) -> Router {
    let mut app = Router::new();
    for endpoint in ENDPOINTS {
        let console_api = endpoint.path.starts_with(console_api::CONSOLE_PREFIX);
        if console_api && !state.config.console {
            continue;
        }
        // A route layer wraps the endpoint's handler only: a wrong method (405) and an unknown
        // path (404, the fallback) answer the same with or without a token, as they always did.
        let guard = auth::Guard {
            state: state.clone(),
            refusal: endpoint.refusal,
            scope: endpoint.scope,
            counted: MetricsEndpoint::from_path(endpoint.path),
        };
        let auth = axum::middleware::from_fn_with_state(guard, auth::require_token);
        let mut route = (endpoint.handler)().route_layer(auth);
        if console_api {
            // Outside the token check: a cross-site request is refused before anything.
            route = route.route_layer(axum::middleware::from_fn(console_api::guard_api));
        }
        app = app.route(endpoint.path, route);
    }
    app.with_state(state)
}
