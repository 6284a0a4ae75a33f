//! The crash path, the crash flag and the crash-kernel boot.
#![allow(clippy::unwrap_used)]

mod common;

use common::{is_shutdown, is_start, is_stop, is_transition, Harness, OnShutdown};
use tee_proto::lifecycle::{BootKind, DeclineReason, InitRequest, ServerKind, ShutdownReason};
use teesys_init::{
    Effect, InitConfig, Notice, ShutdownResult, SkipReason, SupervisedState, Transition,
};

fn booted() -> Harness {
    let mut h = Harness::new(InitConfig::default());
    h.boot_and_settle(BootKind::Cold);
    h.advance_to(1_000);
    h
}

fn teed_hello_boot(h: &Harness, index: usize) -> tee_proto::lifecycle::BootInfo {
    match h.hellos(ServerKind::Teed)[index].1 {
        InitRequest::Hello { boot, .. } => boot,
        _ => unreachable!(),
    }
}

#[test]
fn best_effort_crash_uses_the_short_deadline_and_raises_the_flag() {
    let mut h = booted();
    h.behaviour(ServerKind::Bnxtd).on_shutdown = OnShutdown::Silent;
    let mark = h.log.len();
    h.sup.request_crash(1_000, true);
    assert!(h.sup.snapshot().crash_flag);
    assert_eq!(h.run_to_transition(), Transition::EnterCrashKernel);

    let sends = h.sends(ServerKind::Tpmd);
    assert_eq!(
        sends.last().unwrap(),
        &(
            1_000,
            InitRequest::Shutdown {
                reason: ShutdownReason::Crash
            }
        )
    );
    // 200 ms for the silent client, not the orderly 2 s.
    let (_, teed_at) = h.find_from(mark, is_shutdown(ServerKind::Teed)).unwrap();
    assert_eq!(teed_at, 1_200);
    let (_, transition_at) = h.find_from(mark, is_transition).unwrap();
    assert_eq!(transition_at, 1_205);
    let outcome = h.sup.snapshot().last_shutdown.unwrap();
    assert_eq!(outcome.deadline_ms, 200);
    assert!(outcome.ipc);
    assert_eq!(
        outcome.server(ServerKind::Bnxtd).result,
        ShutdownResult::DeadlineExpired { at: 1_200 }
    );
}

#[test]
fn crash_without_best_effort_sends_nothing_and_transitions_at_once() {
    let mut h = booted();
    let mark = h.log.len();
    h.sup.request_crash(1_000, false);
    h.pump();
    assert!(h.log[mark..]
        .iter()
        .all(|(_, e)| !matches!(e, Effect::Send { .. })));
    let (transition_i, at) = h.find_from(mark, is_transition).unwrap();
    assert_eq!(at, 1_000);
    for server in teesys_init::SERVERS {
        let (stop_i, _) = h.find_from(mark, is_stop(server)).unwrap();
        assert!(stop_i < transition_i);
    }
    let outcome = h.sup.snapshot().last_shutdown.unwrap();
    assert!(!outcome.ipc);
    assert!(outcome
        .servers
        .iter()
        .all(|s| s.result == ShutdownResult::Skipped(SkipReason::NoShutdownIpc)));
}

#[test]
fn crash_kernel_boot_carries_the_flag_and_holds_the_declined_teed() {
    let mut h = booted();
    h.sup.request_crash(1_000, false);
    h.run_to_transition();
    h.boot_and_settle(BootKind::CrashKernel);

    let boot = teed_hello_boot(&h, 1);
    assert_eq!(boot.kind, BootKind::CrashKernel);
    assert!(boot.crash_flag);
    assert_eq!(boot.boot_id, 2);
    let view = h.sup.snapshot();
    assert!(view.server(ServerKind::Teed).held());
    assert_eq!(
        view.server(ServerKind::Teed).state,
        SupervisedState::Held(DeclineReason::CrashKernel)
    );
    assert_eq!(view.server(ServerKind::Tpmd).state, SupervisedState::Ready);

    // The held teed exits: it is not restarted, ever.
    let teed_starts = h.starts(ServerKind::Teed).len();
    h.kill(ServerKind::Teed);
    h.settle();
    h.advance_to(h.now + 60_000);
    assert_eq!(h.starts(ServerKind::Teed).len(), teed_starts);
    assert!(h.notices().contains(&Notice::HeldServerExited {
        server: ServerKind::Teed,
        generation: 2
    }));
    assert!(h.sup.snapshot().server(ServerKind::Teed).held());
    assert!(!h.sup.snapshot().server(ServerKind::Teed).alive);
}

#[test]
fn kexec_out_of_the_crash_kernel_clears_the_flag_and_teed_serves_again() {
    let mut h = booted();
    h.sup.request_crash(1_000, true);
    h.run_to_transition();
    h.boot_and_settle(BootKind::CrashKernel);
    assert!(h.sup.snapshot().crash_flag);

    h.sup.request_kexec(h.now);
    assert_eq!(h.run_to_transition(), Transition::Kexec);
    // The declined teed got no Shutdown in the crash kernel.
    let teed_shutdowns = h
        .log
        .iter()
        .filter(|(_, e)| is_shutdown(ServerKind::Teed)(e))
        .count();
    assert_eq!(
        teed_shutdowns, 1,
        "only the one of the best-effort crash shutdown"
    );
    h.boot_and_settle(BootKind::Kexec);
    let boot = teed_hello_boot(&h, 2);
    assert_eq!(boot.kind, BootKind::Kexec);
    assert!(!boot.crash_flag);
    assert!(!h.sup.snapshot().crash_flag);
    assert_eq!(
        h.sup.snapshot().server(ServerKind::Teed).state,
        SupervisedState::Ready
    );
}

#[test]
fn reboot_from_the_crash_kernel_clears_the_flag() {
    let mut h = booted();
    h.sup.request_crash(1_000, false);
    h.run_to_transition();
    h.boot_and_settle(BootKind::CrashKernel);
    h.sup.request_reboot(h.now);
    assert_eq!(h.run_to_transition(), Transition::Reset);
    h.boot_and_settle(BootKind::Reset);
    assert!(!teed_hello_boot(&h, 2).crash_flag);
}

#[test]
fn crash_during_an_orderly_kexec_takes_over_with_the_short_deadline() {
    let mut h = booted();
    h.behaviour(ServerKind::Bnxtd).on_shutdown = OnShutdown::Silent;
    let mark = h.log.len();
    h.sup.request_kexec(1_000);
    h.advance_to(1_100);
    h.sup.request_crash(1_100, true);
    assert_eq!(h.run_to_transition(), Transition::EnterCrashKernel);
    let (_, teed_at) = h.find_from(mark, is_shutdown(ServerKind::Teed)).unwrap();
    assert_eq!(
        teed_at, 1_300,
        "the client step now ends 200 ms after the crash"
    );
    assert!(h.notices().contains(&Notice::CrashDuringShutdown {
        best_effort_shutdown: true
    }));
    let outcome = h.sup.snapshot().last_shutdown.unwrap();
    assert!(outcome.escalated_to_crash);
    assert_eq!(outcome.transition, Transition::EnterCrashKernel);
    h.boot(BootKind::CrashKernel);
    assert!(teed_hello_boot(&h, 1).crash_flag);
}

#[test]
fn crash_without_ipc_during_a_kexec_abandons_the_waits() {
    let mut h = booted();
    h.behaviour(ServerKind::Bnxtd).on_shutdown = OnShutdown::Silent;
    let mark = h.log.len();
    h.sup.request_kexec(1_000);
    h.advance_to(1_100);
    h.sup.request_crash(1_100, false);
    h.pump();
    let (_, at) = h.find_from(mark, is_transition).unwrap();
    assert_eq!(at, 1_100);
    let outcome = h.sup.snapshot().last_shutdown.unwrap();
    assert_eq!(
        outcome.server(ServerKind::Bnxtd).result,
        ShutdownResult::Abandoned { at: 1_100 }
    );
    assert!(h.find_from(mark, is_shutdown(ServerKind::Teed)).is_none());
}

#[test]
fn boot_without_transition_starts_afresh() {
    // The simulator may kexec the world behind init's back: no Stop for the vanished servers.
    let mut h = booted();
    let mark = h.log.len();
    h.boot(BootKind::Kexec);
    assert!(h.find_from(mark, is_stop(ServerKind::Tpmd)).is_none());
    let (_, _) = h.find_from(mark, is_start(ServerKind::Teed)).unwrap();
    assert!(!teed_hello_boot(&h, 1).crash_flag);
}
