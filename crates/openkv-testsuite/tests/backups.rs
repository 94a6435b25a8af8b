//! Online backups: taken while writers run, on a file and through `openkv serve`; verified;
//! refused where they must be (denokv, PostgreSQL).

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openkv::{key, verify_backup, Error, Kv, Value};
use openkv_server::ServerConfig;
use openkv_testsuite::fixtures::{self, Server, TOKEN};

/// Four writers commit numbered keys until told to stop; every acknowledged key is recorded.
fn start_writers(
    kv: &Kv,
    stop: &Arc<AtomicBool>,
    acked: &Arc<Mutex<HashSet<(u32, u32)>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..4u32)
        .map(|w| {
            let (kv, stop, acked) = (kv.clone(), stop.clone(), acked.clone());
            tokio::spawn(async move {
                let mut i = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    kv.set(&key!["w", w, i], Value::Bytes(vec![7; 100])).await.unwrap();
                    acked.lock().unwrap().insert((w, i));
                    i += 1;
                }
            })
        })
        .collect()
}

async fn backup_under_load(kv: &Kv, dest: &std::path::Path) -> HashSet<(u32, u32)> {
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<HashSet<(u32, u32)>>> = Arc::default();
    let writers = start_writers(kv, &stop, &acked);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = acked.lock().unwrap().clone();
    let summary = kv.backup(dest).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    let after = acked.lock().unwrap().len();
    assert!(before.len() > 10, "the writers were writing ({} acks)", before.len());
    assert!(after > before.len(), "and kept writing during the backup");
    assert!(summary.entries as usize >= before.len());
    before
}

async fn assert_contains(backup: &std::path::Path, acked: &HashSet<(u32, u32)>) {
    let summary = verify_backup(backup).unwrap();
    assert!(summary.entries as usize >= acked.len());
    let copy = Kv::open(backup).await.unwrap();
    for &(w, i) in acked {
        assert!(copy.get(&key!["w", w, i]).await.unwrap().is_some(), "({w}, {i}) missing");
    }
    copy.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_four_writers_run_holds_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let kv = Kv::open(dir.path().join("live.sqlite3")).await.unwrap();
    let dest = dir.path().join("backup.sqlite3");
    let acked = backup_under_load(&kv, &dest).await;
    kv.close().await.unwrap();
    assert_contains(&dest, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_through_openkv_serve_is_downloaded_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("served.sqlite3"), ServerConfig::new(TOKEN)).await;
    let kv = fixtures::remote(&server.url).await;
    let dest = dir.path().join("remote-backup.sqlite3");
    let acked = backup_under_load(&kv, &dest).await;
    kv.close().await.unwrap();
    server.stop().await;
    assert_contains(&dest, &acked).await;
    // No partial files left beside it.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains("partial")), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_never_overwrite_and_bad_files_do_not_verify() {
    let dir = tempfile::tempdir().unwrap();
    let kv = Kv::open(dir.path().join("live.sqlite3")).await.unwrap();
    let taken = dir.path().join("taken.sqlite3");
    std::fs::write(&taken, b"precious").unwrap();
    let err = kv.backup(&taken).await.unwrap_err();
    assert!(matches!(err, Error::InvalidOption(_)), "{err:?}");
    assert_eq!(std::fs::read(&taken).unwrap(), b"precious", "untouched");
    // The store is fine afterwards (a failed backup does not poison it).
    kv.set(&key!["still"], Value::Bytes(vec![1])).await.unwrap();

    // Not a database; a truncated one; a missing one.
    assert!(verify_backup(&taken).is_err());
    let good = dir.path().join("good.sqlite3");
    kv.backup(&good).await.unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.path().join("truncated.sqlite3");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = verify_backup(&truncated).unwrap_err();
    assert!(err.to_string().contains("not a valid"), "{err}");
    assert!(verify_backup(&dir.path().join("missing.sqlite3")).is_err());
    kv.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denokv_cannot_make_backups_and_says_so() {
    let Some(fixture) = fixtures::denokv().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let err = fixture.kv.backup(dir.path().join("b.sqlite3")).await.unwrap_err();
    assert!(matches!(&err, Error::Unsupported(m) if m.contains("denokv")), "{err:?}");
    fixture.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_replaces_a_closed_database_and_refuses_one_in_use_or_a_bad_backup() {
    let dir = tempfile::tempdir().unwrap();
    let (source, backup, target) = (
        dir.path().join("src.sqlite3"),
        dir.path().join("b.sqlite3"),
        dir.path().join("t.sqlite3"),
    );
    let kv = Kv::open(&source).await.unwrap();
    kv.set(&key!["from", "backup"], Value::Bytes(vec![1])).await.unwrap();
    kv.backup(&backup).await.unwrap();
    kv.close().await.unwrap();

    // The target is open (its -wal/-shm exist): refused, untouched.
    let live = Kv::open(&target).await.unwrap();
    live.set(&key!["old"], Value::Bytes(vec![2])).await.unwrap();
    let err = openkv::restore_backup(&backup, &target, false).unwrap_err();
    assert!(err.to_string().contains("open elsewhere"), "{err}");
    assert!(live.get(&key!["old"]).await.unwrap().is_some());
    live.close().await.unwrap();

    // A corrupt backup: refused, target untouched.
    let corrupt = dir.path().join("corrupt.sqlite3");
    let bytes = std::fs::read(&backup).unwrap();
    std::fs::write(&corrupt, &bytes[..bytes.len() - 1000]).unwrap();
    let before = std::fs::read(&target).unwrap();
    assert!(openkv::restore_backup(&corrupt, &target, false).is_err());
    assert_eq!(std::fs::read(&target).unwrap(), before);

    // Closed: replaced by the backup's content.
    let summary = openkv::restore_backup(&backup, &target, false).unwrap();
    assert_eq!(summary.entries, 1);
    let restored = Kv::open(&target).await.unwrap();
    assert!(restored.get(&key!["from", "backup"]).await.unwrap().is_some());
    assert_eq!(restored.get(&key!["old"]).await.unwrap(), None);
    restored.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_from_replaces_a_live_database_in_one_step_locally_and_through_a_server() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let source = Kv::open(dir.path().join("src.sqlite3")).await.unwrap();
    source.set(&key!["restored"], Value::Bytes(vec![1])).await.unwrap();
    let backup = dir.path().join("b.sqlite3");
    source.backup(&backup).await.unwrap();
    source.close().await.unwrap();

    let server = Server::start(&dir.path().join("served.sqlite3"), ServerConfig::new(TOKEN)).await;
    let local = server.kv.clone();
    let remote = fixtures::remote(&server.url).await;
    for (name, kv) in [("local", &local), ("remote", &remote)] {
        kv.set(&key!["replaced"], Value::Bytes(vec![2])).await.unwrap();
        let before = kv.set(&key!["probe"], Value::Bytes(vec![3])).await.unwrap();
        let mut watch = kv.watch(&[key!["restored"]]).unwrap();
        assert_eq!(watch.next().await.unwrap().unwrap(), vec![None], "{name}");
        kv.restore_from(&backup).await.unwrap();
        assert!(kv.get(&key!["restored"]).await.unwrap().is_some(), "{name}");
        assert_eq!(kv.get(&key!["replaced"]).await.unwrap(), None, "{name}");
        let seen = tokio::time::timeout(Duration::from_secs(10), watch.next()).await.unwrap();
        assert!(seen.unwrap().unwrap()[0].is_some(), "{name}: the watcher saw the restore");
        let after = kv.set(&key!["probe"], Value::Bytes(vec![4])).await.unwrap();
        assert!(after > before, "{name}: versionstamps keep increasing");
        // Clean up for the next round.
        kv.delete(&key!["restored"]).await.unwrap();
    }
    // A corrupt backup is refused before anything changes, locally and by the server.
    let corrupt = dir.path().join("corrupt.sqlite3");
    let bytes = std::fs::read(&backup).unwrap();
    std::fs::write(&corrupt, &bytes[..bytes.len() / 2]).unwrap();
    assert!(local.restore_from(&corrupt).await.is_err());
    assert!(remote.restore_from(&corrupt).await.is_err());
    assert!(local.get(&key!["probe"]).await.unwrap().is_some(), "untouched");
    remote.close().await.unwrap();
    server.stop().await;

    // A read-only server refuses.
    let ro =
        Server::start(&dir.path().join("served.sqlite3"), ServerConfig::new(TOKEN).read_only(true))
            .await;
    let client = fixtures::remote(&ro.url).await;
    let err = client.restore_from(&backup).await.unwrap_err();
    assert!(matches!(err, Error::Remote { status: 403, .. }), "{err:?}");
    client.close().await.unwrap();
    ro.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_restore_endpoint_answers_a_bad_upload_or_token_with_4xx() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("db.sqlite3"), ServerConfig::new(TOKEN)).await;
    server.kv.set(&key!["kept"], Value::Bytes(vec![1])).await.unwrap();
    let id = server.kv.database_id().await.unwrap().to_string();
    let post = |token: &str, body: &'static [u8]| {
        reqwest::Client::new()
            .post(format!("{}/v2/openkv/restore", server.url))
            .bearer_auth(token)
            .header("x-denokv-database-id", &id)
            .header("x-denokv-version", "3")
            .body(body)
            .send()
    };
    let garbage = post(TOKEN, b"this is not a database").await.unwrap();
    assert_eq!(garbage.status().as_u16(), 400);
    assert!(garbage.text().await.unwrap().contains("not a valid"));
    assert_eq!(post("wrong-token-0123456", b"x").await.unwrap().status().as_u16(), 401);
    assert!(server.kv.get(&key!["kept"]).await.unwrap().is_some(), "untouched");
    server.stop().await;
}

/// A PostgreSQL database is backed up by PostgreSQL: `Kv::backup` and `Kv::restore_from` say
/// so (locally, and through `openkv serve` as a 4xx carrying the same text), and the database
/// is untouched and still usable after both refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cannot_make_or_restore_backups_and_says_so() {
    let Some(url) = fixtures::postgres_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    // A good SQLite backup to offer for a restore.
    let sqlite = Kv::open(dir.path().join("src.sqlite3")).await.unwrap();
    sqlite.set(&key!["from", "backup"], Value::Bytes(vec![1])).await.unwrap();
    let backup = dir.path().join("b.sqlite3");
    sqlite.backup(&backup).await.unwrap();
    sqlite.close().await.unwrap();

    let server = Server::start(std::path::Path::new(&url), ServerConfig::new(TOKEN)).await;
    let local = server.kv.clone();
    local.set(&key!["kept"], Value::Bytes(vec![2])).await.unwrap();
    let dest = dir.path().join("pg-backup.sqlite3");
    let err = local.backup(&dest).await.unwrap_err();
    assert!(matches!(&err, Error::Unsupported(m) if m.contains("PostgreSQL")), "{err:?}");
    assert!(!dest.exists(), "no file left behind");
    let err = local.restore_from(&backup).await.unwrap_err();
    assert!(matches!(&err, Error::Unsupported(m) if m.contains("PostgreSQL")), "{err:?}");

    let remote = fixtures::remote(&server.url).await;
    for (what, result) in
        [("backup", remote.backup(&dest).await), ("restore", remote.restore_from(&backup).await)]
    {
        let err = result.unwrap_err();
        assert!(
            matches!(&err, Error::Remote { status: 400..=499, message } if message.contains("PostgreSQL")),
            "{what}: {err:?}"
        );
    }
    assert!(!dest.exists(), "no file left behind");

    // Nothing changed, and writes still work.
    assert!(remote.get(&key!["kept"]).await.unwrap().is_some());
    assert_eq!(remote.get(&key!["from", "backup"]).await.unwrap(), None);
    remote.set(&key!["after"], Value::Bytes(vec![3])).await.unwrap();
    assert!(local.get(&key!["after"]).await.unwrap().is_some());
    remote.close().await.unwrap();
    server.stop().await;
}
