//! KV Connect requests as a server decodes them (`openkv serve`'s `datapath.rs`, `watch.rs`):
//! the protobuf body, the wire mapping (`openkv_proto::convert`), then `Kv`'s validation and
//! the engine on a small database — what a request from the network reaches.

use futures::StreamExt;
use openkv::Consistency;
use openkv_proto::convert::{
    outcome_to_wire, read_from_wire, read_output_to_wire, read_to_wire, watch_from_wire,
    write_from_wire, write_to_wire,
};
use openkv_remote::fuzzing::{atomic_write_answer, snapshot_read_answer, watch_answer};
use prost::Message;

use crate::shared::{assert_client_error, block_on, frame_of, memory_kv, without_expiry};

/// Target `kv_connect_request`: a request body from a KV Connect client. The first byte picks
/// the endpoint (`% 3`): 0 `snapshot_read` (`SnapshotRead`), 1 `atomic_write`
/// (`AtomicWrite`), 2 `watch` (`Watch`); the rest is the body.
///
/// What the wire mapping accepts maps back to the same message; the engine's refusal is the
/// client's mistake (4xx); and the server's answer passes the client's own checks of answers
/// (`openkv-remote`), decoding to what the server meant.
pub fn kv_connect_request(data: &[u8]) {
    let Some((&endpoint, body)) = data.split_first() else { return };
    match endpoint % 3 {
        0 => snapshot_read(body),
        1 => atomic_write(body),
        _ => watch(body),
    }
}

fn snapshot_read(body: &[u8]) {
    let Ok(request) = openkv_proto::SnapshotRead::decode(body) else { return };
    let Ok(ranges) = read_from_wire(request) else { return };
    assert_eq!(read_from_wire(read_to_wire(&ranges)).as_ref(), Ok(&ranges));
    let kv = memory_kv();
    match block_on(kv.snapshot_read(ranges.clone(), Consistency::Strong)) {
        Ok(results) => {
            let answer = read_output_to_wire(results.clone()).encode_to_vec();
            let seen = snapshot_read_answer(&ranges, &answer, 3, true)
                .unwrap_or_else(|e| panic!("the client refuses the server's answer: {e}"));
            let sent: Vec<Vec<_>> =
                results.iter().map(|r| r.iter().map(without_expiry).collect()).collect();
            assert_eq!(seen, sent);
        }
        Err(e) => assert_client_error("snapshot_read", &e),
    }
}

fn atomic_write(body: &[u8]) {
    let Ok(request) = openkv_proto::AtomicWrite::decode(body) else { return };
    let Ok(write) = write_from_wire(request) else { return };
    assert_eq!(write_from_wire(write_to_wire(&write)).as_ref(), Ok(&write));
    let kv = memory_kv();
    match block_on(kv.atomic_write(write.clone())) {
        Ok(outcome) => {
            let answer = outcome_to_wire(outcome.clone()).encode_to_vec();
            let seen = atomic_write_answer(&write, &answer)
                .unwrap_or_else(|e| panic!("the client refuses the server's answer: {e}"));
            assert_eq!(seen, outcome);
        }
        Err(e) => assert_client_error("atomic_write", &e),
    }
}

fn watch(body: &[u8]) {
    let Ok(request) = openkv_proto::Watch::decode(body) else { return };
    let kv = memory_kv();
    // The server's own checks before `watch_encoded`: too many keys is a 400 of its own, no
    // key at all a stream of empty frames.
    if request.keys.len() > kv.limits().max_watched_keys || request.keys.is_empty() {
        return;
    }
    let keys = watch_from_wire(request);
    // Inside the runtime: a watch follows the change feed from a task.
    let first = block_on(async {
        let mut snapshots = match kv.watch_encoded(keys.clone()) {
            Ok(snapshots) => snapshots,
            Err(e) => return Err(("watch", e)),
        };
        match snapshots.next().await {
            Some(Ok(first)) => Ok(first),
            Some(Err(e)) => Err(("watch's first read", e)),
            None => panic!("a watch of an open database ended at once"),
        }
    });
    let first = match first {
        Ok(first) => first,
        Err((what, e)) => return assert_client_error(what, &e),
    };
    assert_eq!(first.len(), keys.len(), "one state per watched key");
    let stream = frame_of(&first);
    let seen = watch_answer(&keys, [stream.as_slice()]);
    let sent: Vec<_> = first.iter().map(|e| e.as_ref().map(without_expiry)).collect();
    match seen.as_slice() {
        [Ok(state)] => assert_eq!(state, &sent),
        other => panic!("the client takes the server's frame as {other:?}"),
    }
}
