//! `OpenOptions::open`: which backend crate a database name goes to (the one place in the
//! facade that knows the engines; `kv.rs` only holds a `dyn Backend`).
//!
//! A new backend adds a scheme to [`SCHEMES`], an [`Engine`] variant and its arm in `open`
//! (behind its cargo feature, with a `cfg(not)` twin that says which feature is missing).

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::kv::{Kv, OpenOptions};
use openkv_core::catalog::{Catalog, CatalogError};
use openkv_sqlite::{SqliteBackend, SqliteConfig};

/// The storage engines the facade can open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Engine {
    Sqlite,
    Postgres,
    Remote,
}

/// URL schemes and the engine each one names; any other name is a SQLite path.
const SCHEMES: &[(&str, Engine)] = &[
    ("http://", Engine::Remote),
    ("https://", Engine::Remote),
    ("postgres://", Engine::Postgres),
    ("postgresql://", Engine::Postgres),
];

impl Engine {
    fn for_path(path: &str) -> Engine {
        SCHEMES
            .iter()
            .find(|(scheme, _)| path.starts_with(scheme))
            .map_or(Engine::Sqlite, |(_, engine)| *engine)
    }
}

impl OpenOptions {
    /// Opens a database.
    ///
    /// - `http://…` or `https://…`: a remote database over KV Connect (`openkv serve`,
    ///   `denokv`, or any server Deno's `Deno.openKv(url)` reaches), with the token from
    ///   [`access_token`](Self::access_token) or else the `DENO_KV_ACCESS_TOKEN` environment
    ///   variable, as Deno does. The metadata exchange runs before this returns, so a wrong URL
    ///   or token fails here. Needs the `remote` feature (on by default).
    /// - `postgres://…` or `postgresql://…`: a database in a PostgreSQL schema (libpq's URL
    ///   syntax, plus `openkv_schema=NAME`, default `openkv`), created and migrated on first
    ///   use; any number of processes may open it at once. Needs the `postgres` feature (on by
    ///   default). See `docs/design.md` §13.
    /// - `":memory:"`: a fresh in-memory database.
    /// - anything else: the SQLite file at that path (created if missing). A file written by
    ///   Deno CLI opens as is; schema versions below Deno's current (3) are migrated as Deno
    ///   would.
    pub async fn open(self, path: impl AsRef<Path>) -> Result<Kv> {
        let path = path.as_ref();
        let path = path
            .to_str()
            .ok_or_else(|| Error::storage(format!("the path {} is not UTF-8", path.display())))?
            .to_owned();
        match Engine::for_path(&path) {
            Engine::Remote => return self.open_remote(&path).await,
            Engine::Postgres => return self.open_postgres(&path).await,
            Engine::Sqlite => {}
        }
        let clock = self.clock.clone();
        let config = SqliteConfig {
            sweep_interval: self.sweep_interval,
            rng_seed: self.rng_seed,
            change_log: self.change_log,
            replica: self.replica_store,
        };
        // Opening may wait on another process's lock while migrating: off the async threads.
        let backend =
            tokio::task::spawn_blocking(move || SqliteBackend::open(&path, clock, config))
                .await
                .map_err(|e| Error::storage_caused("opening the database panicked", e))??;
        Ok(self.with_backend(Arc::new(backend)))
    }

    /// Opens a read replica (docs/design.md §14): the SQLite file `local` follows the
    /// `openkv serve` at `primary` (a KV Connect URL; the access token as for any remote
    /// database), bootstrapping from its snapshot if `local` does not follow it yet, then
    /// applying its change log. The `Kv` serves reads from `local` (strong ones after a read
    /// index), and sends writes and queue calls to the primary; see
    /// [`Kv::replica_status`] for its lag. Returns at once: until the first bootstrap
    /// finished, reads go to the primary too.
    #[cfg(feature = "remote")]
    pub async fn open_replica(
        mut self,
        primary: &str,
        local: impl AsRef<Path>,
        options: openkv_remote::ReplicaOptions,
    ) -> Result<Kv> {
        if !matches!(Engine::for_path(primary), Engine::Remote) {
            return Err(Error::InvalidOption(format!(
                "a replica follows an openkv serve URL (http:// or https://), not {primary:?}"
            )));
        }
        let local = local.as_ref();
        if !matches!(Engine::for_path(&local.to_string_lossy()), Engine::Sqlite)
            || local.as_os_str() == ":memory:"
        {
            return Err(Error::InvalidOption(format!(
                "a replica keeps its copy in a SQLite file, not {}",
                local.display()
            )));
        }
        let remote =
            openkv_remote::RemoteBackend::open(primary, self.remote.clone(), self.clock.clone())
                .await?;
        self.replica_store = true;
        self.change_log = None;
        let copy = self.clone().open(local).await?;
        let backend = openkv_remote::ReplicaBackend::start(
            copy.backend(),
            Arc::new(remote),
            self.clock.clone(),
            options,
        )
        .await?;
        Ok(self.with_backend(Arc::new(backend)))
    }

    #[cfg(feature = "remote")]
    async fn open_remote(self, url: &str) -> Result<Kv> {
        let backend =
            openkv_remote::RemoteBackend::open(url, self.remote.clone(), self.clock.clone())
                .await?;
        Ok(self.with_backend(Arc::new(backend)))
    }

    #[cfg(feature = "postgres")]
    async fn open_postgres(self, url: &str) -> Result<Kv> {
        let config = openkv_postgres::PostgresConfig::new(
            self.sweep_interval,
            self.rng_seed,
            self.postgres_pool_size,
        )
        .with_change_log(self.change_log)
        .with_read_replica(self.postgres_read_replica.clone());
        let backend =
            openkv_postgres::PostgresBackend::open(url, self.clock.clone(), config).await?;
        Ok(self.with_backend(Arc::new(backend)))
    }

    #[cfg(not(feature = "postgres"))]
    async fn open_postgres(self, url: &str) -> Result<Kv> {
        let _ = url;
        Err(Error::Unsupported(
            "this is a PostgreSQL URL, and this build of openkv has no `postgres` feature".into(),
        ))
    }

    #[cfg(not(feature = "remote"))]
    async fn open_remote(self, url: &str) -> Result<Kv> {
        Err(Error::Unsupported(format!(
            "{url} is a remote database, and this build of openkv has no `remote` feature"
        )))
    }
}

/// Opens the catalog of a server's many databases (`openkv serve --data-dir`): a directory of
/// SQLite files, or a PostgreSQL database (`postgres://…`, one schema per database; needs the
/// `postgres` feature). See [`openkv_core::catalog`].
pub async fn open_catalog(location: &str) -> std::result::Result<Arc<dyn Catalog>, CatalogError> {
    match Engine::for_path(location) {
        Engine::Sqlite if location == ":memory:" => Err(CatalogError::Storage(
            Error::InvalidOption("a data directory is a directory, not :memory:".into()),
        )),
        Engine::Sqlite => Ok(Arc::new(openkv_sqlite::catalog::DirCatalog::open(location)?)),
        Engine::Postgres => open_postgres_catalog(location).await,
        Engine::Remote => Err(CatalogError::Storage(Error::InvalidOption(format!(
            "a data directory is a directory or a postgres:// URL, not {location}"
        )))),
    }
}

#[cfg(feature = "postgres")]
async fn open_postgres_catalog(url: &str) -> std::result::Result<Arc<dyn Catalog>, CatalogError> {
    Ok(Arc::new(openkv_postgres::catalog::PgCatalog::open(url).await?))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres_catalog(url: &str) -> std::result::Result<Arc<dyn Catalog>, CatalogError> {
    let _ = url;
    Err(CatalogError::Storage(Error::Unsupported(
        "this is a PostgreSQL URL, and this build of openkv has no `postgres` feature".into(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_go_to_their_engine() {
        assert_eq!(Engine::for_path("https://kv.example.com"), Engine::Remote);
        assert_eq!(Engine::for_path("http://127.0.0.1:4512"), Engine::Remote);
        assert_eq!(Engine::for_path("postgresql://u@h/db?openkv_schema=a"), Engine::Postgres);
        assert_eq!(Engine::for_path("postgres://u@h/db"), Engine::Postgres);
        assert_eq!(Engine::for_path(":memory:"), Engine::Sqlite);
        assert_eq!(Engine::for_path("data/http:/x.sqlite3"), Engine::Sqlite);
        assert_eq!(Engine::for_path("kv.sqlite3"), Engine::Sqlite);
    }
}
