//! What the other modules share: the options, every SQL statement of a schema, the state the
//! backend's tasks share, and connecting. The bottom module of the crate: it imports none of
//! the others.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;

use crate::backend::ChangeEvent;
use crate::clock::Clock;
use crate::error::{Error, Failure, Result};
use openkv_core::changelog::LogRetention;

/// How a PostgreSQL database is opened (`openkv::OpenOptions` fills it in).
#[derive(Clone)]
#[non_exhaustive]
pub struct PostgresConfig {
    /// How often the writer deletes expired keys (and publishes their expiry).
    pub sweep_interval: Duration,
    /// Seeds the random queue message ids (tests); `None`: from the OS.
    pub rng_seed: Option<u64>,
    /// Connections in the pool for reads and queue calls (the writer and the listener have
    /// one each besides).
    pub pool_size: usize,
    /// Keep a change log (`openkv_core::changelog`) with this retention; `None`: commits of
    /// this process write no records (and so leave a gap for followers of the schema's log).
    pub change_log: Option<LogRetention>,
    /// A hot standby of the primary's cluster (a libpq URL; its `openkv_schema` is the
    /// primary's whether named or not) that serves `Consistency::Eventual` reads, with a pool
    /// of `pool_size` connections of its own; `None`: every read goes to the primary. A
    /// standby that fails or is down makes eventual reads fall back to the primary, counted
    /// by [`PostgresBackend::eventual_fallbacks`](crate::PostgresBackend::eventual_fallbacks).
    pub read_replica: Option<String>,
}

impl std::fmt::Debug for PostgresConfig {
    // By hand: the read replica's URL may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("sweep_interval", &self.sweep_interval)
            .field("rng_seed", &self.rng_seed)
            .field("pool_size", &self.pool_size)
            .field("change_log", &self.change_log)
            .field("read_replica", &self.read_replica.as_deref().map(crate::url::redact_password))
            .finish()
    }
}

impl PostgresConfig {
    /// Options with these settings (and no change log, no read replica).
    pub fn new(sweep_interval: Duration, rng_seed: Option<u64>, pool_size: usize) -> Self {
        PostgresConfig { sweep_interval, rng_seed, pool_size, change_log: None, read_replica: None }
    }

    /// The same options with a change log kept at this retention (`None`: none).
    pub fn with_change_log(mut self, change_log: Option<LogRetention>) -> Self {
        self.change_log = change_log;
        self
    }

    /// The same options with eventual reads served by this hot standby (`None`: by the
    /// primary). See [`read_replica`](Self::read_replica).
    pub fn with_read_replica(mut self, url: Option<String>) -> Self {
        self.read_replica = url;
        self
    }
}

/// A PostgreSQL error as ours, the driver's error kept as the source: a lost connection is
/// `Unavailable` (nothing was applied, or the caller is told otherwise), a full disk is
/// `DiskFull`, the rest is `Storage` with the server's message.
pub(crate) fn pg_error(context: &str, e: tokio_postgres::Error) -> Error {
    if let Some(db) = e.as_db_error() {
        let disk_full = *db.code() == tokio_postgres::error::SqlState::DISK_FULL;
        let msg = format!("{context}: {} (SQLSTATE {})", db.message(), db.code().code());
        let failure = Failure::with_source(msg, Arc::new(e));
        return if disk_full { Error::DiskFull(failure) } else { Error::Storage(failure) };
    }
    if e.is_closed() || std::error::Error::source(&e).is_some() {
        return Error::Unavailable(Failure::caused(context, e));
    }
    Error::Storage(Failure::caused(context, e))
}

/// Every statement of one schema, with the schema name filled in once: the only place that
/// knows the tables' columns besides the migrations (`schema.rs`).
#[derive(Debug)]
pub(crate) struct Sql {
    pub schema: String,
    /// The `NOTIFY` channel of the schema's changes.
    pub channel: String,
    pub read_fwd: String,
    pub read_rev: String,
    /// Rows of the keys `$1` (live or not).
    pub read_keys: String,
    /// Takes the commit lock and the next version.
    pub bump: String,
    /// Stores rows from parallel arrays (key, value, encoding, versionstamp, expiry).
    pub upsert: String,
    pub delete: String,
    pub enqueue: String,
    pub notify: &'static str,
    pub any_expired: String,
    pub sweep: String,
    pub queue_take: String,
    pub queue_renew: String,
    pub queue_running: String,
    pub queue_delete: String,
    pub queue_retry: String,
    pub queue_next_due: String,
    /// The queue's ready, delayed and running counts at `$1` (ms).
    pub queue_counts: String,
    /// Up to `$2` messages at `$1` (ms), running first, then by due time (a running one's:
    /// its lease's end), then by id.
    pub queue_list: String,
    /// Message `$1`'s due time and lease, locked for an operator's change.
    pub queue_lock: String,
    /// Makes message `$1` due at `$2`, not leased.
    pub queue_due_at: String,
    /// The gauges at `$1` (ms): the schema's tables' size, then the queue's ready, delayed
    /// and in-flight counts and its oldest ready message's due time.
    pub gauges: String,
    /// The commit counter (`ReplicationSource::head`, a snapshot's version).
    pub head: String,
    /// Appends a change-log record: version, prev_version, ts_ms, bytes, changes.
    pub log_append: String,
    pub log_epoch: String,
    /// Records after `$1`, at most `$2` of them, while the changes before each one stay under
    /// `$3` bytes (so the first always comes).
    pub log_read: String,
    pub log_oldest: String,
    /// Prunes records older than `$1` (ms), with every record before them.
    pub log_prune_age: String,
    /// Prunes the oldest records while the log holds more than `$1` bytes.
    pub log_prune_size: String,
    /// Every live entry at `$1` (ms), in key order: a snapshot's rows.
    pub snapshot_scan: String,
    /// A restore (`restore.rs`): inserts rows from parallel arrays, as `upsert` but without
    /// its conflict clause (the table was emptied first: a key twice is a broken snapshot).
    pub restore_insert: String,
    pub restore_clear_kv: String,
    pub restore_clear_queue: String,
    /// Sets the commit counter to `$1`.
    pub restore_set_counter: String,
    /// Keeps the pruner (and any log append) out until the restore's transaction ends.
    pub restore_lock_log: String,
    pub restore_clear_log: String,
    /// Sets the change log's epoch to `$1`.
    pub restore_set_epoch: String,
    pub restore_count_kv: String,
}

impl Sql {
    pub(crate) fn new(schema: &str) -> Sql {
        let kv = format!("\"{schema}\".kv");
        let q = format!("\"{schema}\".queue");
        let log = format!("\"{schema}\".changelog");
        let read = |order: &str| {
            format!(
                "select k, v, encoding, vs, expire_ms from {kv} \
                 where k >= $1 and k < $2 and (expire_ms is null or expire_ms > $3) \
                 order by k {order} limit $4"
            )
        };
        Sql {
            schema: schema.to_owned(),
            channel: format!("openkv_changes_{schema}"),
            read_fwd: read("asc"),
            read_rev: read("desc"),
            read_keys: format!(
                "select k, v, encoding, vs, expire_ms from {kv} where k = any($1::bytea[])"
            ),
            bump: format!("update \"{schema}\".version set v = v + 1 where id = 0 returning v"),
            upsert: format!(
                "insert into {kv} (k, v, encoding, vs, expire_ms) \
                 select * from unnest($1::bytea[], $2::bytea[], $3::int4[], $4::bytea[], \
                 $5::int8[]) on conflict (k) do update set v = excluded.v, \
                 encoding = excluded.encoding, vs = excluded.vs, expire_ms = excluded.expire_ms"
            ),
            delete: format!("delete from {kv} where k = any($1::bytea[])"),
            enqueue: format!(
                "insert into {q} (id, due_ms, payload, backoff, keys_if_undelivered) \
                 select * from unnest($1::text[], $2::int8[], $3::bytea[], $4::text[], $5::text[])"
            ),
            notify: "select pg_notify($1, $2)",
            any_expired: format!(
                "select exists (select 1 from {kv} where expire_ms is not null and expire_ms <= $1)"
            ),
            sweep: format!(
                "delete from {kv} where expire_ms is not null and expire_ms <= $1 \
                 returning k, expire_ms"
            ),
            queue_take: format!(
                "with due as (select id from {q} \
                   where (lease_until is null and due_ms <= $1) or lease_until <= $1 \
                   order by due_ms, id limit $2 for update skip locked) \
                 update {q} set lease_until = $1 + $3, lease_owner = $4, attempts = attempts + 1 \
                 from due where {q}.id = due.id \
                 returning {q}.id, payload, due_ms, backoff, keys_if_undelivered, attempts"
            ),
            queue_renew: format!(
                "update {q} set lease_until = $1 where id = any($2) and lease_until is not null"
            ),
            queue_running: format!(
                "select backoff, keys_if_undelivered, payload from {q} \
                 where id = $1 and lease_until is not null for update"
            ),
            queue_delete: format!("delete from {q} where id = $1"),
            queue_retry: format!(
                "update {q} set due_ms = $2, backoff = $3, lease_until = null, lease_owner = null \
                 where id = $1"
            ),
            queue_next_due: format!("select min(coalesce(lease_until, due_ms)) from {q}"),
            // As the gauges count: a lease that ran out is ready (the next take gets it).
            queue_counts: format!(
                "select count(*) filter (where (lease_until is null and due_ms <= $1) \
                   or lease_until <= $1), \
                 count(*) filter (where lease_until is null and due_ms > $1), \
                 count(*) filter (where lease_until > $1) from {q}"
            ),
            queue_list: format!(
                "select id, payload, coalesce(lease_until, due_ms) as at, backoff, \
                 keys_if_undelivered, attempts, coalesce(lease_until > $1, false) as running \
                 from {q} order by running desc, at, id limit $2"
            ),
            queue_lock: format!("select due_ms, lease_until from {q} where id = $1 for update"),
            queue_due_at: format!(
                "update {q} set due_ms = $2, lease_until = null, lease_owner = null where id = $1"
            ),
            // One statement. The size sums the catalog's own figures (no table is read); the
            // counts scan the queue table once (no index serves three filters at once): fine
            // for queues of thousands, tens of milliseconds for a million, once per scrape.
            // A message whose lease ran out is ready (the next take gets it), since then.
            gauges: format!(
                "select (select coalesce(sum(pg_total_relation_size(c.oid)), 0)::int8 \
                   from pg_class c join pg_namespace n on n.oid = c.relnamespace \
                   where n.nspname = '{schema}' and c.relkind = 'r'), \
                 count(*) filter (where ready), \
                 count(*) filter (where lease_until is null and due_ms > $1), \
                 count(*) filter (where lease_until > $1), \
                 min(coalesce(lease_until, due_ms)) filter (where ready) \
                 from (select *, (lease_until is null and due_ms <= $1) or lease_until <= $1 \
                   as ready from {q}) m"
            ),
            head: format!("select v from \"{schema}\".version where id = 0"),
            log_append: format!(
                "insert into {log} (version, prev_version, ts_ms, bytes, changes) \
                 values ($1, $2, $3, $4, $5)"
            ),
            log_epoch: format!("select value from \"{schema}\".meta where name = 'log_epoch'"),
            // One round trip whatever the budget: the running sum of the sizes before each
            // record decides, and a record left out is never read from its TOAST table.
            log_read: format!(
                "select prev_version, version, ts_ms, changes from (\
                   select prev_version, version, ts_ms, changes, coalesce((sum(bytes) over \
                     (order by version rows between unbounded preceding and 1 preceding))::int8, \
                     0) as before \
                   from {log} where version > $1 order by version limit $2) r \
                 where before < $3::int8 order by version"
            ),
            log_oldest: format!("select min(prev_version) from {log}"),
            // A prefix of the log, never a hole in it: the clocks of the processes writing
            // the schema may disagree, and a middle record pruned alone would look like an
            // unlogged commit (a gap) to a follower.
            log_prune_age: format!(
                "delete from {log} where version <= (select max(version) from {log} \
                 where ts_ms < $1)"
            ),
            log_prune_size: format!(
                "delete from {log} where version <= (select max(version) from (\
                   select version, (sum(bytes) over (order by version desc))::int8 as newer \
                   from {log}) t where newer > $1)"
            ),
            snapshot_scan: format!(
                "select k, v, encoding, vs, expire_ms from {kv} \
                 where expire_ms is null or expire_ms > $1 order by k"
            ),
            restore_insert: format!(
                "insert into {kv} (k, v, encoding, vs, expire_ms) \
                 select * from unnest($1::bytea[], $2::bytea[], $3::int4[], $4::bytea[], \
                 $5::int8[])"
            ),
            restore_clear_kv: format!("delete from {kv}"),
            restore_clear_queue: format!("delete from {q}"),
            restore_set_counter: format!("update \"{schema}\".version set v = $1 where id = 0"),
            restore_lock_log: format!("lock table {log} in share row exclusive mode"),
            restore_clear_log: format!("delete from {log}"),
            restore_set_epoch: format!(
                "insert into \"{schema}\".meta (name, value) values ('log_epoch', $1) \
                 on conflict (name) do update set value = excluded.value"
            ),
            restore_count_kv: format!("select count(*) from {kv}"),
        }
    }
}

/// What the backend's tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub sql: Sql,
    pub clock: Arc<dyn Clock>,
    pub changes: broadcast::Sender<ChangeEvent>,
    pub queue_wakeup: openkv_core::queue::QueueSignal,
    /// Identifies this process's notifications (the writer already published them locally).
    pub instance: String,
    pub driver_config: tokio_postgres::Config,
    /// Commits are logged (`PostgresConfig::change_log`): batches, sweeps and dead letters.
    pub change_log: Option<LogRetention>,
    /// What this process's writer, reads, sweep and queue calls did (`Backend::stats`).
    pub stats: Arc<openkv_core::stats::EngineStats>,
}

/// Opens one connection outside the pool; the returned task drives it.
pub(crate) async fn connect(
    config: &tokio_postgres::Config,
) -> Result<(tokio_postgres::Client, JoinHandle<()>)> {
    let (client, connection) =
        config.connect(NoTls).await.map_err(|e| pg_error("connecting to PostgreSQL", e))?;
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("openkv: a PostgreSQL connection ended: {e}");
        }
    });
    Ok((client, task))
}

/// A read-only transaction at repeatable read: every statement in it sees one snapshot (a
/// multi-range read, the queue's counts with its listing, a log read, a snapshot scan).
pub(crate) async fn snapshot_txn<'a>(
    client: &'a mut deadpool_postgres::Object,
    context: &str,
) -> Result<deadpool_postgres::Transaction<'a>> {
    client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(|e| pg_error(context, e))
}

/// A pool that could not hand out a connection: PostgreSQL unreachable (or refusing).
pub(crate) fn pool_error(e: deadpool_postgres::PoolError) -> Error {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_error("connecting to PostgreSQL", e),
        other => Error::Unavailable(Failure::caused("no PostgreSQL connection", other)),
    }
}

/// A stored row as the read statement returns it (`k, v, v_encoding, versionstamp,
/// expire_at_ms`), not decoded: the planner decodes only what it combines (and a snapshot
/// hands rows on as they are).
pub(crate) fn stored_row(row: &tokio_postgres::Row) -> Result<(Vec<u8>, openkv_core::row::Row)> {
    let encoding: i32 = row.get(2);
    let vs: Vec<u8> = row.get(3);
    let stored = openkv_core::row::Row {
        bytes: row.get(1),
        encoding: i64::from(encoding),
        // Written by the writer only; another length is a corrupt row, not a bad request.
        versionstamp: openkv_core::Versionstamp::from_slice(&vs)
            .map_err(|e| Error::corrupt_caused("a stored versionstamp", e))?,
        expire_at_ms: row.get(4),
    };
    Ok((row.get(0), stored))
}
