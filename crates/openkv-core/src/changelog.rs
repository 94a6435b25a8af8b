//! The change log: what every commit did, kept in the commit's own transaction, for read
//! replicas to follow (and continuous backup to ship).
//!
//! # The model (docs/design.md §14)
//! A backend with a change log stores one [`LogRecord`] per transaction that moved its commit
//! counter: a group commit of many writes, an expiry sweep, the dead letters of a queue
//! delivery. A record spans the counter values `(prev_version, version]` and lists the final
//! row of every key the transaction changed (`None`: deleted), each row with its own
//! versionstamp — so applying records in order reproduces the primary's rows exactly, and a
//! follower that applies whole records only ever shows a state the primary had.
//!
//! **Chained, so gaps show.** A record's `prev_version` is the counter its transaction read
//! before bumping it. Records chain: each `prev_version` equals the previous record's
//! `version`. A commit made without a log entry (the Deno CLI writing the same SQLite file;
//! an openkv process with the log off) moves the counter without a record, and the next record's
//! `prev_version` (or, at the tail, the counter itself) no longer matches: the source answers
//! [`LogRead::Gone`] and the follower bootstraps again instead of missing it. Pruning by
//! retention breaks the chain at its start the same way.
//!
//! **An epoch names one history.** A random id kept with the log, made when the log is first
//! created and made anew when the database's content is replaced (a restore): a follower
//! carries the epoch of the snapshot it bootstrapped from, and a different one means its
//! position means nothing here any more.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::error::{Error, Result};
use crate::row::Row;
use crate::versionstamp::Versionstamp;

/// The default age retention of the change log: a day.
pub const DEFAULT_LOG_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// The default size retention of the change log: 1 GiB of encoded changes.
pub const DEFAULT_LOG_MAX_BYTES: u64 = 1 << 30;

/// How much change log a backend keeps: records older than `max_age`, and the oldest records
/// while all together exceed `max_bytes`, are pruned in the background. A follower further
/// behind than what is kept bootstraps again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogRetention {
    /// Records older than this are pruned. Default: [`DEFAULT_LOG_MAX_AGE`] (24 hours).
    pub max_age: Duration,
    /// The oldest records are pruned while the log's encoded changes exceed this many bytes.
    /// Default: [`DEFAULT_LOG_MAX_BYTES`] (1 GiB).
    pub max_bytes: u64,
}

impl Default for LogRetention {
    fn default() -> Self {
        LogRetention { max_age: DEFAULT_LOG_MAX_AGE, max_bytes: DEFAULT_LOG_MAX_BYTES }
    }
}

impl LogRetention {
    /// Parses `openkv serve --log-retention`: an age (`90s`, `30m`, `24h`, `7d`), a size
    /// (`512MiB`, `1GiB`, `100MB`, plain bytes), or both separated by a comma (`24h,1GiB`). What
    /// is not given keeps its default.
    pub fn parse(text: &str) -> Result<LogRetention> {
        let mut retention = LogRetention::default();
        let bad = |part: &str, why: &str| {
            Error::InvalidOption(format!(
                "invalid log retention {part:?} in {text:?}: {why} (examples: 24h, 512MiB, \
                 7d,2GiB)"
            ))
        };
        for part in text.split(',').map(str::trim) {
            let digits = part.find(|c: char| !c.is_ascii_digit()).unwrap_or(part.len());
            let (number, unit) = part.split_at(digits);
            let n: u64 = number.parse().map_err(|_| bad(part, "a number must come first"))?;
            let seconds = |per: u64| {
                n.checked_mul(per).map(Duration::from_secs).ok_or_else(|| bad(part, "too long"))
            };
            let bytes = |per: u64| n.checked_mul(per).ok_or_else(|| bad(part, "too large a size"));
            match unit {
                "s" => retention.max_age = seconds(1)?,
                "m" => retention.max_age = seconds(60)?,
                "h" => retention.max_age = seconds(3600)?,
                "d" => retention.max_age = seconds(86_400)?,
                "" | "B" => retention.max_bytes = bytes(1)?,
                "kB" | "KB" => retention.max_bytes = bytes(1000)?,
                "KiB" => retention.max_bytes = bytes(1 << 10)?,
                "MB" => retention.max_bytes = bytes(1_000_000)?,
                "MiB" => retention.max_bytes = bytes(1 << 20)?,
                "GB" => retention.max_bytes = bytes(1_000_000_000)?,
                "GiB" => retention.max_bytes = bytes(1 << 30)?,
                _ => return Err(bad(part, "unknown unit (s, m, h, d, B, KiB, MiB, GiB, MB, GB)")),
            }
        }
        if retention.max_age.is_zero() || retention.max_bytes == 0 {
            return Err(bad(text, "a retention of zero would prune every record at once"));
        }
        Ok(retention)
    }
}

/// One key's change in a [`LogRecord`]: its final row (`None`: deleted).
pub type LogChange = (Vec<u8>, Option<Row>);

/// What one transaction of the primary did (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// The commit counter before the transaction.
    pub prev_version: u64,
    /// The commit counter after it (the first 8 bytes of its last versionstamp).
    pub version: u64,
    /// When it committed, Unix milliseconds (the primary's clock).
    pub committed_at_ms: i64,
    /// The final row of every key it changed, in key order.
    pub changes: Vec<LogChange>,
}

impl LogRecord {
    /// The versionstamp a follower reports after applying this record.
    pub fn versionstamp(&self) -> Versionstamp {
        Versionstamp::from_version(self.version)
    }

    /// The encoded keys this record changed: what a follower's change event names.
    pub fn keys(&self) -> Vec<Vec<u8>> {
        self.changes.iter().map(|(k, _)| k.clone()).collect()
    }
}

/// Why a source cannot continue a follower's log from where it is: the follower must
/// bootstrap again from a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogGone {
    /// The follower's epoch is not the log's: the database was replaced (restored) or its log
    /// started afresh.
    EpochChanged {
        /// The log's epoch now.
        epoch: String,
    },
    /// The records after the follower's position were pruned (retention).
    Pruned {
        /// The oldest position the log can still continue from.
        oldest: u64,
    },
    /// Commits were made without log records (another program wrote the database, or a
    /// process with the log off): the chain breaks after `at`.
    Gap {
        /// The last position before the unlogged commits.
        at: u64,
    },
    /// This database keeps no change log.
    NoLog,
}

impl fmt::Display for LogGone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogGone::EpochChanged { epoch } => write!(
                f,
                "the change log's epoch is now {epoch}: the database was replaced since the \
                 follower's snapshot"
            ),
            LogGone::Pruned { oldest } => write!(
                f,
                "the records after the follower's position were pruned; the log starts at \
                 version {oldest}"
            ),
            LogGone::Gap { at } => write!(
                f,
                "commits after version {at} were made without change-log records (another \
                 program wrote the database)"
            ),
            LogGone::NoLog => write!(f, "this database keeps no change log"),
        }
    }
}

/// What a source answers a follower asking for the log after its position.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogRead {
    /// The records after the position, in order (possibly none: the follower is up to date).
    Records {
        /// The log's epoch.
        epoch: String,
        /// The source's commit counter when it read (what the follower is behind of).
        head: u64,
        /// The records, chained from the follower's position.
        records: Vec<LogRecord>,
    },
    /// The follower must bootstrap again.
    Gone(LogGone),
}

/// The first part of a snapshot: which history and which point of it the entries are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// The log's epoch (empty if the source keeps no log: the snapshot cannot be followed).
    pub epoch: String,
    /// The commit counter the snapshot was read at.
    pub version: u64,
    /// When it was read, Unix milliseconds (the source's clock).
    pub taken_at_ms: i64,
    /// The source's versionstamps carry a batch index in their last two bytes (PostgreSQL's
    /// `counter ‖ index`), which a Deno-format SQLite copy cannot store.
    pub batch_index: bool,
}

/// A chunk of a snapshot: entries (key, row) in key order.
pub type SnapshotChunk = Vec<(Vec<u8>, Row)>;

/// A consistent snapshot of every live entry: its header and the entries in key order, in
/// chunks (expired rows not yet swept are left out).
pub struct Snapshot {
    /// Which point of which history.
    pub header: SnapshotHeader,
    /// The entries, a chunk at a time; an error item ends the stream.
    pub entries: BoxStream<'static, Result<SnapshotChunk>>,
}

impl Snapshot {
    /// A snapshot whose chunks arrive on `chunks`, sent by the task or thread that holds the
    /// read transaction: `Ok(Some(chunk))`, then `Ok(None)` once every entry was sent. An
    /// `Err` ends the stream with it; so does the sender going away without the end
    /// (a panic, a dropped task): a snapshot cut short is never mistaken for a whole one.
    pub fn from_channel(
        header: SnapshotHeader,
        chunks: tokio::sync::mpsc::Receiver<Result<Option<SnapshotChunk>>>,
    ) -> Snapshot {
        let entries = futures::stream::unfold(Some(chunks), |rx| async move {
            let mut rx = rx?;
            match rx.recv().await {
                Some(Ok(Some(chunk))) => Some((Ok(chunk), Some(rx))),
                Some(Ok(None)) => None,
                Some(Err(e)) => Some((Err(e), None)),
                None => Some((
                    Err(Error::Internal("the snapshot's reader ended before its end".into())),
                    None,
                )),
            }
        });
        Snapshot { header, entries: Box::pin(entries) }
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot").field("header", &self.header).finish_non_exhaustive()
    }
}

/// The primary's side of replication, an optional capability of a
/// [`Backend`](crate::Backend) (handed out by [`Backend::replication`](crate::Backend::replication)).
#[async_trait]
pub trait ReplicationSource: Send + Sync + 'static {
    /// The records after `after` (up to about `max_bytes` of changes, at least one record if
    /// there is one), or why the follower must bootstrap again. `epoch` is the follower's
    /// (`None`: it has none yet, any epoch matches).
    async fn log_after(
        &self,
        epoch: Option<String>,
        after: u64,
        max_bytes: usize,
    ) -> Result<LogRead>;

    /// A consistent snapshot of all live entries at one commit counter, streamed.
    async fn snapshot(&self) -> Result<Snapshot>;

    /// The commit counter now: what a follower must have applied to be as fresh as this
    /// moment (a read-index for strong reads served by a replica).
    async fn head(&self) -> Result<u64>;
}

/// How far a replica is behind its primary, as it last learnt.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicaStatus {
    /// The last applied commit counter (0 before the first bootstrap).
    pub applied: u64,
    /// The primary's commit counter as of its last answer.
    pub primary_head: u64,
    /// When the oldest change not yet applied committed on the primary (Unix ms, its clock);
    /// `None` when caught up with `primary_head`.
    pub behind_since_ms: Option<i64>,
    /// Snapshots installed since the replica started (the first one included).
    pub bootstraps: u64,
    /// Log records applied since the replica started.
    pub records_applied: u64,
    /// The last failure to reach the primary or apply its log, if the last attempt failed.
    pub last_error: Option<String>,
    /// True once the replica has a copy to serve from.
    pub ready: bool,
    /// Reads served from the local copy since the replica started.
    pub reads_local: u64,
    /// Reads sent to the primary (not ready yet, or a strong read that could not wait).
    pub reads_forwarded: u64,
    /// Watches served from the local copy since the replica started.
    pub watches_local: u64,
}

impl ReplicaStatus {
    /// Versions behind the primary's last known head (commit counter units, not commits).
    pub fn lag_versions(&self) -> u64 {
        self.primary_head.saturating_sub(self.applied)
    }

    /// Milliseconds behind at `now_ms`: how long ago the oldest unapplied change committed (0
    /// when caught up).
    pub fn lag_ms(&self, now_ms: i64) -> u64 {
        self.behind_since_ms.map_or(0, |since| u64::try_from(now_ms - since).unwrap_or(0))
    }
}

/// Where a follower keeps what it follows: its position in the primary's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaPosition {
    /// The epoch of the primary's log the follower follows.
    pub epoch: String,
    /// The primary's database id.
    pub primary_id: uuid::Uuid,
    /// The last applied commit counter.
    pub version: u64,
}

/// The replica's side of replication, an optional capability of a
/// [`Backend`](crate::Backend) (handed out by [`Backend::replica_target`](crate::Backend::replica_target)):
/// a local store that takes the primary's rows with their versionstamps.
#[async_trait]
pub trait ReplicaTarget: Send + Sync + 'static {
    /// Where the follower is; `None` if it never bootstrapped.
    async fn replica_position(&self) -> Result<Option<ReplicaPosition>>;

    /// Replaces the whole content by a snapshot, atomically (a reader sees the old content or
    /// the new, never a mixture); the position becomes the snapshot's.
    async fn install_snapshot(&self, primary_id: uuid::Uuid, snapshot: Snapshot) -> Result<u64>;

    /// Applies records in order, atomically together. Each must chain from the position (its
    /// `prev_version` equals the last applied version), else nothing is applied and the
    /// answer is an error. Returns the new position.
    async fn apply_log(&self, records: Vec<LogRecord>) -> Result<u64>;
}

/// The format version of [`encode_changes`].
const FORMAT: u8 = 1;

/// Encodes a record's changes for storage in a log table (format 1: a count, then per change
/// the key, a tag — 0 deleted, 1 set — and for a set the encoding, versionstamp, expiry and
/// value; lengths and numbers big-endian).
pub fn encode_changes<'a>(
    changes: impl ExactSizeIterator<Item = (&'a Vec<u8>, &'a Option<Row>)>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 * changes.len() + 5);
    out.push(FORMAT);
    out.extend_from_slice(&(changes.len() as u32).to_be_bytes());
    for (key, row) in changes {
        out.extend_from_slice(&(key.len() as u32).to_be_bytes());
        out.extend_from_slice(key);
        match row {
            None => out.push(0),
            Some(row) => {
                out.push(1);
                out.extend_from_slice(&row.encoding.to_be_bytes());
                out.extend_from_slice(row.versionstamp.as_bytes());
                out.extend_from_slice(&row.expire_at_ms.unwrap_or(-1).to_be_bytes());
                out.extend_from_slice(&(row.bytes.len() as u32).to_be_bytes());
                out.extend_from_slice(&row.bytes);
            }
        }
    }
    out
}

/// Decodes what [`encode_changes`] wrote; anything else is [`Error::Corrupt`].
pub fn decode_changes(bytes: &[u8]) -> Result<Vec<LogChange>> {
    let mut r = Reader { bytes, at: 0 };
    let format = r.take(1)?[0];
    if format != FORMAT {
        return Err(Error::corrupt(format!("unknown change-log record format {format}")));
    }
    let count = r.u32()? as usize;
    // Every change takes at least 5 bytes: a count larger than that cannot be true.
    if count > bytes.len() / 5 {
        return Err(Error::corrupt("a change-log record's count exceeds its size"));
    }
    let mut changes = Vec::with_capacity(count);
    for _ in 0..count {
        let len = r.u32()? as usize;
        let key = r.take(len)?.to_vec();
        let row = match r.take(1)?[0] {
            0 => None,
            1 => {
                let encoding = r.i64()?;
                let versionstamp = Versionstamp::from_slice(r.take(10)?)?;
                let expiry = r.i64()?;
                let len = r.u32()? as usize;
                let bytes = r.take(len)?.to_vec();
                Some(Row {
                    encoding,
                    bytes,
                    versionstamp,
                    expire_at_ms: (expiry >= 0).then_some(expiry),
                })
            }
            tag => return Err(Error::corrupt(format!("unknown change tag {tag} in the log"))),
        };
        changes.push((key, row));
    }
    if r.at != bytes.len() {
        return Err(Error::corrupt("trailing bytes after a change-log record"));
    }
    Ok(changes)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.bytes.len());
        let end = end.ok_or_else(|| Error::corrupt("a change-log record is truncated"))?;
        let part = &self.bytes[self.at..end];
        self.at = end;
        Ok(part)
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i64(&mut self) -> Result<i64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(i64::from_be_bytes(a))
    }
}

/// Checks that `records` chain from `position`, in order: the rule a follower applies by.
pub fn check_chain(position: u64, records: &[LogRecord]) -> Result<u64> {
    let mut at = position;
    for record in records {
        if record.prev_version != at || record.version <= record.prev_version {
            return Err(Error::Protocol(format!(
                "a change-log record spans ({}, {}] but the follower is at {at}",
                record.prev_version, record.version
            )));
        }
        at = record.version;
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: u8, expiry: Option<i64>) -> Row {
        Row {
            encoding: 1,
            bytes: vec![n; n as usize],
            versionstamp: Versionstamp::from_version(u64::from(n) * 1000),
            expire_at_ms: expiry,
        }
    }

    #[test]
    fn changes_round_trip_and_damage_is_corrupt() {
        let rows: Vec<LogChange> = vec![
            (b"a".to_vec(), Some(row(3, None))),
            (b"b".to_vec(), None),
            (vec![], Some(row(0, Some(77)))),
        ];
        let bytes = encode_changes(rows.iter().map(|(k, r)| (k, r)));
        assert_eq!(decode_changes(&bytes).unwrap(), rows);
        for cut in 0..bytes.len() {
            let err = decode_changes(&bytes[..cut]).unwrap_err();
            assert!(matches!(err, Error::Corrupt(_)), "cut at {cut}: {err}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(decode_changes(&longer), Err(Error::Corrupt(_))));
        let mut other_format = bytes;
        other_format[0] = 9;
        assert!(matches!(decode_changes(&other_format), Err(Error::Corrupt(_))));
    }

    #[test]
    fn retention_parses_ages_sizes_and_both() {
        let r = LogRetention::parse("7d,2GiB").unwrap();
        assert_eq!(r.max_age, Duration::from_secs(7 * 86_400));
        assert_eq!(r.max_bytes, 2 << 30);
        let r = LogRetention::parse("90s").unwrap();
        assert_eq!((r.max_age, r.max_bytes), (Duration::from_secs(90), DEFAULT_LOG_MAX_BYTES));
        assert_eq!(LogRetention::parse("100MB").unwrap().max_bytes, 100_000_000);
        for bad in ["", "h", "12x", "0h", "24h,", "-1d", "99999999999999999999d"] {
            assert!(
                matches!(LogRetention::parse(bad), Err(Error::InvalidOption(_))),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn chains_must_start_at_the_position_and_move_forward() {
        let rec = |prev, version| LogRecord {
            prev_version: prev,
            version,
            committed_at_ms: 0,
            changes: vec![],
        };
        assert_eq!(check_chain(5, &[rec(5, 7), rec(7, 8)]).unwrap(), 8);
        assert_eq!(check_chain(5, &[]).unwrap(), 5);
        assert!(check_chain(5, &[rec(6, 7)]).is_err());
        assert!(check_chain(5, &[rec(5, 7), rec(8, 9)]).is_err());
        assert!(check_chain(5, &[rec(5, 5)]).is_err());
    }
}
