//! Import circles between the files of one crate's source folder.
//!
//! File A points at file B when A names B's module through `crate::..` or `super::..`, in a
//! `use` (groups included) or a path in code; a path naming an item resolves to the deepest
//! file along it, and the crate root (`crate::Item`) is `lib.rs` itself, so a type reached
//! through a re-export still ties its user to the file that re-exports it. A parent naming a
//! child by a relative path (`pub use child::Item` in `lib.rs` or `mod.rs`) is the module tree,
//! not an edge: counting it would tie every re-exported module to the root.
//!
//! Not looked at: comments, literals, `#[cfg(test)]` items (the `tests` module above all),
//! `tests/` folders, and `bin/` (each file there is a crate of its own).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::matchers::{
    blank_comments_and_literals, ident_at, is_ident_byte, line_of, skip_path_separator,
    skip_whitespace,
};

/// Source folders checked for circles, relative to the workspace root. Edit freely.
pub const CIRCLE_DIRS: &[&str] = &[
    "servers/teed/src",
    "servers/init/src",
    "servers/init/root/src",
    "servers/init/teectl/src",
    "libs/tee-proto/src",
    "libs/tee-rt/src",
    "libs/tee-client/src",
];

/// One file's mention of a module of its crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// 1-based line number.
    pub line: usize,
    /// The path from the crate root, `super` and `crate` resolved; it may end in item names.
    pub path: Vec<String>,
}

/// A strongly connected set of files, with the edges that tie it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Circle {
    /// Paths relative to the folder, sorted.
    pub files: Vec<String>,
    /// Edges between the files of the circle, the first mention of each.
    pub edges: Vec<Edge>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub from: String,
    pub line: usize,
    pub to: String,
    /// The module named, as `crate::a::b`.
    pub module: String,
}

impl fmt::Display for Circle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "import circle among {}:", self.files.join(", "))?;
        for edge in &self.edges {
            write!(
                f,
                "\n    {}:{} names {} ({})",
                edge.from, edge.line, edge.module, edge.to
            )?;
        }
        Ok(())
    }
}

/// The module path of a file given relative to its crate's source folder, `None` for a file
/// outside the crate tree (tests, binaries, non-Rust).
pub fn module_of(file: &str) -> Option<Vec<String>> {
    let stem = file.strip_suffix(".rs")?;
    let mut parts: Vec<&str> = stem.split('/').collect();
    let folders = &parts[..parts.len() - 1];
    if folders.contains(&"tests") || folders.first() == Some(&"bin") {
        return None;
    }
    if parts == ["lib"] || parts == ["main"] || parts.last() == Some(&"mod") {
        parts.pop();
    }
    Some(parts.into_iter().map(str::to_owned).collect())
}

/// Every `crate::..` and `super::..` path of `source`, written in module `module`.
pub fn module_references(source: &str, module: &[String]) -> Vec<Reference> {
    let code = blank_test_items(&blank_comments_and_literals(source));
    let bytes = code.as_bytes();
    let inline_modules = inline_modules(&code);
    let mut found = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let word = ident_at(&code, at);
        if word.is_empty() {
            at += 1;
            continue;
        }
        let start = at;
        at += word.len();
        let after_word_boundary = start == 0 || !is_ident_byte(bytes[start - 1]);
        if !after_word_boundary || !(word == "crate" || word == "super") {
            continue;
        }
        if restricts_visibility(&code, start) {
            continue;
        }
        let Some(mut rest) = skip_path_separator(bytes, at) else {
            continue;
        };
        let base = if word == "crate" {
            Vec::new()
        } else {
            let mut current = module.to_vec();
            current.extend(
                inline_modules
                    .iter()
                    .filter(|m| m.open < start && start < m.close)
                    .map(|m| m.name.clone()),
            );
            let mut supers = 1;
            while ident_at(&code, rest) == "super" {
                let Some(next) = skip_path_separator(bytes, rest + "super".len()) else {
                    break;
                };
                supers += 1;
                rest = next;
            }
            if supers > current.len() {
                continue;
            }
            current.truncate(current.len() - supers);
            current
        };
        // Past the whole `super::super::` chain, so its later links are not read again.
        at = rest;
        for tail in path_tree(&code, rest) {
            let mut path = base.clone();
            path.extend(tail);
            found.push(Reference {
                line: line_of(&code, start),
                path,
            });
        }
    }
    found
}

/// The circles (strongly connected sets of two or more files) of one source folder, given as
/// (path relative to the folder, contents).
pub fn find_circles(files: &[(String, String)]) -> Vec<Circle> {
    let modules: Vec<Option<Vec<String>>> = files.iter().map(|(path, _)| module_of(path)).collect();
    let by_module: BTreeMap<&[String], usize> = modules
        .iter()
        .enumerate()
        .filter_map(|(index, module)| Some((module.as_deref()?, index)))
        .filter(|(module, index)| !module.is_empty() || files[*index].0 == "lib.rs")
        .collect();
    let main = files.iter().position(|(path, _)| path == "main.rs");
    let root = by_module.get([].as_slice()).copied().or(main);

    // For each file, its targets with the first mention of each.
    let mut edges: Vec<BTreeMap<usize, Edge>> = vec![BTreeMap::new(); files.len()];
    for (from, module) in modules.iter().enumerate() {
        let Some(module) = module else { continue };
        // A crate root's `crate::Item` is itself, even for main.rs beside lib.rs.
        let own_root = if module.is_empty() { Some(from) } else { root };
        for reference in module_references(&files[from].1, module) {
            let deepest = (1..=reference.path.len())
                .rev()
                .find_map(|len| Some((by_module.get(&reference.path[..len])?, len)));
            let (to, len) = match deepest {
                Some((to, len)) => (*to, len),
                None => match own_root {
                    Some(to) => (to, 0),
                    None => continue,
                },
            };
            if to == from {
                continue;
            }
            edges[from].entry(to).or_insert_with(|| Edge {
                from: files[from].0.clone(),
                line: reference.line,
                to: files[to].0.clone(),
                module: std::iter::once("crate")
                    .chain(reference.path[..len].iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join("::"),
            });
        }
    }

    let successors: Vec<Vec<usize>> = edges.iter().map(|e| e.keys().copied().collect()).collect();
    let mut circles: Vec<Circle> = strongly_connected(&successors)
        .into_iter()
        .filter(|component| component.len() > 1)
        .map(|component| {
            let members: BTreeSet<usize> = component.iter().copied().collect();
            let mut files: Vec<String> = component.iter().map(|&i| files[i].0.clone()).collect();
            files.sort();
            let mut circle_edges: Vec<Edge> = members
                .iter()
                .flat_map(|&from| edges[from].iter())
                .filter(|(to, _)| members.contains(to))
                .map(|(_, edge)| edge.clone())
                .collect();
            circle_edges.sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));
            Circle {
                files,
                edges: circle_edges,
            }
        })
        .collect();
    circles.sort_by(|a, b| a.files.cmp(&b.files));
    circles
}

/// Tarjan's algorithm: the strongly connected components of the graph `successors`.
fn strongly_connected(successors: &[Vec<usize>]) -> Vec<Vec<usize>> {
    struct Walk<'a> {
        successors: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next_index: usize,
        components: Vec<Vec<usize>>,
    }

    impl Walk<'_> {
        fn visit(&mut self, node: usize) {
            self.index[node] = Some(self.next_index);
            self.low[node] = self.next_index;
            self.next_index += 1;
            self.stack.push(node);
            self.on_stack[node] = true;
            for &next in &self.successors[node] {
                match self.index[next] {
                    None => {
                        self.visit(next);
                        self.low[node] = self.low[node].min(self.low[next]);
                    }
                    Some(index) if self.on_stack[next] => {
                        self.low[node] = self.low[node].min(index);
                    }
                    Some(_) => {}
                }
            }
            if Some(self.low[node]) == self.index[node] {
                let mut component = Vec::new();
                while let Some(member) = self.stack.pop() {
                    self.on_stack[member] = false;
                    component.push(member);
                    if member == node {
                        break;
                    }
                }
                self.components.push(component);
            }
        }
    }

    let count = successors.len();
    let mut walk = Walk {
        successors,
        index: vec![None; count],
        low: vec![0; count],
        on_stack: vec![false; count],
        stack: Vec::new(),
        next_index: 0,
        components: Vec::new(),
    };
    for node in 0..count {
        if walk.index[node].is_none() {
            walk.visit(node);
        }
    }
    walk.components
}

/// An inline `mod name { .. }` and the byte offsets of its braces.
struct InlineModule {
    name: String,
    open: usize,
    close: usize,
}

fn inline_modules(code: &str) -> Vec<InlineModule> {
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    for (at, _) in code.match_indices("mod") {
        let whole_word = (at == 0 || !is_ident_byte(bytes[at - 1]))
            && !bytes.get(at + 3).is_some_and(|b| is_ident_byte(*b));
        if !whole_word {
            continue;
        }
        let name_at = skip_whitespace(bytes, at + 3);
        let name = ident_at(code, name_at);
        if name.is_empty() {
            continue;
        }
        let open = skip_whitespace(bytes, name_at + name.len());
        if bytes.get(open) == Some(&b'{') {
            found.push(InlineModule {
                name: name.to_owned(),
                open,
                close: matching_brace(bytes, open),
            });
        }
    }
    found
}

/// Blanks every item under `#[cfg(test)]`, keeping newlines and offsets.
fn blank_test_items(code: &str) -> String {
    let bytes = code.as_bytes();
    let mut out = bytes.to_vec();
    for (start, attribute) in code.match_indices("#[cfg(test)]") {
        let mut at = start + attribute.len();
        // Further attributes of the same item.
        loop {
            at = skip_whitespace(bytes, at);
            if bytes.get(at..at + 2) != Some(b"#[") {
                break;
            }
            at = matching_bracket(bytes, at + 1, b'[', b']') + 1;
        }
        let end = item_end(bytes, at);
        for b in &mut out[start..end] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
    }
    // Only ASCII bytes were replaced, and only whole spans of code, so this is still UTF-8.
    String::from_utf8_lossy(&out).into_owned()
}

/// End (exclusive) of the item starting at `from`: its first `;` or its first `{ .. }` block,
/// outside parentheses and brackets.
fn item_end(bytes: &[u8], from: usize) -> usize {
    let mut depth = 0usize;
    for at in from..bytes.len() {
        match bytes[at] {
            b'(' | b'[' => depth += 1,
            b')' | b']' => depth = depth.saturating_sub(1),
            b';' if depth == 0 => return at + 1,
            b'{' if depth == 0 => return (matching_brace(bytes, at) + 1).min(bytes.len()),
            _ => {}
        }
    }
    bytes.len()
}

fn matching_brace(bytes: &[u8], open: usize) -> usize {
    matching_bracket(bytes, open, b'{', b'}')
}

/// Offset of the byte closing the bracket at `open`, or the end of the text.
fn matching_bracket(bytes: &[u8], open: usize, opening: u8, closing: u8) -> usize {
    let mut depth = 0usize;
    for (at, b) in bytes.iter().enumerate().skip(open) {
        if *b == opening {
            depth += 1;
        } else if *b == closing {
            depth -= 1;
            if depth == 0 {
                return at;
            }
        }
    }
    bytes.len()
}

/// Whether the word at `start` is inside `pub(in ..)`: that names a module, but uses nothing.
fn restricts_visibility(code: &str, start: usize) -> bool {
    let before = code[..start].trim_end();
    before
        .strip_suffix("in")
        .is_some_and(|rest| rest.trim_end().ends_with('('))
}

/// The paths written from `at` on: `a::b::C`, or a `{..}` group of them (nested), each as its
/// segments; `self` in a group stands for the group's prefix, `*` and generics end a path.
fn path_tree(code: &str, at: usize) -> Vec<Vec<String>> {
    let bytes = code.as_bytes();
    let at = skip_whitespace(bytes, at);
    if bytes.get(at) == Some(&b'{') {
        let close = matching_brace(bytes, at);
        let mut paths = Vec::new();
        let mut item = at + 1;
        while item < close {
            paths.extend(path_tree(code, item));
            item = next_group_item(bytes, item, close);
        }
        return paths;
    }
    let name = ident_at(code, at);
    if name.is_empty() || name == "self" {
        return vec![Vec::new()];
    }
    let Some(next) = skip_path_separator(bytes, at + name.len()) else {
        return vec![vec![name.to_owned()]];
    };
    path_tree(code, next)
        .into_iter()
        .map(|tail| std::iter::once(name.to_owned()).chain(tail).collect())
        .collect()
}

/// Start of the next comma-separated item of the group closing at `close`, or `close`.
fn next_group_item(bytes: &[u8], from: usize, close: usize) -> usize {
    let mut depth = 0usize;
    for (at, b) in bytes.iter().enumerate().take(close).skip(from) {
        match b {
            b'{' => depth += 1,
            b'}' => depth = depth.saturating_sub(1),
            b',' if depth == 0 => return at + 1,
            _ => {}
        }
    }
    close
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
