//! Helpers shared by the tests that run the real Deno CLI.

use std::path::{Path, PathBuf};

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
