//! Continuous backup and point-in-time recovery with real processes (docs/design.md §16):
//! `openkv serve --backup-to` shipping to a real S3-compatible server (s3s-fs, started here on
//! 127.0.0.1) or a directory, `openkv pitr list`, `openkv restore --from … --at …` and
//! `openkv backup verify`, and denokv 0.14 reading what openkv wrote.
//! - every point is exact: a randomized workload on a SQLite primary (and on PostgreSQL),
//!   exported at random moments; restores at each versionstamp and at times between equal
//!   the exports;
//! - denokv's `pitr sync` / `pitr checkout` of openkv's bucket gives openkv's export at that
//!   versionstamp, and `denokv serve --sync-from-s3` follows the bucket while openkv writes;
//! - `kill -9` of the server while shipping, and the object storage stopped for a while: no
//!   gap, no commit twice, the database serves throughout, the lag and the error visible;
//! - a truncated or damaged object: exit code 1 naming it, the target untouched.
//!
//! The tests of this file run one at a time (they start several processes each).

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use openkv::{key, Consistency, Kv, RawEntry, ReadRange, Versionstamp};
use rand::{Rng, SeedableRng};

use common::{start_server_at, start_server_with, workspace_root, Proc};

const TOKEN: &str = "backup-test-token-0123";
const ACCESS_KEY: &str = "openkvtest";
const SECRET_KEY: &str = "openkvtestsecret";
const BUCKET: &str = "backups";

/// One test of this file at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn backup_test<F: Future<Output = ()>>(body: impl FnOnce(tempfile::TempDir) -> F) {
    let _serial: MutexGuard<'_, ()> = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // The server processes and denokv read the credentials from the environment, as users'
    // do (edition 2021: setting them is safe; every test sets the same values).
    std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    std::env::set_var("AWS_REGION", "us-east-1");
    std::env::remove_var("AWS_ENDPOINT_URL");
    std::env::remove_var("AWS_ENDPOINT_URL_S3");
    let dir = tempfile::tempdir().unwrap();
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(body(dir));
}

fn tool(var: &str, require: &str, fallback: &str) -> Option<PathBuf> {
    let bin =
        std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| workspace_root().join(fallback));
    if bin.is_file() {
        return Some(bin);
    }
    assert!(
        std::env::var(require).as_deref() != Ok("1"),
        "{require}=1 but {} is missing (run scripts/test.sh)",
        bin.display()
    );
    eprintln!("{} is missing: skipping (scripts/test.sh builds it)", bin.display());
    None
}

fn denokv_bin() -> Option<PathBuf> {
    tool("OPENKV_DENOKV", "OPENKV_REQUIRE_DENOKV", "target/tools/denokv-0.14.0/bin/denokv")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// s3s-fs serving `root` (a bucket is a directory of it) on 127.0.0.1; stopped when dropped.
struct S3 {
    bin: PathBuf,
    root: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl S3 {
    fn start(root: &Path) -> Option<S3> {
        let bin = tool(
            "OPENKV_S3S_FS",
            "OPENKV_REQUIRE_S3S_FS",
            "target/tools/s3s-fs-0.14.1/bin/s3s-fs",
        )?;
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let mut s3 = S3 { bin, root: root.to_path_buf(), port: free_port(), child: None };
        s3.resume();
        Some(s3)
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again, on the same port and directory).
    fn resume(&mut self) {
        let child = Command::new(&self.bin)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&self.root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn client(url: &str) -> Kv {
    common::client_with(url, TOKEN).await
}

/// Every entry (at most 1000) as key, value and versionstamp (KV Connect carries no expiry).
async fn export(kv: &Kv) -> Vec<(Vec<u8>, openkv::Value, Versionstamp)> {
    let range = ReadRange { start: vec![], end: vec![0xff], limit: 1000, reverse: false };
    let entries: Vec<RawEntry> =
        kv.snapshot_read(vec![range], Consistency::Strong).await.unwrap().remove(0);
    entries.into_iter().map(|e| (e.key, e.value, e.versionstamp)).collect()
}

async fn export_file(path: &Path) -> Vec<(Vec<u8>, openkv::Value, Versionstamp)> {
    let kv = Kv::open(path).await.unwrap();
    let out = export(&kv).await;
    kv.close().await.unwrap();
    out
}

/// A random commit: sets, sums, deletes, expiring sets, several keys at once.
async fn random_commit(kv: &Kv, rng: &mut rand::rngs::StdRng) -> Versionstamp {
    let k = key!["k", rng.random_range(0..30i64)];
    let outcome = match rng.random_range(0..5) {
        0 => kv.atomic().delete(&k).commit().await,
        1 => kv.atomic().sum(&key!["n", rng.random_range(0..3i64)], 1).commit().await,
        2 => {
            kv.atomic()
                .set_with_expiry(&k, &rng.random::<u32>(), Duration::from_secs(3600))
                .commit()
                .await
        }
        3 => {
            let mut op = kv.atomic();
            for _ in 0..rng.random_range(1..5) {
                op = op.set(&key!["k", rng.random_range(0..30i64)], &rng.random::<i32>());
            }
            op.commit().await
        }
        _ => kv.atomic().set(&k, &"x".repeat(rng.random_range(0..200))).commit().await,
    };
    outcome.unwrap().versionstamp().unwrap()
}

/// The server's status answer (`/v2/openkv/replication/status`).
async fn status(kv: &Kv, url: &str) -> serde_json::Value {
    common::replication_status(kv, url, TOKEN).await
}

/// Waits until the backup holds the server's every commit up to `version`.
async fn wait_shipped(kv: &Kv, url: &str, version: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = status(kv, url).await;
        let backup = &s["backup"];
        if backup["shippedVersion"].as_u64().unwrap() >= version && backup["lagVersions"] == 0 {
            return s;
        }
        assert!(Instant::now() < deadline, "not shipped: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn openkv() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_openkv"));
    cmd.env("RUST_LOG", "warn");
    cmd
}

fn run(mut cmd: Command) -> Output {
    cmd.output().unwrap()
}

fn ok(cmd: Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn now_ms() -> i64 {
    openkv::Clock::now_ms(&openkv::SystemClock)
}

fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// A point of the history: the last commit's versionstamp, a time after it and before the
/// next commit, and the export then.
struct Point {
    versionstamp: Versionstamp,
    between_ms: i64,
    export: Vec<(Vec<u8>, openkv::Value, Versionstamp)>,
}

/// Phases of random commits, each followed by an export and a pause.
async fn history(kv: &Kv, seed: u64, phases: usize) -> Vec<Point> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut points = Vec::new();
    for _ in 0..phases {
        let mut last = Versionstamp::ZERO;
        for _ in 0..rng.random_range(5..30) {
            last = random_commit(kv, &mut rng).await;
        }
        let export = export(kv).await;
        tokio::time::sleep(Duration::from_millis(40)).await;
        let between_ms = now_ms();
        tokio::time::sleep(Duration::from_millis(40)).await;
        points.push(Point { versionstamp: last, between_ms, export });
    }
    points
}

fn restore_cmd(from: &str, s3: Option<&S3>, at: &str, db: &Path) -> Command {
    let mut cmd = openkv();
    cmd.arg("--db").arg(db).args(["restore", "--from", from, "--at", at]);
    if let Some(s3) = s3 {
        cmd.args(["--s3-endpoint", &s3.endpoint()]);
    }
    cmd
}

/// Restores every point by versionstamp and by time, and compares with its export.
async fn check_points(dir: &Path, from: &str, s3: Option<&S3>, points: &[Point]) {
    let mut list = openkv();
    list.args(["pitr", "list", "--from", from]);
    if let Some(s3) = s3 {
        list.args(["--s3-endpoint", &s3.endpoint()]);
    }
    let listed = ok(list);
    for (i, point) in points.iter().enumerate() {
        let vs = point.versionstamp.to_hex();
        assert!(
            listed.lines().any(|l| l.starts_with(&format!("{vs}\t"))),
            "{vs} not listed:\n{listed}"
        );
        for (how, at) in [("vs", vs.clone()), ("time", rfc3339(point.between_ms))] {
            let file = dir.join(format!("restored-{i}-{how}-{}.sqlite3", common::random_hex()));
            ok(restore_cmd(from, s3, &at, &file));
            assert_eq!(export_file(&file).await, point.export, "restore {i} at {how} {at}");
        }
    }
    let mut verify = openkv();
    verify.args(["backup", "verify", "--from", from]);
    if let Some(s3) = s3 {
        verify.args(["--s3-endpoint", &s3.endpoint()]);
    }
    let verified = ok(verify);
    assert!(verified.contains(": ok"), "{verified}");
}

fn denokv(bin: &Path, sqlite: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("--sqlite-path").arg(sqlite);
    cmd.env("RUST_LOG", "warn");
    cmd
}

/// `denokv --sqlite-path SQLITE serve … ARGS` on a free port of 127.0.0.1, once it listens.
fn denokv_serve(bin: &Path, sqlite: &Path, args: &[String]) -> Proc {
    let port = free_port();
    let child = denokv(bin, sqlite)
        .args(["serve", "--access-token", TOKEN, "--addr"])
        .arg(format!("127.0.0.1:{port}"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Proc { child, url: format!("http://127.0.0.1:{port}") };
    wait_listening(port);
    server
}

/// What `denokv serve --read-only` of SQLITE (a checked-out copy) holds.
async fn denokv_export(bin: &Path, sqlite: &Path) -> Vec<(Vec<u8>, openkv::Value, Versionstamp)> {
    let reader = denokv_serve(bin, sqlite, &["--read-only".to_owned()]);
    let kv = client(&reader.url).await;
    let out = export(&kv).await;
    drop(kv);
    out
}

fn s3_flags(s3: &S3) -> Vec<String> {
    vec![
        "--s3-bucket".into(),
        BUCKET.into(),
        "--s3-prefix".into(),
        "app/".into(),
        "--s3-endpoint".into(),
        s3.endpoint(),
    ]
}

#[test]
fn an_s3_backup_restores_every_point_and_denokv_reads_it() {
    backup_test(|dir| async move {
        let dir = dir.path();
        let Some(s3) = S3::start(&dir.join("s3")) else { return };
        let location = format!("s3://{BUCKET}/app");
        let args = [
            "--backup-to",
            &location,
            "--s3-endpoint",
            &s3.endpoint(),
            "--backup-interval",
            "200ms",
        ];
        let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        let (child, url) = start_server_with(&dir.join("primary.sqlite3"), TOKEN, &args);
        let server = Proc { child, url };
        let kv = client(&server.url).await;
        let points = history(&kv, 1, 6).await;
        wait_shipped(&kv, &server.url, points.last().unwrap().versionstamp.version()).await;
        check_points(dir, &location, Some(&s3), &points).await;

        let Some(denokv_bin) = denokv_bin() else { return };
        // denokv's point-in-time tools: sync, then check out points (its first point is the
        // first commit after the snapshot, so the later phases).
        let synced = dir.join("denokv-pitr.sqlite3");
        let mut sync = denokv(&denokv_bin, &synced);
        sync.args(["pitr", "sync"]).args(s3_flags(&s3));
        ok(sync);
        let mut list = denokv(&denokv_bin, &synced);
        list.args(["pitr", "list"]);
        let listed = ok(list);
        for point in &points[2..] {
            let vs = point.versionstamp.to_hex();
            assert!(listed.contains(&vs), "denokv does not list {vs}:\n{listed}");
            let mut checkout = denokv(&denokv_bin, &synced);
            checkout.args(["pitr", "checkout", &vs]);
            assert!(ok(checkout).contains(&vs));
            let seen = denokv_export(&denokv_bin, &synced).await;
            assert_eq!(seen, point.export, "denokv checked out at {vs}");
        }

        // denokv as a read replica of openkv through the bucket.
        let mut args = vec!["--sync-from-s3".to_owned()];
        args.extend(s3_flags(&s3));
        let follower = denokv_serve(&denokv_bin, &dir.join("denokv-follower.sqlite3"), &args);
        let fkv = client(&follower.url).await;
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        for round in 0..2 {
            for _ in 0..20 {
                random_commit(&kv, &mut rng).await;
            }
            let want = export(&kv).await;
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                if export(&fkv).await == want {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "denokv --sync-from-s3 did not follow (round {round})"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        drop(fkv);
        drop(follower);
        drop(server);
    });
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn kill_9_and_a_storage_outage_leave_no_gap_and_no_commit_twice() {
    backup_test(|dir| async move {
        let dir = dir.path();
        let Some(mut s3) = S3::start(&dir.join("s3")) else { return };
        let location = format!("s3://{BUCKET}/app");
        let endpoint = s3.endpoint();
        let args =
            ["--backup-to", &location, "--s3-endpoint", &endpoint, "--backup-interval", "100ms"];
        let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        let db = dir.join("primary.sqlite3");
        let (child, url) = start_server_with(&db, TOKEN, &args);
        let addr = url.trim_start_matches("http://").to_owned();
        let mut server = Proc { child, url };
        let kv = client(&server.url).await;
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let mut acknowledged = Vec::new();
        for _ in 0..40 {
            acknowledged.push(random_commit(&kv, &mut rng).await);
        }
        // kill -9 while shipping (the interval is short: a range is usually in flight).
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        let (child, url) = start_server_at(&db, TOKEN, &addr, &args);
        server = Proc { child, url };
        let kv = client(&server.url).await;
        for _ in 0..40 {
            acknowledged.push(random_commit(&kv, &mut rng).await);
        }
        wait_shipped(&kv, &server.url, acknowledged.last().unwrap().version()).await;

        // The storage goes away: commits go on, the backup falls behind and says why.
        s3.stop();
        let mut during = Vec::new();
        for _ in 0..30 {
            during.push(random_commit(&kv, &mut rng).await);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let behind = loop {
            let s = status(&kv, &server.url).await;
            if s["backup"]["lastError"].is_string()
                && s["backup"]["lagVersions"].as_u64().unwrap() > 0
            {
                break s;
            }
            assert!(Instant::now() < deadline, "the outage does not show: {s}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(behind["backup"]["lagMs"].as_u64().unwrap() > 0, "{behind}");
        s3.resume();
        acknowledged.extend(during);
        let s = wait_shipped(&kv, &server.url, acknowledged.last().unwrap().version()).await;
        assert!(s["backup"]["lastError"].is_null(), "{s}");
        let want = export(&kv).await;
        drop(kv);
        drop(server);

        // Every acknowledged commit is a recovery point, once; the latest state is exact.
        let mut list = openkv();
        list.args(["pitr", "list", "--from", &location, "--s3-endpoint", &endpoint]);
        let listed = ok(list);
        let points: Vec<&str> = listed.lines().map(|l| l.split('\t').next().unwrap()).collect();
        let mut sorted = points.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, points, "points are unique and in order");
        // (Commits before the first snapshot are in it, not points of their own.)
        let oldest = points[0];
        let after: Vec<String> =
            acknowledged.iter().map(|vs| vs.to_hex()).filter(|vs| vs.as_str() > oldest).collect();
        assert!(
            after.len() >= 60,
            "{} of {} commits after the snapshot",
            after.len(),
            acknowledged.len()
        );
        for vs in &after {
            assert!(points.contains(&vs.as_str()), "{vs} is missing from the backup");
        }
        let file = dir.join("latest.sqlite3");
        ok(restore_cmd(&location, Some(&s3), "latest", &file));
        assert_eq!(export_file(&file).await, want);
        let mut verify = openkv();
        verify.args(["backup", "verify", "--from", &location, "--s3-endpoint", &endpoint]);
        ok(verify);
    });
}

#[test]
fn a_damaged_backup_is_refused_with_exit_1_and_the_target_untouched() {
    backup_test(|dir| async move {
        let dir = dir.path();
        let backup = dir.join("backup");
        let args = [
            std::ffi::OsStr::new("--backup-to"),
            backup.as_os_str(),
            std::ffi::OsStr::new("--backup-interval"),
            std::ffi::OsStr::new("50ms"),
        ];
        let (child, url) = start_server_with(&dir.join("primary.sqlite3"), TOKEN, &args);
        let server = Proc { child, url };
        let kv = client(&server.url).await;
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let mut last = Versionstamp::ZERO;
        for _ in 0..3 {
            for _ in 0..10 {
                last = random_commit(&kv, &mut rng).await;
            }
            wait_shipped(&kv, &server.url, last.version()).await;
        }
        let want = export(&kv).await;
        drop(kv);
        drop(server);
        let from = backup.to_str().unwrap();
        // A target that exists, with content of its own.
        let target = dir.join("target.sqlite3");
        let mut set = openkv();
        set.arg("--db").arg(&target).args(["set", r#"["mine"]"#, "1"]);
        ok(set);
        let before = std::fs::read(&target).unwrap();

        let mut logs: Vec<PathBuf> =
            std::fs::read_dir(backup.join("logs")).unwrap().map(|e| e.unwrap().path()).collect();
        logs.sort();
        let damaged = logs[logs.len() / 2].clone();
        let body = std::fs::read(&damaged).unwrap();
        std::fs::write(&damaged, &body[..body.len() - 5]).unwrap();
        let name = damaged.file_name().unwrap().to_str().unwrap().to_owned();
        for mut cmd in [restore_cmd(from, None, &last.to_hex(), &target), {
            let mut verify = openkv();
            verify.args(["backup", "verify", "--from", from]);
            verify
        }] {
            let out = run({
                cmd.stdout(Stdio::piped());
                cmd
            });
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{stderr}");
            assert!(stderr.contains(&name), "the object is named: {stderr}");
        }
        assert_eq!(std::fs::read(&target).unwrap(), before, "the target is untouched");
        std::fs::write(&damaged, &body).unwrap();

        // Bad input is a usage error.
        let out = run(restore_cmd(from, None, "yesterday", &target));
        assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
        let out = run(restore_cmd("s3://bucket-without-prefix", None, "latest", &target));
        assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
        // Restored into the existing file (replaced atomically), it holds the backup's state.
        ok(restore_cmd(from, None, &last.to_hex(), &target));
        assert_eq!(export_file(&target).await, want, "replaced by the backup's state");
    });
}

/// A backup as Deno Deploy wrote them (as far as its reader, denokv's timemachine, tells):
/// no openkv records, no seals, no boundary markers; FoundationDB versionstamps with a batch
/// order in their last two bytes; commits of several entries numbered by their suffix, the
/// last one `ffff`; a `sum` logged as `MK_SUM` with its result.
fn write_deploy_backup(root: &Path) -> Vec<[u8; 10]> {
    use openkv_proto::backup::{
        BackupKvMutationKind as Kind, BackupKvPair, BackupMutationRange, BackupReplicationLogEntry,
        BackupSnapshotRange,
    };
    use prost::Message;
    let vs = |counter: u64, order: u16| {
        let mut out = [0u8; 10];
        out[..8].copy_from_slice(&counter.to_be_bytes());
        out[8..].copy_from_slice(&order.to_be_bytes());
        out
    };
    let k = |n: i64| key!["deploy", n].encode().unwrap();
    let v8 =
        |n: i32| openkv::Value::from_js(&openkv::JsValue::Number(f64::from(n))).unwrap().to_bytes();
    std::fs::create_dir_all(root.join("snapshots")).unwrap();
    std::fs::create_dir_all(root.join("logs")).unwrap();
    let dv = vs(1000, 3);
    std::fs::write(root.join("differential"), hex::encode(dv)).unwrap();
    let mut snapshot = BackupSnapshotRange::default();
    for n in 0..10 {
        let mut d = vec![b'd'];
        d.extend(k(n));
        let mut m = vec![b'm'];
        m.extend(k(n));
        let mut meta = vs(900 + n as u64, 1).to_vec();
        meta.push(1);
        meta.extend((-1i64).to_le_bytes());
        snapshot.data_list.push(BackupKvPair { key: d, value: v8(n as i32) });
        snapshot.metadata_list.push(BackupKvPair { key: m, value: meta });
    }
    std::fs::write(
        root.join("snapshots/0001_0000000000000001_0000000000000000.bin"),
        snapshot.encode_to_vec(),
    )
    .unwrap();
    let entry =
        |stamp: [u8; 10], suffix: u16, kind: Kind, key: Vec<u8>, value: Vec<u8>, enc: i32| {
            let mut v = stamp.to_vec();
            v.extend(suffix.to_be_bytes());
            BackupReplicationLogEntry {
                versionstamp: v,
                kind: kind as i32,
                key,
                value,
                value_encoding: enc,
                ..Default::default()
            }
        };
    let mut commits = Vec::new();
    let mut objects = Vec::new();
    for (object, counters) in [[1001u64, 1002], [1005, 1009], [1010, 1020]].iter().enumerate() {
        let mut entries = Vec::new();
        for (i, counter) in counters.iter().enumerate() {
            let stamp = vs(*counter, 2 + i as u16);
            let n = (*counter % 10) as i64;
            entries.push(entry(stamp, 0, Kind::MkSet, k(n), v8(*counter as i32), 1));
            entries.push(entry(stamp, 1, Kind::MkClear, k(n + 1), vec![], 0));
            entries.push(entry(
                stamp,
                0xffff,
                Kind::MkSum,
                key!["sum"].encode().unwrap(),
                (*counter).to_le_bytes().to_vec(),
                2,
            ));
            commits.push(stamp);
        }
        let first = entries.first().unwrap().versionstamp.clone();
        let last = entries.last().unwrap().versionstamp.clone();
        let range = BackupMutationRange {
            entries,
            timestamp_ms: 1_700_000_000_000 + object as u64,
            ..Default::default()
        };
        objects.push((
            format!(
                "logs/0001_{:016x}_{}_{}.bin",
                object + 1,
                hex::encode(first),
                hex::encode(last)
            ),
            range.encode_to_vec(),
        ));
    }
    for (name, body) in objects {
        std::fs::write(root.join(name), body).unwrap();
    }
    commits
}

#[test]
fn a_deploy_backup_restores_into_openkv_as_denokv_reads_it() {
    backup_test(|dir| async move {
        let dir = dir.path();
        let Some(s3) = S3::start(&dir.join("s3")) else { return };
        let Some(denokv_bin) = denokv_bin() else { return };
        let commits = write_deploy_backup(&dir.join("s3").join(BUCKET).join("app"));
        let from = format!("s3://{BUCKET}/app");
        let mut sync = denokv(&denokv_bin, &dir.join("denokv.sqlite3"));
        sync.args(["pitr", "sync"]).args(s3_flags(&s3));
        ok(sync);
        // denokv's first point is the first commit after the snapshot; check the others.
        for stamp in &commits[1..] {
            let vs = hex::encode(stamp);
            let file = dir.join(format!("openkv-{vs}.sqlite3"));
            ok(restore_cmd(&from, Some(&s3), &vs, &file));
            let mut checkout = denokv(&denokv_bin, &dir.join("denokv.sqlite3"));
            checkout.args(["pitr", "checkout", &vs]);
            ok(checkout);
            let denokv_sees = denokv_export(&denokv_bin, &dir.join("denokv.sqlite3")).await;
            let openkv_restored = export_file(&file).await;
            assert!(openkv_restored.len() > 5);
            // Both store a versionstamp's commit counter only (a Deno-format file has no room
            // for FoundationDB's batch order): the same entries, byte for byte.
            assert_eq!(openkv_restored, denokv_sees, "at {vs}");
        }
        // And openkv's restore said so.
        let out = run(restore_cmd(&from, Some(&s3), "latest", &dir.join("latest.sqlite3")));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.contains("versionstamps kept their commit counter only"),
            "{stderr}"
        );
    });
}

#[test]
fn a_live_server_restores_from_its_own_backup_and_keeps_backing_up() {
    backup_test(|dir| async move {
        let dir = dir.path();
        let backup = dir.join("backup");
        let from = backup.to_str().unwrap().to_owned();
        let args = ["--backup-to", from.as_str(), "--backup-interval", "50ms"];
        let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        let (child, url) = start_server_with(&dir.join("primary.sqlite3"), TOKEN, &args);
        let server = Proc { child, url };
        let kv = client(&server.url).await;
        let points = history(&kv, 13, 3).await;
        wait_shipped(&kv, &server.url, points[2].versionstamp.version()).await;

        // --start/--end pick the points committed in between.
        let mut list = openkv();
        list.args(["pitr", "list", "--from", &from, "--start", &rfc3339(points[0].between_ms)]);
        list.args(["--end", &rfc3339(points[1].between_ms)]);
        let listed = ok(list);
        assert!(listed.contains(&points[1].versionstamp.to_hex()), "{listed}");
        assert!(!listed.contains(&points[0].versionstamp.to_hex()), "{listed}");
        assert!(!listed.contains(&points[2].versionstamp.to_hex()), "{listed}");

        // Into the live server, while it serves: its content becomes point 1's, versionstamps
        // included.
        let mut restore = openkv();
        restore.args(["--db", &server.url, "--access-token", TOKEN]);
        restore.args(["restore", "--from", &from, "--at", &points[0].versionstamp.to_hex()]);
        ok(restore);
        assert_eq!(export(&kv).await, points[0].export);
        // The restore replaced the history (a new change-log epoch): the backup takes a new
        // snapshot and goes on; its latest point is the server's state.
        let mut rng = rand::rngs::StdRng::seed_from_u64(14);
        let mut last = Versionstamp::ZERO;
        for _ in 0..10 {
            last = random_commit(&kv, &mut rng).await;
        }
        assert!(last > points[2].versionstamp, "versionstamps go on increasing");
        wait_shipped(&kv, &server.url, last.version()).await;
        let want = export(&kv).await;
        let file = dir.join("latest.sqlite3");
        ok(restore_cmd(&from, None, "latest", &file));
        assert_eq!(export_file(&file).await, want);
        let generations = std::fs::read_dir(backup.join("openkv/generations")).unwrap().count();
        assert_eq!(generations, 2, "a new snapshot after the restore");
        // The points before the restore are still there.
        let older = dir.join("older.sqlite3");
        ok(restore_cmd(&from, None, &points[1].versionstamp.to_hex(), &older));
        assert_eq!(export_file(&older).await, points[1].export);
        let mut verify = openkv();
        verify.args(["backup", "verify", "--from", &from]);
        ok(verify);
    });
}

#[test]
fn a_postgres_primary_backs_up_and_restores_exactly() {
    backup_test(|dir| async move {
        let dir = dir.path();
        let Some(db) = common::fresh_postgres_url() else { return };
        let backup = dir.join("backup");
        let from = backup.to_str().unwrap().to_owned();
        let mut child = Command::new(env!("CARGO_BIN_EXE_openkv"))
            .args(["--db", &db, "serve", "--addr", "127.0.0.1:0", "--access-token", TOKEN])
            .args(["--backup-to", &from, "--backup-interval", "50ms"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        let url = line.split_whitespace().last().unwrap().to_owned();
        let server = Proc { child, url };
        let kv = client(&server.url).await;
        let points = history(&kv, 17, 4).await;
        wait_shipped(&kv, &server.url, points[3].versionstamp.version()).await;
        for (i, point) in points.iter().enumerate() {
            let vs = point.versionstamp.to_hex();
            // Into a fresh PostgreSQL schema: exact, whole versionstamps.
            let schema = common::fresh_postgres_url().unwrap();
            let mut restore = openkv();
            restore.args(["--db", &schema, "restore", "--from", &from, "--at", &vs]);
            ok(restore);
            let restored = client_pg(&schema).await;
            assert_eq!(export(&restored).await, point.export, "restore {i} into PostgreSQL");
            restored.close().await.unwrap();
            // Into a file: the same entries (a file keeps a versionstamp's counter).
            let file = dir.join(format!("restored-{i}.sqlite3"));
            ok(restore_cmd(&from, None, &vs, &file));
            let truncated: Vec<_> = point
                .export
                .iter()
                .map(|(k, v, s)| (k.clone(), v.clone(), Versionstamp::from_version(s.version())))
                .collect();
            assert_eq!(export_file(&file).await, truncated, "restore {i} into a file");
        }
        // Into the live schema the server serves: its content becomes point 1's.
        let mut restore = openkv();
        restore.args(["--db", &db, "restore", "--from", &from, "--at"]);
        restore.arg(points[1].versionstamp.to_hex());
        ok(restore);
        assert_eq!(export(&kv).await, points[1].export);
        let mut rng = rand::rngs::StdRng::seed_from_u64(18);
        let last = random_commit(&kv, &mut rng).await;
        assert!(last > points[3].versionstamp, "versionstamps go on increasing");
        wait_shipped(&kv, &server.url, last.version()).await;
        let want = export(&kv).await;
        let schema = common::fresh_postgres_url().unwrap();
        let mut restore = openkv();
        restore.args(["--db", &schema, "restore", "--from", &from, "--at", "latest"]);
        ok(restore);
        let restored = client_pg(&schema).await;
        assert_eq!(export(&restored).await, want, "the backup followed the restore");
        restored.close().await.unwrap();
        let mut verify = openkv();
        verify.args(["backup", "verify", "--from", &from]);
        ok(verify);
    });
}

async fn client_pg(url: &str) -> Kv {
    Kv::open(url).await.unwrap()
}
