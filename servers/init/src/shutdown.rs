//! The shutdown sequence: clients first (in parallel), then teed, each step bounded by a
//! deadline, and a record of what every server answered and when.
//!
//! The sequence only keeps the books; the supervisor sends the frames and stops the servers.

use tee_proto::lifecycle::{ServerKind, ShutdownReason, ShutdownReport};
use tee_proto::WireError;

use crate::{server_index, Transition, SERVERS};

/// Why a server was not asked to shut down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// No process: never started, dead, restart pending or given up.
    NotRunning,
    /// Declined this boot, so it holds nothing in the secure world.
    Declined,
    /// A crash without best-effort shutdown IPC.
    NoShutdownIpc,
}

/// What one server did during the sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownResult {
    /// Its step has not begun.
    Pending,
    /// `Shutdown` sent, no answer yet.
    Awaiting,
    Acked {
        at: u64,
        report: ShutdownReport,
    },
    /// Answered with an error (counts as an ack with error).
    Refused {
        at: u64,
        error: WireError,
    },
    /// Died before acking (counts as an ack with error).
    Exited {
        at: u64,
    },
    DeadlineExpired {
        at: u64,
    },
    /// A crash without best-effort IPC cut the sequence short.
    Abandoned {
        at: u64,
    },
    Skipped(SkipReason),
}

impl ShutdownResult {
    fn is_open(&self) -> bool {
        matches!(self, ShutdownResult::Pending | ShutdownResult::Awaiting)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerShutdown {
    pub server: ServerKind,
    /// When `Shutdown` was sent to it.
    pub sent_at: Option<u64>,
    pub result: ShutdownResult,
}

/// The record of one shutdown sequence, kept in the supervisor's snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownOutcome {
    pub reason: ShutdownReason,
    pub transition: Transition,
    /// Per-step deadline in force (the crash deadline once a crash took over).
    pub deadline_ms: u64,
    /// False when a crash skipped the shutdown IPC.
    pub ipc: bool,
    /// A crash interrupted this (orderly) sequence.
    pub escalated_to_crash: bool,
    pub started_at: u64,
    pub clients_started_at: Option<u64>,
    pub teed_started_at: Option<u64>,
    pub finished_at: Option<u64>,
    /// teed, tpmd, bnxtd.
    pub servers: [ServerShutdown; 3],
}

impl ShutdownOutcome {
    pub fn server(&self, server: ServerKind) -> &ServerShutdown {
        &self.servers[server_index(server)]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    NotBegun,
    Clients,
    Teed,
    Done,
}

impl Step {
    fn servers(self) -> &'static [ServerKind] {
        match self {
            Step::Clients => &[ServerKind::Tpmd, ServerKind::Bnxtd],
            Step::Teed => &[ServerKind::Teed],
            Step::NotBegun | Step::Done => &[],
        }
    }

    fn next(self) -> Step {
        match self {
            Step::NotBegun => Step::Clients,
            Step::Clients => Step::Teed,
            Step::Teed | Step::Done => Step::Done,
        }
    }
}

/// What the supervisor must do after [`ShutdownSequence::advance`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Advance {
    /// Answers are outstanding until the step deadline.
    Wait,
    /// Send `Shutdown` to these servers now.
    Send(Vec<ServerKind>),
    /// Stop every server and perform the transition.
    Finished,
}

#[derive(Debug, Clone)]
pub(crate) struct ShutdownSequence {
    outcome: ShutdownOutcome,
    step: Step,
    step_deadline: Option<u64>,
}

impl ShutdownSequence {
    /// `skip` says, per server, why it is not asked (None: ask it in its step).
    pub(crate) fn new(
        now: u64,
        reason: ShutdownReason,
        transition: Transition,
        deadline_ms: u64,
        ipc: bool,
        skip: impl Fn(ServerKind) -> Option<SkipReason>,
    ) -> Self {
        let servers = SERVERS.map(|server| {
            let result = if ipc {
                skip(server).map_or(ShutdownResult::Pending, ShutdownResult::Skipped)
            } else {
                ShutdownResult::Skipped(SkipReason::NoShutdownIpc)
            };
            ServerShutdown {
                server,
                sent_at: None,
                result,
            }
        });
        ShutdownSequence {
            outcome: ShutdownOutcome {
                reason,
                transition,
                deadline_ms,
                ipc,
                escalated_to_crash: false,
                started_at: now,
                clients_started_at: None,
                teed_started_at: None,
                finished_at: None,
                servers,
            },
            step: Step::NotBegun,
            step_deadline: None,
        }
    }

    pub(crate) fn outcome(&self) -> &ShutdownOutcome {
        &self.outcome
    }

    pub(crate) fn transition(&self) -> Transition {
        self.outcome.transition
    }

    /// When the current step gives up on missing acks.
    pub(crate) fn deadline(&self) -> Option<u64> {
        match self.step {
            Step::Clients | Step::Teed => self.step_deadline,
            Step::NotBegun | Step::Done => None,
        }
    }

    /// Records an answer (or death) of `server` if it was still expected; returns whether it was.
    pub(crate) fn record(&mut self, server: ServerKind, result: ShutdownResult) -> bool {
        let entry = &mut self.outcome.servers[server_index(server)];
        if !entry.result.is_open() {
            return false;
        }
        entry.result = result;
        true
    }

    /// Moves through every step that has nothing left to wait for.
    pub(crate) fn advance(&mut self, now: u64) -> Advance {
        loop {
            let step_open = self
                .step
                .servers()
                .iter()
                .any(|&server| self.outcome.server(server).result.is_open());
            if step_open {
                return Advance::Wait;
            }
            if self.step == Step::Done {
                return Advance::Finished;
            }
            self.step = self.step.next();
            match self.step {
                Step::Clients => self.outcome.clients_started_at = Some(now),
                Step::Teed => self.outcome.teed_started_at = Some(now),
                Step::Done => {
                    self.outcome.finished_at = Some(now);
                    return Advance::Finished;
                }
                Step::NotBegun => {}
            }
            let mut to_send = Vec::new();
            for &server in self.step.servers() {
                let entry = &mut self.outcome.servers[server_index(server)];
                if entry.result == ShutdownResult::Pending {
                    entry.result = ShutdownResult::Awaiting;
                    entry.sent_at = Some(now);
                    to_send.push(server);
                }
            }
            if !to_send.is_empty() {
                self.step_deadline = Some(now.saturating_add(self.outcome.deadline_ms));
                return Advance::Send(to_send);
            }
        }
    }

    /// The step deadline passed: every server still awaited is marked and returned.
    pub(crate) fn expire(&mut self, now: u64) -> Vec<ServerKind> {
        let mut expired = Vec::new();
        for &server in self.step.servers() {
            let entry = &mut self.outcome.servers[server_index(server)];
            if entry.result == ShutdownResult::Awaiting {
                entry.result = ShutdownResult::DeadlineExpired { at: now };
                expired.push(server);
            }
        }
        expired
    }

    /// A crash takes over: the transition becomes the crash kernel. With best effort the
    /// remaining steps run on the short deadline; without, nothing more is awaited.
    pub(crate) fn escalate_to_crash(
        &mut self,
        now: u64,
        best_effort: bool,
        crash_deadline_ms: u64,
    ) {
        self.outcome.transition = Transition::EnterCrashKernel;
        self.outcome.escalated_to_crash = true;
        self.outcome.deadline_ms = self.outcome.deadline_ms.min(crash_deadline_ms);
        if best_effort {
            let crash_deadline = now.saturating_add(crash_deadline_ms);
            self.step_deadline = Some(
                self.step_deadline
                    .map_or(crash_deadline, |current| current.min(crash_deadline)),
            );
            return;
        }
        for entry in &mut self.outcome.servers {
            if entry.result.is_open() {
                entry.result = ShutdownResult::Abandoned { at: now };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn report() -> ShutdownReport {
        ShutdownReport {
            unregistered: 1,
            sessions_closed: 1,
            cache_buffers_freed: 0,
            errors: 0,
        }
    }

    fn sequence(skip: Option<ServerKind>) -> ShutdownSequence {
        ShutdownSequence::new(
            100,
            ShutdownReason::Kexec,
            Transition::Kexec,
            50,
            true,
            move |server| (Some(server) == skip).then_some(SkipReason::NotRunning),
        )
    }

    #[test]
    fn clients_are_asked_before_teed_and_teed_only_after_both_answers() {
        let mut seq = sequence(None);
        assert_eq!(
            seq.advance(100),
            Advance::Send(vec![ServerKind::Tpmd, ServerKind::Bnxtd])
        );
        assert_eq!(seq.deadline(), Some(150));
        assert!(seq.record(
            ServerKind::Tpmd,
            ShutdownResult::Acked {
                at: 110,
                report: report()
            }
        ));
        assert_eq!(seq.advance(110), Advance::Wait);
        assert!(seq.record(ServerKind::Bnxtd, ShutdownResult::Exited { at: 120 }));
        assert_eq!(seq.advance(120), Advance::Send(vec![ServerKind::Teed]));
        assert_eq!(seq.deadline(), Some(170));
        assert!(seq.record(
            ServerKind::Teed,
            ShutdownResult::Acked {
                at: 130,
                report: report()
            }
        ));
        assert_eq!(seq.advance(130), Advance::Finished);
        let outcome = seq.outcome();
        assert_eq!(outcome.clients_started_at, Some(100));
        assert_eq!(outcome.teed_started_at, Some(120));
        assert_eq!(outcome.finished_at, Some(130));
    }

    #[test]
    fn skipped_clients_go_straight_to_teed() {
        let mut seq = ShutdownSequence::new(
            0,
            ShutdownReason::Reboot,
            Transition::Reset,
            50,
            true,
            |s| (s != ServerKind::Teed).then_some(SkipReason::Declined),
        );
        assert_eq!(seq.advance(0), Advance::Send(vec![ServerKind::Teed]));
    }

    #[test]
    fn expiry_marks_only_the_silent_servers_of_the_step() {
        let mut seq = sequence(Some(ServerKind::Bnxtd));
        assert_eq!(seq.advance(100), Advance::Send(vec![ServerKind::Tpmd]));
        assert_eq!(seq.expire(150), vec![ServerKind::Tpmd]);
        assert_eq!(
            seq.outcome().server(ServerKind::Teed).result,
            ShutdownResult::Pending
        );
        assert_eq!(seq.advance(150), Advance::Send(vec![ServerKind::Teed]));
        // A late ack after the deadline is not recorded over the expiry.
        assert!(!seq.record(
            ServerKind::Tpmd,
            ShutdownResult::Acked {
                at: 160,
                report: report()
            }
        ));
    }

    #[test]
    fn crash_without_best_effort_abandons_everything_open() {
        let mut seq = sequence(None);
        seq.advance(100);
        seq.escalate_to_crash(110, false, 20);
        assert_eq!(seq.transition(), Transition::EnterCrashKernel);
        assert_eq!(seq.advance(110), Advance::Finished);
        assert_eq!(
            seq.outcome().server(ServerKind::Teed).result,
            ShutdownResult::Abandoned { at: 110 }
        );
    }

    #[test]
    fn crash_with_best_effort_shortens_the_deadline() {
        let mut seq = sequence(None);
        seq.advance(100);
        seq.escalate_to_crash(110, true, 20);
        assert_eq!(seq.deadline(), Some(130));
        assert_eq!(seq.outcome().deadline_ms, 20);
    }
}
