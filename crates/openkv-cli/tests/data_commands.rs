//! `openkv get | set | delete | list | count | watch | info` as a user runs them: the real
//! binary on a real SQLite file, and the same test body against a real `openkv serve`.
//! Also every kind of bad input, and the default database location (`--app`).

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value as Json};
use support::{on_file_and_server, openkv, output, Out, Target, TOKEN};

fn is_versionstamp(s: &str) -> bool {
    s.len() == 20 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn one_json(out: &Out) -> Json {
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{out:?}: {e}"))
}

#[test]
fn set_and_get_every_kind_of_value_and_key() {
    on_file_and_server(|t| {
        // Typed JSON: plain data and tags.
        let user = json!({
            "name": "Ada",
            "born": {"$date": "1815-12-10T00:00:00.000Z"},
            "id": {"$bigint": "18151210"},
            "tags": {"$set": ["math"]},
        });
        let set = t.run(&["set", r#"["users", "ada"]"#, &user.to_string()]).ok();
        let stamp = set.stdout.trim().to_owned();
        assert!(is_versionstamp(&stamp), "{set:?}");
        assert_eq!(one_json(&t.run(&["get", r#"["users","ada"]"#]).ok()), user);
        let entry = one_json(&t.run(&["get", "--entry", r#"["users", "ada"]"#]).ok());
        assert_eq!(
            entry,
            json!({"key": r#"["users", "ada"]"#, "value": user, "versionstamp": stamp})
        );

        // Every key part type, printed back in the same syntax.
        let key =
            r#"["k", 12n, -0, 3.5, true, false, b"AAE=", NaN, -123456789012345678901234567890n]"#;
        t.run(&["set", key, "1"]).ok();
        assert_eq!(t.run(&["get", key]).ok().stdout, "1\n");
        let listed = t.run(&["list", "--keys-only", "--prefix", r#"["k"]"#]).ok();
        assert_eq!(listed.stdout.trim(), key);
        // 12 (a number) and 12n (a bigint) are different keys.
        t.run(&[
            "get",
            r#"["k", 12, -0, 3.5, true, false, b"AAE=", NaN, -123456789012345678901234567890n]"#,
        ])
        .fails(3, "no entry at");

        // KvU64, raw bytes from a file, from stdin, from base64; JSON from a file and stdin.
        t.run(&["set", r#"["n"]"#, "--u64", "18446744073709551615"]).ok();
        assert_eq!(
            one_json(&t.run(&["get", r#"["n"]"#]).ok()),
            json!({"$kvu64": "18446744073709551615"})
        );
        assert_eq!(t.run(&["get", "--raw", r#"["n"]"#]).ok().stdout, "18446744073709551615");
        let dir = tempfile::tempdir().unwrap();
        let blob: Vec<u8> = (0..=255u8).chain([0, 0xff, b'\n']).collect();
        std::fs::write(dir.path().join("blob.bin"), &blob).unwrap();
        let at_file = format!("@{}", dir.path().join("blob.bin").display());
        t.run(&["set", r#"["blob"]"#, "--bytes", &at_file]).ok();
        assert_eq!(t.run(&["get", "--raw", r#"["blob"]"#]).ok().stdout_bytes, blob);
        t.run_stdin(&["set", r#"["blob2"]"#, "--bytes", "-"], b"\x00from stdin\xff").ok();
        assert_eq!(
            t.run(&["get", "--raw", r#"["blob2"]"#]).ok().stdout_bytes,
            b"\x00from stdin\xff"
        );
        t.run(&["set", r#"["b64"]"#, "--bytes-base64", "aGVsbG8="]).ok();
        assert_eq!(one_json(&t.run(&["get", r#"["b64"]"#]).ok()), json!({"$bytes": "aGVsbG8="}));
        std::fs::write(dir.path().join("v.json"), r#"{"$map": [[1, "one"]]}"#).unwrap();
        let json_file = format!("@{}", dir.path().join("v.json").display());
        t.run(&["set", r#"["map"]"#, &json_file]).ok();
        assert_eq!(one_json(&t.run(&["get", r#"["map"]"#]).ok()), json!({"$map": [[1, "one"]]}));
        t.run_stdin(&["set", r#"["text"]"#, "-"], br#""caf\u00e9 \n""#).ok();
        assert_eq!(t.run(&["get", "--raw", r#"["text"]"#]).ok().stdout, "café \n");
        t.run(&["get", "--raw", r#"["users", "ada"]"#]).fails(1, "drop --raw");

        // Expiry.
        t.run(&["set", r#"["tmp"]"#, r#""soon gone""#, "--expire-in", "1s"]).ok();
        assert_eq!(t.run(&["get", r#"["tmp"]"#]).ok().stdout, "\"soon gone\"\n");
        std::thread::sleep(Duration::from_millis(1300));
        let gone = t.run(&["get", r#"["tmp"]"#]).fails(3, r#"no entry at ["tmp"]"#);
        assert_eq!(gone.stdout, "");
    });
}

#[test]
fn list_count_delete_with_selectors_limits_and_cursors() {
    on_file_and_server(|t| {
        for i in 0..5 {
            t.run(&["set", &format!(r#"["p", {i}]"#), &i.to_string()]).ok();
        }
        t.run(&["set", r#"["q"]"#, "true"]).ok();
        let keys = |args: &[&str]| -> Vec<String> {
            let mut all = vec!["list", "--keys-only"];
            all.extend_from_slice(args);
            t.run(&all).ok().stdout.lines().map(str::to_owned).collect()
        };
        let p = |i: i32| format!(r#"["p", {i}]"#);
        assert_eq!(keys(&["--prefix", r#"["p"]"#]), (0..5).map(p).collect::<Vec<_>>());
        assert_eq!(
            keys(&["--prefix", r#"["p"]"#, "--reverse"]),
            (0..5).rev().map(p).collect::<Vec<_>>()
        );
        assert_eq!(keys(&["--prefix", r#"["p"]"#, "--start", r#"["p", 2]"#]), [p(2), p(3), p(4)]);
        assert_eq!(keys(&["--prefix", r#"["p"]"#, "--end", r#"["p", 2]"#]), [p(0), p(1)]);
        assert_eq!(
            keys(&["--start", r#"["p", 1]"#, "--end", r#"["q"]"#]),
            [p(1), p(2), p(3), p(4)]
        );
        assert_eq!(keys(&["--start", r#"["p", 4]"#]), [p(4), r#"["q"]"#.to_owned()]);
        assert_eq!(keys(&[]).len(), 6);

        // NDJSON entries, pages and cursors.
        let page = t.run(&["list", "--prefix", r#"["p"]"#, "--limit", "2"]).ok();
        let lines = page.json_lines();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["key"], p(1));
        assert_eq!(lines[1]["value"], json!(1));
        assert!(is_versionstamp(lines[1]["versionstamp"].as_str().unwrap()));
        let cursor = |out: &Out| {
            out.stderr.lines().find_map(|l| l.strip_prefix("cursor: ")).map(str::to_owned)
        };
        let c1 = cursor(&page).expect("more remain: a cursor");
        let page2 = t.run(&["list", "--prefix", r#"["p"]"#, "--limit", "2", "--cursor", &c1]).ok();
        assert_eq!(page2.json_lines()[0]["key"], p(2));
        let c2 = cursor(&page2).expect("more remain: a cursor");
        let page3 = t.run(&["list", "--prefix", r#"["p"]"#, "--limit", "2", "--cursor", &c2]).ok();
        assert_eq!(page3.json_lines().len(), 1);
        assert_eq!(cursor(&page3), None, "nothing remains: no cursor");
        // Exactly the remaining entries: no cursor either.
        let exact = t.run(&["list", "--prefix", r#"["p"]"#, "--limit", "5"]).ok();
        assert_eq!(cursor(&exact), None);
        let eventual = t.run(&["list", "--prefix", r#"["p"]"#, "--consistency", "eventual"]).ok();
        assert_eq!(eventual.json_lines().len(), 5);

        let table = t.run(&["list", "--format", "table", "--prefix", r#"["p"]"#]).ok();
        let rows: Vec<&str> = table.stdout.lines().collect();
        assert!(rows[0].starts_with("KEY") && rows[0].contains("VERSIONSTAMP"), "{table:?}");
        assert!(rows[1].starts_with(r#"["p", 0]"#) && rows[1].ends_with(" 0"), "{table:?}");

        assert_eq!(t.run(&["count", "--prefix", r#"["p"]"#]).ok().stdout, "5\n");
        assert_eq!(t.run(&["count"]).ok().stdout, "6\n");
        assert_eq!(
            t.run(&["count", "--start", r#"["p", 3]"#, "--end", r#"["q"]"#]).ok().stdout,
            "2\n"
        );

        t.run(&["delete", r#"["p", 0]"#, r#"["p", 4]"#, r#"["never", "there"]"#]).ok();
        assert_eq!(keys(&["--prefix", r#"["p"]"#]), [p(1), p(2), p(3)]);
        assert_eq!(t.run(&["count"]).ok().stdout, "4\n");

        let info = t.run(&["info"]).ok();
        assert!(info.stdout.contains("live entries:    4"), "{info:?}");
        assert_eq!(info.stdout.contains("schema version:  3"), !t.is_remote(), "{info:?}");
    });
}

/// Reads the lines a child prints, on a thread.
fn line_reader(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn watch_prints_a_line_per_change_and_exits_0_on_sigterm() {
    on_file_and_server(|t| {
        t.run(&["set", r#"["w", 2]"#, r#"{"$bigint": "2"}"#]).ok();
        let mut watch = t.cmd();
        watch.args(["watch", r#"["w", 1]"#, r#"["w", 2]"#]).stdout(Stdio::piped());
        let mut child = watch.spawn().unwrap();
        let lines = line_reader(child.stdout.take().unwrap());
        let next = || -> Json {
            let line = lines.recv_timeout(Duration::from_secs(20)).expect("a watch line");
            serde_json::from_str(&line).unwrap()
        };
        let first = next();
        assert_eq!(first[0], json!({"key": r#"["w", 1]"#, "value": null, "versionstamp": null}));
        assert_eq!(first[1]["value"], json!({"$bigint": "2"}));
        let stamp = t.run(&["set", r#"["w", 1]"#, r#""one""#]).ok().stdout.trim().to_owned();
        let second = next();
        assert_eq!(second[0], json!({"key": r#"["w", 1]"#, "value": "one", "versionstamp": stamp}));
        assert_eq!(second[1], first[1]);
        t.run(&["delete", r#"["w", 2]"#]).ok();
        let third = next();
        assert_eq!(third[0], second[0]);
        assert_eq!(third[1]["value"], Json::Null);
        let status = common::sigterm(&mut child);
        assert_eq!(status.code(), Some(0), "watch after SIGTERM: {status}");
    });
}

#[test]
fn malformed_keys_are_usage_errors_that_say_where() {
    let dir = tempfile::tempdir().unwrap();
    let t = Target::file(&dir.path().join("db.sqlite3"));
    t.run(&["set", r#"["ok"]"#, "1"]).ok();
    let cases = [
        ("users", "at column 1: expected '[' to start the key"),
        (r#"["users" 12]"#, "at column 10: expected ',' or ']'"),
        (r#"['users']"#, "not single quotes"),
        (r#"["users", 12x]"#, "at column 13"),
        (r#"["a", 1.5n]"#, "a bigint is a whole number"),
        (r#"["a", b"not base64"]"#, "standard base64"),
        (r#"["\ud800"]"#, "half of a surrogate pair"),
        (r#"["unterminated]"#, "no closing"),
        (r#"["a",]"#, "expected a key part"),
        ("[1e999]", "too large for a number"),
    ];
    for (key, needle) in cases {
        for args in [vec!["get", key], vec!["set", key, "1"], vec!["list", "--prefix", key]] {
            let out = t.run(&args).fails(2, needle);
            assert!(out.stderr.contains("invalid"), "{out:?}");
            assert!(out.stderr.contains(r#"keys look like ["users", 12n"#), "{out:?}");
        }
    }
    // Keys the database refuses before doing anything are usage errors too.
    t.run(&["set", "[]", "1"]).fails(2, "key cannot be empty");
    let long = format!(r#"["{}"]"#, "x".repeat(3000));
    t.run(&["set", &long, "1"]).fails(2, "Key too large for write");
    let eleven: Vec<String> = (0..11).map(|i| format!("[{i}]")).collect();
    let mut watch = vec!["watch".to_owned()];
    watch.extend(eleven);
    t.run(&watch).fails(2, "Too many keys (max 10)");
    // Nothing was written by any of them.
    assert_eq!(t.run(&["count"]).ok().stdout, "1\n");
}

#[test]
fn bad_values_options_and_files_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let t = Target::file(&dir.path().join("db.sqlite3"));
    t.run(&["set", r#"["ok"]"#, "1"]).ok();
    t.run(&["set", r#"["a"]"#, "{not json"]).fails(2, "the value is not JSON");
    t.run(&["set", r#"["a"]"#, "hello"]).fails(2, "quote it for the shell");
    t.run(&["set", r#"["a"]"#, r#"{"$bigint": 12}"#]).fails(2, "not valid typed JSON");
    t.run(&["set", r#"["a"]"#, r#"{"$nope": 1}"#]).fails(2, "not valid typed JSON");
    t.run(&["set", r#"["a"]"#]).fails(2, "required");
    t.run(&["set", r#"["a"]"#, "1", "--u64", "2"]).fails(2, "cannot be used with");
    t.run(&["set", r#"["a"]"#, "--u64", "-1"]).fails(2, "--u64");
    t.run(&["set", r#"["a"]"#, "--bytes-base64", "!!"]).fails(2, "not standard padded base64");
    t.run(&["set", r#"["a"]"#, "--bytes", "plain"]).fails(2, "takes @FILE");
    let missing = format!("@{}", dir.path().join("missing.bin").display());
    t.run(&["set", r#"["a"]"#, "--bytes", &missing]).fails(1, "cannot read");
    t.run(&["set", r#"["a"]"#, &missing]).fails(1, "cannot read");
    t.run(&["set", r#"["a"]"#, "1", "--expire-in", "soon"]).fails(2, "--expire-in");
    t.run(&["set", r#"["a"]"#, &format!(r#"{{"$bytes": "{}"}}"#, "A".repeat(90_000))])
        .fails(2, "Value too large");
    t.run(&["list", "--limit", "0"]).fails(2, "limit must be positive");
    t.run(&["list", "--prefix", r#"["a"]"#, "--start", r#"["b"]"#])
        .fails(2, "Start key is not in the keyspace defined by prefix");
    t.run(&["list", "--cursor", "!!!"]).fails(2, "invalid cursor");
    t.run(&["list", "--consistency", "sometimes"]).fails(2, "--consistency");
    t.run(&["frobnicate"]).fails(2, "unrecognized subcommand");
    assert_eq!(t.run(&["count"]).ok().stdout, "1\n", "nothing was written");

    // Reading a database that does not exist neither succeeds nor creates it.
    let absent = dir.path().join("absent.sqlite3");
    for cmd in [vec!["get", "[1]"], vec!["list"], vec!["count"], vec!["info"], vec!["export"]] {
        let mut run = openkv();
        run.arg("--db").arg(&absent).args(&cmd);
        output(run, b"").fails(1, "no database at");
        assert!(!absent.exists(), "{cmd:?} created the file");
    }
    let mut none = openkv();
    none.args(["get", "[1]"]);
    output(none, b"").fails(2, "no database given");
}

#[test]
fn a_wrong_token_fails_clearly_and_leaves_the_server_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let t = Target::served(&dir.path().join("db.sqlite3"));
    t.run(&["set", r#"["kept"]"#, "1"]).ok();
    let wrong = |args: &[&str]| {
        let mut cmd = openkv();
        cmd.args(["--db", &t.db, "--access-token", "not-the-token-at-all"]).args(args);
        output(cmd, b"")
    };
    for args in [
        vec!["get", r#"["kept"]"#],
        vec!["set", r#"["new"]"#, "2"],
        vec!["delete", r#"["kept"]"#],
        vec!["list"],
        vec!["count"],
        vec!["watch", r#"["kept"]"#],
    ] {
        wrong(&args).fails(1, "the server refused the request (HTTP 401)");
    }
    // No token at all: a usage error before any request.
    let mut cmd = openkv();
    cmd.args(["--db", &t.db, "get", r#"["kept"]"#]);
    output(cmd, b"").fails(2, "needs an access token");
    // The token from DENO_KV_ACCESS_TOKEN, as Deno reads it.
    let mut cmd = openkv();
    cmd.args(["--db", &t.db, "count"]).env("DENO_KV_ACCESS_TOKEN", TOKEN);
    assert_eq!(output(cmd, b"").ok().stdout, "1\n");
    assert_eq!(t.run(&["list", "--keys-only"]).ok().stdout, "[\"kept\"]\n");
}

#[test]
fn app_databases_live_in_the_platform_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("xdg-data");
    let run = |args: &[&str]| {
        let mut cmd = openkv();
        cmd.env("XDG_DATA_HOME", &data).env("HOME", dir.path().join("home")).args(args);
        output(cmd, b"")
    };
    let expected = data.join("openkv/todo/kv.sqlite3");
    let info = run(&["info"]).ok();
    assert!(
        info.stdout.contains(&data.join("openkv/NAME/kv.sqlite3").display().to_string()),
        "{info:?}"
    );
    let before = run(&["--app", "todo", "info"]).ok();
    assert!(before.stdout.contains("not created yet"), "{before:?}");
    run(&["--app", "todo", "get", "[1]"]).fails(1, "no database at");
    assert!(!expected.exists());
    run(&["--app", "todo", "set", r#"["task", 1]"#, r#""write tests""#]).ok();
    assert!(expected.is_file(), "set created {}", expected.display());
    assert_eq!(run(&["--app", "todo", "get", r#"["task", 1]"#]).ok().stdout, "\"write tests\"\n");
    let after = run(&["--app", "todo", "info"]).ok();
    assert!(after.stdout.contains(&expected.display().to_string()), "{after:?}");
    assert!(after.stdout.contains("live entries:    1"), "{after:?}");
    // The same file through --db.
    let mut cmd = openkv();
    cmd.arg("--db").arg(&expected).args(["count"]);
    assert_eq!(output(cmd, b"").ok().stdout, "1\n");
    run(&["--app", "../escape", "set", "[1]", "1"]).fails(2, "invalid application name");
    run(&["--app", "todo", "--db", "x.sqlite3", "count"]).fails(2, "cannot be used with");
}
