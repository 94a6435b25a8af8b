//! The web console (`/console`): a small browser app embedded in the binary, and the JSON API
//! it calls. `ARCHITECTURE.md` (openkv-server's code map) says why it is a client app over a
//! JSON API rather than server-rendered pages; `README.md` ("Console") how to use it.
//!
//! - **Pages**: `GET /console` (one HTML page) and `GET /console/assets/<file>` (its script
//!   and style sheet, `include_str!`ed: no build step, nothing fetched at run time). Every
//!   answer carries a strict Content-Security-Policy (scripts and styles from this origin
//!   only, no inline code, no framing) and `Cache-Control: no-store`.
//! - **Session**: `POST /console/api/session` tells the page which databases the presented
//!   token reaches, with which scope. The page keeps the token in `sessionStorage` and sends
//!   it as `Authorization: Bearer …` — never in a URL (so never in a log line or a
//!   `Referer`), and never as a cookie: a request another origin makes the browser send
//!   carries no credentials, which is what makes the API unforgeable cross-site.
//! - **Per database**: `POST {base}/console/api/…` (`base` = `""` or `/databases/<name>`),
//!   endpoints of the database's router (`crate::routes::ENDPOINTS`), so each has a scope
//!   the authentication layer checks before the handler runs — a `read` token's forged write
//!   is a 403 whatever the page shows. They are `crate::console_api`'s (a module of its own:
//!   the routes import it, while this one imports the server's `Served`, which imports the
//!   routes).
//!
//! The console reads with strong consistency; each answer is one snapshot read (a list page,
//! a child count) or a paged scan (a prefix count, an export of a backup copy).

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::from_fn;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use openkv::catalog::Scope;
use serde_json::{json, Value as Json};

use crate::auth::{presented_token, refusal};
use crate::console_api::{guard_api, secured};
use crate::health::Served;
use crate::response::plain;

/// The console's files, embedded when the binary is built.
const ASSETS: &[(&str, &str, &str)] = &[
    ("console.js", "text/javascript; charset=utf-8", include_str!("../console/console.js")),
    ("console.css", "text/css; charset=utf-8", include_str!("../console/console.css")),
];
const INDEX_HTML: &str = include_str!("../console/index.html");

/// The console's page, assets and session endpoint (the per-database API is in the databases'
/// routers). Empty when the console is off.
pub(crate) fn routes(served: Served) -> Router {
    if !served.config().console {
        return Router::new();
    }
    Router::new()
        .route("/console", get(index))
        .route("/console/", get(index))
        .route("/console/assets/{file}", get(asset))
        // Behind the API's guard, as the databases' console endpoints are.
        .route("/console/api/session", post(session).route_layer(from_fn(guard_api)))
        .with_state(served)
}

async fn index() -> Response {
    page_answer("text/html; charset=utf-8", INDEX_HTML)
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => page_answer(content_type, body),
        None => secured(plain(StatusCode::NOT_FOUND, "no such console file")),
    }
}

fn page_answer(content_type: &'static str, body: &'static str) -> Response {
    secured(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

/// `POST /console/api/session`: who the token is and the databases it reaches.
async fn session(State(served): State<Served>, headers: HeaderMap) -> Response {
    let presented = presented_token(&headers);
    let principal = match served.tokens().check(presented, None, Scope::Read) {
        Ok(principal) => principal,
        Err(denied) => return refusal(served.metrics(), denied, Scope::Read, None),
    };
    tracing::Span::current().record("token_id", principal.id());
    let read_only = served.config().read_only;
    let databases: Vec<Json> = match &served {
        Served::One(_) => vec![json!({"name": null, "base": "", "scope": principal.scope().as_str()})],
        Served::Many(registry) => registry
            .all()
            .into_iter()
            .filter(|(name, _)| principal.reaches(name))
            .map(|(name, _)| {
                json!({"name": name.as_str(), "base": format!("/databases/{name}"), "scope": principal.scope().as_str()})
            })
            .collect(),
    };
    crate::response::json(json!({
        "token": {"id": principal.id(), "scope": principal.scope().as_str()},
        "readOnly": read_only,
        "databases": databases,
    }))
}
