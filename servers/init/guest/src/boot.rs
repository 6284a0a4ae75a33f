//! What a guest boot is, from its command line and `/proc/vmcore`, and the command lines of the
//! kernels it loads next. Pure: the shell reads the files and runs kexec.
//!
//! * A kexec'd boot carries `teesys.kind=kexec teesys.boot=N` (added by the previous init).
//! * The crash kernel knows itself by `/proc/vmcore` alone (fs/proc/vmcore.c; on arm64 the
//!   elfcorehdr comes through the device tree, not the command line): that is the crash flag.
//! * QEMU's own command line (cold boot, and every boot after a machine reset) has neither.
//!
//! Every normal command line carries `crashkernel=`, or the next kernel reserves nothing and
//! `kexec -p` fails. The crash kernel's own command line drops it (it must not reserve out of
//! its small region) and keeps the value as `teesys.crashkernel=`, so the normal boot it
//! kexecs into gets it back.

use tee_proto::lifecycle::BootKind;

/// How this guest kernel was entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuestKind {
    /// QEMU started the kernel: a cold boot, or the boot after a machine reset.
    Firmware,
    /// The previous kernel kexec'd into this one.
    Kexec,
    /// The crash kernel, entered by a panic of the previous one.
    Crash,
}

/// One boot of the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GuestBoot {
    /// 1 for QEMU's own boots; one more per kexec or kdump.
    pub number: u32,
    pub kind: GuestKind,
}

impl GuestBoot {
    /// The supervisor's kind of boot. QEMU's boots are cold to the guest: only the host
    /// knows whether a machine reset came before (it resets the secure world then).
    pub fn boot_kind(&self) -> BootKind {
        match self.kind {
            GuestKind::Firmware => BootKind::Cold,
            GuestKind::Kexec => BootKind::Kexec,
            GuestKind::Crash => BootKind::CrashKernel,
        }
    }

    /// The crash flag: teed must decline before any SMC.
    pub fn crash_flag(&self) -> bool {
        self.kind == GuestKind::Crash
    }
}

/// The value of `key=` in a command line (the last one wins, as the kernel's own parsing).
pub fn param<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_whitespace()
        .rev()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
}

/// This boot, from `/proc/cmdline` and whether `/proc/vmcore` exists.
pub fn parse(cmdline: &str, vmcore: bool) -> GuestBoot {
    let number = param(cmdline, "teesys.boot")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let kind = if vmcore {
        GuestKind::Crash
    } else if param(cmdline, "teesys.kind") == Some("kexec") {
        GuestKind::Kexec
    } else {
        GuestKind::Firmware
    };
    GuestBoot { number, kind }
}

/// Parameters the init owns; every other word is carried from one kernel to the next.
const OWN_KEYS: [&str; 5] = [
    "teesys.boot",
    "teesys.kind",
    "teesys.crashkernel",
    "crashkernel",
    "maxcpus",
];

fn carried(cmdline: &str) -> Vec<&str> {
    cmdline
        .split_whitespace()
        .filter(|word| {
            let key = word.split('=').next().unwrap_or(word);
            !OWN_KEYS.contains(&key) && *word != "reset_devices"
        })
        .collect()
}

/// The `crashkernel=` value in force: this command line's, or the one a crash kernel carries.
pub fn crashkernel(cmdline: &str) -> Option<&str> {
    param(cmdline, "crashkernel").or_else(|| param(cmdline, "teesys.crashkernel"))
}

/// Why a next command line cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmdlineError {
    #[error("the command line has no crashkernel= (nor teesys.crashkernel=): the next kernel could not load a crash kernel")]
    NoCrashkernel,
}

/// The command line of the normal kernel this boot kexecs into: everything carried, the
/// `crashkernel=` in force, the next boot's number.
pub fn next_normal(cmdline: &str, this: GuestBoot) -> Result<String, CmdlineError> {
    let reserve = crashkernel(cmdline).ok_or(CmdlineError::NoCrashkernel)?;
    let mut words = carried(cmdline);
    let crash = format!("crashkernel={reserve}");
    let number = format!("teesys.boot={}", this.number.saturating_add(1));
    words.extend([crash.as_str(), "teesys.kind=kexec", number.as_str()]);
    Ok(words.join(" "))
}

/// The command line of the crash kernel this boot loads with `kexec -p`: no reservation of its
/// own (the value kept for the boot after it), one CPU, devices reset.
pub fn next_crash(cmdline: &str, this: GuestBoot) -> Result<String, CmdlineError> {
    let reserve = crashkernel(cmdline).ok_or(CmdlineError::NoCrashkernel)?;
    let mut words = carried(cmdline);
    let kept = format!("teesys.crashkernel={reserve}");
    let number = format!("teesys.boot={}", this.number.saturating_add(1));
    words.extend([
        kept.as_str(),
        "maxcpus=1",
        "reset_devices",
        "teesys.kind=crash",
        number.as_str(),
    ]);
    Ok(words.join(" "))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const QEMU: &str = "console=ttyAMA0 mem=1920M crashkernel=512M retain_initrd teesys.carveout=0xb8000000,0x8000000";

    #[test]
    fn qemus_own_boot_is_number_one_and_cold() {
        let boot = parse(QEMU, false);
        assert_eq!(
            boot,
            GuestBoot {
                number: 1,
                kind: GuestKind::Firmware
            }
        );
        assert_eq!(boot.boot_kind(), BootKind::Cold);
        assert!(!boot.crash_flag());
    }

    /// adf752af454e: the crash kernel is known by /proc/vmcore, whatever its command line says.
    #[test]
    fn adf752af454e_vmcore_alone_makes_the_crash_flag() {
        let boot = parse("teesys.kind=kexec teesys.boot=4", true);
        assert_eq!(boot.kind, GuestKind::Crash);
        assert_eq!(boot.number, 4);
        assert!(boot.crash_flag());
        assert_eq!(boot.boot_kind(), BootKind::CrashKernel);
    }

    /// kernel/crash_reserve.c reserves only what `crashkernel=` asks for, so every normal
    /// kexec carries it, or `kexec -p` finds nothing reserved.
    #[test]
    fn every_normal_kexec_keeps_crashkernel_and_counts_up() {
        let first = parse(QEMU, false);
        let second = next_normal(QEMU, first).unwrap();
        assert_eq!(crashkernel(&second), Some("512M"));
        assert_eq!(param(&second, "mem"), Some("1920M"));
        let second_boot = parse(&second, false);
        assert_eq!(
            second_boot,
            GuestBoot {
                number: 2,
                kind: GuestKind::Kexec
            }
        );
        // Kexec after kexec: no parameter piles up.
        let third = next_normal(&second, second_boot).unwrap();
        assert_eq!(third.matches("crashkernel=").count(), 1);
        assert_eq!(third.matches("teesys.boot=").count(), 1);
        assert_eq!(parse(&third, false).number, 3);
    }

    /// kernel/crash_reserve.c: the crash kernel must not reserve out of its own region; the
    /// value comes back for the normal boot it kexecs into.
    #[test]
    fn the_crash_kernel_reserves_nothing_and_hands_the_reserve_back() {
        let first = parse(QEMU, false);
        let crash = next_crash(QEMU, first).unwrap();
        assert_eq!(param(&crash, "crashkernel"), None);
        assert_eq!(param(&crash, "teesys.crashkernel"), Some("512M"));
        assert!(crash.split_whitespace().any(|w| w == "reset_devices"));
        let crash_boot = parse(&crash, true);
        let back = next_normal(&crash, crash_boot).unwrap();
        assert_eq!(param(&back, "crashkernel"), Some("512M"));
        assert_eq!(param(&back, "teesys.crashkernel"), None);
        assert!(!back.contains("reset_devices"));
        assert_eq!(param(&back, "maxcpus"), None);
        assert_eq!(parse(&back, false).kind, GuestKind::Kexec);
    }

    #[test]
    fn a_command_line_without_a_reserve_is_refused() {
        let boot = parse("console=ttyAMA0", false);
        assert_eq!(
            next_normal("console=ttyAMA0", boot),
            Err(CmdlineError::NoCrashkernel)
        );
        assert_eq!(
            next_crash("console=ttyAMA0", boot),
            Err(CmdlineError::NoCrashkernel)
        );
    }
}
