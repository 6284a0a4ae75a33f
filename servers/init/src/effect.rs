//! What the supervisor asks its shell to do, and what it reports.

use tee_proto::lifecycle::{BootInfo, DeclineReason, InitRequest, ServerKind, ShutdownReason};
use tee_proto::{Frame, Generation, WireError};

use crate::view::Phase;
// Defined at the root, so view.rs and shutdown.rs need not import this file, which imports
// view.rs; re-exported to keep its path here.
pub use crate::Transition;

/// One action for the shell, drained from [`crate::Supervisor::poll`] in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Spawn a new incarnation of `server` numbered `generation` and connect it to init. A
    /// `Send` with its `Hello` follows at once; the shell queues it until the server is connected.
    Start {
        server: ServerKind,
        generation: Generation,
    },
    /// Kill the current incarnation of `server` (operator restart, failed start, or tearing the
    /// world down before a transition). Its exit is expected, so the shell does not report it
    /// through `server_exited` (or reports it with `incarnation_exited` and the old generation).
    Stop { server: ServerKind },
    /// Deliver a lifecycle frame to the current incarnation of `server`.
    Send {
        server: ServerKind,
        frame: Frame<InitRequest>,
    },
    /// The shutdown IPC is over (acked or past its deadline) and every server stopped: tear the
    /// normal world down, perform the transition, then call `boot` with the matching kind.
    Transition(Transition),
    /// Every server of this boot is ready, declined (held) or given up.
    Booted(BootSummary),
    /// Something worth a line in the report.
    Notice(Notice),
}

/// How a server's start ended for this boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    Ready,
    /// Held: never restarted this boot.
    Declined(DeclineReason),
    GivenUp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerSummary {
    pub server: ServerKind,
    pub generation: Generation,
    pub outcome: StartOutcome,
}

/// Carried by [`Effect::Booted`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootSummary {
    pub boot: BootInfo,
    pub started_at: u64,
    pub booted_at: u64,
    /// teed, tpmd, bnxtd.
    pub servers: [ServerSummary; 3],
}

/// The operator or scenario commands, named in [`Notice::RequestIgnored`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorRequest {
    Kexec,
    Reboot,
    Crash { best_effort_shutdown: bool },
    Restart(ServerKind),
}

/// Supervisor events for logs and scenario reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    BootStarted(BootInfo),
    /// The server refused to start; it is held for the rest of the boot.
    Declined {
        server: ServerKind,
        generation: Generation,
        reason: DeclineReason,
    },
    /// A held server's process exited; it stays held.
    HeldServerExited {
        server: ServerKind,
        generation: Generation,
    },
    /// No `Ready` or `Declined` before the start deadline; the incarnation is stopped.
    StartDeadlineExpired {
        server: ServerKind,
        generation: Generation,
    },
    /// The server answered `Hello` with an error; the incarnation is stopped.
    StartRefused {
        server: ServerKind,
        generation: Generation,
        error: WireError,
    },
    RestartScheduled {
        server: ServerKind,
        failed_generation: Generation,
        delay_ms: u64,
        deaths_in_window: u32,
    },
    /// Crash loop: the server is not restarted again this boot.
    GaveUp {
        server: ServerKind,
        generation: Generation,
        deaths_in_window: u32,
        failed_starts: u32,
    },
    OperatorRestart {
        server: ServerKind,
        old_generation: Generation,
        new_generation: Generation,
    },
    ShutdownStarted {
        reason: ShutdownReason,
        transition: Transition,
        deadline_ms: u64,
        /// False on a crash without best-effort shutdown IPC.
        ipc: bool,
    },
    /// The server did not acknowledge `Shutdown` in time; init proceeds without it.
    ShutdownDeadlineExpired {
        server: ServerKind,
        generation: Generation,
    },
    /// The server died during the shutdown sequence: counted as an ack with error, not restarted.
    ExitedDuringShutdown {
        server: ServerKind,
        generation: Generation,
    },
    /// The server answered `Shutdown` with an error: counted as an ack with error.
    ShutdownRefused {
        server: ServerKind,
        generation: Generation,
        error: WireError,
    },
    /// A crash interrupted an orderly shutdown; the transition became the crash kernel.
    CrashDuringShutdown {
        best_effort_shutdown: bool,
    },
    /// The command does not apply in this phase.
    RequestIgnored {
        request: OperatorRequest,
        phase: Phase,
    },
}
