//! openkv's JavaScript client (`clients/js`, `@openkv/client`) against the real `openkv serve`
//! binary, run by the real Deno CLI **and** by Node, with the server on a SQLite file and on a
//! fresh PostgreSQL schema:
//! - the package's own suite (`clients/js/test/`: queues, errors, values) under both runtimes;
//! - the KV Connect conformance suite (`tests/deno/kv_connect/`) through the package
//!   (`KV_CLIENT=openkv`): the same tests the Deno CLI's own client passes;
//! - a table of operations (`tests/js_client/ops_table.ts`) through the Deno CLI's own client
//!   and through the package against the same server, the results compared line by line;
//! - queue messages in flight and delayed surviving `kill -9` of the server, delivered after
//!   the restart (to a listener that kept running, and to a new one);
//! - against `denokv` (no queue extension) `listenQueue` fails at once, naming what is missing.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{deno_bin, fresh_postgres_url, start_server, start_server_at, workspace_root};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const TOKEN: &str = "js-client-suite-token-0123";

/// A JS runtime the package must work in.
#[derive(Clone, Copy, Debug)]
enum Runtime {
    Node,
    Deno,
}

impl Runtime {
    /// `node` or `deno` with `args`, in the workspace root, pointed at the server at `url`.
    fn command(self, args: &[&str], url: &str) -> Command {
        let mut cmd = match self {
            Runtime::Node => Command::new("node"),
            Runtime::Deno => Command::new(deno_bin()),
        };
        cmd.args(args)
            .current_dir(workspace_root())
            .env("KV_URL", url)
            .env("DENO_KV_ACCESS_TOKEN", TOKEN)
            .env("NO_COLOR", "1")
            .env("DENO_NO_UPDATE_CHECK", "1");
        cmd
    }

    /// A command running `script` (path relative to the workspace root).
    fn script(self, script: &str, url: &str) -> Command {
        match self {
            Runtime::Node => self.command(&[script], url),
            Runtime::Deno => self.command(&["run", "-A", script], url),
        }
    }
}

/// Runs the package's suite (`clients/js/test/`) under `runtime`; returns (passed, failed).
fn package_suite(runtime: Runtime, url: &str) -> (u64, u64) {
    let args: &[&str] = match runtime {
        Runtime::Node => &["--test", "clients/js/test/"],
        Runtime::Deno => &["test", "-A", "--unstable-kv", "clients/js/test/"],
    };
    let out = runtime
        .command(args, url)
        .output()
        .unwrap_or_else(|e| panic!("run the {runtime:?} test runner: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let counts = match runtime {
        Runtime::Node => node_counts(&stdout),
        Runtime::Deno => deno_counts(&stdout),
    };
    eprintln!("clients/js/test/ under {runtime:?}: {counts:?}");
    assert!(out.status.success(), "{runtime:?} suite failed ({})\n{stdout}\n{stderr}", out.status);
    let counts = counts.unwrap_or_else(|| panic!("no summary from {runtime:?}\n{stdout}"));
    assert_eq!(counts.1, 0, "{runtime:?} reported failures\n{stdout}\n{stderr}");
    assert!(counts.0 > 0, "{runtime:?} ran no tests\n{stdout}");
    counts
}

/// `# pass N` / `# fail N` of node's test runner.
fn node_counts(stdout: &str) -> Option<(u64, u64)> {
    let count = |name: &str| {
        let prefix = format!("# {name} ");
        stdout.lines().rev().find_map(|l| l.strip_prefix(prefix.as_str())?.trim().parse().ok())
    };
    Some((count("pass")?, count("fail")?))
}

/// `ok | N passed | M failed` (or `FAILED | …`) of `deno test`.
fn deno_counts(stdout: &str) -> Option<(u64, u64)> {
    let line = stdout.lines().rev().find(|l| l.contains(" passed |"))?;
    let number_before = |word: &str| -> Option<u64> {
        let at = line.find(word)?;
        line[..at].split_whitespace().last()?.parse().ok()
    };
    Some((number_before(" passed")?, number_before(" failed")?))
}

/// The KV Connect conformance suite through the package; returns (passed, failed).
fn conformance_suite_through_package(url: &str) -> (u64, u64) {
    let out = Runtime::Deno
        .command(&["test", "-A", "--unstable-kv", "tests/deno/kv_connect/"], url)
        .env("KV_CLIENT", "openkv")
        .output()
        .expect("run deno test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let counts = deno_counts(&stdout);
    eprintln!("tests/deno/kv_connect/ through @openkv/client: {counts:?}");
    assert!(
        out.status.success(),
        "the conformance suite failed through the package\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counts = counts.expect("deno test prints a summary");
    assert_eq!(counts.1, 0);
    counts
}

/// The operations table (`tests/js_client/ops_table.ts`) through the Deno CLI's own client and
/// through the package, against the same server: the outputs must be equal line for line.
fn ops_table_matches_deno_client(url: &str) -> usize {
    let run = |client: &str| {
        let out = Runtime::Deno
            .command(&["run", "-A", "--unstable-kv", "tests/js_client/ops_table.ts", client], url)
            .output()
            .expect("run deno");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "ops_table.ts {client} failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let deno = run("deno");
    let openkv = run("openkv");
    let lines = deno.lines().count();
    assert!(lines >= 25, "the table printed only {lines} results:\n{deno}");
    for (d, o) in deno.lines().zip(openkv.lines()) {
        assert_eq!(d, o, "Deno's client and @openkv/client differ");
    }
    assert_eq!(lines, openkv.lines().count());
    lines
}

fn all_suites(db: &Path) {
    let (mut server, url) = start_server(db, TOKEN);
    let results = std::panic::catch_unwind(|| {
        let ops = ops_table_matches_deno_client(&url);
        eprintln!("operations table: {ops} results equal through both clients");
        let node = package_suite(Runtime::Node, &url);
        let deno = package_suite(Runtime::Deno, &url);
        let conformance = conformance_suite_through_package(&url);
        (node, deno, conformance)
    });
    let status = common::sigterm(&mut server);
    let (node, deno, conformance) = results.unwrap_or_else(|e| std::panic::resume_unwind(e));
    eprintln!(
        "summary: package suite node {node:?}, deno {deno:?}; conformance through package {conformance:?}"
    );
    assert!(status.success(), "openkv serve exited with {status} after SIGTERM");
}

#[test]
fn the_js_client_passes_its_suites_under_node_and_deno_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    all_suites(&dir.path().join("served.sqlite3"));
}

#[test]
fn the_js_client_passes_its_suites_under_node_and_deno_on_postgres() {
    let Some(db) = fresh_postgres_url() else { return };
    all_suites(Path::new(&db));
}

/// A running script whose stdout lines arrive on a channel.
struct Script {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Script {
    fn start(runtime: Runtime, script: &str, url: &str, args: &[&str]) -> Script {
        let mut child = runtime
            .script(script, url)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {script} under {runtime:?}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Script { child, lines, seen: Vec::new() }
    }

    /// Waits (at most `within`) for a line containing `needle`; returns it.
    fn wait_for(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {needle:?} within {within:?}; saw {:?}", self.seen),
            }
        }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn wait_success(mut self) {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "script exited with {status}; saw {:?}", self.seen);
    }
}

fn run_ok(runtime: Runtime, script: &str, url: &str, arg: &str) -> String {
    let out = runtime.script(script, url).arg(arg).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} under {runtime:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn kill_9(server: &mut Child) {
    let pid = server.id().to_string();
    assert!(Command::new("kill").args(["-KILL", &pid]).status().unwrap().success());
    let _ = server.wait();
}

/// Messages in flight and delayed ones survive `kill -9` of the server: a listener that kept
/// running reconnects and gets the delayed message; the message whose handler was running in a
/// listener killed with the server is delivered again (attempt 2) to a new listener.
fn messages_survive_kill_9(runtime: Runtime, db: &Path) {
    let (mut server, url) = start_server(db, TOKEN);
    let addr = url.trim_start_matches("http://").to_owned();

    // Listener A hangs on "in flight" (so it stays leased, unfinished) and gets what follows.
    let mut a = Script::start(runtime, "tests/js_client/listen.mjs", &url, &["2", "in flight"]);
    a.wait_for("listening", Duration::from_secs(20));
    run_ok(runtime, "tests/js_client/enqueue.mjs", &url, r#"[["in flight"]]"#);
    a.wait_for(r#""got":"in flight""#, Duration::from_secs(20));
    // Listener B stays up across the restart and must get the delayed message afterwards.
    let mut b = Script::start(runtime, "tests/js_client/listen.mjs", &url, &["1"]);
    b.wait_for("listening", Duration::from_secs(20));
    run_ok(runtime, "tests/js_client/enqueue.mjs", &url, r#"[["delayed", {"delay": 3000}]]"#);

    kill_9(&mut server);
    a.kill(); // its message stays in flight: leased to a listener that is gone
    std::thread::sleep(Duration::from_millis(500));
    let (mut server, url2) = start_server_at(db, TOKEN, &addr, &[]);
    assert_eq!(url, url2);

    // B reconnects (its calls were refused while the server was down) and gets "delayed" —
    // or "in flight" first, once A's lease ran out: B takes one message, then exits.
    let first = b.wait_for(r#""got""#, Duration::from_secs(30));
    b.wait_for("done", Duration::from_secs(10));
    b.wait_success();
    let expect_next = if first.contains("delayed") { "in flight" } else { "delayed" };
    let mut c = Script::start(runtime, "tests/js_client/listen.mjs", &url, &["1"]);
    c.wait_for(&format!(r#""got":"{expect_next}""#), Duration::from_secs(30));
    c.wait_for("done", Duration::from_secs(10));
    c.wait_success();
    let status = common::sigterm(&mut server);
    assert!(status.success(), "openkv serve exited with {status}");
}

#[test]
fn queue_messages_survive_kill_9_of_the_server_node_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    messages_survive_kill_9(Runtime::Node, &dir.path().join("queue.sqlite3"));
}

#[test]
fn queue_messages_survive_kill_9_of_the_server_deno_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    messages_survive_kill_9(Runtime::Deno, &dir.path().join("queue.sqlite3"));
}

#[test]
fn queue_messages_survive_kill_9_of_the_server_node_on_postgres() {
    let Some(db) = fresh_postgres_url() else { return };
    messages_survive_kill_9(Runtime::Node, Path::new(&db));
}

/// `$OPENKV_DENOKV` (set by scripts/test.sh), required when `OPENKV_REQUIRE_DENOKV=1`.
fn denokv_binary() -> Option<PathBuf> {
    let path = std::env::var_os("OPENKV_DENOKV").map(PathBuf::from).filter(|p| p.is_file());
    if path.is_none() {
        assert!(
            std::env::var("OPENKV_REQUIRE_DENOKV").as_deref() != Ok("1"),
            "OPENKV_REQUIRE_DENOKV=1 but OPENKV_DENOKV does not name the denokv binary"
        );
        eprintln!("denokv is not available: skipping");
    }
    path
}

#[test]
fn listen_queue_against_denokv_fails_at_once_naming_the_missing_extension() {
    let Some(denokv) = denokv_binary() else { return };
    let dir = tempfile::tempdir().unwrap();
    // denokv takes no port 0: find a free port, then hand it over.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = Command::new(denokv)
        .arg("--sqlite-path")
        .arg(dir.path().join("ref.sqlite3"))
        .args(["serve", "--access-token", TOKEN, "--addr", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "denokv did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut outputs = Vec::new();
    for runtime in [Runtime::Node, Runtime::Deno] {
        let started = Instant::now();
        let out = runtime.script("tests/js_client/listen_refused.mjs", &url).output().unwrap();
        outputs.push((runtime, started.elapsed(), out));
    }
    let _ = server.kill();
    let _ = server.wait();
    for (runtime, took, out) in outputs {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{runtime:?}: listenQueue did not reject: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(json["name"], "KvConnectError", "{json}");
        assert_eq!(json["status"], 404, "{json}");
        let message = json["message"].as_str().unwrap();
        assert!(message.contains("queue extension") && message.contains("denokv"), "{message}");
        assert!(took < Duration::from_secs(8), "{runtime:?} took {took:?} to reject");
        eprintln!("{runtime:?}: rejected in {took:?}: {message}");
    }
}
