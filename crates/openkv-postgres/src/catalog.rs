//! Many databases on one PostgreSQL database (`openkv serve --data-dir postgres://…`): one
//! schema per openkv database (`kv_<name>`, `-` as `_`), and the catalog — which databases
//! exist, which tokens reach them — in the tables of the schema `openkv_catalog`, shared by
//! every server on that PostgreSQL.
//!
//! Invariants: a database is listed (a row in `databases`) before any server opens its schema,
//! and unlisted before its schema is dropped, both in one transaction each; creating a name
//! drops a schema left by an earlier database of that name in the same transaction that lists
//! it, so a new database is always empty. Token rows are never deleted, only marked revoked.

use std::str::FromStr;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use openkv_core::catalog::{Catalog, CatalogError, DatabaseName, Reach, Scope, TokenRecord};
use tokio_postgres::NoTls;

use crate::error::Error;
use crate::shared::pool_error;
use crate::url::split_schema_param;

/// The schema of the catalog's own tables.
pub const CATALOG_SCHEMA: &str = "openkv_catalog";
/// The prefix of a database's schema: `kv_app_prod` for the database `app-prod`.
pub const DATABASE_SCHEMA_PREFIX: &str = "kv_";

/// The catalog of the databases on one PostgreSQL database.
pub struct PgCatalog {
    /// The URL without `openkv_schema` (the databases' URLs add their own).
    url: String,
    pool: Pool,
}

impl std::fmt::Debug for PgCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCatalog").field("url", &crate::url::redact_password(&self.url)).finish()
    }
}

fn pg(context: &str) -> impl Fn(tokio_postgres::Error) -> CatalogError + '_ {
    move |e| CatalogError::Storage(crate::pg_error(context, e))
}

impl PgCatalog {
    /// Connects to the PostgreSQL database at `url` and creates the catalog's tables if
    /// missing. The URL names no `openkv_schema`: every database gets a schema of its own.
    pub async fn open(url: &str) -> Result<PgCatalog, CatalogError> {
        let (driver_url, schema) = split_schema_param(url)?;
        if schema.is_some() {
            return Err(Error::InvalidOption(
                "a data directory on PostgreSQL takes no openkv_schema: each database gets \
                 its own schema (kv_<name>)"
                    .into(),
            )
            .into());
        }
        let config = tokio_postgres::Config::from_str(&driver_url).map_err(|e| {
            Error::InvalidOption(format!("bad PostgreSQL URL (see libpq's URI syntax): {e}"))
        })?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(2)
            .build()
            .map_err(|e| Error::Internal(format!("building the PostgreSQL pool: {e}")))?;
        let catalog = PgCatalog { url: driver_url, pool };
        catalog.create_tables().await?;
        Ok(catalog)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, CatalogError> {
        self.pool.get().await.map_err(|e| CatalogError::Storage(pool_error(e)))
    }

    async fn create_tables(&self) -> Result<(), CatalogError> {
        let mut client = self.client().await?;
        let err = pg("creating the openkv catalog");
        let tx = client.transaction().await.map_err(&err)?;
        tx.execute("select pg_advisory_xact_lock(hashtext('openkv:catalog'))", &[])
            .await
            .map_err(&err)?;
        tx.batch_execute(&format!(
            "set local client_min_messages = warning; \
             create schema if not exists {CATALOG_SCHEMA}; \
             create table if not exists {CATALOG_SCHEMA}.databases ( \
               name text primary key, created_at_ms bigint not null); \
             create table if not exists {CATALOG_SCHEMA}.tokens ( \
               id text primary key, secret_sha256 bytea not null, \
               databases text[], scope text not null, expires_at_ms bigint, \
               revoked_at_ms bigint, created_at_ms bigint not null, \
               description text not null default '');"
        ))
        .await
        .map_err(&err)?;
        tx.commit().await.map_err(&err)?;
        Ok(())
    }
}

/// The schema of the database `name`.
pub fn database_schema(name: &DatabaseName) -> String {
    format!("{DATABASE_SCHEMA_PREFIX}{}", name.as_str().replace('-', "_"))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn to_i64(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

#[async_trait]
impl Catalog for PgCatalog {
    async fn databases(&self) -> Result<Vec<DatabaseName>, CatalogError> {
        let client = self.client().await?;
        let rows = client
            .query(&format!("select name from {CATALOG_SCHEMA}.databases order by name"), &[])
            .await
            .map_err(pg("listing databases"))?;
        let mut names = Vec::new();
        for row in rows {
            let name: String = row.get(0);
            // A row that is not a name by our rules was not written by openkv: not served.
            match DatabaseName::new(&name) {
                Ok(name) => names.push(name),
                Err(e) => tracing::warn!("openkv_catalog.databases: skipping {e}"),
            }
        }
        Ok(names)
    }

    async fn create_database(&self, name: &DatabaseName) -> Result<(), CatalogError> {
        let mut client = self.client().await?;
        let err = pg("creating a database");
        let tx = client.transaction().await.map_err(&err)?;
        let inserted = tx
            .execute(
                &format!(
                    "insert into {CATALOG_SCHEMA}.databases (name, created_at_ms) values ($1, $2) \
                     on conflict (name) do nothing"
                ),
                &[&name.as_str(), &now_ms()],
            )
            .await
            .map_err(&err)?;
        if inserted == 0 {
            return Err(CatalogError::Exists(format!("database {name}")));
        }
        tx.batch_execute(&format!(
            "set local client_min_messages = warning; drop schema if exists \"{}\" cascade;",
            database_schema(name)
        ))
        .await
        .map_err(&err)?;
        tx.commit().await.map_err(&err)?;
        Ok(())
    }

    async fn delete_database(&self, name: &DatabaseName) -> Result<(), CatalogError> {
        let mut client = self.client().await?;
        let err = pg("deleting a database");
        let tx = client.transaction().await.map_err(&err)?;
        let deleted = tx
            .execute(
                &format!("delete from {CATALOG_SCHEMA}.databases where name = $1"),
                &[&name.as_str()],
            )
            .await
            .map_err(&err)?;
        if deleted == 0 {
            return Err(CatalogError::NotFound(format!("database {name}")));
        }
        tx.batch_execute(&format!("drop schema if exists \"{}\" cascade;", database_schema(name)))
            .await
            .map_err(&err)?;
        tx.commit().await.map_err(&err)?;
        Ok(())
    }

    fn database_location(&self, name: &DatabaseName) -> String {
        let separator = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{separator}openkv_schema={}", self.url, database_schema(name))
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>, CatalogError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "select id, secret_sha256, databases, scope, expires_at_ms, revoked_at_ms, \
                     created_at_ms, description from {CATALOG_SCHEMA}.tokens order by created_at_ms, id"
                ),
                &[],
            )
            .await
            .map_err(pg("reading tokens"))?;
        rows.iter().map(token_from_row).collect()
    }

    async fn add_token(&self, token: TokenRecord) -> Result<(), CatalogError> {
        let client = self.client().await?;
        let databases: Option<Vec<String>> = match &token.reach {
            Reach::All => None,
            Reach::Only(names) => Some(names.iter().map(|n| n.to_string()).collect()),
            // A reach the table cannot say is stored as no database, never as all.
            _ => Some(Vec::new()),
        };
        let inserted = client
            .execute(
                &format!(
                    "insert into {CATALOG_SCHEMA}.tokens (id, secret_sha256, databases, scope, \
                     expires_at_ms, revoked_at_ms, created_at_ms, description) \
                     values ($1, $2, $3, $4, $5, $6, $7, $8) on conflict (id) do nothing"
                ),
                &[
                    &token.id,
                    &token.secret_hash.as_slice(),
                    &databases,
                    &token.scope.as_str(),
                    &token.expires_at_ms.map(to_i64),
                    &token.revoked_at_ms.map(to_i64),
                    &to_i64(token.created_at_ms),
                    &token.description,
                ],
            )
            .await
            .map_err(pg("storing a token"))?;
        if inserted == 0 {
            return Err(CatalogError::Exists(format!("token {}", token.id)));
        }
        Ok(())
    }

    async fn revoke_token(&self, id: &str, at_ms: u64) -> Result<(), CatalogError> {
        let client = self.client().await?;
        let found = client
            .execute(
                &format!(
                    "update {CATALOG_SCHEMA}.tokens set revoked_at_ms = coalesce(revoked_at_ms, $2) \
                     where id = $1"
                ),
                &[&id, &to_i64(at_ms)],
            )
            .await
            .map_err(pg("revoking a token"))?;
        if found == 0 {
            return Err(CatalogError::NotFound(format!("token {id}")));
        }
        Ok(())
    }
}

fn token_from_row(row: &tokio_postgres::Row) -> Result<TokenRecord, CatalogError> {
    let id: String = row.get(0);
    let corrupt = |why: String| CatalogError::Storage(Error::corrupt(format!("token {id}: {why}")));
    let hash: Vec<u8> = row.get(1);
    let hash: [u8; 32] =
        hash.try_into().map_err(|_| corrupt("secret_sha256 is not 32 bytes".into()))?;
    let reach = match row.get::<_, Option<Vec<String>>>(2) {
        None => Reach::All,
        Some(names) => Reach::Only(
            names
                .iter()
                .map(|n| DatabaseName::new(n))
                .collect::<Result<_, _>>()
                .map_err(|e| corrupt(e.to_string()))?,
        ),
    };
    let scope = Scope::parse(row.get(3)).map_err(|e| corrupt(e.to_string()))?;
    let ms = |v: Option<i64>| v.map(|v| u64::try_from(v).unwrap_or(0));
    let created: i64 = row.get(6);
    let mut record =
        TokenRecord::new(id.clone(), hash, reach, scope, ms(Some(created)).unwrap_or(0));
    record.expires_at_ms = ms(row.get(4));
    record.revoked_at_ms = ms(row.get(5));
    record.description = row.get(7);
    Ok(record)
}
