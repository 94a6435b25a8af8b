//! Authentication as a router layer: [`require_token`] wraps every endpoint of a database
//! (see `crate::routes::ENDPOINTS`), so a handler runs only for a request whose token
//! (`crate::tokens`) reaches the database with the endpoint's scope.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use openkv::catalog::{DatabaseName, Scope};

use crate::metrics::{AuthFailure, Endpoint as MetricsEndpoint, HttpMetrics};
use crate::response::plain;
use crate::state::AppState;
use crate::tokens::Denied;

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

/// The layer's state: the database's, the endpoint's own [`Refusal`] and the scope it needs.
#[derive(Clone)]
pub(crate) struct Guard {
    pub(crate) state: Arc<AppState>,
    pub(crate) refusal: Refusal,
    pub(crate) scope: Scope,
    /// The endpoint in the database's request metrics (counted here, where it is known
    /// without looking at the path: one layer fewer per request than a counting layer).
    pub(crate) counted: MetricsEndpoint,
}

/// The layer's function (`axum::middleware::from_fn_with_state`): the request goes on only
/// with `Authorization: Bearer <token>` of a token that reaches the database with the
/// endpoint's scope, before any other check of the request; otherwise a plain-text 401
/// (no, unknown, expired or revoked token), 404 (a database the token does not reach) or
/// 403 (the scope is short). The token's id goes into the request's span (`token_id`).
pub(crate) async fn require_token(
    State(guard): State<Guard>,
    request: Request,
    next: Next,
) -> Response {
    let Some(http) = &guard.state.http else { return check_token(&guard, request, next).await };
    let started = std::time::Instant::now();
    let response = check_token(&guard, request, next).await;
    http.request(guard.counted, response.status().as_u16(), started.elapsed());
    response
}

async fn check_token(guard: &Guard, request: Request, next: Next) -> Response {
    let presented = presented_token(request.headers());
    let database = guard.state.database.as_ref();
    let denied = match guard.state.tokens.check(presented, database, guard.scope) {
        Ok(principal) => {
            tracing::Span::current().record("token_id", principal.id());
            return next.run(request).await;
        }
        Err(denied) => denied,
    };
    if guard.refusal == Refusal::AfterBody {
        // The very extraction a `Bytes` argument does (the limit is the request's
        // `DefaultBodyLimit`); the body itself is dropped.
        if let Err(rejection) = Bytes::from_request(request, &()).await {
            return rejection.into_response();
        }
    }
    refusal(&guard.state.metrics, denied, guard.scope, database)
}

/// The answer to a refused request.
pub(crate) fn refusal(
    metrics: &HttpMetrics,
    denied: Denied,
    needed: Scope,
    database: Option<&DatabaseName>,
) -> Response {
    tracing::Span::current().record("refusal", denied.reason());
    metrics.auth_failure(match denied {
        Denied::Missing => AuthFailure::Missing,
        Denied::Invalid => AuthFailure::Invalid,
        Denied::Expired => AuthFailure::Expired,
        Denied::Revoked => AuthFailure::Revoked,
        Denied::Forbidden => AuthFailure::Forbidden,
        Denied::Unreachable => AuthFailure::UnknownDatabase,
    });
    match denied {
        Denied::Missing | Denied::Invalid => {
            plain(StatusCode::UNAUTHORIZED, "invalid or missing access token")
        }
        Denied::Expired => plain(StatusCode::UNAUTHORIZED, "the access token has expired"),
        Denied::Revoked => plain(StatusCode::UNAUTHORIZED, "the access token was revoked"),
        Denied::Forbidden => plain(
            StatusCode::FORBIDDEN,
            format!("this access token's scope does not allow this (it needs {})", needed.as_str()),
        ),
        Denied::Unreachable => no_such_database(database),
    }
}

/// 404 for a database that does not exist or that the token does not reach: the same answer
/// for both.
pub(crate) fn no_such_database(database: Option<&DatabaseName>) -> Response {
    match database {
        Some(name) => plain(StatusCode::NOT_FOUND, format!("no database {name}")),
        None => plain(StatusCode::NOT_FOUND, "no such database"),
    }
}

/// The token a request presents (`Authorization: Bearer <token>`). Past the layer, it is a
/// valid token: the per-token limits (`limits::Admission`) key their counters by it.
pub(crate) fn presented_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}
