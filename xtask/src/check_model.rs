//! `cargo xtask check-model`: the exhaustive lifecycle check (model-check/) under both OP-TEE
//! profiles, at the depth. The default `test` runs a bounded one as ordinary tests.

use std::path::Path;

use crate::run::{cargo, CommandExt};

/// The depth the issue asks for, in lifecycle actions.
const DEPTH: &str = "12";

pub fn run(root: &Path) -> Result<(), String> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .to_string();
    for profile in ["3.14", "4.x"] {
        cargo(root)
            .args([
                "run",
                "--release",
                "--quiet",
                "-p",
                "teesys-model-check",
                "--bin",
                "check-model",
                "--",
                "--depth",
                DEPTH,
                "--profile",
                profile,
                "--threads",
                &threads,
            ])
            .status_ok("check-model")?;
    }
    Ok(())
}
