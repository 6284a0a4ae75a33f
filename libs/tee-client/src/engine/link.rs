//! The client's side of its connection to teed: generations, request ids, the one request it
//! waits on, what it holds in the secure world, and the retry pause.

use alloc::collections::VecDeque;

use tee_proto::teed::{SessionId, TeedRequest};
use tee_proto::{Frame, Generation, Header};

use super::service::ShmBuffer;
use crate::config::Millis;

/// Timed-out acquisitions remembered so that a late success can still be released.
const LATE_MAX: usize = 8;

/// What a tracked request to teed is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    OpenSession,
    AllocShm,
    /// A consumer job's TA call.
    Job,
    /// The service's call before release at shutdown (tpmd's TPM2_Shutdown).
    PreRelease,
    FreeShm,
    CloseSession,
}

/// The one request the client waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Outstanding {
    pub request_id: u32,
    pub purpose: Purpose,
    pub deadline: Millis,
}

#[derive(Debug)]
pub(super) struct Link {
    pub my_generation: Generation,
    /// teed's generation as last heard of: from `Hello`, then from teed's replies.
    pub teed_generation: Generation,
    next_request_id: u32,
    next_cancel_id: u32,
    pub session: Option<SessionId>,
    pub shm: Option<ShmBuffer>,
    /// At most one tracked request at a time: start steps, jobs and releases are serial.
    pub outstanding: Option<Outstanding>,
    /// No acquisition before this instant (backoff after a failure).
    pub retry_at: Option<Millis>,
    /// The shell has no endpoint to teed: no acquisition is attempted (and no retry timer
    /// runs) until init links a successor. Without this a client of a teed that init gave up
    /// on would retry forever.
    pub teed_unreachable: bool,
    backoff_ms: Millis,
    late: VecDeque<(u32, Purpose)>,
}

impl Link {
    pub fn new() -> Link {
        Link {
            my_generation: 0,
            teed_generation: 0,
            next_request_id: 1,
            next_cancel_id: 1,
            session: None,
            shm: None,
            outstanding: None,
            retry_at: None,
            teed_unreachable: false,
            backoff_ms: 0,
            late: VecDeque::new(),
        }
    }

    fn frame(&mut self, body: TeedRequest) -> Frame<TeedRequest> {
        let request_id = self.next_request_id;
        self.next_request_id = self.next_request_id.wrapping_add(1);
        Frame {
            header: Header::new(self.my_generation, self.teed_generation, request_id),
            body,
        }
    }

    /// A fresh handle for a TA call that may have to be cancelled.
    pub fn cancel_id(&mut self) -> u32 {
        let id = self.next_cancel_id;
        self.next_cancel_id = self.next_cancel_id.wrapping_add(1);
        id
    }

    /// A request whose reply the client waits for, until `deadline`.
    pub fn tracked(
        &mut self,
        body: TeedRequest,
        purpose: Purpose,
        deadline: Millis,
    ) -> Frame<TeedRequest> {
        let frame = self.frame(body);
        self.outstanding = Some(Outstanding {
            request_id: frame.header.request_id,
            purpose,
            deadline,
        });
        frame
    }

    /// A request whose reply is not awaited (a cancel, a late release).
    pub fn untracked(&mut self, body: TeedRequest) -> Frame<TeedRequest> {
        self.frame(body)
    }

    /// The purpose of the awaited request if `request_id` answers it.
    pub fn take_reply(&mut self, request_id: u32) -> Option<Purpose> {
        let outstanding = self.outstanding.filter(|o| o.request_id == request_id)?;
        self.outstanding = None;
        Some(outstanding.purpose)
    }

    /// Moves the awaited request's deadline earlier, never later.
    pub fn shorten_deadline(&mut self, deadline: Millis) {
        if let Some(outstanding) = &mut self.outstanding {
            outstanding.deadline = outstanding.deadline.min(deadline);
        }
    }

    /// Remembers a timed-out acquisition so that its late success can be released.
    pub fn remember_late(&mut self, request_id: u32, purpose: Purpose) {
        if self.late.len() == LATE_MAX {
            self.late.pop_front();
        }
        self.late.push_back((request_id, purpose));
    }

    pub fn take_late(&mut self, request_id: u32) -> Option<Purpose> {
        let index = self.late.iter().position(|(id, _)| *id == request_id)?;
        self.late.remove(index).map(|(_, purpose)| purpose)
    }

    /// Schedules the next acquisition attempt after a failure and returns when it is due.
    pub fn back_off(&mut self, now: Millis, initial_ms: Millis, max_ms: Millis) -> Millis {
        self.backoff_ms = if self.backoff_ms == 0 {
            initial_ms
        } else {
            self.backoff_ms.saturating_mul(2).min(max_ms)
        };
        let due = now.saturating_add(self.backoff_ms);
        self.retry_at = Some(due);
        due
    }

    /// An acquisition succeeded: the next failure starts the backoff afresh.
    pub fn reset_backoff(&mut self) {
        self.backoff_ms = 0;
        self.retry_at = None;
    }

    /// teed is now `generation`. If that is news, its successor has reclaimed our session and
    /// buffer: forget them (returns true). Generations only grow within a boot, so a delayed
    /// notice of an earlier restart changes nothing.
    pub fn adopt_restart(&mut self, generation: Generation) -> bool {
        if generation <= self.teed_generation {
            return false;
        }
        self.teed_generation = generation;
        self.session = None;
        self.shm = None;
        self.reset_backoff();
        true
    }
}
