//! Authentication as a router layer: [`require_token`] wraps every endpoint (see
//! `crate::ENDPOINTS`), so a handler runs only for a request that carries the access token.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::response::plain;
use crate::state::AppState;

/// What the layer does with the body of a request it refuses, per endpoint: whatever the
/// endpoint's handler did with it before the token was checked (by the handler itself), so
/// that refusals look the same on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Reads the whole body first, under the body limit, as a handler's `Bytes` argument did:
    /// beyond the limit the answer is axum's 413, and a client whose upload is still in
    /// flight gets its 401 rather than a connection reset by the unread rest.
    AfterBody,
    /// Answers at once, the body unread: the endpoint takes none (backup) or streams one
    /// without a limit (restore), which nobody without the token may make the server read.
    AtOnce,
}

/// The layer's state: the server's and the endpoint's own [`Refusal`].
#[derive(Clone)]
pub(crate) struct Guard {
    pub(crate) state: Arc<AppState>,
    pub(crate) refusal: Refusal,
}

/// The layer's function (`axum::middleware::from_fn_with_state`): 401 with a plain-text
/// message unless the request carries `Authorization: Bearer <access token>`, before any
/// other check of the request.
pub(crate) async fn require_token(
    State(guard): State<Guard>,
    request: Request,
    next: Next,
) -> Response {
    if token_matches(request.headers(), &guard.state.config.access_token) {
        return next.run(request).await;
    }
    if guard.refusal == Refusal::AfterBody {
        // The very extraction a `Bytes` argument does (the limit is the request's
        // `DefaultBodyLimit`); the body itself is dropped.
        if let Err(rejection) = Bytes::from_request(request, &()).await {
            return rejection.into_response();
        }
    }
    plain(StatusCode::UNAUTHORIZED, "invalid or missing access token")
}

/// The token a request presents (`Authorization: Bearer <token>`). Past the layer, it is the
/// access token: the per-token limits (`limits::Admission`) key their counters by it.
pub(crate) fn presented_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

fn token_matches(headers: &HeaderMap, expected: &str) -> bool {
    let Some(presented) = presented_token(headers) else {
        return false;
    };
    // Constant time in the token's content; the length is not secret.
    presented.as_bytes().ct_eq(expected.as_bytes()).into()
}
