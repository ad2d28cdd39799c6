//! A check of this crate's own structure, run with its unit tests: route modules import no
//! other route module, and the modules import each other in no circle. It reads the sources
//! (`use crate::...` and `crate::...` paths) the way a reviewer would.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Where each name re-exported at the crate root is defined.
const ROOT_ITEMS: &[(&str, &str)] = &[
    ("ApiError", "error"),
    ("ErrorBody", "error"),
    ("ErrorCode", "error_code"),
    ("Hasher", "hashing"),
    ("JsonBody", "json"),
    ("BodyLimit", "json"),
    // Defined in lib.rs itself: the shared state and the 200 helper, which depend on no module
    // that depends on them.
    ("AppState", "lib"),
    ("json_ok", "lib"),
];

fn module_name(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts.join("::")
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The longest known module a `crate::a::b::c` path names.
fn resolve(path: &str, modules: &BTreeSet<String>) -> Option<String> {
    let segments: Vec<&str> = path.split("::").collect();
    if let Some((_, m)) = ROOT_ITEMS.iter().find(|(name, _)| *name == segments[0]) {
        return Some((*m).to_owned());
    }
    (1..=segments.len())
        .rev()
        .map(|n| segments[..n].join("::"))
        .find(|m| modules.contains(m))
}

/// Module → the modules it names, from the non-test part of each source file.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let modules: BTreeSet<String> = all.iter().map(|f| module_name(&src, f)).collect();
    let mut graph = BTreeMap::new();
    for file in &all {
        let name = module_name(&src, file);
        let text = std::fs::read_to_string(file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let mut deps = BTreeSet::new();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let inner = &group[..group.find('}').unwrap_or(0)];
                for item in inner.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    deps.extend(resolve(item, &modules));
                }
            } else {
                let path: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                deps.extend(resolve(path.trim_end_matches(':'), &modules));
            }
        }
        deps.remove(&name);
        deps.remove("lib");
        graph.insert(name, deps);
    }
    graph
}

#[test]
fn no_route_module_imports_another_route_module() {
    for (module, deps) in graph() {
        if !module.starts_with("routes::") {
            continue;
        }
        for dep in deps {
            let parent_of_module = module.starts_with(&format!("{dep}::"));
            assert!(
                !dep.starts_with("routes") || parent_of_module,
                "{module} imports the route module {dep}"
            );
        }
    }
}

#[test]
fn the_modules_import_each_other_in_no_circle() {
    let graph = graph();
    assert!(graph.len() > 20, "read {} modules", graph.len());
    // Depth-first search; a module met again on the current path closes a circle.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(m) {
            return;
        }
        if let Some(at) = path.iter().position(|p| p == m) {
            panic!("import circle: {} -> {m}", path[at..].join(" -> "));
        }
        path.push(m.to_owned());
        for dep in graph.get(m).into_iter().flatten() {
            visit(dep, graph, path, done);
        }
        path.pop();
        done.insert(m.to_owned());
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        visit(m, &graph, &mut Vec::new(), &mut done);
    }
}
