//! The hosted root task: a process manager around the [`teesys_init::Supervisor`] core.
//!
//! The supervisor decides; this shell carries out its effects with real processes:
//! * `Start` spawns the server binary with a fresh lifecycle endpoint; `Send` delivers the frame
//!   with the capabilities it implies (teed's `Hello` carries a new conduit to the secure world
//!   and the RAM file; a client's `Hello` its end of a new teed endpoint, the RAM file and its
//!   consumer listeners; teed gets the other end with `ClientEndpoint`, and after a teed restart
//!   every live client gets a new end with `TeedEndpoint`). init closes its copy of everything it
//!   hands out, except the RAM file and the listeners, which outlive every boot.
//! * `Stop` is SIGKILL and reap; `Transition` tears the normal world down and boots the next one
//!   (a reset first asks the secure world to reset over its control socket). The secure-world
//!   process is never started or stopped here: it outlives the normal world.
//! * Exits are found by reaping (`try_wait`) after the lifecycle endpoint hangs up or at the
//!   latest every poll interval, and reported per incarnation.
//! * teectl talks to init over `init.ctl` ([`tee_proto::control`]).
//!
//! Everything runs on one thread around `poll(2)`; nothing blocks on a peer: control frames
//! are read without blocking with one deadline per frame, and the secure world's statistics
//! and reset are asynchronous requests with deadlines.

mod caps;
mod control_conns;
mod control_screen;
mod control_server;
mod control_state;
mod event_loop;
#[doc(hidden)]
pub mod fuzzing;
mod ops;
pub mod paths;
pub mod procs;
mod secure_link;
mod shell;
pub mod status;
mod transit;
pub mod wire;

use std::io;
use std::path::PathBuf;

use tee_proto::lifecycle::{ClientWindows, RamWindow};
use tee_rt::endpoint::Endpoint;
use teesys_init::config::{
    ConfigError, InitConfig, BNXTD_WINDOW_LEN, JOURNAL_LEN, JOURNAL_RESERVE, RAM_BASE,
    TPMD_WINDOW_LEN,
};

pub use caps::{bind_fresh, CapsError};
pub use ops::{op_deadline_ms, PendingOp};
pub use paths::{StatePaths, DEFAULT_STATE_DIR};
pub use shell::Host;

/// Names of the server binaries, in [`teesys_init::SERVERS`] order.
pub const SERVER_BINARIES: [&str; 3] = ["teed", "tpmd", "bnxtd"];

/// Why the host could not run.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Caps(#[from] CapsError),
    #[error("server binary `{name}`: {source}")]
    Binary {
        name: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error(
        "RAM of {ram_size} bytes leaves no room beside the {JOURNAL_RESERVE}-byte journal reserve"
    )]
    RamTooSmall { ram_size: u64 },
    #[error("the secure world cannot be set up")]
    SecureWorld(#[source] tee_rt::secure_link::LinkError),
    #[error("poll failed: {0}")]
    Poll(io::Error),
    #[error("control socket unusable: {0}")]
    Control(io::Error),
}

/// How to run the hosted stack.
#[derive(Debug)]
pub struct HostConfig {
    pub paths: StatePaths,
    pub ram_size: u64,
    /// Bind the swtpm data and control sockets and hand them to tpmd after its native listener.
    pub swtpm: bool,
    /// Where the server binaries are; default: beside this executable.
    pub bin_dir: Option<PathBuf>,
    pub init: InitConfig,
    /// init's end of the secure world's control channel, handed down by the launcher.
    pub secure: Endpoint,
}

impl HostConfig {
    pub fn new(paths: StatePaths, ram_size: u64, secure: Endpoint) -> Result<Self, HostError> {
        Ok(HostConfig {
            paths,
            ram_size,
            swtpm: false,
            bin_dir: None,
            init: init_config_for(ram_size)?,
            secure,
        })
    }
}

/// The supervisor configuration for a RAM of `ram_size` bytes at the usual base: shm frames
/// everywhere but the top reserve, which holds teed's journal.
pub fn init_config_for(ram_size: u64) -> Result<InitConfig, HostError> {
    let shm_len = ram_size
        .checked_sub(JOURNAL_RESERVE + TPMD_WINDOW_LEN + BNXTD_WINDOW_LEN)
        .filter(|len| *len > 0)
        .ok_or(HostError::RamTooSmall { ram_size })?;
    // [ shm frames | tpmd's window | bnxtd's window | journal reserve ]
    let tpmd_base = RAM_BASE + shm_len;
    let bnxtd_base = tpmd_base + TPMD_WINDOW_LEN;
    let config = InitConfig {
        ram: RamWindow {
            base: RAM_BASE,
            len: shm_len,
        },
        windows: ClientWindows {
            tpmd: RamWindow {
                base: tpmd_base,
                len: TPMD_WINDOW_LEN,
            },
            bnxtd: RamWindow {
                base: bnxtd_base,
                len: BNXTD_WINDOW_LEN,
            },
        },
        journal: RamWindow {
            base: bnxtd_base + BNXTD_WINDOW_LEN,
            len: JOURNAL_LEN,
        },
        ..InitConfig::default()
    };
    config.validate()?;
    Ok(config)
}

/// Runs the stack until an operator `Down`.
pub fn run(config: HostConfig) -> Result<(), HostError> {
    Host::new(config)?.run()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ram_keeps_the_supervisor_defaults_beside_the_client_windows() {
        let config = init_config_for(8 << 30).unwrap_or_else(|e| panic!("{e}"));
        let defaults = InitConfig::default();
        assert_eq!(config.journal, defaults.journal);
        assert_eq!(config.ram.base, defaults.ram.base);
        assert_eq!(
            config.ram.len,
            defaults.ram.len - TPMD_WINDOW_LEN - BNXTD_WINDOW_LEN
        );
        assert_eq!(config.windows.tpmd.len, TPMD_WINDOW_LEN);
        assert_eq!(config.windows.bnxtd.len, BNXTD_WINDOW_LEN);
    }

    #[test]
    fn small_ram_keeps_the_journal_at_its_top() {
        let config = init_config_for(64 << 20).unwrap_or_else(|e| panic!("{e}"));
        // Frames, the two windows and the journal reserve tile RAM in that order.
        assert_eq!(config.ram.base + config.ram.len, config.windows.tpmd.base);
        assert_eq!(
            config.windows.tpmd.base + config.windows.tpmd.len,
            config.windows.bnxtd.base
        );
        assert_eq!(
            config.windows.bnxtd.base + config.windows.bnxtd.len,
            config.journal.base
        );
        assert_eq!(config.journal.base, RAM_BASE + (64 << 20) - JOURNAL_RESERVE);
        assert!(matches!(
            init_config_for(JOURNAL_RESERVE),
            Err(HostError::RamTooSmall { .. })
        ));
    }
}
