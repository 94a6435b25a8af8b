//! The PostgreSQL backend: one database per PostgreSQL schema, shared by any number of
//! processes (`openkv serve` instances) at once with full Deno KV semantics.
//!
//! - **Writes** go through one writer task per process (`writer.rs`), which commits whatever
//!   writes are waiting as one PostgreSQL transaction. Every such transaction first bumps the
//!   schema's single `version` row: the row lock serializes all committing transactions of all
//!   processes, and the bumped value, followed by the write's 2-byte index in its batch, is its
//!   versionstamp. The isolation argument is in `docs/design.md` §13.
//! - **Reads** run on a pool of connections: one statement for one range, a `REPEATABLE READ`
//!   transaction for several (one snapshot).
//! - **Change feed**: each commit `NOTIFY`s the schema's channel with its versionstamp and
//!   keys; one `LISTEN`ing connection per process turns other processes' notifications into
//!   [`ChangeEvent`]s (`notify.rs`), so a watcher anywhere sees a write made anywhere.
//! - **Queues** (`queue.rs`): `FOR UPDATE SKIP LOCKED` leases; each message goes to one
//!   listener in the whole cluster at a time.
//!
//! URL: a libpq-style `postgres://` or `postgresql://` URL, plus one parameter of ours,
//! `openkv_schema=NAME` (default `openkv`), removed before the URL reaches the driver.
// A library reports through its return values and `tracing`, never on stdout/stderr;
// `unsafe_code`, `missing_docs` and the rest: `[workspace.lints]` in the root Cargo.toml.
#![deny(clippy::print_stdout, clippy::print_stderr)]

// The layers below, under the names this crate's modules use (`crate::backend::…`).
use openkv_core::{backend, clock, engine, error, value, versionstamp};

mod notify;
mod queue;
mod schema;
mod shared;
mod writer;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;

use crate::backend::{
    AtomicWrite, Backend, BackupBackend, ChangeEvent, CommitOutcome, Consistency, QueueBackend,
    QueuedMessage, RawEntry, ReadRange,
};
use crate::clock::Clock;
use crate::error::{Error, Failure, Result};
use crate::value::Value;
use crate::versionstamp::Versionstamp;

pub use shared::PostgresConfig;

use shared::{connect, pg_error, Shared, Sql};

/// The schema openkv uses when the URL names none.
pub const DEFAULT_SCHEMA: &str = "openkv";

/// Splits our `openkv_schema` parameter off a URL: (URL for the driver, schema name).
fn split_schema(url: &str) -> Result<(String, String)> {
    let invalid = |why: String| Error::InvalidOption(format!("bad PostgreSQL URL: {why}"));
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut schema = None;
    let mut rest = Vec::new();
    for param in query.split('&').filter(|p| !p.is_empty()) {
        match param.split_once('=') {
            Some(("openkv_schema", name)) => schema = Some(name.to_owned()),
            _ => rest.push(param),
        }
    }
    let schema = schema.unwrap_or_else(|| DEFAULT_SCHEMA.to_owned());
    // The name is put into SQL (quoted) and into a NOTIFY channel name (63 bytes at most,
    // with our prefix): a plain identifier only.
    let plain = !schema.is_empty()
        && schema.len() <= 48
        && schema.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !schema.as_bytes()[0].is_ascii_digit();
    if !plain {
        return Err(invalid(format!(
            "openkv_schema={schema:?}: use 1 to 48 characters of a-z, 0-9 and _, not starting \
             with a digit"
        )));
    }
    let driver_url =
        if rest.is_empty() { base.to_owned() } else { format!("{base}?{}", rest.join("&")) };
    Ok((driver_url, schema))
}

fn pool_error(e: deadpool_postgres::PoolError) -> Error {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_error("connecting to PostgreSQL", e),
        other => Error::Unavailable(Failure::caused("no PostgreSQL connection", other)),
    }
}

/// A database in a PostgreSQL schema.
#[derive(Debug)]
pub struct PostgresBackend {
    shared: Arc<Shared>,
    pool: Pool,
    writes: mpsc::Sender<writer::Request>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
    closed: AtomicBool,
    database_id: uuid::Uuid,
}

impl PostgresBackend {
    /// Connects, creates or migrates the schema, and starts the writer, the change listener
    /// and the expiry sweep.
    pub async fn open(
        url: &str,
        clock: Arc<dyn Clock>,
        config: PostgresConfig,
    ) -> Result<PostgresBackend> {
        let (driver_url, schema) = split_schema(url)?;
        let driver_config = tokio_postgres::Config::from_str(&driver_url).map_err(|e| {
            Error::InvalidOption(format!("bad PostgreSQL URL (see libpq's URI syntax): {e}"))
        })?;
        let sql = Sql::new(&schema);
        let database_id = {
            let (mut client, task) = connect(&driver_config).await?;
            let id = schema::migrate(&mut client, &sql).await;
            drop(client);
            task.abort();
            id?
        };
        let manager = Manager::from_config(
            driver_config.clone(),
            NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .build()
            .map_err(|e| Error::Internal(format!("building the PostgreSQL pool: {e}")))?;
        let mut instance = [0u8; 8];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut instance);
        let shared = Arc::new(Shared {
            sql,
            clock,
            changes: broadcast::channel(4096).0,
            queue_wakeup: openkv_core::queue::QueueSignal::new(),
            instance: hex::encode(instance),
            driver_config,
        });
        let (writes, rx) = mpsc::channel(4096);
        let mut tasks = Vec::new();
        let (writer, sweeper) =
            writer::start(shared.clone(), rx, writes.clone(), config.clone()).await?;
        tasks.push(writer);
        tasks.push(sweeper);
        tasks.push(notify::start(shared.clone()).await?);
        Ok(PostgresBackend {
            shared,
            pool,
            writes,
            tasks: std::sync::Mutex::new(tasks),
            closed: AtomicBool::new(false),
            database_id,
        })
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.check_open()?;
        self.pool.get().await.map_err(pool_error)
    }
}

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

#[async_trait]
impl Backend for PostgresBackend {
    async fn snapshot_read(
        &self,
        ranges: Vec<ReadRange>,
        _consistency: Consistency,
    ) -> Result<Vec<Vec<RawEntry>>> {
        let now = self.shared.clock.now_ms();
        let mut client = self.client().await?;
        let sql = &self.shared.sql;
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
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(|e| pg_error("starting a read", e))?;
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

    async fn atomic_write(&self, write: AtomicWrite) -> Result<CommitOutcome> {
        self.check_open()?;
        let (reply, answer) = oneshot::channel();
        self.writes
            .send(writer::Request::Write { write, reply })
            .await
            .map_err(|_| Error::Closed)?;
        answer
            .await
            .map_err(|_| Error::Internal("the PostgreSQL writer ended without answering".into()))?
    }

    fn subscribe(&self) -> Result<broadcast::Receiver<ChangeEvent>> {
        self.check_open()?;
        Ok(self.shared.changes.subscribe())
    }

    fn watch(self: Arc<Self>, keys: Vec<Vec<u8>>) -> Result<openkv_core::WatchSnapshots> {
        openkv_core::watch::follow_change_feed(self, keys)
    }

    async fn database_id(&self) -> Result<uuid::Uuid> {
        self.check_open()?;
        Ok(self.database_id)
    }

    async fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        // The writer answers every write queued before the close, then ends.
        let (reply, done) = oneshot::channel();
        if self.writes.send(writer::Request::Close { reply }).await.is_ok() {
            let _ = done.await;
        }
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            task.abort();
        }
        self.pool.close();
        // Wakes queue listeners so that they notice the close.
        self.shared.queue_wakeup.wake();
        Ok(())
    }

    fn queues(self: Arc<Self>) -> Result<Arc<dyn QueueBackend>> {
        Ok(self)
    }

    fn backups(self: Arc<Self>) -> Result<Arc<dyn BackupBackend>> {
        Err(Error::Unsupported(
            "a PostgreSQL database is backed up by PostgreSQL (pg_dump of its schema), and a \
             SQLite backup is not restored into it directly: move data with `openkv export` \
             and `openkv import`"
                .into(),
        ))
    }
}

#[async_trait]
impl QueueBackend for PostgresBackend {
    async fn queue_take(&self, max: usize, lease: Duration) -> Result<Vec<QueuedMessage>> {
        let client = self.client().await?;
        queue::take(&client, &self.shared, max, lease).await
    }

    async fn queue_renew(&self, ids: Vec<String>, lease: Duration) -> Result<()> {
        let client = self.client().await?;
        queue::renew(&client, &self.shared, ids, lease).await
    }

    async fn queue_finish(&self, outcomes: Vec<(String, bool)>) -> Result<()> {
        let mut client = self.client().await?;
        queue::finish(&mut client, &self.shared, outcomes).await
    }

    async fn queue_next_due(&self) -> Result<Option<i64>> {
        let client = self.client().await?;
        queue::next_due(&client, &self.shared).await
    }

    fn queue_wakeup(self: Arc<Self>) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.shared.queue_wakeup.subscribe())
    }
}

impl Drop for PostgresBackend {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().unwrap_or_else(|p| p.into_inner()).drain(..) {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_parameter_is_ours_and_checked() {
        let (url, schema) = split_schema("postgres://u@h:5/db").unwrap();
        assert_eq!((url.as_str(), schema.as_str()), ("postgres://u@h:5/db", "openkv"));
        let (url, schema) =
            split_schema("postgres://u@h/db?sslmode=disable&openkv_schema=app_1&x=y").unwrap();
        assert_eq!(url, "postgres://u@h/db?sslmode=disable&x=y");
        assert_eq!(schema, "app_1");
        for bad in ["Bad", "1abc", "a-b", "a\"b", "", &"x".repeat(49)] {
            let err = split_schema(&format!("postgres://h/db?openkv_schema={bad}")).unwrap_err();
            assert!(err.to_string().contains("openkv_schema"), "{bad}: {err}");
        }
    }
}
