//! `cargo xtask fuzz [TARGET] [--seconds N]`: the cargo-fuzz targets in fuzz/ (outside the
//! workspace), on a nightly toolchain installed here for fuzzing only; stable builds never see
//! them. Each target runs over its committed corpus (fuzz/corpus/<target>, where new inputs are
//! added) and its regressions (fuzz/regressions/<target>, read only) for N seconds; a crash
//! fails the command. fuzz/README.md says what each target drives.

use std::path::Path;
use std::process::Command;

use crate::run::CommandExt;

/// Every target, as fuzz/Cargo.toml names them.
pub const TARGETS: &[&str] = &[
    "msg_arg",
    "frames",
    "page_list",
    "swtpm",
    "sw_entry",
    "teed_hostile_sw",
    "init_control",
];

const TOOLCHAIN: &str = "nightly";

fn ensure_tools() -> Result<(), String> {
    let has_nightly = Command::new("rustup")
        .args(["run", TOOLCHAIN, "rustc", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_nightly {
        Command::new("rustup")
            .args(["toolchain", "install", TOOLCHAIN, "--profile", "minimal"])
            .status_ok("rustup toolchain install nightly")?;
    }
    let has_cargo_fuzz = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_cargo_fuzz {
        Command::new("cargo")
            .args(["install", "cargo-fuzz", "--locked"])
            .status_ok("cargo install cargo-fuzz")?;
    }
    Ok(())
}

pub fn run(root: &Path, target: Option<&str>, seconds: u64) -> Result<(), String> {
    let targets: Vec<&str> = match target {
        Some(name) if TARGETS.contains(&name) => vec![name],
        Some(name) => return Err(format!("no fuzz target `{name}` (have {TARGETS:?})")),
        None => TARGETS.to_vec(),
    };
    ensure_tools()?;
    let fuzz_dir = root.join("fuzz");
    for name in targets {
        println!("==> fuzz {name} for {seconds} s");
        let corpus = fuzz_dir.join("corpus").join(name);
        let regressions = fuzz_dir.join("regressions").join(name);
        let mut command = Command::new("cargo");
        command
            .current_dir(&fuzz_dir)
            .arg(format!("+{TOOLCHAIN}"))
            .args(["fuzz", "run", name])
            .arg(&corpus);
        if regressions.is_dir() {
            command.arg(&regressions);
        }
        command
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .status_ok("cargo fuzz run")?;
    }
    Ok(())
}
