//! openkv's own extensions of KV Connect (docs/protocol-extensions.md): the queue endpoints'
//! and the replication log request's JSON bodies, both ways, and the replication stream's
//! protobuf framing as a replica reads it.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use openkv::changelog::check_chain;
use openkv::{AtomicWrite, Enqueue, Kv, QueuedMessage};
use openkv_proto::queue::{
    FinishRequest, RenewRequest, TakeRequest, TakeResponse, TakenMessage, WaitRequest,
    WaitResponse, LEASE_RANGE_MS, MAX_TAKE, MAX_WAIT_MS,
};
use openkv_proto::replication::{
    change_from_wire, change_to_wire, header_frame, header_from_wire, next_frame, record_from_wire,
    record_to_wire, GoneBody, LogBatch, LogRequest, StatusResponse, MAX_LOG_BYTES,
};
use openkv_remote::fuzzing::queue_take_answer;
use prost::Message;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::shared::{assert_client_error, block_on, memory_kv, NOW_MS};

/// Target `extension_json`: a JSON body of openkv's extensions, read as every message it could
/// be — the requests a server takes (queue `take`, `wait`, `renew`, `finish`; replication
/// `log`) and the answers a client takes (`take`'s messages, `wait`'s, the replication `410`
/// body and `status`). What parses serializes and parses back to the same message. A request
/// within the server's bounds runs on a database with two due queue messages (`take`,
/// `renew` and `finish`: `wait` only waits, and `log` needs a change log); a refusal is the
/// client's mistake, and `take`'s answer, as the server sends it, is what the client reads.
pub fn extension_json(data: &[u8]) {
    if let Some(take) = round_trip::<TakeRequest>(data) {
        if (1..=MAX_TAKE).contains(&take.max) && LEASE_RANGE_MS.contains(&take.lease_ms) {
            queue_take(take);
        }
    }
    if let Some(wait) = round_trip::<WaitRequest>(data) {
        let _within_bounds = wait.timeout_ms <= MAX_WAIT_MS;
    }
    if let Some(renew) = round_trip::<RenewRequest>(data) {
        if renew.ids.len() <= MAX_TAKE * 10 && LEASE_RANGE_MS.contains(&renew.lease_ms) {
            queue_renew(renew);
        }
    }
    if let Some(finish) = round_trip::<FinishRequest>(data) {
        if finish.results.len() <= MAX_TAKE * 10 {
            queue_finish(finish);
        }
    }
    if let Some(log) = round_trip::<LogRequest>(data) {
        let _within_bounds = log.wait_ms <= MAX_WAIT_MS && log.max_bytes <= MAX_LOG_BYTES;
    }
    if let Ok(messages) = queue_take_answer(data) {
        let again = serde_json::to_vec(&take_response(&messages)).expect("JSON of our own");
        let back = queue_take_answer(&again).expect("our own take answer reads back");
        assert_eq!(summary(&back), summary(&messages));
    }
    round_trip::<WaitResponse>(data);
    if let Some(gone) = round_trip::<GoneBody>(data) {
        let why = gone.to_gone();
        assert_eq!(GoneBody::new(&why).to_gone(), why, "{gone:?}");
    }
    round_trip::<StatusResponse>(data);
}

/// Parses `data` as a `T`; what parses must serialize and parse back to itself.
fn round_trip<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(
    data: &[u8],
) -> Option<T> {
    let value: T = serde_json::from_slice(data).ok()?;
    let json = serde_json::to_vec(&value).expect("JSON of our own");
    let back: T = serde_json::from_slice(&json)
        .unwrap_or_else(|e| panic!("{value:?} as JSON does not read back: {e}"));
    assert_eq!(back, value);
    Some(value)
}

/// A database with two due messages: one without retries, one with a retry and a dead-letter
/// key, so that a failed attempt takes each path of the finish rule.
fn kv_with_messages() -> Kv {
    let kv = memory_kv();
    let message = |backoff_schedule: Vec<u32>, dead: &[u8]| Enqueue {
        payload: vec![0xff, 0x0f, 0x49, 0x02],
        deadline_ms: NOW_MS,
        keys_if_undelivered: vec![dead.to_vec()],
        backoff_schedule: Some(backoff_schedule),
    };
    let write = AtomicWrite {
        enqueues: vec![message(vec![], b"\x02dead\x00"), message(vec![1000], b"\x02dead2\x00")],
        ..AtomicWrite::default()
    };
    block_on(kv.atomic_write(write)).expect("the messages are enqueued");
    kv
}

/// What the client keeps of a message (a remote listener has no schedule or dead-letter keys).
fn summary(messages: &[QueuedMessage]) -> Vec<(&str, &[u8], i64, u32)> {
    messages.iter().map(|m| (m.id.as_str(), m.payload.as_slice(), m.due_ms, m.attempt)).collect()
}

/// `take`'s answer as the server writes it (`openkv-server`'s `queues.rs`).
fn take_response(messages: &[QueuedMessage]) -> TakeResponse {
    TakeResponse {
        messages: messages
            .iter()
            .map(|m| TakenMessage {
                payload: BASE64.encode(&m.payload),
                id: m.id.clone(),
                due_ms: m.due_ms,
                attempt: m.attempt,
            })
            .collect(),
    }
}

fn queue_take(take: TakeRequest) {
    let kv = kv_with_messages();
    match block_on(kv.queue_take(take.max, Duration::from_millis(take.lease_ms))) {
        Ok(messages) => {
            assert!(messages.len() <= take.max, "{} messages for max {}", messages.len(), take.max);
            let answer = serde_json::to_vec(&take_response(&messages)).expect("JSON of our own");
            let seen = queue_take_answer(&answer)
                .unwrap_or_else(|e| panic!("the client refuses the server's take answer: {e}"));
            assert_eq!(summary(&seen), summary(&messages));
        }
        Err(e) => assert_client_error("queue take", &e),
    }
}

fn queue_renew(renew: RenewRequest) {
    let kv = kv_with_messages();
    let lease = Duration::from_millis(renew.lease_ms);
    block_on(async {
        let taken = kv.queue_take(MAX_TAKE, lease).await.expect("a take within the bounds");
        // The request's ids, and the messages really taken.
        let ids = renew.ids.into_iter().chain(taken.into_iter().map(|m| m.id)).collect();
        if let Err(e) = kv.queue_renew(ids, lease).await {
            assert_client_error("queue renew", &e);
        }
    });
}

fn queue_finish(finish: FinishRequest) {
    let kv = kv_with_messages();
    block_on(async {
        let taken = kv.queue_take(MAX_TAKE, Duration::from_secs(30)).await.expect("a take");
        // The request's outcomes, and as many for the messages really taken, with the
        // request's verdicts.
        let mut outcomes: Vec<(String, bool)> =
            finish.results.iter().map(|r| (r.id.clone(), r.delivered)).collect();
        outcomes.extend(taken.into_iter().zip(&finish.results).map(|(m, r)| (m.id, r.delivered)));
        if let Err(e) = kv.queue_finish(outcomes).await {
            assert_client_error("queue finish", &e);
        }
    });
}

/// Target `replication_stream`: what a read replica reads from its primary. The first byte
/// picks (`% 2`): 0 a `log` answer (a protobuf `LogBatch`), 1 a snapshot stream (frames: a
/// `u32` little-endian length, then a `SnapshotFrame`). A replica takes records that move
/// forward, and a snapshot only with its header first, no deletions, and an end marker that
/// counts its entries; what it takes maps back to the same wire messages.
pub fn replication_stream(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else { return };
    if which % 2 == 0 {
        log_batch(body);
    } else {
        snapshot_stream(body);
    }
}

fn log_batch(body: &[u8]) {
    let Ok(batch) = LogBatch::decode(body) else { return };
    let Ok(records) =
        batch.records.into_iter().map(record_from_wire).collect::<Result<Vec<_>, _>>()
    else {
        return;
    };
    for r in &records {
        assert!(r.version > r.prev_version, "a record moves forward: {r:?}");
        assert_eq!(record_from_wire(record_to_wire(r)).ok().as_ref(), Some(r));
    }
    if let Some(first) = records.first() {
        // The follower's rule: records chain from its position (here, the first's start).
        let _ = check_chain(first.prev_version, &records);
    }
}

/// The replica's reading of a snapshot stream (`openkv-remote`'s `replica.rs`), from pieces
/// it shares: the entries it would install, or `None` where it refuses the stream.
fn snapshot_stream(body: &[u8]) {
    let mut buffer = body.to_vec();
    let Ok(Some(first)) = next_frame(&mut buffer) else { return };
    let Some(wire_header) = first.header else { return };
    let database_id = wire_header.database_id.clone();
    let header = header_from_wire(wire_header);
    let again = header_frame(&header, &database_id).header.expect("a header frame has one");
    assert_eq!(header_from_wire(again), header);
    let mut count = 0u64;
    loop {
        let Ok(Some(frame)) = next_frame(&mut buffer) else { return };
        if let Some(end) = frame.end {
            let _complete = end.entries == count;
            return;
        }
        for change in frame.entries {
            match change_from_wire(change) {
                Ok((key, Some(row))) => {
                    let back = change_from_wire(change_to_wire(&key, Some(&row)))
                        .expect("our own change reads back");
                    assert_eq!(back, (key, Some(row)));
                    count += 1;
                }
                Ok((_, None)) | Err(_) => return,
            }
        }
    }
}
