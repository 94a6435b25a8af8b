//! Restoring into a PostgreSQL schema: [`PostgresRestore`], a [`ReplicaTarget`] whose whole
//! work is one PostgreSQL transaction (a point-in-time restore from a continuous backup hands
//! it one snapshot, then the log's records after it).
//!
//! Emptying the schema, the snapshot's rows and every record applied after it all happen in one
//! transaction, on a pooled connection taken for the session, which holds the `version` row's
//! lock from `PostgresBackend::start_restore` to [`PostgresRestore::commit`]:
//! - every writing transaction of every process (batches, sweeps, dead letters) takes that lock
//!   first (docs/design.md §13), so none commits in the middle of a restore — where it would be
//!   half deleted, half kept — and the first one after it builds on the restored content;
//! - readers take no lock: their snapshots show the old content until the commit and the new
//!   one after it, never a mixture;
//! - rows keep their versionstamps whole (`counter ‖ batch index`), as the source had them.
//!
//! Dropping the session without committing (or any failed call) rolls everything back. The
//! commit moves the counter past both histories, renews the change log's epoch and notifies
//! every process's watchers that anything may have changed.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::Object;
use futures::StreamExt;
use tokio::sync::Mutex;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::Statement;

use crate::backend::{BackupSummary, ChangeEvent};
use crate::changelog::counter;
use crate::engine::plan::Row;
use crate::error::{Error, Failure, Result};
use crate::notify;
use crate::shared::{pg_error, Shared, Sql};
use crate::versionstamp::Versionstamp;
use crate::writer::encoding_column;
use openkv_core::changelog::{check_chain, LogRecord, ReplicaPosition, ReplicaTarget, Snapshot};
use openkv_core::RestoreSession;

/// Rows per insert, upsert or delete statement at most: large enough that a statement's round
/// trip is small beside its work, small enough that its arrays stay a few megabytes.
const ROWS_PER_STATEMENT: usize = 5000;
/// Bytes of keys and values per statement at most (a chunk of large values is cut sooner).
const BYTES_PER_STATEMENT: usize = 8 << 20;

/// A restore under way: a [`ReplicaTarget`] (snapshot, then records) whose work becomes visible
/// all at once at [`commit`](Self::commit), or never. Made by `PostgresBackend::start_restore`.
///
/// From its start to its end it holds the schema's commit lock: commits of every process wait
/// (reads do not). A call that fails ends the session and rolls everything back (later calls
/// answer that it is over); so does dropping it without committing.
pub struct PostgresRestore {
    shared: Arc<Shared>,
    session: Mutex<Session>,
}

impl std::fmt::Debug for PostgresRestore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresRestore").field("schema", &self.shared.sql.schema).finish()
    }
}

/// What a committed restore did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PostgresRestoreSummary {
    /// Entries the schema holds now (expired ones not swept yet included).
    pub entries: u64,
    /// Entries the restore replaced (the content before it).
    pub replaced_entries: u64,
    /// Queue messages it removed (a restore leaves none: a backup carries no queue).
    pub removed_messages: u64,
    /// The position restored: the snapshot's version, or the end of the last record applied.
    pub restored_version: u64,
    /// The commit counter now: above the one before the restore and at least
    /// `restored_version`, so the next commit's versionstamp is greater than any before it.
    pub version: u64,
    /// The change log's new epoch (followers and continuous backups bootstrap again).
    pub log_epoch: String,
}

/// The session's state, behind the mutex (`ReplicaTarget`'s methods take `&self`).
struct Session {
    /// The connection in its transaction; `None` once the session is over.
    txn: Option<Txn>,
    /// Why it is over, for the calls that come after.
    ended: String,
    /// The counter as the session's own bump left it: the one before the restore, plus one.
    bumped: u64,
    /// Messages the restore deleted.
    removed_messages: u64,
    /// Entries the first snapshot installed replaced: the content before the restore.
    replaced_entries: u64,
    /// `None` until a snapshot is installed.
    position: Option<ReplicaPosition>,
    /// The largest commit counter of any restored row's versionstamp.
    max_row_version: u64,
}

impl Session {
    /// The transaction, for one call. While the call runs the session holds none: a call
    /// cancelled half-way (its future dropped) drops the transaction with it, which rolls it
    /// back, and leaves the session over.
    fn take(&mut self) -> Result<Txn> {
        let txn = self.txn.take().ok_or_else(|| {
            // A caller's mistake: it went on after a failure it was told of.
            Error::Internal(format!("this PostgreSQL restore is over: {}", self.ended))
        })?;
        self.ended = "a call was cancelled half-way, which rolled the restore back".into();
        Ok(txn)
    }

    /// After a call: the transaction goes back for the next one, or, if the call failed, the
    /// whole restore rolls back (what was done is all or nothing, and the lock that makes every
    /// other commit wait is let go at once).
    async fn settle<T>(&mut self, txn: Txn, result: Result<T>) -> Result<T> {
        match result {
            Ok(value) => {
                self.txn = Some(txn);
                Ok(value)
            }
            Err(e) => {
                self.ended = format!("it was rolled back after an error ({e})");
                txn.rollback().await;
                Err(e)
            }
        }
    }
}

/// The restore's connection inside its transaction. Dropped without [`Txn::commit`] or
/// [`Txn::rollback`] (the session dropped, a call cancelled), it is closed instead of going
/// back to the pool — the next user of the connection would find itself inside our transaction
/// — and PostgreSQL, seeing the session end, rolls the transaction back and lets its locks go.
struct Txn(Option<Object>);

impl Txn {
    fn client(&self) -> Result<&Object> {
        self.0.as_ref().ok_or_else(|| Error::Internal("the restore's connection is gone".into()))
    }

    async fn rollback(mut self) {
        let rolled_back = match &self.0 {
            Some(client) => client.batch_execute("rollback").await.is_ok(),
            None => false,
        };
        if rolled_back {
            // Clean again: back to the pool. Otherwise `drop` closes it.
            drop(self.0.take());
        }
    }

    async fn commit(mut self) -> Result<()> {
        self.client()?.batch_execute("commit").await.map_err(|e| {
            // Sent: a lost connection leaves the outcome unknown, as for any commit.
            match pg_error("committing the restore", e) {
                Error::Unavailable(m) => Error::OutcomeUnknown(m),
                other => other,
            }
        })?;
        drop(self.0.take());
        Ok(())
    }
}

impl Drop for Txn {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            // Out of the pool; dropping it closes the connection.
            drop(Object::take(client));
        }
    }
}

/// A counter as the `version` column stores it (`bigint`).
fn stored_counter(version: u64) -> Result<i64> {
    i64::try_from(version).map_err(|_| {
        Error::Unsupported(format!(
            "version {version} is beyond what a PostgreSQL schema's commit counter (a bigint) holds"
        ))
    })
}

impl PostgresRestore {
    /// Starts the session on `client` (a pooled connection, now the session's): its
    /// transaction, the queue emptied, the commit lock taken.
    pub(crate) async fn begin(client: Object, shared: Arc<Shared>) -> Result<PostgresRestore> {
        let err = |e| pg_error("starting a restore", e);
        let sql = &shared.sql;
        // Owned from here: whatever fails below drops it, which closes the connection.
        let txn = Txn(Some(client));
        let client = txn.client()?;
        // READ COMMITTED whatever the server's default: the bump must wait for a commit
        // holding the lock and then apply to its result, where REPEATABLE READ would fail.
        client.batch_execute("begin isolation level read committed").await.map_err(err)?;
        // The queue's rows before the commit lock: a queue finish writing dead letters locks
        // its message's row, then waits for the commit lock; taking the lock first and the
        // rows second would make such a finish and the restore wait for each other.
        let removed_messages = client.execute(&sql.restore_clear_queue, &[]).await.map_err(err)?;
        // The commit lock, as every writing transaction takes it: held until the end.
        let bumped = counter(client.query_one(&sql.bump, &[]).await.map_err(err)?.get(0))?;
        let session = Session {
            txn: Some(txn),
            ended: String::new(),
            bumped,
            removed_messages,
            replaced_entries: 0,
            position: None,
            max_row_version: 0,
        };
        Ok(PostgresRestore { shared, session: Mutex::new(session) })
    }

    /// Makes the restore visible: the counter past both histories, a new epoch for the change
    /// log, `COMMIT`, and every watcher of every process told that anything may have changed.
    /// Fails (rolling back) if no snapshot was installed or an earlier call failed.
    pub async fn commit(self) -> Result<PostgresRestoreSummary> {
        let PostgresRestore { shared, session } = self;
        let mut session = session.into_inner();
        let txn = session.take()?;
        match finish(&txn, &shared, &session).await {
            Ok((summary, versionstamp)) => {
                txn.commit().await?;
                // The notification reached the other processes with the commit; this
                // process's own listener skips it, so its watchers hear it here.
                let _ = shared.changes.send(ChangeEvent::unknown_keys(versionstamp));
                Ok(summary)
            }
            Err(e) => {
                txn.rollback().await;
                Err(e)
            }
        }
    }
}

/// The restore's last statements, before `COMMIT`.
async fn finish(
    txn: &Txn,
    shared: &Shared,
    session: &Session,
) -> Result<(PostgresRestoreSummary, Versionstamp)> {
    let Some(position) = &session.position else {
        return Err(Error::Internal(
            "committing a PostgreSQL restore that installed no snapshot".into(),
        ));
    };
    let err = |e| pg_error("committing the restore", e);
    let (sql, client) = (&shared.sql, txn.client()?);
    // Later commits must get versionstamps above everything anyone saw: above the old
    // content's (readers and watchers saw those, and a versionstamp never goes back — the
    // restore itself takes the next counter value, as a commit would) and above every
    // restored row's (a check or a watch compares them). The next bump adds one to this.
    let version = session.bumped.max(position.version).max(session.max_row_version);
    client.execute(&sql.restore_set_counter, &[&stored_counter(version)?]).await.map_err(err)?;
    // The log's records describe the replaced history: followers, and a continuous backup of
    // this schema, must start over from a snapshot. The table lock waits for a prune under way
    // and keeps the next out (a prune deleting the same rows in another order could deadlock
    // with us); log readers still read the old log meanwhile.
    client.execute(&sql.restore_lock_log, &[]).await.map_err(err)?;
    client.execute(&sql.restore_clear_log, &[]).await.map_err(err)?;
    let log_epoch = uuid::Uuid::new_v4().to_string();
    client.execute(&sql.restore_set_epoch, &[&log_epoch]).await.map_err(err)?;
    let entries: i64 = client.query_one(&sql.restore_count_kv, &[]).await.map_err(err)?.get(0);
    // As a commit notifies: delivered with the commit, to every process; no keys (`*`): any
    // key may have changed, so their watchers re-read.
    let versionstamp = Versionstamp::from_version(version);
    let payload = notify::encode(&shared.instance, versionstamp, false, &[]);
    client.execute(sql.notify, &[&sql.channel, &payload]).await.map_err(err)?;
    let summary = PostgresRestoreSummary {
        entries: u64::try_from(entries).unwrap_or(0),
        replaced_entries: session.replaced_entries,
        removed_messages: session.removed_messages,
        restored_version: position.version,
        version,
        log_epoch,
    };
    Ok((summary, versionstamp))
}

/// What installing a snapshot did.
struct Installed {
    replaced: u64,
    removed_messages: u64,
    max_row_version: u64,
}

/// Empties the schema and inserts the snapshot's rows.
async fn install(txn: &Txn, sql: &Sql, snapshot: Snapshot) -> Result<Installed> {
    let err = |e| pg_error("installing a snapshot", e);
    let client = txn.client()?;
    let Snapshot { header, mut entries } = snapshot;
    stored_counter(header.version)?;
    let replaced = client.execute(&sql.restore_clear_kv, &[]).await.map_err(err)?;
    // Again, under the lock now: messages enqueued by commits that came between the session's
    // first delete and its lock. No commit can enqueue any more until the end. (Should one of
    // those few be taken and failed for good within that window, its finish would hold its row
    // and wait for the lock: PostgreSQL's deadlock detector aborts one side, never a hang.)
    let removed_messages = client.execute(&sql.restore_clear_queue, &[]).await.map_err(err)?;
    let insert = client.prepare_cached(&sql.restore_insert).await.map_err(err)?;
    let mut max_row_version = 0;
    let mut chunk: Vec<(Vec<u8>, Row)> = Vec::new();
    loop {
        // The next chunk comes (downloaded, decoded) while this one is inserted.
        let rows: Vec<(&[u8], &Row)> = chunk.iter().map(|(k, r)| (k.as_slice(), r)).collect();
        let (stored, next) = tokio::join!(store(client, &insert, &rows), entries.next());
        max_row_version = max_row_version.max(stored.map_err(|e| match e {
            // The table was emptied first: a key met again is the snapshot's fault.
            Stored::Duplicate(e) => Error::InvalidBackup(Failure::caused(
                "the snapshot lists a key twice (its entries must be unique)",
                e,
            )),
            Stored::Other(e) => e,
        })?);
        match next {
            Some(next) => chunk = next?,
            None => break,
        }
    }
    Ok(Installed { replaced, removed_messages, max_row_version })
}

/// Applies records (chained from `at`) as their changes' final state; returns the new position
/// and the largest commit counter of the rows stored.
async fn apply(txn: &Txn, sql: &Sql, at: u64, records: &[LogRecord]) -> Result<(u64, u64)> {
    let err = |e| pg_error("applying change-log records", e);
    let end = check_chain(at, records)?;
    stored_counter(end)?;
    // Records in order, each key's last change wins: the same rows as applying them one by
    // one, in one upsert and one delete per statement's worth.
    let mut last: BTreeMap<&[u8], Option<&Row>> = BTreeMap::new();
    for record in records {
        for (key, row) in &record.changes {
            last.insert(key.as_slice(), row.as_ref());
        }
    }
    let sets: Vec<(&[u8], &Row)> = last.iter().filter_map(|(k, r)| r.map(|r| (*k, r))).collect();
    let deletes: Vec<&[u8]> = last.iter().filter(|(_, r)| r.is_none()).map(|(k, _)| *k).collect();
    let client = txn.client()?;
    let upsert = client.prepare_cached(&sql.upsert).await.map_err(err)?;
    let delete = client.prepare_cached(&sql.delete).await.map_err(err)?;
    let max_row_version = store(client, &upsert, &sets).await.map_err(Stored::into_error)?;
    let delete = &delete;
    let removals = deletes.chunks(ROWS_PER_STATEMENT).map(|keys| async move {
        let params: [&(dyn ToSql + Sync); 1] = [&keys];
        client.execute(delete, &params).await
    });
    futures::future::try_join_all(removals).await.map_err(err)?;
    Ok((end, max_row_version))
}

/// Why storing rows failed.
enum Stored {
    /// A key the statement met twice (or already there, for a plain insert).
    Duplicate(tokio_postgres::Error),
    Other(Error),
}

impl Stored {
    fn into_error(self) -> Error {
        match self {
            Stored::Duplicate(e) => pg_error("storing restored rows", e),
            Stored::Other(e) => e,
        }
    }
}

/// Stores `rows` with `statement` (the insert or the upsert, both over parallel arrays), in
/// statements of bounded size sent together (the driver pipelines them); returns the largest
/// commit counter of their versionstamps.
async fn store(
    client: &Object,
    statement: &Statement,
    rows: &[(&[u8], &Row)],
) -> std::result::Result<u64, Stored> {
    let mut batches = Vec::new();
    let mut max_row_version = 0;
    let mut start = 0;
    while start < rows.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < rows.len()
            && end - start < ROWS_PER_STATEMENT
            && (end == start || bytes < BYTES_PER_STATEMENT)
        {
            bytes += rows[end].0.len() + rows[end].1.bytes.len();
            end += 1;
        }
        let part = &rows[start..end];
        start = end;
        let mut encodings = Vec::with_capacity(part.len());
        for (_, row) in part {
            encodings.push(encoding_column(row.encoding).map_err(Stored::Other)?);
            max_row_version = max_row_version.max(row.versionstamp.version());
        }
        batches.push((
            part.iter().map(|(k, _)| *k).collect::<Vec<&[u8]>>(),
            part.iter().map(|(_, r)| r.bytes.as_slice()).collect::<Vec<&[u8]>>(),
            encodings,
            part.iter().map(|(_, r)| r.versionstamp.as_bytes().as_slice()).collect::<Vec<&[u8]>>(),
            part.iter().map(|(_, r)| r.expire_at_ms).collect::<Vec<Option<i64>>>(),
        ));
    }
    let statements = batches.iter().map(|(keys, values, encodings, stamps, expiries)| {
        let params: [&(dyn ToSql + Sync); 5] = [keys, values, encodings, stamps, expiries];
        async move { client.execute(statement, &params).await }
    });
    futures::future::try_join_all(statements).await.map_err(|e| {
        if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
            Stored::Duplicate(e)
        } else {
            Stored::Other(pg_error("storing restored rows", e))
        }
    })?;
    Ok(max_row_version)
}

#[async_trait]
impl ReplicaTarget for PostgresRestore {
    /// The session's position: the installed snapshot's epoch and version, moved on by every
    /// record applied since; `None` before a snapshot. The schema's own change log gets a new
    /// epoch at the commit, not this one.
    async fn replica_position(&self) -> Result<Option<ReplicaPosition>> {
        let session = self.session.lock().await;
        if session.txn.is_none() {
            return Err(Error::Internal(format!(
                "this PostgreSQL restore is over: {}",
                session.ended
            )));
        }
        Ok(session.position.clone())
    }

    /// Deletes every entry and queue message of the schema and inserts the snapshot's entries
    /// as they are (versionstamps whole), in the session's transaction.
    async fn install_snapshot(&self, primary_id: uuid::Uuid, snapshot: Snapshot) -> Result<u64> {
        let mut session = self.session.lock().await;
        let txn = session.take()?;
        let header = snapshot.header.clone();
        let result = install(&txn, &self.shared.sql, snapshot).await;
        let installed = session.settle(txn, result).await?;
        if session.position.is_none() {
            // A second snapshot replaces the first one's rows, not the database's content.
            session.replaced_entries = installed.replaced;
        }
        session.removed_messages += installed.removed_messages;
        session.max_row_version = session.max_row_version.max(installed.max_row_version);
        session.position =
            Some(ReplicaPosition { epoch: header.epoch, primary_id, version: header.version });
        Ok(header.version)
    }

    /// Applies records chained from the position, in the session's transaction. A record that
    /// does not chain is an error, and ends (rolls back) the whole restore.
    async fn apply_log(&self, records: Vec<LogRecord>) -> Result<u64> {
        let mut session = self.session.lock().await;
        let txn = session.take()?;
        let result = match &session.position {
            Some(position) => apply(&txn, &self.shared.sql, position.version, &records).await,
            None => Err(Error::Internal(
                "applying change-log records to a restore that installed no snapshot".into(),
            )),
        };
        let (end, max_row_version) = session.settle(txn, result).await?;
        session.max_row_version = session.max_row_version.max(max_row_version);
        if let Some(position) = &mut session.position {
            position.version = end;
        }
        Ok(end)
    }
}

/// The session as `Backend::begin_restore` hands it out (what `Kv::begin_restore` gives).
#[async_trait]
impl RestoreSession for PostgresRestore {
    async fn commit(self: Box<Self>) -> Result<BackupSummary> {
        let summary = PostgresRestore::commit(*self).await?;
        // No queue is left, and a schema has no file size.
        Ok(BackupSummary::new(summary.entries, 0, summary.version, 0))
    }
}
