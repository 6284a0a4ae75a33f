//! `cargo xtask test`: the whole gate, in order, stopping at the first failing step.

use std::path::Path;

use crate::run::{cargo, CommandExt};
use crate::{cross, prereq, qemu, redox, sel4, tidy};

/// Environment variable that tests read to decide whether to run their long soaks.
pub const SOAK_ENV: &str = "TEESYS_SOAK";

/// One step of the gate.
struct Step {
    name: &'static str,
    run: fn(&Path, bool) -> Result<(), String>,
}

const STEPS: &[Step] = &[
    Step {
        name: "prerequisites",
        run: |root, _| prereq::ensure(root),
    },
    Step {
        name: "fmt",
        run: |root, _| {
            cargo(root)
                .args(["fmt", "--all", "--", "--check"])
                .status_ok("fmt")
        },
    },
    Step {
        name: "tidy",
        run: |root, _| tidy::run(root),
    },
    Step {
        name: "clippy",
        run: |root, _| {
            cargo(root)
                .args([
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ])
                .status_ok("clippy")
        },
    },
    Step {
        // Process tests spawn sibling binaries (secure-world, teed, ...): build them all first.
        name: "build",
        run: |root, _| {
            cargo(root)
                .args(["build", "--workspace", "--bins"])
                .status_ok("build")
        },
    },
    Step {
        // Compile-only and quick once warm, so a board-only break shows before the long tests.
        name: "cross",
        run: |root, _| cross::run(root),
    },
    Step {
        // Types only, for both Redox targets: relibc and Redox's toolchain are not here.
        name: "redox",
        run: |root, _| redox::run(root),
    },
    Step {
        // Opt-in: says it skipped, and why, unless SEL4_PREFIX and RUST_SEL4 are given.
        name: "sel4",
        run: |root, _| sel4::test_step(root),
    },
    Step {
        name: "test",
        run: |root, soak| {
            let mut command = cargo(root);
            command.args(["test", "--workspace"]);
            if soak {
                command.env(SOAK_ENV, "1");
            }
            command.status_ok("test")
        },
    },
    Step {
        // The real kernel: 3 kexecs, a kdump, the kexec back, a reset, then the seed's build
        // failing on its 4th kexec. Last: the slowest step, and the hosted suite says more
        // about a broken core.
        name: "qemu",
        run: |root, _| {
            qemu::run(
                root,
                &qemu::QemuArgs {
                    kexecs: 3,
                    seed_bugs: true,
                    seed_only: false,
                },
            )
            .map(|_| ())
        },
    },
];

pub fn run(root: &Path, soak: bool) -> Result<(), String> {
    let total = STEPS.len();
    for (index, step) in STEPS.iter().enumerate() {
        println!("==> [{}/{total}] {}", index + 1, step.name);
        (step.run)(root, soak).map_err(|e| format!("step `{}` failed: {e}", step.name))?;
    }
    println!(
        "==> all {total} steps passed{}",
        if soak { " (with soaks)" } else { "" }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_run_in_the_documented_order() {
        let names: Vec<&str> = STEPS.iter().map(|step| step.name).collect();
        assert_eq!(
            names,
            [
                "prerequisites",
                "fmt",
                "tidy",
                "clippy",
                "build",
                "cross",
                "redox",
                "sel4",
                "test",
                "qemu"
            ]
        );
    }
}
