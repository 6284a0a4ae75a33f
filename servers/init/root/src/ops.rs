//! Operator operations in flight: when each one has run its course. Pure checks on the
//! supervisor's view, so the completion rules are tested without processes.

use tee_proto::control::{OpKind, OpOutcome};
use tee_proto::Generation;

use teesys_init::view::{Phase, SupervisedState, SupervisorView};

/// How long an operation may take before it is reported as timed out. A kexec waits for two
/// shutdown steps and a boot; a restart for backoff and a start deadline.
pub fn op_deadline_ms(op: OpKind) -> u64 {
    match op {
        OpKind::Kexec | OpKind::Reboot | OpKind::Crash { .. } => 60_000,
        OpKind::Restart(_) | OpKind::Kill(_) => 30_000,
        OpKind::Down => 30_000,
    }
}

/// An operation and what the world looked like when it began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingOp {
    pub op: OpKind,
    pub started_at: u64,
    pub deadline: u64,
    /// The boot that was running when the operation began.
    pub boot_id_before: u64,
    /// For restart and kill: the generation that was running.
    pub generation_before: Generation,
}

impl PendingOp {
    pub fn new(op: OpKind, now: u64, view: &SupervisorView) -> Self {
        let generation_before = match op {
            OpKind::Restart(kind) | OpKind::Kill(kind) => view.server(kind).generation,
            _ => 0,
        };
        PendingOp {
            op,
            started_at: now,
            deadline: now.saturating_add(op_deadline_ms(op)),
            boot_id_before: view.boot.map_or(0, |boot| boot.boot_id),
            generation_before,
        }
    }

    /// `Some` once the operation is over; `down_finished` says the host tore the stack down.
    pub fn check(&self, now: u64, view: &SupervisorView, down_finished: bool) -> Option<OpOutcome> {
        let done = match self.op {
            OpKind::Kexec | OpKind::Reboot | OpKind::Crash { .. } => {
                view.phase == Phase::Running
                    && view
                        .boot
                        .is_some_and(|boot| boot.boot_id > self.boot_id_before)
            }
            OpKind::Restart(kind) | OpKind::Kill(kind) => {
                let server = view.server(kind);
                let settled = matches!(
                    server.state,
                    SupervisedState::Ready | SupervisedState::Held(_)
                );
                // A held server is never restarted: once its process is gone, that is all.
                let held_and_gone = matches!(server.state, SupervisedState::Held(_))
                    && !server.alive
                    && matches!(self.op, OpKind::Kill(_));
                server.state == SupervisedState::GivenUp
                    || held_and_gone
                    || (settled && server.generation > self.generation_before)
            }
            OpKind::Down => down_finished,
        };
        if done {
            Some(OpOutcome::Completed)
        } else if now >= self.deadline {
            Some(OpOutcome::TimedOut)
        } else {
            None
        }
    }

    /// Whether the operation runs a shutdown sequence whose record belongs in its report.
    pub fn has_shutdown(&self) -> bool {
        matches!(
            self.op,
            OpKind::Kexec | OpKind::Reboot | OpKind::Crash { .. } | OpKind::Down
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tee_proto::lifecycle::{BootInfo, BootKind, DeclineReason, ServerKind};
    use teesys_init::view::ServerView;

    fn view(phase: Phase, boot_id: u64, tpmd: (Generation, SupervisedState)) -> SupervisorView {
        let server = |kind, generation, state| ServerView {
            server: kind,
            generation,
            state,
            alive: generation != 0,
            restarts: 0,
            operator_restarts: 0,
        };
        SupervisorView {
            phase,
            boot: Some(BootInfo {
                boot_id,
                kind: BootKind::Kexec,
                crash_flag: false,
            }),
            crash_flag: false,
            servers: [
                server(ServerKind::Teed, 1, SupervisedState::Ready),
                server(ServerKind::Tpmd, tpmd.0, tpmd.1),
                server(ServerKind::Bnxtd, 1, SupervisedState::Ready),
            ],
            last_shutdown: None,
        }
    }

    #[test]
    fn kexec_is_done_only_once_the_next_boot_settled() {
        let before = view(Phase::Running, 4, (1, SupervisedState::Ready));
        let op = PendingOp::new(OpKind::Kexec, 1_000, &before);
        assert_eq!(op.check(1_001, &before, false), None);
        let booting = view(Phase::Booting, 5, (1, SupervisedState::Ready));
        assert_eq!(op.check(1_002, &booting, false), None);
        let running = view(Phase::Running, 5, (2, SupervisedState::Ready));
        assert_eq!(op.check(1_003, &running, false), Some(OpOutcome::Completed));
        assert_eq!(op.check(61_000, &booting, false), Some(OpOutcome::TimedOut));
    }

    #[test]
    fn kill_is_done_when_a_newer_generation_settled_or_was_given_up() {
        let before = view(Phase::Running, 1, (3, SupervisedState::Ready));
        let op = PendingOp::new(OpKind::Kill(ServerKind::Tpmd), 0, &before);
        assert_eq!(op.generation_before, 3);
        // Still the killed generation, or the next one starting: not yet.
        assert_eq!(op.check(1, &before, false), None);
        let pending = view(
            Phase::Running,
            1,
            (3, SupervisedState::RestartPending { at: 10 }),
        );
        assert_eq!(op.check(2, &pending, false), None);
        let starting = view(
            Phase::Running,
            1,
            (4, SupervisedState::Starting { deadline: 99 }),
        );
        assert_eq!(op.check(3, &starting, false), None);
        let ready = view(Phase::Running, 1, (4, SupervisedState::Ready));
        assert_eq!(op.check(4, &ready, false), Some(OpOutcome::Completed));
        let held = view(
            Phase::Running,
            1,
            (4, SupervisedState::Held(DeclineReason::CrashKernel)),
        );
        assert_eq!(op.check(4, &held, false), Some(OpOutcome::Completed));
        let given_up = view(Phase::Running, 1, (3, SupervisedState::GivenUp));
        assert_eq!(op.check(5, &given_up, false), Some(OpOutcome::Completed));
    }

    #[test]
    fn killing_a_held_server_is_done_once_its_process_is_gone() {
        let held = SupervisedState::Held(DeclineReason::CrashKernel);
        let before = view(Phase::Running, 1, (2, held));
        let op = PendingOp::new(OpKind::Kill(ServerKind::Tpmd), 0, &before);
        assert_eq!(op.check(1, &before, false), None);
        let mut gone = before.clone();
        gone.servers[1].alive = false;
        assert_eq!(op.check(2, &gone, false), Some(OpOutcome::Completed));
        // A restart of a held server waits for the new incarnation instead.
        let restart = PendingOp::new(OpKind::Restart(ServerKind::Tpmd), 0, &before);
        assert_eq!(restart.check(2, &gone, false), None);
    }

    #[test]
    fn down_waits_for_the_host() {
        let before = view(Phase::Running, 1, (1, SupervisedState::Ready));
        let op = PendingOp::new(OpKind::Down, 0, &before);
        assert!(op.has_shutdown());
        assert_eq!(op.check(1, &before, false), None);
        assert_eq!(op.check(2, &before, true), Some(OpOutcome::Completed));
    }
}
