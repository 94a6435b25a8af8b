//! The response shapes every endpoint shares: plain-text refusals, JSON and protobuf bodies,
//! and engine errors as HTTP (the client's mistakes 4xx, the server's failures 5xx).

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use openkv::Error;
use prost::Message;

/// A plain-text answer: every refusal is one, so a client can show the message as it is.
pub(crate) fn plain(status: StatusCode, message: impl Into<String>) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], message.into()).into_response()
}

pub(crate) fn bad_request(message: impl Into<String>) -> Response {
    plain(StatusCode::BAD_REQUEST, message)
}

/// An engine error as HTTP, by its class: the client's mistakes are 4xx (fatal at the
/// client), the server's failures 5xx (the client retries) — 503 for a state that passes or
/// that a restart cures (busy, disk full, PostgreSQL unreachable, poisoned, shutting down),
/// 500 for the rest.
pub(crate) fn engine_error(e: Error) -> Response {
    use openkv::ErrorClass as C;
    let status = match e.class() {
        C::Client => return bad_request(e.to_string()),
        C::Transient | C::Poisoned | C::Closed => StatusCode::SERVICE_UNAVAILABLE,
        C::OutcomeUnknown | C::Storage | C::Corrupt | C::Incompatible | C::Internal => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        // `ErrorClass` may grow: until a new class is mapped here, it is a server failure.
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    tracing::error!("request failed on the server side: {e}");
    plain(status, e.to_string())
}

pub(crate) fn protobuf(message: &impl Message) -> Response {
    ([(header::CONTENT_TYPE, "application/x-protobuf")], message.encode_to_vec()).into_response()
}

pub(crate) fn json(value: serde_json::Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}

/// A typed JSON answer (the queue extension's messages). Their serialization cannot fail (plain
/// structs of strings and numbers); if it ever did, that is a 500, not a panic.
pub(crate) fn typed_json(value: &impl serde::Serialize) -> Response {
    match serde_json::to_string(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding the answer: {e}")),
    }
}
