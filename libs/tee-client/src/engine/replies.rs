//! What the client does with teed's replies and with passed deadlines.

use optee_abi::mem::PhysMem;
use tee_proto::teed::{TeedRequest, TeedResponse};
use tee_proto::{Frame, WireError};
use tracing::{debug, info, warn};

use super::link::Purpose;
use super::service::{ClientError, ShmBuffer, TaReply, TaService};
use super::{Client, Phase};
use crate::config::Millis;

impl<S: TaService> Client<S> {
    pub(super) fn on_teed_reply(
        &mut self,
        now: Millis,
        mem: &mut dyn PhysMem,
        frame: Frame<TeedResponse>,
    ) {
        let Frame { header, body } = frame;
        if header.is_stale_for(self.link.my_generation) {
            debug!(
                request_id = header.request_id,
                "reply meant for a predecessor"
            );
            return;
        }
        // A restart is news whichever request carries it.
        if let TeedResponse::Error(WireError::ServerRestarted { generation }) = body {
            if self.link.adopt_restart(generation) {
                info!(teed_generation = generation, "teed restarted: re-opening");
                self.service.buffer_lost();
            }
        }
        let Some(purpose) = self.link.take_reply(header.request_id) else {
            self.release_late(header.request_id, &body);
            return;
        };
        // Track teed's generation from its replies, never backwards.
        self.link.teed_generation = self.link.teed_generation.max(header.from_generation);
        match purpose {
            Purpose::OpenSession => self.on_session_reply(now, body),
            Purpose::AllocShm => self.on_shm_reply(now, mem, body),
            Purpose::Job => self.on_job_reply(mem, body),
            Purpose::PreRelease => match body {
                TeedResponse::Invoked { ret, .. } => debug!(ret, "pre-release call done"),
                other => warn!(?other, "pre-release call failed"),
            },
            Purpose::FreeShm => {
                self.released(purpose, &body);
                self.link.shm = None;
            }
            Purpose::CloseSession => {
                self.released(purpose, &body);
                self.link.session = None;
            }
        }
    }

    fn on_session_reply(&mut self, now: Millis, body: TeedResponse) {
        match body {
            TeedResponse::SessionOpened { session } => {
                debug!(session, "session opened");
                self.link.session = Some(session);
                self.link.reset_backoff();
            }
            // Already adopted: the next drive re-opens with the new generation at once.
            TeedResponse::Error(WireError::ServerRestarted { .. }) => {}
            TeedResponse::Error(WireError::TeeUnavailable) => self.enter_unavailable(),
            other => {
                warn!(?other, "session open failed");
                self.acquire_failed(now);
            }
        }
    }

    fn on_shm_reply(&mut self, now: Millis, mem: &mut dyn PhysMem, body: TeedResponse) {
        match body {
            TeedResponse::ShmAllocated { shm, pa, size } => {
                if size >= S::SHM_SIZE && mem.contains(pa, u64::from(size)) {
                    debug!(shm, pa, size, "buffer registered");
                    self.link.shm = Some(ShmBuffer { id: shm, pa, size });
                    self.link.reset_backoff();
                    self.service.buffer_lost();
                } else {
                    warn!(shm, pa, size, "unusable buffer: returning it");
                    let frame = self.link.untracked(TeedRequest::ShmFree { shm });
                    self.send_teed(frame);
                    self.acquire_failed(now);
                }
            }
            TeedResponse::Error(WireError::ServerRestarted { .. }) => {}
            TeedResponse::Error(WireError::TeeUnavailable) => self.enter_unavailable(),
            other => {
                warn!(?other, "buffer allocation failed");
                self.acquire_failed(now);
            }
        }
    }

    fn on_job_reply(&mut self, mem: &mut dyn PhysMem, body: TeedResponse) {
        let Some(active) = self.active.take() else {
            return;
        };
        let response = match (body, self.link.shm) {
            (
                TeedResponse::Invoked {
                    ret,
                    origin,
                    params,
                },
                Some(shm),
            ) => {
                let reply = TaReply {
                    ret,
                    origin,
                    params: &params,
                };
                self.service.complete(&active.job, mem, shm, reply)
            }
            // The buffer went with a teed restart: whatever the TA wrote is not ours to read.
            (TeedResponse::Invoked { .. }, None) => self.service.fail(ClientError::Lost),
            (TeedResponse::Error(WireError::ServerRestarted { .. }), _) => {
                self.service.fail(ClientError::Lost)
            }
            (TeedResponse::Error(error), _) => self.service.fail(ClientError::Teed(error)),
            (other, _) => {
                warn!(?other, "unexpected reply to a TA call");
                self.service.fail(ClientError::UnexpectedReply)
            }
        };
        if let Some(consumer) = active.consumer {
            self.reply_consumer(consumer, active.header, response);
        }
    }

    /// Counts one release step of a shutdown. A restart is not an error: teed's successor
    /// reclaimed what the step would have released.
    fn released(&mut self, purpose: Purpose, body: &TeedResponse) {
        let Phase::ShuttingDown(run) = &mut self.phase else {
            return;
        };
        match (purpose, body) {
            (Purpose::FreeShm, TeedResponse::ShmFreed) => run.report.unregistered += 1,
            (Purpose::CloseSession, TeedResponse::SessionClosed) => run.report.sessions_closed += 1,
            (_, TeedResponse::Error(WireError::ServerRestarted { .. })) => {}
            (_, other) => {
                warn!(?purpose, ?other, "release failed");
                run.report.errors += 1;
            }
        }
    }

    /// A start step failed: pause, or decline once the start deadline would pass.
    pub(super) fn acquire_failed(&mut self, now: Millis) {
        let deadlines = self.config.deadlines;
        let due = self
            .link
            .back_off(now, deadlines.retry_initial_ms, deadlines.retry_max_ms);
        if let Phase::Starting { hello, give_up_at } = self.phase {
            if due >= give_up_at {
                warn!("start deadline passed: declining");
                self.link.retry_at = None;
                self.phase = Phase::Declining { hello };
            }
        }
    }

    /// A success that arrived after its deadline: release it, or it would leak (a stale fTPM
    /// session locks the single-session TA).
    fn release_late(&mut self, request_id: u32, body: &TeedResponse) {
        let release = match (self.link.take_late(request_id), body) {
            (Some(Purpose::OpenSession), TeedResponse::SessionOpened { session }) => {
                TeedRequest::CloseSession { session: *session }
            }
            (Some(Purpose::AllocShm), TeedResponse::ShmAllocated { shm, .. }) => {
                TeedRequest::ShmFree { shm: *shm }
            }
            _ => {
                debug!(request_id, "unawaited reply");
                return;
            }
        };
        info!(?release, "releasing a late acquisition");
        let frame = self.link.untracked(release);
        self.send_teed(frame);
    }

    pub(super) fn on_deadlines(&mut self, now: Millis) {
        if let Some(outstanding) = self.link.outstanding.filter(|o| o.deadline <= now) {
            self.link.outstanding = None;
            warn!(purpose = ?outstanding.purpose, "teed did not answer in time");
            match outstanding.purpose {
                Purpose::OpenSession | Purpose::AllocShm => {
                    self.link
                        .remember_late(outstanding.request_id, outstanding.purpose);
                    self.acquire_failed(now);
                }
                Purpose::Job => self.abandon_job(),
                Purpose::PreRelease => {}
                Purpose::FreeShm => {
                    self.count_release_error();
                    self.link.shm = None;
                }
                Purpose::CloseSession => {
                    self.count_release_error();
                    self.link.session = None;
                }
            }
        }
        if self.link.retry_at.is_some_and(|due| due <= now) {
            self.link.retry_at = None;
        }
        while let Some(index) = self.queue.iter().position(|q| q.expires_at <= now) {
            if let Some(queued) = self.queue.remove(index) {
                let response = self.service.fail(ClientError::Lost);
                self.reply_consumer(queued.consumer, queued.header, response);
            }
        }
    }

    /// The TA call of the active job got no answer in time: its consumer hears so, and the
    /// secure world is asked to cancel it.
    fn abandon_job(&mut self) {
        let Some(active) = self.active.take() else {
            return;
        };
        let cancel_id = active.cancel_id;
        let error = match self.phase {
            Phase::ShuttingDown(_) => ClientError::ShuttingDown,
            _ => ClientError::Lost,
        };
        self.answer_active(active, error);
        if let Some(session) = self.link.session {
            let frame = self
                .link
                .untracked(TeedRequest::Cancel { session, cancel_id });
            self.send_teed(frame);
        }
    }

    fn count_release_error(&mut self) {
        if let Phase::ShuttingDown(run) = &mut self.phase {
            run.report.errors += 1;
        }
    }
}
