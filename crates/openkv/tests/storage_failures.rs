//! Real storage failures, on real filesystems mounted for the test:
//!
//! - a full disk (a 1 MiB tmpfs): the write that does not fit fails with `Error::DiskFull`,
//!   nothing acknowledged is lost, the store is *not* poisoned, and writes succeed again once
//!   space is freed;
//! - an I/O error (ext4 on a loop device whose sparse backing file lives on a tmpfs too small
//!   for it, so writeback fails and `fsync` returns EIO): the failing commit is an error, and the
//!   store then refuses every write (`Error::Poisoned`) instead of guessing what reached the disk.
//!   After reopening on healthy storage, every acknowledged write is there.
//!
//! Mounting needs root (CI runs as root); without it these tests fail and say so rather than
//! pretending to pass.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use openkv::{key, Error, Kv, Value};

/// Runs a command that must succeed; returns its stdout.
fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "`{cmd} {}` failed (these tests need root, as CI has): {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A mounted filesystem, unmounted (and its loop device detached) when dropped.
struct Mount {
    dir: PathBuf,
    loop_dev: Option<String>,
}

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Mount {
        run("mount", &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", path(dir)]);
        Mount { dir: dir.to_owned(), loop_dev: None }
    }

    /// ext4 of `fs_size` on a loop device over a sparse file in `backing` (a small tmpfs).
    fn ext4_on_loop(dir: &Path, backing: &Path, fs_size: &str) -> Mount {
        let img = backing.join("disk.img");
        run("truncate", &["-s", fs_size, path(&img)]);
        run("mkfs.ext4", &["-q", "-F", path(&img)]);
        let dev = run("losetup", &["-f", "--show", path(&img)]).trim().to_owned();
        let mount = Mount { dir: dir.to_owned(), loop_dev: Some(dev.clone()) };
        run("mount", &["-o", "errors=continue", &dev, path(dir)]);
        mount
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        if let Some(dev) = &self.loop_dev {
            let _ = Command::new("losetup").args(["-d", dev]).status();
        }
    }
}

#[tokio::test]
async fn a_full_disk_is_a_clear_error_and_the_store_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let _mount = Mount::tmpfs(dir.path(), "1m");
    // Ballast we can delete later to make room again.
    let ballast = dir.path().join("ballast");
    std::fs::write(&ballast, vec![0u8; 256 * 1024]).unwrap();

    let kv = Kv::open(dir.path().join("db.sqlite3")).await.unwrap();
    let mut acknowledged = Vec::new();
    let mut full = None;
    for i in 0..200u32 {
        match kv.set(&key!["blob", i], Value::Bytes(vec![i as u8; 60_000])).await {
            Ok(vs) => acknowledged.push((i, vs)),
            Err(e) => {
                full = Some(e);
                break;
            }
        }
    }
    let err = full.expect("1 MiB cannot hold 200 × 60 kB");
    assert!(matches!(err, Error::DiskFull(_)), "expected DiskFull, got {err:?}");
    assert!(!err.is_client_error());
    assert!(!acknowledged.is_empty());
    // Everything acknowledged is readable.
    for (i, vs) in &acknowledged {
        let e = kv.get(&key!["blob", *i]).await.unwrap().unwrap();
        assert_eq!(e.versionstamp, *vs);
        assert_eq!(e.value, Value::Bytes(vec![*i as u8; 60_000]));
    }
    // Free space: the same store takes writes again (it was not poisoned).
    std::fs::remove_file(&ballast).unwrap();
    let vs = kv.set(&key!["after"], Value::Bytes(vec![1; 1000])).await.unwrap();
    assert!(vs > acknowledged.last().unwrap().1);
    kv.close().await.unwrap();

    let kv = Kv::open(dir.path().join("db.sqlite3")).await.unwrap();
    assert_eq!(kv.get(&key!["after"]).await.unwrap().unwrap().versionstamp, vs);
    for (i, _) in &acknowledged {
        assert!(kv.get(&key!["blob", *i]).await.unwrap().is_some(), "write {i} lost");
    }
    kv.close().await.unwrap();
}

#[tokio::test]
async fn an_io_error_poisons_the_store_and_no_acknowledged_write_is_lost() {
    let root = tempfile::tempdir().unwrap();
    let (backing, data) = (root.path().join("backing"), root.path().join("data"));
    std::fs::create_dir_all(&backing).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    let back = Mount::tmpfs(&backing, "3m");
    let disk = Mount::ext4_on_loop(&data, &backing, "64M");
    let db = data.join("db.sqlite3");

    let kv = Kv::open(&db).await.unwrap();
    let mut acknowledged = Vec::new();
    let mut failure = None;
    for i in 0..400u32 {
        match kv.set(&key!["blob", i], Value::Bytes(vec![i as u8; 30_000])).await {
            Ok(vs) => acknowledged.push((i, vs)),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let err = failure.expect("the 3 MiB backing store cannot take 400 × 30 kB");
    assert!(matches!(err, Error::Storage(_)), "expected an I/O error, got {err:?}");
    assert!(err.to_string().contains("I/O"), "{err}");
    let sqlite_error = |e: &Error| {
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            if let Some(sqlite) = cause.downcast_ref::<rusqlite::Error>() {
                return sqlite.sqlite_error_code();
            }
            source = cause.source();
        }
        None
    };
    // SQLite's own error is kept, typed.
    assert_eq!(sqlite_error(&err), Some(rusqlite::ErrorCode::SystemIoFailure), "{err:?}");
    // From now on the store refuses writes rather than guess what reached the disk; the
    // failure that poisoned it stays reachable.
    for _ in 0..3 {
        let again = kv.set(&key!["after"], Value::U64(1)).await.unwrap_err();
        assert!(matches!(again, Error::Poisoned(_)), "expected Poisoned, got {again:?}");
        assert_eq!(sqlite_error(&again), Some(rusqlite::ErrorCode::SystemIoFailure));
    }
    assert!(matches!(kv.close().await, Err(Error::Poisoned(_))));
    drop(kv);

    // Copy what the failed filesystem still holds to healthy storage and reopen there: SQLite
    // recovery replays the WAL, and every acknowledged write must be present.
    let rescued = root.path().join("rescued");
    std::fs::create_dir_all(&rescued).unwrap();
    for name in ["db.sqlite3", "db.sqlite3-wal"] {
        let from = data.join(name);
        if from.exists() {
            std::fs::copy(&from, rescued.join(name)).unwrap();
        }
    }
    drop(disk);
    drop(back);
    let kv = Kv::open(rescued.join("db.sqlite3")).await.unwrap();
    for (i, vs) in &acknowledged {
        let e = kv.get(&key!["blob", *i]).await.unwrap();
        assert_eq!(e.map(|e| e.versionstamp), Some(*vs), "acknowledged write {i} lost");
    }
    kv.close().await.unwrap();
}
