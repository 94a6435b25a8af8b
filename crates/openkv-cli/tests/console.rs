//! The web console (`openkv serve` at `/console`) in a real browser: runs the Node suite
//! `tests/console/console.test.mjs` (node:test + playwright-core driving Debian's Chromium,
//! axe-core, the Deno CLI and `@deno/kv` as the other clients) against this build's `openkv`
//! binary. Each scenario leaves a screenshot in `<target dir>/console-screenshots`.
//!
//! Skips, saying why, when Chromium, Node or the suite's npm packages are missing — unless
//! `OPENKV_REQUIRE_CHROMIUM=1` (scripts/test.sh sets it after installing them): then it fails.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{deno_bin, workspace_root};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether a missing tool fails the test instead of skipping it.
fn required() -> bool {
    std::env::var("OPENKV_REQUIRE_CHROMIUM").as_deref() == Ok("1")
}

/// Says why the test is skipped, or fails when the tools are required.
fn skip(why: &str) {
    assert!(!required(), "OPENKV_REQUIRE_CHROMIUM=1 but {why}");
    eprintln!(
        "skipping the console's browser tests: {why} (OPENKV_REQUIRE_CHROMIUM=1 makes this fail)"
    );
}

/// The browser: `$CHROMIUM`, else Debian's `/usr/bin/chromium`.
fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// Installs the suite's pinned npm packages (`npm ci --prefix tests/console`) unless they are
/// there; `false` (after [`skip`]) when they cannot be. One install at a time: `npm ci` first deletes node_modules, and a second install (or a
/// run) in the same directory meanwhile would see half a tree.
fn ensure_console_npm(root: &Path) -> bool {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let modules = root.join("tests/console/node_modules");
    let installed = || {
        ["playwright-core", "axe-core", "@deno/kv"]
            .iter()
            .all(|p| modules.join(p).join("package.json").is_file())
    };
    if installed() {
        return true;
    }
    let out = Command::new("npm")
        .args(["ci", "--prefix", "tests/console", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(root)
        .output();
    let why = match out {
        Err(e) => format!("npm cannot run ({e})"),
        Ok(out) if !out.status.success() => format!(
            "`npm ci --prefix tests/console` failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Ok(_) if !installed() => {
            "`npm ci --prefix tests/console` succeeded but a package is still missing".into()
        }
        Ok(_) => return true,
    };
    skip(&why);
    false
}

/// The number after `# <name> ` in node's test-runner summary.
fn summary_count(stdout: &str, name: &str) -> Option<u64> {
    let prefix = format!("# {name} ");
    stdout.lines().rev().find_map(|l| l.strip_prefix(prefix.as_str())?.trim().parse().ok())
}

#[test]
fn the_console_works_in_chromium_against_openkv_serve() {
    let root = workspace_root();
    let browser = chromium();
    if !browser.is_file() {
        let why = format!(
            "no Chromium at {} (apt-get install chromium, or set CHROMIUM)",
            browser.display()
        );
        return skip(&why);
    }
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => return skip(&format!("`node --version` failed ({})", out.status)),
        Err(e) => return skip(&format!("node cannot run ({e})")),
    }
    if !ensure_console_npm(&root) {
        return;
    }
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_openkv"));
    // <target dir>/<profile>/openkv → <target dir>/console-screenshots
    let target = bin.parent().and_then(Path::parent).expect("the binary is in <target>/<profile>");
    let screenshots = target.join("console-screenshots");
    // This run's screenshots only (a failed run's failed-*.png must not outlive its fix).
    let _ = std::fs::remove_dir_all(&screenshots);
    std::fs::create_dir_all(&screenshots).unwrap();
    println!("console screenshots: {}", screenshots.display());
    // The server's data and log (server.log) and the files the suite writes; kept on failure.
    let scratch = tempfile::tempdir().unwrap();

    let out = Command::new("node")
        .args(["--test", "--test-reporter=tap", "tests/console/console.test.mjs"])
        .current_dir(&root)
        .env("OPENKV_BIN", &bin)
        .env("DENO_BIN", deno_bin())
        .env("CHROMIUM", &browser)
        .env("SCRATCH_DIR", scratch.path())
        .env("SCREENSHOT_DIR", &screenshots)
        .env("NO_COLOR", "1")
        .output()
        .expect("run node --test tests/console/console.test.mjs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    let (pass, fail) = (summary_count(&stdout, "pass"), summary_count(&stdout, "fail"));
    println!(
        "console tests: pass {pass:?}, fail {fail:?}; screenshots in {}",
        screenshots.display()
    );
    if !out.status.success() || fail != Some(0) {
        println!("the server's data and log are kept in {}", scratch.keep().display());
    }
    assert!(out.status.success(), "the console's browser tests failed ({})", out.status);
    assert_eq!(fail, Some(0), "node --test reported failures");
    assert!(pass.unwrap_or(0) > 0, "node --test ran no passing tests");
    // Every scenario ran, unless CONSOLE_ONLY narrowed the run by hand.
    if std::env::var_os("CONSOLE_ONLY").is_none() {
        assert_eq!(pass, summary_count(&stdout, "tests"), "not every scenario passed");
    }
}
