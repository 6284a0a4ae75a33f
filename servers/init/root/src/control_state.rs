//! What init keeps between turns: operations running their course, replies waiting for their
//! status, and a transition waiting on the secure world. Plain state, so the control server
//! and the transition (which extend the host) and the host itself can all hold it without
//! importing each other.

use tee_proto::control::{ControlRequest, Holdings, OpKind, OpOutcome, ShutdownSummary};
use tee_proto::lifecycle::BootKind;
use tee_proto::secure::SecureStats;
use tee_proto::Header;
use teesys_init::INIT_GENERATION;

use crate::control_conns::ConnId;
use crate::ops::PendingOp;

/// How long servers and the secure world get to answer for a report: what has not come by
/// then shows as unknown.
pub(crate) const STATUS_QUERY_MS: u64 = 500;

/// init's control requests speak for init itself, which has one generation.
pub(crate) const CONTROL_GENERATION: u32 = INIT_GENERATION;

/// An operation waiting to run its course.
#[derive(Debug)]
pub(crate) struct ActiveOp {
    pub pending: PendingOp,
    pub conn: ConnId,
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

/// The secure world's statistics for one reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecureQuery {
    /// Asked with this request id.
    Asked(u32),
    /// Answered, or `None` when it could not be (unreachable, refused, too late).
    Done(Option<SecureStats>),
}

/// Answers to `Status` the host is collecting for one reply.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StatusQuery {
    /// The request id sent to each server, `None` when none was sent.
    pub ids: [Option<u32>; 3],
    pub holds: [Option<Holdings>; 3],
    pub secure: SecureQuery,
    pub deadline: u64,
}

impl StatusQuery {
    pub fn complete(&self, now: u64) -> bool {
        now >= self.deadline
            || (matches!(self.secure, SecureQuery::Done(_))
                && self
                    .ids
                    .iter()
                    .zip(&self.holds)
                    .all(|(id, held)| id.is_none() || held.is_some()))
    }

    /// The secure world's statistics, if they came.
    pub fn secure_stats(&self) -> Option<SecureStats> {
        match self.secure {
            SecureQuery::Done(stats) => stats,
            SecureQuery::Asked(_) => None,
        }
    }
}

/// A reply waiting for its status.
#[derive(Debug)]
pub(crate) struct PendingReply {
    pub conn: ConnId,
    pub request: Header,
    pub body: ReplyBody,
    pub query: StatusQuery,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    LeftStats,
    Reset,
}

/// A transition waiting on the secure world.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Transit {
    /// The boot that follows; `None` when the stack goes down.
    pub next: Option<BootKind>,
    pub stage: Stage,
    /// The request the stage waits on, `None` when none could be sent.
    pub waiting: Option<u32>,
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
