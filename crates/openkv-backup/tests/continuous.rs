//! Continuous backup to a directory, through the public API: every point of a randomized
//! history restores exactly (by versionstamp and by time), a restarted shipper leaves no gap
//! and no commit twice, storage that fails for a while is caught up with, and damaged or
//! missing objects are refused by name.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openkv::changelog::LogRetention;
use openkv::{key, Kv, OpenOptions, Versionstamp};
use openkv_backup::{Catalog, ContinuousBackup, Location, PointInTime, S3Options, ShipOptions};
use rand::{Rng, SeedableRng};

/// A scratch directory, a database in it keeping a change log, and `backup/` beside it.
async fn logged_with_backup_dir() -> (tempfile::TempDir, Kv, Location) {
    let dir = tempfile::tempdir().unwrap();
    let kv = open_logged(&dir.path().join("db.sqlite3")).await;
    let backup = dir.path().join("backup");
    let location = Location::parse(backup.to_str().unwrap(), &S3Options::default()).unwrap();
    (dir, kv, location)
}

async fn open_logged(path: &Path) -> Kv {
    OpenOptions::new().change_log(LogRetention::default()).open(path).await.unwrap()
}

fn options() -> ShipOptions {
    let mut options = ShipOptions::default();
    options.interval = Duration::from_millis(50);
    options
}

/// Every entry (at most 1000) as stored: key, value, versionstamp, expiry.
async fn export(kv: &Kv) -> Vec<openkv::RawEntry> {
    let range = openkv::ReadRange { start: vec![], end: vec![0xff], limit: 1000, reverse: false };
    kv.snapshot_read(vec![range], openkv::Consistency::Strong).await.unwrap().remove(0)
}

/// Restores point `i` (its versionstamp `vs`) into a new file under `dir` and compares the
/// file's entries with the export taken then.
async fn restores_to(
    catalog: &Catalog,
    dir: &Path,
    i: usize,
    vs: Versionstamp,
    expected: &[openkv::RawEntry],
) {
    let file = dir.join(format!("restored-{i}.sqlite3"));
    catalog.restore_to_file(PointInTime::Versionstamp(vs), None, &file).await.unwrap();
    let restored = Kv::open(&file).await.unwrap();
    assert_eq!(export(&restored).await, expected, "restore {i}");
    restored.close().await.unwrap();
}

async fn wait_shipped(backup: &ContinuousBackup, version: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while backup.status().shipped_version < version {
        assert!(Instant::now() < deadline, "not shipped: {:?}", backup.status());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A random batch of commits: sets, sums, deletes, expiring sets, multi-key atomics.
async fn random_commits(kv: &Kv, rng: &mut rand::rngs::StdRng, n: usize) -> Versionstamp {
    commits(kv, rng, n, true).await
}

/// [`random_commits`], with expiring sets or not.
async fn commits(kv: &Kv, rng: &mut rand::rngs::StdRng, n: usize, expiring: bool) -> Versionstamp {
    let mut last = Versionstamp::ZERO;
    for _ in 0..n {
        let k = key!["k", rng.random_range(0..40i64)];
        let kind = rng.random_range(0..5);
        last = match if kind == 2 && !expiring { 4 } else { kind } {
            0 => kv.atomic().delete(&k).commit().await.unwrap().versionstamp().unwrap(),
            1 => kv
                .atomic()
                .sum(&key!["n", rng.random_range(0..3i64)], 1)
                .commit()
                .await
                .unwrap()
                .versionstamp()
                .unwrap(),
            2 => kv
                .set_with_expiry(&k, &rng.random::<u32>(), Duration::from_secs(3600))
                .await
                .unwrap(),
            3 => {
                let mut op = kv.atomic();
                for _ in 0..rng.random_range(1..6) {
                    op = op.set(&key!["k", rng.random_range(0..40i64)], &rng.random::<i32>());
                }
                op.commit().await.unwrap().versionstamp().unwrap()
            }
            _ => kv.set(&k, &"x".repeat(rng.random_range(0..300))).await.unwrap(),
        };
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_point_restores_exactly_by_versionstamp_and_by_time() {
    let (dir, kv, location) = logged_with_backup_dir().await;
    let backup =
        ContinuousBackup::start(kv.replication_source().unwrap(), location.clone(), options());
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    // Points: (versionstamp, a time after it and before the next commit, the export then).
    let mut points = Vec::new();
    for _ in 0..6 {
        let n = rng.random_range(5..40);
        let last = random_commits(&kv, &mut rng, n).await;
        let exported = export(&kv).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        let between = openkv::SystemClock.now_ms();
        tokio::time::sleep(Duration::from_millis(30)).await;
        points.push((last, between, exported));
    }
    wait_shipped(&backup, points.last().unwrap().0.version()).await;
    backup.stop(Duration::from_secs(10)).await;

    let catalog = Catalog::open(&location).await.unwrap();
    assert!(catalog.is_openkv());
    let listed = catalog.recovery_points(None, None).await.unwrap();
    for (i, (vs, at, expected)) in points.iter().enumerate() {
        assert!(listed.iter().any(|p| p.versionstamp == *vs), "{vs} is a recovery point");
        for (how, point) in
            [("versionstamp", PointInTime::Versionstamp(*vs)), ("time", PointInTime::Time(*at))]
        {
            let file = dir.path().join(format!("restored-{i}-{how}.sqlite3"));
            let summary = catalog.restore_to_file(point, None, &file).await.unwrap();
            assert_eq!(summary.versionstamp, *vs, "{how} {i}");
            let restored = Kv::open(&file).await.unwrap();
            assert_eq!(&export(&restored).await, expected, "restore {i} by {how}");
            restored.close().await.unwrap();
        }
    }
    let verified = catalog.verify(tempfile::tempdir().unwrap().path()).await.unwrap();
    assert_eq!(verified.last, points.last().unwrap().0);
    // Past the end: by versionstamp refused, by time the last point (and said so).
    let after = Versionstamp::from_version(points.last().unwrap().0.version() + 1);
    let err = catalog
        .restore_to_file(PointInTime::Versionstamp(after), None, &dir.path().join("x"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("after the last recovery point"), "{err}");
    assert!(!dir.path().join("x").exists());
}

use openkv::Clock;

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shipper_killed_and_restarted_leaves_no_gap_and_no_commit_twice() {
    let (dir, kv, location) = logged_with_backup_dir().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut points = Vec::new();
    for round in 0..4 {
        let backup =
            ContinuousBackup::start(kv.replication_source().unwrap(), location.clone(), options());
        let last = random_commits(&kv, &mut rng, 30).await;
        points.push((last, export(&kv).await));
        if round % 2 == 0 {
            wait_shipped(&backup, last.version()).await;
        }
        // Dropped without `stop`: the task is aborted wherever it is, as by kill -9.
        drop(backup);
        random_commits(&kv, &mut rng, 5).await;
        let last = random_commits(&kv, &mut rng, 1).await;
        points.push((last, export(&kv).await));
    }
    let backup =
        ContinuousBackup::start(kv.replication_source().unwrap(), location.clone(), options());
    wait_shipped(&backup, points.last().unwrap().0.version()).await;
    backup.stop(Duration::from_secs(10)).await;
    assert_eq!(
        files_under(&dir.path().join("backup/openkv/generations")).len(),
        1,
        "one snapshot: the restarts resumed"
    );
    let catalog = Catalog::open(&location).await.unwrap();
    let listed = catalog.recovery_points(None, None).await.unwrap();
    assert!(listed.windows(2).all(|w| w[0].versionstamp < w[1].versionstamp));
    for (i, (vs, expected)) in points.iter().enumerate() {
        restores_to(&catalog, dir.path(), i, *vs, expected).await;
    }
    catalog.verify(tempfile::tempdir().unwrap().path()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_missing_or_foreign_objects_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let kv = open_logged(&dir.path().join("db.sqlite3")).await;
    let root = dir.path().join("backup");
    let location = Location::parse(root.to_str().unwrap(), &S3Options::default()).unwrap();
    // Entries before the backup starts: its snapshot has a range.
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    random_commits(&kv, &mut rng, 10).await;
    let backup =
        ContinuousBackup::start(kv.replication_source().unwrap(), location.clone(), options());
    let mut last = Versionstamp::ZERO;
    for _ in 0..3 {
        last = random_commits(&kv, &mut rng, 20).await;
        wait_shipped(&backup, last.version()).await;
    }
    backup.stop(Duration::from_secs(10)).await;
    let logs = files_under(&root.join("logs"));
    assert!(logs.len() >= 3, "{logs:?}");
    let snapshot = files_under(&root.join("snapshots")).remove(0);
    let target = dir.path().join("restored.sqlite3");
    let refused = |what: &'static str, object: std::path::PathBuf| {
        let location = location.clone();
        let target = target.clone();
        async move {
            let catalog = Catalog::open(&location).await;
            let err = match catalog {
                Ok(catalog) => catalog
                    .restore_to_file(PointInTime::Versionstamp(last), None, &target)
                    .await
                    .unwrap_err(),
                Err(e) => e,
            };
            let name = object.file_name().unwrap().to_str().unwrap().to_owned();
            assert!(err.to_string().contains(&name), "{what}: {err}");
            assert!(matches!(err, openkv::Error::InvalidBackup(_)), "{what}: {err:?}");
            assert!(!target.exists(), "{what}: the target was created");
        }
    };
    // A log object cut short, then one with a byte flipped, then one missing.
    let middle = logs[1].clone();
    let original = std::fs::read(&middle).unwrap();
    std::fs::write(&middle, &original[..original.len() - 3]).unwrap();
    refused("truncated", middle.clone()).await;
    let mut flipped = original.clone();
    flipped[original.len() / 2] ^= 1;
    std::fs::write(&middle, &flipped).unwrap();
    refused("flipped", middle.clone()).await;
    std::fs::remove_file(&middle).unwrap();
    refused("missing", logs[2].clone()).await;
    std::fs::write(&middle, &original).unwrap();
    // A snapshot range cut short.
    let body = std::fs::read(&snapshot).unwrap();
    std::fs::write(&snapshot, &body[..body.len() / 2]).unwrap();
    refused("truncated snapshot", snapshot.clone()).await;
    std::fs::write(&snapshot, &body).unwrap();
    Catalog::open(&location)
        .await
        .unwrap()
        .restore_to_file(PointInTime::Latest, None, &target)
        .await
        .unwrap();

    // A shipper refuses a location that holds something else.
    let foreign = dir.path().join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    let location = Location::parse(foreign.to_str().unwrap(), &S3Options::default()).unwrap();
    let backup = ContinuousBackup::start(kv.replication_source().unwrap(), location, options());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !backup.status().stopped {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = backup.status();
    assert!(status.last_error.as_deref().unwrap().contains("not an openkv backup"), "{status:?}");
    assert_eq!(files_under(&foreign).len(), 1, "nothing written there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_snapshots_and_retention_keep_exactly_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let clock = openkv::ManualClock::new(1_800_000_000_000);
    let kv = OpenOptions::new()
        .clock(clock.clone())
        .change_log(LogRetention::default())
        .open(dir.path().join("db.sqlite3"))
        .await
        .unwrap();
    let root = dir.path().join("backup");
    let location = Location::parse(root.to_str().unwrap(), &S3Options::default()).unwrap();
    let mut options = options();
    options.clock = Arc::new(clock.clone());
    options.snapshot_every = Some(Duration::from_secs(3600));
    options.retention = Some(Duration::from_secs(2 * 3600));
    let backup =
        ContinuousBackup::start(kv.replication_source().unwrap(), location.clone(), options);
    let mut rng = rand::rngs::StdRng::seed_from_u64(21);
    // Five hours, a phase an hour: a snapshot each hour, retention two hours. (No expiring
    // entries: the clock jumps by hours, and a snapshot leaves out what expired before it
    // was read — invisible from then on, but not at the moment of an earlier export.)
    let mut points = Vec::new();
    for _ in 0..5 {
        let last = commits(&kv, &mut rng, 15, false).await;
        wait_shipped(&backup, last.version()).await;
        points.push((last, export(&kv).await));
        let snapshots = backup.status().snapshots;
        clock.advance(Duration::from_secs(3601));
        let deadline = Instant::now() + Duration::from_secs(30);
        while backup.status().snapshots == snapshots {
            assert!(Instant::now() < deadline, "no scheduled snapshot: {:?}", backup.status());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // Retention runs at most once a minute of the clock: one more round after it.
    clock.advance(Duration::from_secs(61));
    let last = random_commits(&kv, &mut rng, 1).await;
    wait_shipped(&backup, last.version()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    backup.stop(Duration::from_secs(10)).await;

    // Now = 5 h 1 min after the start: the window starts at 3 h 1 min; the newest snapshot
    // taken before it (the one of 3 h 3 s) covers it; the older three and their log are gone.
    let catalog = Catalog::open(&location).await.unwrap();
    let generations: Vec<u64> = catalog.bases.iter().map(|b| b.generation).collect();
    assert_eq!(generations, vec![4, 5, 6], "snapshots kept");
    assert!(catalog.ranges.iter().all(|r| r.last_boundary() > catalog.bases[0].boundary));
    let err = catalog
        .restore_to_file(PointInTime::Versionstamp(points[1].0), None, &dir.path().join("old"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("before the oldest recovery point"), "{err}");
    for (i, (vs, expected)) in points.iter().enumerate().skip(3) {
        restores_to(&catalog, dir.path(), i, *vs, expected).await;
    }
    catalog.verify(tempfile::tempdir().unwrap().path()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_shipped_range_after_range_without_waiting_the_interval() {
    let (dir, kv, location) = logged_with_backup_dir().await;
    let mut options = options();
    // An interval no test waits for: only a shipper that goes on at once gets through.
    options.interval = Duration::from_secs(3600);
    // Records of 1,000 tiny sets: the source stops a read once its encoding of the changes
    // (about 50 bytes a change) reaches this, when the shipper's own measure (keys, values
    // and 24 bytes a change) is still under it — the mismatch that once made the shipper
    // wait an interval after every range.
    options.range_bytes = 40 << 10;
    let backup =
        ContinuousBackup::start(kv.replication_source().unwrap(), location.clone(), options);
    // The first round (snapshot, empty log) is over: everything after is a backlog.
    let deadline = Instant::now() + Duration::from_secs(30);
    while backup.status().snapshots == 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut last = Versionstamp::ZERO;
    for i in 0..10 {
        let mut op = kv.atomic();
        for j in 0..1000 {
            op = op.set(&key![i, j], &1u8);
        }
        last = op.commit().await.unwrap().versionstamp().unwrap();
    }
    // Written after the shipper went to sleep for an hour: nothing ships until it wakes.
    // So wake it the one way a server does — a last round at stop — and see it ship the
    // whole backlog, many ranges, in that one round.
    backup.stop(Duration::from_secs(30)).await;
    let status = backup.status();
    assert_eq!(status.shipped_version, last.version(), "{status:?}");
    assert!(status.ranges >= 10, "a record a range: {status:?}");
    let file = dir.path().join("restored.sqlite3");
    Catalog::open(&location)
        .await
        .unwrap()
        .restore_to_file(PointInTime::Latest, None, &file)
        .await
        .unwrap();
    let restored = Kv::open(&file).await.unwrap();
    assert_eq!(export(&restored).await, export(&kv).await);
}
