//! `cargo xtask redox`: the Redox daemons type-checked for both Redox targets, with clippy.
//!
//! Types only: linking needs relibc and Redox's cross toolchain, which come only from Redox's
//! own servers or a full Redox build (sysroot/redox/README.md), so nothing here claims a
//! binary. `x86_64-unknown-redox` is tier 2 (rustup ships its std); `aarch64-unknown-redox` is
//! tier 3, so its std is built from the rust-src component (`-Zbuild-std`). Both use their own
//! target folder under `target/`, so the host build's artifacts stay valid.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::run::{cargo, CommandExt};

/// The crates checked: the shared layer and the three daemons (their mains included).
pub const PACKAGES: &[&str] = &[
    "smc-caps",
    "tee-redox",
    "teed-redox",
    "tpmd-redox",
    "bnxtd-redox",
];

/// Tier 2: std from rustup.
pub const X86_64: &str = "x86_64-unknown-redox";
/// Tier 3: std built from rust-src.
pub const AARCH64: &str = "aarch64-unknown-redox";

/// The workspace profile of the checks: no optimisation, no debug info (see Cargo.toml).
pub const PROFILE: &str = "redox-check";

/// The Redox passes' own folders, one per target: `RUSTC_BOOTSTRAP` is part of every crate's
/// fingerprint, so sharing a folder with the host build, or between the two targets (whose
/// values differ), would rebuild everything on every run.
pub fn target_dir(target: &str) -> String {
    let arch = target.split('-').next().unwrap_or(target);
    format!("target/redox/{arch}")
}

pub fn run(root: &Path) -> Result<(), String> {
    ensure_rustup(
        root,
        &["target", "list", "--installed"],
        X86_64,
        &["target", "add", X86_64],
    )?;
    ensure_rustup(
        root,
        &["component", "list", "--installed"],
        "rust-src",
        &["component", "add", "rust-src"],
    )?;
    let started = Instant::now();
    for target in [X86_64, AARCH64] {
        for tool in ["check", "clippy"] {
            let step = Instant::now();
            command(root, target, tool).status_ok(&format!("{tool} for {target}"))?;
            println!(
                "redox: {tool} for {target} in {:.1}s",
                step.elapsed().as_secs_f64()
            );
        }
    }
    println!(
        "redox: {} type-check for {X86_64} and {AARCH64} in {:.1}s (types only: linking needs relibc and the Redox toolchain)",
        PACKAGES.join(", "),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `cargo check` or `cargo clippy -D warnings` of [`PACKAGES`] for `target`.
fn command(root: &Path, target: &str, tool: &str) -> Command {
    let mut command = cargo(root);
    command.arg(tool);
    if target == AARCH64 {
        command.arg("-Zbuild-std=core,alloc,std");
    }
    command.args(["--target", target, "--profile", PROFILE, "--lib", "--bins"]);
    command.arg("--target-dir").arg(target_dir(target));
    for package in PACKAGES {
        command.args(["-p", package]);
    }
    if tool == "clippy" {
        command.args(["--", "-D", "warnings"]);
    }
    command.env("RUSTC_BOOTSTRAP", bootstrap(target));
    command
}

/// `RUSTC_BOOTSTRAP` for `target`, as narrow as it can be. redox-scheme 0.12 enables a nightly
/// feature (`linked_list_cursors`), so on stable that crate alone may use one: the value
/// `redox_scheme` scopes it to the crate. `-Zbuild-std` is a cargo flag, and cargo honours only
/// `1`, so the aarch64 pass needs it whole.
pub fn bootstrap(target: &str) -> &'static str {
    if target == AARCH64 {
        "1"
    } else {
        "redox_scheme"
    }
}

/// Adds `wanted` through rustup (`add`) when `list` does not name it. Without rustup (a
/// distribution's toolchain) there is nobody to ask: the check itself says what is missing.
fn ensure_rustup(root: &Path, list: &[&str], wanted: &str, add: &[&str]) -> Result<(), String> {
    let Some(installed) = Command::new("rustup")
        .current_dir(root)
        .args(list)
        .stdout_if_ok()
    else {
        println!("warning: cannot ask rustup what is installed; assuming {wanted} is");
        return Ok(());
    };
    if is_listed(&installed, wanted) {
        return Ok(());
    }
    println!("installing {wanted} through rustup");
    Command::new("rustup")
        .current_dir(root)
        .args(add)
        .status_ok("rustup")
        .map_err(|e| format!("{e}; add it by hand: rustup {}", add.join(" ")))
}

/// Whether rustup's listing names `wanted` (component lines may carry a host suffix:
/// `rust-src` is listed as is, `rust-std-x86_64-unknown-linux-gnu` with it).
pub fn is_listed(listing: &str, wanted: &str) -> bool {
    listing.lines().any(|line| line.trim() == wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(command: &Command) -> Vec<String> {
        command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect()
    }

    fn env(command: &Command, key: &str) -> Option<String> {
        command
            .get_envs()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()))
    }

    #[test]
    fn bootstrap_is_scoped_to_redox_scheme_where_cargo_allows() {
        let x86 = command(Path::new("."), X86_64, "check");
        assert_eq!(
            env(&x86, "RUSTC_BOOTSTRAP").as_deref(),
            Some("redox_scheme")
        );
        assert!(!args(&x86).iter().any(|a| a.starts_with("-Z")));
        let arm = command(Path::new("."), AARCH64, "clippy");
        assert_eq!(env(&arm, "RUSTC_BOOTSTRAP").as_deref(), Some("1"));
        assert!(args(&arm).contains(&"-Zbuild-std=core,alloc,std".to_string()));
    }

    #[test]
    fn each_target_has_its_own_folder_and_every_pass_every_package() {
        for target in [X86_64, AARCH64] {
            for tool in ["check", "clippy"] {
                let words = args(&command(Path::new("."), target, tool));
                let at = words.iter().position(|w| w == "--target-dir").unwrap_or(0);
                let dir = words.get(at + 1).cloned().unwrap_or_default();
                assert!(dir.starts_with("target/redox/"), "{dir}");
                assert_ne!(
                    dir,
                    target_dir(if target == X86_64 { AARCH64 } else { X86_64 })
                );
                for package in PACKAGES {
                    assert!(words.iter().any(|w| w == package), "{package}");
                }
                assert_eq!(
                    words.ends_with(&["-D".into(), "warnings".into()]),
                    tool == "clippy"
                );
            }
        }
    }

    #[test]
    fn reads_rustups_listings() {
        let components =
            "cargo-x86_64-unknown-linux-gnu\nrust-src\nrustc-x86_64-unknown-linux-gnu\n";
        assert!(is_listed(components, "rust-src"));
        assert!(!is_listed("rust-src-extra\n", "rust-src"));
        assert!(is_listed("x86_64-unknown-redox\n", X86_64));
    }
}
