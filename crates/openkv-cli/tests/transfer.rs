//! `openkv export` and `openkv import` with the real binary: export → import → export is the
//! identity (but for versionstamps) on a database holding every value type the Deno CLI can
//! store, on a file and through `openkv serve`; batches, expiry, resuming, bad lines, bad
//! files, a wrong token; and the progress bar on a real terminal.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value as Json};
use support::{on_file_and_server, openkv, output, Out, Target};

/// A database file holding every JS value type (written by the Deno CLI, through
/// `tests/deno/write_values.ts`), plus what only openkv's CLI writes here: KvU64 and raw
/// bytes values, keys of every part type, and entries that expire in an hour.
fn every_value_type(path: &Path) -> usize {
    let out = common::run_deno_script("write_values.ts", &[path.as_os_str()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let t = Target::file(path);
    t.run(&["set", r#"["u64"]"#, "--u64", "18446744073709551615"]).ok();
    t.run(&["set", r#"["bytes"]"#, "--bytes-base64", "AAEC/w=="]).ok();
    t.run(&["set", r#"["bytes", "empty"]"#, "--bytes-base64", ""]).ok();
    let keys = [
        r#"["k", "", "\u0000\n\"", "日本"]"#,
        r#"["k", b"", b"AP8A"]"#,
        r#"["k", 0n, -1n, 123456789012345678901234567890123456789n]"#,
        r#"["k", 0, -0, 1.5, -1e300, 5e-324, NaN, Infinity, -Infinity]"#,
        r#"["k", true, false]"#,
    ];
    for key in keys {
        t.run(&["set", key, r#"{"$undefined": null}"#]).ok();
    }
    t.run(&["set", r#"["expiring", 1]"#, r#""an hour""#, "--expire-in", "1h"]).ok();
    t.run(&["set", r#"["expiring", 2]"#, "--u64", "2", "--expire-in", "2h"]).ok();
    t.run(&["count"]).ok().stdout.trim().parse().unwrap()
}

/// The export's lines without what an import changes: versionstamps always, and expiries
/// when the database was read over KV Connect (which does not carry them).
fn comparable(export: &str, keep_expiry: bool) -> Vec<Json> {
    export
        .lines()
        .map(|line| {
            let mut json: Json = serde_json::from_str(line).unwrap();
            let object = json.as_object_mut().unwrap();
            assert!(object.remove("versionstamp").unwrap().is_string());
            if !keep_expiry {
                object.insert("expireAt".into(), Json::Null);
            }
            json
        })
        .collect()
}

#[test]
fn export_import_export_is_the_identity_on_every_value_type() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.sqlite3");
    let entries = every_value_type(&source);
    assert!(entries > 90, "{entries} entries");
    let exported = dir.path().join("a.ndjson");
    let src = Target::file(&source);
    let out = src.run(&["export", "-o", exported.to_str().unwrap()]).ok();
    assert!(out.stderr.contains(&format!("export: {entries} entries")), "{out:?}");
    assert!(out.stderr.contains("(2 with an expiry)"), "{out:?}");
    assert_eq!(out.stdout, "", "-o: nothing on stdout");
    let a = std::fs::read_to_string(&exported).unwrap();
    assert_eq!(a.lines().count(), entries);
    // What the lines hold.
    let lines: Vec<Json> = a.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let by_key = |k: &str| lines.iter().find(|l| l["key"] == k).unwrap_or_else(|| panic!("{k}"));
    let u64_line = by_key(r#"["u64"]"#);
    assert_eq!(u64_line["encoding"], "u64");
    assert_eq!(u64_line["value"], json!({"$kvu64": "18446744073709551615"}));
    assert_eq!(u64_line["keyBytes"], "AnU2NAA=");
    assert_eq!(by_key(r#"["bytes"]"#)["encoding"], "bytes");
    assert_eq!(by_key(r#"["v", "bigint_neg_2_200"]"#)["encoding"], "v8");
    let hour = by_key(r#"["expiring", 1]"#)["expireAt"].as_i64().expect("an expiry");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    assert!((hour - now.as_millis() as i64 - 3_600_000).abs() < 120_000, "{hour}");
    assert_eq!(by_key(r#"["u64"]"#)["expireAt"], Json::Null);
    // A second export is the same file: stdout and -o agree.
    assert_eq!(src.run(&["export"]).ok().stdout, a);

    on_file_and_server(|t| {
        let imported = t.run(&["import", "-i", exported.to_str().unwrap(), "--json"]).ok();
        let report: Json = serde_json::from_str(imported.stdout.trim()).unwrap();
        assert_eq!(report["lines"], entries);
        assert_eq!(report["written"], entries);
        assert_eq!(report["errors"], 0);
        assert!(imported.stderr.contains(&format!("wrote {entries} entries")), "{imported:?}");
        let b = t.run(&["export"]).ok().stdout;
        assert_eq!(comparable(&b, !t.is_remote()), comparable(&a, !t.is_remote()));
    });

    // Through the server, the expiries were carried too: the file behind it has them.
    let served_file = dir.path().join("served.sqlite3");
    let mut served = Target::served(&served_file);
    served.run(&["import", "-i", exported.to_str().unwrap()]).ok();
    served.stop();
    let c = Target::file(&served_file).run(&["export"]).ok().stdout;
    assert_eq!(comparable(&c, true), comparable(&a, true));

    // And Deno reads every value back as it wrote it (web objects included: a CryptoKey's key
    // material, a Blob's size and type), after export → import through the server.
    let out = common::run_deno_script("check_values.ts", &[served_file.as_os_str(), "v".as_ref()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.lines().any(|l| l.starts_with("ok ")),
        "check_values.ts after export → import: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `export --snapshot` while a writer keeps moving units between `["a"]` and `["z"]` in
/// atomic writes: the export holds one consistent state (the sum is intact), although the
/// 2,502 entries span three read batches and the writer committed during the export; the
/// temporary copy is gone afterwards.
#[test]
fn export_snapshot_is_consistent_under_a_concurrent_writer() {
    use openkv::{key, Value};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    const TOTAL: u64 = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.sqlite3");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let kv = rt.block_on(async {
        let kv = openkv::Kv::open(&db).await.unwrap();
        let mut op = kv.atomic();
        op = op.set(&key!["a"], Value::U64(TOTAL)).set(&key!["z"], Value::U64(0));
        op.commit().await.unwrap();
        for chunk in (0..2_500).collect::<Vec<i64>>().chunks(500) {
            let mut op = kv.atomic();
            for i in chunk {
                op = op.set(&key!["m", *i], Value::Bytes(vec![7; 64]));
            }
            op.commit().await.unwrap();
        }
        kv
    });
    let (stop, commits) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let writer = {
        let (stop, commits, kv) = (stop.clone(), commits.clone(), kv.clone());
        rt.spawn(async move {
            let units = |e: Option<openkv::Entry>| match e.map(|e| e.value) {
                Some(Value::U64(n)) => n,
                other => panic!("not a KvU64: {other:?}"),
            };
            while !stop.load(Ordering::Relaxed) {
                let a = kv.get(&key!["a"]).await.unwrap();
                let z = kv.get(&key!["z"]).await.unwrap();
                let (va, vz) =
                    (a.as_ref().map(|e| e.versionstamp), z.as_ref().map(|e| e.versionstamp));
                let (na, nz) = (units(a), units(z));
                let outcome = kv
                    .atomic()
                    .check(&key!["a"], va)
                    .check(&key!["z"], vz)
                    .set(&key!["a"], Value::U64(na - 1))
                    .set(&key!["z"], Value::U64(nz + 1))
                    .commit()
                    .await
                    .unwrap();
                assert!(outcome.is_committed(), "the only writer");
                commits.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    while commits.load(Ordering::Relaxed) < 20 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let before = commits.load(Ordering::Relaxed);
    let exported = dir.path().join("out").join("snapshot.ndjson");
    std::fs::create_dir(exported.parent().unwrap()).unwrap();
    let live = Target::file(&db);
    let out = live.run(&["export", "--snapshot", "-o", exported.to_str().unwrap()]).ok();
    let during = commits.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    rt.block_on(writer).unwrap();
    assert!(out.stderr.contains("export: snapshot of 2502 entries taken"), "{out:?}");
    assert!(during > 0, "the writer committed while the export ran");
    let text = std::fs::read_to_string(&exported).unwrap();
    assert_eq!(text.lines().count(), 2_502);
    let units = |k: &str| -> u64 {
        let line = text.lines().map(|l| serde_json::from_str::<Json>(l).unwrap());
        let line = line.into_iter().find(|l| l["key"] == k).unwrap_or_else(|| panic!("{k}"));
        line["value"]["$kvu64"].as_str().unwrap().parse().unwrap()
    };
    let (a, z) = (units(r#"["a"]"#), units(r#"["z"]"#));
    assert_eq!(a + z, TOTAL, "one consistent state: a = {a}, z = {z}");
    assert!(z >= 20, "a state after the writer had started: z = {z}");
    let left: Vec<_> = std::fs::read_dir(exported.parent().unwrap()).unwrap().collect();
    assert_eq!(left.len(), 1, "only the export is left beside it: {left:?}");
    rt.block_on(kv.close()).unwrap();
}

#[test]
fn import_counts_expired_and_bad_lines_and_resumes_from_a_line() {
    let future = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let future = future.as_millis() as i64 + 3_600_000;
    let big = format!(r#"{{"$bytes": "{}"}}"#, "A".repeat(90_000));
    let lines = [
        json!({"key": r#"["a"]"#, "value": 1}).to_string(),
        json!({"key": r#"["gone"]"#, "value": 2, "expireAt": 1000}).to_string(),
        json!({"key": r#"["later"]"#, "value": 3, "expireAt": future}).to_string(),
        "{not json".to_owned(),
        json!({"key": r#"["bad" 1]"#, "value": 4}).to_string(),
        String::new(),
        format!(r#"{{"key": "[\"big\"]", "value": {big}}}"#),
        json!({"keyBytes": "AmIA", "value": {"$kvu64": "5"}, "encoding": "u64"}).to_string(),
        json!({"key": r#"["c"]"#, "value": {"$date": "2024-01-02T03:04:05.678Z"}}).to_string(),
    ];
    let input = lines.join("\n") + "\n";
    on_file_and_server(|t| {
        let out = t.run_stdin(&["import", "--json"], input.as_bytes());
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stderr.contains("import: line 4: not JSON"), "{out:?}");
        assert!(out.stderr.contains("import: line 5: \"key\" [\"bad\" 1]: at column 8"), "{out:?}");
        assert!(out.stderr.contains("import: line 7: Value too large"), "{out:?}");
        assert!(out.stderr.contains("3 lines could not be imported"), "{out:?}");
        let report: Json = serde_json::from_str(out.stdout.trim()).unwrap();
        assert_eq!(
            report,
            json!({"lines": 9, "written": 4, "skipped": {"expired": 1, "beforeResume": 0, "blank": 1}, "errors": 3})
        );
        let keys = t.run(&["list", "--keys-only"]).ok().stdout;
        assert_eq!(keys, "[\"a\"]\n[\"b\"]\n[\"c\"]\n[\"later\"]\n");
        assert_eq!(t.run(&["get", r#"["b"]"#]).ok().stdout, "{\"$kvu64\":\"5\"}\n");

        // Resuming at line 8 writes only lines 8 and 9 (here over the same keys again).
        t.run(&["delete", r#"["a"]"#, r#"["b"]"#, r#"["c"]"#]).ok();
        let resumed =
            t.run_stdin(&["import", "--resume-from", "8", "--json"], input.as_bytes()).ok();
        let report: Json = serde_json::from_str(resumed.stdout.trim()).unwrap();
        assert_eq!(report["written"], 2);
        assert_eq!(report["skipped"]["beforeResume"], 7);
        let keys = t.run(&["list", "--keys-only"]).ok().stdout;
        assert_eq!(keys, "[\"b\"]\n[\"c\"]\n[\"later\"]\n");
    });
}

/// The versionstamps of an export: entries of one atomic commit share one.
fn commits(export: &Out) -> std::collections::BTreeMap<String, usize> {
    let mut stamps = std::collections::BTreeMap::new();
    for line in export.json_lines() {
        *stamps.entry(line["versionstamp"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    stamps
}

#[test]
fn import_commits_batches_within_the_write_limits() {
    let small: String = (0..1200)
        .map(|i| json!({"key": format!("[\"small\", {i}n]"), "value": i}).to_string() + "\n")
        .collect();
    // 60 000-byte values: 13 fit in the 800 KiB a commit may carry, 14 do not.
    let large: String = (0..30)
        .map(|i| {
            let value = json!({"$bytes": base64_of_zeros(60_000)});
            json!({"key": format!("[\"large\", {i}n]"), "value": value}).to_string() + "\n"
        })
        .collect();
    on_file_and_server(|t| {
        t.run_stdin(&["import"], small.as_bytes()).ok();
        let counts: Vec<usize> =
            commits(&t.run(&["export", "--prefix", r#"["small"]"#]).ok()).into_values().collect();
        assert_eq!(counts, [500, 500, 200]);
        t.run_stdin(&["import", "--batch-size", "7"], small.as_bytes()).ok();
        let counts = commits(&t.run(&["export", "--prefix", r#"["small"]"#]).ok());
        assert_eq!(counts.len(), 1200usize.div_ceil(7));

        t.run_stdin(&["import"], large.as_bytes()).ok();
        let counts: Vec<usize> =
            commits(&t.run(&["export", "--prefix", r#"["large"]"#]).ok()).into_values().collect();
        assert_eq!(counts, [13, 13, 4]);
        assert_eq!(t.run(&["count"]).ok().stdout, "1230\n");
    });
}

fn base64_of_zeros(n: usize) -> String {
    assert_eq!(n % 3, 0);
    "A".repeat(n / 3 * 4)
}

#[test]
fn bad_files_and_a_wrong_token_leave_the_target_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let t = Target::served(&dir.path().join("db.sqlite3"));
    let file = dir.path().join("in.ndjson");
    std::fs::write(&file, json!({"key": "[\"x\"]", "value": 1}).to_string() + "\n").unwrap();
    let mut cmd = openkv();
    cmd.args(["--db", &t.db, "--access-token", "wrong-token-wrong-token", "import", "-i"]);
    cmd.arg(&file);
    output(cmd, b"").fails(1, "the server refused the request (HTTP 401)");
    let mut cmd = openkv();
    cmd.args(["--db", &t.db, "--access-token", "wrong-token-wrong-token", "export"]);
    output(cmd, b"").fails(1, "HTTP 401");
    t.run(&["import", "-i", "/nonexistent/in.ndjson"])
        .fails(1, "cannot read /nonexistent/in.ndjson");
    t.run(&["import", "--resume-from", "0"]).fails(2, "--resume-from");
    t.run(&["import", "--batch-size", "1001"]).fails(2, "--batch-size");
    t.run_stdin(&["import"], b"\xff\xfe not utf-8\n").fails(1, "line 1: not UTF-8");
    assert_eq!(t.run(&["count"]).ok().stdout, "0\n", "nothing was written");

    // An export that cannot be written leaves no file behind, and keeps an older one intact.
    t.run(&["set", r#"["x"]"#, "1"]).ok();
    t.run(&["export", "-o", "/nonexistent/dir/out.ndjson"]).fails(1, "cannot create");
    let target = dir.path().join("out.ndjson");
    std::fs::write(&target, "old\n").unwrap();
    t.run(&["export", "-o", target.to_str().unwrap()]).ok();
    assert!(std::fs::read_to_string(&target).unwrap().starts_with("{\"key\":\"[\\\"x\\\"]\""));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("openkv-export"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // What is not a regular file is written, never replaced: here a symbolic link (the same
    // path serves a device such as /dev/null).
    let link = dir.path().join("link.ndjson");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    std::fs::write(&target, "old\n").unwrap();
    t.run(&["export", "-o", link.to_str().unwrap()]).ok();
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert!(std::fs::read_to_string(&target).unwrap().starts_with("{\"key\":"));
}

/// `script` gives the command a real terminal; the bar shows a rate and an ETA there, and
/// nothing of it appears when stderr is not a terminal.
#[test]
fn progress_bars_only_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite3");
    let t = Target::file(&db);
    let lines: String = (0..5000)
        .map(|i| {
            json!({"key": format!("[\"p\", {i}n]"), "value": "x".repeat(100)}).to_string() + "\n"
        })
        .collect();
    let input = dir.path().join("in.ndjson");
    std::fs::write(&input, &lines).unwrap();
    let plain = t.run(&["import", "-i", input.to_str().unwrap()]).ok();
    assert!(!plain.stderr.contains("ETA") && !plain.stderr.contains('\x1b'), "{plain:?}");
    assert_eq!(plain.stderr.trim().lines().count(), 1, "only the report: {plain:?}");
    let plain = t.run(&["export", "-o", dir.path().join("plain.ndjson").to_str().unwrap()]).ok();
    assert!(!plain.stderr.contains("ETA"), "{plain:?}");

    for args in [
        format!("import -i {}", input.display()),
        format!("export -o {}", dir.path().join("out.ndjson").display()),
    ] {
        let command = format!("{} --db {} {args}", env!("CARGO_BIN_EXE_openkv"), db.display());
        let out = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env("RUST_LOG", "warn")
            .env("TERM", "xterm")
            .output()
            .expect("run script (util-linux)");
        let transcript = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{args}: {transcript}");
        assert!(transcript.contains("ETA"), "{args}: no progress bar in {transcript:?}");
        assert!(transcript.contains("/s"), "{args}: no rate in {transcript:?}");
    }
}
