//! openkv's replication extension of KV Connect (docs/protocol-extensions.md §6): the
//! messages of `POST <endpoint>/openkv/replication/{snapshot,log}`, their framing and bounds,
//! and the mapping to and from the engine's change-log vocabulary (`openkv_core::changelog`).
//!
//! - `snapshot`: a stream of frames, each a `u32` little-endian length then a
//!   [`SnapshotFrame`] — first one with the header, then ones with entries, last one with the
//!   end marker and the entry count (a stream cut short has no end marker and is refused).
//! - `log`: a JSON [`LogRequest`]; the answer a protobuf [`LogBatch`], or `410 Gone` with a
//!   JSON [`GoneBody`] when the follower must bootstrap again.

use openkv_core::changelog::{LogChange, LogGone, LogRecord, SnapshotHeader};
use openkv_core::engine::plan::Row;
use openkv_core::versionstamp::Versionstamp;
use serde::{Deserialize, Serialize};

/// Where the extension lives, below the data-path endpoint.
pub const PATH_PREFIX: &str = "openkv/replication/";
/// Longest a `log` request may wait for new records, in milliseconds.
pub const MAX_WAIT_MS: u64 = 60_000;
/// Most bytes of changes a `log` answer carries (at least one record, whatever its size).
pub const MAX_LOG_BYTES: usize = 8 << 20;
/// The largest frame a snapshot stream may carry (a chunk of entries at the value limits).
pub const MAX_FRAME_BYTES: usize = 256 << 20;

/// `log`: the records after `after`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogRequest {
    /// The epoch of the follower's snapshot (`None`: any).
    #[serde(default)]
    pub epoch: Option<String>,
    /// The follower's position (the last applied commit counter).
    pub after: u64,
    /// Wait up to this long for a record if there is none yet (0 to [`MAX_WAIT_MS`]).
    #[serde(default)]
    pub wait_ms: u64,
    /// About how many bytes of changes to send (0: only the head, no records; at most
    /// [`MAX_LOG_BYTES`]).
    pub max_bytes: usize,
}

/// The `410 Gone` body: why the follower must bootstrap again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GoneBody {
    /// `epoch`, `pruned`, `gap` or `noLog`.
    pub reason: String,
    /// In words.
    pub message: String,
    /// `pruned`: the oldest position the log continues from; `gap`: the position before the
    /// unlogged commits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// `epoch`: the log's epoch now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
}

impl GoneBody {
    /// The body saying `gone`.
    pub fn new(gone: &LogGone) -> GoneBody {
        let (reason, version, epoch) = match gone {
            LogGone::EpochChanged { epoch } => ("epoch", None, Some(epoch.clone())),
            LogGone::Pruned { oldest } => ("pruned", Some(*oldest), None),
            LogGone::Gap { at } => ("gap", Some(*at), None),
            LogGone::NoLog => ("noLog", None, None),
            // `LogGone` is non-exhaustive (it belongs to the core crate).
            _ => ("other", None, None),
        };
        GoneBody { reason: reason.into(), message: gone.to_string(), version, epoch }
    }

    /// What the body says, as the engine's vocabulary (an unknown reason: the epoch changed,
    /// which also means "bootstrap again").
    pub fn to_gone(&self) -> LogGone {
        match self.reason.as_str() {
            "pruned" => LogGone::Pruned { oldest: self.version.unwrap_or(0) },
            "gap" => LogGone::Gap { at: self.version.unwrap_or(0) },
            "noLog" => LogGone::NoLog,
            _ => LogGone::EpochChanged { epoch: self.epoch.clone().unwrap_or_default() },
        }
    }
}

/// `status`'s answer: a primary's head, or a replica's position and lag.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusResponse {
    /// True on a read replica.
    pub replica: bool,
    /// The commit counter this server's data is at (a replica: the last applied one).
    pub version: u64,
    /// A replica: the primary's commit counter as last learnt.
    #[serde(default)]
    pub primary_head: u64,
    /// A replica: versions behind `primary_head`.
    #[serde(default)]
    pub lag_versions: u64,
    /// A replica: how long ago the oldest change it has not applied committed (0: caught up).
    #[serde(default)]
    pub lag_ms: u64,
    /// A replica: snapshots installed since it started.
    #[serde(default)]
    pub bootstraps: u64,
    /// A replica: log records applied since it started.
    #[serde(default)]
    pub records_applied: u64,
    /// A replica: reads served from its copy, and sent to the primary, since it started.
    #[serde(default)]
    pub reads_local: u64,
    #[serde(default)]
    pub reads_forwarded: u64,
    /// A replica: watches served from its copy since it started.
    #[serde(default)]
    pub watches_local: u64,
    /// A replica: its last failure to follow the primary, if the last attempt failed.
    #[serde(default)]
    pub last_error: Option<String>,
    /// The continuous backup (`openkv serve --backup-to`), if there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupStatusBody>,
}

/// A continuous backup's progress, in the status answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatusBody {
    /// Where it goes (credentials never shown).
    pub location: String,
    /// The commit counter of the last commit in the backup.
    pub shipped_version: u64,
    /// Commit counter units not yet in the backup.
    pub lag_versions: u64,
    /// How long ago the oldest commit not yet in the backup committed (0: caught up).
    pub lag_ms: u64,
    /// When the last object landed (Unix ms).
    #[serde(default)]
    pub last_success_ms: Option<i64>,
    /// The last failure, while shipping fails.
    #[serde(default)]
    pub last_error: Option<String>,
    /// The shipper stopped for good (see `last_error`).
    #[serde(default)]
    pub stopped: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LogBatch {
    #[prost(string, tag = "1")]
    pub epoch: String,
    #[prost(uint64, tag = "2")]
    pub head: u64,
    #[prost(message, repeated, tag = "3")]
    pub records: Vec<WireRecord>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WireRecord {
    #[prost(uint64, tag = "1")]
    pub prev_version: u64,
    #[prost(uint64, tag = "2")]
    pub version: u64,
    #[prost(int64, tag = "3")]
    pub committed_at_ms: i64,
    #[prost(message, repeated, tag = "4")]
    pub changes: Vec<WireChange>,
}

/// A key's new row, or its deletion.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireChange {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bool, tag = "2")]
    pub deleted: bool,
    #[prost(bytes = "vec", tag = "3")]
    pub value: Vec<u8>,
    #[prost(int64, tag = "4")]
    pub encoding: i64,
    #[prost(bytes = "vec", tag = "5")]
    pub versionstamp: Vec<u8>,
    /// Unix milliseconds; negative: never.
    #[prost(int64, tag = "6")]
    pub expire_at_ms: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SnapshotFrame {
    #[prost(message, optional, tag = "1")]
    pub header: Option<WireSnapshotHeader>,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<WireChange>,
    #[prost(message, optional, tag = "3")]
    pub end: Option<SnapshotEnd>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WireSnapshotHeader {
    #[prost(string, tag = "1")]
    pub epoch: String,
    #[prost(uint64, tag = "2")]
    pub version: u64,
    #[prost(int64, tag = "3")]
    pub taken_at_ms: i64,
    #[prost(string, tag = "4")]
    pub database_id: String,
    #[prost(bool, tag = "5")]
    pub batch_index: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SnapshotEnd {
    #[prost(uint64, tag = "1")]
    pub entries: u64,
}

/// A malformed replication message.
#[derive(Debug, thiserror::Error)]
#[error("invalid replication message: {0}")]
pub struct ReplicationWireError(pub String);

fn bad(what: impl Into<String>) -> ReplicationWireError {
    ReplicationWireError(what.into())
}

/// A change on the wire.
pub fn change_to_wire(key: &[u8], row: Option<&Row>) -> WireChange {
    match row {
        None => WireChange { key: key.to_vec(), deleted: true, ..Default::default() },
        Some(row) => WireChange {
            key: key.to_vec(),
            deleted: false,
            value: row.bytes.clone(),
            encoding: row.encoding,
            versionstamp: row.versionstamp.as_bytes().to_vec(),
            expire_at_ms: row.expire_at_ms.unwrap_or(-1),
        },
    }
}

/// A change from the wire.
pub fn change_from_wire(change: WireChange) -> Result<LogChange, ReplicationWireError> {
    if change.deleted {
        return Ok((change.key, None));
    }
    let versionstamp = Versionstamp::from_slice(&change.versionstamp)
        .map_err(|e| bad(format!("a change's versionstamp: {e}")))?;
    let row = Row {
        encoding: change.encoding,
        bytes: change.value,
        versionstamp,
        expire_at_ms: (change.expire_at_ms >= 0).then_some(change.expire_at_ms),
    };
    Ok((change.key, Some(row)))
}

/// A record on the wire.
pub fn record_to_wire(record: &LogRecord) -> WireRecord {
    WireRecord {
        prev_version: record.prev_version,
        version: record.version,
        committed_at_ms: record.committed_at_ms,
        changes: record.changes.iter().map(|(k, r)| change_to_wire(k, r.as_ref())).collect(),
    }
}

/// A record from the wire.
pub fn record_from_wire(record: WireRecord) -> Result<LogRecord, ReplicationWireError> {
    if record.version <= record.prev_version {
        return Err(bad(format!(
            "a record spans ({}, {}]: it must move forward",
            record.prev_version, record.version
        )));
    }
    Ok(LogRecord {
        prev_version: record.prev_version,
        version: record.version,
        committed_at_ms: record.committed_at_ms,
        changes: record.changes.into_iter().map(change_from_wire).collect::<Result<_, _>>()?,
    })
}

/// A snapshot's header frame.
pub fn header_frame(header: &SnapshotHeader, database_id: &str) -> SnapshotFrame {
    SnapshotFrame {
        header: Some(WireSnapshotHeader {
            epoch: header.epoch.clone(),
            version: header.version,
            taken_at_ms: header.taken_at_ms,
            database_id: database_id.to_string(),
            batch_index: header.batch_index,
        }),
        ..Default::default()
    }
}

/// A header from its frame.
pub fn header_from_wire(header: WireSnapshotHeader) -> SnapshotHeader {
    SnapshotHeader {
        epoch: header.epoch,
        version: header.version,
        taken_at_ms: header.taken_at_ms,
        batch_index: header.batch_index,
    }
}

/// A frame with its `u32` little-endian length in front.
pub fn framed(frame: &SnapshotFrame) -> Vec<u8> {
    use prost::Message;
    let body = frame.encode_to_vec();
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Takes the next whole frame off the front of `buffer`, if it holds one.
pub fn next_frame(buffer: &mut Vec<u8>) -> Result<Option<SnapshotFrame>, ReplicationWireError> {
    use prost::Message;
    if buffer.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_le_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(bad(format!("a snapshot frame of {len} bytes is over the limit")));
    }
    if buffer.len() < 4 + len {
        return Ok(None);
    }
    let frame = SnapshotFrame::decode(&buffer[4..4 + len])
        .map_err(|e| bad(format!("a snapshot frame: {e}")))?;
    buffer.drain(..4 + len);
    Ok(Some(frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_frames_round_trip() {
        let row = Row {
            encoding: 2,
            bytes: vec![1, 2, 3],
            versionstamp: Versionstamp::from_version(9),
            expire_at_ms: Some(5),
        };
        let record = LogRecord {
            prev_version: 3,
            version: 9,
            committed_at_ms: 77,
            changes: vec![(b"a".to_vec(), Some(row.clone())), (b"b".to_vec(), None)],
        };
        assert_eq!(record_from_wire(record_to_wire(&record)).unwrap(), record);
        let backwards = WireRecord { prev_version: 9, version: 9, ..record_to_wire(&record) };
        assert!(record_from_wire(backwards).is_err());
        for gone in [
            LogGone::Pruned { oldest: 7 },
            LogGone::Gap { at: 3 },
            LogGone::NoLog,
            LogGone::EpochChanged { epoch: "e2".into() },
        ] {
            let body: GoneBody =
                serde_json::from_str(&serde_json::to_string(&GoneBody::new(&gone)).unwrap())
                    .unwrap();
            assert_eq!(body.to_gone(), gone);
        }

        let header =
            SnapshotHeader { epoch: "e".into(), version: 9, taken_at_ms: 1, batch_index: true };
        let mut buffer = framed(&header_frame(&header, "id"));
        let entries =
            SnapshotFrame { entries: vec![change_to_wire(b"a", Some(&row))], ..Default::default() };
        buffer.extend(framed(&entries));
        let whole = buffer.clone();
        let mut part = whole[..whole.len() - 1].to_vec();
        let first = next_frame(&mut part).unwrap().unwrap();
        assert_eq!(header_from_wire(first.header.unwrap()), header);
        assert_eq!(next_frame(&mut part).unwrap(), None, "half a frame is not a frame");
        let mut all = whole;
        next_frame(&mut all).unwrap();
        let second = next_frame(&mut all).unwrap().unwrap();
        let (key, back) = change_from_wire(second.entries[0].clone()).unwrap();
        assert_eq!((key, back), (b"a".to_vec(), Some(row)));
        assert!(all.is_empty());
    }
}
