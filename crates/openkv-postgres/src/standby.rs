//! Eventual reads from a PostgreSQL hot standby (`PostgresConfig::read_replica`): a streaming
//! replica of the primary's cluster, which holds the same schemas a little behind it.
//!
//! A read with `Consistency::Eventual` runs on a pool of connections to the standby, with the
//! primary's statements; everything else (strong reads, writes, watches, queues, the change
//! log) stays on the primary. Nothing on this path writes: no migration, no `database_id`,
//! and every connection runs with `default_transaction_read_only = on` (a standby refuses
//! writes anyway).
//!
//! When the standby fails — unreachable, a lost connection, an SQL error (say a query
//! cancelled by a recovery conflict, or a schema the standby has not replayed yet) — the read
//! is answered by the primary instead. Each such read is counted
//! ([`PostgresBackend::eventual_fallbacks`](crate::PostgresBackend::eventual_fallbacks)) and
//! logged (a warning at most every [`WARN_EVERY`]). After a failure the standby rests for
//! [`REST_AFTER_FAILURE`]: eventual reads in that time go straight to the primary (counted
//! too), so that a standby that is down costs one failed attempt a second, not one per read.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;

use crate::backend::{RawEntry, ReadRange};
use crate::error::{Error, Result};
use crate::shared::{pg_error, Sql};

/// How long eventual reads skip the standby after it failed.
pub(crate) const REST_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// At most one fallback warning this often.
pub(crate) const WARN_EVERY: Duration = Duration::from_secs(10);
/// A standby read that takes longer than this counts as failed (a standby cut off by the
/// network would otherwise hold a read until TCP gives up, minutes later).
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The connect timeout of the standby's connections when its URL sets none.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The hot standby of a backend, and how its eventual reads fared.
#[derive(Debug)]
pub(crate) struct Standby {
    pool: Pool,
    /// Where it is, for logs: `host:port/dbname`, never a password.
    shown: String,
    /// Eventual reads answered by the primary instead.
    fallbacks: AtomicU64,
    /// The last attempt failed (so the next success is news).
    failing: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Reads skip the standby until then.
    resting_until: Option<Instant>,
    /// Why the standby last failed.
    last_error: String,
    last_warning: Option<Instant>,
}

impl Standby {
    /// The standby at `url` (libpq syntax, like the primary's), for the primary's `schema`:
    /// the URL may name the same `openkv_schema`, or none. Connects nothing yet.
    pub(crate) fn new(url: &str, schema: &str, pool_size: usize) -> Result<Standby> {
        let (driver_url, named) = crate::url::split_schema_param(url)?;
        if let Some(named) = named.filter(|n| n != schema) {
            return Err(Error::InvalidOption(format!(
                "the read replica's URL names openkv_schema={named}, the primary's is {schema}: \
                 a hot standby holds the primary's schemas (leave openkv_schema out of its URL)"
            )));
        }
        let mut config = tokio_postgres::Config::from_str(&driver_url).map_err(|e| {
            Error::InvalidOption(format!(
                "bad PostgreSQL URL for the read replica (see libpq's URI syntax): {e}"
            ))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("openkv-eventual-reads");
        }
        // Every transaction read-only, single statements (implicit transactions) included.
        let options = match config.get_options() {
            Some(given) => format!("{given} -c default_transaction_read_only=on"),
            None => "-c default_transaction_read_only=on".to_owned(),
        };
        config.options(options);
        let shown = shown(&config);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager).max_size(pool_size.max(1)).build().map_err(|e| {
            Error::Internal(format!("building the PostgreSQL read replica's pool: {e}"))
        })?;
        Ok(Standby {
            pool,
            shown,
            fallbacks: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        })
    }

    /// Checks the standby in the background, once: logs whether it answers and is in
    /// recovery. Opening the database never waits for (or fails on) the standby.
    pub(crate) fn probe(self: &std::sync::Arc<Self>) -> JoinHandle<()> {
        let standby = self.clone();
        tokio::spawn(async move {
            let shown = &standby.shown;
            let recovering = async {
                let client = standby.pool.get().await.map_err(crate::shared::pool_error)?;
                let row = client
                    .query_one("select pg_is_in_recovery()", &[])
                    .await
                    .map_err(|e| pg_error("asking the read replica", e))?;
                Ok::<bool, Error>(row.get(0))
            };
            match tokio::time::timeout(READ_TIMEOUT, recovering).await {
                Ok(Ok(true)) => {
                    tracing::info!(
                        "openkv: eventual reads go to the PostgreSQL hot standby {shown}"
                    )
                }
                Ok(Ok(false)) => tracing::warn!(
                    "openkv: the read replica {shown} is not a hot standby (pg_is_in_recovery() \
                     is false); eventual reads go to it all the same: it must hold the \
                     primary's data"
                ),
                Ok(Err(e)) => tracing::warn!(
                    "openkv: the PostgreSQL read replica {shown} does not answer ({e}); eventual \
                     reads fall back to the primary until it does"
                ),
                Err(_) => tracing::warn!(
                    "openkv: the PostgreSQL read replica {shown} did not answer in {}s; \
                     eventual reads fall back to the primary until it does",
                    READ_TIMEOUT.as_secs()
                ),
            }
        })
    }

    /// Eventual reads the primary answered instead.
    pub(crate) fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    pub(crate) fn close(&self) {
        self.pool.close();
    }

    /// Runs the read on the standby; `None` when it failed or rests (the caller then reads on
    /// the primary): counted and logged here.
    pub(crate) async fn read(
        &self,
        sql: &Sql,
        ranges: &[ReadRange],
        now: i64,
    ) -> Option<Vec<Vec<RawEntry>>> {
        if self.resting() {
            self.fell_back(None);
            return None;
        }
        let attempt = async {
            let mut client = self.pool.get().await.map_err(crate::shared::pool_error)?;
            crate::read::read_ranges(&mut client, sql, ranges, now).await
        };
        let outcome = match tokio::time::timeout(READ_TIMEOUT, attempt).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Error::Unavailable(crate::error::Failure::new(format!(
                "no answer in {}s",
                READ_TIMEOUT.as_secs()
            )))),
        };
        match outcome {
            Ok(results) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(
                        "openkv: the PostgreSQL read replica {} answers eventual reads again",
                        self.shown
                    );
                }
                Some(results)
            }
            Err(e) => {
                self.failing.store(true, Ordering::Relaxed);
                self.fell_back(Some(e));
                None
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn resting(&self) -> bool {
        // Cheap while the standby is fine: no lock.
        if !self.failing.load(Ordering::Relaxed) {
            return false;
        }
        self.lock().resting_until.is_some_and(|until| Instant::now() < until)
    }

    /// Counts a read the primary answers; `error`: the standby just failed (it rests now).
    fn fell_back(&self, error: Option<Error>) {
        let n = self.fallbacks.fetch_add(1, Ordering::Relaxed) + 1;
        let now = Instant::now();
        let mut state = self.lock();
        if let Some(e) = error {
            state.resting_until = Some(now + REST_AFTER_FAILURE);
            state.last_error = with_causes(&e);
        }
        if state.last_warning.is_some_and(|at| now.duration_since(at) < WARN_EVERY) {
            return;
        }
        state.last_warning = Some(now);
        tracing::warn!(
            "openkv: eventual reads fall back to the PostgreSQL primary: the read replica {} \
             failed: {} (eventual reads the primary answered so far: {n}; the replica is tried \
             again every {}s)",
            self.shown,
            state.last_error,
            REST_AFTER_FAILURE.as_secs()
        );
    }
}

/// An error and its causes, `: `-separated (the driver's "error connecting to server" says
/// why only in its source).
fn with_causes(e: &Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

/// `host:port/dbname` of a driver config, for logs.
fn shown(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(name)) => name.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", config.get_dbname().unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url::redact_password;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_password("postgres://u:secret@h:5/db?x=y"),
            "postgres://u:***@h:5/db?x=y"
        );
        assert_eq!(redact_password("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_password("postgres://h/db?sslmode=disable&password=x"),
            "postgres://h/db?sslmode=disable&password=***"
        );
    }

    #[test]
    fn the_standby_takes_the_primarys_schema_and_refuses_another() {
        let standby = Standby::new("postgres://u@h:7/db", "app", 2).unwrap();
        assert_eq!(standby.shown, "h:7/db");
        Standby::new("postgres://u@h/db?openkv_schema=app", "app", 2).unwrap();
        let err = Standby::new("postgres://u@h/db?openkv_schema=other", "app", 2).unwrap_err();
        assert!(err.to_string().contains("openkv_schema=other"), "{err}");
    }
}
