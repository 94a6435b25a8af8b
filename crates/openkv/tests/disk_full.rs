//! A full disk: the write that does not fit fails with `Error::DiskFull`, nothing acknowledged
//! is lost, the store is not poisoned, and writes succeed again once space is freed.
//!
//! The disk is a real 1 MiB tmpfs mounted for the test, so this test needs root (CI runs as
//! root); without it the test fails and says so rather than pretending to pass.

use std::path::{Path, PathBuf};
use std::process::Command;

use openkv::{key, Error, Kv, Value};

struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Mount {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs and needs root (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Mount(dir.to_owned())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
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
