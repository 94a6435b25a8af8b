//! The console's operator endpoints: the database's figures (for the small charts), a
//! consistent export, an import, and the queue's messages.

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use openkv::{Clock as _, Versionstamp};
use serde::Deserialize;
use serde_json::json;

use futures::StreamExt as _;
use openkv::transfer::{
    ExportScan, ImportOptions, ImportStopped, Importer, Snapshot, SnapshotError,
};

use super::{answer, parse, DbState};
use crate::response::{engine_error, json as json_answer, plain};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StatsRequest {
    /// Count the entries and find the newest versionstamp too: a scan of the whole database,
    /// which the page asks for on demand, not with every tick of its charts.
    #[serde(default)]
    scan: bool,
}

/// `POST {base}/console/api/stats`: the engine's counters (commits, entries read and
/// written: the page turns them into rates), sizes, queue depth, a replica's lag and the
/// continuous backup's last success; with `scan`, the number of entries and the newest
/// versionstamp.
pub(crate) async fn stats(state: DbState, body: Bytes) -> Response {
    answer(
        async {
            let request: StatsRequest =
                if body.is_empty() { StatsRequest::default() } else { parse(&body)? };
            let kv = &state.kv;
            let gauges = kv.gauges().await.map_err(|e| Box::new(engine_error(e)))?;
            let counters = kv.stats().map(|s| {
                json!({
                    "commitsOk": s.commits_ok,
                    "commitsCheckFailed": s.commits_check_failed,
                    "commitsError": s.commits_error,
                    "readEntries": s.read_entries,
                    "writtenEntries": s.written_entries,
                    "queueDelivered": s.queue_delivered,
                })
            });
            let replica_lag_ms = if kv.lagging_eventual_reads() {
                let now = openkv::SystemClock.now_ms();
                let status = kv.replica_status().await.ok().flatten();
                status.map(|s| s.lag_ms(now))
            } else {
                None
            };
            let backup = state.config.backup.as_ref().map(|status| {
                let status = status.borrow();
                json!({
                    "location": status.location,
                    "lastSuccessMs": status.last_success_ms,
                    "lastError": status.last_error,
                })
            });
            let scanned = if request.scan { Some(scan(&state).await?) } else { None };
            Ok(json_answer(json!({
                "database": state.database.as_ref().map(|d| d.as_str()),
                "nowMs": openkv::SystemClock.now_ms(),
                "counters": counters,
                "sizeBytes": gauges.database_bytes,
                "walBytes": gauges.wal_bytes,
                "queue": {
                    "ready": gauges.queue_ready,
                    "delayed": gauges.queue_delayed,
                    "running": gauges.queue_in_flight,
                },
                "replicaLagMs": replica_lag_ms,
                "backup": backup,
                "entries": scanned.map(|(n, _)| n),
                "versionstamp": scanned.map(|(_, v)| v.to_hex()),
            })))
        }
        .await,
    )
}

/// Every entry counted, and the newest versionstamp among them.
async fn scan(state: &crate::state::AppState) -> Result<(u64, Versionstamp), Box<Response>> {
    let mut scan = ExportScan::range(&state.kv, vec![0x00], vec![0xff]);
    let (mut count, mut newest) = (0u64, Versionstamp::ZERO);
    while let Some(batch) = scan.next_batch().await.map_err(|e| Box::new(engine_error(e)))? {
        count += batch.len() as u64;
        newest = batch.iter().map(|e| e.versionstamp).fold(newest, Versionstamp::max);
    }
    Ok((count, newest))
}

/// `POST {base}/console/api/export`: the whole database as the NDJSON lines `openkv export`
/// prints, from one consistent snapshot (`openkv::transfer::Snapshot`: an online backup copy
/// read page by page while the database goes on). A store without online backups
/// (PostgreSQL) is read page by page directly — each page consistent, not the whole — and
/// the answer says so in `x-openkv-export: paged` (the page shows it).
pub(crate) async fn export(state: DbState) -> Response {
    answer(
        async {
            let (source, how) = match Snapshot::take(&state.kv, &std::env::temp_dir()).await {
                Ok(snapshot) => (Source::Copy(snapshot), "snapshot"),
                Err(SnapshotError::Backup(openkv::Error::Unsupported(_))) => {
                    (Source::Live(state.0.clone()), "paged")
                }
                Err(SnapshotError::Backup(e) | SnapshotError::Open(e)) => {
                    return Err(Box::new(engine_error(e)))
                }
                Err(e) => {
                    return Err(Box::new(plain(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("export: {e}"),
                    )))
                }
            };
            let scan = ExportScan::range(source.kv(), vec![0x00], vec![0xff]);
            let export = Export { source: Some(source), scan };
            let stream = futures::stream::unfold(export, |mut export| async move {
                let chunk = export.next_chunk().await?;
                Some((chunk, export))
            });
            let name = state.database.as_ref().map_or("database", |d| d.as_str());
            Ok((
                [
                    (header::CONTENT_TYPE, "application/x-ndjson".to_string()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}.ndjson\""),
                    ),
                    (header::HeaderName::from_static("x-openkv-export"), how.to_string()),
                ],
                Body::from_stream(stream),
            )
                .into_response())
        }
        .await,
    )
}

/// What an export reads: its own snapshot, or the live database.
enum Source {
    Copy(Snapshot),
    Live(std::sync::Arc<crate::state::AppState>),
}

impl Source {
    fn kv(&self) -> &openkv::Kv {
        match self {
            Source::Copy(snapshot) => snapshot.kv(),
            Source::Live(state) => &state.kv,
        }
    }
}

/// An export in progress. Its snapshot is closed and removed when the export ends, or when
/// the client goes away (dropped with the stream).
struct Export {
    source: Option<Source>,
    scan: ExportScan,
}

impl Export {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        self.source.as_ref()?;
        match self.scan.next_batch().await {
            Ok(Some(entries)) => {
                let mut out = String::new();
                for entry in &entries {
                    out.push_str(&openkv::export::entry_line(entry).to_string());
                    out.push('\n');
                }
                Some(Ok(Bytes::from(out)))
            }
            Ok(None) => {
                self.finish().await;
                None
            }
            Err(e) => {
                // The answer is already under way: cut it short, so the download fails
                // visibly rather than ending as a shorter file.
                self.finish().await;
                Some(Err(std::io::Error::other(format!("export: {e}"))))
            }
        }
    }

    async fn finish(&mut self) {
        if let Some(Source::Copy(snapshot)) = self.source.take() {
            let _ = snapshot.close().await;
        }
    }
}

/// The longest line an import reads (a line of the largest value Deno stores, 64 KiB, in
/// typed JSON is far below it); a longer one is reported as that line's error and skipped, so
/// that an upload cannot make the server hold an unbounded line.
pub(crate) const MAX_IMPORT_LINE: usize = 4 << 20;

/// `POST {base}/console/api/import`: the body is NDJSON in `openkv export`'s format, imported
/// as it arrives, line by line, with `openkv import`'s engine (`openkv::transfer::Importer`):
/// the same batches, skips and per-line error report. The answer: the report's numbers,
/// `text` (the CLI's summary sentence), `failures` (the first ones, `line` and `message`),
/// and `stopped` when a database failure stopped the import (the lines before it are
/// written). The body has no size limit: it is read as a stream, in bounded memory.
pub(crate) async fn import(state: DbState, body: Body) -> Response {
    answer(
        async {
            super::writable(&state)?;
            let mut importer = Importer::new(&state.kv, ImportOptions::new());
            let mut stream = body.into_data_stream();
            let mut line = Vec::new();
            let mut line_no = 0u64;
            let mut too_long = false;
            let mut stopped: Option<ImportStopped> = None;
            'read: while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| {
                    Box::new(plain(
                        StatusCode::BAD_REQUEST,
                        format!("import: reading the upload: {e}"),
                    ))
                })?;
                let mut rest: &[u8] = &chunk;
                while !rest.is_empty() {
                    let (piece, ended) = match rest.iter().position(|&b| b == b'\n') {
                        Some(i) => (&rest[..=i], true),
                        None => (rest, false),
                    };
                    rest = &rest[piece.len()..];
                    if line.len() + piece.len() > MAX_IMPORT_LINE {
                        too_long = true;
                        line.clear();
                    } else if !too_long {
                        line.extend_from_slice(piece);
                    }
                    if ended {
                        line_no += 1;
                        if let Err(e) = take_line(&mut importer, line_no, &line, too_long).await {
                            stopped = Some(e);
                            break 'read;
                        }
                        line.clear();
                        too_long = false;
                    }
                }
            }
            if stopped.is_none() && (!line.is_empty() || too_long) {
                line_no += 1;
                if let Err(e) = take_line(&mut importer, line_no, &line, too_long).await {
                    stopped = Some(e);
                }
            }
            let (report, stopped) = match stopped {
                Some(e) => (e.report().clone(), Some(e.to_string())),
                None => match importer.finish().await {
                    Ok(report) => (report, None),
                    Err(e) => (e.report().clone(), Some(e.to_string())),
                },
            };
            let mut answer = report.json();
            if let serde_json::Value::Object(object) = &mut answer {
                object.insert("text".into(), json!(report.text()));
                object.insert("failures".into(), json!(report.failures));
                object.insert("stopped".into(), json!(stopped));
            }
            Ok(json_answer(answer))
        }
        .await,
    )
}

/// Hands one line to the importer; a line over [`MAX_IMPORT_LINE`] is that line's error.
async fn take_line(
    importer: &mut Importer,
    line_no: u64,
    line: &[u8],
    too_long: bool,
) -> Result<(), ImportStopped> {
    if too_long {
        importer.reject(line_no, format!("line longer than {MAX_IMPORT_LINE} bytes (not read)"));
        return Ok(());
    }
    importer.line(line_no, line).await
}

/// Messages the queue view lists (the counts cover all of them).
pub(crate) const QUEUE_LISTED: usize = 200;

/// `POST {base}/console/api/queue`: the counts by state and the first [`QUEUE_LISTED`]
/// messages (in flight first, then by due time), each with its payload as typed JSON (or
/// `null` and `payloadBytes` when this build cannot decode it), due time, attempts, the
/// backoff left and its dead-letter keys in key syntax.
pub(crate) async fn queue(state: DbState) -> Response {
    answer(
        async {
            let listing = state
                .kv
                .queue_inspect(QUEUE_LISTED)
                .await
                .map_err(|e| Box::new(engine_error(e)))?;
            let messages: Vec<serde_json::Value> = listing
                .messages
                .iter()
                .map(|m| {
                    let mut object = serde_json::Map::new();
                    object.insert("id".into(), json!(m.id));
                    object.insert("state".into(), json!(state_name(&m.state)));
                    object.insert("dueAt".into(), json!(m.due_at_ms));
                    object.insert("attempts".into(), json!(m.attempts));
                    object.insert("backoffMs".into(), json!(m.backoff_ms));
                    let dead_letters: Vec<String> = m
                        .keys_if_undelivered
                        .iter()
                        .map(|k| match openkv::Key::decode(k) {
                            Ok(key) => openkv::key::syntax::format_key(&key),
                            Err(_) => format!("(undecodable key {})", hex::encode(k)),
                        })
                        .collect();
                    object.insert("keysIfUndelivered".into(), json!(dead_letters));
                    openkv::export::put_value(&mut object, &m.payload);
                    let payload = object.remove("value").unwrap_or(serde_json::Value::Null);
                    object.insert("payload".into(), payload);
                    if let Some(bytes) = object.remove("valueBytes") {
                        object.insert("payloadBytes".into(), bytes);
                    }
                    serde_json::Value::Object(object)
                })
                .collect();
            Ok(json_answer(json!({
                "ready": listing.ready,
                "delayed": listing.delayed,
                "running": listing.running,
                "messages": messages,
            })))
        }
        .await,
    )
}

fn state_name(state: &openkv::QueueMessageState) -> &'static str {
    match state {
        openkv::QueueMessageState::Ready => "ready",
        openkv::QueueMessageState::Delayed => "delayed",
        openkv::QueueMessageState::Running => "running",
        // The enum may grow: shown as what it is not yet named.
        _ => "other",
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageRequest {
    id: String,
}

/// `POST {base}/console/api/queue/delete`: removes a message (waiting or in flight; a
/// listener's later finish of it is ignored). 404 for an id that is not there.
pub(crate) async fn queue_delete(state: DbState, body: Bytes) -> Response {
    change(state, body, openkv::QueueChange::Remove).await
}

/// `POST {base}/console/api/queue/due-now`: makes a waiting message due now. 409 for one in
/// flight (its listener has it), 404 for an id that is not there.
pub(crate) async fn queue_due_now(state: DbState, body: Bytes) -> Response {
    change(state, body, openkv::QueueChange::DueNow).await
}

async fn change(state: DbState, body: Bytes, change: openkv::QueueChange) -> Response {
    answer(
        async {
            super::writable(&state)?;
            let request: MessageRequest = parse(&body)?;
            match state.kv.queue_change(&request.id, change).await {
                Ok(true) => Ok(json_answer(json!({"changed": true}))),
                Ok(false) => Err(Box::new(plain(
                    StatusCode::NOT_FOUND,
                    format!("no queue message {} (delivered or removed meanwhile?)", request.id),
                ))),
                Err(openkv::Error::QueueMessageInFlight { id }) => Err(Box::new(plain(
                    StatusCode::CONFLICT,
                    format!("queue message {id} is being delivered now; it cannot be made due"),
                ))),
                Err(e) => Err(Box::new(engine_error(e))),
            }
        }
        .await,
    )
}
