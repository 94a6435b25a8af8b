//! The web console (`/console`): a small browser app embedded in the binary, and the JSON API
//! it calls. `ARCHITECTURE.md` ("The console") says why it is a client app over a JSON API
//! rather than server-rendered pages; `README.md` ("Console") how to use it.
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
//!   is a 403 whatever the page shows. Data: [`data`]; queue, figures, export and import:
//!   [`operate`].
//!
//! The console reads with strong consistency; each answer is one snapshot read (a list page,
//! a child count) or a paged scan (a prefix count, an export of a backup copy).

pub(crate) mod data;
pub(crate) mod operate;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use openkv::catalog::Scope;
use openkv::{Key, RawEntry};
use serde_json::{json, Value as Json};

use crate::auth::{presented_token, refusal};
use crate::health::Served;
use crate::response::plain;

/// The path every console endpoint starts with (pages, assets and API).
pub(crate) const CONSOLE_PREFIX: &str = "/console";

/// The policy of every console answer: the page's own script and style sheet and nothing
/// else — no inline script or style (a value that smuggles markup in cannot run), no
/// plugins, no framing (clickjacking), forms and `<base>` pinned.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; form-action 'none'; \
     frame-ancestors 'none'; base-uri 'none'";

/// The console's files, embedded when the binary is built.
const ASSETS: &[(&str, &str, &str)] = &[
    ("console.js", "text/javascript; charset=utf-8", include_str!("../../console/console.js")),
    ("console.css", "text/css; charset=utf-8", include_str!("../../console/console.css")),
];
const INDEX_HTML: &str = include_str!("../../console/index.html");

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
        .route("/console/api/session", post(session))
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

/// Adds the console's security headers to an answer.
pub(crate) fn secured(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers
        .insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// A layer around every console API endpoint: refuses a request a browser made from another
/// site (`Sec-Fetch-Site`, or an `Origin` that is not this host) before anything else, and
/// marks every answer `no-store` with the console's headers. The bearer token is what makes
/// the API unforgeable (a browser never attaches it by itself); this is the second lock.
pub(crate) async fn guard_api(request: axum::extract::Request, next: Next) -> Response {
    if let Some(reason) = cross_site(request.method(), request.headers()) {
        tracing::Span::current().record("refusal", "cross_site");
        return secured(plain(StatusCode::FORBIDDEN, reason));
    }
    secured(next.run(request).await)
}

/// Why a request looks like one another site's page made, if it does.
fn cross_site(method: &Method, headers: &HeaderMap) -> Option<&'static str> {
    if method != Method::POST {
        return None;
    }
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if matches!(site, Some("cross-site" | "same-site")) {
        return Some("the console's API answers its own pages only (Sec-Fetch-Site)");
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (origin, host) {
        (Some(origin), Some(host)) => {
            let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            (origin_host != host)
                .then_some("the console's API answers its own pages only (Origin is not this host)")
        }
        _ => None,
    }
}

/// `POST /console/api/session`: who the token is and the databases it reaches.
async fn session(State(served): State<Served>, request: axum::extract::Request) -> Response {
    if let Some(reason) = cross_site(request.method(), request.headers()) {
        return secured(plain(StatusCode::FORBIDDEN, reason));
    }
    let presented = presented_token(request.headers());
    let principal = match served.tokens().check(presented, None, Scope::Read) {
        Ok(principal) => principal,
        Err(denied) => {
            return secured(refusal(served.metrics(), denied, Scope::Read, None));
        }
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
    secured(crate::response::json(json!({
        "token": {"id": principal.id(), "scope": principal.scope().as_str()},
        "readOnly": read_only,
        "databases": databases,
    })))
}

/// A request body as `T`, or a 400 that says what is wrong with it.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    serde_json::from_slice(body)
        .map_err(|e| Box::new(plain(StatusCode::BAD_REQUEST, format!("bad request body: {e}"))))
}

/// A key in the CLI's key syntax, or a 400 naming the field.
pub(crate) fn parse_key(field: &str, text: &str) -> Result<Key, Box<Response>> {
    openkv::key::syntax::parse_key(text)
        .map_err(|e| Box::new(plain(StatusCode::BAD_REQUEST, format!("{field} {text}: {e}"))))
}

/// An entry as the console shows it: the export line (key syntax, key bytes, typed JSON value
/// or the bytes of a value this build cannot decode, encoding, versionstamp, expiry) plus the
/// value's stored size.
pub(crate) fn entry_json(entry: &RawEntry) -> Json {
    let mut line = openkv::export::entry_line(entry);
    if let Json::Object(object) = &mut line {
        object.insert("size".into(), json!(entry.value.encoded_len()));
        if let openkv::Value::Bytes(bytes) = &entry.value {
            // The bytes as they are, for the hex view and the download (the typed JSON holds
            // them as `{"$bytes": …}` too; this saves the page from digging).
            object.insert(
                "valueBytes".into(),
                json!(base64::engine::general_purpose::STANDARD.encode(bytes)),
            );
        }
    }
    line
}

/// The console's API endpoints are `read` or `write`; a server of `--read-only` refuses the
/// writes whatever the token.
pub(crate) fn writable(state: &crate::state::AppState) -> Result<(), Box<Response>> {
    if state.config.read_only {
        return Err(Box::new(plain(StatusCode::FORBIDDEN, "this server is read-only")));
    }
    Ok(())
}

/// The state the per-database handlers take.
pub(crate) type DbState = State<Arc<crate::state::AppState>>;
