//! The house's layering, checked on the source: a module imports only from its own layer or the
//! layers below it, and no two modules import each other. The layers, bottom up: `core` (shared
//! words and pure decisions, and the ledger), `bots`, `services` (what the loop calls: the
//! broker, the execution step, …), `sim` (the simulated broker and its market), the
//! `orchestrator`, `research` (the backtest, sweeps, the report page), then the command layer
//! (`cli`, `error`; `main` is the binary). Test modules (`#[cfg(test)] mod tests`) may reach
//! anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const LAYERS: &[&str] = &["core", "bots", "services", "sim", "orchestrator", "research", "cli|error"];

fn layer(module: &str) -> usize {
    let top = module.split("::").next().unwrap_or_default();
    LAYERS
        .iter()
        .position(|l| l.split('|').any(|name| name == top))
        .unwrap_or_else(|| panic!("module {module} is in no layer: add its folder to LAYERS"))
}

/// `src/services/execution.rs` → `services::execution`; `src/sim/mod.rs` → `sim`.
fn module_of(path: &Path) -> String {
    let rel = path.strip_prefix("src").unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts.last().map(String::as_str) == Some("mod") {
        parts.pop();
    }
    parts.join("::")
}

/// A module's name at the start of `text`: a lower-case path segment (`halt_store`), or `""` for
/// a type (`Bot`), a group (`{…}`) or anything else.
fn segment(text: &str) -> &str {
    let end = text.find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')).unwrap_or(text.len());
    &text[..end]
}

/// The modules a file's non-test code names as `crate::a` or `crate::a::b`, groups included
/// (`crate::sim::{bar_files, replay::Replay}` names `sim::bar_files` and `sim::replay`). The
/// orchestrator and the command layer are one module each.
fn imports(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let top = segment(rest);
        if !LAYERS.iter().any(|l| l.split('|').any(|n| n == top)) || top.is_empty() {
            continue; // `crate::event!`, `crate::VERSION`
        }
        let after = rest[top.len()..].strip_prefix("::").unwrap_or("");
        let mut second: Vec<&str> = Vec::new();
        if let Some(group) = after.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            second.extend(group.split(',').map(|item| segment(item.trim())).filter(|m| !m.is_empty() && *m != "self"));
        } else if !segment(after).is_empty() {
            second.push(segment(after));
        }
        if ["orchestrator", "cli", "error"].contains(&top) || second.is_empty() {
            found.insert(top.to_string());
        } else {
            found.extend(second.into_iter().map(|m| format!("{top}::{m}")));
        }
    }
    found
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn modules_import_only_downwards_and_never_each_other() {
    let mut files = Vec::new();
    sources(Path::new("src"), &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy();
        if ["main.rs", "lib.rs", "test_dir.rs"].contains(&name.as_ref()) {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        let code = text.split("\n#[cfg(test)]\nmod tests").next().unwrap();
        let module = module_of(path);
        let used: BTreeSet<String> = imports(code).into_iter().filter(|m| *m != module).collect();
        graph.insert(module, used);
    }
    assert!(graph.contains_key("core::state") && graph["services::execution"].contains("core::state"), "{graph:?}");
    let mut wrong = Vec::new();
    for (module, used) in &graph {
        for other in used {
            if layer(other) > layer(module) {
                wrong.push(format!("{module} imports {other}, a layer above it"));
            }
            if module < other && graph.get(other).is_some_and(|back| back.contains(module)) {
                wrong.push(format!("{module} and {other} import each other"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
