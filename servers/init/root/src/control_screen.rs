//! What init lets a control client ask, decided without the host: a whole frame is screened
//! ([`screen`]: dropped, answered at once, or a request), and an operation is admitted only
//! when the stack is in a state to run it ([`admit`]). The control server acts on the verdicts;
//! the `init_control` fuzz target ([`crate::fuzzing`]) checks them on hostile bytes.

use tee_proto::control::{ControlInterface, ControlRequest, ControlResponse, OpKind};
use tee_proto::{accept_request, Frame, Header, Incoming, ProtoError, WireError};
use teesys_init::server_index;

use crate::control_state::{op_kind, CONTROL_GENERATION};

/// What init does with one whole control frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screened {
    /// A request to serve: a status report (`op` is `None`) or an operation to admit.
    Request {
        header: Header,
        request: ControlRequest,
        op: Option<OpKind>,
    },
    /// Answered at once and nothing done: a frame for an earlier init, or a body that does not
    /// decode.
    Answer(Box<Frame<ControlResponse>>),
    /// Not even the header decodes: the connection is dropped unanswered.
    Drop(ProtoError),
}

/// Screens one whole control frame.
pub fn screen(bytes: &[u8]) -> Screened {
    match accept_request::<ControlInterface>(bytes, CONTROL_GENERATION) {
        Incoming::Request(frame) => Screened::Request {
            header: frame.header,
            request: frame.body,
            op: op_kind(frame.body),
        },
        Incoming::Answer(answer) => Screened::Answer(Box::new(answer)),
        Incoming::Drop(error) => Screened::Drop(error),
    }
}

/// What init knows when it decides whether an operation may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Admission {
    /// Another operation is running its course.
    pub op_running: bool,
    /// `Down` was asked: the stack is going away.
    pub down_requested: bool,
    /// The normal world is booting or running (not in a transition).
    pub world_up: bool,
    /// Per server ([`teesys_init::SERVERS`] order): started at least once.
    pub started: [bool; 3],
    /// Per server: a live process init could kill.
    pub process: [bool; 3],
}

/// Whether `op` may start now: one operation at a time, none once `Down` was asked, transitions
/// and restarts only while the normal world is up (a restart only of a server that started),
/// and a kill only of a live process.
pub fn admit(op: OpKind, now: &Admission) -> Result<(), WireError> {
    if now.op_running || now.down_requested {
        return Err(WireError::Busy);
    }
    match op {
        OpKind::Kexec | OpKind::Reboot | OpKind::Crash { .. } | OpKind::Down if !now.world_up => {
            Err(WireError::Busy)
        }
        OpKind::Restart(kind) if !now.world_up || !now.started[server_index(kind)] => {
            Err(WireError::Busy)
        }
        OpKind::Kill(kind) if !now.process[server_index(kind)] => Err(WireError::NotFound),
        _ => Ok(()),
    }
}
