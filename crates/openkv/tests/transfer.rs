//! `openkv::transfer`: the importer's semantics and report, the export scan, the snapshot.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use openkv::export::entry_line;
use openkv::transfer::{
    ExportScan, ImportOptions, ImportReport, Importer, LineFailure, Snapshot, SnapshotError,
    StopCause,
};
use openkv::{
    key, AtomicWrite, Backend, ChangeEvent, CommitOutcome, Consistency, Error, Key, Kv,
    ManualClock, OpenOptions, RawEntry, ReadRange, SystemClock, Value, WatchSnapshots,
};
use serde_json::json;

/// A SQLite database that makes no backups, and whose writes fail (as a broken disk's would,
/// not as a refused request) while `fail_writes` is set.
#[derive(Debug)]
struct Flaky {
    inner: Arc<dyn Backend>,
    fail_writes: AtomicBool,
}

#[async_trait]
impl Backend for Flaky {
    async fn snapshot_read(
        &self,
        ranges: Vec<ReadRange>,
        consistency: Consistency,
    ) -> openkv::Result<Vec<Vec<RawEntry>>> {
        self.inner.snapshot_read(ranges, consistency).await
    }

    async fn atomic_write(&self, write: AtomicWrite) -> openkv::Result<CommitOutcome> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(Error::storage("the disk is on fire"));
        }
        self.inner.atomic_write(write).await
    }

    fn subscribe(&self) -> openkv::Result<tokio::sync::broadcast::Receiver<ChangeEvent>> {
        self.inner.subscribe()
    }

    fn watch(self: Arc<Self>, keys: Vec<Vec<u8>>) -> openkv::Result<WatchSnapshots> {
        self.inner.clone().watch(keys)
    }

    async fn database_id(&self) -> openkv::Result<uuid::Uuid> {
        self.inner.database_id().await
    }

    async fn close(&self) -> openkv::Result<()> {
        self.inner.close().await
    }
}

fn flaky() -> (Kv, Arc<Flaky>) {
    let config = openkv_sqlite::SqliteConfig {
        sweep_interval: std::time::Duration::from_secs(1),
        rng_seed: None,
        change_log: None,
        replica: false,
    };
    let sqlite =
        openkv_sqlite::SqliteBackend::open(":memory:", Arc::new(SystemClock), config).unwrap();
    let backend = Arc::new(Flaky { inner: Arc::new(sqlite), fail_writes: AtomicBool::new(false) });
    (OpenOptions::new().with_backend(backend.clone()), backend)
}

fn line(key: &str, value: serde_json::Value) -> String {
    json!({"key": key, "value": value}).to_string()
}

/// Feeds `lines` (numbered from 1) and finishes.
async fn import(kv: &Kv, options: ImportOptions, lines: &[String]) -> ImportReport {
    let mut importer = Importer::new(kv, options);
    for (i, text) in lines.iter().enumerate() {
        importer.line(i as u64 + 1, format!("{text}\n").as_bytes()).await.unwrap();
    }
    importer.finish().await.unwrap()
}

/// Every entry of the database, through the export scan.
async fn dump(kv: &Kv) -> Vec<RawEntry> {
    let mut scan = ExportScan::new(kv, &Key::default()).unwrap();
    let mut all = Vec::new();
    while let Some(batch) = scan.next_batch().await.unwrap() {
        all.extend(batch);
    }
    all
}

/// How many entries each commit wrote, in commit order (entries of one commit share its
/// versionstamp).
async fn commit_sizes(kv: &Kv) -> Vec<usize> {
    let mut sizes = BTreeMap::new();
    for entry in dump(kv).await {
        *sizes.entry(entry.versionstamp).or_default() += 1;
    }
    sizes.into_values().collect()
}

fn big_value_line(key: &str) -> String {
    // 70 000 bytes: over the 65 536 a value may have.
    let value = json!({"$bytes": "A".repeat(70_002 / 3 * 4)});
    line(key, value)
}

#[tokio::test]
async fn the_report_counts_every_line_and_names_each_failure_with_its_line() {
    let kv = Kv::open_in_memory().await.unwrap();
    let lines = [
        line(r#"["a"]"#, json!(1)),
        "{not json".to_owned(),
        "   ".to_owned(),
        json!({"key": r#"["gone"]"#, "value": 2, "expireAt": 1000}).to_string(),
        line(r#"["bad" 1]"#, json!(3)),
        big_value_line(r#"["big"]"#),
        line(r#"["c"]"#, json!(4)),
    ];
    let seen = Arc::new(Mutex::new(Vec::new()));
    let options = ImportOptions::new().on_failure({
        let seen = seen.clone();
        move |failure: &LineFailure| seen.lock().unwrap().push(failure.clone())
    });
    let mut importer = Importer::new(&kv, options);
    for (i, text) in lines.iter().enumerate() {
        importer.line(i as u64 + 1, text.as_bytes()).await.unwrap();
    }
    // A line that is not UTF-8 fails alone too.
    importer.line(8, b"\xff\xfe\n").await.unwrap();
    let report = importer.finish().await.unwrap();

    assert_eq!(
        (report.lines, report.written, report.expired, report.blank, report.errors),
        (8, 2, 1, 1, 4)
    );
    let failures: Vec<(u64, &str)> =
        report.failures.iter().map(|f| (f.line, f.message.as_str())).collect();
    assert_eq!(failures.len(), 4, "{failures:?}");
    assert_eq!(failures[0].0, 2);
    assert!(failures[0].1.starts_with("not JSON"), "{failures:?}");
    assert_eq!(failures[1].0, 5);
    assert!(failures[1].1.starts_with("\"key\" [\"bad\" 1]: at column 8"), "{failures:?}");
    // The database's refusal comes after the parse failures: the batch is committed at the end.
    assert_eq!(failures[2], (8, "not UTF-8 text"));
    assert_eq!(failures[3].0, 6);
    assert!(failures[3].1.starts_with("Value too large"), "{failures:?}");
    assert_eq!(*seen.lock().unwrap(), report.failures, "the callback saw each failure");

    assert_eq!(
        report.text(),
        "import: read 8 lines, wrote 2 entries, skipped 1 expired, 0 before --resume-from and \
         1 blank lines; 4 errors"
    );
    assert_eq!(
        report.json(),
        json!({"lines": 8, "written": 2, "skipped": {"expired": 1, "beforeResume": 0, "blank": 1}, "errors": 4})
    );
    let keys: Vec<Key> = dump(&kv).await.iter().map(|e| Key::decode(&e.key).unwrap()).collect();
    assert_eq!(keys, [key!["a"], key!["c"]]);
}

#[tokio::test]
async fn a_batch_with_one_value_over_the_limit_commits_the_others() {
    let kv = Kv::open_in_memory().await.unwrap();
    let lines = [
        line(r#"["k", 1n]"#, json!(1)),
        line(r#"["k", 2n]"#, json!(2)),
        big_value_line(r#"["k", 3n]"#),
        line(r#"["k", 4n]"#, json!(4)),
    ];
    let report = import(&kv, ImportOptions::new(), &lines).await;
    assert_eq!((report.written, report.errors), (3, 1));
    assert_eq!(report.failures[0].line, 3);
    assert!(report.failures[0].message.starts_with("Value too large"), "{report:?}");
    let values: Vec<Value> = dump(&kv).await.into_iter().map(|e| e.value).collect();
    assert_eq!(values.len(), 3);
    assert!(kv.get(&key!["k", 3]).await.unwrap().is_none());
    assert!(kv.get(&key!["k", 4]).await.unwrap().is_some());
}

#[tokio::test]
async fn batches_are_atomic_commits_of_at_most_batch_size_entries() {
    let kv = Kv::open_in_memory().await.unwrap();
    let lines: Vec<String> = (0..7).map(|i| line(&format!("[{i}n]"), json!(i))).collect();
    let report = import(&kv, ImportOptions::new().batch_size(3), &lines).await;
    assert_eq!(report.written, 7);
    assert_eq!(commit_sizes(&kv).await, [3, 3, 1]);

    // By default, one commit for a small file.
    let kv = Kv::open_in_memory().await.unwrap();
    import(&kv, ImportOptions::new(), &lines).await;
    assert_eq!(commit_sizes(&kv).await, [7]);
}

#[tokio::test]
async fn resume_from_skips_the_lines_before_it() {
    let kv = Kv::open_in_memory().await.unwrap();
    let lines: Vec<String> = (1..=5).map(|i| line(&format!("[{i}n]"), json!(i))).collect();
    let report = import(&kv, ImportOptions::new().resume_from(4), &lines).await;
    assert_eq!((report.lines, report.before_resume, report.written), (5, 3, 2));
    let keys: Vec<Key> = dump(&kv).await.iter().map(|e| Key::decode(&e.key).unwrap()).collect();
    assert_eq!(keys, [key![4], key![5]]);
}

#[tokio::test]
async fn expiry_is_judged_by_the_databases_clock() {
    // The database's time is 10 000 ms after the epoch: an entry expiring at 5 000 is gone,
    // one expiring at 20 000 (long past by the system's clock) is not.
    let clock = ManualClock::new(10_000);
    let kv = OpenOptions::new().clock(clock).open(":memory:").await.unwrap();
    let lines = [
        json!({"key": r#"["old"]"#, "value": 1, "expireAt": 5_000}).to_string(),
        json!({"key": r#"["new"]"#, "value": 2, "expireAt": 20_000}).to_string(),
        json!({"key": r#"["now"]"#, "value": 3, "expireAt": 10_000}).to_string(),
    ];
    let report = import(&kv, ImportOptions::new(), &lines).await;
    assert_eq!((report.expired, report.written), (2, 1));
    let entries = dump(&kv).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(Key::decode(&entries[0].key).unwrap(), key!["new"]);
    assert_eq!(entries[0].expire_at_ms, Some(20_000), "the expiry is kept");
}

#[tokio::test]
async fn keep_failures_bounds_the_report_not_the_count() {
    let kv = Kv::open_in_memory().await.unwrap();
    let lines: Vec<String> = (0..5).map(|_| "nope".to_owned()).collect();
    let report = import(&kv, ImportOptions::new().keep_failures(2), &lines).await;
    assert_eq!(report.errors, 5);
    let kept: Vec<u64> = report.failures.iter().map(|f| f.line).collect();
    assert_eq!(kept, [1, 2]);
}

#[tokio::test]
async fn a_database_failure_stops_the_import_naming_the_line_to_resume_from() {
    let (kv, backend) = flaky();
    let lines: Vec<String> = (1..=7).map(|i| line(&format!("[{i}n]"), json!(i))).collect();
    let mut importer = Importer::new(&kv, ImportOptions::new().batch_size(2));
    for (i, text) in lines.iter().enumerate().take(4) {
        // Line 3 starts the commit of lines 1 and 2; line 5 waits for it to end.
        importer.line(i as u64 + 1, text.as_bytes()).await.unwrap();
    }
    importer.line(5, lines[4].as_bytes()).await.unwrap();
    // Line 5 started the commit of lines 3 and 4, which fails; the import hears of it when
    // the next batch is to commit (line 7), and stops before lines 5 and 6 are written.
    backend.fail_writes.store(true, Ordering::SeqCst);
    importer.line(6, lines[5].as_bytes()).await.unwrap();
    let stop = importer.line(7, lines[6].as_bytes()).await.unwrap_err();

    assert_eq!(stop.line(), 3);
    let why = Error::storage("the disk is on fire").to_string();
    assert_eq!(
        stop.to_string(),
        format!(
            "import stopped at line 3: {why}. The lines before it are written; run again with \
             --resume-from 3 to continue"
        )
    );
    assert!(matches!(stop.cause(), StopCause::Database(Error::Storage(_))), "{stop:?}");
    let source = std::error::Error::source(&stop).unwrap();
    assert!(source.downcast_ref::<Error>().is_some(), "the database's error is the source");
    assert_eq!((stop.report().lines, stop.report().written), (7, 2));

    // A stopped importer does nothing more.
    let again = importer.line(6, lines[0].as_bytes()).await.unwrap_err();
    assert_eq!(again.line(), 3);
    assert!(matches!(again.cause(), StopCause::AlreadyStopped));
    assert!(matches!(importer.finish().await.unwrap_err().cause(), StopCause::AlreadyStopped));

    // Resuming at the line it named completes the import, nothing twice.
    backend.fail_writes.store(false, Ordering::SeqCst);
    let report = import(&kv, ImportOptions::new().resume_from(stop.line()), &lines).await;
    assert_eq!((report.before_resume, report.written), (2, 5));
    assert_eq!(dump(&kv).await.len(), 7);
    assert_eq!(commit_sizes(&kv).await, [2, 5], "the first commit, then the resumed one");
}

#[tokio::test]
async fn an_interruption_commits_what_is_pending_and_names_the_next_line() {
    let kv = Kv::open_in_memory().await.unwrap();
    let mut importer = Importer::new(&kv, ImportOptions::new());
    importer.line(1, line(r#"["a"]"#, json!(1)).as_bytes()).await.unwrap();
    importer.line(2, b"bad").await.unwrap();
    let stop = importer.interrupt(3).await;
    assert_eq!(stop.line(), 3);
    assert!(matches!(stop.cause(), StopCause::Interrupted));
    assert_eq!(
        stop.to_string(),
        "import stopped at line 3: interrupted. The lines before it are written; run again \
         with --resume-from 3 to continue"
    );
    assert!(std::error::Error::source(&stop).is_none());
    let report = stop.into_report();
    assert_eq!((report.lines, report.written, report.errors), (2, 1, 1));
    assert!(kv.get(&key!["a"]).await.unwrap().is_some());
}

#[tokio::test]
async fn the_export_scan_reads_the_prefix_in_batches_in_key_order() {
    let kv = Kv::open_in_memory().await.unwrap();
    for chunk in (0..2500u64).collect::<Vec<_>>().chunks(500) {
        let op = chunk.iter().fold(kv.atomic(), |op, &i| op.set(&key!["in", i], Value::U64(i)));
        op.commit().await.unwrap();
    }
    kv.set(&key!["in"], Value::U64(0)).await.unwrap(); // the prefix itself is not under it
    kv.set(&key!["out"], Value::U64(0)).await.unwrap();

    let mut scan = ExportScan::new(&kv, &key!["in"]).unwrap();
    let mut sizes = Vec::new();
    let mut keys = Vec::new();
    while let Some(batch) = scan.next_batch().await.unwrap() {
        sizes.push(batch.len());
        keys.extend(batch.iter().map(|e| Key::decode(&e.key).unwrap()));
    }
    assert_eq!(sizes, [1000, 1000, 500]);
    let expected: Vec<Key> = (0..2500u64).map(|i| key!["in", i]).collect();
    assert_eq!(keys, expected);
    assert!(scan.next_batch().await.unwrap().is_none(), "it stays done");

    // An empty range: one empty batch, then the end.
    let mut empty = ExportScan::new(&kv, &key!["nothing"]).unwrap();
    assert_eq!(empty.next_batch().await.unwrap(), Some(vec![]));
    assert_eq!(empty.next_batch().await.unwrap(), None);

    // What it reads, exported and imported, is the same data.
    let lines: Vec<String> = dump(&kv).await.iter().map(|e| entry_line(e).to_string()).collect();
    let copy = Kv::open_in_memory().await.unwrap();
    let report = import(&copy, ImportOptions::new(), &lines).await;
    assert_eq!(report.written, 2502);
    let values = |entries: Vec<RawEntry>| -> Vec<(Vec<u8>, Value)> {
        entries.into_iter().map(|e| (e.key, e.value)).collect()
    };
    assert_eq!(values(dump(&copy).await), values(dump(&kv).await));
}

#[tokio::test]
async fn a_snapshot_holds_the_writes_before_it_and_none_after() {
    let dir = tempfile::tempdir().unwrap();
    let kv = Kv::open(dir.path().join("live.sqlite3")).await.unwrap();
    kv.set(&key!["before"], Value::U64(1)).await.unwrap();
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();

    let snapshot = Snapshot::take(&kv, &scratch).await.unwrap();
    kv.set(&key!["after"], Value::U64(2)).await.unwrap();
    kv.set(&key!["before"], Value::U64(3)).await.unwrap();

    assert_eq!(snapshot.summary().entries, 1);
    let entries = dump(snapshot.kv()).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (Key::decode(&entries[0].key).unwrap(), &entries[0].value),
        (key!["before"], &Value::U64(1))
    );
    assert_eq!(dump(&kv).await.len(), 2, "the live database has both");

    let names = || -> Vec<String> {
        std::fs::read_dir(&scratch)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let taken = names();
    assert_eq!(taken.len(), 1);
    assert!(taken[0].starts_with(".openkv-export-"), "{taken:?}");
    snapshot.close().await.unwrap();
    assert!(names().is_empty(), "closing removes the copy");

    // Dropping removes it too.
    let snapshot = Snapshot::take(&kv, &scratch).await.unwrap();
    assert_eq!(names().len(), 1);
    drop(snapshot);
    assert!(names().is_empty(), "dropping removes the copy");
}

#[tokio::test]
async fn a_snapshot_needs_a_backend_that_makes_backups_and_a_scratch_directory() {
    let (kv, _) = flaky();
    let dir = tempfile::tempdir().unwrap();
    let err = Snapshot::take(&kv, dir.path()).await.unwrap_err();
    assert!(matches!(err, SnapshotError::Backup(Error::Unsupported(_))), "{err:?}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing left behind");

    let kv = Kv::open(dir.path().join("live.sqlite3")).await.unwrap();
    let missing = dir.path().join("missing");
    let err = Snapshot::take(&kv, &missing).await.unwrap_err();
    assert!(matches!(&err, SnapshotError::Scratch { parent, .. } if *parent == missing), "{err:?}");
    assert!(err.to_string().starts_with("creating a directory in "), "{err}");
}
