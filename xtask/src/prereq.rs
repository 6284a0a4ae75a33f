//! Prerequisites for `cargo xtask test`: rustup components and Debian packages.
//!
//! CI runs on a fresh machine as root with no stdin, so everything missing is installed here,
//! loudly, and a failure to install says exactly what to do by hand.

use std::io::IsTerminal;
use std::path::Path;
use std::process::Command;

use crate::run::{cargo, CommandExt};

/// Debian packages the build and tests need. The one place to add more
/// (libtpms-dev, libtss2-dev, tpm2-tools will follow).
pub const DEBIAN_PACKAGES: &[&str] = &[
    // build.rs of libs/libtpms finds the TPM engine with it.
    "pkg-config",
    // The real TPM 2.0 engine behind the fTPM TA.
    "libtpms-dev",
    // Real TPM clients in tests: tpm2-tools, and tss-esapi's C libraries.
    "tpm2-tools",
    "libtss2-dev",
    // swtpm_ioctl speaks the swtpm control channel in tpmd's front-end tests.
    "swtpm-tools",
];

/// Cargo subcommands that `test` relies on, with the rustup component providing each.
const RUSTUP_COMPONENTS: &[(&str, &str)] = &[("fmt", "rustfmt"), ("clippy", "clippy")];

pub fn ensure(root: &Path) -> Result<(), String> {
    ensure_rustup_components(root)?;
    ensure_debian_packages(DEBIAN_PACKAGES)
}

fn ensure_rustup_components(root: &Path) -> Result<(), String> {
    let missing: Vec<&str> = RUSTUP_COMPONENTS
        .iter()
        .filter(|(subcommand, _)| {
            !cargo(root)
                .args([subcommand, "--version"])
                .succeeds_quietly()
        })
        .map(|&(_, component)| component)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("installing rustup components: {}", missing.join(" "));
    Command::new("rustup")
        .current_dir(root)
        .args(["component", "add"])
        .args(&missing)
        .status_ok("rustup component add")
        .map_err(|e| {
            format!(
                "{e}; install them by hand: rustup component add {}",
                missing.join(" ")
            )
        })
}

pub fn ensure_debian_packages(packages: &[&str]) -> Result<(), String> {
    if !Command::new("dpkg-query")
        .arg("--version")
        .succeeds_quietly()
    {
        println!(
            "warning: no dpkg-query, cannot check Debian packages; make sure these are installed: {}",
            packages.join(" ")
        );
        return Ok(());
    }
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|name| !is_installed(name))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("installing Debian packages: {}", missing.join(" "));
    let by_hand = || {
        format!(
            "install them by hand: apt-get install --no-install-recommends {}",
            missing.join(" ")
        )
    };
    privileged(&["apt-get", "update"])?
        .status_ok("apt-get update")
        .map_err(|e| format!("{e}; {}", by_hand()))?;
    let mut install = vec!["apt-get", "install", "-y", "--no-install-recommends"];
    install.extend(&missing);
    privileged(&install)?
        .status_ok("apt-get install")
        .map_err(|e| format!("{e}; {}", by_hand()))
}

fn is_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .stdout_if_ok()
        .is_some_and(|status| status_means_installed(&status))
}

/// `dpkg-query -f '${Status}'` prints "want flag state"; only the state "installed" counts
/// (a removed package keeps "deinstall ok config-files").
fn status_means_installed(status: &str) -> bool {
    status.split_whitespace().nth(2) == Some("installed")
}

/// A command run as root: directly when we are root, else through `sudo`, non-interactively
/// when there is no terminal to ask for a password on.
fn privileged(argv: &[&str]) -> Result<Command, String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("internal error: empty command".into());
    };
    let is_root = Command::new("id")
        .arg("-u")
        .stdout_if_ok()
        .is_some_and(|uid| uid.trim() == "0");
    let mut command = if is_root {
        let mut command = Command::new(program);
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        command
    } else {
        if !Command::new("sudo").arg("--version").succeeds_quietly() {
            return Err(format!(
                "`{}` needs root, and there is no sudo; run it as root",
                argv.join(" ")
            ));
        }
        let mut command = Command::new("sudo");
        if !std::io::stdin().is_terminal() {
            command.arg("-n");
        }
        // sudo resets the environment; `env` carries the one variable apt needs.
        command
            .args(["env", "DEBIAN_FRONTEND=noninteractive", program])
            .args(args);
        command
    };
    command.stdin(std::process::Stdio::null());
    Ok(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_installed_state_counts() {
        assert!(status_means_installed("install ok installed"));
        assert!(status_means_installed("hold ok installed"));
        assert!(!status_means_installed("deinstall ok config-files"));
        assert!(!status_means_installed("install ok half-configured"));
        assert!(!status_means_installed("unknown ok not-installed"));
        assert!(!status_means_installed(""));
    }

    #[test]
    fn package_list_names_pkg_config() {
        assert!(DEBIAN_PACKAGES.contains(&"pkg-config"));
        assert!(DEBIAN_PACKAGES
            .iter()
            .all(|p| !p.is_empty() && !p.contains(' ')));
    }
}
