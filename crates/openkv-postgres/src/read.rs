//! Snapshot reads, on the primary's pool or the standby's: one statement for one range, a
//! read-only `REPEATABLE READ` transaction for several.

use crate::backend::{RawEntry, ReadRange};
use crate::error::{Error, Result};
use crate::shared::{pg_error, snapshot_txn, Sql};
use crate::value::Value;
use crate::versionstamp::Versionstamp;

/// A `kv` row as an entry.
pub(crate) fn entry_from_row(row: &tokio_postgres::Row) -> Result<RawEntry> {
    let key: Vec<u8> = row.get(0);
    let data: Vec<u8> = row.get(1);
    let encoding: i32 = row.get(2);
    let vs: Vec<u8> = row.get(3);
    let expire_at_ms: Option<i64> = row.get(4);
    Ok(RawEntry {
        value: Value::from_stored(&key, i64::from(encoding), data)?,
        // Written by the writer only; another length is a corrupt row, not a bad request.
        versionstamp: Versionstamp::from_slice(&vs)
            .map_err(|e| Error::corrupt_caused("a stored versionstamp", e))?,
        key,
        expire_at_ms,
    })
}

/// Reads `ranges` at `now` on `client` (the primary's or the standby's): one statement for one
/// range, a read-only `REPEATABLE READ` transaction for several (one snapshot).
pub(crate) async fn read_ranges(
    client: &mut deadpool_postgres::Object,
    sql: &Sql,
    ranges: &[ReadRange],
    now: i64,
) -> Result<Vec<Vec<RawEntry>>> {
    // Only the directions this read uses (each a statement-cache lookup).
    let prepare = |reverse: bool| {
        let client = &client;
        async move {
            let text = if reverse { &sql.read_rev } else { &sql.read_fwd };
            let stmt = client.prepare_cached(text).await.map_err(|e| pg_error("reading", e))?;
            Ok::<_, Error>(Some(stmt))
        }
    };
    let fwd = if ranges.iter().any(|r| !r.reverse) { prepare(false).await? } else { None };
    let rev = if ranges.iter().any(|r| r.reverse) { prepare(true).await? } else { None };
    let statement = |reverse: bool| {
        if reverse { rev.as_ref() } else { fwd.as_ref() }
            .ok_or_else(|| Error::Internal("a read statement was not prepared".into()))
    };
    let run = |rows: Vec<tokio_postgres::Row>| -> Result<Vec<RawEntry>> {
        rows.iter().map(entry_from_row).collect()
    };
    if ranges.len() == 1 {
        // One statement is one snapshot already.
        let r = &ranges[0];
        let stmt = statement(r.reverse)?;
        let rows = client
            .query(stmt, &[&r.start, &r.end, &now, &i64::from(r.limit)])
            .await
            .map_err(|e| pg_error("reading", e))?;
        return Ok(vec![run(rows)?]);
    }
    let tx = snapshot_txn(client, "starting a read").await?;
    // Sent together (the driver pipelines them), answered in order, one snapshot.
    let queries = ranges
        .iter()
        .map(|r| {
            let stmt = statement(r.reverse)?;
            let limit = i64::from(r.limit);
            let (start, end) = (&r.start, &r.end);
            let tx = &tx;
            Ok(async move { tx.query(stmt, &[start, end, &now, &limit]).await })
        })
        .collect::<Result<Vec<_>>>()?;
    let results =
        futures::future::try_join_all(queries).await.map_err(|e| pg_error("reading", e))?;
    tx.commit().await.map_err(|e| pg_error("ending a read", e))?;
    results.into_iter().map(run).collect()
}
