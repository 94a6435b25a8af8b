//! Running the real `openkv` binary against a database: a SQLite file, or the same kind of
//! file behind a real `openkv serve` on 127.0.0.1 (the data-command tests run their body over
//! both).
// Each test binary compiles this module and uses a subset of it.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::common::{sigterm, start_server};

pub const TOKEN: &str = "cli-test-token-0123456789";

/// What one run of the binary did.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stdout_bytes: Vec<u8>,
    pub stderr: String,
}

impl Out {
    /// Asserts exit 0 and returns itself.
    #[track_caller]
    pub fn ok(self) -> Out {
        assert_eq!(self.code, 0, "expected success: {self:?}");
        self
    }

    /// Asserts the exit code and that stderr says `needle`.
    #[track_caller]
    pub fn fails(self, code: i32, needle: &str) -> Out {
        assert_eq!(self.code, code, "expected exit {code}: {self:?}");
        assert!(self.stderr.contains(needle), "stderr does not say {needle:?}: {self:?}");
        self
    }

    /// stdout's lines as JSON.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect()
    }
}

/// The binary with a clean environment (no OPENKV_* or DENO_KV_ACCESS_TOKEN of the caller).
pub fn openkv() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_openkv"));
    for var in [
        "OPENKV_DB",
        "OPENKV_ACCESS_TOKEN",
        "OPENKV_CA_CERT",
        "OPENKV_TIMEOUT",
        "OPENKV_LOG_FORMAT",
        "DENO_KV_ACCESS_TOKEN",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("RUST_LOG", "warn");
    cmd
}

/// Runs a command to its end, feeding `stdin`.
pub fn output(mut cmd: Command, stdin: &[u8]) -> Out {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start openkv");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stdout_bytes: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A database the binary works on.
pub struct Target {
    /// "file" or "served".
    pub kind: &'static str,
    /// The SQLite file (behind the server, for "served").
    pub file: PathBuf,
    /// What `--db` says.
    pub db: String,
    server: Option<Child>,
}

impl Target {
    /// A SQLite file (not created yet).
    pub fn file(path: &Path) -> Target {
        Target {
            kind: "file",
            file: path.to_owned(),
            db: path.to_str().unwrap().to_owned(),
            server: None,
        }
    }

    /// `openkv serve` on a new file.
    pub fn served(path: &Path) -> Target {
        let (server, url) = start_server(path, TOKEN);
        Target { kind: "served", file: path.to_owned(), db: url, server: Some(server) }
    }

    pub fn is_remote(&self) -> bool {
        self.server.is_some()
    }

    /// `openkv --db <db> [--access-token T]`.
    pub fn cmd(&self) -> Command {
        let mut cmd = openkv();
        cmd.arg("--db").arg(&self.db);
        if self.is_remote() {
            cmd.args(["--access-token", TOKEN]);
        }
        cmd
    }

    /// Runs `openkv --db … ARGS`.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Out {
        self.run_stdin(args, b"")
    }

    /// Runs `openkv --db … ARGS` with `stdin`.
    pub fn run_stdin<S: AsRef<OsStr>>(&self, args: &[S], stdin: &[u8]) -> Out {
        let mut cmd = self.cmd();
        cmd.args(args);
        output(cmd, stdin)
    }

    /// Stops the server (if any), so that the file can be read directly.
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let status = sigterm(&mut server);
            assert!(status.success(), "openkv serve exited with {status}");
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(server) = &mut self.server {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

/// Runs `body` on a fresh SQLite file, then on a fresh file behind `openkv serve`.
pub fn on_file_and_server(body: impl Fn(&Target)) {
    for served in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let target = if served { Target::served(&path) } else { Target::file(&path) };
        eprintln!("--- over a {} database", target.kind);
        body(&target);
    }
}
