//! The requests clients send, in one small language every path understands: a snapshot read
//! of key ranges, or a commit of checks and sets. The same [`Request`] runs on an in-process
//! [`Kv`] (the KV Connect client, or an embedded file) and crosses a pipe to an embedded
//! worker process as a JSON line, so every topology runs the very same workloads.

use std::future::Future;
use std::pin::Pin;

use openkv::{Consistency, ErrorClass, Key, Kv, KvU64, ReadRange, Value, Versionstamp};
use serde::{Deserialize, Serialize};

/// A stored value, as the workloads use them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Val {
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// A `KvU64`.
    U64(u64),
}

/// A range of encoded keys, `[start, end)`, at most `limit` entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    /// Inclusive start.
    pub start: Vec<u8>,
    /// Exclusive end.
    pub end: Vec<u8>,
    /// Most entries returned.
    pub limit: u32,
}

impl Range {
    /// The range holding exactly `key` (its encoding, up to the next possible key).
    pub fn point(key: &[u8]) -> Range {
        let mut end = key.to_vec();
        end.push(0);
        Range { start: key.to_vec(), end, limit: 1 }
    }

    /// Every key under `prefix` (Deno's prefix selector: `prefix 00 .. prefix ff`).
    pub fn prefix(prefix: &[u8], limit: u32) -> Range {
        let mut start = prefix.to_vec();
        start.push(0);
        let mut end = prefix.to_vec();
        end.push(0xff);
        Range { start, end, limit }
    }
}

/// An entry read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Got {
    /// The encoded key.
    pub key: Vec<u8>,
    /// Its value.
    pub value: Val,
    /// The versionstamp of the commit that wrote it.
    pub versionstamp: [u8; 10],
}

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// One snapshot over several ranges.
    Read {
        /// The ranges, read at one point in time.
        ranges: Vec<Range>,
        /// An eventual read (a replica may answer) rather than a strong one.
        eventual: bool,
    },
    /// An atomic commit: every check holds and then every set applies, or nothing does.
    Commit {
        /// (encoded key, the versionstamp it must have; `None`: it must be absent).
        checks: Vec<(Vec<u8>, Option<[u8; 10]>)>,
        /// (encoded key, value).
        sets: Vec<(Vec<u8>, Val)>,
    },
    /// Enqueue a message (a string) in a commit of its own.
    Enqueue {
        /// The message.
        message: String,
        /// Its backoff schedule, in milliseconds (its length is the number of retries).
        backoff_ms: Vec<u64>,
        /// The encoded key that receives the message if every attempt fails.
        dead_letter: Vec<u8>,
    },
}

/// What came back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The entries of each range.
    Read(Vec<Vec<Got>>),
    /// The commit applied, with this versionstamp.
    Committed([u8; 10]),
    /// A check failed: nothing applied.
    CheckFailed,
}

/// Why a request did not succeed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpError {
    /// It definitely had no effect.
    Failed(String),
    /// It may have had an effect (a commit whose answer was lost).
    Unknown(String),
}

/// A boxed future, for the object-safe [`Exec`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Something that runs requests: a [`Kv`] handle, a worker process, a deliberately broken
/// wrapper ([`crate::bugs`]).
pub trait Exec: Send + Sync {
    /// Runs `request`.
    fn exec(&self, request: Request) -> BoxFuture<'_, Result<Response, OpError>>;
}

impl Exec for Kv {
    fn exec(&self, request: Request) -> BoxFuture<'_, Result<Response, OpError>> {
        Box::pin(execute(self, request))
    }
}

/// Runs `request` on `kv`.
pub async fn execute(kv: &Kv, request: Request) -> Result<Response, OpError> {
    match request {
        Request::Read { ranges, eventual } => {
            let ranges = ranges
                .into_iter()
                .map(|r| ReadRange { start: r.start, end: r.end, limit: r.limit, reverse: false })
                .collect();
            let consistency = if eventual { Consistency::Eventual } else { Consistency::Strong };
            // A read has no effect: whatever went wrong, it did not happen.
            let out = kv
                .snapshot_read(ranges, consistency)
                .await
                .map_err(|e| OpError::Failed(e.to_string()))?;
            let mut result = Vec::with_capacity(out.len());
            for entries in out {
                let mut got = Vec::with_capacity(entries.len());
                for e in entries {
                    let value = match e.value {
                        Value::U64(n) => Val::U64(n),
                        Value::Bytes(b) => Val::Bytes(b),
                        Value::V8(b) => Val::Bytes(b),
                    };
                    got.push(Got { key: e.key, value, versionstamp: *e.versionstamp.as_bytes() });
                }
                result.push(got);
            }
            Ok(Response::Read(result))
        }
        Request::Commit { checks, sets } => {
            let mut op = kv.atomic();
            for (key, stamp) in &checks {
                op = op.check(&decode_key(key)?, stamp.map(Versionstamp));
            }
            for (key, value) in &sets {
                let key = decode_key(key)?;
                op = match value {
                    Val::Bytes(b) => op.set(&key, Value::Bytes(b.clone())),
                    Val::U64(n) => op.set(&key, KvU64(*n)),
                };
            }
            committed(op.commit().await)
        }
        Request::Enqueue { message, backoff_ms, dead_letter } => {
            let options = openkv::EnqueueOptions::new()
                .backoff_schedule(backoff_ms.iter().map(|ms| std::time::Duration::from_millis(*ms)))
                .keys_if_undelivered([decode_key(&dead_letter)?]);
            committed(kv.atomic().enqueue(&message, &options).commit().await)
        }
    }
}

/// A commit's answer.
fn committed(result: openkv::Result<openkv::CommitOutcome>) -> Result<Response, OpError> {
    match result {
        Ok(outcome) => Ok(match outcome.versionstamp() {
            Some(stamp) => Response::Committed(*stamp.as_bytes()),
            None => Response::CheckFailed,
        }),
        Err(e) => Err(classify_write_error(&e)),
    }
}

/// A failed commit is "definitely not applied" only for the classes whose contract says so;
/// everything else may have reached the disk. (`ErrorClass` is non-exhaustive: a class added
/// later is treated as unknown, the safe reading.)
fn classify_write_error(e: &openkv::Error) -> OpError {
    let msg = e.to_string();
    match e.class() {
        ErrorClass::Client | ErrorClass::Transient | ErrorClass::Poisoned | ErrorClass::Closed => {
            OpError::Failed(msg)
        }
        _ => OpError::Unknown(msg),
    }
}

fn decode_key(bytes: &[u8]) -> Result<Key, OpError> {
    Key::decode(bytes).map_err(|e| OpError::Failed(format!("bad key in request: {e}")))
}

/// The encoding of a key made of string and integer parts (the workloads' keys).
pub fn key(parts: &[Part<'_>]) -> Vec<u8> {
    let key: Key = parts
        .iter()
        .map(|p| match p {
            Part::S(s) => openkv::KeyPart::from(*s),
            Part::I(i) => openkv::KeyPart::from(*i),
        })
        .collect();
    // Strings and small integers always encode.
    key.encode().unwrap_or_default()
}

/// A part of a workload key.
#[derive(Clone, Copy, Debug)]
pub enum Part<'a> {
    /// A string.
    S(&'a str),
    /// An integer (a bigint in Deno's terms).
    I(i64),
}
