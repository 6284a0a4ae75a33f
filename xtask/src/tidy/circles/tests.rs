use super::*;

fn paths(source: &str, module: &[&str]) -> Vec<(usize, String)> {
    let module: Vec<String> = module.iter().map(|s| s.to_string()).collect();
    module_references(source, &module)
        .into_iter()
        .map(|r| (r.line, r.path.join("::")))
        .collect()
}

fn files(set: &[(&str, &str)]) -> Vec<(String, String)> {
    set.iter()
        .map(|(path, text)| (path.to_string(), text.to_string()))
        .collect()
}

fn circle_files(set: &[(&str, &str)]) -> Vec<Vec<String>> {
    find_circles(&files(set))
        .into_iter()
        .map(|circle| circle.files)
        .collect()
}

#[test]
fn files_map_to_modules() {
    let module = |file| module_of(file).map(|m| m.join("::"));
    assert_eq!(module("lib.rs").as_deref(), Some(""));
    assert_eq!(module("main.rs").as_deref(), Some(""));
    assert_eq!(module("view.rs").as_deref(), Some("view"));
    assert_eq!(module("host/mod.rs").as_deref(), Some("host"));
    assert_eq!(module("host/procs.rs").as_deref(), Some("host::procs"));
    assert_eq!(module("a/b/c.rs").as_deref(), Some("a::b::c"));
    assert_eq!(
        module("matchers/tests.rs").as_deref(),
        Some("matchers::tests")
    );
    assert_eq!(module("tests/common/mod.rs"), None);
    assert_eq!(module("a/tests/x.rs"), None);
    assert_eq!(module("bin/teectl.rs"), None);
    assert_eq!(module("notes.md"), None);
}

#[test]
fn reads_uses_groups_and_paths_in_code() {
    let source = "\
use tee_proto::Generation;
use crate::view::Phase;
use crate::{server_index, shutdown::{self, ShutdownOutcome as Outcome}, effect::*};
fn f() -> crate :: boot :: Ledger { crate::restart::Tracker::<u8>::new() }
pub(crate) fn g() {}
";
    assert_eq!(
        paths(source, &["supervisor"]),
        [
            (2, "view::Phase".to_owned()),
            (3, "server_index".to_owned()),
            (3, "shutdown".to_owned()),
            (3, "shutdown::ShutdownOutcome".to_owned()),
            (3, "effect".to_owned()),
            (4, "boot::Ledger".to_owned()),
            (4, "restart::Tracker".to_owned()),
        ]
    );
}

#[test]
fn resolves_super_from_files_and_inline_modules() {
    let source = "\
use super::procs::Table;
use super::super::config;
mod inner { use super::Local; }
";
    assert_eq!(
        paths(source, &["host", "shell"]),
        [
            (1, "host::procs::Table".to_owned()),
            (2, "config".to_owned()),
            (3, "host::shell::Local".to_owned()),
        ]
    );
    // Above the crate root is not a path of this crate.
    assert_eq!(paths("use super::x;", &[]), []);
}

#[test]
fn ignores_comments_literals_tests_and_visibility() {
    let source = r#"
// use crate::a;
/// See [`crate::b::Thing`].
const S: &str = "crate::c";
pub(in crate::d) fn f() {}
#[cfg(test)]
use crate::e;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::f::{g, h};
}
use crate::kept;
"#;
    assert_eq!(paths(source, &["x"]), [(14, "kept".to_owned())]);
}

#[test]
fn finds_a_two_file_circle_and_its_edges() {
    let set = [
        (
            "lib.rs",
            "pub mod error;\npub mod frame;\npub use error::ProtoError;\n",
        ),
        ("error.rs", "use crate::frame::{FramePart, Generation};\n"),
        ("frame.rs", "\n\nuse crate::error::ProtoError;\n"),
        ("teed.rs", "use crate::error::WireError;\n"),
    ];
    let circles = find_circles(&files(&set));
    assert_eq!(circles.len(), 1, "{circles:?}");
    assert_eq!(circles[0].files, ["error.rs", "frame.rs"]);
    let shown = circles[0].to_string();
    assert!(
        shown.contains("error.rs:1 names crate::frame (frame.rs)"),
        "{shown}"
    );
    assert!(
        shown.contains("frame.rs:3 names crate::error (error.rs)"),
        "{shown}"
    );
}

#[test]
fn finds_a_longer_circle_and_leaves_the_tree_alone() {
    let set = [
        (
            "lib.rs",
            "mod effect;\npub use effect::Transition;\npub use view::Phase;\n",
        ),
        ("effect.rs", "use crate::view::Phase;\n"),
        (
            "shutdown.rs",
            "use crate::effect::Transition;\nuse crate::server_index;\n",
        ),
        (
            "view.rs",
            "use crate::shutdown::ShutdownOutcome;\nuse crate::server_index;\n",
        ),
        ("events.rs", "use crate::view::Phase;\n"),
    ];
    assert_eq!(
        circle_files(&set),
        [["effect.rs", "shutdown.rs", "view.rs"]]
    );
}

#[test]
fn an_edge_through_a_root_reexport_ends_at_the_root() {
    // view.rs reaches Transition through lib.rs, and lib.rs names view.rs by `crate::`: that
    // is a circle through the root. Relative re-exports in lib.rs are not edges.
    let set = [
        (
            "lib.rs",
            "pub use effect::Transition;\nfn f(p: crate::view::Phase) {}\n",
        ),
        ("effect.rs", "pub enum Transition {}\n"),
        ("view.rs", "use crate::Transition;\n"),
    ];
    assert_eq!(circle_files(&set), [["lib.rs", "view.rs"]]);
    let clean = [
        (
            "lib.rs",
            "pub use effect::Transition;\npub use view::Phase;\n",
        ),
        ("effect.rs", "pub enum Transition {}\n"),
        ("view.rs", "use crate::Transition;\n"),
    ];
    assert_eq!(circle_files(&clean), Vec::<Vec<String>>::new());
}

#[test]
fn nested_modules_resolve_to_the_deepest_file() {
    let set = [
        ("lib.rs", ""),
        ("host/mod.rs", "pub use crate::host::procs::Table;\n"),
        ("host/procs.rs", "use super::Shell;\n"),
        ("host/wire.rs", "use crate::host::procs::inner::Deep;\n"),
        ("cli/mod.rs", "use crate::host::wire::X;\n"),
        ("tests/common.rs", "use crate::cli::Y;\n"),
    ];
    let circles = find_circles(&files(&set));
    assert_eq!(circles.len(), 1, "{circles:?}");
    assert_eq!(circles[0].files, ["host/mod.rs", "host/procs.rs"]);
}

#[test]
fn separate_circles_are_reported_apart() {
    let set = [
        ("a.rs", "use crate::b::X;"),
        ("b.rs", "use crate::a::Y;"),
        ("c.rs", "use crate::d::X; use crate::a::Z;"),
        ("d.rs", "use crate::c::Y;"),
        ("lib.rs", ""),
    ];
    assert_eq!(circle_files(&set), [["a.rs", "b.rs"], ["c.rs", "d.rs"]]);
}

#[test]
fn non_ascii_code_does_not_trip_the_scanner() {
    let source = "fn µ() -> crate::état::Ü { crate::x::é() }\nuse crate::y;";
    let found = paths(source, &["z"]);
    assert!(found.contains(&(2, "y".to_owned())), "{found:?}");
}
