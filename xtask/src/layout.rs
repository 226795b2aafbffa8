//! The architecture check of `cargo xtask test`: the modules of force-https-userspace form a
//! tree, and the request paths stay independent.
//!
//! A node is a top-level module of `force-https-userspace/src` (a folder counts as one
//! module), except under `paths/`, where each request path (`paths::xdp`, `paths::http80`,
//! `paths::tls`) is a node of its own. An edge is any `crate::…` or `super::…` path in a file
//! (imports and inline paths alike; comments are ignored). The rules:
//! - no cycle among the nodes;
//! - a path (`paths::*`) imports neither `daemon`, `admin`, `cli`, `paths` itself, nor
//!   another path;
//! - `policy` imports neither `paths` nor `proxy` (nor `daemon`, `admin`, `cli`);
//! - only `cli` imports `daemon`.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use anyhow::{Context, Result, bail};

/// Checks the userspace crate under `root` (the workspace root).
pub fn check(root: &Path) -> Result<()> {
    let src = root.join("force-https-userspace/src");
    let mut files = Vec::new();
    collect(&src, &src, &mut files)?;
    let problems = problems(&files);
    if problems.is_empty() {
        println!(
            "xtask: layout ok: {} files, {} modules, no import cycle, paths independent",
            files.len(),
            graph(&files).len()
        );
        return Ok(());
    }
    for p in &problems {
        eprintln!("xtask: layout: {p}");
    }
    bail!("{} layout rule(s) broken (see above)", problems.len())
}

fn collect(base: &Path, dir: &Path, out: &mut Vec<(String, String)>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            collect(base, &p, out)?;
        } else if p.extension().is_some_and(|x| x == "rs") {
            let rel = p
                .strip_prefix(base)
                .map(|r| r.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = std::fs::read_to_string(&p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            out.push((rel, text));
        }
    }
    Ok(())
}

/// The module path of a file: `paths/xdp/rings.rs` → `[paths, xdp, rings]`,
/// `paths/xdp/mod.rs` → `[paths, xdp]`. `None` for the crate roots.
fn module_of(rel: &str) -> Option<Vec<String>> {
    let rel = rel.strip_suffix(".rs")?;
    let mut segs: Vec<String> = rel.split('/').map(str::to_string).collect();
    if segs.last().is_some_and(|s| s == "mod") {
        segs.pop();
    }
    if matches!(segs.as_slice(), [one] if one == "lib" || one == "main") {
        return None;
    }
    Some(segs)
}

/// The node a module path belongs to; `paths` are the folders under `paths/`.
fn node(module: &[String], paths: &BTreeSet<String>) -> Option<String> {
    match module {
        [] => None,
        [p, path, ..] if p == "paths" && paths.contains(path) => Some(format!("paths::{path}")),
        [first, ..] => Some(first.clone()),
    }
}

/// The request paths: the folders under `paths/`.
fn path_folders(files: &[(String, String)]) -> BTreeSet<String> {
    files
        .iter()
        .filter_map(|(f, _)| {
            let mut it = f.split('/');
            match (it.next(), it.next(), it.next()) {
                (Some("paths"), Some(dir), Some(_)) => Some(dir.to_string()),
                _ => None,
            }
        })
        .collect()
}

/// The text with comments (`//`, `/* */`) and the contents of string and char literals
/// blanked out (newlines kept), so only code is scanned.
fn strip_comments(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if rest.starts_with(b"/*") {
            i += 2;
            while i < b.len() && !b[i..].starts_with(b"*/") {
                if b[i] == b'\n' {
                    out.push(b'\n');
                }
                i += 1;
            }
            i += 2;
        } else if rest.starts_with(b"r#\"") || rest.starts_with(b"r\"") {
            // A raw string: up to `"#` (or `"`), whatever it holds.
            let hashes = usize::from(rest.get(1) == Some(&b'#'));
            let close: &[u8] = if hashes == 1 { b"\"#" } else { b"\"" };
            out.extend_from_slice(b"\"\"");
            i += 2 + hashes;
            while i < b.len() && !b[i..].starts_with(close) {
                if b[i] == b'\n' {
                    out.push(b'\n');
                }
                i += 1;
            }
            i += close.len();
        } else if rest.starts_with(b"'\"'") {
            out.extend_from_slice(b"' '");
            i += 3;
        } else if b[i] == b'"' {
            // A string literal.
            out.push(b'"');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                if b.get(i) == Some(&b'\n') {
                    out.push(b'\n');
                }
                i += 1;
            }
            out.push(b'"');
            i += 1;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where an inline test module starts (`#[cfg(test)]` then `mod NAME {`), and its name.
fn test_module(code: &str) -> Option<(usize, String)> {
    let at = code.find("#[cfg(test)]")?;
    let after = code.get(at + "#[cfg(test)]".len()..)?.trim_start();
    let after = after.strip_prefix("mod ")?.trim_start();
    let name: String = after
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    after
        .get(name.len()..)?
        .trim_start()
        .starts_with('{')
        .then_some((at, name))
}

/// Every path starting at `s` (just after `crate::` or `super::`), brace groups expanded.
fn paths_at(s: &str) -> Vec<Vec<String>> {
    fn parse(s: &[u8], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
        let mut segs = prefix;
        loop {
            while *i < s.len() && s[*i].is_ascii_whitespace() {
                *i += 1;
            }
            if *i < s.len() && s[*i] == b'{' {
                *i += 1;
                loop {
                    parse(s, i, segs.clone(), out);
                    while *i < s.len() && s[*i].is_ascii_whitespace() {
                        *i += 1;
                    }
                    match s.get(*i) {
                        Some(b',') => {
                            *i += 1;
                            while *i < s.len() && s[*i].is_ascii_whitespace() {
                                *i += 1;
                            }
                            if s.get(*i) == Some(&b'}') {
                                *i += 1;
                                return;
                            }
                        }
                        Some(b'}') => {
                            *i += 1;
                            return;
                        }
                        _ => return,
                    }
                }
            }
            let start = *i;
            while *i < s.len() && (s[*i].is_ascii_alphanumeric() || s[*i] == b'_') {
                *i += 1;
            }
            if *i > start {
                segs.push(String::from_utf8_lossy(&s[start..*i]).into_owned());
            }
            if s.get(*i..*i + 2) == Some(b"::") {
                *i += 2;
                continue;
            }
            // ` as name` and the rest of an item end the path.
            while *i < s.len() && !matches!(s[*i], b',' | b'}' | b';' | b'\n') {
                if s[*i] == b'(' || s[*i] == b'<' || s[*i] == b'.' || s[*i] == b')' {
                    break;
                }
                *i += 1;
            }
            out.push(segs);
            return;
        }
    }
    let mut out = Vec::new();
    let mut i = 0;
    parse(s.as_bytes(), &mut i, Vec::new(), &mut out);
    out
}

/// The modules a file refers to, as absolute module paths.
fn references(module: &[String], text: &str) -> Vec<Vec<String>> {
    let text = strip_comments(text);
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    // An inline `#[cfg(test)] mod NAME { .. }` (at the end of a file, by convention) is one
    // level deeper.
    let (tests_at, name) = test_module(&text).unwrap_or((bytes.len(), String::new()));
    let mut test_module = module.to_vec();
    test_module.push(name);
    let mut i = 0;
    while i < bytes.len() {
        let module: &[String] = if i > tests_at { &test_module } else { module };
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let rest = &bytes[i..];
        if boundary && rest.starts_with(b"crate::") {
            // After ASCII `crate::`, `i + 7` is a char boundary.
            out.extend(paths_at(text.get(i + 7..).unwrap_or_default()));
            i += 7;
            continue;
        }
        if boundary && rest.starts_with(b"super::") {
            // `super` is the parent of the file's module (for `x/mod.rs`, the module is `x`).
            let mut base: Vec<String> = module.to_vec();
            base.pop();
            i += 7;
            while bytes[i..].starts_with(b"super::") {
                base.pop();
                i += 7;
            }
            for p in paths_at(text.get(i..).unwrap_or_default()) {
                let mut full = base.clone();
                full.extend(p);
                out.push(full);
            }
            continue;
        }
        i += 1;
    }
    out
}

/// The node graph: node → nodes it refers to.
fn graph(files: &[(String, String)]) -> BTreeMap<String, BTreeSet<String>> {
    let paths = path_folders(files);
    let known: BTreeSet<String> = files
        .iter()
        .filter_map(|(f, _)| module_of(f).and_then(|m| node(&m, &paths)))
        .collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, text) in files {
        let Some(module) = module_of(rel) else {
            continue;
        };
        let Some(from) = node(&module, &paths) else {
            continue;
        };
        let entry = g.entry(from.clone()).or_default();
        for r in references(&module, text) {
            if let Some(to) = node(&r, &paths)
                && to != from
                && known.contains(&to)
            {
                entry.insert(to);
            }
        }
    }
    g
}

/// The nodes reachable from `from` through one or more edges.
fn reachable(g: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<&str> = g
        .get(from)
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    while let Some(n) = todo.pop() {
        if seen.insert(n.to_string()) {
            todo.extend(g.get(n).into_iter().flatten().map(String::as_str));
        }
    }
    seen
}

/// Every rule broken, in words.
fn problems(files: &[(String, String)]) -> Vec<String> {
    let g = graph(files);
    let mut out = Vec::new();
    // Also through other modules (a re-export): a path must not reach the daemon, the admin
    // side, the CLI or another path at all.
    for from in g.keys().filter(|n| n.starts_with("paths::")) {
        for to in reachable(&g, from) {
            let direct = g.get(from).is_some_and(|d| d.contains(&to));
            let forbidden = matches!(to.as_str(), "daemon" | "admin" | "cli")
                || (to.starts_with("paths::") && to != *from);
            if forbidden && !direct {
                out.push(format!(
                    "`{from}` must not reach `{to}` (through other modules)"
                ));
            }
        }
    }
    for (from, tos) in &g {
        for to in tos {
            let path = from.starts_with("paths::");
            let bad = (path
                && (to == "daemon"
                    || to == "admin"
                    || to == "cli"
                    || to == "paths"
                    || to.starts_with("paths::")))
                || (from == "policy"
                    && (to == "paths"
                        || to.starts_with("paths::")
                        || to == "proxy"
                        || to == "daemon"
                        || to == "admin"
                        || to == "cli"))
                || (to == "daemon" && from != "cli");
            if bad {
                out.push(format!("`{from}` must not import `{to}`"));
            }
        }
    }
    // Cycles: a DFS that reports each back edge once.
    fn dfs(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
        out: &mut Vec<String>,
    ) {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                0 => dfs(m, g, state, stack, out),
                1 => {
                    let at = stack.iter().position(|s| s == m).unwrap_or(0);
                    let mut cycle: Vec<&str> = stack[at..].iter().map(String::as_str).collect();
                    cycle.push(m);
                    out.push(format!("import cycle: {}", cycle.join(" -> ")));
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0 {
            dfs(n, &g, &mut state, &mut Vec::new(), &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn parses_grouped_and_inline_paths() {
        let r = references(
            &["paths".into(), "xdp".into(), "rings".into()],
            "use crate::{edge::Edge, metrics::{Counter, CounterSource}, paths::{http80, tls::certs}};\n\
             // crate::daemon in a comment does not count\n\
             fn f() { crate::policy::decide(); super::super::tls::x(); }",
        );
        let flat: Vec<String> = r.iter().map(|p| p.join("::")).collect();
        for want in [
            "edge::Edge",
            "metrics::Counter",
            "metrics::CounterSource",
            "paths::http80",
            "paths::tls::certs",
            "policy::decide",
            "paths::tls::x",
        ] {
            assert!(flat.iter().any(|f| f == want), "{want} in {flat:?}");
        }
        assert!(!flat.iter().any(|f| f.starts_with("daemon")), "{flat:?}");
    }

    #[test]
    fn finds_cycles_and_forbidden_imports() {
        let ok = files(&[
            ("lib.rs", "pub mod a;"),
            ("edge.rs", "use crate::policy::Policy;"),
            ("policy/mod.rs", "use crate::metrics::M;"),
            ("metrics.rs", ""),
            ("paths/mod.rs", "pub mod xdp;"),
            (
                "paths/xdp/mod.rs",
                "use crate::{edge::Edge, policy::decide}; use super::super::metrics::M;",
            ),
            ("paths/http80/mod.rs", "use crate::edge::Edge;"),
            ("daemon/mod.rs", "use crate::paths::{xdp, http80};"),
            ("cli/mod.rs", "use crate::daemon::run;"),
        ]);
        assert_eq!(problems(&ok), Vec::<String>::new());

        let bad = files(&[
            ("edge.rs", "use crate::policy::Policy;"),
            ("policy/mod.rs", "use crate::edge::Edge;"),
            ("paths/xdp/mod.rs", "use crate::paths::http80::first;"),
            ("paths/http80/mod.rs", "fn f() { crate::daemon::run(); }"),
            ("daemon/mod.rs", ""),
        ]);
        let p = problems(&bad);
        assert!(
            p.iter()
                .any(|m| m.contains("import cycle: edge -> policy -> edge")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m == "`paths::xdp` must not import `paths::http80`"),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m == "`paths::http80` must not import `daemon`"),
            "{p:?}"
        ); // Through a re-export in another module.
        let indirect = files(&[
            ("net.rs", "pub use crate::admin::Admin;"),
            ("admin/mod.rs", ""),
            ("paths/tls/mod.rs", "use crate::net::Admin;"),
        ]);
        let p = problems(&indirect);
        assert!(
            p.iter()
                .any(|m| m == "`paths::tls` must not reach `admin` (through other modules)"),
            "{p:?}"
        );
    }

    #[test]
    fn code_only_and_test_modules() {
        let m: Vec<String> = vec!["paths".into(), "xdp".into()];
        let r = references(
            &m,
            "const U: &str = \"http://x\"; use crate::edge::E;\n\
             /* crate::daemon::x */ const S: &str = \"crate::admin::y\";\n\
             const R: &str = r#\"a \"quoted\" crate::cli::z\"#;\n\
             #[cfg(test)] mod tests { use super::*; use super::super::http80::T; }",
        );
        let flat: Vec<String> = r.iter().map(|p| p.join("::")).collect();
        assert!(flat.contains(&"edge::E".to_string()), "{flat:?}");
        assert!(
            !flat
                .iter()
                .any(|f| f.starts_with("daemon") || f.starts_with("admin") || f.starts_with("cli")),
            "{flat:?}"
        );
        // In the test module, `super` is the file's own module.
        assert!(flat.contains(&"paths::xdp".to_string()), "{flat:?}");
        assert!(flat.contains(&"paths::http80::T".to_string()), "{flat:?}");
    }

    #[test]
    fn the_real_tree_passes() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        check(&root).unwrap();
    }
}
