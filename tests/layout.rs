//! The house order of docs/ARCHITECTURE.md ("Import order"), checked on the source: no import loop crosses
//! top-level modules (a loop may stay inside one folder, e.g. `hub/`), `metrics` is a leaf, and the module table
//! names every top-level module in `src/` and nothing that is gone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules of the crate (`src/*.rs` but `lib.rs` and `main.rs`).
fn modules() -> BTreeSet<String> {
    std::fs::read_dir(root().join("src"))
        .expect("src")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let module = name.strip_suffix(".rs")?.to_owned();
            (module != "lib" && module != "main").then_some(module)
        })
        .collect()
}

/// Top-level module → the other top-level modules its files name (`crate::x`, or `super::x` in a top-level file).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let reference = regex::Regex::new(r"\bcrate::([a-z_][a-z0-9_]*)").expect("regex");
    let parent = regex::Regex::new(r"\bsuper::([a-z_][a-z0-9_]*)").expect("regex");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src");
        let first = relative.components().next().expect("a component");
        let first = first.as_os_str().to_string_lossy();
        let module = first.trim_end_matches(".rs").to_owned();
        if !modules.contains(&module) {
            continue; // lib.rs, main.rs
        }
        let top_level = relative.components().count() == 1;
        let text = std::fs::read_to_string(&file).expect("readable");
        let deps = graph.entry(module.clone()).or_default();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            let names = reference
                .captures_iter(line)
                .chain(parent.captures_iter(line).filter(|_| top_level));
            for name in names {
                let name = &name[1];
                if name != module && modules.contains(name) {
                    deps.insert(name.to_owned());
                }
            }
        }
    }
    graph
}

fn reaches(graph: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_owned()];
    while let Some(module) = stack.pop() {
        if module == to {
            return true;
        }
        if seen.insert(module.clone()) {
            stack.extend(graph.get(&module).into_iter().flatten().cloned());
        }
    }
    false
}

#[test]
fn no_import_loop_crosses_top_level_modules() {
    let graph = graph();
    let loops: Vec<String> = graph
        .iter()
        .flat_map(|(a, deps)| deps.iter().map(move |b| (a, b)))
        .filter(|(a, b)| reaches(&graph, b, a))
        .map(|(a, b)| format!("{a} -> {b}"))
        .collect();
    assert!(
        loops.is_empty(),
        "imports between top-level modules that sit on a loop (docs/ARCHITECTURE.md, \"Import order\"):\n{}",
        loops.join("\n")
    );
}

#[test]
fn metrics_is_a_leaf() {
    let graph = graph();
    let deps = &graph["metrics"];
    for dep in deps {
        assert!(
            !reaches(&graph, dep, "metrics"),
            "metrics imports {dep}, which leads back to metrics"
        );
    }
    assert!(
        deps.iter().all(|d| d == "event" || d == "logs"),
        "metrics imports {deps:?}"
    );
}

#[test]
fn the_module_table_names_every_top_level_module() {
    let doc =
        std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).expect("docs/ARCHITECTURE.md");
    let table = doc
        .split("## 2. Modules")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").nth(1))
        .expect("the module table");
    let first_column = regex::Regex::new(r"`([a-z_]+)\.rs`").expect("regex");
    let mut named = BTreeSet::new();
    for row in table.lines() {
        let first = row.split('|').nth(1).unwrap_or_default();
        named.extend(first_column.captures_iter(first).map(|c| c[1].to_owned()));
    }
    let mut wanted = modules();
    wanted.insert("main".into());
    let missing: Vec<_> = wanted.difference(&named).collect();
    let gone: Vec<_> = named.difference(&wanted).collect();
    assert!(
        missing.is_empty() && gone.is_empty(),
        "docs/ARCHITECTURE.md module table: missing {missing:?}, no longer in src/ {gone:?}"
    );
}
