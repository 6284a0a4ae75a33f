//! `cargo xtask check-sel4`: type-checks teed's seL4 SMC backend (`servers/teed/sel4`) against
//! the user's seL4 build and rust-sel4 checkout.
//!
//! Neither seL4 nor rust-sel4 is on a package registry, so nothing here fetches them: the user
//! names them with `SEL4_PREFIX` and `RUST_SEL4`, and without them `check-sel4` says how to get
//! them while `cargo xtask test` says it skipped the check and why (a skip, never a pass). The
//! backend's manifest is written under `target/` because it names the user's paths.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run::{cargo, CommandExt};

/// A configured, installed seL4 (≥ 13.0.0, `KernelAllowSMCCalls=ON`, aarch64).
pub const SEL4_PREFIX: &str = "SEL4_PREFIX";
/// A rust-sel4 checkout (v5.0.0 for seL4 16.0.0).
pub const RUST_SEL4: &str = "RUST_SEL4";
/// seL4's bare-metal aarch64 target, as rust-sel4 type-checks its crates.
pub const TARGET: &str = "aarch64-unknown-none";
/// Where the manifest is written, and the build's own folder.
const MANIFEST_DIR: &str = "target/sel4-check";
const TARGET_DIR: &str = "target/sel4";

/// How to get what the check needs.
pub const HOW_TO: &str = "\
check-sel4 needs a seL4 build and a rust-sel4 checkout (neither is on a package registry):
  1. seL4 >= 13.0.0 (16.0.0 tested), from the seL4/seL4 Git repository, configured for aarch64
     with SMC calls allowed and installed, e.g. in a build folder:
       cmake -G Ninja -DCROSS_COMPILER_PREFIX=aarch64-linux-gnu- -DCMAKE_TOOLCHAIN_FILE=../gcc.cmake \\
             -DKernelPlatform=qemu-arm-virt -DKernelSel4Arch=aarch64 -DARM_CPU=cortex-a57 \\
             -DKernelAllowSMCCalls=ON -DCMAKE_INSTALL_PREFIX=$PWD/install ..
       ninja install
     (qemu-arm-virt dumps its device tree with qemu-system-aarch64; if that fails for a missing
     ROM, dump it with `-machine virt,secure=off,gic-version=2,dumpdtb=virt.dtb -cpu cortex-a57
     -m 1024 -nographic -nic none` and add -DQEMU_DTB=<that file>)
     (host packages: cmake ninja-build device-tree-compiler libxml2-utils gcc-aarch64-linux-gnu,
     and the Python package sel4-deps), then SEL4_PREFIX=<that install folder>.
  2. rust-sel4 v5.0.0, from the seL4/rust-sel4 Git repository: RUST_SEL4=<the checkout>.
  3. libclang (Debian: libclang-dev) for rust-sel4's bindgen.
Then: SEL4_PREFIX=... RUST_SEL4=... cargo xtask check-sel4";

/// What the environment gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Inputs {
    Ready {
        prefix: PathBuf,
        rust_sel4: PathBuf,
    },
    /// Why the check cannot run.
    Missing(String),
}

/// Reads and checks the two variables (through `var`, so tests need no environment).
pub fn inputs(var: impl Fn(&str) -> Option<OsString>) -> Inputs {
    let (Some(prefix), Some(rust_sel4)) = (var(SEL4_PREFIX), var(RUST_SEL4)) else {
        return Inputs::Missing(format!("{SEL4_PREFIX} and {RUST_SEL4} are not both set"));
    };
    let (prefix, rust_sel4) = (PathBuf::from(prefix), PathBuf::from(rust_sel4));
    if !prefix.join("libsel4/include").is_dir() {
        return Inputs::Missing(format!(
            "{SEL4_PREFIX}={} has no libsel4/include (not an installed seL4)",
            prefix.display()
        ));
    }
    if !sel4_sys(&rust_sel4).join("Cargo.toml").is_file() {
        return Inputs::Missing(format!(
            "{RUST_SEL4}={} has no crates/sel4/sys (not a rust-sel4 checkout)",
            rust_sel4.display()
        ));
    }
    Inputs::Ready { prefix, rust_sel4 }
}

fn sel4_sys(rust_sel4: &Path) -> PathBuf {
    rust_sel4.join("crates/sel4/sys")
}

/// `cargo xtask check-sel4`: the check, or the steps to make it possible.
pub fn check(root: &Path) -> Result<(), String> {
    match inputs(|key| std::env::var_os(key)) {
        Inputs::Ready { prefix, rust_sel4 } => run(root, &prefix, &rust_sel4),
        Inputs::Missing(why) => Err(format!("{why}\n{HOW_TO}")),
    }
}

/// The step of `cargo xtask test`: the check when the user gave its inputs, else a skip that
/// says so.
pub fn test_step(root: &Path) -> Result<(), String> {
    match inputs(|key| std::env::var_os(key)) {
        Inputs::Ready { prefix, rust_sel4 } => run(root, &prefix, &rust_sel4),
        Inputs::Missing(why) => {
            println!(
                "sel4: SKIPPED, not checked: {why}; the seL4 backend is opt-in (`cargo xtask check-sel4` says what it needs)"
            );
            Ok(())
        }
    }
}

/// The backend's manifest: its source in the repository, sel4-sys from the user's checkout.
pub fn manifest(root: &Path, rust_sel4: &Path) -> String {
    let source = root.join("servers/teed/sel4/src/lib.rs");
    format!(
        "# Written by `cargo xtask check-sel4`; it names this machine's paths, so it is not committed.
[package]
name = \"teed-sel4\"
version = \"0.1.0\"
edition = \"2021\"
publish = false

[lib]
path = {source:?}

[dependencies]
sel4-sys = {{ path = {sys:?} }}
smc-caps = {{ path = {caps:?} }}
optee-abi = {{ path = {abi:?} }}

[workspace]
",
        source = source.display().to_string(),
        sys = sel4_sys(rust_sel4).display().to_string(),
        caps = root.join("libs/smc-caps").display().to_string(),
        abi = root.join("libs/optee-abi").display().to_string(),
    )
}

fn run(root: &Path, prefix: &Path, rust_sel4: &Path) -> Result<(), String> {
    let dir = root.join(MANIFEST_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join("Cargo.toml");
    std::fs::write(&path, manifest(root, rust_sel4))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Command::new("rustup")
        .current_dir(root)
        .args(["target", "add", TARGET])
        .status_ok("rustup target add")?;
    for tool in ["check", "clippy"] {
        let mut command = cargo(root);
        command.arg(tool).arg("--manifest-path").arg(&path).args([
            "--target",
            TARGET,
            "--target-dir",
            TARGET_DIR,
        ]);
        if tool == "clippy" {
            command.args(["--", "-D", "warnings"]);
        }
        // rust-sel4 uses nightly features (and pins a nightly); stable checks it with
        // RUSTC_BOOTSTRAP=1, as rust-sel4's own CI does without its pinned toolchain.
        command
            .env("RUSTC_BOOTSTRAP", "1")
            .env(SEL4_PREFIX, prefix)
            .status_ok(&format!("{tool} of the seL4 backend"))?;
    }
    println!(
        "sel4: the seL4 SMC backend type-checks against {}",
        prefix.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_both_variables_nothing_runs_and_the_reason_is_given() {
        let none = |_: &str| None;
        assert!(matches!(inputs(none), Inputs::Missing(why) if why.contains(SEL4_PREFIX)));
        let one = |key: &str| (key == SEL4_PREFIX).then(|| OsString::from("."));
        assert!(matches!(inputs(one), Inputs::Missing(_)));
        // Set, but not what they must name.
        let wrong = |_: &str| Some(OsString::from("."));
        assert!(matches!(inputs(wrong), Inputs::Missing(why) if why.contains("libsel4")));
        assert!(HOW_TO.contains("KernelAllowSMCCalls=ON") && HOW_TO.contains("v5.0.0"));
    }

    #[test]
    fn the_manifest_names_the_backend_and_the_users_sel4_sys() {
        let text = manifest(Path::new("/repo"), Path::new("/src/rust-sel4"));
        assert!(text.contains("path = \"/repo/servers/teed/sel4/src/lib.rs\""));
        assert!(text.contains("sel4-sys = { path = \"/src/rust-sel4/crates/sel4/sys\" }"));
        assert!(text.contains("smc-caps = { path = \"/repo/libs/smc-caps\" }"));
        assert!(text.contains("[workspace]"), "its own workspace, not ours");
    }
}
