//! Helpers shared by the tests that run the real Deno CLI.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's root.
pub fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// `tests/deno/`: the Deno scripts and the pinned Deno CLI.
pub fn deno_scripts() -> PathBuf {
    workspace_root().join("tests/deno")
}

/// The Deno CLI: `$DENO_BIN`, else the one `npm ci --prefix tests/deno` installs. Panics (the
/// test fails, it is never skipped) if there is none.
pub fn deno_bin() -> PathBuf {
    const HOW: &str = "run ./scripts/test.sh (or `npm ci --prefix tests/deno`) to install the \
                       pinned Deno CLI, or set DENO_BIN to a Deno binary";
    if let Some(bin) = std::env::var_os("DENO_BIN").filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        assert!(bin.is_file(), "DENO_BIN={} does not exist: {HOW}", bin.display());
        return bin;
    }
    let bin = deno_scripts().join("node_modules/.bin/deno");
    assert!(
        bin.is_file(),
        "the Deno CLI is not installed ({} does not exist and DENO_BIN is not set): {HOW}",
        bin.display()
    );
    bin
}

/// Runs `deno run -A --unstable-kv <script> <args>` and returns its stdout. Panics with the
/// exit status, stdout and stderr if Deno fails.
pub async fn run_deno(script: &Path, args: &[&Path]) -> String {
    let deno = deno_bin();
    let script = script.to_owned();
    let args: Vec<PathBuf> = args.iter().map(|a| a.to_path_buf()).collect();
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(&deno);
        cmd.args(["run", "-A", "--unstable-kv"])
            .arg(&script)
            .args(&args)
            .env("NO_COLOR", "1")
            .env("DENO_NO_UPDATE_CHECK", "1")
            .current_dir(workspace_root());
        let out =
            cmd.output().unwrap_or_else(|e| panic!("could not start {}: {e}", deno.display()));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "`{} run -A --unstable-kv {} {}` failed ({})\n--- stdout ---\n{stdout}\n--- stderr \
             ---\n{stderr}",
            deno.display(),
            script.display(),
            args.iter().map(|a| a.display().to_string()).collect::<Vec<_>>().join(" "),
            out.status,
        );
        stdout
    })
    .await
    .expect("the thread running Deno panicked")
}
