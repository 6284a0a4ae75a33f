//! `cargo xtask`: the project's own build tasks, needing nothing but cargo (and serde_json to read
//! `cargo metadata`).
//!
//! Subcommands: `test [--soak]`, `cross`, `redox`, `check-sel4`, `demo [ARGS...]`, `bench [--quick] [--all-cpus]
//! [--no-qemu]`, `qemu [--kexecs N]`, `tidy`, `check-model`, `sim-coverage [--seeds N]`, `fuzz`.

mod bench;
mod check_model;
mod cross;
mod flags;
mod fuzz;
mod metadata;
mod prereq;
mod qemu;
mod redox;
mod run;
mod sel4;
mod sim_coverage;
mod test_cmd;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use flags::Command;

/// Exit code for "this subcommand does not exist yet" and for usage errors.
const EXIT_NOT_AVAILABLE: u8 = 2;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match flags::parse(&args) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("xtask: {message}\n\n{}", flags::USAGE);
            return ExitCode::from(EXIT_NOT_AVAILABLE);
        }
    };
    let root = workspace_root();
    let outcome = match command {
        Command::Help => {
            println!("{}", flags::USAGE);
            Ok(())
        }
        Command::Test { soak } => test_cmd::run(&root, soak),
        Command::Tidy => tidy::run(&root),
        Command::Cross => cross::run(&root),
        Command::Redox => redox::run(&root),
        Command::CheckSel4 => sel4::check(&root),
        Command::CheckModel => check_model::run(&root),
        Command::SimCoverage { seeds } => sim_coverage::run(&root, seeds),
        Command::Fuzz { target, seconds } => fuzz::run(&root, target.as_deref(), seconds),
        // A fresh machine needs libtpms-dev and friends before the stack builds.
        Command::Demo { args } => prereq::ensure(&root).and_then(|()| run::demo(&root, &args)),
        Command::Bench {
            quick,
            qemu,
            all_cpus,
        } => bench::run(&root, quick, qemu, all_cpus),
        // Its own prerequisites (QEMU, the cross tools) come with it; the stack's too.
        Command::Qemu(args) => {
            prereq::ensure(&root).and_then(|()| qemu::run(&root, &args).map(|_| ()))
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: xtask lives one folder below it.
fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}
