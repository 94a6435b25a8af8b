//! `POST /`: the metadata exchange — the protocol version, the database id and where the data
//! path is, valid for [`METADATA_TTL`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::Response;

use crate::response::{bad_request, json};
use crate::state::AppState;

/// The protocol versions this server speaks.
pub const SUPPORTED_VERSIONS: [u64; 3] = [1, 2, 3];
/// How long a metadata response stays valid (clients refresh before it expires).
pub const METADATA_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// `POST /`: the metadata exchange.
pub(crate) async fn metadata(
    State(state): State<Arc<AppState>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // No body means "version 1 only" (the first clients sent none).
    let versions: Vec<u64> = if body.is_empty() {
        vec![1]
    } else {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Request {
            supported_versions: Vec<u64>,
        }
        match serde_json::from_slice::<Request>(&body) {
            Ok(r) => r.supported_versions,
            Err(e) => return bad_request(format!("invalid metadata request: {e}")),
        }
    };
    let Some(version) = versions.iter().copied().filter(|v| SUPPORTED_VERSIONS.contains(v)).max()
    else {
        return bad_request(format!(
            "no common protocol version: the client supports {versions:?}, this server \
             {SUPPORTED_VERSIONS:?}"
        ));
    };
    // Version 1 endpoint URLs are absolute; later ones are relative to the metadata URL.
    let base = if version == 1 {
        // HTTP/2 (ALPN `h2` over TLS, h2c) carries the host in the URI, HTTP/1.1 in `Host`.
        let host = uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()))
            .unwrap_or("localhost");
        let scheme = if state.config.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{host}")
    } else {
        String::new()
    };
    // On a server of many databases, each one's endpoints are beneath its own path.
    let base = format!("{base}{}", state.base_path);
    // The strong endpoint first: the Deno CLI sends every call to the first strong one.
    let mut endpoints =
        vec![serde_json::json!({ "url": format!("{base}/v2"), "consistency": "strong" })];
    if state.kv.lagging_eventual_reads() {
        // A replica (its own copy) or a PostgreSQL standby behind this server: for clients
        // that ask for eventual reads (`@deno/kv`, ours).
        let url = format!("{base}/v2/eventual");
        endpoints.push(serde_json::json!({ "url": url, "consistency": "eventual" }));
    }
    for replica in &state.config.replica_endpoints {
        let url = format!("{}/v2/eventual", replica.trim_end_matches('/'));
        endpoints.push(serde_json::json!({ "url": url, "consistency": "eventual" }));
    }
    let expires_at = humantime::format_rfc3339_millis(SystemTime::now() + METADATA_TTL);
    json(serde_json::json!({
        "version": version,
        "databaseId": state.database_id,
        "endpoints": endpoints,
        // The token the client presented (it passed the authentication layer): the data
        // path takes the same one. Never another token, least of all the server's own.
        "token": crate::auth::presented_token(&headers).unwrap_or_default(),
        "expiresAt": expires_at.to_string(),
    }))
}
