//! The console's data endpoints: read entries (get, a page of a list, the children of a
//! prefix), write them with a versionstamp check, count and delete a prefix, and follow keys
//! and a prefix live.
//!
//! Key ranges follow Deno's `list` selectors on encoded keys: the keys *under* a prefix `P`
//! are `[P 0x00, P 0xFF)` (every part's encoding starts with a type byte between 0x01 and
//! 0x30, so nothing under `P` sorts outside, and `P` itself is not under it).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as CURSOR;
use base64::Engine as _;
use futures::StreamExt as _;
use openkv::transfer::ExportScan;
use openkv::{CommitOutcome, Consistency, Key, RawEntry, ReadRange, Versionstamp};
use serde::Deserialize;
use serde_json::{json, Value as Json};

use super::{answer, entry_json, parse, parse_key, writable, Answer, DbState};
use crate::auth::presented_token;
use crate::response::{engine_error, json as json_answer, plain};

/// Entries a list page holds when the page asks for no number; and the most it may ask for
/// (one snapshot read: the engine's `MAX_READ_ENTRIES`, less the one read to see if more
/// follow).
pub(crate) const DEFAULT_PAGE: usize = 100;
pub(crate) const MAX_PAGE: usize = 999;
/// Children of a prefix one `children` answer lists (each found by one skip through the
/// keys); the page asks for the next ones after the last.
pub(crate) const CHILDREN_PER_ANSWER: usize = 100;
/// A child's count is exact up to this; beyond it the page shows "100+" (counting costs a
/// read per entry, so the tree counts only what is cheap).
pub(crate) const CHILD_COUNT_CAP: u32 = 100;
/// How often a console watch without news says it is alive (so that proxies keep it open).
pub(crate) const KEEPALIVE: Duration = Duration::from_secs(15);
/// How often a prefix is re-read when the store has no change feed to follow.
pub(crate) const PREFIX_POLL: Duration = Duration::from_secs(2);

fn encoded(field: &str, text: &str) -> Result<Vec<u8>, Box<Response>> {
    let key = parse_key(field, text)?;
    key.encode()
        .map_err(|e| Box::new(plain(StatusCode::BAD_REQUEST, format!("{field} {text}: {e}"))))
}

fn under(prefix: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut start = prefix.to_vec();
    start.push(0x00);
    let mut end = prefix.to_vec();
    end.push(0xff);
    (start, end)
}

/// One snapshot read of one range.
async fn read(
    state: &crate::state::AppState,
    start: Vec<u8>,
    end: Vec<u8>,
    limit: usize,
    reverse: bool,
) -> Result<Vec<RawEntry>, Box<Response>> {
    let range = ReadRange { start, end, limit: limit as u32, reverse };
    let mut ranges = state
        .kv
        .snapshot_read(vec![range], Consistency::Strong)
        .await
        .map_err(|e| Box::new(engine_error(e)))?;
    Ok(ranges.pop().unwrap_or_default())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GetRequest {
    key: String,
}

/// `POST {base}/console/api/get`: one entry, or `null`.
pub(crate) async fn get(state: DbState, body: Bytes) -> Response {
    answer(
        async {
            let request: GetRequest = parse(&body)?;
            let key = encoded("key", &request.key)?;
            let entry = current(&state, &key).await?;
            Ok(json_answer(json!({ "entry": entry.as_ref().map(entry_json) })))
        }
        .await,
    )
}

async fn current(
    state: &crate::state::AppState,
    key: &[u8],
) -> Result<Option<RawEntry>, Box<Response>> {
    let mut end = key.to_vec();
    end.push(0x00);
    Ok(read(state, key.to_vec(), end, 1, false).await?.pop())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListRequest {
    prefix: Option<String>,
    start: Option<String>,
    end: Option<String>,
    #[serde(default)]
    reverse: bool,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `POST {base}/console/api/list`: a page of entries of a selector (Deno's: a prefix, a
/// prefix with a start or an end, or a start and an end), and the cursor of the next page
/// (`null` after the last).
pub(crate) async fn list(state: DbState, body: Bytes) -> Response {
    answer(
        async {
            let request: ListRequest = parse(&body)?;
            let prefix = request.prefix.as_deref().map(|p| encoded("prefix", p)).transpose()?;
            let (mut start, mut end) = under(prefix.as_deref().unwrap_or_default());
            let (lowest, highest) = (start.clone(), end.clone());
            // As Deno's selectors: with a prefix, start and end must lie within it.
            let inside = |field: &str, text: &str, key: Vec<u8>| {
                if prefix.is_some() && (key < lowest || key > highest) {
                    let prefix = request.prefix.as_deref().unwrap_or_default();
                    return Err(Box::new(plain(
                        StatusCode::BAD_REQUEST,
                        format!("{field} {text} is not under the prefix {prefix}"),
                    )));
                }
                Ok(key)
            };
            if let Some(text) = &request.start {
                start = inside("start", text, encoded("start", text)?)?;
            }
            if let Some(text) = &request.end {
                end = inside("end", text, encoded("end", text)?)?;
            }
            if let Some(cursor) = &request.cursor {
                let last = CURSOR.decode(cursor).map_err(|_| {
                    Box::new(plain(StatusCode::BAD_REQUEST, "cursor: not a cursor of this list"))
                })?;
                if request.reverse {
                    end = last;
                } else {
                    start = last;
                    start.push(0x00);
                }
            }
            let limit = request.limit.unwrap_or(DEFAULT_PAGE);
            if !(1..=MAX_PAGE).contains(&limit) {
                return Err(Box::new(plain(
                    StatusCode::BAD_REQUEST,
                    format!("limit: between 1 and {MAX_PAGE}, not {limit}"),
                )));
            }
            if start >= end {
                return Ok(json_answer(json!({"entries": [], "cursor": null})));
            }
            let mut entries = read(&state, start, end, limit + 1, request.reverse).await?;
            let more = entries.len() > limit;
            entries.truncate(limit);
            let cursor = match entries.last() {
                Some(last) if more => Json::String(CURSOR.encode(&last.key)),
                _ => Json::Null,
            };
            let entries: Vec<Json> = entries.iter().map(entry_json).collect();
            Ok(json_answer(json!({ "entries": entries, "cursor": cursor })))
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChildrenRequest {
    #[serde(default = "root")]
    prefix: String,
    /// The last child of the previous answer (key syntax): list the ones after it.
    after: Option<String>,
}

fn root() -> String {
    "[]".into()
}

/// `POST {base}/console/api/children`: the distinct next key parts under a prefix — each
/// found by skipping past the previous child's keys (one read of one entry), never by
/// reading everything under the prefix — with a count up to [`CHILD_COUNT_CAP`] and whether
/// the child is itself a key.
pub(crate) async fn children(state: DbState, body: Bytes) -> Response {
    answer(
        async {
            let request: ChildrenRequest = parse(&body)?;
            let prefix = parse_key("prefix", &request.prefix)?;
            let prefix_bytes = encode(&prefix, "prefix")?;
            let (mut cursor, end) = under(&prefix_bytes);
            if let Some(after) = &request.after {
                cursor = encoded("after", after)?;
                cursor.push(0xff);
            }
            let depth = prefix.len();
            let mut found: Vec<(Key, Vec<u8>)> = Vec::new();
            let mut more = false;
            while cursor < end {
                let Some(next) = read(&state, cursor.clone(), end.clone(), 1, false).await?.pop()
                else {
                    break;
                };
                if found.len() == CHILDREN_PER_ANSWER {
                    more = true;
                    break;
                }
                let key = Key::decode(&next.key).map_err(|e| Box::new(engine_error(e)))?;
                let Some(part) = key.parts().get(depth) else { break };
                let mut child = prefix.clone();
                child.push(part.clone());
                let child_bytes = encode(&child, "child")?;
                cursor = child_bytes.clone();
                cursor.push(0xff);
                found.push((child, child_bytes));
            }
            // The counts, as many children at a time as one snapshot read may hold (ranges
            // per read, and entries per read at the cap + 1 each).
            let limits = state.kv.limits();
            let per_read = limits
                .max_read_ranges
                .min(limits.max_read_entries / (CHILD_COUNT_CAP as usize + 1))
                .max(1);
            let mut listed = Vec::with_capacity(found.len());
            for chunk in found.chunks(per_read) {
                let ranges = chunk
                    .iter()
                    .map(|(_, bytes)| {
                        let mut end = bytes.clone();
                        end.push(0xff);
                        ReadRange {
                            start: bytes.clone(),
                            end,
                            limit: CHILD_COUNT_CAP + 1,
                            reverse: false,
                        }
                    })
                    .collect();
                let counted = state
                    .kv
                    .snapshot_read(ranges, Consistency::Strong)
                    .await
                    .map_err(|e| Box::new(engine_error(e)))?;
                for ((child, bytes), entries) in chunk.iter().zip(counted) {
                    let has_value = entries.first().is_some_and(|e| &e.key == bytes);
                    let count = entries.len() as u32;
                    let whole = openkv::key::syntax::format_key(child);
                    listed.push(json!({
                        "part": part_text(&child.parts()[depth]),
                        "key": whole,
                        "count": count.min(CHILD_COUNT_CAP),
                        "more": count > CHILD_COUNT_CAP,
                        "hasValue": has_value,
                    }));
                }
            }
            // The prefix's own levels, for the page's breadcrumbs.
            let path: Vec<Json> = (1..=depth)
                .map(|n| {
                    let level = Key::new(prefix.parts()[..n].to_vec());
                    json!({
                        "part": part_text(&prefix.parts()[n - 1]),
                        "key": openkv::key::syntax::format_key(&level),
                    })
                })
                .collect();
            Ok(json_answer(json!({ "children": listed, "more": more, "path": path })))
        }
        .await,
    )
}

/// One key part in the key syntax (`"users"`, `12n`, `b"AAE="`).
fn part_text(part: &openkv::KeyPart) -> String {
    let one = openkv::key::syntax::format_key(&Key::new(vec![part.clone()]));
    match one.strip_prefix('[').and_then(|p| p.strip_suffix(']')) {
        Some(inner) => inner.to_owned(),
        None => one,
    }
}

fn encode(key: &Key, field: &str) -> Result<Vec<u8>, Box<Response>> {
    key.encode().map_err(|e| Box::new(plain(StatusCode::BAD_REQUEST, format!("{field}: {e}"))))
}

/// A JSON field that may be absent, `null` or a value: absent is `None`, `null` is
/// `Some(None)`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SetRequest {
    key: String,
    value: Json,
    /// `v8`, `bytes` or `u64`: what the typed JSON must store as (checked, so that a value
    /// meant as a counter is not silently stored as a V8 number).
    encoding: Option<String>,
    /// The versionstamp the entry must still have (`null`: it must not exist); absent, the
    /// write is unconditional.
    #[serde(default, deserialize_with = "present")]
    expect: Option<Option<String>>,
    /// Expire this many milliseconds from now; absent, the entry does not expire.
    expire_in_ms: Option<u64>,
}

fn expected(
    expect: &Option<Option<String>>,
) -> Result<Option<Option<Versionstamp>>, Box<Response>> {
    let bad = || {
        Box::new(plain(StatusCode::BAD_REQUEST, "expect: a versionstamp of 20 hex digits or null"))
    };
    match expect {
        None => Ok(None),
        Some(None) => Ok(Some(None)),
        Some(Some(hex)) => {
            let bytes = hex::decode(hex).map_err(|_| bad())?;
            Versionstamp::from_slice(&bytes).map(|v| Some(Some(v))).map_err(|_| bad())
        }
    }
}

/// The answer to a write whose check failed: 409 with the entry as it is now, for the page to
/// show beside the user's version.
async fn conflict(state: &crate::state::AppState, key: &[u8]) -> Answer {
    let now = current(state, key).await?;
    let body = json!({"conflict": true, "current": now.as_ref().map(entry_json)});
    Ok((StatusCode::CONFLICT, json_answer(body)).into_response())
}

/// `POST {base}/console/api/set`: stores a typed JSON value, with the versionstamp check.
pub(crate) async fn set(state: DbState, body: Bytes) -> Response {
    answer(
        async {
            writable(&state)?;
            let request: SetRequest = parse(&body)?;
            let key = parse_key("key", &request.key)?;
            let key_bytes = encode(&key, "key")?;
            let value = openkv::value_from_json(&request.value)
                .map_err(|e| Box::new(plain(StatusCode::BAD_REQUEST, format!("value: {e}"))))?;
            if let Some(wanted) = &request.encoding {
                let is = openkv::export::encoding_name(&value);
                if wanted != is {
                    return Err(Box::new(plain(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "value: the encoding is {wanted} but the typed JSON stores as {is} \
                         (a u64 is {{\"$kvu64\": \"7\"}}, bytes are {{\"$bytes\": \"<base64>\"}})"
                        ),
                    )));
                }
            }
            let mut op = state.kv.atomic();
            if let Some(expect) = expected(&request.expect)? {
                op = op.check(&key, expect);
            }
            op = match request.expire_in_ms {
                Some(ms) => op.set_with_expiry(&key, value, Duration::from_millis(ms)),
                None => op.set(&key, value),
            };
            match op.commit().await.map_err(|e| Box::new(engine_error(e)))? {
                CommitOutcome::Committed { versionstamp } => {
                    Ok(json_answer(json!({"versionstamp": versionstamp.to_hex()})))
                }
                _ => conflict(&state, &key_bytes).await,
            }
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteRequest {
    key: String,
    #[serde(default, deserialize_with = "present")]
    expect: Option<Option<String>>,
}

/// `POST {base}/console/api/delete`: deletes one key, with the versionstamp check.
pub(crate) async fn delete(state: DbState, body: Bytes) -> Response {
    answer(
        async {
            writable(&state)?;
            let request: DeleteRequest = parse(&body)?;
            let key = parse_key("key", &request.key)?;
            let key_bytes = encode(&key, "key")?;
            let mut op = state.kv.atomic();
            if let Some(expect) = expected(&request.expect)? {
                op = op.check(&key, expect);
            }
            match op.delete(&key).commit().await.map_err(|e| Box::new(engine_error(e)))? {
                CommitOutcome::Committed { .. } => Ok(json_answer(json!({"deleted": true}))),
                _ => conflict(&state, &key_bytes).await,
            }
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrefixRequest {
    prefix: String,
}

/// `POST {base}/console/api/count`: how many entries are under a prefix (a paged scan).
pub(crate) async fn count(state: DbState, body: Bytes) -> Response {
    answer(
        async {
            let request: PrefixRequest = parse(&body)?;
            let prefix = encoded("prefix", &request.prefix)?;
            let (start, end) = under(&prefix);
            let mut scan = ExportScan::range(&state.kv, start, end);
            let mut count = 0u64;
            while let Some(batch) =
                scan.next_batch().await.map_err(|e| Box::new(engine_error(e)))?
            {
                count += batch.len() as u64;
            }
            Ok(json_answer(json!({ "count": count })))
        }
        .await,
    )
}

/// `POST {base}/console/api/delete-prefix`: deletes every entry under a prefix, in atomic
/// batches as large as the write limits allow (the whole is not one transaction: a writer
/// adding keys meanwhile may leave some; the answer counts what was deleted).
pub(crate) async fn delete_prefix(state: DbState, body: Bytes) -> Response {
    answer(
        async {
            writable(&state)?;
            let request: PrefixRequest = parse(&body)?;
            let prefix = encoded("prefix", &request.prefix)?;
            let (start, end) = under(&prefix);
            let limits = state.kv.limits().clone();
            let page = limits.max_read_entries.min(limits.max_mutations);
            let mut deleted = 0u64;
            loop {
                let entries = read(&state, start.clone(), end.clone(), page, false).await?;
                if entries.is_empty() {
                    break;
                }
                let mut write = openkv::AtomicWrite::default();
                let mut key_bytes = 0;
                for entry in &entries {
                    if key_bytes + entry.key.len() > limits.max_total_key_size {
                        break;
                    }
                    key_bytes += entry.key.len();
                    write.mutations.push(openkv::Mutation {
                        key: entry.key.clone(),
                        kind: openkv::MutationKind::Delete,
                        expire_at_ms: None,
                    });
                }
                let n = write.mutations.len() as u64;
                state.kv.atomic_write(write).await.map_err(|e| Box::new(engine_error(e)))?;
                deleted += n;
            }
            Ok(json_answer(json!({ "deleted": deleted })))
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WatchRequest {
    #[serde(default)]
    keys: Vec<String>,
    prefix: Option<String>,
}

/// `POST {base}/console/api/watch`: an NDJSON stream. `{"entries": [...]}` (one entry or
/// `null` per key, in order) first and whenever a watched key changes; `{"prefix":
/// "changed"}` when something under the prefix may have changed (the engine's change feed;
/// re-read every [`PREFIX_POLL`] where a store has none); `{}` every [`KEEPALIVE`]. Ends at
/// shutdown. Counts as a watch stream of the token (the server's per-token limit).
pub(crate) async fn watch(state: DbState, headers: axum::http::HeaderMap, body: Bytes) -> Response {
    answer(async {
        let request: WatchRequest = parse(&body)?;
        let keys = request
            .keys
            .iter()
            .map(|k| encoded("keys", k))
            .collect::<Result<Vec<_>, _>>()?;
        let prefix = request.prefix.as_deref().map(|p| encoded("prefix", p)).transpose()?;
        let token = state.admission.token_key(presented_token(&headers));
        let slot = state.admission.watch(token)?;
        // The feed is subscribed before the first read, so that no change between the two is
        // missed.
        let feed = match &prefix {
            Some(_) => state.kv.subscribe().ok(),
            None => None,
        };
        let mut snapshots = if keys.is_empty() {
            None
        } else {
            Some(state.kv.watch_encoded(keys).map_err(|e| Box::new(engine_error(e)))?)
        };
        let first = match &mut snapshots {
            Some(s) => match s.next().await {
                Some(Ok(first)) => Some(first),
                Some(Err(e)) => return Err(Box::new(engine_error(e))),
                None => return Err(Box::new(engine_error(openkv::Error::Closed))),
            },
            None => None,
        };
        let follower = Follower {
            snapshots,
            feed,
            prefix: prefix.map(|p| under(&p)),
            last_poll: None,
            stopping: state.stopping.clone(),
            state: state.0.clone(),
            _slot: slot,
        };
        let first_line = match first {
            Some(first) => line(&json!({"entries": first.iter().map(|e| e.as_ref().map(entry_json)).collect::<Vec<_>>()})),
            None => line(&json!({})),
        };
        let stream = futures::stream::once(async move { Ok::<_, std::convert::Infallible>(first_line) })
            .chain(futures::stream::unfold(follower, |mut f| async move {
                let next = f.next_line().await?;
                Some((Ok(next), f))
            }));
        Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(stream))
            .into_response())
    }
    .await)
}

fn line(value: &Json) -> Bytes {
    let mut text = value.to_string();
    text.push('\n');
    Bytes::from(text)
}

struct Follower {
    snapshots: Option<openkv::WatchSnapshots>,
    feed: Option<tokio::sync::broadcast::Receiver<openkv::ChangeEvent>>,
    /// The range under the watched prefix.
    prefix: Option<(Vec<u8>, Vec<u8>)>,
    /// Without a feed: the newest versionstamp and count of the prefix's first page last seen.
    last_poll: Option<(Versionstamp, usize)>,
    stopping: tokio::sync::watch::Receiver<bool>,
    state: std::sync::Arc<crate::state::AppState>,
    _slot: crate::limits::WatchSlot,
}

impl Follower {
    async fn next_line(&mut self) -> Option<Bytes> {
        let Follower { snapshots, feed, prefix, last_poll, stopping, state, .. } = self;
        loop {
            if *stopping.borrow() {
                return None;
            }
            let keys = async {
                match snapshots {
                    Some(s) => s.next().await,
                    None => std::future::pending().await,
                }
            };
            let prefix_changed = Self::prefix_changed(feed, prefix, last_poll, state);
            tokio::select! {
                _ = stopping.changed() => return None,
                _ = tokio::time::sleep(KEEPALIVE) => return Some(line(&json!({}))),
                snapshot = keys => match snapshot? {
                    Ok(s) => {
                        let entries: Vec<Json> =
                            s.iter().map(|e| e.as_ref().map_or(Json::Null, entry_json)).collect();
                        return Some(line(&json!({ "entries": entries })));
                    }
                    Err(e) => {
                        tracing::warn!("console watch: a read failed, ending: {e}");
                        return None;
                    }
                },
                changed = prefix_changed => match changed {
                    Some(true) => return Some(line(&json!({"prefix": "changed"}))),
                    Some(false) => continue,
                    None => return None,
                },
            }
        }
    }

    /// Waits for the next sign of a change under the prefix: `Some(true)` a change (or a
    /// possible one), `Some(false)` nothing after all, `None` the store is gone. Pending
    /// forever without a prefix.
    async fn prefix_changed(
        feed: &mut Option<tokio::sync::broadcast::Receiver<openkv::ChangeEvent>>,
        prefix: &Option<(Vec<u8>, Vec<u8>)>,
        last_poll: &mut Option<(Versionstamp, usize)>,
        state: &crate::state::AppState,
    ) -> Option<bool> {
        let Some((start, end)) = prefix else { return std::future::pending().await };
        match feed {
            Some(feed) => match feed.recv().await {
                Ok(event) => {
                    Some(event.keys.is_empty() || event.keys.iter().any(|k| k >= start && k < end))
                }
                // Changes were missed: any of them may have been under the prefix.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Some(true),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => None,
            },
            None => {
                tokio::time::sleep(PREFIX_POLL).await;
                let entries =
                    read(state, start.clone(), end.clone(), DEFAULT_PAGE, false).await.ok()?;
                let seen = (
                    entries.iter().map(|e| e.versionstamp).max().unwrap_or(Versionstamp::ZERO),
                    entries.len(),
                );
                let changed = last_poll.is_some_and(|last| last != seen);
                *last_poll = Some(seen);
                Some(changed)
            }
        }
    }
}
