//! Repository rules that the compiler cannot check.
//!
//! * Sans-IO core crates name no clock, socket, thread or process from std: their shells do.
//! * No file carries an absolute path of the machine it was written on.
//! * Crates depend on each other only along the layering rules ([`layering::RULES`]).
//! * The files of a crate do not import each other in a circle ([`circles::CIRCLE_DIRS`]).

mod circles;
mod layering;
mod matchers;

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run::CommandExt;
use matchers::{absolute_path_lines, forbidden_std_uses};

/// Source folders of the sans-IO cores, relative to the workspace root. Edit freely: add a
/// server's `src/core` here once it has one.
pub const CORE_SOURCE_DIRS: &[&str] = &["libs/optee-abi/src", "libs/tee-proto/src"];

pub fn run(root: &Path) -> Result<(), String> {
    let mut problems = Vec::new();
    check_core_crates(root, &mut problems)?;
    check_absolute_paths(root, &mut problems)?;
    check_layering(root, &mut problems)?;
    check_import_circles(root, &mut problems)?;
    if problems.is_empty() {
        println!("tidy: ok");
        return Ok(());
    }
    for problem in &problems {
        eprintln!("tidy: {problem}");
    }
    Err(format!("tidy found {} problem(s)", problems.len()))
}

fn check_core_crates(root: &Path, problems: &mut Vec<String>) -> Result<(), String> {
    for dir in CORE_SOURCE_DIRS {
        let mut files = Vec::new();
        collect_rust_files(&root.join(dir), &mut files)?;
        for file in files {
            let source = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let shown = file.strip_prefix(root).unwrap_or(&file).display();
            for found in forbidden_std_uses(&source) {
                problems.push(format!(
                    "{shown}:{}: `std::{}` in a sans-IO core (move it to the shell)",
                    found.line, found.module
                ));
            }
        }
    }
    Ok(())
}

fn check_layering(root: &Path, problems: &mut Vec<String>) -> Result<(), String> {
    let metadata = crate::metadata::load(root)?;
    for violation in layering::check(&metadata, layering::RULES) {
        problems.push(format!("layering: {violation}"));
    }
    Ok(())
}

fn check_import_circles(root: &Path, problems: &mut Vec<String>) -> Result<(), String> {
    for dir in circles::CIRCLE_DIRS {
        let folder = root.join(dir);
        let mut paths = Vec::new();
        collect_rust_files(&folder, &mut paths)?;
        let mut files = Vec::new();
        for path in paths {
            let source = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let relative = path.strip_prefix(&folder).unwrap_or(&path);
            let parts: Vec<_> = relative.iter().map(|p| p.to_string_lossy()).collect();
            files.push((parts.join("/"), source));
        }
        for circle in circles::find_circles(&files) {
            problems.push(format!("{dir}: {circle}"));
        }
    }
    Ok(())
}

/// All `.rs` files below `dir`; a missing folder holds none (a crate may not exist yet).
fn collect_rust_files(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot list {}: {e}", dir.display())),
    };
    for entry in entries {
        let path = entry
            .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
            .path();
        if path.is_dir() {
            collect_rust_files(&path, files)?;
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files.sort();
    Ok(())
}

/// Checks every file git knows or would add (tracked, plus untracked files not ignored), so a
/// new file is caught before its first commit.
fn check_absolute_paths(root: &Path, problems: &mut Vec<String>) -> Result<(), String> {
    let listing = Command::new("git")
        .current_dir(root)
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .stdout_if_ok()
        .ok_or("`git ls-files` failed; tidy needs a git checkout")?;
    let mut names: Vec<&str> = listing
        .split('\0')
        .filter(|name| !name.is_empty())
        .collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let bytes = match std::fs::read(root.join(name)) {
            Ok(bytes) => bytes,
            // Deleted in the work tree but still in the index: nothing to check.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            // A submodule or nested repository shows up as a folder.
            Err(_) if root.join(name).is_dir() => continue,
            Err(e) => return Err(format!("cannot read {name}: {e}")),
        };
        let text = String::from_utf8_lossy(&bytes);
        for line in absolute_path_lines(&text) {
            problems.push(format!(
                "{name}:{line}: absolute path of a machine (make it relative)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn core_check_walks_nested_folders_and_names_the_file() {
        let root = std::env::temp_dir().join(format!("xtask-tidy-{}", std::process::id()));
        let nested = root.join(CORE_SOURCE_DIRS[0]).join("inner");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::write(nested.join("clock.rs"), "\n\nuse std::time::Instant;\n").unwrap();
        std::fs::write(
            nested.join("notes.txt"),
            "std::thread in a text file is not code\n",
        )
        .unwrap();

        let mut problems = Vec::new();
        let result = check_core_crates(&root, &mut problems);
        std::fs::remove_dir_all(&root).unwrap();

        result.unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        let expected = format!("{}/inner/clock.rs:3: `std::time`", CORE_SOURCE_DIRS[0]);
        assert!(problems[0].starts_with(&expected), "{}", problems[0]);
    }
}
