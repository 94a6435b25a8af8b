//! `openkv backup` and `openkv restore` with the real binary: a backup taken while four
//! writers run holds every write acknowledged before it began, restores into a file that
//! passes the integrity check and that the Deno CLI opens; a backup through `openkv serve`;
//! and every refusal (existing destination, corrupt backup, target in use, a server as
//! target) with a clear message, a non-zero exit and the target untouched.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openkv::{key, Kv, Value};
use support::{Target, TOKEN};

type Acked = Arc<Mutex<HashSet<(u32, u32)>>>;

/// Four writer tasks on `path` in a runtime of their own, until `stop`.
fn writers(
    path: std::path::PathBuf,
    stop: Arc<AtomicBool>,
    acked: Acked,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let kv = Kv::open(&path).await.unwrap();
            let tasks: Vec<_> = (0..4u32)
                .map(|w| {
                    let (kv, stop, acked) = (kv.clone(), stop.clone(), acked.clone());
                    tokio::spawn(async move {
                        let mut i = 0u32;
                        while !stop.load(Ordering::SeqCst) {
                            kv.set(&key!["w", w, i], Value::Bytes(vec![1; 64])).await.unwrap();
                            acked.lock().unwrap().insert((w, i));
                            i += 1;
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            kv.close().await.unwrap();
        });
    })
}

fn deno_count(path: &std::path::Path) -> usize {
    let out = common::run_deno_script("count_keys.ts", &[path.as_os_str(), "w".as_ref()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout.trim().strip_prefix("count ").unwrap().parse().unwrap()
}

#[test]
fn a_backup_under_four_writers_restores_to_a_file_deno_opens_with_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let (live, backup, restored) = (
        dir.path().join("live.sqlite3"),
        dir.path().join("b.sqlite3"),
        dir.path().join("r.sqlite3"),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Acked = Arc::default();
    let writing = writers(live.clone(), stop.clone(), acked.clone());
    std::thread::sleep(Duration::from_millis(500));
    let before = acked.lock().unwrap().clone();
    let out = Target::file(&live).run(&["backup", backup.to_str().unwrap()]).ok();
    assert!(out.stderr.contains("verified"), "{out:?}");
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::SeqCst);
    writing.join().unwrap();
    let after = acked.lock().unwrap().len();
    assert!(
        before.len() > 20 && after > before.len(),
        "writers ran: {} then {after}",
        before.len()
    );

    Target::file(&restored).run(&["restore", backup.to_str().unwrap()]).ok();
    let summary = openkv::verify_backup(&restored).expect("integrity_check and schema");
    assert!(summary.entries as usize >= before.len());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let kv = Kv::open(&restored).await.unwrap();
        for &(w, i) in &before {
            assert!(kv.get(&key!["w", w, i]).await.unwrap().is_some(), "({w}, {i}) lost");
        }
        kv.close().await.unwrap();
    });
    assert_eq!(deno_count(&restored), summary.entries as usize, "Deno reads every entry");
}

#[test]
fn a_backup_of_a_server_is_downloaded_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let mut served = Target::served(&dir.path().join("served.sqlite3"));
    for i in 0..50 {
        served.run(&["set", &format!(r#"["w", {i}]"#), "1"]).ok();
    }
    let backup = dir.path().join("from-server.sqlite3");
    served.run(&["backup", backup.to_str().unwrap()]).ok();
    served.stop();
    assert_eq!(openkv::verify_backup(&backup).unwrap().entries, 50);
    assert_eq!(deno_count(&backup), 50);
    // Restored into another running server: its content is replaced while it serves.
    let mut other = Target::served(&dir.path().join("other.sqlite3"));
    other.run(&["set", r#"["old"]"#, "1"]).ok();
    other.run(&["restore", backup.to_str().unwrap()]).ok();
    other.run(&["get", r#"["old"]"#]).fails(3, "");
    assert_eq!(other.run(&["count", "--prefix", r#"["w"]"#]).ok().stdout.trim(), "50");
    // A corrupt upload is refused by the server, content untouched.
    let corrupt = dir.path().join("corrupt.sqlite3");
    let bytes = std::fs::read(&backup).unwrap();
    std::fs::write(&corrupt, &bytes[..bytes.len() / 2]).unwrap();
    other.run(&["restore", corrupt.to_str().unwrap()]).fails(1, "not a valid");
    assert_eq!(other.run(&["count", "--prefix", r#"["w"]"#]).ok().stdout.trim(), "50");
    other.stop();
    let _ = TOKEN;
}

#[test]
fn refusals_leave_everything_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let live = Target::file(&dir.path().join("live.sqlite3"));
    live.run(&["set", r#"["a"]"#, "1"]).ok();
    let backup = dir.path().join("b.sqlite3");
    live.run(&["backup", backup.to_str().unwrap()]).ok();

    // An existing destination is never overwritten.
    live.run(&["backup", backup.to_str().unwrap()]).fails(2, "already exists");

    // A corrupt backup is refused before the target is touched.
    let target = Target::file(&dir.path().join("target.sqlite3"));
    target.run(&["set", r#"["old"]"#, "1"]).ok();
    let before = std::fs::read(&target.file).unwrap();
    let corrupt = dir.path().join("corrupt.sqlite3");
    let bytes = std::fs::read(&backup).unwrap();
    std::fs::write(&corrupt, &bytes[..bytes.len() / 2]).unwrap();
    target.run(&["restore", corrupt.to_str().unwrap()]).fails(1, "not a valid");
    target.run(&["restore", "/no/such/backup"]).fails(1, "no/such/backup");
    assert_eq!(std::fs::read(&target.file).unwrap(), before);

    // A target open elsewhere is refused unless --force.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let open = rt.block_on(Kv::open(&target.file)).unwrap();
    target.run(&["restore", backup.to_str().unwrap()]).fails(2, "open elsewhere");
    rt.block_on(open.close()).unwrap();
    target.run(&["restore", backup.to_str().unwrap()]).ok();
    let got = target.run(&["get", r#"["a"]"#]).ok();
    assert!(got.stdout.contains('1'), "{got:?}");
    target.run(&["get", r#"["old"]"#]).fails(3, "");
}
