//! Orderly kexec and reboot: shutdown IPC clients-before-teed, deadlines, exits.
#![allow(clippy::unwrap_used)]

mod common;

use common::{is_shutdown, is_stop, is_transition, Harness, OnShutdown, ACK_REPORT};
use tee_proto::lifecycle::{BootKind, InitRequest, ServerKind, ShutdownReason};
use tee_proto::WireError;
use teesys_init::{
    Effect, InitConfig, Notice, OperatorRequest, Phase, ShutdownResult, SkipReason,
    SupervisedState, Transition,
};

fn booted(config: InitConfig) -> Harness {
    let mut h = Harness::new(config);
    h.boot_and_settle(BootKind::Cold);
    h.advance_to(1_000);
    h
}

#[test]
fn kexec_shuts_clients_down_before_teed_and_transitions_only_after_every_ack() {
    let mut h = booted(InitConfig::default());
    h.behaviour(ServerKind::Tpmd).shutdown_latency = 30;
    h.behaviour(ServerKind::Bnxtd).shutdown_latency = 60;
    h.behaviour(ServerKind::Teed).shutdown_latency = 20;
    let mark = h.log.len();
    h.sup.request_kexec(1_000);
    assert_eq!(h.run_to_transition(), Transition::Kexec);

    let (tpmd_i, tpmd_at) = h.find_from(mark, is_shutdown(ServerKind::Tpmd)).unwrap();
    let (bnxtd_i, bnxtd_at) = h.find_from(mark, is_shutdown(ServerKind::Bnxtd)).unwrap();
    let (teed_i, teed_at) = h.find_from(mark, is_shutdown(ServerKind::Teed)).unwrap();
    let (transition_i, transition_at) = h.find_from(mark, is_transition).unwrap();
    // Both clients at once; teed only when the slower client acked.
    assert_eq!((tpmd_at, bnxtd_at), (1_000, 1_000));
    assert_eq!(teed_at, 1_060);
    assert!(tpmd_i < teed_i && bnxtd_i < teed_i);
    assert_eq!(transition_at, 1_080, "transition right after teed's ack");
    for server in teesys_init::SERVERS {
        let (stop_i, _) = h.find_from(mark, is_stop(server)).unwrap();
        assert!(teed_i < stop_i && stop_i < transition_i);
    }
    let sends = h.sends(ServerKind::Teed);
    assert_eq!(
        sends.last().unwrap().1,
        InitRequest::Shutdown {
            reason: ShutdownReason::Kexec
        }
    );

    let view = h.sup.snapshot();
    assert_eq!(view.phase, Phase::Down(Transition::Kexec));
    let outcome = view.last_shutdown.unwrap();
    assert_eq!(outcome.reason, ShutdownReason::Kexec);
    assert_eq!(outcome.deadline_ms, 2_000);
    assert_eq!(outcome.clients_started_at, Some(1_000));
    assert_eq!(outcome.teed_started_at, Some(1_060));
    assert_eq!(outcome.finished_at, Some(1_080));
    assert_eq!(
        outcome.server(ServerKind::Bnxtd).result,
        ShutdownResult::Acked {
            at: 1_060,
            report: ACK_REPORT
        }
    );
    assert!(view.servers.iter().all(|s| !s.alive));
}

#[test]
fn client_that_never_acks_is_given_up_at_the_deadline_and_kexec_still_happens() {
    let mut h = booted(InitConfig::default());
    h.behaviour(ServerKind::Bnxtd).on_shutdown = OnShutdown::Silent;
    let mark = h.log.len();
    h.sup.request_kexec(1_000);
    assert_eq!(h.run_to_transition(), Transition::Kexec);

    let (_, teed_at) = h.find_from(mark, is_shutdown(ServerKind::Teed)).unwrap();
    assert_eq!(
        teed_at, 3_000,
        "teed waits for the client deadline, not less"
    );
    let (_, transition_at) = h.find_from(mark, is_transition).unwrap();
    assert_eq!(transition_at, 3_005);
    assert!(h.notices().contains(&Notice::ShutdownDeadlineExpired {
        server: ServerKind::Bnxtd,
        generation: 1
    }));
    let outcome = h.sup.snapshot().last_shutdown.unwrap();
    assert_eq!(
        outcome.server(ServerKind::Bnxtd).result,
        ShutdownResult::DeadlineExpired { at: 3_000 }
    );
    assert!(matches!(
        outcome.server(ServerKind::Tpmd).result,
        ShutdownResult::Acked { at: 1_005, .. }
    ));
    // The silent client is still killed before the transition.
    assert!(h.find_from(mark, is_stop(ServerKind::Bnxtd)).is_some());
}

#[test]
fn silent_teed_cannot_hang_a_reboot() {
    let mut h = booted(InitConfig::default());
    h.behaviour(ServerKind::Teed).on_shutdown = OnShutdown::Silent;
    let mark = h.log.len();
    h.sup.request_reboot(1_000);
    assert_eq!(h.run_to_transition(), Transition::Reset);
    let (_, at) = h.find_from(mark, is_transition).unwrap();
    assert_eq!(at, 1_005 + 2_000);
}

#[test]
fn server_exiting_during_shutdown_counts_as_answered_and_is_not_restarted() {
    let mut h = booted(InitConfig::default());
    h.behaviour(ServerKind::Tpmd).on_shutdown = OnShutdown::Exit;
    h.behaviour(ServerKind::Bnxtd).on_shutdown = OnShutdown::Refuse;
    let mark = h.log.len();
    h.sup.request_kexec(1_000);
    assert_eq!(h.run_to_transition(), Transition::Kexec);

    // Neither the exit nor the refusal makes init wait for the deadline.
    let (_, teed_at) = h.find_from(mark, is_shutdown(ServerKind::Teed)).unwrap();
    assert_eq!(teed_at, 1_005);
    assert_eq!(h.starts(ServerKind::Tpmd).len(), 1, "no restart");
    assert!(h.notices().contains(&Notice::ExitedDuringShutdown {
        server: ServerKind::Tpmd,
        generation: 1
    }));
    assert!(!h
        .notices()
        .iter()
        .any(|n| matches!(n, Notice::RestartScheduled { .. })));
    // The dead one is not stopped again; the others are.
    assert!(h.find_from(mark, is_stop(ServerKind::Tpmd)).is_none());
    assert!(h.find_from(mark, is_stop(ServerKind::Bnxtd)).is_some());
    let outcome = h.sup.snapshot().last_shutdown.unwrap();
    assert_eq!(
        outcome.server(ServerKind::Tpmd).result,
        ShutdownResult::Exited { at: 1_005 }
    );
    assert_eq!(
        outcome.server(ServerKind::Bnxtd).result,
        ShutdownResult::Refused {
            at: 1_005,
            error: WireError::Busy
        }
    );
    // An exit reported after the transition changes nothing.
    h.sup.server_exited(h.now, ServerKind::Teed);
    assert!(h.sup.poll().is_none());
}

#[test]
fn dead_and_declined_servers_are_skipped() {
    let mut h = Harness::new(InitConfig::default());
    h.boot_and_settle(BootKind::CrashKernel);
    // tpmd died and waits for its restart when the kexec comes.
    h.kill(ServerKind::Tpmd);
    let mark = h.log.len();
    h.sup.request_kexec(h.now);
    h.run_to_transition();
    assert!(h.find_from(mark, is_shutdown(ServerKind::Teed)).is_none());
    assert!(h.find_from(mark, is_shutdown(ServerKind::Tpmd)).is_none());
    assert!(h.find_from(mark, is_shutdown(ServerKind::Bnxtd)).is_some());
    // The restart that was pending never happens.
    h.settle();
    assert_eq!(h.starts(ServerKind::Tpmd).len(), 1);
    let outcome = h.sup.snapshot().last_shutdown.unwrap();
    assert_eq!(
        outcome.server(ServerKind::Teed).result,
        ShutdownResult::Skipped(SkipReason::Declined)
    );
    assert_eq!(
        outcome.server(ServerKind::Tpmd).result,
        ShutdownResult::Skipped(SkipReason::NotRunning)
    );
    // The declined teed still runs, so it is stopped with the world.
    assert!(h.find_from(mark, is_stop(ServerKind::Teed)).is_some());
}

#[test]
fn second_request_during_a_shutdown_is_ignored() {
    let mut h = booted(InitConfig::default());
    h.sup.request_kexec(1_000);
    h.sup.request_reboot(1_001);
    assert_eq!(h.run_to_transition(), Transition::Kexec);
    assert!(h.notices().contains(&Notice::RequestIgnored {
        request: OperatorRequest::Reboot,
        phase: Phase::ShuttingDown
    }));
    let shutdowns = h
        .log
        .iter()
        .filter(|(_, e)| is_shutdown(ServerKind::Tpmd)(e))
        .count();
    assert_eq!(shutdowns, 1);
}

#[test]
fn kexec_during_boot_skips_clients_not_yet_started() {
    let mut h = Harness::new(InitConfig::default());
    h.behaviour(ServerKind::Teed).hello_latency = 100;
    h.boot(BootKind::Cold);
    h.sup.request_kexec(10);
    let mark = 0;
    h.run_to_transition();
    // teed was still probing: it gets the Shutdown; the clients never start.
    assert!(h.find_from(mark, is_shutdown(ServerKind::Teed)).is_some());
    assert!(h.starts(ServerKind::Tpmd).is_empty());
    assert!(!h.log.iter().any(|(_, e)| matches!(e, Effect::Booted(_))));
    assert_eq!(
        h.sup.snapshot().server(ServerKind::Bnxtd).state,
        SupervisedState::NotStarted
    );
}
