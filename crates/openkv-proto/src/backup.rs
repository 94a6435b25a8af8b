//! Deno Deploy's continuous-backup format (`com.deno.kv.backup`, denoland/denokv's
//! `proto/schema/backup.proto`), as openkv writes and reads it (docs/design.md §16).
//!
//! A backup is a set of objects; two kinds carry data, each one bare protobuf message (no
//! framing, no compression):
//! - a **snapshot range** ([`BackupSnapshotRange`]): entries of a snapshot, as two parallel
//!   lists — `d ‖ key → value` and `m ‖ key → metadata`, the metadata being the entry's
//!   10-byte versionstamp, its value encoding (one byte) and its expiry (i64 little-endian
//!   Unix milliseconds, −1 for none);
//! - a **mutation range** ([`BackupMutationRange`]): log entries, one per key a commit
//!   changed, each with a 12-byte versionstamp — the commit's 10 bytes and a 2-byte suffix;
//!   the entry whose suffix is `ffff` ends its commit (readers replay to such boundaries
//!   only). A sum/min/max is logged as its result, a set.
//!
//! What openkv adds, invisible to Deploy's readers (denokv skips unknown fields and clears of a
//! key no entry can have): every transaction of the primary ends with a **boundary marker**, a
//! clear of the empty key (no Deno key encodes to no bytes) at `commit ‖ ffff`, which carries
//! the transaction's start and commit time in fields of its own
//! ([`BackupReplicationLogEntry::openkv_prev_version`], `openkv_committed_at_ms`). So every
//! transaction — also one that changed no key, or only deleted keys — is a recovery point at a
//! versionstamp of its own, a reader can prove the log has no gap, and restores by time are
//! exact to the transaction rather than to the object.
//!
//! The boundary's versionstamp is `counter ‖ 0000` when the source's versionstamps have no
//! batch index (SQLite: every row's versionstamp is `counter ‖ 0000`, so the boundary is the
//! versionstamp of the transaction's last commit), and `counter ‖ ffff` when they do
//! (PostgreSQL's `counter ‖ index`: the boundary sorts after every commit of the batch).

use openkv_core::changelog::{LogChange, LogRecord};
use openkv_core::engine::plan::Row;
use openkv_core::value::{ENCODING_BYTES, ENCODING_LE64, ENCODING_V8};
use openkv_core::versionstamp::Versionstamp;

#[derive(Clone, PartialEq, prost::Message)]
pub struct BackupSnapshotRange {
    #[prost(message, repeated, tag = "1")]
    pub data_list: Vec<BackupKvPair>,
    #[prost(message, repeated, tag = "2")]
    pub metadata_list: Vec<BackupKvPair>,
    /// openkv's seal: a checksum of the bytes before it (module docs).
    #[prost(fixed64, optional, tag = "1001")]
    pub openkv_checksum: Option<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BackupKvPair {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BackupMutationRange {
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<BackupReplicationLogEntry>,
    #[prost(uint64, tag = "2")]
    pub timestamp_ms: u64,
    /// openkv's seal: a checksum of the bytes before it (module docs).
    #[prost(fixed64, optional, tag = "1001")]
    pub openkv_checksum: Option<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BackupReplicationLogEntry {
    #[prost(bytes = "vec", tag = "1")]
    pub versionstamp: Vec<u8>,
    #[prost(enumeration = "BackupKvMutationKind", tag = "2")]
    pub kind: i32,
    #[prost(bytes = "vec", tag = "3")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub value: Vec<u8>,
    #[prost(int32, tag = "5")]
    pub value_encoding: i32,
    /// Unix milliseconds; 0: never.
    #[prost(uint64, tag = "6")]
    pub expire_at_ms: u64,
    /// openkv's boundary marker: the commit counter before the transaction (0 elsewhere).
    #[prost(uint64, tag = "1001")]
    pub openkv_prev_version: u64,
    /// openkv's boundary marker: when the transaction committed, Unix ms (0 elsewhere).
    #[prost(int64, tag = "1002")]
    pub openkv_committed_at_ms: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum BackupKvMutationKind {
    MkUnspecified = 0,
    MkSet = 1,
    MkClear = 2,
    MkSum = 3,
    MkMax = 4,
    MkMin = 5,
}

/// The bytes of a seal: field 1001 as fixed64 (a 2-byte tag, 8 bytes of checksum).
const SEAL_LEN: usize = 10;

fn checksum(bytes: &[u8]) -> u64 {
    // CRC-32 of the body, in the low half; the high half says which checksum (1: CRC-32).
    (1u64 << 32) | u64::from(crc32fast::hash(bytes))
}

/// Seals an encoded range: appends openkv's checksum of everything before it as field 1001,
/// which prost writes last and Deploy's readers skip. A reader that requires the seal
/// detects an object cut short or damaged anywhere, which the protobuf alone cannot (a range
/// cut between two entries is still a valid, shorter range).
fn seal(mut body: Vec<u8>) -> Vec<u8> {
    let trailer = prost::Message::encode_to_vec(&BackupMutationRange {
        entries: Vec::new(),
        timestamp_ms: 0,
        openkv_checksum: Some(checksum(&body)),
    });
    body.extend_from_slice(&trailer);
    body
}

/// Checks a range's seal: `Ok(true)` sealed and intact, `Ok(false)` not sealed (allowed only
/// when `required` is false), an error if damaged.
fn check_seal(body: &[u8], found: Option<u64>, required: bool) -> Result<bool, BackupWireError> {
    match found {
        Some(sum) => {
            let intact = body.len() >= SEAL_LEN
                && body[body.len() - SEAL_LEN..] == seal_bytes(sum)
                && checksum(&body[..body.len() - SEAL_LEN]) == sum;
            if intact {
                Ok(true)
            } else {
                Err(bad("its checksum does not match its content: the object is damaged"))
            }
        }
        None if required => Err(bad(
            "it has no openkv checksum at its end: the object was cut short (or not written by \
             openkv)",
        )),
        None => Ok(false),
    }
}

fn seal_bytes(sum: u64) -> Vec<u8> {
    prost::Message::encode_to_vec(&BackupMutationRange {
        entries: Vec::new(),
        timestamp_ms: 0,
        openkv_checksum: Some(sum),
    })
}

/// The suffix of the entry that ends a commit.
pub const BOUNDARY_SUFFIX: [u8; 2] = [0xff, 0xff];
/// The key of openkv's boundary marker: no Deno key encodes to it.
pub const MARKER_KEY: &[u8] = b"";

/// A malformed backup object.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BackupWireError(pub String);

fn bad(what: impl Into<String>) -> BackupWireError {
    BackupWireError(what.into())
}

/// One commit (a transaction of the primary) read back from a mutation range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupCommit {
    /// The versionstamp of its boundary: the recovery point it makes.
    pub boundary: Versionstamp,
    /// The commit counter before it, if the writer said (openkv's marker).
    pub prev_version: Option<u64>,
    /// When it committed, Unix ms, if the writer said (openkv's marker).
    pub committed_at_ms: Option<i64>,
    /// The final row of every key it changed (`None`: deleted), in key order.
    pub changes: Vec<LogChange>,
}

/// A mutation range read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MutationRange {
    /// The range's time (Unix ms): openkv writes its last commit's.
    pub timestamp_ms: u64,
    /// Its commits, in order.
    pub commits: Vec<BackupCommit>,
    /// The first and last entry's 12-byte versionstamps (what its object name says).
    pub first: [u8; 12],
    pub last: [u8; 12],
}

/// The boundary versionstamp of a transaction ending at counter `version` (module docs).
pub fn boundary_of(version: u64, batch_index: bool) -> Versionstamp {
    let mut vs = Versionstamp::from_version(version);
    if batch_index {
        vs.0[8..].copy_from_slice(&BOUNDARY_SUFFIX);
    }
    vs
}

fn vs12(vs: &Versionstamp, suffix: u16) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..10].copy_from_slice(vs.as_bytes());
    out[10..].copy_from_slice(&suffix.to_be_bytes());
    out
}

/// An encoded mutation range and what its object name says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedRange {
    /// The object's bytes (sealed).
    pub body: Vec<u8>,
    /// Its first entry's versionstamp.
    pub first: [u8; 12],
    /// Its last entry's (the last transaction's boundary).
    pub last: [u8; 12],
}

/// Encodes records of the change log as one mutation range (module docs); `timestamp_ms` is
/// the last record's commit time. An error only if a record does not fit the format (more
/// than 65 535 entries under one versionstamp).
pub fn encode_mutation_range(
    records: &[LogRecord],
    batch_index: bool,
) -> Result<EncodedRange, BackupWireError> {
    let mut entries = Vec::new();
    for record in records {
        let boundary = boundary_of(record.version, batch_index);
        let mut sets: Vec<(&Vec<u8>, &Row)> = Vec::new();
        let mut clears: Vec<&Vec<u8>> = Vec::new();
        for (key, row) in &record.changes {
            match row {
                Some(row) => sets.push((key, row)),
                None => clears.push(key),
            }
        }
        // A set's versionstamp is its row's (the reader stores the first 10 bytes); entries
        // under one versionstamp are numbered by the suffix.
        sets.sort_by(|a, b| a.1.versionstamp.cmp(&b.1.versionstamp).then(a.0.cmp(b.0)));
        let mut record_entries: Vec<BackupReplicationLogEntry> = Vec::new();
        let mut last: Option<(Versionstamp, u16)> = None;
        for (key, row) in sets {
            let suffix = match last {
                Some((vs, n)) if vs == row.versionstamp => n.checked_add(1),
                _ => Some(0),
            }
            .filter(|n| *n < 0xffff)
            .ok_or_else(|| bad("more than 65 535 changes under one versionstamp"))?;
            last = Some((row.versionstamp, suffix));
            if row.versionstamp > boundary {
                return Err(bad(format!(
                    "a row of the transaction ending at {} has the later versionstamp {}",
                    record.version, row.versionstamp
                )));
            }
            record_entries.push(BackupReplicationLogEntry {
                versionstamp: vs12(&row.versionstamp, suffix).to_vec(),
                kind: BackupKvMutationKind::MkSet as i32,
                key: key.clone(),
                value: row.bytes.clone(),
                value_encoding: i32::try_from(row.encoding)
                    .map_err(|_| bad(format!("value encoding {}", row.encoding)))?,
                expire_at_ms: row.expire_at_ms.map_or(0, |at| u64::try_from(at).unwrap_or(0)),
                openkv_prev_version: 0,
                openkv_committed_at_ms: 0,
            });
        }
        // A deleted key has no versionstamp of its own: clears take the numbers after the
        // boundary's sets.
        let next = match last {
            Some((vs, n)) if vs == boundary => usize::from(n) + 1,
            _ => 0,
        };
        for (i, key) in clears.into_iter().enumerate() {
            let suffix = u16::try_from(next + i)
                .ok()
                .filter(|n| *n < 0xffff)
                .ok_or_else(|| bad("more than 65 535 changes under one versionstamp"))?;
            record_entries.push(BackupReplicationLogEntry {
                versionstamp: vs12(&boundary, suffix).to_vec(),
                kind: BackupKvMutationKind::MkClear as i32,
                key: key.clone(),
                value: Vec::new(),
                value_encoding: 0,
                expire_at_ms: 0,
                openkv_prev_version: 0,
                openkv_committed_at_ms: 0,
            });
        }
        record_entries.push(BackupReplicationLogEntry {
            versionstamp: vs12(&boundary, 0xffff).to_vec(),
            kind: BackupKvMutationKind::MkClear as i32,
            key: MARKER_KEY.to_vec(),
            value: Vec::new(),
            value_encoding: 0,
            expire_at_ms: 0,
            openkv_prev_version: record.prev_version,
            openkv_committed_at_ms: record.committed_at_ms,
        });
        entries.extend(record_entries);
    }
    let first = entries.first().map(entry_vs12).transpose()?.unwrap_or([0; 12]);
    let last = entries.last().map(entry_vs12).transpose()?.unwrap_or([0; 12]);
    if entries.windows(2).any(|w| w[0].versionstamp >= w[1].versionstamp) {
        return Err(bad("the records' versionstamps do not increase"));
    }
    let timestamp_ms = records.last().map_or(0, |r| u64::try_from(r.committed_at_ms).unwrap_or(0));
    let body = prost::Message::encode_to_vec(&BackupMutationRange {
        entries,
        timestamp_ms,
        openkv_checksum: None,
    });
    Ok(EncodedRange { body: seal(body), first, last })
}

fn entry_vs12(entry: &BackupReplicationLogEntry) -> Result<[u8; 12], BackupWireError> {
    entry.versionstamp.as_slice().try_into().map_err(|_| {
        bad(format!("a log entry's versionstamp has {} bytes, not 12", entry.versionstamp.len()))
    })
}

fn check_encoding(encoding: i64) -> Result<i64, BackupWireError> {
    match encoding {
        ENCODING_V8 | ENCODING_LE64 | ENCODING_BYTES => Ok(encoding),
        other => Err(bad(format!("unknown value encoding {other}"))),
    }
}

/// Decodes a mutation range (Deploy's or openkv's). Refused: entries not strictly increasing,
/// a versionstamp not 12 bytes, an unknown mutation kind or value encoding, a range that
/// does not end at a commit boundary, a damaged seal, and no seal when `sealed` is required
/// (openkv wrote the backup).
pub fn decode_mutation_range(body: &[u8], sealed: bool) -> Result<MutationRange, BackupWireError> {
    let range: BackupMutationRange = prost::Message::decode(body)
        .map_err(|e| bad(format!("not a backup mutation range: {e}")))?;
    check_seal(body, range.openkv_checksum, sealed)?;
    let mut commits = Vec::new();
    let mut pending: Vec<LogChange> = Vec::new();
    let mut previous: Option<[u8; 12]> = None;
    let mut first = None;
    for entry in range.entries {
        let stamp = entry_vs12(&entry)?;
        if previous.is_some_and(|p| p >= stamp) {
            return Err(bad(format!(
                "log entry {} does not follow the previous one",
                hex::encode(stamp)
            )));
        }
        previous = Some(stamp);
        first.get_or_insert(stamp);
        let vs = Versionstamp::from_slice(&stamp[..10]).map_err(|e| bad(e.to_string()))?;
        let kind = BackupKvMutationKind::try_from(entry.kind)
            .map_err(|_| bad(format!("unknown mutation kind {}", entry.kind)))?;
        let is_boundary = stamp[10..] == BOUNDARY_SUFFIX;
        let is_marker =
            is_boundary && kind == BackupKvMutationKind::MkClear && entry.key.is_empty();
        if !is_marker {
            let change = match kind {
                BackupKvMutationKind::MkClear => None,
                BackupKvMutationKind::MkSet
                | BackupKvMutationKind::MkSum
                | BackupKvMutationKind::MkMax
                | BackupKvMutationKind::MkMin => Some(Row {
                    encoding: check_encoding(i64::from(entry.value_encoding))?,
                    bytes: entry.value,
                    versionstamp: vs,
                    expire_at_ms: i64::try_from(entry.expire_at_ms).ok().filter(|at| *at > 0),
                }),
                BackupKvMutationKind::MkUnspecified => {
                    return Err(bad(format!(
                        "log entry {} has no mutation kind",
                        hex::encode(stamp)
                    )))
                }
            };
            pending.push((entry.key, change));
        }
        if is_boundary {
            let mut changes = std::mem::take(&mut pending);
            // One final change per key: the last one of the commit wins.
            changes.reverse();
            let mut seen = std::collections::HashSet::new();
            changes.retain(|(k, _)| seen.insert(k.clone()));
            changes.sort_by(|a, b| a.0.cmp(&b.0));
            commits.push(BackupCommit {
                boundary: vs,
                prev_version: is_marker.then_some(entry.openkv_prev_version),
                committed_at_ms: is_marker.then_some(entry.openkv_committed_at_ms),
                changes,
            });
        }
    }
    if !pending.is_empty() {
        return Err(bad(
            "the mutation range ends inside a commit (no boundary entry after its last \
             entries): it was cut short",
        ));
    }
    let (Some(first), Some(last)) = (first, previous) else {
        return Ok(MutationRange {
            timestamp_ms: range.timestamp_ms,
            commits,
            first: [0; 12],
            last: [0; 12],
        });
    };
    Ok(MutationRange { timestamp_ms: range.timestamp_ms, commits, first, last })
}

/// The metadata of a snapshot entry: versionstamp, encoding, expiry (i64 LE, −1: none).
fn entry_metadata(row: &Row) -> Vec<u8> {
    let mut out = Vec::with_capacity(19);
    out.extend_from_slice(row.versionstamp.as_bytes());
    out.push(u8::try_from(row.encoding).unwrap_or(0));
    out.extend_from_slice(&row.expire_at_ms.unwrap_or(-1).to_le_bytes());
    out
}

/// Encodes snapshot entries (key order) as one snapshot range.
pub fn encode_snapshot_range(entries: &[(Vec<u8>, Row)]) -> Vec<u8> {
    let mut range = BackupSnapshotRange {
        data_list: Vec::with_capacity(entries.len()),
        metadata_list: Vec::with_capacity(entries.len()),
        openkv_checksum: None,
    };
    for (key, row) in entries {
        let mut d = Vec::with_capacity(key.len() + 1);
        d.push(b'd');
        d.extend_from_slice(key);
        let mut m = Vec::with_capacity(key.len() + 1);
        m.push(b'm');
        m.extend_from_slice(key);
        range.data_list.push(BackupKvPair { key: d, value: row.bytes.clone() });
        range.metadata_list.push(BackupKvPair { key: m, value: entry_metadata(row) });
    }
    seal(prost::Message::encode_to_vec(&range))
}

/// Decodes a snapshot range (Deploy's or openkv's): its entries, in the range's order. With
/// `sealed`, the range must carry openkv's intact seal.
pub fn decode_snapshot_range(
    body: &[u8],
    sealed: bool,
) -> Result<Vec<(Vec<u8>, Row)>, BackupWireError> {
    let range: BackupSnapshotRange = prost::Message::decode(body)
        .map_err(|e| bad(format!("not a backup snapshot range: {e}")))?;
    check_seal(body, range.openkv_checksum, sealed)?;
    if range.data_list.len() != range.metadata_list.len() {
        return Err(bad(format!(
            "the snapshot range has {} values but {} metadata entries",
            range.data_list.len(),
            range.metadata_list.len()
        )));
    }
    let mut out = Vec::with_capacity(range.data_list.len());
    for (data, meta) in range.data_list.into_iter().zip(range.metadata_list) {
        let (Some((b'd', key)), Some((b'm', meta_key))) =
            (data.key.split_first(), meta.key.split_first())
        else {
            return Err(bad("a snapshot entry's keys lack their d/m prefixes"));
        };
        if key != meta_key {
            return Err(bad("a snapshot entry's value and metadata name different keys"));
        }
        let m = &meta.value;
        if m.len() < 11 {
            return Err(bad(format!("a snapshot entry's metadata has {} bytes", m.len())));
        }
        let versionstamp = Versionstamp::from_slice(&m[..10]).map_err(|e| bad(e.to_string()))?;
        let encoding = check_encoding(i64::from(m[10]))?;
        let expire_at_ms = match m.get(11..19) {
            Some(b) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Some(i64::from_le_bytes(a)).filter(|at| *at >= 0)
            }
            None => None,
        };
        out.push((key.to_vec(), Row { encoding, bytes: data.value, versionstamp, expire_at_ms }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(version: u64, index: u16, n: u8) -> Row {
        let mut versionstamp = Versionstamp::from_version(version);
        versionstamp.0[8..].copy_from_slice(&index.to_be_bytes());
        Row { encoding: 1, bytes: vec![n; 3], versionstamp, expire_at_ms: None }
    }

    fn record(prev: u64, version: u64, changes: Vec<LogChange>) -> LogRecord {
        LogRecord { prev_version: prev, version, committed_at_ms: 1_700_000_000_000, changes }
    }

    #[test]
    fn records_round_trip_with_boundaries_and_times() {
        let records = vec![
            record(
                4,
                6,
                vec![
                    (b"\x02a\x00".to_vec(), Some(row(5, 0, 1))),
                    (b"\x02b\x00".to_vec(), None),
                    (b"\x02c\x00".to_vec(), Some(row(6, 0, 2))),
                    (b"\x02d\x00".to_vec(), Some(row(6, 0, 3))),
                ],
            ),
            // A transaction that changed no key (an enqueue) is a recovery point too.
            record(6, 7, vec![]),
        ];
        let EncodedRange { body, first, last } = encode_mutation_range(&records, false).unwrap();
        assert_eq!(hex::encode(first), "000000000000000500000000");
        assert_eq!(hex::encode(last), "00000000000000070000ffff");
        let range = decode_mutation_range(&body, true).unwrap();
        assert_eq!(range.first, first);
        assert_eq!(range.last, last);
        assert_eq!(range.commits.len(), 2);
        assert_eq!(range.commits[0].boundary, Versionstamp::from_version(6));
        assert_eq!(range.commits[0].prev_version, Some(4));
        assert_eq!(range.commits[0].committed_at_ms, Some(1_700_000_000_000));
        assert_eq!(range.commits[0].changes, records[0].changes);
        assert_eq!(range.commits[1].changes, vec![]);
        assert_eq!(range.commits[1].boundary, Versionstamp::from_version(7));
    }

    #[test]
    fn batch_index_boundaries_sort_after_every_commit_of_the_batch() {
        let records = vec![record(
            1,
            2,
            vec![(b"\x02a\x00".to_vec(), Some(row(2, 3, 1))), (b"\x02b\x00".to_vec(), None)],
        )];
        let EncodedRange { body, last, .. } = encode_mutation_range(&records, true).unwrap();
        assert_eq!(hex::encode(last), "0000000000000002ffffffff");
        let range = decode_mutation_range(&body, true).unwrap();
        assert_eq!(range.commits[0].changes, records[0].changes);
        assert_eq!(
            range.commits[0].changes[0].1.as_ref().unwrap().versionstamp,
            row(2, 3, 1).versionstamp
        );
    }

    #[test]
    fn deploy_style_ranges_decode_without_markers() {
        // Two commits as Deploy writes them: entries numbered, the last one ending in ffff.
        let entry = |vs: &str, kind: BackupKvMutationKind, key: &[u8], value: &[u8]| {
            BackupReplicationLogEntry {
                versionstamp: hex::decode(vs).unwrap(),
                kind: kind as i32,
                key: key.to_vec(),
                value: value.to_vec(),
                value_encoding: 3,
                ..Default::default()
            }
        };
        let range = BackupMutationRange {
            entries: vec![
                entry("000000000000000900010000", BackupKvMutationKind::MkSet, b"k", b"1"),
                entry("00000000000000090001ffff", BackupKvMutationKind::MkSum, b"n", b"2"),
                entry("00000000000000100000ffff", BackupKvMutationKind::MkClear, b"k", b""),
            ],
            timestamp_ms: 5,
            openkv_checksum: None,
        };
        let decoded = decode_mutation_range(&prost::Message::encode_to_vec(&range), false).unwrap();
        assert_eq!(decoded.commits.len(), 2);
        assert_eq!(decoded.commits[0].prev_version, None);
        assert_eq!(decoded.commits[0].changes.len(), 2);
        assert_eq!(decoded.commits[0].changes[1].1.as_ref().unwrap().bytes, b"2");
        assert_eq!(decoded.commits[1].changes, vec![(b"k".to_vec(), None)]);
        assert_eq!(hex::encode(decoded.commits[1].boundary.0), "00000000000000100000");
    }

    #[test]
    fn damaged_ranges_are_refused() {
        let records = vec![record(1, 2, vec![(b"\x02a\x00".to_vec(), Some(row(2, 0, 1)))])];
        let body = encode_mutation_range(&records, false).unwrap().body;
        for cut in 1..body.len() {
            assert!(decode_mutation_range(&body[..cut], true).is_err(), "cut at {cut} accepted");
        }
        for at in 0..body.len() {
            let mut damaged = body.clone();
            damaged[at] ^= 0x10;
            assert!(decode_mutation_range(&damaged, true).is_err(), "flip at {at} accepted");
        }
        // Unsealed (as Deploy writes): a range whose last commit has no boundary entry.
        let mut range: BackupMutationRange = prost::Message::decode(body.as_slice()).unwrap();
        range.openkv_checksum = None;
        range.entries.pop();
        let err = decode_mutation_range(&prost::Message::encode_to_vec(&range), false).unwrap_err();
        assert!(err.0.contains("cut short"), "{err}");
    }

    #[test]
    fn snapshot_ranges_round_trip_and_damage_is_refused() {
        let mut expiring = row(3, 0, 9);
        expiring.expire_at_ms = Some(1_800_000_000_000);
        let entries =
            vec![(b"\x02a\x00".to_vec(), row(2, 0, 1)), (b"\x02b\x00".to_vec(), expiring)];
        let body = encode_snapshot_range(&entries);
        assert_eq!(decode_snapshot_range(&body, true).unwrap(), entries);
        for cut in 1..body.len() {
            assert!(decode_snapshot_range(&body[..cut], true).is_err(), "cut at {cut} accepted");
        }
        let mut range: BackupSnapshotRange = prost::Message::decode(body.as_slice()).unwrap();
        range.openkv_checksum = None;
        assert_eq!(
            decode_snapshot_range(&prost::Message::encode_to_vec(&range), false).unwrap(),
            entries
        );
        assert!(decode_snapshot_range(&prost::Message::encode_to_vec(&range), true).is_err());
        range.metadata_list[1].key = b"m\x02c\x00".to_vec();
        assert!(decode_snapshot_range(&prost::Message::encode_to_vec(&range), false).is_err());
        range.metadata_list.pop();
        assert!(decode_snapshot_range(&prost::Message::encode_to_vec(&range), false).is_err());
    }
}
