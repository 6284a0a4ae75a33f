//! teectl ↔ init: the operator's control socket of the hosted stack.
//!
//! * teectl sends one [`ControlRequest`]; init answers with one [`ControlResponse`] carrying the
//!   same `request_id`. Frames travel length-prefixed over a stream socket (u32 little-endian
//!   length, then the postcard frame). One request at a time per connection.
//! * `Status` is answered at once with a [`StackStatus`]: init's supervisor view, what every live
//!   server says it holds, and what the secure world holds.
//! * The operations (`Kexec`, `Reboot`, `Crash`, `Restart`, `Kill`, `Down`) are answered with
//!   `Done(OpReport)` once they have run their course (the next boot settled, the server is
//!   back, the stack is down) or their deadline passed ([`OpOutcome::TimedOut`]). An operation
//!   init cannot start now (another one runs, wrong phase) is `Error(Busy)`.
//! * Everything is bounded: fixed per-server arrays in [`crate::lifecycle::ServerKind`] order
//!   (teed, tpmd, bnxtd), no strings, so `--json` output and reports are built from these types.

use serde::{Deserialize, Serialize};

use crate::error::WireError;
use crate::frame::Generation;
use crate::interface::Interface;
use crate::lifecycle::{BootInfo, DeclineReason, ServerKind, ShutdownReason, ShutdownReport};
use crate::secure::SecureStats;

/// teectl ↔ init, for generic serving and screening ([`crate::accept_request`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlInterface {}

impl Interface for ControlInterface {
    const NAME: &'static str = "control";
    type Request = ControlRequest;
    type Response = ControlResponse;

    fn server_restarted(generation: Generation) -> ControlResponse {
        ControlResponse::Error(WireError::ServerRestarted { generation })
    }

    fn bad_request() -> ControlResponse {
        ControlResponse::Error(WireError::BadRequest)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlRequest {
    Status,
    /// Orderly kexec: shutdown IPC, then the next boot (the secure world keeps its state).
    Kexec,
    /// Orderly reboot: shutdown IPC, machine reset of the secure world, then the next boot.
    Reboot,
    /// The normal world crashes into the crash kernel. `hard`: no shutdown IPC at all.
    Crash {
        hard: bool,
    },
    /// Operator restart of one server (stop, then a new generation at once).
    Restart(ServerKind),
    /// SIGKILL one server, as a fault would; init's restart policy brings it back.
    Kill(ServerKind),
    /// Orderly shutdown IPC, then every server stopped and init exits.
    Down,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
// No allocator in this crate: the report lives inside the enum; frames are built once per request.
#[allow(clippy::large_enum_variant)]
pub enum ControlResponse {
    Status(StackStatus),
    Done(OpReport),
    Error(WireError),
}

/// Which operation an [`OpReport`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpKind {
    Kexec,
    Reboot,
    Crash { hard: bool },
    Restart(ServerKind),
    Kill(ServerKind),
    Down,
}

/// How the normal world ended (the supervisor's transition).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransitionKind {
    Kexec,
    Reset,
    EnterCrashKernel,
}

/// Where init is in the life of a normal world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StackPhase {
    Idle,
    Booting,
    Running,
    ShuttingDown,
    Down(TransitionKind),
}

/// init's view of one server, without its deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerLineState {
    NotStarted,
    Starting,
    Ready,
    /// Declined this boot; never restarted until the next boot.
    Held(DeclineReason),
    RestartPending,
    /// Crash-looped; not restarted again this boot.
    GivenUp,
    ShuttingDown,
    Quiesced,
    Stopped,
}

/// What a live server says it holds in the secure world (its answer to `Status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holdings {
    pub sessions: u32,
    pub registrations: u32,
    pub registered_bytes: u64,
    /// The server reports the secure world out of its reach (teed's lost conduit).
    pub tee_unavailable: bool,
}

/// One line of the status table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerLine {
    pub kind: ServerKind,
    /// Of the newest incarnation; 0 before the first start.
    pub generation: Generation,
    pub state: ServerLineState,
    /// The process id while a process runs.
    pub pid: Option<u32>,
    /// Supervised restarts after deaths, this boot.
    pub restarts: u32,
    /// Operator restarts, this boot.
    pub operator_restarts: u32,
    /// `None` when the server did not answer `Status` (not running, or too slow).
    pub holds: Option<Holdings>,
}

/// The whole stack as init sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackStatus {
    pub phase: StackPhase,
    /// The running (or last) boot.
    pub boot: Option<BootInfo>,
    /// Whether the next boot would inherit the crash flag.
    pub crash_flag: bool,
    /// teed, tpmd, bnxtd.
    pub servers: [ServerLine; 3],
    /// `None` when the secure world's control socket did not answer.
    pub secure: Option<SecureStats>,
    /// Milliseconds since init started.
    pub uptime_ms: u64,
    /// Socket inode of the SMC conduit init connected for the current teed (init closed its
    /// own copy): isolation checks look for it in every process's descriptors.
    pub conduit_inode: Option<u64>,
}

impl StackStatus {
    /// The line of `kind`.
    pub fn server(&self, kind: ServerKind) -> &ServerLine {
        let index = match kind {
            ServerKind::Teed => 0,
            ServerKind::Tpmd => 1,
            ServerKind::Bnxtd => 2,
        };
        &self.servers[index]
    }
}

/// How one server's shutdown IPC ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShutdownVerdict {
    /// Acknowledged after releasing what the report says.
    Acked(ShutdownReport),
    /// Answered with an error.
    Refused(WireError),
    /// Died before acknowledging.
    Exited,
    DeadlineExpired,
    /// A hard crash cut the sequence short.
    Abandoned,
    /// Not asked: not running.
    SkippedNotRunning,
    /// Not asked: it declined this boot and holds nothing.
    SkippedDeclined,
    /// Not asked: a crash without shutdown IPC.
    SkippedNoIpc,
    /// Still open when the report was made.
    Pending,
}

/// One server's part in a shutdown sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShutdownLine {
    pub kind: ServerKind,
    pub verdict: ShutdownVerdict,
    /// From sending `Shutdown` to the answer (or the end of the wait).
    pub took_ms: Option<u64>,
}

/// The shutdown IPC of a kexec, reboot, crash or down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShutdownSummary {
    pub reason: ShutdownReason,
    pub transition: TransitionKind,
    /// False when a crash skipped the shutdown IPC.
    pub ipc: bool,
    /// A crash took over an orderly sequence.
    pub escalated_to_crash: bool,
    /// From the start of the sequence to the transition.
    pub took_ms: Option<u64>,
    /// teed, tpmd, bnxtd.
    pub servers: [ShutdownLine; 3],
}

impl ShutdownSummary {
    /// Every server that was asked acknowledged, and none reported a failed release.
    pub fn is_clean(&self) -> bool {
        self.servers.iter().all(|line| match line.verdict {
            ShutdownVerdict::Acked(report) => report.errors == 0,
            ShutdownVerdict::SkippedNotRunning
            | ShutdownVerdict::SkippedDeclined
            | ShutdownVerdict::SkippedNoIpc => true,
            ShutdownVerdict::Refused(_)
            | ShutdownVerdict::Exited
            | ShutdownVerdict::DeadlineExpired
            | ShutdownVerdict::Abandoned
            | ShutdownVerdict::Pending => false,
        })
    }
}

/// Whether the operation ran its course.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpOutcome {
    /// Done: the next boot settled, the server is back, or the stack is down.
    Completed,
    /// Its deadline passed first; `status` shows where the stack stands.
    TimedOut,
}

/// What an operation did and how long it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpReport {
    pub op: OpKind,
    pub outcome: OpOutcome,
    pub took_ms: u64,
    /// The shutdown sequence the operation ran, if any.
    pub shutdown: Option<ShutdownSummary>,
    /// What the secure world held once the old normal world was gone and before the next
    /// booted (operations with a transition only): zero after every orderly one.
    pub left_at_transition: Option<SecureStats>,
    /// The stack once the operation finished.
    pub after: StackStatus,
}
