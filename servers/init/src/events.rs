//! What servers tell init, and what init learns when they die.

use tee_proto::lifecycle::{ServerEvent, ServerKind};
use tee_proto::{Frame, Generation};

use crate::effect::Notice;
use crate::restart::RestartDecision;
use crate::shutdown::ShutdownResult;
use crate::supervisor::{Awaited, Supervisor};
use crate::view::{Phase, SupervisedState};

impl Supervisor {
    /// A lifecycle frame from `from`. Frames from an earlier incarnation, or that answer nothing
    /// init is waiting for, are dropped.
    pub fn handle_event(&mut self, now: u64, from: ServerKind, frame: Frame<ServerEvent>) {
        let slot = self.slot(from);
        if !slot.alive || frame.header.from_generation != slot.generation {
            tracing::debug!(
                ?from,
                sender = frame.header.from_generation,
                current = slot.generation,
                "frame from a stale incarnation dropped"
            );
            return;
        }
        let Some(awaiting) = slot
            .awaiting
            .filter(|awaiting| awaiting.request_id == frame.header.request_id)
        else {
            tracing::debug!(
                ?from,
                request_id = frame.header.request_id,
                "unsolicited frame dropped"
            );
            return;
        };
        let generation = slot.generation;
        match (awaiting.what, frame.body) {
            (Awaited::Hello, ServerEvent::Ready { generation: ready }) if ready == generation => {
                tracing::info!(?from, generation, "ready");
                let slot = self.slot_mut(from);
                slot.awaiting = None;
                slot.state = SupervisedState::Ready;
                slot.reached_ready = true;
                slot.tracker.record_ready();
            }
            (Awaited::Hello, ServerEvent::Declined { reason }) => {
                tracing::warn!(?from, generation, ?reason, "declined; held");
                let slot = self.slot_mut(from);
                slot.awaiting = None;
                slot.state = SupervisedState::Held(reason);
                self.notice(Notice::Declined {
                    server: from,
                    generation,
                    reason,
                });
            }
            (Awaited::Hello, ServerEvent::Error(error)) => {
                tracing::warn!(?from, generation, %error, "start refused");
                self.notice(Notice::StartRefused {
                    server: from,
                    generation,
                    error,
                });
                self.fail_start(now, from);
            }
            (Awaited::Shutdown, ServerEvent::ShutdownAck(report)) => {
                tracing::info!(?from, generation, ?report, "shutdown acked");
                self.shutdown_answered(now, from, ShutdownResult::Acked { at: now, report });
            }
            (Awaited::Shutdown, ServerEvent::Error(error)) => {
                tracing::warn!(?from, generation, %error, "shutdown refused");
                self.notice(Notice::ShutdownRefused {
                    server: from,
                    generation,
                    error,
                });
                self.shutdown_answered(now, from, ShutdownResult::Refused { at: now, error });
            }
            (what, body) => {
                tracing::debug!(
                    ?from,
                    ?what,
                    ?body,
                    "answer does not fit the request; dropped"
                );
            }
        }
        self.progress_boot(now);
    }

    /// The current incarnation of `server` died or closed its endpoint.
    pub fn server_exited(&mut self, now: u64, server: ServerKind) {
        let phase = self.phase;
        let slot = self.slot_mut(server);
        if !slot.alive {
            tracing::debug!(?server, "exit of a server init does not consider running");
            return;
        }
        slot.alive = false;
        slot.awaiting = None;
        let generation = slot.generation;
        match (phase, slot.state) {
            (Phase::ShuttingDown, SupervisedState::Held(_)) => {}
            (Phase::ShuttingDown, _) => {
                slot.state = SupervisedState::Stopped;
                let was_expected = self
                    .shutdown
                    .as_mut()
                    .is_some_and(|seq| seq.record(server, ShutdownResult::Exited { at: now }));
                if was_expected {
                    tracing::warn!(?server, generation, "exited during shutdown; not restarted");
                    self.notice(Notice::ExitedDuringShutdown { server, generation });
                }
                self.drive_shutdown(now);
            }
            (Phase::Booting | Phase::Running, SupervisedState::Held(_)) => {
                tracing::info!(?server, generation, "held server exited; stays held");
                self.notice(Notice::HeldServerExited { server, generation });
            }
            (Phase::Booting | Phase::Running, _) => self.incarnation_died(now, server),
            (Phase::Idle | Phase::Down(_), _) => {}
        }
        self.progress_boot(now);
    }

    /// Like [`Supervisor::server_exited`], for shells that know which incarnation exited: the
    /// exit of an earlier generation (e.g. one init stopped) is ignored.
    pub fn incarnation_exited(&mut self, now: u64, server: ServerKind, generation: Generation) {
        if self.slot(server).generation == generation {
            self.server_exited(now, server);
        }
    }

    /// The incarnation failed to start (deadline or refusal): kill it and treat it as a death.
    pub(crate) fn fail_start(&mut self, now: u64, kind: ServerKind) {
        self.stop(kind);
        self.incarnation_died(now, kind);
    }

    /// Schedules the next incarnation with backoff, or gives up on a crash loop.
    fn incarnation_died(&mut self, now: u64, kind: ServerKind) {
        let policy = self.config.restart;
        let slot = self.slot_mut(kind);
        slot.alive = false;
        slot.awaiting = None;
        let generation = slot.generation;
        match slot.tracker.record_death(now, slot.reached_ready, &policy) {
            RestartDecision::RestartAfter {
                delay_ms,
                deaths_in_window,
            } => {
                slot.state = SupervisedState::RestartPending {
                    at: now.saturating_add(delay_ms),
                };
                tracing::warn!(
                    ?kind,
                    generation,
                    delay_ms,
                    deaths_in_window,
                    "died; restart scheduled"
                );
                self.notice(Notice::RestartScheduled {
                    server: kind,
                    failed_generation: generation,
                    delay_ms,
                    deaths_in_window,
                });
            }
            RestartDecision::GiveUp {
                deaths_in_window,
                failed_starts,
            } => {
                slot.state = SupervisedState::GivenUp;
                tracing::error!(
                    ?kind,
                    generation,
                    deaths_in_window,
                    failed_starts,
                    "crash loop; given up"
                );
                self.notice(Notice::GaveUp {
                    server: kind,
                    generation,
                    deaths_in_window,
                    failed_starts,
                });
            }
        }
    }
}
