//! Operator and scenario commands, and the shutdown sequence they start.

use tee_proto::lifecycle::{InitRequest, ServerKind, ShutdownReason};

use crate::effect::{Effect, Notice, OperatorRequest, Transition};
use crate::restart::RestartTracker;
use crate::shutdown::{Advance, ShutdownResult, ShutdownSequence, SkipReason};
use crate::supervisor::{Awaited, Supervisor};
use crate::view::{Phase, SupervisedState};
use crate::{server_index, SERVERS};

impl Supervisor {
    /// Orderly kexec: shutdown IPC (clients, then teed), then `Transition(Kexec)`.
    pub fn request_kexec(&mut self, now: u64) {
        self.begin_orderly(
            now,
            OperatorRequest::Kexec,
            ShutdownReason::Kexec,
            Transition::Kexec,
        );
    }

    /// Orderly reboot: shutdown IPC, then `Transition(Reset)`.
    pub fn request_reboot(&mut self, now: u64) {
        self.begin_orderly(
            now,
            OperatorRequest::Reboot,
            ShutdownReason::Reboot,
            Transition::Reset,
        );
    }

    /// The normal world crashed: raise the crash flag, optionally run the shutdown IPC on the
    /// short deadline, then `Transition(EnterCrashKernel)`. Takes over an orderly shutdown that
    /// is under way.
    pub fn request_crash(&mut self, now: u64, best_effort_shutdown: bool) {
        let request = OperatorRequest::Crash {
            best_effort_shutdown,
        };
        let crash_deadline_ms = self.config.crash_shutdown_deadline_ms;
        match self.phase {
            Phase::Booting | Phase::Running => {
                self.ledger.record_crash();
                self.start_shutdown(
                    now,
                    ShutdownReason::Crash,
                    Transition::EnterCrashKernel,
                    crash_deadline_ms,
                    best_effort_shutdown,
                );
            }
            Phase::ShuttingDown => {
                self.ledger.record_crash();
                if let Some(seq) = self.shutdown.as_mut() {
                    let already_crashing = seq.transition() == Transition::EnterCrashKernel;
                    if !(already_crashing && best_effort_shutdown) {
                        seq.escalate_to_crash(now, best_effort_shutdown, crash_deadline_ms);
                        self.notice(Notice::CrashDuringShutdown {
                            best_effort_shutdown,
                        });
                    }
                }
                self.drive_shutdown(now);
            }
            Phase::Idle | Phase::Down(_) => self.ignore(request),
        }
    }

    /// Operator restart: stop the incarnation (if running) and start the next one at once. Not
    /// counted as a crash; a given-up server gets a fresh restart budget.
    pub fn request_restart(&mut self, now: u64, server: ServerKind) {
        let request = OperatorRequest::Restart(server);
        if !matches!(self.phase, Phase::Booting | Phase::Running) {
            self.ignore(request);
            return;
        }
        let slot = self.slot(server);
        if slot.state == SupervisedState::NotStarted {
            // Its turn in the boot order has not come; starting it now would jump teed.
            self.ignore(request);
            return;
        }
        let old_generation = slot.generation;
        let given_up = slot.state == SupervisedState::GivenUp;
        self.stop(server);
        let slot = self.slot_mut(server);
        if given_up {
            slot.tracker = RestartTracker::default();
        }
        slot.operator_restarts += 1;
        self.start_incarnation(now, server);
        let new_generation = self.slot(server).generation;
        tracing::info!(?server, old_generation, new_generation, "operator restart");
        self.notice(Notice::OperatorRestart {
            server,
            old_generation,
            new_generation,
        });
        self.progress_boot(now);
    }

    fn begin_orderly(
        &mut self,
        now: u64,
        request: OperatorRequest,
        reason: ShutdownReason,
        transition: Transition,
    ) {
        if !matches!(self.phase, Phase::Booting | Phase::Running) {
            self.ignore(request);
            return;
        }
        let deadline_ms = self.config.shutdown_deadline_ms;
        self.start_shutdown(now, reason, transition, deadline_ms, true);
    }

    fn ignore(&mut self, request: OperatorRequest) {
        tracing::warn!(?request, phase = ?self.phase, "request ignored");
        self.notice(Notice::RequestIgnored {
            request,
            phase: self.phase,
        });
    }

    fn start_shutdown(
        &mut self,
        now: u64,
        reason: ShutdownReason,
        transition: Transition,
        deadline_ms: u64,
        ipc: bool,
    ) {
        tracing::info!(?reason, ?transition, deadline_ms, ipc, "shutdown");
        self.phase = Phase::ShuttingDown;
        for slot in &mut self.slots {
            // Late answers to Hello no longer matter, and nothing is restarted any more.
            slot.awaiting = None;
            if matches!(slot.state, SupervisedState::RestartPending { .. }) {
                slot.state = SupervisedState::Stopped;
            }
        }
        let skips = SERVERS.map(|kind| {
            let slot = self.slot(kind);
            match slot.state {
                SupervisedState::Held(_) => Some(SkipReason::Declined),
                _ if !slot.alive => Some(SkipReason::NotRunning),
                _ => None,
            }
        });
        self.shutdown = Some(ShutdownSequence::new(
            now,
            reason,
            transition,
            deadline_ms,
            ipc,
            |kind| skips[server_index(kind)],
        ));
        self.notice(Notice::ShutdownStarted {
            reason,
            transition,
            deadline_ms,
            ipc,
        });
        self.drive_shutdown(now);
    }

    /// An answer to `Shutdown` (or an error in its place) arrived.
    pub(crate) fn shutdown_answered(&mut self, now: u64, kind: ServerKind, result: ShutdownResult) {
        let slot = self.slot_mut(kind);
        slot.awaiting = None;
        slot.state = SupervisedState::Quiesced;
        if let Some(seq) = self.shutdown.as_mut() {
            seq.record(kind, result);
        }
        self.drive_shutdown(now);
    }

    /// The step deadline passed: proceed without the silent servers.
    pub(crate) fn expire_shutdown_step(&mut self, now: u64) {
        let Some(seq) = self.shutdown.as_mut() else {
            return;
        };
        if seq.deadline().is_none_or(|deadline| now < deadline) {
            return;
        }
        for kind in seq.expire(now) {
            let slot = self.slot_mut(kind);
            slot.awaiting = None;
            slot.state = SupervisedState::Quiesced;
            let generation = slot.generation;
            tracing::warn!(?kind, generation, "shutdown deadline expired");
            self.notice(Notice::ShutdownDeadlineExpired {
                server: kind,
                generation,
            });
        }
        self.drive_shutdown(now);
    }

    /// Sends the next step's `Shutdown`s, or finishes the sequence.
    pub(crate) fn drive_shutdown(&mut self, now: u64) {
        if self.phase != Phase::ShuttingDown {
            return;
        }
        let Some(seq) = self.shutdown.as_mut() else {
            return;
        };
        let reason = seq.outcome().reason;
        match seq.advance(now) {
            Advance::Wait => {}
            Advance::Send(servers) => {
                for kind in servers {
                    self.slot_mut(kind).state = SupervisedState::ShuttingDown;
                    self.send(kind, InitRequest::Shutdown { reason }, Awaited::Shutdown);
                }
            }
            Advance::Finished => {
                let transition = seq.transition();
                self.finish_shutdown(transition);
            }
        }
    }

    /// Stops every server still running and hands the transition to the shell.
    fn finish_shutdown(&mut self, transition: Transition) {
        for kind in SERVERS {
            let was_alive = self.slot(kind).alive;
            self.stop(kind);
            let slot = self.slot_mut(kind);
            if was_alive && !matches!(slot.state, SupervisedState::Held(_)) {
                slot.state = SupervisedState::Stopped;
            }
        }
        tracing::info!(?transition, "transition");
        self.phase = Phase::Down(transition);
        self.push(Effect::Transition(transition));
    }
}
