//! Boot numbering and the crash flag.
//!
//! The crash flag tells the next normal world that its predecessor crashed, so teed must decline
//! (secure threads may be suspended for ever). It is raised by a crash and stays raised until a
//! world that can trust the secure world again: a kexec out of the crash kernel, a machine reset
//! or a cold boot.

use tee_proto::lifecycle::{BootInfo, BootKind};

#[derive(Debug, Clone, Default)]
pub(crate) struct BootLedger {
    current: Option<BootInfo>,
    crash_flag: bool,
    /// A crash was requested during the current boot (as opposed to the flag being inherited).
    crashed_this_boot: bool,
}

impl BootLedger {
    /// Raises the crash flag for the next boot.
    pub(crate) fn record_crash(&mut self) {
        self.crash_flag = true;
        self.crashed_this_boot = true;
    }

    /// The facts of a new boot of kind `kind`.
    pub(crate) fn begin(&mut self, kind: BootKind) -> BootInfo {
        let previous_was_crash_kernel =
            matches!(self.current, Some(boot) if boot.kind == BootKind::CrashKernel);
        self.crash_flag = match kind {
            BootKind::CrashKernel => true,
            BootKind::Cold | BootKind::Reset => false,
            // Leaving the crash kernel by kexec ends the crash, unless the crash kernel itself
            // crashed; any other kexec inherits the flag.
            BootKind::Kexec if previous_was_crash_kernel && !self.crashed_this_boot => false,
            BootKind::Kexec => self.crash_flag,
        };
        let boot_id = self.current.map_or(1, |boot| boot.boot_id.wrapping_add(1));
        let boot = BootInfo {
            boot_id,
            kind,
            crash_flag: self.crash_flag,
        };
        self.current = Some(boot);
        self.crashed_this_boot = false;
        boot
    }

    pub(crate) fn current(&self) -> Option<BootInfo> {
        self.current
    }

    /// What the next boot would inherit now.
    pub(crate) fn crash_flag(&self) -> bool {
        self.crash_flag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_ids_increase() {
        let mut ledger = BootLedger::default();
        assert_eq!(ledger.begin(BootKind::Cold).boot_id, 1);
        assert_eq!(ledger.begin(BootKind::Kexec).boot_id, 2);
        assert_eq!(ledger.begin(BootKind::Reset).boot_id, 3);
    }

    #[test]
    fn crash_flag_lives_from_crash_to_kexec_out_of_the_crash_kernel() {
        let mut ledger = BootLedger::default();
        assert!(!ledger.begin(BootKind::Cold).crash_flag);
        ledger.record_crash();
        assert!(ledger.crash_flag());
        assert!(ledger.begin(BootKind::CrashKernel).crash_flag);
        assert!(!ledger.begin(BootKind::Kexec).crash_flag);
        assert!(!ledger.crash_flag());
    }

    #[test]
    fn crash_inside_the_crash_kernel_keeps_the_flag_across_kexec() {
        let mut ledger = BootLedger::default();
        ledger.begin(BootKind::Cold);
        ledger.record_crash();
        ledger.begin(BootKind::CrashKernel);
        ledger.record_crash();
        assert!(ledger.begin(BootKind::Kexec).crash_flag);
    }

    #[test]
    fn plain_kexec_after_a_crash_keeps_the_flag_and_reset_clears_it() {
        let mut ledger = BootLedger::default();
        ledger.begin(BootKind::Cold);
        ledger.record_crash();
        assert!(ledger.begin(BootKind::Kexec).crash_flag);
        assert!(!ledger.begin(BootKind::Reset).crash_flag);
    }
}
