//! What the checks share: a runtime, a small database to run requests against, and the rule
//! for errors a peer's input may cause.

use std::future::Future;
use std::sync::Arc;

use openkv::{
    key, AtomicWrite, Error, ErrorClass, Kv, ManualClock, Mutation, MutationKind, OpenOptions,
    RawEntry, Value,
};
use openkv_memory::MemoryBackend;
use prost::Message;

/// The time every check's database stands at (a [`ManualClock`]): expiry and queue due times
/// are the same on every run, so a crash replays.
pub(crate) const NOW_MS: i64 = 1_700_000_000_000;

/// Runs `future` to its end on this thread's runtime (one per thread, made once: a runtime
/// per input would cost more than most checks).
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
    }
    RUNTIME.with(|runtime| runtime.block_on(future))
}

/// A V8 value's bytes: `ff 0f` (version 15) and the tag's body.
fn v8(body: &[u8]) -> Value {
    let mut bytes = vec![0xff, 0x0f];
    bytes.extend_from_slice(body);
    Value::V8(bytes)
}

/// The entries of [`memory_kv`]'s database: one of each kind a mutation may meet — a V8
/// number, bigint and string, a `KvU64`, bytes — under the keys `["a"]` … `["f"]`, and
/// `["x"]`, which expires a second after [`NOW_MS`].
pub(crate) fn seed_entries() -> Vec<(Vec<u8>, Value, Option<i64>)> {
    let k = |name: &str| key![name].encode().expect("a short key encodes");
    vec![
        (k("a"), v8(&[0x49, 0x02]), None), // the number 1 (a Smi)
        (k("b"), Value::U64(5), None),     // KvU64 5
        (k("c"), Value::Bytes(b"xyz".to_vec()), None), // a Uint8Array
        (k("d"), v8(&[0x5a, 0x10, 0x0a, 0, 0, 0, 0, 0, 0, 0]), None), // 10n
        (k("e"), v8(&[0x4e, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f]), None), // 1.5
        (k("f"), v8(&[0x22, 0x01, b's']), None), // "s"
        (k("x"), Value::U64(1), Some(NOW_MS + 1000)),
    ]
}

/// A fresh in-memory database (`openkv-memory`: the engine every backend shares, without
/// disk) holding [`seed_entries`], behind a [`Kv`] — so requests pass `Kv`'s validation, as
/// the server's do — with the clock at [`NOW_MS`].
pub(crate) fn memory_kv() -> Kv {
    let clock = ManualClock::new(NOW_MS);
    let backend = MemoryBackend::new(Arc::new(clock.clone()));
    let kv = OpenOptions::new().clock(clock).with_backend(Arc::new(backend));
    let mutations = seed_entries()
        .into_iter()
        .map(|(key, value, expire_at_ms)| Mutation {
            key,
            kind: MutationKind::Set(value),
            expire_at_ms,
        })
        .collect();
    let write = AtomicWrite { mutations, ..AtomicWrite::default() };
    block_on(kv.atomic_write(write)).expect("the seed entries are written");
    kv
}

/// An error a peer's request caused must be the request's fault (a 4xx), never a failure of
/// the server (a 5xx for a request that cannot succeed is a bug: in the engine, or in what the
/// server let through).
pub(crate) fn assert_client_error(what: &str, e: &Error) {
    assert_eq!(e.class(), ErrorClass::Client, "{what}: {e:?} is not the client's mistake");
}

/// An entry as KV Connect carries it: no expiry (the wire has none).
pub(crate) fn without_expiry(entry: &RawEntry) -> RawEntry {
    RawEntry { expire_at_ms: None, ..entry.clone() }
}

/// A whole state as one length-prefixed watch frame, every key marked changed: what
/// `openkv-server`'s `snapshot_frame` sends first on a watch stream.
pub(crate) fn frame_of(state: &[Option<RawEntry>]) -> Vec<u8> {
    let message = openkv_proto::WatchOutput {
        status: openkv_proto::SnapshotReadStatus::SrSuccess as i32,
        keys: state
            .iter()
            .map(|e| openkv_proto::WatchKeyOutput {
                changed: true,
                entry_if_changed: e.clone().map(openkv_proto::convert::entry_to_wire),
            })
            .collect(),
    }
    .encode_to_vec();
    let mut out = (message.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&message);
    out
}
