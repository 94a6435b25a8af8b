//! The PostgreSQL schema and its versioned migrations.
//!
//! A database is one PostgreSQL schema holding:
//! - `meta (name, value)`: `schema_version`, the `database_id` and the change log's
//!   `log_epoch` (a random UUID made with the log's table: see `openkv_core::changelog`);
//! - `kv (k bytea primary key, v, encoding, vs, expire_ms)`: entries; `bytea` compares byte by
//!   byte, which is the order of encoded keys; `vs` is the 10-byte versionstamp;
//! - `version (id = 0, v)`: the commit counter, one row — its row lock orders all commits;
//! - `queue (id, due_ms, payload, backoff, keys_if_undelivered, attempts, lease_until,
//!   lease_owner)`: queue messages, leased in place;
//! - `changelog (version, prev_version, ts_ms, bytes, changes)`: one record per commit made
//!   by a process with the change log on (`changelog.rs`); the table always exists, whether
//!   anyone writes to it is each process's option.
//!
//! Migrations run in one transaction under an advisory lock keyed by the schema name, so
//! servers starting together do not race; a schema newer than this build is refused.

use crate::error::{Error, Result};
use crate::shared::{pg_error, Sql};

/// The schema version this build writes.
pub const POSTGRES_SCHEMA_VERSION: i64 = 2;

/// Migration `i` brings the schema from version `i` to `i + 1`; `{s}` is the quoted schema,
/// `{epoch}` a fresh random UUID.
const MIGRATIONS: &[&str] = &[
    "
    create table {s}.kv (
        k bytea primary key,
        v bytea not null,
        encoding integer not null,
        vs bytea not null,
        expire_ms bigint
    );
    create index kv_expire_ms on {s}.kv (expire_ms) where expire_ms is not null;
    create table {s}.version (id integer primary key check (id = 0), v bigint not null);
    insert into {s}.version (id, v) values (0, 0);
    create table {s}.queue (
        id text primary key,
        due_ms bigint not null,
        payload bytea not null,
        backoff text not null,
        keys_if_undelivered text not null,
        attempts integer not null default 0,
        lease_until bigint,
        lease_owner text
    );
    create index queue_due_ms on {s}.queue (due_ms);
",
    // 2: the change log. Its epoch is made with the table, in the migration's transaction
    // (under its lock): every process of the schema reads the same one.
    "
    create table {s}.changelog (
        version bigint primary key,
        prev_version bigint not null,
        ts_ms bigint not null,
        bytes bigint not null,
        changes bytea not null
    );
    insert into {s}.meta (name, value) values ('log_epoch', '{epoch}')
        on conflict (name) do nothing;
",
];

/// Creates or migrates the schema; returns the database id.
pub(super) async fn migrate(client: &mut tokio_postgres::Client, sql: &Sql) -> Result<uuid::Uuid> {
    let err = |e| pg_error("creating the openkv schema", e);
    let s = format!("\"{}\"", sql.schema);
    let tx = client.transaction().await.map_err(err)?;
    tx.execute("select pg_advisory_xact_lock(hashtext($1))", &[&format!("openkv:{}", sql.schema)])
        .await
        .map_err(err)?;
    // `if not exists` on an existing schema is a NOTICE, which the driver logs: not news.
    tx.batch_execute(&format!(
        "set local client_min_messages = warning; \
         create schema if not exists {s}; \
         create table if not exists {s}.meta (name text primary key, value text not null);"
    ))
    .await
    .map_err(err)?;
    let meta = |name: &str| {
        let q = format!("select value from {s}.meta where name = '{name}'");
        let tx = &tx;
        async move { tx.query_opt(&q, &[]).await.map(|r| r.map(|r| r.get::<_, String>(0))) }
    };
    let version: i64 = match meta("schema_version").await.map_err(err)? {
        None => 0,
        Some(v) => v.parse().map_err(|_| {
            Error::UnsupportedSchema(format!("schema {s}: schema_version {v:?} is not a number"))
        })?,
    };
    if version > POSTGRES_SCHEMA_VERSION {
        return Err(Error::UnsupportedSchema(format!(
            "schema {s} is at version {version}, newer than this openkv knows \
             ({POSTGRES_SCHEMA_VERSION}); upgrade openkv"
        )));
    }
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let migration =
            migration.replace("{s}", &s).replace("{epoch}", &uuid::Uuid::new_v4().to_string());
        tx.batch_execute(&migration).await.map_err(err)?;
        tracing::info!("openkv: PostgreSQL schema {s} migrated to version {}", i + 1);
    }
    tx.execute(
        &format!(
            "insert into {s}.meta (name, value) values ('schema_version', $1) \
             on conflict (name) do update set value = excluded.value"
        ),
        &[&POSTGRES_SCHEMA_VERSION.to_string()],
    )
    .await
    .map_err(err)?;
    let id = match meta("database_id").await.map_err(err)? {
        Some(id) => uuid::Uuid::parse_str(&id).map_err(|e| {
            Error::UnsupportedSchema(format!("schema {s}: database_id {id:?} is not a UUID: {e}"))
        })?,
        None => {
            let id = uuid::Uuid::new_v4();
            tx.execute(
                &format!("insert into {s}.meta (name, value) values ('database_id', $1)"),
                &[&id.to_string()],
            )
            .await
            .map_err(err)?;
            id
        }
    };
    tx.commit().await.map_err(err)?;
    Ok(id)
}
