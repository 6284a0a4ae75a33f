//! The client's next step: from what it holds, what it owes and its phase, decide the next
//! request to teed. Every input ends here, so a restart or a failure needs no special path:
//! whatever is missing is acquired again, whatever is held at shutdown is released.

use optee_abi::mem::PhysMem;
use tee_proto::lifecycle::{DeclineReason, ServerEvent};
use tee_proto::teed::{Login, TeedRequest};
use tracing::{debug, info};

use super::link::Purpose;
use super::service::{Begin, ClientError, TaCall, TaService};
use super::{Active, Client, Phase};
use crate::config::Millis;

impl<S: TaService> Client<S> {
    /// Advances until the client waits on teed or has nothing to do.
    pub(super) fn drive(&mut self, now: Millis, mem: &mut dyn PhysMem) {
        while self.link.outstanding.is_none() {
            let more = match self.phase {
                Phase::Starting { .. } | Phase::Serving => self.drive_serving(now, mem),
                Phase::Declining { .. } => self.drive_declining(now),
                Phase::ShuttingDown(_) => self.drive_shutdown(now, mem),
                Phase::AwaitingHello | Phase::Unavailable | Phase::Declined | Phase::Stopped => {
                    false
                }
            };
            if !more {
                return;
            }
        }
    }

    /// Acquire the session and buffer if missing, report `Ready` once, then start the next job.
    /// Returns whether another step may follow at once.
    fn drive_serving(&mut self, now: Millis, mem: &mut dyn PhysMem) -> bool {
        if self.link.retry_at.is_some_and(|due| due > now) {
            return false;
        }
        let acquiring = self.link.session.is_none() || self.link.shm.is_none();
        if acquiring && self.link.teed_unreachable && matches!(self.phase, Phase::Serving) {
            // Nothing to acquire from until init links a successor (TeedEndpoint).
            return false;
        }
        let mut deadline = now.saturating_add(self.config.deadlines.teed_call_ms);
        if let Phase::Starting { give_up_at, .. } = self.phase {
            deadline = deadline.min(give_up_at);
        }
        let Some(session) = self.link.session else {
            let ta = *S::TA.as_bytes();
            let open = TeedRequest::OpenSession {
                ta,
                login: Login::Public,
            };
            let frame = self.link.tracked(open, Purpose::OpenSession, deadline);
            self.send_teed(frame);
            return false;
        };
        let Some(shm) = self.link.shm else {
            let alloc = TeedRequest::ShmAlloc { size: S::SHM_SIZE };
            let frame = self.link.tracked(alloc, Purpose::AllocShm, deadline);
            self.send_teed(frame);
            return false;
        };
        if let Phase::Starting { hello, .. } = self.phase {
            let generation = self.link.my_generation;
            info!(generation, "ready");
            self.phase = Phase::Serving;
            self.reply_init(hello, ServerEvent::Ready { generation });
        }
        let Some(queued) = self.queue.pop_front() else {
            return false;
        };
        match self.service.begin(&queued.job, mem, shm) {
            Begin::Done(response) => {
                self.reply_consumer(queued.consumer, queued.header, response);
                true
            }
            Begin::Call(TaCall { func, params }) => {
                let cancel_id = self.link.cancel_id();
                let invoke = TeedRequest::Invoke {
                    session,
                    func,
                    cancel_id,
                    params,
                };
                let call_deadline = now.saturating_add(self.config.deadlines.teed_call_ms);
                let frame = self.link.tracked(invoke, Purpose::Job, call_deadline);
                self.send_teed(frame);
                self.active = Some(Active {
                    consumer: Some(queued.consumer),
                    header: queued.header,
                    job: queued.job,
                    cancel_id,
                });
                false
            }
        }
    }

    /// Release a half-acquired start (a stale fTPM session would lock the TA), then decline.
    fn drive_declining(&mut self, now: Millis) -> bool {
        let deadline = now.saturating_add(self.config.deadlines.teed_call_ms);
        if let Some(shm) = self.link.shm {
            let frame = self.link.tracked(
                TeedRequest::ShmFree { shm: shm.id },
                Purpose::FreeShm,
                deadline,
            );
            self.send_teed(frame);
            return false;
        }
        if let Some(session) = self.link.session {
            let close = TeedRequest::CloseSession { session };
            let frame = self.link.tracked(close, Purpose::CloseSession, deadline);
            self.send_teed(frame);
            return false;
        }
        if let Phase::Declining { hello } = self.phase {
            let reason = DeclineReason::SecureWorldUnavailable;
            self.phase = Phase::Declined;
            self.reply_init(hello, ServerEvent::Declined { reason });
            self.fail_queue(ClientError::TeeUnavailable);
        }
        false
    }

    /// Linux order: the service's last call, free the buffer (teed unregisters it before it
    /// answers), close the session, and only then acknowledge.
    fn drive_shutdown(&mut self, now: Millis, mem: &mut dyn PhysMem) -> bool {
        let Phase::ShuttingDown(run) = &mut self.phase else {
            return false;
        };
        let deadline = run.deadline;
        if now >= deadline {
            // Out of time: whatever is still held counts as not released.
            let held = u32::from(self.link.session.is_some()) + u32::from(self.link.shm.is_some());
            run.report.errors += held;
            self.link.session = None;
            self.link.shm = None;
        }
        let step_deadline = now
            .saturating_add(self.config.deadlines.teed_call_ms)
            .min(deadline);
        if !run.pre_release_sent {
            run.pre_release_sent = true;
            let reason = run.reason;
            if let (Some(session), Some(shm)) = (self.link.session, self.link.shm) {
                if let Some(TaCall { func, params }) = self.service.before_release(reason, mem, shm)
                {
                    let cancel_id = self.link.cancel_id();
                    let invoke = TeedRequest::Invoke {
                        session,
                        func,
                        cancel_id,
                        params,
                    };
                    let frame = self
                        .link
                        .tracked(invoke, Purpose::PreRelease, step_deadline);
                    self.send_teed(frame);
                    return false;
                }
            }
        }
        if let Some(shm) = self.link.shm {
            let free = TeedRequest::ShmFree { shm: shm.id };
            let frame = self.link.tracked(free, Purpose::FreeShm, step_deadline);
            self.send_teed(frame);
            return false;
        }
        if let Some(session) = self.link.session {
            let close = TeedRequest::CloseSession { session };
            let frame = self
                .link
                .tracked(close, Purpose::CloseSession, step_deadline);
            self.send_teed(frame);
            return false;
        }
        let Phase::ShuttingDown(run) = core::mem::replace(&mut self.phase, Phase::Stopped) else {
            return false;
        };
        debug!(report = ?run.report, "released: acknowledging");
        for ack in run.acks {
            self.reply_init(ack, ServerEvent::ShutdownAck(run.report));
        }
        false
    }
}
