//! `openkv serve --tls-cert --tls-key`: the real Deno CLI talks KV Connect to it over HTTPS
//! (trusting the test CA through `--cert`), SIGTERM still stops it cleanly; bad certificate or
//! key files and half the flag pair are refused with a clear message and a failing exit status.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../../openkv-server/tests/support/pki.rs"]
mod pki;

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

use common::{deno_bin, sigterm, start_server_with, workspace_root};
use pki::TestCa;

const TOKEN: &str = "serve-tls-token-0123456789";

#[test]
fn deno_uses_openkv_serve_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let files = TestCa::new().write_server_files(dir.path());
    let db = dir.path().join("served.sqlite3");
    let (mut server, url) = start_server_with(
        &db,
        TOKEN,
        &[
            "--tls-cert".as_ref(),
            files.cert.as_os_str(),
            "--tls-key".as_ref(),
            files.key.as_os_str(),
        ],
    );
    let port = url.strip_prefix("https://127.0.0.1:").expect("the server announces https://");

    let out = Command::new(deno_bin())
        .args(["run", "--unstable-kv", "--allow-env", "--allow-net"])
        .arg("--cert")
        .arg(&files.ca)
        .arg("tests/deno/tls_client.ts")
        .current_dir(workspace_root())
        // The name in the certificate, as a user would write it.
        .env("KV_URL", format!("https://localhost:{port}"))
        .env("DENO_KV_ACCESS_TOKEN", TOKEN)
        .env("DENO_NO_UPDATE_CHECK", "1")
        .env("NO_COLOR", "1")
        .output()
        .expect("run deno");
    let status = sigterm(&mut server);
    assert!(
        out.status.success(),
        "the Deno client failed ({})\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"setOk":true,"hello":"over https","n":"42","sums":[true,true],"count":"7","watched":true,"listed":["tls/count","tls/greeting"]}"#
    );
    assert!(status.success(), "openkv serve exited with {status} after SIGTERM");
}

/// Runs `openkv --db <dir>/db.sqlite3 serve …args` to completion (it must fail before serving).
fn serve_expecting_failure(dir: &Path, args: &[&OsStr], env: &[(&str, &OsStr)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_openkv"));
    cmd.arg("--db")
        .arg(dir.join("db.sqlite3"))
        .args(["serve", "--addr", "127.0.0.1:0", "--access-token", TOKEN])
        .args(args)
        .env_remove("OPENKV_TLS_CERT")
        .env_remove("OPENKV_TLS_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run openkv serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "openkv serve accepted {args:?}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "it announced serving: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

#[test]
fn bad_certificate_or_key_files_fail_with_a_message_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let files = TestCa::new().write_server_files(dir.path());
    let missing = dir.path().join("missing-cert.pem");
    let flags = |cert: &Path, key: &Path| -> Vec<std::ffi::OsString> {
        vec!["--tls-cert".into(), cert.into(), "--tls-key".into(), key.into()]
    };
    let run = |cert: &Path, key: &Path| {
        let args = flags(cert, key);
        let args: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let out = serve_expecting_failure(dir.path(), &args, &[]);
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    let stderr = run(&missing, &files.key);
    assert!(stderr.contains(&format!("openkv: cannot read {}: ", missing.display())), "{stderr}");
    // Key and certificate swapped.
    let stderr = run(&files.key, &files.cert);
    assert!(
        stderr.contains(&format!("openkv: {} holds no PEM certificate", files.key.display())),
        "{stderr}"
    );
    // The key of another certificate.
    let other_dir = dir.path().join("other");
    std::fs::create_dir(&other_dir).unwrap();
    let other = TestCa::new().write_server_files(&other_dir);
    let stderr = run(&files.cert, &other.key);
    assert!(
        stderr.contains(&format!(
            "openkv: the private key in {} does not match the certificate in {}",
            other.key.display(),
            files.cert.display()
        )),
        "{stderr}"
    );
    // Nothing was created: the files are checked before the database is opened.
    assert!(!dir.path().join("db.sqlite3").exists());
}

#[test]
fn a_certificate_without_a_key_is_refused_and_the_other_way_round() {
    let dir = tempfile::tempdir().unwrap();
    let files = TestCa::new().write_server_files(dir.path());
    for (given, missing) in [("--tls-cert", "--tls-key"), ("--tls-key", "--tls-cert")] {
        let out =
            serve_expecting_failure(dir.path(), &[given.as_ref(), files.cert.as_os_str()], &[]);
        assert_eq!(out.status.code(), Some(2), "clap's usage error");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("required arguments were not provided"), "{stderr}");
        assert!(stderr.contains(missing), "{stderr}");
    }
    // The same through the environment.
    let out =
        serve_expecting_failure(dir.path(), &[], &[("OPENKV_TLS_CERT", files.cert.as_os_str())]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-key"));
}
