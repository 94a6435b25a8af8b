//! Whole-database endpoints (openkv's own, docs/protocol-extensions.md): `POST
//! /v2/openkv/backup` streams an online backup, `/v2/openkv/restore` replaces the content.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use openkv::Error;

use crate::datapath::reject_headers;
use crate::response::{bad_request, engine_error, json, plain};
use crate::state::AppState;

/// `POST /v2/openkv/backup`: an online backup of the served database, made with
/// [`Kv::backup`](openkv::Kv::backup) into a temporary directory and streamed as the body
/// (`application/vnd.sqlite3`). Checked like the data path; allowed on a read-only server (it
/// only reads).
pub(crate) async fn backup(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(rejected) = reject_headers(&state, &headers) {
        return rejected;
    }
    let dir = match tempfile::Builder::new().prefix("openkv-backup-").tempdir() {
        Ok(dir) => dir,
        Err(e) => return engine_error(Error::storage_caused("no temporary directory", e)),
    };
    let path = dir.path().join("backup.sqlite3");
    let summary = match state.kv.backup(&path).await {
        Ok(summary) => summary,
        Err(e) => return engine_error(e),
    };
    let file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(e) => return engine_error(Error::storage_caused("reopening the backup", e)),
    };
    // The stream owns the temporary directory: it is deleted once the body has been sent (or
    // the client went away).
    let chunks = futures::stream::unfold((file, dir), |(mut file, dir)| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), (file, dir)))
            }
            Err(e) => Some((Err(e), (file, dir))),
        }
    });
    tracing::info!("backup: {} entries, {} bytes", summary.entries, summary.size);
    (
        [
            (header::CONTENT_TYPE, "application/vnd.sqlite3".to_owned()),
            (header::CONTENT_LENGTH, summary.size.to_string()),
        ],
        axum::body::Body::from_stream(chunks),
    )
        .into_response()
}

/// `POST /v2/openkv/restore`: the body is a backup file; it is written to a temporary
/// directory, verified, and replaces the served database's content in one transaction
/// ([`Kv::restore_from`](openkv::Kv::restore_from)) while the server keeps serving. Refused
/// (403) when read-only.
pub(crate) async fn restore(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    use tokio::io::AsyncWriteExt;
    if let Some(rejected) = reject_headers(&state, &headers) {
        return rejected;
    }
    if state.config.read_only {
        // Read the (authenticated) upload to its end before refusing: a client still sending
        // when the answer comes and the stream is reset sees a broken upload, not this 403
        // (seen about one run in three). Nothing is stored.
        let mut chunks = body.into_data_stream();
        while let Some(Ok(_)) = chunks.next().await {}
        return plain(StatusCode::FORBIDDEN, "the server is read-only: no restore");
    }
    let dir = match tempfile::Builder::new().prefix("openkv-restore-").tempdir() {
        Ok(dir) => dir,
        Err(e) => return engine_error(Error::storage_caused("no temporary directory", e)),
    };
    let path = dir.path().join("upload.sqlite3");
    let mut file = match tokio::fs::File::create(&path).await {
        Ok(file) => file,
        Err(e) => return engine_error(Error::storage_caused("storing the upload", e)),
    };
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let written = match chunk {
            Ok(bytes) => file.write_all(&bytes).await,
            Err(e) => return bad_request(format!("the upload broke off: {e}")),
        };
        if let Err(e) = written {
            return engine_error(Error::storage_caused("storing the upload", e));
        }
    }
    if let Err(e) = file.flush().await {
        return engine_error(Error::storage_caused("storing the upload", e));
    }
    drop(file);
    match state.kv.restore_from(&path).await {
        Ok(summary) => {
            tracing::warn!("restore: the database was replaced ({} entries)", summary.entries);
            json(serde_json::json!({"entries": summary.entries, "size": summary.size}))
        }
        // A backup that does not verify is the client's mistake: `Error::InvalidBackup`, of
        // class `Client`, which engine_error answers with 400 and its message.
        Err(e) => engine_error(e),
    }
}
