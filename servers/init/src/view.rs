//! The read-only picture of the supervisor returned by [`crate::Supervisor::snapshot`].

use tee_proto::lifecycle::{BootInfo, DeclineReason, ServerKind};
use tee_proto::Generation;

use crate::shutdown::ShutdownOutcome;
use crate::{server_index, Transition};

/// Where the supervisor is in the life of a normal world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No boot yet.
    Idle,
    /// Servers are starting; `Booted` not yet emitted.
    Booting,
    /// Every server settled; supervising.
    Running,
    /// The shutdown IPC of a kexec, reboot or crash is under way.
    ShuttingDown,
    /// The transition was handed to the shell; waiting for the next `boot`.
    Down(Transition),
}

/// init's view of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SupervisedState {
    /// Not started this boot (its turn has not come, or the boot ended first).
    NotStarted,
    /// Started; waiting for `Ready` or `Declined` until `deadline`.
    Starting {
        deadline: u64,
    },
    Ready,
    /// Declined this boot: never restarted, even if it exits.
    Held(DeclineReason),
    /// Died; the next incarnation starts at `at`.
    RestartPending {
        at: u64,
    },
    /// Crash-looped; not restarted again this boot.
    GivenUp,
    /// `Shutdown` sent; waiting for the ack.
    ShuttingDown,
    /// Acked `Shutdown`, or gave up on, during a shutdown sequence; still running.
    Quiesced,
    /// Stopped by init or exited during the shutdown sequence.
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerView {
    pub server: ServerKind,
    /// Of the newest incarnation; 0 before the first start.
    pub generation: Generation,
    pub state: SupervisedState,
    /// Whether init believes a process of this server runs.
    pub alive: bool,
    /// Supervised restarts after deaths, this boot.
    pub restarts: u32,
    /// Operator restarts, this boot.
    pub operator_restarts: u32,
}

impl ServerView {
    pub fn held(&self) -> bool {
        matches!(self.state, SupervisedState::Held(_))
    }

    pub fn given_up(&self) -> bool {
        self.state == SupervisedState::GivenUp
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorView {
    pub phase: Phase,
    /// The running (or last) boot.
    pub boot: Option<BootInfo>,
    /// Whether the next boot would inherit the crash flag.
    pub crash_flag: bool,
    /// teed, tpmd, bnxtd.
    pub servers: [ServerView; 3],
    /// The running or most recent shutdown sequence.
    pub last_shutdown: Option<ShutdownOutcome>,
}

impl SupervisorView {
    pub fn server(&self, server: ServerKind) -> &ServerView {
        &self.servers[server_index(server)]
    }
}
