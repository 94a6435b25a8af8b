//! The console's operator endpoints: the database's figures (for the small charts), a
//! consistent export, an import, and the queue's messages.

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use openkv::{Clock as _, Consistency, ReadRange, Versionstamp};
use serde::Deserialize;
use serde_json::json;

use super::{parse, DbState};
use crate::response::{engine_error, json as json_answer, plain};

type Answer = Result<Response, Box<Response>>;

fn answer(result: Answer) -> Response {
    result.unwrap_or_else(|refused| *refused)
}

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

/// Every entry counted, and the newest versionstamp among them (pages of the engine's
/// largest read).
async fn scan(state: &crate::state::AppState) -> Result<(u64, Versionstamp), Box<Response>> {
    let page = state.kv.limits().max_read_entries;
    let (mut start, end) = (vec![0x00], vec![0xff]);
    let (mut count, mut newest) = (0u64, Versionstamp::ZERO);
    loop {
        let range = ReadRange {
            start: start.clone(),
            end: end.clone(),
            limit: page as u32,
            reverse: false,
        };
        let entries = state
            .kv
            .snapshot_read(vec![range], Consistency::Strong)
            .await
            .map_err(|e| Box::new(engine_error(e)))?
            .pop()
            .unwrap_or_default();
        count += entries.len() as u64;
        newest = entries.iter().map(|e| e.versionstamp).fold(newest, Versionstamp::max);
        match entries.last() {
            Some(last) if entries.len() == page => {
                start = last.key.clone();
                start.push(0x00);
            }
            _ => return Ok((count, newest)),
        }
    }
}

/// `POST {base}/console/api/export`: the whole database as the NDJSON lines `openkv export`
/// prints, from one consistent snapshot: an online backup copy taken first (SQLite's backup;
/// PostgreSQL's repeatable-read copy), then read page by page while the database goes on.
pub(crate) async fn export(state: DbState) -> Response {
    answer(
        async {
            let dir =
                tempfile::Builder::new().prefix(".openkv-console-export-").tempdir().map_err(
                    |e| Box::new(plain(StatusCode::INTERNAL_SERVER_ERROR, format!("export: {e}"))),
                )?;
            let path = dir.path().join("snapshot.sqlite3");
            state.kv.backup(&path).await.map_err(|e| Box::new(engine_error(e)))?;
            let copy = openkv::Kv::open(&path).await.map_err(|e| Box::new(engine_error(e)))?;
            let scan = Scan { copy, dir: Some(dir), start: vec![0x00], done: false };
            let stream = futures::stream::unfold(scan, |mut scan| async move {
                let chunk = scan.next_chunk().await?;
                Some((chunk, scan))
            });
            let name = state.database.as_ref().map_or("database", |d| d.as_str());
            Ok((
                [
                    (header::CONTENT_TYPE, "application/x-ndjson".to_string()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}.ndjson\""),
                    ),
                ],
                Body::from_stream(stream),
            )
                .into_response())
        }
        .await,
    )
}

/// An export in progress: the copy it reads and the directory that holds it (removed when
/// the export ends or the client goes away).
struct Scan {
    copy: openkv::Kv,
    dir: Option<tempfile::TempDir>,
    start: Vec<u8>,
    done: bool,
}

impl Scan {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        if self.done {
            return None;
        }
        let page = self.copy.limits().max_read_entries;
        let range = ReadRange {
            start: self.start.clone(),
            end: vec![0xff],
            limit: page as u32,
            reverse: false,
        };
        let read = self.copy.snapshot_read(vec![range], Consistency::Strong).await;
        let entries = match read {
            Ok(mut ranges) => ranges.pop().unwrap_or_default(),
            Err(e) => {
                // The answer is already under way: cut it short, so the download fails
                // visibly rather than ending as a shorter file.
                self.finish().await;
                return Some(Err(std::io::Error::other(format!("export: {e}"))));
            }
        };
        let mut out = String::new();
        for entry in &entries {
            out.push_str(&openkv::export::entry_line(entry).to_string());
            out.push('\n');
        }
        match entries.last() {
            Some(last) if entries.len() == page => {
                self.start = last.key.clone();
                self.start.push(0x00);
            }
            _ => self.finish().await,
        }
        Some(Ok(Bytes::from(out)))
    }

    async fn finish(&mut self) {
        self.done = true;
        let _ = self.copy.close().await;
        self.dir.take();
    }
}
