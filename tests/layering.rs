//! The broker's top-level modules depend only downward, in one order (docs/architecture.md
//! draws it). This test reads every `crate::` path in `src/` and fails on a reference that
//! goes up the order, which is also what would make a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The order, lowest first. A module may use only modules listed before it.
const LAYERS: &[&str] = &[
    "util",
    "metrics",
    "config",
    "storage",
    "raft",
    "partition",
    "cluster",
    "coordinator",
    "groups",
    "txn",
    "kafka",
    "net",
    "server",
    "tune",
];

/// Top-level modules of `src/` (a `foo.rs` file or a `foo/` folder), without lib.rs and main.rs.
fn top_level_modules(src: &Path) -> BTreeSet<String> {
    fs::read_dir(src)
        .expect("read src/")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            match name.strip_suffix(".rs") {
                Some("lib" | "main") => None,
                Some(stem) => Some(stem.to_string()),
                None if e.path().is_dir() => Some(name),
                None => None,
            }
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read dir").filter_map(|e| e.ok()) {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The first path segment of every `crate::` reference in `text`, including each item of a
/// `crate::{a, b::c}` group.
fn crate_references(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item_start = true;
            for (i, ch) in group.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_alphabetic() || c == '_') => {
                        found.push(identifier(&group[i..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            found.push(identifier(rest));
        }
    }
    found
}

fn identifier(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// module -> modules it references.
fn dependencies(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let modules = top_level_modules(src);
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = Vec::new();
    rust_files(src, &mut files);
    for file in files {
        let relative = file.strip_prefix(src).expect("inside src/");
        let first = relative
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .unwrap_or_default();
        let module = first.strip_suffix(".rs").unwrap_or(&first).to_string();
        if !modules.contains(&module) {
            continue;
        }
        let text = fs::read_to_string(&file).expect("read source");
        for target in crate_references(&text) {
            if target != module && modules.contains(&target) {
                deps.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    deps
}

#[test]
fn every_top_level_module_is_in_the_order() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let unknown: Vec<String> = top_level_modules(&src)
        .into_iter()
        .filter(|m| !LAYERS.contains(&m.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "modules {unknown:?} are not in LAYERS: place them in the order (and in docs/architecture.md)"
    );
}

#[test]
fn modules_only_use_modules_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut upward = Vec::new();
    for (module, targets) in dependencies(&src) {
        for target in targets {
            if let (Some(from), Some(to)) = (rank(&module), rank(&target)) {
                if to >= from {
                    upward.push(format!("{module} -> {target}"));
                }
            }
        }
    }
    assert!(
        upward.is_empty(),
        "references that go up the layer order (each is half of a cycle waiting to happen): {upward:#?}"
    );
}

#[test]
fn the_reference_scanner_reads_groups_and_plain_paths() {
    let text = "use crate::{cluster::Shard, util};\nlet x = crate::storage::records::build();";
    assert_eq!(
        crate_references(text),
        vec!["cluster", "util", "storage"],
        "every first segment, in order"
    );
}
