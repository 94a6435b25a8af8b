//! Helpers shared by the tests that run the real `openkv` binary.
// Each test binary compiles this module and uses a subset of it.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The repository's root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Starts `openkv serve` on a free port of 127.0.0.1 requiring `token`; returns the child and
/// the URL it printed on its first line.
pub fn start_server(db: &Path, token: &str) -> (Child, String) {
    start_server_with(db, token, &[])
}

/// [`start_server`] with more `serve` arguments (`--tls-cert`, `--read-only`, …). The URL is
/// `http://127.0.0.1:PORT`, or `https://…` when serving TLS.
pub fn start_server_with(db: &Path, token: &str, args: &[&OsStr]) -> (Child, String) {
    start_server_at(db, token, "127.0.0.1:0", args)
}

/// [`start_server_with`] on a given address (to restart a server on the port it had).
pub fn start_server_at(db: &Path, token: &str, addr: &str, args: &[&OsStr]) -> (Child, String) {
    try_start_server_at(db, token, addr, args).unwrap()
}

/// [`start_server_at`], or why the server did not start (its address taken, …): for a test
/// that tries another address.
pub fn try_start_server_at(
    db: &Path,
    token: &str,
    addr: &str,
    args: &[&OsStr],
) -> Result<(Child, String), String> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_openkv"));
    command.arg("--db").arg(db).args(["serve", "--addr", addr, "--access-token", token]);
    spawn_server(command.args(args))
        .map_err(|status| format!("openkv serve on {addr} did not start ({status})"))
}

/// `openkv serve --addr 127.0.0.1:0 ARGS…` (ARGS name the database or `--data-dir`, the
/// token, …), killed when dropped; its URL is the base it printed (for `--data-dir`, without
/// the `/databases/NAME/connect` it shows).
pub fn serve(args: &[&OsStr]) -> Proc {
    let mut command = Command::new(env!("CARGO_BIN_EXE_openkv"));
    command.args(["serve", "--addr", "127.0.0.1:0"]).args(args);
    let (child, url) =
        spawn_server(&mut command).unwrap_or_else(|status| panic!("openkv serve: {status}"));
    Proc { child, url }
}

/// Starts a server `command` (quiet logs, stdout piped) and reads the URL from its first line
/// (a server of many databases prints `…/databases/NAME/connect`: the base is kept); the exit
/// status if it printed none.
fn spawn_server(command: &mut Command) -> Result<(Child, String), std::process::ExitStatus> {
    let mut child = command
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start openkv serve");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let Some(word) = line.split_whitespace().last() else {
        return Err(child.wait().unwrap());
    };
    let url = word.strip_suffix("/databases/NAME/connect").unwrap_or(word).to_owned();
    assert!(
        url.starts_with("http://127.0.0.1:") || url.starts_with("https://127.0.0.1:"),
        "unexpected first line {line:?}"
    );
    Ok((child, url))
}

/// A server process (and the URL it printed), killed when dropped.
pub struct Proc {
    pub child: Child,
    pub url: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `$DENO_BIN`, else the pinned Deno CLI `npm ci --prefix tests/deno` installs. Fails (never
/// skips) when neither exists.
pub fn deno_bin() -> PathBuf {
    let bin = std::env::var_os("DENO_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("tests/deno/node_modules/.bin/deno"));
    assert!(
        bin.is_file(),
        "the Deno CLI is not installed at {}: run ./scripts/test.sh (or npm ci --prefix tests/deno)",
        bin.display()
    );
    bin
}

/// Runs `deno run -A --unstable-kv tests/deno/<script> <args…>` from the workspace root, quietly
/// (no colours, no update check), to its end.
#[allow(dead_code)] // not every test binary runs Deno scripts this way
pub fn run_deno_script(script: &str, args: &[&OsStr]) -> std::process::Output {
    Command::new(deno_bin())
        .args(["run", "-A", "--unstable-kv"])
        .arg(Path::new("tests/deno").join(script))
        .args(args)
        .current_dir(workspace_root())
        .env("NO_COLOR", "1")
        .env("DENO_NO_UPDATE_CHECK", "1")
        .output()
        .expect("run deno")
}

/// Sends SIGTERM to `child` and waits for it to exit.
pub fn sigterm(child: &mut Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    child.wait().unwrap()
}

/// `$OPENKV_TEST_POSTGRES_URL` (a base URL such as `postgres://openkv@127.0.0.1:5432/openkv`)
/// with a fresh schema of its own: `…?openkv_schema=t_<random hex>`. `None` when the variable
/// is unset — the caller then skips — unless `OPENKV_REQUIRE_POSTGRES=1`, which the test script
/// sets after starting a cluster, so that CI can never skip these tests.
pub fn fresh_postgres_url() -> Option<String> {
    let Some(base) = std::env::var("OPENKV_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty())
    else {
        assert!(
            std::env::var("OPENKV_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "OPENKV_REQUIRE_POSTGRES=1 but OPENKV_TEST_POSTGRES_URL is not set \
             (start a cluster with scripts/postgres.sh, or run scripts/test.sh)"
        );
        eprintln!("OPENKV_TEST_POSTGRES_URL is not set: skipping this PostgreSQL test");
        return None;
    };
    let separator = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{separator}openkv_schema=t_{}", random_hex()))
}

/// 32 random hex digits (a v4 UUID): unique across concurrent tests and test processes.
pub fn random_hex() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Installs the pinned `@deno/kv` with `npm ci --prefix tests/node` unless it is already there.
/// Fails (never skips) when npm fails.
pub fn ensure_deno_kv_npm() {
    // One install at a time: the tests of a binary run in parallel, and `npm ci` first
    // deletes node_modules — a second test finding @deno/kv's package.json there mid-install
    // (or seeing it vanish) ran node against half a tree (a fresh clone's CI failed so).
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let root = workspace_root();
    if root.join("tests/node/node_modules/@deno/kv/package.json").is_file() {
        return;
    }
    let out = Command::new("npm")
        .args(["ci", "--prefix", "tests/node", "--no-audit", "--no-fund"])
        .current_dir(&root)
        .output()
        .unwrap_or_else(|e| {
            panic!("could not run `npm ci --prefix tests/node` (is npm installed?): {e}")
        });
    assert!(
        out.status.success(),
        "`npm ci --prefix tests/node` failed ({}): cannot install @deno/kv\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        root.join("tests/node/node_modules/@deno/kv/package.json").is_file(),
        "`npm ci --prefix tests/node` succeeded but @deno/kv is still missing"
    );
}

/// A server's status (`POST /v2/openkv/replication/status`): a replica's lag, a continuous
/// backup's progress. `kv` is a client of that server (for its database id).
pub async fn replication_status(kv: &openkv::Kv, url: &str, token: &str) -> serde_json::Value {
    let id = kv.database_id().await.unwrap().to_string();
    let out = Command::new("curl")
        .args(["-sS", "--fail-with-body", "-X", "POST"])
        .args(["-H", &format!("authorization: Bearer {token}")])
        .args(["-H", "x-denokv-version: 3", "-H", &format!("x-denokv-database-id: {id}")])
        .arg(format!("{url}/v2/openkv/replication/status"))
        .output()
        .unwrap();
    assert!(out.status.success(), "status: {}", String::from_utf8_lossy(&out.stdout));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A KV Connect client of `url` with `token`, retrying for up to 30 s (servers the tests kill
/// and restart come back within that).
pub async fn client_with(url: &str, token: &str) -> openkv::Kv {
    openkv::OpenOptions::new()
        .access_token(token)
        .remote_retry_timeout(std::time::Duration::from_secs(30))
        .open(url)
        .await
        .unwrap()
}
