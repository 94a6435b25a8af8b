//! Authentication as a router layer: [`require_token`] wraps every endpoint (see
//! `crate::ENDPOINTS`), so a handler runs only for a request that carries the access token.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use crate::response::plain;
use crate::AppState;

/// The layer's function (`axum::middleware::from_fn_with_state`): 401 with a plain-text
/// message unless the request carries `Authorization: Bearer <access token>`. It answers
/// before the body is read, and before any other check of the request.
pub(crate) async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if !token_matches(request.headers(), &state.config.access_token) {
        return plain(StatusCode::UNAUTHORIZED, "invalid or missing access token");
    }
    next.run(request).await
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
