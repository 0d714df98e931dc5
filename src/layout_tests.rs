//! The house keeps its floors: the top-level modules (folders) of each
//! crate must not import each other in a circle, so each folder can be read
//! knowing only the ones below it.
//!
//! Imports are read from the sources (`crate::name`, non-test code only),
//! so a new `use` that closes a circle fails here, with the circle named.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Which top-level modules each top-level module of the crate at `root` names.
fn folder_graph(root: &Path) -> Graph {
    let mut graph = Graph::new();
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
            let relative = path.strip_prefix(root).unwrap();
            let first = relative.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
            let top = first.trim_end_matches(".rs").to_owned();
            if ["lib", "main"].contains(&top.as_str()) {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            let named = graph.entry(top.clone()).or_default();
            for (at, _) in code.match_indices("crate::") {
                let ident: String = code[at + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !ident.is_empty() && ident != top && ident.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
                    named.insert(ident);
                }
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

#[test]
fn the_cluster_crate_has_no_import_cycle_between_its_folders() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster/src");
    let found = cycles(&folder_graph(&root));
    assert!(found.is_empty(), "caxton-cluster's folders import each other in a circle: {found:?}");
}

#[test]
fn the_server_crate_has_no_import_cycle_between_its_folders() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = cycles(&folder_graph(&root));
    assert!(found.is_empty(), "caxton's folders import each other in a circle: {found:?}");
}

#[test]
fn a_cycle_is_found_and_named() {
    let graph: Graph = [("a", &["b"][..]), ("b", &["c"]), ("c", &["a"]), ("d", &["a"])]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.iter().map(|s| s.to_string()).collect()))
        .collect();
    assert_eq!(cycles(&graph), BTreeSet::from([vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]]));
}
