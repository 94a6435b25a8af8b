//! The KV Connect data-path messages (`com.deno.kv.datapath`, proto3), written from the
//! protocol's published field list (shared/spec/KV-CONNECT.md §3) as `prost` derives, so no
//! `protoc` is needed to build. Field numbers are the wire contract: never renumber.
//!
//! Besides the messages, this crate is openkv's **one wire layer**: [`convert`] maps the
//! engine's vocabulary (`openkv-core`) to these messages and back, and [`queue`] holds the
//! JSON messages and bounds of openkv's queue extension (docs/protocol-extensions.md). The
//! server (`openkv-server`) and the client (`openkv-remote`) both use them, so each mapping and
//! each bound is written once and round-trip tested here.

#![deny(unsafe_code)]
#![allow(missing_docs)]

pub mod backup;
pub mod convert;
pub mod queue;
pub mod replication;

#[derive(Clone, PartialEq, prost::Message)]
pub struct SnapshotRead {
    #[prost(message, repeated, tag = "1")]
    pub ranges: Vec<ReadRange>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadRange {
    #[prost(bytes = "vec", tag = "1")]
    pub start: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub end: Vec<u8>,
    #[prost(int32, tag = "3")]
    pub limit: i32,
    #[prost(bool, tag = "4")]
    pub reverse: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SnapshotReadOutput {
    #[prost(message, repeated, tag = "1")]
    pub ranges: Vec<ReadRangeOutput>,
    #[prost(bool, tag = "2")]
    pub read_disabled: bool,
    #[prost(bool, tag = "4")]
    pub read_is_strongly_consistent: bool,
    #[prost(enumeration = "SnapshotReadStatus", tag = "8")]
    pub status: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadRangeOutput {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<KvEntry>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SnapshotReadStatus {
    SrUnspecified = 0,
    SrSuccess = 1,
    SrReadDisabled = 2,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AtomicWrite {
    #[prost(message, repeated, tag = "1")]
    pub checks: Vec<Check>,
    #[prost(message, repeated, tag = "2")]
    pub mutations: Vec<Mutation>,
    #[prost(message, repeated, tag = "3")]
    pub enqueues: Vec<Enqueue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AtomicWriteOutput {
    #[prost(enumeration = "AtomicWriteStatus", tag = "1")]
    pub status: i32,
    #[prost(bytes = "vec", tag = "2")]
    pub versionstamp: Vec<u8>,
    #[prost(uint32, repeated, tag = "4")]
    pub failed_checks: Vec<u32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Check {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub versionstamp: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Mutation {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(message, optional, tag = "2")]
    pub value: Option<KvValue>,
    #[prost(enumeration = "MutationType", tag = "3")]
    pub mutation_type: i32,
    #[prost(int64, tag = "4")]
    pub expire_at_ms: i64,
    #[prost(bytes = "vec", tag = "5")]
    pub sum_min: Vec<u8>,
    #[prost(bytes = "vec", tag = "6")]
    pub sum_max: Vec<u8>,
    #[prost(bool, tag = "7")]
    pub sum_clamp: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct KvValue {
    #[prost(bytes = "vec", tag = "1")]
    pub data: Vec<u8>,
    #[prost(enumeration = "ValueEncoding", tag = "2")]
    pub encoding: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct KvEntry {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
    #[prost(enumeration = "ValueEncoding", tag = "3")]
    pub encoding: i32,
    #[prost(bytes = "vec", tag = "4")]
    pub versionstamp: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MutationType {
    MUnspecified = 0,
    MSet = 1,
    MDelete = 2,
    MSum = 3,
    MMax = 4,
    MMin = 5,
    MSetSuffixVersionstampedKey = 9,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ValueEncoding {
    VeUnspecified = 0,
    VeV8 = 1,
    VeLe64 = 2,
    VeBytes = 3,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum AtomicWriteStatus {
    AwUnspecified = 0,
    AwSuccess = 1,
    AwCheckFailure = 2,
    AwWriteDisabled = 5,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Enqueue {
    #[prost(bytes = "vec", tag = "1")]
    pub payload: Vec<u8>,
    #[prost(int64, tag = "2")]
    pub deadline_ms: i64,
    #[prost(bytes = "vec", repeated, tag = "3")]
    pub keys_if_undelivered: Vec<Vec<u8>>,
    #[prost(uint32, repeated, tag = "4")]
    pub backoff_schedule: Vec<u32>,
    /// openkv's extension (docs/protocol-extensions.md §5): `true` = an empty backoff schedule,
    /// no retry at all, which an empty `backoff_schedule` (= "the server's default") cannot
    /// say. Servers without the extension skip the unknown field and apply their default.
    #[prost(bool, tag = "100")]
    pub openkv_no_retries: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Watch {
    #[prost(message, repeated, tag = "1")]
    pub keys: Vec<WatchKey>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WatchKey {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WatchOutput {
    #[prost(enumeration = "SnapshotReadStatus", tag = "1")]
    pub status: i32,
    #[prost(message, repeated, tag = "2")]
    pub keys: Vec<WatchKeyOutput>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WatchKeyOutput {
    #[prost(bool, tag = "1")]
    pub changed: bool,
    #[prost(message, optional, tag = "2")]
    pub entry_if_changed: Option<KvEntry>,
}
