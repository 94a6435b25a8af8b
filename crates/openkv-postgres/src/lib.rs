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
//! - **Change log** (`changelog.rs`, optional): each commit's record in its own transaction,
//!   for read replicas ([`ReplicationSource`]), pruned by a task of its own.
//! - **Restore** (`restore.rs`): [`PostgresBackend::start_restore`] replaces the whole content
//!   (e.g. from a continuous backup) in one transaction under the commit lock.
//! - **Hot standby** (`standby.rs`, optional: [`PostgresConfig::read_replica`]): eventual reads
//!   go to a streaming replica of the cluster, falling back to the primary when it fails.
//!
//! URL: a libpq-style `postgres://` or `postgresql://` URL, plus one parameter of ours,
//! `openkv_schema=NAME` (default `openkv`), removed before the URL reaches the driver.
// A library reports through its return values and `tracing`, never on stdout/stderr;
// `unsafe_code`, `missing_docs` and the rest: `[workspace.lints]` in the root Cargo.toml.
#![deny(clippy::print_stdout, clippy::print_stderr)]

// The layers below, under the names this crate's modules use (`crate::backend::…`).
use openkv_core::{backend, clock, engine, error, value, versionstamp};

pub mod catalog;
mod changelog;
mod notify;
mod queue;
mod read;
mod restore;
mod schema;
mod shared;
mod standby;
mod url;
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
    QueueChange, QueueListing, QueuedMessage, RawEntry, ReadRange,
};
use crate::clock::Clock;
use crate::error::{Error, Result};
use openkv_core::changelog::{LogRead, ReplicationSource, Snapshot};
use openkv_core::engine::measure;
use openkv_core::{EngineStats, Gauges, RestoreSession};

pub use restore::{PostgresRestore, PostgresRestoreSummary};
pub use shared::PostgresConfig;

use read::read_ranges;
use shared::{connect, pg_error, pool_error, Shared, Sql};

use url::split_schema;
pub use url::DEFAULT_SCHEMA;

/// A database in a PostgreSQL schema.
#[derive(Debug)]
pub struct PostgresBackend {
    shared: Arc<Shared>,
    pool: Pool,
    writes: mpsc::Sender<writer::Request>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
    closed: AtomicBool,
    database_id: uuid::Uuid,
    /// Serves eventual reads (`PostgresConfig::read_replica`).
    standby: Option<Arc<standby::Standby>>,
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
        // Checked before connecting anywhere; connected lazily (a standby that is down does
        // not keep the database from opening).
        let standby = match &config.read_replica {
            Some(url) => Some(Arc::new(standby::Standby::new(url, &schema, config.pool_size)?)),
            None => None,
        };
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
            change_log: config.change_log,
            stats: Arc::default(),
        });
        let (writes, rx) = mpsc::channel(4096);
        let mut tasks = Vec::new();
        let (writer, sweeper) =
            writer::start(shared.clone(), rx, writes.clone(), config.clone()).await?;
        tasks.push(writer);
        tasks.push(sweeper);
        tasks.push(notify::start(shared.clone()).await?);
        if let Some(retention) = config.change_log {
            tasks.push(changelog::start_pruner(shared.clone(), pool.clone(), retention));
        }
        if let Some(standby) = &standby {
            tasks.push(standby.probe());
        }
        Ok(PostgresBackend {
            shared,
            pool,
            writes,
            tasks: std::sync::Mutex::new(tasks),
            closed: AtomicBool::new(false),
            database_id,
            standby,
        })
    }

    /// How many eventual reads the primary answered because the hot standby
    /// ([`PostgresConfig::read_replica`]) failed, did not answer, or was resting after a
    /// failure; 0 without a standby.
    pub fn eventual_fallbacks(&self) -> u64 {
        self.standby.as_ref().map_or(0, |s| s.fallbacks())
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

#[async_trait]
impl Backend for PostgresBackend {
    async fn snapshot_read(
        &self,
        ranges: Vec<ReadRange>,
        consistency: Consistency,
    ) -> Result<Vec<Vec<RawEntry>>> {
        let now = self.shared.clock.now_ms();
        let mut served = None;
        if let (Consistency::Eventual, Some(standby)) = (consistency, &self.standby) {
            self.check_open()?;
            // `None`: failed, or resting after a failure (counted and logged): the primary
            // answers.
            served = standby.read(&self.shared.sql, &ranges, now).await;
        }
        let results = match served {
            Some(results) => results,
            None => {
                let mut client = self.client().await?;
                read_ranges(&mut client, &self.shared.sql, &ranges, now).await?
            }
        };
        measure::record_read(&self.shared.stats, &results);
        Ok(results)
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
        if let Some(standby) = &self.standby {
            standby.close();
        }
        // Wakes queue listeners so that they notice the close.
        self.shared.queue_wakeup.wake();
        Ok(())
    }

    fn lagging_eventual_reads(&self) -> bool {
        // Eventual reads go to the hot standby, which replays the primary's WAL behind it.
        self.standby.is_some()
    }

    fn queues(self: Arc<Self>) -> Result<Arc<dyn QueueBackend>> {
        Ok(self)
    }

    fn replication(self: Arc<Self>) -> Result<Arc<dyn ReplicationSource>> {
        Ok(self)
    }

    async fn begin_restore(self: Arc<Self>) -> Result<Box<dyn RestoreSession>> {
        Ok(Box::new(self.start_restore().await?))
    }

    fn stats(&self) -> Option<Arc<EngineStats>> {
        Some(self.shared.stats.clone())
    }

    async fn gauges(&self) -> Result<Gauges> {
        let client = self.client().await?;
        queue::gauges(&client, &self.shared).await
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

    async fn queue_inspect(&self, limit: usize) -> Result<QueueListing> {
        let mut client = self.client().await?;
        queue::inspect(&mut client, &self.shared, limit).await
    }

    async fn queue_change(&self, id: &str, change: QueueChange) -> Result<bool> {
        let mut client = self.client().await?;
        queue::change(&mut client, &self.shared, id, change).await
    }
}

impl Drop for PostgresBackend {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().unwrap_or_else(|p| p.into_inner()).drain(..) {
            task.abort();
        }
    }
}

#[async_trait]
impl ReplicationSource for PostgresBackend {
    async fn log_after(
        &self,
        epoch: Option<String>,
        after: u64,
        max_bytes: usize,
    ) -> Result<LogRead> {
        let mut client = self.client().await?;
        changelog::log_after(&mut client, &self.shared.sql, epoch.as_deref(), after, max_bytes)
            .await
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        let client = self.client().await?;
        let shared = self.shared.clone();
        let now = shared.clock.now_ms();
        let (header_tx, header_rx) = tokio::sync::oneshot::channel();
        let (chunks_tx, chunks_rx) = tokio::sync::mpsc::channel(changelog::SNAPSHOT_READ_AHEAD);
        tokio::spawn(changelog::stream_snapshot(client, shared, now, header_tx, chunks_tx));
        let header = header_rx
            .await
            .map_err(|_| Error::Internal("the snapshot task ended without a header".into()))??;
        Ok(Snapshot::from_channel(header, chunks_rx))
    }

    async fn head(&self) -> Result<u64> {
        let err = |e| pg_error("reading the commit counter", e);
        let client = self.client().await?;
        let head = client.prepare_cached(&self.shared.sql.head).await.map_err(err)?;
        changelog::counter(client.query_one(&head, &[]).await.map_err(err)?.get(0))
    }
}

impl PostgresBackend {
    /// Starts replacing this schema's whole content: a [`PostgresRestore`] (a
    /// [`ReplicaTarget`](openkv_core::changelog::ReplicaTarget): install a snapshot, apply
    /// records) whose work is one transaction on a connection of the pool, visible at
    /// [`PostgresRestore::commit`] or, dropped, never. It takes the schema's commit lock at
    /// once and holds it to the end: every process's commits wait meanwhile (reads do not, and
    /// see the old content until the commit). Its queue messages are deleted too.
    ///
    /// The typed form of [`Backend::begin_restore`] (which boxes this session, and whose
    /// `commit` answers a `BackupSummary`); named apart from it because on an
    /// `Arc<PostgresBackend>` the trait's method would be the one called.
    pub async fn start_restore(&self) -> Result<PostgresRestore> {
        let client = self.client().await?;
        PostgresRestore::begin(client, self.shared.clone()).await
    }

    /// Prunes the change log now by this handle's retention (a task does so by itself every
    /// 10 seconds); returns how many records went. Without a log (`change_log`
    /// off), nothing is pruned.
    pub async fn prune_change_log(&self) -> Result<u64> {
        let Some(retention) = self.shared.change_log else {
            return Ok(0);
        };
        let client = self.client().await?;
        let now = self.shared.clock.now_ms();
        changelog::prune(&client, &self.shared.sql, now, &retention).await
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
