//! Running child processes with readable failures.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};

/// A `cargo` command in the workspace root, using the cargo that started xtask.
pub fn cargo(root: &Path) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(root);
    command
}

pub trait CommandExt {
    /// Runs to completion with inherited stdio; an error names `what` and the exit status.
    fn status_ok(&mut self, what: &str) -> Result<(), String>;
    /// True when the command starts and exits successfully, its output discarded.
    fn succeeds_quietly(&mut self) -> bool;
    /// Captured stdout when the command starts and exits successfully.
    fn stdout_if_ok(&mut self) -> Option<String>;
}

impl CommandExt for Command {
    fn status_ok(&mut self, what: &str) -> Result<(), String> {
        let status = self
            .status()
            .map_err(|e| format!("{what}: could not start `{}`: {e}", program_name(self)))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!(
                "{what}: `{}` failed ({status})",
                program_name(self)
            ))
        }
    }

    fn succeeds_quietly(&mut self) -> bool {
        self.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    fn stdout_if_ok(&mut self) -> Option<String> {
        let output = self
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// The program (without its folder) and its arguments, for messages.
fn program_name(command: &Command) -> String {
    let program = Path::new(command.get_program());
    std::iter::once(program.file_name().unwrap_or(program.as_os_str()))
        .chain(command.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The binaries of the hosted stack that `teectl demo` starts (it finds them beside itself).
const DEMO_PACKAGES: [&str; 6] = [
    "secure-world-host",
    "teed",
    "tpmd",
    "bnxtd",
    "teesys-root",
    "teectl",
];

/// `cargo xtask demo`: builds the hosted stack's binaries, then runs `teectl demo ARGS...`.
///
/// The dev profile is used on purpose: it is optimised enough for the demo (opt-level 1, deps
/// at 2), shares its artifacts with `cargo test`, and avoids a second full build in release.
pub fn demo(root: &Path, args: &[String]) -> Result<(), String> {
    let mut build = cargo(root);
    build.args(["build", "--bins"]);
    for package in DEMO_PACKAGES {
        build.args(["-p", package]);
    }
    build.status_ok("demo build")?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Command::new(target_dir.join("debug").join("teectl"))
        .current_dir(root)
        .arg("demo")
        .args(args)
        .status_ok("demo")
}
