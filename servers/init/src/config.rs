//! What the supervisor is told at start: RAM windows, deadlines and the restart policy.

use tee_proto::lifecycle::RamWindow;

/// Physical base of normal-world RAM (as on QEMU virt).
pub const RAM_BASE: u64 = 0x4000_0000;
/// Default normal-world RAM size.
pub const RAM_SIZE: u64 = 8 << 30;
/// The top of RAM set aside for teed's lifecycle journal; it is never handed out as shm frames.
pub const JOURNAL_RESERVE: u64 = 1 << 20;
/// Default size of the journal inside its reserve.
pub const JOURNAL_LEN: u64 = 128 << 10;

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
        let ram_end = window_end(&self.ram)?;
        let journal_end = window_end(&self.journal)?;
        let disjoint = ram_end <= self.journal.base || journal_end <= self.ram.base;
        if self.journal.len != 0 && self.ram.len != 0 && !disjoint {
            return Err(ConfigError::JournalOverlapsRam);
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
    fn wrapping_window_is_refused() {
        let mut config = InitConfig::default();
        config.ram.base = u64::MAX - 10;
        assert_eq!(config.validate(), Err(ConfigError::WindowOverflow));
    }
}
