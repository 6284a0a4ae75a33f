//! What the supervisor is told at start: RAM windows, deadlines and the restart policy.

use tee_proto::lifecycle::{ClientWindows, RamWindow};

/// Physical base of normal-world RAM (as on QEMU virt).
pub const RAM_BASE: u64 = 0x4000_0000;
/// Default normal-world RAM size.
pub const RAM_SIZE: u64 = 8 << 30;
/// The top of RAM set aside for teed's lifecycle journal; it is never handed out as shm frames.
pub const JOURNAL_RESERVE: u64 = 1 << 20;
/// Default size of the journal inside its reserve.
pub const JOURNAL_LEN: u64 = 128 << 10;
/// tpmd's window: its 8 KiB fTPM buffer (tpm_ftpm_tee's 4 KiB each way), with room for the
/// buffers a seed-bug release may still hold.
pub const TPMD_WINDOW_LEN: u64 = 64 << 10;
/// bnxtd's window: its 4 MiB buffer (tee_bnxt_fw's MAX_SHM_MEM_SZ), four times over.
pub const BNXTD_WINDOW_LEN: u64 = 16 << 20;

/// Restart policy for servers that die on their own (Hubris jefe's shape: restart with backoff,
/// give up on a crash loop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Delay before the first restart within a window.
    pub backoff_initial_ms: u64,
    /// The backoff doubles per death within the window up to this cap.
    pub backoff_max_ms: u64,
    /// A server that dies more often than this within `window_ms`, or fails this many starts in
    /// a row plus one, is given up for the rest of the boot.
    pub max_restarts: u32,
    /// The sliding window over which deaths are counted.
    pub window_ms: u64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            backoff_initial_ms: 10,
            backoff_max_ms: 1_000,
            max_restarts: 5,
            window_ms: 10_000,
        }
    }
}

/// Everything the supervisor needs to know; the shell builds it from its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitConfig {
    /// Frames teed may hand out as shared memory.
    pub ram: RamWindow,
    /// teed's lifecycle journal: survives kexec and crash entry.
    pub journal: RamWindow,
    /// Each client's window, where teed puts its buffers and the only RAM it maps; none by
    /// default (buffers come from `ram`), as in the simulator.
    pub windows: ClientWindows,
    /// How long a new incarnation may take to answer `Hello` with `Ready` or `Declined`.
    pub start_deadline_ms: u64,
    /// Per step (clients, then teed) of an orderly kexec or reboot.
    pub shutdown_deadline_ms: u64,
    /// Per step of the best-effort shutdown on the crash path.
    pub crash_shutdown_deadline_ms: u64,
    pub restart: RestartPolicy,
}

impl Default for InitConfig {
    fn default() -> Self {
        let journal_base = RAM_BASE + RAM_SIZE - JOURNAL_RESERVE;
        InitConfig {
            ram: RamWindow {
                base: RAM_BASE,
                len: RAM_SIZE - JOURNAL_RESERVE,
            },
            journal: RamWindow {
                base: journal_base,
                len: JOURNAL_LEN,
            },
            windows: ClientWindows::NONE,
            start_deadline_ms: 10_000,
            shutdown_deadline_ms: 2_000,
            crash_shutdown_deadline_ms: 200,
            restart: RestartPolicy::default(),
        }
    }
}

/// A configuration the shell should refuse before starting anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// teed would hand out journal frames as shared memory.
    #[error("journal window overlaps the shm RAM window")]
    JournalOverlapsRam,
    /// A client's window overlaps the shm frames, the journal or the other client's window.
    #[error("a client window overlaps shm RAM, the journal or another window")]
    WindowOverlap,
    /// A window whose end does not fit in 64 bits.
    #[error("RAM window wraps around the address space")]
    WindowOverflow,
    /// A zero deadline would expire before any server could answer.
    #[error("{which} deadline is zero")]
    ZeroDeadline { which: &'static str },
    /// The first backoff is larger than the cap.
    #[error("initial backoff {initial_ms} ms exceeds the cap {max_ms} ms")]
    BackoffAboveCap { initial_ms: u64, max_ms: u64 },
}

impl InitConfig {
    /// Checks what would make the supervisor misbehave (never panic) at run time.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if overlap(&self.ram, &self.journal)? {
            return Err(ConfigError::JournalOverlapsRam);
        }
        let windows = [self.windows.tpmd, self.windows.bnxtd];
        for window in &windows {
            if overlap(window, &self.ram)? || overlap(window, &self.journal)? {
                return Err(ConfigError::WindowOverlap);
            }
        }
        if overlap(&windows[0], &windows[1])? {
            return Err(ConfigError::WindowOverlap);
        }
        for (which, value) in [
            ("start", self.start_deadline_ms),
            ("shutdown", self.shutdown_deadline_ms),
            ("crash shutdown", self.crash_shutdown_deadline_ms),
        ] {
            if value == 0 {
                return Err(ConfigError::ZeroDeadline { which });
            }
        }
        if self.restart.backoff_initial_ms > self.restart.backoff_max_ms {
            return Err(ConfigError::BackoffAboveCap {
                initial_ms: self.restart.backoff_initial_ms,
                max_ms: self.restart.backoff_max_ms,
            });
        }
        Ok(())
    }
}

/// Whether two non-empty windows share an address.
fn overlap(a: &RamWindow, b: &RamWindow) -> Result<bool, ConfigError> {
    let (a_end, b_end) = (window_end(a)?, window_end(b)?);
    Ok(a.len != 0 && b.len != 0 && a.base < b_end && b.base < a_end)
}

fn window_end(window: &RamWindow) -> Result<u64, ConfigError> {
    window
        .base
        .checked_add(window.len)
        .ok_or(ConfigError::WindowOverflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid_and_keeps_journal_out_of_shm_ram() {
        let config = InitConfig::default();
        assert_eq!(config.validate(), Ok(()));
        assert!(!config.ram.contains(config.journal.base, 1));
        assert_eq!(config.journal.base, 0x4000_0000 + (8 << 30) - (1 << 20));
        assert_eq!(config.journal.len, 128 << 10);
    }

    #[test]
    fn overlapping_journal_is_refused() {
        let mut config = InitConfig::default();
        config.journal.base = config.ram.base + 4096;
        assert_eq!(config.validate(), Err(ConfigError::JournalOverlapsRam));
    }

    #[test]
    fn zero_deadline_and_inverted_backoff_are_refused() {
        let mut config = InitConfig {
            crash_shutdown_deadline_ms: 0,
            ..InitConfig::default()
        };
        assert_eq!(
            config.validate(),
            Err(ConfigError::ZeroDeadline {
                which: "crash shutdown"
            })
        );
        config.crash_shutdown_deadline_ms = 200;
        config.restart.backoff_initial_ms = 5_000;
        assert!(matches!(
            config.validate(),
            Err(ConfigError::BackoffAboveCap { .. })
        ));
    }

    #[test]
    fn client_windows_must_stand_apart() {
        let mut config = InitConfig::default();
        let top = config.ram.base + config.ram.len;
        config.ram.len -= 2 << 20;
        config.windows.tpmd = RamWindow {
            base: top - (2 << 20),
            len: 1 << 20,
        };
        config.windows.bnxtd = RamWindow {
            base: top - (1 << 20),
            len: 1 << 20,
        };
        assert_eq!(config.validate(), Ok(()));
        config.windows.bnxtd.base -= 4096;
        assert_eq!(config.validate(), Err(ConfigError::WindowOverlap));
        config.windows.bnxtd.base = config.ram.base;
        assert_eq!(config.validate(), Err(ConfigError::WindowOverlap));
        config.windows.bnxtd.base = config.journal.base;
        assert_eq!(config.validate(), Err(ConfigError::WindowOverlap));
    }

    #[test]
    fn wrapping_window_is_refused() {
        let mut config = InitConfig::default();
        config.ram.base = u64::MAX - 10;
        assert_eq!(config.validate(), Err(ConfigError::WindowOverflow));
    }
}
