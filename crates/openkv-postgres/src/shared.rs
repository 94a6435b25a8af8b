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

/// How a PostgreSQL database is opened (`openkv::OpenOptions` fills it in).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PostgresConfig {
    /// How often the writer deletes expired keys (and publishes their expiry).
    pub sweep_interval: Duration,
    /// Seeds the random queue message ids (tests); `None`: from the OS.
    pub rng_seed: Option<u64>,
    /// Connections in the pool for reads and queue calls (the writer and the listener have
    /// one each besides).
    pub pool_size: usize,
}

impl PostgresConfig {
    /// Options with these settings.
    pub fn new(sweep_interval: Duration, rng_seed: Option<u64>, pool_size: usize) -> Self {
        PostgresConfig { sweep_interval, rng_seed, pool_size }
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
}

impl Sql {
    pub(crate) fn new(schema: &str) -> Sql {
        let kv = format!("\"{schema}\".kv");
        let q = format!("\"{schema}\".queue");
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
                "delete from {kv} where expire_ms is not null and expire_ms <= $1 returning k"
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
