//! The change log in a SQLite file (openkv's own tables; Deno's are untouched), and the
//! replica side: installing a snapshot and applying records.
//!
//! `openkv_changelog` holds one row per transaction that moved the commit counter while the
//! log was on: `(version, prev_version, ts_ms, bytes, changes)`, `changes` in
//! [`encode_changes`]'s format. The log's epoch is `openkv_meta.log_epoch`. A follower's
//! position (on a replica's file) is `openkv_meta.replica_epoch`, `replica_primary` and
//! `replica_version`. The chain rule and the epoch are explained in `openkv_core::changelog`.

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{Error, Result};
use crate::shared::{put_row, GET_VERSION, SET_VERSION};
use openkv_core::changelog::{
    check_chain, decode_changes, encode_changes, LogChange, LogGone, LogRead, LogRecord,
    LogRetention, ReplicaPosition, SnapshotHeader,
};
use openkv_core::engine::plan::Row;
use openkv_core::versionstamp::Versionstamp;

const CREATE: &str = "
create table if not exists openkv_meta (k text primary key, v text not null);
create table if not exists openkv_changelog (
  version integer primary key,
  prev_version integer not null,
  ts_ms integer not null,
  bytes integer not null,
  changes blob not null
);
";
const APPEND: &str = "insert into openkv_changelog (version, prev_version, ts_ms, bytes, changes) \
     values (?1, ?2, ?3, ?4, ?5)";
const READ_AFTER: &str = "select prev_version, version, ts_ms, changes from openkv_changelog \
     where version > ?1 order by version limit ?2";
/// Records read per log request at most (besides the byte budget).
const MAX_RECORDS_PER_READ: i64 = 10_000;

/// Creates the log's tables and its epoch if they do not exist (in the caller's transaction).
pub(crate) fn ensure(conn: &Connection) -> Result<()> {
    conn.execute_batch(CREATE)?;
    conn.execute(
        "insert into openkv_meta (k, v) values ('log_epoch', ?1) on conflict(k) do nothing",
        [uuid::Uuid::new_v4().to_string()],
    )?;
    Ok(())
}

/// After the content was replaced (a restore): the old records describe another history. Drops
/// them and starts a new epoch, if the file has a log at all.
pub(crate) fn restart(conn: &Connection) -> Result<()> {
    if !has_log(conn)? {
        return Ok(());
    }
    conn.execute("delete from openkv_changelog", [])?;
    conn.execute("delete from openkv_meta where k = 'log_pruned_to'", [])?;
    conn.execute(
        "update openkv_meta set v = ?1 where k = 'log_epoch'",
        [uuid::Uuid::new_v4().to_string()],
    )?;
    Ok(())
}

fn has_log(conn: &Connection) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "select 1 from sqlite_master where type = 'table' and name = 'openkv_changelog'",
        )?
        .query_row([], |_| Ok(()))
        .optional()?
        .is_some())
}

fn meta(conn: &Connection, key: &str) -> Result<Option<String>> {
    let exists = conn
        .prepare_cached(
            "select 1 from sqlite_master where type = 'table' and name = 'openkv_meta'",
        )?
        .query_row([], |_| Ok(()))
        .optional()?;
    if exists.is_none() {
        return Ok(None);
    }
    Ok(conn
        .prepare_cached("select v from openkv_meta where k = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

fn set_meta(conn: &Connection, key: &str, value: &str) -> Result<()> {
    conn.prepare_cached(
        "insert into openkv_meta (k, v) values (?1, ?2) on conflict(k) do update set v = ?2",
    )?
    .execute([key, value])?;
    Ok(())
}

/// Logs one transaction (inside it): the counter moved from `prev` to `version`.
pub(crate) fn append<'a>(
    conn: &Connection,
    prev: u64,
    version: u64,
    now_ms: i64,
    changes: impl ExactSizeIterator<Item = (&'a Vec<u8>, &'a Option<Row>)>,
) -> Result<()> {
    let blob = encode_changes(changes);
    conn.prepare_cached(APPEND)?.execute(params![
        version as i64,
        prev as i64,
        now_ms,
        blob.len() as i64,
        blob
    ])?;
    Ok(())
}

/// Prunes records older than the retention's age, then the oldest while the log is larger
/// than its size. Returns how many were removed.
pub(crate) fn prune(conn: &Connection, now_ms: i64, retention: &LogRetention) -> Result<usize> {
    let max_age_ms = i64::try_from(retention.max_age.as_millis()).unwrap_or(i64::MAX);
    // Where the log will start: what a follower further behind must know it missed.
    let before: Option<i64> = conn
        .prepare_cached("select max(version) from openkv_changelog")?
        .query_row([], |r| r.get(0))?;
    let mut removed = conn
        .prepare_cached("delete from openkv_changelog where ts_ms < ?1")?
        .execute([now_ms.saturating_sub(max_age_ms)])?;
    let total: i64 = conn
        .prepare_cached("select coalesce(sum(bytes), 0) from openkv_changelog")?
        .query_row([], |r| r.get(0))?;
    let mut excess = total - i64::try_from(retention.max_bytes).unwrap_or(i64::MAX);
    if excess > 0 {
        // The newest version whose removal (with everything older) brings the log under size.
        let mut stmt =
            conn.prepare_cached("select version, bytes from openkv_changelog order by version")?;
        let mut rows = stmt.query([])?;
        let mut cut = None;
        while let Some(row) = rows.next()? {
            let (version, bytes): (i64, i64) = (row.get(0)?, row.get(1)?);
            excess -= bytes;
            cut = Some(version);
            if excess <= 0 {
                break;
            }
        }
        drop(rows);
        if let Some(cut) = cut {
            removed += conn
                .prepare_cached("delete from openkv_changelog where version <= ?1")?
                .execute([cut])?;
        }
    }
    if removed > 0 {
        // The newest pruned version: the oldest record left has it as `prev_version`, or, if
        // none is left, the log's newest record was it.
        let oldest: Option<i64> = conn
            .prepare_cached("select min(prev_version) from openkv_changelog")?
            .query_row([], |r| r.get(0))?;
        if let Some(pruned_to) = oldest.or(before) {
            set_meta(conn, "log_pruned_to", &pruned_to.to_string())?;
        }
    }
    Ok(removed)
}

/// The records after `after` (see `ReplicationSource::log_after`); `conn` is inside a read
/// transaction, so they are of one snapshot.
pub(crate) fn log_after(
    conn: &Connection,
    epoch: Option<&str>,
    after: u64,
    max_bytes: usize,
) -> Result<LogRead> {
    let head = conn.prepare_cached(GET_VERSION)?.query_row([], |r| r.get::<_, i64>(0))? as u64;
    let Some(log_epoch) = meta(conn, "log_epoch")? else {
        return Ok(LogRead::Gone(LogGone::NoLog));
    };
    if epoch.is_some_and(|e| e != log_epoch) {
        return Ok(LogRead::Gone(LogGone::EpochChanged { epoch: log_epoch }));
    }
    let mut records = Vec::new();
    let mut bytes = 0usize;
    {
        let mut stmt = conn.prepare_cached(READ_AFTER)?;
        let mut rows = stmt.query(params![after as i64, MAX_RECORDS_PER_READ])?;
        let mut at = after;
        while let Some(row) = rows.next()? {
            let prev = row.get::<_, i64>(0)? as u64;
            if prev != at {
                // A break in the chain: at the follower's own position it must start over; later
                // on, hand over what chains and let the next request meet the break.
                if records.is_empty() {
                    let oldest: i64 = conn
                        .prepare_cached("select min(prev_version) from openkv_changelog")?
                        .query_row([], |r| r.get(0))?;
                    return Ok(LogRead::Gone(if after < oldest as u64 {
                        LogGone::Pruned { oldest: oldest as u64 }
                    } else {
                        LogGone::Gap { at: after }
                    }));
                }
                break;
            }
            let blob: Vec<u8> = row.get(3)?;
            bytes += blob.len();
            let version = row.get::<_, i64>(1)? as u64;
            records.push(LogRecord {
                prev_version: prev,
                version,
                committed_at_ms: row.get(2)?,
                changes: decode_changes(&blob)?,
            });
            at = version;
            if bytes >= max_bytes {
                break;
            }
        }
    }
    if records.is_empty() && head != after {
        // The counter moved (or went back) with nothing logged after the follower's position:
        // pruned, if the pruning went past it; else commits without records.
        let pruned_to: Option<u64> = meta(conn, "log_pruned_to")?.and_then(|v| v.parse().ok());
        return Ok(LogRead::Gone(if let Some(oldest) = pruned_to.filter(|&p| after < p) {
            LogGone::Pruned { oldest }
        } else if head > after {
            LogGone::Gap { at: after }
        } else {
            LogGone::EpochChanged { epoch: log_epoch }
        }));
    }
    Ok(LogRead::Records { epoch: log_epoch, head, records })
}

/// The snapshot's header, read inside the caller's read transaction.
pub(crate) fn snapshot_header(conn: &Connection, now_ms: i64) -> Result<SnapshotHeader> {
    let version = conn.prepare_cached(GET_VERSION)?.query_row([], |r| r.get::<_, i64>(0))? as u64;
    let epoch = meta(conn, "log_epoch")?.unwrap_or_default();
    Ok(SnapshotHeader { epoch, version, taken_at_ms: now_ms, batch_index: false })
}

/// Where this replica is.
pub(crate) fn position(conn: &Connection) -> Result<Option<ReplicaPosition>> {
    let (Some(epoch), Some(primary), Some(version)) = (
        meta(conn, "replica_epoch")?,
        meta(conn, "replica_primary")?,
        meta(conn, "replica_version")?,
    ) else {
        return Ok(None);
    };
    let bad = |what: &str| Error::corrupt(format!("openkv_meta.{what} is malformed"));
    let primary_id = uuid::Uuid::parse_str(&primary).map_err(|_| bad("replica_primary"))?;
    let version: u64 = version.parse().map_err(|_| bad("replica_version"))?;
    let counter = conn.prepare_cached(GET_VERSION)?.query_row([], |r| r.get::<_, i64>(0))? as u64;
    if counter != version {
        // Someone wrote the replica's file: its content is no longer the primary's.
        tracing::warn!(
            "openkv replica: the file's commit counter ({counter}) is not the applied position \
             ({version}); bootstrapping again"
        );
        return Ok(None);
    }
    Ok(Some(ReplicaPosition { epoch, primary_id, version }))
}

/// Refuses a row this file cannot hold as the primary has it.
fn storable(row: &Row) -> Result<()> {
    if Versionstamp::from_version(row.versionstamp.version()) != row.versionstamp {
        return Err(Error::Unsupported(format!(
            "the primary's versionstamp {} carries a batch index (a PostgreSQL primary); a \
             SQLite replica stores Deno's 8-byte commit counter only (use --read-replica with a \
             PostgreSQL standby)",
            row.versionstamp.to_hex()
        )));
    }
    Ok(())
}

fn put(conn: &Connection, key: &[u8], row: &Option<Row>) -> Result<()> {
    if let Some(row) = row {
        storable(row)?;
    }
    put_row(conn, key, row.as_ref())?;
    Ok(())
}

/// Starts installing a snapshot (inside the caller's write transaction): empties the table.
pub(crate) fn install_begin(conn: &Connection, header: &SnapshotHeader) -> Result<()> {
    if header.batch_index {
        return Err(Error::Unsupported(
            "the primary's versionstamps carry a batch index (a PostgreSQL primary); a SQLite \
             replica stores Deno's 8-byte commit counter only — for PostgreSQL, use a streaming \
             standby (openkv serve --read-replica)"
                .into(),
        ));
    }
    conn.execute("delete from kv", [])?;
    Ok(())
}

/// Stores one chunk of a snapshot.
pub(crate) fn install_chunk(conn: &Connection, chunk: &[(Vec<u8>, Row)]) -> Result<()> {
    for (key, row) in chunk {
        put(conn, key, &Some(row.clone()))?;
    }
    Ok(())
}

/// Ends installing a snapshot: the counter and the position become the snapshot's.
pub(crate) fn install_end(
    conn: &Connection,
    primary_id: uuid::Uuid,
    header: &SnapshotHeader,
) -> Result<()> {
    conn.prepare_cached(SET_VERSION)?.execute([header.version as i64])?;
    conn.execute_batch(CREATE)?;
    set_meta(conn, "replica_epoch", &header.epoch)?;
    set_meta(conn, "replica_primary", &primary_id.to_string())?;
    set_meta(conn, "replica_version", &header.version.to_string())?;
    Ok(())
}

/// Applies records in one transaction (the caller's), checking that they chain from the
/// stored position. Returns the new position.
pub(crate) fn apply(conn: &Connection, records: &[LogRecord]) -> Result<u64> {
    let at: u64 = meta(conn, "replica_version")?
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::Internal("applying a log to a replica never bootstrapped".into()))?;
    let end = check_chain(at, records)?;
    for record in records {
        for (key, row) in &record.changes {
            put(conn, key, row)?;
        }
    }
    conn.prepare_cached(SET_VERSION)?.execute([end as i64])?;
    set_meta(conn, "replica_version", &end.to_string())?;
    Ok(end)
}

/// What a replica's change feed names for a record.
pub(crate) fn keys_of(changes: &[LogChange]) -> Vec<Vec<u8>> {
    changes.iter().map(|(k, _)| k.clone()).collect()
}
