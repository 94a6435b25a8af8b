//! Backup files: what `openkv restore` (and a server's `/v2/openkv/restore`) does with a file
//! from anywhere.

use std::path::Path;
use std::time::Duration;

use openkv::{Consistency, Error, Kv, ReadRange};

use crate::shared::block_on;

/// Target `backup_file`: arbitrary bytes as a backup file. `openkv restore` verifies it
/// (`verify_backup`: SQLite's integrity check, Deno's schema), then installs it
/// (`restore_backup`, which also starts a new change-log epoch in the copy); here the restored
/// database is then opened and everything in it read: every entry, a take of the due queue
/// messages and a failed attempt of each (the finish rule reads their stored JSON), its id.
/// A file that verifies may still hold rows of any shape: they must be refused as
/// [`Error::Corrupt`] (or the like), never panic, never an [`Error::Internal`].
pub fn backup_file(data: &[u8]) {
    let dir = scratch_dir();
    let backup = dir.path().join("backup.sqlite3");
    std::fs::write(&backup, data).expect("the scratch directory is writable");
    let Ok(summary) = openkv::verify_backup(&backup) else { return };
    let target = dir.path().join("restored.sqlite3");
    let restored = match openkv::restore_backup(&backup, &target, false) {
        Ok(restored) => restored,
        Err(e) => return assert_not_internal("restore", &e),
    };
    assert_eq!(restored.entries, summary.entries, "the restore installs what was verified");
    block_on(read_everything(&target));
}

/// A directory for one input's files, removed after it. In memory (`/dev/shm`) where there is
/// one: the restore fsyncs, which would make a disk the fuzzer's bottleneck.
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
    tempfile::Builder::new()
        .prefix("openkv-fuzz-backup-")
        .tempdir_in(base)
        .expect("a scratch directory")
}

fn assert_not_internal(what: &str, e: &Error) {
    assert!(!matches!(e, Error::Internal(_)), "{what}: {e:?} (a broken invariant, not a bad file)");
}

async fn read_everything(path: &Path) {
    let kv = match Kv::open(path).await {
        Ok(kv) => kv,
        Err(e) => return assert_not_internal("open", &e),
    };
    // Each part on its own: a corrupt entry must not hide what the queue does with its rows.
    let entries = async {
        // Raw ranges (the keys of a hostile file need not decode), a page at a time, up to
        // the longest key a read may name.
        let end = vec![0xff; kv.limits().max_read_key_size + 1];
        let mut start = Vec::new();
        loop {
            let range =
                ReadRange { start: start.clone(), end: end.clone(), limit: 500, reverse: false };
            let page = kv.snapshot_read(vec![range], Consistency::Strong).await?;
            let Some(last) = page.first().and_then(|p| p.last()) else {
                return Ok::<(), Error>(());
            };
            start = last.key.clone();
            start.push(0);
        }
    };
    if let Err(e) = entries.await {
        assert_not_internal("reading the restored entries", &e);
    }
    let queue = async {
        let taken = kv.queue_take(10, Duration::from_secs(30)).await?;
        kv.queue_finish(taken.into_iter().map(|m| (m.id, false)).collect()).await
    };
    if let Err(e) = queue.await {
        assert_not_internal("the restored queue", &e);
    }
    if let Err(e) = kv.database_id().await {
        assert_not_internal("the restored database's id", &e);
    }
    if let Err(e) = kv.close().await {
        assert_not_internal("close", &e);
    }
}
