//! The console's API (`POST {base}/console/api/…`, `base` = `""` or `/databases/<name>`):
//! endpoints of each database's router (`crate::routes::ENDPOINTS`), behind the
//! authentication layer like every endpoint, and [`guard_api`] (cross-site requests refused,
//! the console's headers on every answer). Data: [`data`]; queue, figures, export and
//! import: [`operate`]. The page and the session are `crate::console`'s.

pub(crate) mod data;
pub(crate) mod operate;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use openkv::{Key, RawEntry};
use serde_json::{json, Value as Json};

use crate::response::plain;

/// The path every console endpoint starts with (pages, assets and API).
pub(crate) const CONSOLE_PREFIX: &str = "/console";

/// The policy of every console answer: the page's own script and style sheet and nothing
/// else — no inline script or style (a value that smuggles markup in cannot run), no
/// plugins, no framing (clickjacking), forms and `<base>` pinned.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; form-action 'none'; \
     frame-ancestors 'none'; base-uri 'none'";

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

/// Why a request looks like one another site's page made, if it does. A browser's own word
/// first (`Sec-Fetch-Site`: anything but `same-origin`, or `none` for one a person typed, is
/// refused): it is about the page's real origin, so a reverse proxy that rewrites `Host`
/// does not disturb it. Only a browser that does not send it (older ones) is judged by its
/// `Origin` against `Host` (or `X-Forwarded-Host`, which a proxy sets to the name the browser
/// used).
fn cross_site(method: &Method, headers: &HeaderMap) -> Option<&'static str> {
    if method != Method::POST {
        return None;
    }
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return (!matches!(site, "same-origin" | "none"))
            .then_some("the console's API answers its own pages only (Sec-Fetch-Site)");
    }
    let origin = text(header::ORIGIN.as_str())?;
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    let names = [text(header::HOST.as_str()), text("x-forwarded-host")];
    (!names.iter().flatten().any(|name| *name == origin_host))
        .then_some("the console's API answers its own pages only (Origin is not this host)")
}

/// A handler's answer: the response, or a refusal built on the way (so that `?` works on
/// every check).
pub(crate) type Answer = Result<Response, Box<Response>>;

/// The response an [`Answer`] stands for.
pub(crate) fn answer(result: Answer) -> Response {
    result.unwrap_or_else(|refused| *refused)
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
