//! KV Connect answers as the client decodes them (`openkv-remote`): a malicious or broken
//! server is a peer too, and nothing it sends may make the client panic or hand its caller an
//! answer to another question.

use openkv::{AtomicWrite, Check, CommitOutcome, Mutation, MutationKind, ReadRange, Value};
use openkv_proto::convert::{outcome_to_wire, read_output_to_wire};
use openkv_remote::fuzzing::{
    atomic_write_answer, metadata_answer, snapshot_read_answer, watch_answer,
};
use prost::Message;

use crate::shared::{frame_of, NOW_MS};

/// The URL the fuzzed metadata answers come from.
const SERVER_URL: &str = "http://db.example:4512/kv/";

/// Target `kv_connect_answer`: a server's answer, as the client decodes it. The first byte
/// picks the question (`% 4`): 0 the metadata exchange (JSON), 1 a `snapshot_read`, 2 an
/// `atomic_write`, 3 a `/watch` stream; its next bits pick the protocol version (`>> 2 & 3`,
/// read as 1–3), whether the read went to the strong endpoint (`& 0x10`), and for a watch the
/// size of the network chunks the stream arrives in (`>> 4`, 1–16 bytes; 0: all at once).
/// The questions are fixed: two ranges read, two checks written, two keys watched.
///
/// An accepted answer answers the question asked (one list per range, within its range and
/// limit; failed checks that exist; one state per watched key, of that key), and re-encoded
/// it is accepted as the same answer.
pub fn kv_connect_answer(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else { return };
    let version = 1 + u32::from(selector >> 2 & 3) % 3;
    match selector % 4 {
        0 => metadata(body),
        1 => snapshot_read(body, version, selector & 0x10 != 0),
        2 => atomic_write(body),
        _ => watch(body, usize::from(selector >> 4)),
    }
}

fn metadata(body: &[u8]) {
    let Ok(metadata) = metadata_answer(SERVER_URL, NOW_MS, body) else { return };
    assert!((1..=3).contains(&metadata.version), "{metadata:?}");
    for endpoint in std::iter::once(&metadata.strong).chain(&metadata.eventual) {
        assert!(!endpoint.ends_with('/'), "{endpoint}: endpoints are kept without a final /");
    }
}

/// The question of every fuzzed read answer.
fn read_request() -> Vec<ReadRange> {
    vec![
        ReadRange {
            start: b"\x02a\x00".to_vec(),
            end: b"\x02c\x00".to_vec(),
            limit: 2,
            reverse: false,
        },
        ReadRange { start: Vec::new(), end: vec![0xff], limit: 10, reverse: true },
    ]
}

fn snapshot_read(body: &[u8], version: u32, strong: bool) {
    let request = read_request();
    let Ok(answer) = snapshot_read_answer(&request, body, version, strong) else { return };
    assert_eq!(answer.len(), request.len(), "one list per range");
    for (range, entries) in request.iter().zip(&answer) {
        assert!(entries.len() <= range.limit as usize, "within the limit");
        for e in entries {
            assert!(range.start <= e.key && e.key < range.end, "{:?} outside {range:?}", e.key);
        }
    }
    let again = read_output_to_wire(answer.clone()).encode_to_vec();
    let back = snapshot_read_answer(&request, &again, 3, true)
        .unwrap_or_else(|e| panic!("an accepted answer, re-encoded, is refused: {e}"));
    assert_eq!(back, answer);
}

/// The question of every fuzzed write answer: two checks (so failed checks 0 and 1 exist).
fn write_request() -> AtomicWrite {
    AtomicWrite {
        checks: vec![
            Check { key: b"\x02a\x00".to_vec(), versionstamp: None },
            Check { key: b"\x02b\x00".to_vec(), versionstamp: None },
        ],
        mutations: vec![Mutation {
            key: b"\x02a\x00".to_vec(),
            kind: MutationKind::Set(Value::U64(1)),
            expire_at_ms: None,
        }],
        ..AtomicWrite::default()
    }
}

fn atomic_write(body: &[u8]) {
    let write = write_request();
    let Ok(outcome) = atomic_write_answer(&write, body) else { return };
    if let CommitOutcome::CheckFailed { failed_checks } = &outcome {
        assert!(failed_checks.iter().all(|&i| (i as usize) < write.checks.len()), "{outcome:?}");
    }
    let again = outcome_to_wire(outcome.clone()).encode_to_vec();
    assert_eq!(atomic_write_answer(&write, &again).as_ref().ok(), Some(&outcome));
}

/// The keys of every fuzzed watch stream.
fn watched_keys() -> Vec<Vec<u8>> {
    vec![b"\x02a\x00".to_vec(), b"\x02b\x00".to_vec()]
}

fn watch(body: &[u8], chunk: usize) {
    let keys = watched_keys();
    let states = if chunk == 0 {
        watch_answer(&keys, [body])
    } else {
        watch_answer(&keys, body.chunks(chunk))
    };
    for state in states.iter().flatten() {
        assert_eq!(state.len(), keys.len(), "one state per watched key");
        for (key, entry) in keys.iter().zip(state) {
            assert!(entry.as_ref().is_none_or(|e| &e.key == key), "an entry of its own key");
        }
        // The state, sent as a server sends it, is read back as itself.
        let frame = frame_of(state);
        match watch_answer(&keys, [frame.as_slice()]).as_slice() {
            [Ok(back)] => assert_eq!(back, state),
            other => panic!("an accepted state, re-encoded, reads as {other:?}"),
        }
    }
}
