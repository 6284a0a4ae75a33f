//! `cargo xtask bench [--quick]`: builds the bench and the stack it starts in release, makes
//! sure Debian's swtpm (the GetRandom baseline) is installed, and runs `teesys-bench`.
//!
//! A full run writes BENCHMARKS.md and benchmarks.json at the workspace root; `--quick` (tiny
//! iteration counts, to see that every measurement still runs) writes them under
//! `target/bench-quick/` and leaves the committed figures alone.

use std::path::Path;
use std::process::Command;

use crate::prereq;
use crate::run::{cargo, CommandExt};

/// The packages `teesys-bench` runs: itself and the hosted stack's binaries.
const BENCH_PACKAGES: [&str; 7] = [
    "teesys-bench",
    "secure-world-host",
    "teed",
    "tpmd",
    "bnxtd",
    "teesys-root",
    "teectl",
];

/// Debian's swtpm: the baseline of the TPM figures (swtpm-tools for swtpm_setup's friends).
const BASELINE_PACKAGES: [&str; 2] = ["swtpm", "swtpm-tools"];

pub fn run(root: &Path, quick: bool) -> Result<(), String> {
    prereq::ensure(root)?;
    prereq::ensure_debian_packages(&BASELINE_PACKAGES)?;
    let mut build = cargo(root);
    build.args(["build", "--release", "--bins"]);
    for package in BENCH_PACKAGES {
        build.args(["-p", package]);
    }
    build.status_ok("bench build")?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let out_dir = if quick {
        target_dir.join("bench-quick")
    } else {
        root.to_path_buf()
    };
    let mut bench = Command::new(target_dir.join("release").join("teesys-bench"));
    bench.current_dir(root).arg("--out-dir").arg(&out_dir);
    if quick {
        bench.arg("--quick");
    }
    bench.status_ok("bench")
}
