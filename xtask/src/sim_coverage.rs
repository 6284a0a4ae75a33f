//! `cargo xtask sim-coverage [--seeds N]`: the simulator's coverage report. Runs seeds 0..N
//! (1,000 by default) as covered runs under both OP-TEE profiles and writes SIM_COVERAGE.md at
//! the repository root: which fault landed while what was in flight, against every pair that
//! can exist. Fails when a run breaks an invariant or a possible pair is not reached.

use std::path::Path;

use crate::run::{cargo, CommandExt};

/// The report, at the repository root.
const REPORT: &str = "SIM_COVERAGE.md";

pub fn run(root: &Path, seeds: u64) -> Result<(), String> {
    let seeds = seeds.to_string();
    cargo(root)
        .args([
            "run",
            "--release",
            "--quiet",
            "-p",
            "tee-sim",
            "--bin",
            "sim-coverage",
            "--",
            "--seeds",
            &seeds,
            "--out",
            REPORT,
        ])
        .status_ok("sim-coverage")?;
    println!("wrote {REPORT}");
    Ok(())
}
