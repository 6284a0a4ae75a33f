//! What init keeps for `init.ctl` between turns: operations running their course and replies
//! waiting for their status. Plain state, so the control server (which extends the host) and
//! the host itself can both hold it without importing each other.

use std::os::unix::net::UnixStream;
use std::time::Duration;

use tee_proto::control::{ControlRequest, Holdings, OpKind, OpOutcome, ShutdownSummary};
use tee_proto::secure::SecureStats;
use tee_proto::Header;
use teesys_init::INIT_GENERATION;

use crate::ops::PendingOp;

/// How long a peer may take to deliver a frame it started, or to take our answer.
pub(crate) const CONTROL_IO_TIMEOUT: Duration = Duration::from_secs(2);

/// How long servers get to answer `Status` for a report.
pub(crate) const STATUS_QUERY_MS: u64 = 500;

/// init's control requests speak for init itself, which has one generation.
pub(crate) const CONTROL_GENERATION: u32 = INIT_GENERATION;

/// An operation waiting to run its course.
#[derive(Debug)]
pub(crate) struct ActiveOp {
    pub pending: PendingOp,
    pub conn: UnixStream,
    pub request: Header,
}

#[derive(Debug, Clone)]
pub(crate) enum ReplyBody {
    Status,
    Op {
        op: OpKind,
        outcome: OpOutcome,
        took_ms: u64,
        left: Option<Box<SecureStats>>,
        shutdown: Option<ShutdownSummary>,
    },
}

/// Answers to `Status` the host is collecting for one reply.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StatusQuery {
    /// The request id sent to each server, `None` when none was sent.
    pub ids: [Option<u32>; 3],
    pub holds: [Option<Holdings>; 3],
    pub deadline: u64,
}

impl StatusQuery {
    pub fn complete(&self, now: u64) -> bool {
        now >= self.deadline
            || self
                .ids
                .iter()
                .zip(&self.holds)
                .all(|(id, held)| id.is_none() || held.is_some())
    }
}

/// A reply waiting for its status.
#[derive(Debug)]
pub(crate) struct PendingReply {
    pub conn: UnixStream,
    pub request: Header,
    pub body: ReplyBody,
    pub query: StatusQuery,
}

pub(crate) fn op_kind(request: ControlRequest) -> Option<OpKind> {
    Some(match request {
        ControlRequest::Status => return None,
        ControlRequest::Kexec => OpKind::Kexec,
        ControlRequest::Reboot => OpKind::Reboot,
        ControlRequest::Crash { hard } => OpKind::Crash { hard },
        ControlRequest::Restart(kind) => OpKind::Restart(kind),
        ControlRequest::Kill(kind) => OpKind::Kill(kind),
        ControlRequest::Down => OpKind::Down,
    })
}
