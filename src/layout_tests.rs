//! The house keeps its floors: neither the top-level modules (folders) of
//! each crate nor the files inside them import each other in a circle, so
//! each can be read knowing only the ones below it.
//!
//! Imports are read from the sources (`crate::…` and `super::…` paths,
//! non-test code only), so a new `use` that closes a circle fails here, with
//! the circle named. A path through a folder's re-export (`crate::state::Store`)
//! counts as an import of the file the folder re-exports it from.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Which top-level modules each top-level module of the crate at `root`
/// names (the crate root's own file aside).
fn folder_graph(root: &Path) -> Graph {
    let mut graph = Graph::new();
    for (module, code) in modules(root) {
        let Some(top) = module.first() else { continue };
        let named = graph.entry(top.clone()).or_default();
        for (at, _) in code.match_indices("crate::") {
            let ident: String =
                code[at + "crate::".len()..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !ident.is_empty() && &ident != top && ident.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
                named.insert(ident);
            }
        }
    }
    graph
}

/// Every module of the crate at `root` (`state::store`; the crate root is
/// ``), with its non-test source.
fn modules(root: &Path) -> BTreeMap<Vec<String>, String> {
    let mut found = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(root).unwrap().with_extension("");
            let mut module: Vec<String> =
                relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
            if module.last().is_some_and(|l| ["mod", "lib", "main"].contains(&l.as_str())) {
                module.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            found.insert(module, text.split("#[cfg(test)]").next().unwrap_or("").to_owned());
        }
    }
    found
}

/// The paths a source names from `crate::` or `super::`, as absolute module
/// paths (`use super::{a::X, b}` in `m::c` gives `m::a::X` and `m::b`).
fn named_paths(module: &[String], code: &str) -> Vec<Vec<String>> {
    let mut starts: Vec<(usize, &str)> =
        ["crate::", "super::"].iter().flat_map(|head| code.match_indices(head)).collect();
    starts.sort();
    let mut out = Vec::new();
    for (at, head) in starts {
        // Only a path's first segment starts it (`super::super::x` once).
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let base = match head {
            "crate::" => Vec::new(),
            _ => module[..module.len().saturating_sub(1)].to_vec(),
        };
        expand(base, &code[at + head.len()..], &mut out);
    }
    out
}

/// Reads one path (or brace group of paths) from `rest`, appending each to
/// `prefix`; `super::` steps up.
fn expand(mut prefix: Vec<String>, rest: &str, out: &mut Vec<Vec<String>>) {
    let mut rest = rest.trim_start();
    loop {
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let end = group
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '{' => 1,
                        '}' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(group.len(), |(i, _)| i);
            let mut depth = 0;
            let mut item_start = 0;
            for (i, c) in group[..end].char_indices().chain([(end, ',')]) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        let item = group[item_start..i].trim();
                        if !item.is_empty() && item != "self" {
                            expand(prefix.clone(), item, out);
                        }
                        item_start = i + 1;
                    }
                    _ => {}
                }
            }
            return;
        }
        let ident: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if ident.is_empty() {
            break;
        }
        rest = &rest[ident.len()..];
        if ident == "super" {
            prefix.pop();
        } else {
            prefix.push(ident);
        }
        match rest.strip_prefix("::") {
            Some(more) => rest = more.trim_start(),
            None => break,
        }
    }
    out.push(prefix);
}

/// Which modules of the crate at `root` each module imports (its own
/// ancestors aside: a file may use its folder's face).
fn file_graph(root: &Path) -> Graph {
    let modules = modules(root);
    // Per module, the items it re-exports from a child: `pub use x::{A, B}`.
    let mut reexported: BTreeMap<&[String], BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for (module, code) in &modules {
        for line in code.split(';') {
            let Some(rest) =
                line.trim().strip_prefix("pub use ").or_else(|| line.trim().strip_prefix("pub(crate) use "))
            else {
                continue;
            };
            let rest = rest.trim_start_matches("self::");
            let child: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            let mut child_path = module.clone();
            child_path.push(child.clone());
            if !modules.contains_key(&child_path) {
                continue;
            }
            let items = &rest[child.len()..];
            for item in items.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|i| !i.is_empty()) {
                reexported.entry(module.as_slice()).or_default().insert(item.to_owned(), child_path.clone());
            }
        }
    }
    let resolve = |path: &[String]| -> Option<Vec<String>> {
        let known = (0..=path.len()).rev().find(|&n| modules.contains_key(&path[..n]))?;
        let (module, rest) = path.split_at(known);
        Some(match rest.first().and_then(|item| reexported.get(module)?.get(item)) {
            Some(child) => child.clone(),
            None => module.to_vec(),
        })
    };
    let name = |m: &[String]| m.join("::");
    let mut graph = Graph::new();
    for (module, code) in &modules {
        let named = graph.entry(name(module)).or_default();
        for path in named_paths(module, code) {
            let Some(target) = resolve(&path) else { continue };
            if !module.starts_with(&target) {
                named.insert(name(&target));
            }
        }
    }
    graph
}

/// The graph's cycles: its strongly connected components of more than one
/// module (Tarjan), each sorted.
fn cycles(graph: &Graph) -> BTreeSet<Vec<String>> {
    struct Walk<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        found: BTreeSet<Vec<String>>,
    }
    impl<'g> Walk<'g> {
        fn visit(&mut self, v: &'g str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            for w in self.graph.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    self.low.entry(v).and_modify(|l| *l = (*l).min(lw));
                } else if self.stack.contains(&w) {
                    let iw = self.index[w];
                    self.low.entry(v).and_modify(|l| *l = (*l).min(iw));
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    component.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.insert(component);
                }
            }
        }
    }
    let mut walk =
        Walk { graph, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), found: BTreeSet::new() };
    for v in graph.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.found
}

/// The circles in `krate` (a source folder under the repository root),
/// at the level `graph` reads.
fn circles_in(krate: &str, graph: fn(&Path) -> Graph) -> BTreeSet<Vec<String>> {
    cycles(&graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join(krate)))
}

#[test]
fn no_crate_has_an_import_cycle_between_its_folders() {
    for krate in ["src", "cluster/src", "llama/src"] {
        let found = circles_in(krate, folder_graph);
        assert!(found.is_empty(), "{krate}: folders import each other in a circle: {found:?}");
    }
}

#[test]
fn no_crate_has_an_import_cycle_between_its_files() {
    for krate in ["src", "cluster/src", "llama/src"] {
        let found = circles_in(krate, file_graph);
        assert!(found.is_empty(), "{krate}: files import each other in a circle: {found:?}");
    }
}

#[test]
fn imports_through_groups_steps_and_reexports_are_read() {
    let module = ["state".to_owned(), "agents".to_owned()];
    let code =
        "use super::{envelope::{ApplyCtx, Response}, events::StateEvent};\nlet x = crate::config::AgentName::parse(s);";
    let got: Vec<String> = named_paths(&module, code).iter().map(|p| p.join("::")).collect();
    assert_eq!(
        got,
        [
            "state::envelope::ApplyCtx",
            "state::envelope::Response",
            "state::events::StateEvent",
            "config::AgentName::parse"
        ]
    );
}

#[test]
fn a_file_cycle_is_found() {
    let dir = std::env::temp_dir().join(format!("caxton-layout-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("f")).unwrap();
    std::fs::write(dir.join("lib.rs"), "mod f;").unwrap();
    std::fs::write(dir.join("f/mod.rs"), "mod a;\nmod b;\npub use a::Thing;").unwrap();
    std::fs::write(dir.join("f/a.rs"), "use super::b::Other;\npub struct Thing;").unwrap();
    std::fs::write(dir.join("f/b.rs"), "pub struct Other(crate::f::Thing);").unwrap();
    let found = cycles(&file_graph(&dir));
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(found, BTreeSet::from([vec!["f::a".to_owned(), "f::b".to_owned()]]));
}

#[test]
fn a_cycle_is_found_and_named() {
    let graph: Graph = [("a", &["b"][..]), ("b", &["c"]), ("c", &["a"]), ("d", &["a"])]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.iter().map(|s| s.to_string()).collect()))
        .collect();
    assert_eq!(cycles(&graph), BTreeSet::from([vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]]));
}
