//! The sans-IO supervisor core of init, the root task of teesys.
//!
//! init decides; its shell (the simulator or a hosted process manager) acts. The core owns:
//! * the boot order: teed first; tpmd and bnxtd only once teed answered `Hello` with `Ready` or
//!   `Declined` (or was given up);
//! * generations: every incarnation of a server gets the next number, carried in its `Hello`
//!   and in every frame init sends it;
//! * the boot facts ([`tee_proto::lifecycle::BootInfo`]) and the crash flag;
//! * the restart policy: a server that dies on its own is restarted with exponential backoff, and
//!   given up after too many deaths; a server that declined is held, never restarted;
//! * the shutdown IPC of kexec, reboot and crash: clients first, then teed, each step bounded by
//!   a deadline, then the transition.
//!
//! Shape (quinn-proto's): inputs through `boot`, `handle_event`, `server_exited`, the
//! `request_*` commands and `handle_timeout`, each with `now` in milliseconds; outputs drained
//! from [`Supervisor::poll`]; [`Supervisor::poll_timeout`] names the next deadline. The
//! supervisor never blocks on a child: every wait is a deadline.

mod boot;
mod commands;
pub mod config;
pub mod effect;
mod events;
mod restart;
pub mod shutdown;
mod supervisor;
pub mod view;

pub use config::{ConfigError, InitConfig, RestartPolicy};
pub use effect::{BootSummary, Effect, Notice, OperatorRequest, ServerSummary, StartOutcome};
pub use shutdown::{ServerShutdown, ShutdownOutcome, ShutdownResult, SkipReason};
pub use supervisor::Supervisor;
pub use view::{Phase, ServerView, SupervisedState, SupervisorView};

use tee_proto::lifecycle::ServerKind;
use tee_proto::Generation;

/// init's own generation in the frames it sends. init is never restarted within a boot.
pub const INIT_GENERATION: Generation = 1;

/// Every supervised server, in start order; also the order of per-server arrays.
pub const SERVERS: [ServerKind; 3] = [ServerKind::Teed, ServerKind::Tpmd, ServerKind::Bnxtd];

/// How the normal world ends, and so which kind the next boot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Load the next kernel; the secure world keeps its state. Next boot: `Kexec`.
    Kexec,
    /// Machine reset; the secure world restarts as well. Next boot: `Reset`.
    Reset,
    /// Enter the crash kernel with the crash flag raised. Next boot: `CrashKernel`.
    EnterCrashKernel,
}

/// Position of `server` in [`SERVERS`] and in every per-server array of this crate.
pub fn server_index(server: ServerKind) -> usize {
    match server {
        ServerKind::Teed => 0,
        ServerKind::Tpmd => 1,
        ServerKind::Bnxtd => 2,
    }
}
