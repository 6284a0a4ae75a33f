//! `cargo xtask bench [--quick]`: builds the bench and the stack it starts in release, makes
//! sure Debian's swtpm (the GetRandom baseline) is installed, and runs `teesys-bench`.
//!
//! A full run first runs the QEMU scenario with 10 kexecs (`cargo xtask qemu --kexecs 10`,
//! skipped with `--no-qemu`) and hands its timings to the bench for the guest's kexec figure;
//! a QEMU run that fails leaves that figure "not measured", with the reason.
//!
//! A full run writes BENCHMARKS.md and benchmarks.json at the workspace root; `--quick` (tiny
//! iteration counts, to see that every measurement still runs) writes them under
//! `target/bench-quick/` and leaves the committed figures alone.

use std::path::Path;
use std::process::Command;

use crate::prereq;
use crate::qemu::{self, QemuArgs};
use crate::run::{cargo, CommandExt};

/// Kexecs of the QEMU run the guest's figure is taken from.
const QEMU_KEXECS: u32 = 10;

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

pub fn run(root: &Path, quick: bool, with_qemu: bool, all_cpus: bool) -> Result<(), String> {
    prereq::ensure(root)?;
    // Before the bench, so its minutes of TCG do not load the bench's measurements.
    let qemu_timings = if with_qemu {
        let args = QemuArgs {
            kexecs: QEMU_KEXECS,
            ..QemuArgs::default()
        };
        match qemu::run(root, &args) {
            Ok(Some(path)) => Ok(path),
            Ok(None) => Err("the QEMU run wrote no timings".to_string()),
            Err(error) => Err(format!("cargo xtask qemu failed: {error}")),
        }
    } else {
        Err("not run (--no-qemu or --quick)".to_string())
    };
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
    if all_cpus {
        bench.arg("--all-cpus");
    }
    match qemu_timings {
        Ok(path) => bench.arg("--qemu-timings").arg(path),
        Err(why) => bench.arg("--qemu-missing").arg(why),
    };
    bench.status_ok("bench")
}
