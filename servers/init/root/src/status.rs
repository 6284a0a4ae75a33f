//! The supervisor's picture in the control protocol's terms. Pure conversions, so the table
//! teectl prints is exactly the supervisor's state.

use tee_proto::control::{
    Holdings, ServerLine, ServerLineState, ShutdownLine, ShutdownSummary, ShutdownVerdict,
    StackPhase, StackStatus, TransitionKind,
};
use tee_proto::lifecycle::{ServerState, ServerStatus};
use tee_proto::secure::SecureStats;

use teesys_init::shutdown::{ServerShutdown, ShutdownOutcome, ShutdownResult, SkipReason};
use teesys_init::view::{Phase, SupervisedState, SupervisorView};
use teesys_init::Transition;

pub fn transition_kind(transition: Transition) -> TransitionKind {
    match transition {
        Transition::Kexec => TransitionKind::Kexec,
        Transition::Reset => TransitionKind::Reset,
        Transition::EnterCrashKernel => TransitionKind::EnterCrashKernel,
    }
}

pub fn stack_phase(phase: Phase) -> StackPhase {
    match phase {
        Phase::Idle => StackPhase::Idle,
        Phase::Booting => StackPhase::Booting,
        Phase::Running => StackPhase::Running,
        Phase::ShuttingDown => StackPhase::ShuttingDown,
        Phase::Down(transition) => StackPhase::Down(transition_kind(transition)),
    }
}

pub fn line_state(state: SupervisedState) -> ServerLineState {
    match state {
        SupervisedState::NotStarted => ServerLineState::NotStarted,
        SupervisedState::Starting { .. } => ServerLineState::Starting,
        SupervisedState::Ready => ServerLineState::Ready,
        SupervisedState::Held(reason) => ServerLineState::Held(reason),
        SupervisedState::RestartPending { .. } => ServerLineState::RestartPending,
        SupervisedState::GivenUp => ServerLineState::GivenUp,
        SupervisedState::ShuttingDown => ServerLineState::ShuttingDown,
        SupervisedState::Quiesced => ServerLineState::Quiesced,
        SupervisedState::Stopped => ServerLineState::Stopped,
    }
}

pub fn holdings(status: &ServerStatus) -> Holdings {
    Holdings {
        sessions: status.sessions,
        registrations: status.registrations,
        registered_bytes: status.registered_bytes,
        tee_unavailable: status.state == ServerState::Unavailable,
    }
}

/// What the host knows beyond the supervisor: processes, answers to `Status`, the secure world.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostFacts {
    pub pids: [Option<u32>; 3],
    pub holds: [Option<Holdings>; 3],
    pub secure: Option<SecureStats>,
    pub uptime_ms: u64,
    pub conduit_inode: Option<u64>,
}

pub fn stack_status(view: &SupervisorView, facts: &HostFacts) -> StackStatus {
    let servers = std::array::from_fn(|index| {
        let server = &view.servers[index];
        ServerLine {
            kind: server.server,
            generation: server.generation,
            state: line_state(server.state),
            pid: facts.pids[index],
            restarts: server.restarts,
            operator_restarts: server.operator_restarts,
            holds: facts.holds[index],
        }
    });
    StackStatus {
        phase: stack_phase(view.phase),
        boot: view.boot,
        crash_flag: view.crash_flag,
        servers,
        secure: facts.secure,
        uptime_ms: facts.uptime_ms,
        conduit_inode: facts.conduit_inode,
    }
}

fn verdict(result: ShutdownResult) -> (ShutdownVerdict, Option<u64>) {
    match result {
        ShutdownResult::Pending | ShutdownResult::Awaiting => (ShutdownVerdict::Pending, None),
        ShutdownResult::Acked { at, report } => (ShutdownVerdict::Acked(report), Some(at)),
        ShutdownResult::Refused { at, error } => (ShutdownVerdict::Refused(error), Some(at)),
        ShutdownResult::Exited { at } => (ShutdownVerdict::Exited, Some(at)),
        ShutdownResult::DeadlineExpired { at } => (ShutdownVerdict::DeadlineExpired, Some(at)),
        ShutdownResult::Abandoned { at } => (ShutdownVerdict::Abandoned, Some(at)),
        ShutdownResult::Skipped(SkipReason::NotRunning) => {
            (ShutdownVerdict::SkippedNotRunning, None)
        }
        ShutdownResult::Skipped(SkipReason::Declined) => (ShutdownVerdict::SkippedDeclined, None),
        ShutdownResult::Skipped(SkipReason::NoShutdownIpc) => (ShutdownVerdict::SkippedNoIpc, None),
    }
}

fn shutdown_line(server: &ServerShutdown) -> ShutdownLine {
    let (verdict, answered_at) = verdict(server.result);
    let took_ms = match (server.sent_at, answered_at) {
        (Some(sent), Some(answered)) => Some(answered.saturating_sub(sent)),
        _ => None,
    };
    ShutdownLine {
        kind: server.server,
        verdict,
        took_ms,
    }
}

pub fn shutdown_summary(outcome: &ShutdownOutcome) -> ShutdownSummary {
    ShutdownSummary {
        reason: outcome.reason,
        transition: transition_kind(outcome.transition),
        ipc: outcome.ipc,
        escalated_to_crash: outcome.escalated_to_crash,
        took_ms: outcome
            .finished_at
            .map(|finished| finished.saturating_sub(outcome.started_at)),
        servers: outcome.servers.each_ref().map(shutdown_line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tee_proto::lifecycle::{DeclineReason, ServerKind, ShutdownReason, ShutdownReport};

    #[test]
    fn shutdown_lines_time_each_answer_from_its_request() {
        let report = ShutdownReport {
            unregistered: 1,
            sessions_closed: 1,
            cache_buffers_freed: 0,
            errors: 0,
        };
        let outcome = ShutdownOutcome {
            reason: ShutdownReason::Kexec,
            transition: Transition::Kexec,
            deadline_ms: 2_000,
            ipc: true,
            escalated_to_crash: false,
            started_at: 100,
            clients_started_at: Some(100),
            teed_started_at: Some(130),
            finished_at: Some(150),
            servers: [
                ServerShutdown {
                    server: ServerKind::Teed,
                    sent_at: Some(130),
                    result: ShutdownResult::Acked { at: 150, report },
                },
                ServerShutdown {
                    server: ServerKind::Tpmd,
                    sent_at: Some(100),
                    result: ShutdownResult::DeadlineExpired { at: 125 },
                },
                ServerShutdown {
                    server: ServerKind::Bnxtd,
                    sent_at: None,
                    result: ShutdownResult::Skipped(SkipReason::Declined),
                },
            ],
        };
        let summary = shutdown_summary(&outcome);
        assert_eq!(summary.took_ms, Some(50));
        assert_eq!(summary.servers[0].verdict, ShutdownVerdict::Acked(report));
        assert_eq!(summary.servers[0].took_ms, Some(20));
        assert_eq!(summary.servers[1].verdict, ShutdownVerdict::DeadlineExpired);
        assert_eq!(summary.servers[1].took_ms, Some(25));
        assert_eq!(summary.servers[2].verdict, ShutdownVerdict::SkippedDeclined);
        assert_eq!(summary.servers[2].took_ms, None);
        assert!(!summary.is_clean());
    }

    #[test]
    fn states_and_phases_keep_their_meaning() {
        assert_eq!(
            line_state(SupervisedState::Starting { deadline: 9 }),
            ServerLineState::Starting
        );
        assert_eq!(
            line_state(SupervisedState::Held(DeclineReason::CrashKernel)),
            ServerLineState::Held(DeclineReason::CrashKernel)
        );
        assert_eq!(
            stack_phase(Phase::Down(Transition::EnterCrashKernel)),
            StackPhase::Down(TransitionKind::EnterCrashKernel)
        );
    }
}
