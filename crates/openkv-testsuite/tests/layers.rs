//! The layering ARCHITECTURE.md promises, checked on the source tree:
//!
//! 1. **Crates point down.** Each workspace crate has a rank; a crate depends (in its
//!    `[dependencies]`) only on openkv crates of a lower rank. Cargo already refuses cycles;
//!    this pins the order itself, so that, say, `openkv-core` cannot start depending on the
//!    wire layer.
//! 2. **No cycle among a crate's modules.** Inside every crate, the top-level modules (the
//!    crate root counted as one: the items defined in `lib.rs`/`main.rs`) form a graph without
//!    cycles. An edge `a -> b` is a `crate::b…` path (or `super::…` from a top-level module, or
//!    a crate-root item re-exported from `b`) in `a`'s non-test code. Unit-test modules
//!    (`#[cfg(test)] mod tests` at the end of a file) are left out: tests may look anywhere.
//!
//! The scan is textual (no compiler): comments are dropped first, `use` trees are expanded.
//! It is deliberately simple and errs towards seeing an edge, never towards missing one; the
//! tests at the bottom prove it finds the cycles it should.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The rank of each crate: a dependency must have a lower one. The order of ARCHITECTURE.md's
/// layer picture.
const RANKS: &[(&str, u32)] = &[
    ("openkv-js", 0),
    ("openkv-core", 1),
    ("openkv-proto", 2),
    ("openkv-sqlite", 2),
    ("openkv-postgres", 2),
    ("openkv-remote", 3),
    ("openkv-backup", 3),
    ("openkv", 4),
    ("openkv-memory", 5),
    ("openkv-server", 5),
    ("openkv-testsuite", 6),
    ("openkv-cli", 6),
    ("openkv-fuzz-checks", 6),
    ("openkv-jepsen", 6),
    ("openkv-bench", 7),
];

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rank(name: &str) -> Option<u32> {
    RANKS.iter().find(|(n, _)| *n == name).map(|(_, r)| *r)
}

/// The openkv crates named in the `[dependencies]` table of a Cargo.toml.
fn openkv_dependencies(manifest: &str) -> Vec<String> {
    let mut in_deps = false;
    let mut deps = Vec::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if !in_deps {
            continue;
        }
        let name: String =
            line.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
        if name == "openkv" || name.starts_with("openkv-") {
            deps.push(name);
        }
    }
    deps
}

#[test]
fn crates_depend_only_on_lower_layers() {
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(crates_dir()).unwrap() {
        let dir = entry.unwrap().path();
        let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else { continue };
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let own = rank(&name).unwrap_or_else(|| panic!("{name} has no rank in RANKS: add it"));
        for dep in openkv_dependencies(&manifest) {
            let theirs = rank(&dep).unwrap_or_else(|| panic!("{dep} has no rank in RANKS"));
            assert!(
                theirs < own,
                "{name} (rank {own}) depends on {dep} (rank {theirs}): dependencies point down"
            );
        }
        seen.push(name);
    }
    seen.sort();
    let mut expected: Vec<String> = RANKS.iter().map(|(n, _)| n.to_string()).collect();
    expected.sort();
    assert_eq!(seen, expected, "every crate of crates/ is ranked, and only those");
}

// ---------------------------------------------------------------------------------------------
// Modules

/// One source file: its path under `src/` and its text.
struct SourceFile {
    path: String,
    text: String,
}

/// Drops `//` comments (doc comments included) and the unit-test module at the end of a file.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        // Good enough: a `//` inside a string literal only hides the rest of that line.
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every identifier right after `prefix::` (e.g. `crate::`) in `code`.
fn idents_after(code: &str, prefix: &str) -> Vec<String> {
    let needle = format!("{prefix}::");
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(&needle) {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + needle.len()..];
        if before.is_some_and(is_ident) {
            continue; // `foo_crate::`, not `crate::`
        }
        let ident: String = rest.chars().take_while(|&c| is_ident(c)).collect();
        if !ident.is_empty() {
            out.push(ident);
        }
    }
    out
}

/// The first segments of every path a `use prefix::{…}` tree names, e.g. `use crate::{a::X,
/// b}` gives `a` and `b`.
fn use_tree_heads(code: &str, prefix: &str) -> Vec<String> {
    let needle = format!("use {prefix}::{{");
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(&needle) {
        rest = &rest[i + needle.len()..];
        let mut depth = 1;
        let mut item = String::new();
        let mut at_head = true;
        for c in rest.chars() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                break;
            }
            if depth == 1 && c == ',' {
                at_head = true;
                if !item.is_empty() {
                    out.push(std::mem::take(&mut item));
                }
                continue;
            }
            if at_head {
                if is_ident(c) {
                    item.push(c);
                } else if !c.is_whitespace() {
                    at_head = false;
                }
            }
        }
        if !item.is_empty() {
            out.push(item);
        }
    }
    out
}

/// Names defined at the top level of a crate root: `fn`, `struct`, `enum`, `trait`, `type`,
/// `const`, `static`, with any visibility.
fn root_items(code: &str) -> BTreeSet<String> {
    let mut items = BTreeSet::new();
    for line in code.lines() {
        if line.starts_with(char::is_whitespace) {
            continue;
        }
        let mut words = line.split_whitespace().peekable();
        while let Some(w) = words.peek() {
            if w.starts_with("pub") || *w == "async" || *w == "unsafe" {
                words.next();
            } else {
                break;
            }
        }
        if let (Some(kind), Some(name)) = (words.next(), words.next()) {
            if ["fn", "struct", "enum", "trait", "type", "const", "static"].contains(&kind) {
                let name: String = name.chars().take_while(|&c| is_ident(c)).collect();
                items.insert(name);
            }
        }
    }
    items
}

/// `pub use module::{A, B}` / `pub use module::A` lines of a crate root: item → module.
fn root_reexports(code: &str, modules: &BTreeSet<String>) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for statement in code.split(';') {
        let statement = statement.trim();
        let Some(path) = statement.strip_prefix("pub use ") else { continue };
        let module: String = path.chars().take_while(|&c| is_ident(c)).collect();
        if !modules.contains(&module) {
            continue;
        }
        let tail = &path[module.len()..];
        for name in tail.split(|c: char| !is_ident(c)).filter(|n| !n.is_empty()) {
            map.insert(name.to_owned(), module.clone());
        }
    }
    map
}

/// The top-level module a file under `src/` belongs to (`""`: the crate root) and whether the
/// file is that module's own (where `super::` is the root), or `None` for files that are not
/// part of the library/binary's module tree (`src/bin/…`).
fn top_module(path: &str) -> Option<(String, bool)> {
    let path = path.strip_suffix(".rs")?;
    let mut parts = path.split('/');
    let first = parts.next()?;
    let second = parts.next();
    // `super::` means the crate root in `src/m.rs` and `src/m/mod.rs`, not deeper.
    let top_level_file = second.is_none() || (second == Some("mod") && parts.next().is_none());
    match first {
        "bin" => None,
        "lib" | "main" if second.is_none() => Some((String::new(), false)),
        _ => Some((first.to_owned(), top_level_file)),
    }
}

/// The module graph of one crate: module → (module it uses → one place that uses it).
fn module_graph(files: &[SourceFile]) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut modules = BTreeSet::new();
    for f in files {
        if let Some((m, _)) = top_module(&f.path) {
            if !m.is_empty() {
                modules.insert(m);
            }
        }
    }
    let root_code: String = files
        .iter()
        .filter(|f| top_module(&f.path).is_some_and(|(m, _)| m.is_empty()))
        .map(|f| code_of(&f.text))
        .collect();
    let items = root_items(&root_code);
    let reexports = root_reexports(&root_code, &modules);
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for f in files {
        let Some((from, top_level_file)) = top_module(&f.path) else { continue };
        let code = code_of(&f.text);
        let mut names = idents_after(&code, "crate");
        names.extend(use_tree_heads(&code, "crate"));
        if top_level_file {
            // `super::` of a top-level module is the crate root.
            names.extend(idents_after(&code, "super"));
            names.extend(use_tree_heads(&code, "super"));
        }
        if from.is_empty() {
            // The root reaches its modules by their bare names (`writer::spawn`, `use
            // shared::X`, `pub use m::Y`), besides `mod m;`.
            for m in &modules {
                for line in code.lines() {
                    let line = line.trim();
                    if line.starts_with("mod ") || line.starts_with("pub mod ") {
                        continue;
                    }
                    if line.contains(&format!("{m}::"))
                        && !idents_after(line, "crate").contains(m)
                        && !line.contains(&format!("_{m}::"))
                    {
                        names.push(m.clone());
                    }
                }
            }
        }
        for name in names {
            let to = if modules.contains(&name) {
                name
            } else if let Some(m) = reexports.get(&name) {
                m.clone()
            } else if items.contains(&name) {
                String::new()
            } else {
                continue; // a lower crate under a local name, a macro, …
            };
            if to != from {
                graph.entry(from.clone()).or_default().entry(to).or_insert_with(|| f.path.clone());
            }
        }
    }
    graph
}

/// A cycle of the graph, as its modules in order (`""` printed as `<root>`), if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeMap<String, String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeMap<String, String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_owned(), 1);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flat_map(|edges| edges.keys()) {
            match state.get(next.as_str()) {
                Some(1) => {
                    let start = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(cycle) = visit(next, graph, state, stack) {
                        return Some(cycle);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if !state.contains_key(node.as_str()) {
            if let Some(cycle) = visit(node, graph, &mut state, &mut Vec::new()) {
                return Some(cycle);
            }
        }
    }
    None
}

fn describe(cycle: &[String], graph: &BTreeMap<String, BTreeMap<String, String>>) -> String {
    let name = |m: &str| if m.is_empty() { "<root>".to_owned() } else { m.to_owned() };
    cycle
        .windows(2)
        .map(|w| format!("{} -> {} (in {})", name(&w[0]), name(&w[1]), graph[&w[0]][&w[1]]))
        .collect::<Vec<_>>()
        .join(", ")
}

fn read_sources(src: &Path) -> Vec<SourceFile> {
    let mut files = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(src).unwrap().to_string_lossy().replace('\\', "/");
                files.push(SourceFile { path: rel, text: std::fs::read_to_string(&path).unwrap() });
            }
        }
    }
    files
}

#[test]
fn no_crate_has_a_module_cycle() {
    let mut checked = 0;
    for (name, _) in RANKS {
        let src = crates_dir().join(name).join("src");
        let files = read_sources(&src);
        assert!(!files.is_empty(), "no sources under {}", src.display());
        let graph = module_graph(&files);
        if let Some(cycle) = find_cycle(&graph) {
            panic!("{name} has a module cycle: {}", describe(&cycle, &graph));
        }
        checked += 1;
    }
    assert_eq!(checked, RANKS.len());
}

// ---------------------------------------------------------------------------------------------
// The checker can fail: the cycles it exists to catch, on made-up crates.

fn files(list: &[(&str, &str)]) -> Vec<SourceFile> {
    list.iter().map(|(p, t)| SourceFile { path: p.to_string(), text: t.to_string() }).collect()
}

#[test]
fn a_module_using_a_root_item_while_the_root_uses_it_is_a_cycle() {
    let crate_files = files(&[
        ("lib.rs", "mod writer;\npub struct Shared;\nfn open() { writer::spawn(); }\n"),
        ("writer.rs", "use crate::Shared;\npub fn spawn() {}\n"),
    ]);
    let graph = module_graph(&crate_files);
    let cycle = find_cycle(&graph).expect("lib <-> writer");
    assert_eq!(describe(&cycle, &graph).matches("->").count(), 2, "{cycle:?}");
}

#[test]
fn two_modules_using_each_other_through_use_trees_is_a_cycle() {
    let crate_files = files(&[
        ("lib.rs", "mod kv;\nmod list;\npub use kv::Kv;\npub use list::List;\n"),
        ("kv.rs", "use crate::{error::Error, list::{List, Options}};\npub struct Kv;\n"),
        ("list.rs", "// use crate::nothing;\nuse crate::Kv; // via the root's re-export\n"),
    ]);
    let graph = module_graph(&crate_files);
    let cycle = find_cycle(&graph).expect("kv <-> list");
    let text = describe(&cycle, &graph);
    assert!(text.contains("kv -> list") && text.contains("list -> kv"), "{text}");
}

#[test]
fn super_from_a_nested_file_and_test_modules_are_not_edges() {
    let crate_files = files(&[
        ("lib.rs", "mod engine;\nmod backend;\nfn f() { engine::plan(); }\n"),
        ("engine/mod.rs", "mod plan;\nuse crate::backend::Row;\n"),
        ("engine/plan.rs", "use super::Row;\n"),
        (
            "backend.rs",
            "pub struct Row;\n#[cfg(test)]\nmod tests {\n    use crate::engine::x;\n}\n",
        ),
    ]);
    let graph = module_graph(&crate_files);
    assert_eq!(find_cycle(&graph), None, "{graph:?}");
    assert!(graph["engine"].contains_key("backend"));
    assert!(graph[""].contains_key("engine"));
}
