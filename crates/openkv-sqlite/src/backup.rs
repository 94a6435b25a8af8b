//! Online backups of a SQLite database, and the check a backup must pass before it is
//! trusted.
//!
//! A backup is `VACUUM INTO` run in a read transaction of its own: SQLite writes a compact,
//! self-contained copy of one consistent snapshot (every commit acknowledged before the read
//! began, none after) while the writer keeps committing in WAL mode. The copy is written to a
//! temporary name beside the destination, fsynced, verified, and only then renamed into place,
//! so a crash or a failed check never leaves a half-written file under the destination's name.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::schema::SCHEMA_VERSION;
use crate::backend::BackupSummary;
use crate::error::{Error, Failure, Result};

/// A file that is not a backup we can use, for a reason in words.
fn bad(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::InvalidBackup(Failure::new(format!(
        "{} is not a valid openkv/Deno KV database: {why}",
        path.display()
    )))
}

/// A file that SQLite cannot read as a backup, with SQLite's error as the source.
fn bad_sqlite(path: &Path, e: rusqlite::Error) -> Error {
    Error::InvalidBackup(Failure::caused(
        format_args!("{} is not a valid openkv/Deno KV database", path.display()),
        e,
    ))
}

/// Verifies a copy this process made itself (a backup it wrote or downloaded): one that does
/// not verify was broken on its way to the disk, a storage failure of ours, not a bad file
/// handed to us. Same words, the class of a storage error.
pub fn verify_own_copy(path: &Path) -> Result<BackupSummary> {
    verify(path).map_err(|e| match e {
        Error::InvalidBackup(failure) => Error::Storage(failure),
        other => other,
    })
}

/// Opens `path` read-only and checks that it is a complete Deno KV database of a schema this
/// build understands: `PRAGMA integrity_check` passes, `migration_state` says version 3, and
/// the tables Deno's schema has are there.
pub fn verify(path: &Path) -> Result<BackupSummary> {
    let size = std::fs::metadata(path)
        .map_err(|e| Error::storage_caused(format_args!("cannot read {}", path.display()), e))?
        .len();
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| bad_sqlite(path, e))?;
    let check: String = conn
        .query_row("pragma integrity_check", [], |r| r.get(0))
        .map_err(|e| bad_sqlite(path, e))?;
    if check != "ok" {
        return Err(bad(path, format!("integrity_check says {check:?}")));
    }
    let schema: Option<i64> = conn
        .query_row("select version from migration_state where k = 0", [], |r| r.get(0))
        .optional()
        .map_err(|e| bad_sqlite(path, e))?;
    match schema {
        Some(SCHEMA_VERSION) => {}
        Some(other) => {
            return Err(bad(path, format!("schema version {other}, expected {SCHEMA_VERSION}")))
        }
        None => return Err(bad(path, "no schema version")),
    }
    let count = |sql: &str| -> Result<u64> {
        let n: i64 = conn.query_row(sql, [], |r| r.get(0)).map_err(|e| bad_sqlite(path, e))?;
        Ok(n.max(0) as u64)
    };
    Ok(BackupSummary::new(
        count("select count(*) from kv")?,
        count("select (select count(*) from queue) + (select count(*) from queue_running)")?,
        count("select version from data_version where k = 0")?,
        size,
    ))
}

/// A temporary name beside `dest`, in the same directory so that the final rename is atomic.
pub fn temporary_beside(dest: &Path) -> PathBuf {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dest.with_file_name(format!(".{name}.openkv-partial-{}", std::process::id()))
}

/// Makes a completed temporary file durable and moves it to `dest`: fsync the file, rename,
/// fsync the directory.
pub fn install(temporary: &Path, dest: &Path) -> Result<()> {
    let io = |what: &str, e: std::io::Error| Error::storage_caused(what, e);
    std::fs::File::open(temporary)
        .and_then(|f| f.sync_all())
        .map_err(|e| io(&format!("syncing {}", temporary.display()), e))?;
    std::fs::rename(temporary, dest)
        .map_err(|e| io(&format!("renaming {} to {}", temporary.display(), dest.display()), e))?;
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(&format!("syncing {}", dir.display()), e))?;
    }
    Ok(())
}

/// Writes a consistent copy of the database open on `conn`'s file to `dest` (which must not
/// exist), verifies it, and returns what it holds.
pub(super) fn backup(conn: &Connection, dest: &Path) -> Result<BackupSummary> {
    if dest.exists() {
        return Err(Error::InvalidOption(format!(
            "{} already exists: a backup never overwrites a file",
            dest.display()
        )));
    }
    let temporary = temporary_beside(dest);
    let _ = std::fs::remove_file(&temporary);
    let result = (|| {
        let target = temporary.to_str().ok_or_else(|| {
            Error::InvalidOption(format!("the path {} is not UTF-8", temporary.display()))
        })?;
        conn.execute("vacuum into ?1", [target])?;
        let summary = verify_own_copy(&temporary)?;
        install(&temporary, dest)?;
        Ok(summary)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

/// The files SQLite keeps beside a database in WAL mode while it is open.
fn sidecars(db: &Path) -> [PathBuf; 2] {
    let name = db.as_os_str().to_owned();
    let with = |suffix: &str| {
        let mut n = name.clone();
        n.push(suffix);
        PathBuf::from(n)
    };
    [with("-wal"), with("-shm")]
}

/// Replaces the database at `target` with the backup at `backup`, atomically: the backup is
/// verified, copied beside the target, fsynced and renamed over it, so the target is at every
/// moment either the old database or the complete new one.
///
/// A database in WAL mode has `-wal`/`-shm` files beside it while any connection has it open
/// (SQLite removes them when the last one closes cleanly). If they are there, the target is in
/// use — or its last user crashed — and the restore is refused unless `force`: replacing a
/// file under a running process would lose its writes, and a stale `-wal` would be replayed
/// onto the restored file. With `force` they are deleted (do that only when nothing uses the
/// database). A missing target is created.
pub fn restore(backup: &Path, target: &Path, force: bool) -> Result<BackupSummary> {
    let summary = verify(backup)?;
    let in_use: Vec<PathBuf> = sidecars(target).into_iter().filter(|p| p.exists()).collect();
    if !in_use.is_empty() && !force {
        return Err(Error::InvalidOption(format!(
            "{} looks open elsewhere ({} exists): stop what uses it, or pass force if nothing \
             does (its last user crashed)",
            target.display(),
            in_use[0].display()
        )));
    }
    let temporary = temporary_beside(target);
    let result = (|| {
        std::fs::copy(backup, &temporary).map_err(|e| {
            let what = format!("copying {} to {}", backup.display(), temporary.display());
            Error::storage_caused(what, e)
        })?;
        for stale in &in_use {
            std::fs::remove_file(stale).map_err(|e| {
                Error::storage_caused(format_args!("removing the stale {}", stale.display()), e)
            })?;
        }
        // The copy's change log continues the backed-up history, which the restored
        // database leaves: a new epoch, so that no follower mistakes one for the other.
        let copy = super::shared::open_connection(&temporary, false)?;
        super::writer::with_write_txn(&copy, crate::changelog::restart)?;
        drop(copy);
        install(&temporary, target)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result.map(|()| summary)
}

/// Replaces the whole content of the live database open on `conn` with the backup at
/// `backup`, in one write transaction: readers see the old database or the new one, never a
/// mix, and every handle and server keeps working. The commit counter moves past both the
/// current and the backup's, so later versionstamps still increase. Returns the summary of
/// the verified backup.
pub(crate) fn restore_live(conn: &Connection, backup: &Path) -> Result<BackupSummary> {
    let summary = verify(backup)?;
    let source = backup.to_str().ok_or_else(|| {
        Error::InvalidOption(format!("the path {} is not UTF-8", backup.display()))
    })?;
    conn.execute("attach database ?1 as restore_source", [source])?;
    let replaced = super::writer::with_write_txn(conn, |conn| {
        for table in ["kv", "queue", "queue_running"] {
            conn.execute(&format!("delete from main.{table}"), [])?;
            conn.execute(
                &format!("insert into main.{table} select * from restore_source.{table}"),
                [],
            )?;
        }
        conn.execute(
            "update main.data_version set version = 1 + max(version, \
             (select version from restore_source.data_version where k = 0)) where k = 0",
            [],
        )?;
        let version: i64 =
            conn.query_row("select version from main.data_version where k = 0", [], |r| r.get(0))?;
        // The log's records describe the replaced content: followers start over.
        crate::changelog::restart(conn)?;
        Ok(version)
    });
    let detached = conn.execute("detach database restore_source", []);
    let version = replaced?;
    detached?;
    let mut summary = summary;
    summary.version = version as u64;
    Ok(summary)
}

/// The number of rows of a Deno-format file's `kv` table and a digest of all of them (key,
/// value, encoding, version, expiry, in key order): two files with the same digest hold the
/// same entries (a restore's verification compares two rebuilds with it).
pub fn content_digest(path: &Path) -> Result<(u64, u64)> {
    use std::hash::{Hash, Hasher};
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| bad_sqlite(path, e))?;
    let mut stmt = conn
        .prepare("select k, v, v_encoding, version, expiration_ms from kv order by k")
        .map_err(|e| bad_sqlite(path, e))?;
    let mut rows = stmt.query([]).map_err(|e| bad_sqlite(path, e))?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut n = 0u64;
    while let Some(row) = rows.next().map_err(|e| bad_sqlite(path, e))? {
        let key: Vec<u8> = row.get(0).map_err(|e| bad_sqlite(path, e))?;
        let value: Vec<u8> = row.get(1).map_err(|e| bad_sqlite(path, e))?;
        let numbers: [i64; 3] = [
            row.get(2).map_err(|e| bad_sqlite(path, e))?,
            row.get(3).map_err(|e| bad_sqlite(path, e))?,
            row.get(4).map_err(|e| bad_sqlite(path, e))?,
        ];
        (key, value, numbers).hash(&mut hasher);
        n += 1;
    }
    Ok((n, hasher.finish()))
}
