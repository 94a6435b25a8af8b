//! Deno KV's SQLite schema (version 3) and the migrations that build it.
//!
//! The SQL is Deno's, statement for statement, so that a file created here is the file Deno
//! would have created (same `sqlite_master`), and a file Deno created at any schema version
//! migrates forward the way Deno would migrate it.

use rusqlite::{Connection, OptionalExtension};

use crate::error::{Error, Result};

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: i64 = 3;

const CREATE_MIGRATION_TABLE: &str = "
create table if not exists migration_state(
  k integer not null primary key,
  version integer not null
)
";

/// Deno's migrations; entry `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: [&str; 3] = [
    "
create table data_version (
  k integer primary key,
  version integer not null
);
insert into data_version (k, version) values (0, 0);
create table kv (
  k blob primary key,
  v blob not null,
  v_encoding integer not null,
  version integer not null
) without rowid;
",
    "
create table queue (
  ts integer not null,
  id text not null,
  data blob not null,
  backoff_schedule text not null,
  keys_if_undelivered blob not null,

  primary key (ts, id)
);
create table queue_running(
  deadline integer not null,
  id text not null,
  data blob not null,
  backoff_schedule text not null,
  keys_if_undelivered blob not null,

  primary key (deadline, id)
);
",
    "
alter table kv add column seq integer not null default 0;
alter table data_version add column seq integer not null default 0;
alter table kv add column expiration_ms integer not null default -1;
create index kv_expiration_ms_idx on kv (expiration_ms);
",
];

/// Brings the schema to [`SCHEMA_VERSION`] inside the caller's write transaction.
/// Refuses a file from a newer Deno (a higher version) rather than guess at its layout.
pub fn migrate(conn: &Connection) -> Result<()> {
    conn.execute(CREATE_MIGRATION_TABLE, [])?;
    let current: i64 = conn
        .query_row("select version from migration_state where k = 0", [], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    if current > SCHEMA_VERSION {
        return Err(Error::UnsupportedSchema(format!(
            "the file has Deno KV schema version {current}; this build understands up to \
             {SCHEMA_VERSION} (upgrade openkv)"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i as i64 + 1;
        if version > current {
            conn.execute_batch(sql).map_err(|e| {
                Error::UnsupportedSchema(format!(
                    "migrating to Deno KV schema version {version} failed ({e}); \
                     is this a Deno KV database?"
                ))
            })?;
            conn.execute("replace into migration_state (k, version) values (0, ?)", [version])?;
        }
    }
    Ok(())
}

/// The database's id, from openkv's own table `openkv_meta` (created, with a random id, the
/// first time it is asked for; Deno ignores tables it does not know).
pub fn database_id(conn: &Connection) -> Result<uuid::Uuid> {
    super::writer::with_write_txn(conn, |conn| {
        conn.execute(
            "create table if not exists openkv_meta (k text primary key, v text not null)",
            [],
        )?;
        let existing: Option<String> = conn
            .query_row("select v from openkv_meta where k = 'database_id'", [], |r| r.get(0))
            .optional()?;
        if let Some(text) = existing {
            return uuid::Uuid::parse_str(&text).map_err(|e| {
                Error::UnsupportedSchema(format!(
                    "openkv_meta.database_id {text:?} is not a UUID: {e}"
                ))
            });
        }
        let id = uuid::Uuid::new_v4();
        conn.execute(
            "insert into openkv_meta (k, v) values ('database_id', ?1)",
            [id.to_string()],
        )?;
        Ok(id)
    })
}
