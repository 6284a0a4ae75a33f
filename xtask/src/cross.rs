//! `cargo xtask cross`: the release build of what runs on the board, for the board's target.
//!
//! The host build proves little about the board: a `cfg(target_os)` slip or a dependency that
//! needs glibc only shows up here. The linker (rust-lld, from the toolchain) is set in
//! `.cargo/config.toml`, so plain `cargo build --target` works the same by hand.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::metadata::{self, Metadata};
use crate::run::{cargo, CommandExt};

/// The board's target triple.
pub const TARGET: &str = "aarch64-unknown-linux-musl";

/// The packages built for the board: the servers and the root task. One missing from the
/// workspace is skipped (the crates are being reorganised), so the list can name them early.
pub const PACKAGES: &[&str] = &["teed", "tpmd", "bnxtd", "teesys-root"];

pub fn run(root: &Path) -> Result<(), String> {
    ensure_target(root)?;
    let metadata = metadata::load(root)?;
    let packages = present(&metadata, PACKAGES);
    if packages.is_empty() {
        println!(
            "cross: none of {} exists yet; nothing to build",
            PACKAGES.join(", ")
        );
        return Ok(());
    }
    let started = Instant::now();
    let mut build = cargo(root);
    build.args(["build", "--release", "--target", TARGET]);
    for package in &packages {
        build.args(["-p", package]);
    }
    build.status_ok("cross build")?;
    println!(
        "cross: built {} for {TARGET} in {:.1}s",
        packages.join(", "),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The names of `wanted` that are workspace packages, in the order given.
fn present<'a>(metadata: &Metadata, wanted: &[&'a str]) -> Vec<&'a str> {
    wanted
        .iter()
        .copied()
        .filter(|name| metadata.has_package(name))
        .collect()
}

/// Adds the target's standard library through rustup when it is missing. Without rustup (a
/// distribution's toolchain) there is nobody to ask: the build itself will say if std is absent.
pub(crate) fn ensure_target(root: &Path) -> Result<(), String> {
    let Some(installed) = Command::new("rustup")
        .current_dir(root)
        .args(["target", "list", "--installed"])
        .stdout_if_ok()
    else {
        println!("warning: cannot ask rustup for its installed targets; assuming {TARGET} is one");
        return Ok(());
    };
    if is_listed(&installed, TARGET) {
        return Ok(());
    }
    println!("installing rustup target {TARGET}");
    Command::new("rustup")
        .current_dir(root)
        .args(["target", "add", TARGET])
        .status_ok("rustup target add")
        .map_err(|e| format!("{e}; install it by hand: rustup target add {TARGET}"))
}

/// Whether `rustup target list --installed` output names `target`.
fn is_listed(installed: &str, target: &str) -> bool {
    installed.lines().any(|line| line.trim() == target)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn skips_packages_the_workspace_lacks() {
        let metadata = metadata::parse(
            r#"{"packages": [
                {"name": "bnxtd", "dependencies": []},
                {"name": "teed", "dependencies": []},
                {"name": "teesys-init", "dependencies": []}
            ]}"#,
        )
        .unwrap();
        assert_eq!(present(&metadata, PACKAGES), ["teed", "bnxtd"]);
    }

    #[test]
    fn reads_the_installed_target_list() {
        let listing = "aarch64-unknown-linux-musl\nx86_64-unknown-linux-gnu\n";
        assert!(is_listed(listing, TARGET));
        assert!(!is_listed("x86_64-unknown-linux-gnu\n", TARGET));
        assert!(!is_listed("aarch64-unknown-linux-musl-extra\n", TARGET));
    }
}
