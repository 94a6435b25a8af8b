//! Every committed fuzz input, replayed through its target's check in plain `cargo test`: the
//! seed corpus (`fuzz/corpus/<target>/`) and the inputs that once crashed a target
//! (`fuzz/regressions/<target>/`, each named after the bug it found). So a crash the fuzzer
//! found stays fixed on every CI run, with or without the fuzzer; and the fuzz crate, the
//! corpus and [`TARGETS`] cannot drift apart unnoticed.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use openkv_fuzz_checks::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files directly in `dir` (none if it does not exist), sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> =
        entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

/// Runs every committed input of `target` through its check; fails naming each input whose
/// check panicked.
fn replay(target: &str) {
    let (_, check) = TARGETS.iter().find(|(name, _)| *name == target).unwrap();
    let corpus = files(&fuzz_dir().join("corpus").join(target));
    assert!(!corpus.is_empty(), "fuzz/corpus/{target}/ holds no seed");
    let regressions = files(&fuzz_dir().join("regressions").join(target));
    let mut failed = Vec::new();
    for path in corpus.iter().chain(&regressions) {
        let data = std::fs::read(path).unwrap();
        if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(failed.is_empty(), "{target}: these inputs fail their check:\n{}", failed.join("\n"));
}

macro_rules! replay_tests {
    ($($target:ident),* $(,)?) => {
        $(
            #[test]
            fn $target() {
                replay(stringify!($target));
            }
        )*

        /// The list above is [`TARGETS`], in order.
        const TESTED: &[&str] = &[$(stringify!($target)),*];
    };
}

replay_tests!(
    v8_decode,
    key_decode,
    key_syntax,
    import_line,
    kv_connect_request,
    kv_connect_answer,
    extension_json,
    replication_stream,
    backup_file,
    pitr_object,
);

#[test]
fn every_target_is_replayed_built_and_seeded() {
    let names: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, TESTED, "a test per target, here");
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for name in &names {
        let bin = format!("name = \"{name}\"\npath = \"fuzz_targets/{name}.rs\"");
        assert!(manifest.contains(&bin), "fuzz/Cargo.toml has no [[bin]] {name}");
        let source = std::fs::read_to_string(fuzz_dir().join(format!("fuzz_targets/{name}.rs")))
            .unwrap_or_else(|e| panic!("fuzz/fuzz_targets/{name}.rs: {e}"));
        assert!(
            source.contains(&format!("openkv_fuzz_checks::{name}(")),
            "fuzz/fuzz_targets/{name}.rs calls its check"
        );
    }
    // No stray directory: every corpus or regression directory is a target's.
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(dir)) else { continue };
        for entry in entries {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(names.contains(&name.as_str()), "fuzz/{dir}/{name} is no target's");
        }
    }
}
