//! Supervised restart with backoff and generations, give-up, operator restart.
#![allow(clippy::unwrap_used)]

mod common;

use common::{is_start, is_stop, Harness, OnHello};
use tee_proto::lifecycle::{BootKind, InitRequest, ServerEvent, ServerKind};
use tee_proto::{Frame, Header};
use teesys_init::{Effect, InitConfig, Notice, SupervisedState, INIT_GENERATION};

fn booted(config: InitConfig) -> Harness {
    let mut h = Harness::new(config);
    h.boot_and_settle(BootKind::Cold);
    h.advance_to(1_000);
    h
}

fn hello_generations(h: &Harness, server: ServerKind) -> Vec<(u32, u32)> {
    h.hellos(server)
        .into_iter()
        .map(|(_, hello)| match hello {
            InitRequest::Hello {
                generation,
                teed_generation,
                ..
            } => (generation, teed_generation),
            _ => unreachable!(),
        })
        .collect()
}

#[test]
fn dead_client_is_restarted_after_backoff_with_the_next_generation() {
    let mut h = booted(InitConfig::default());
    h.kill(ServerKind::Tpmd);
    assert!(h.notices().contains(&Notice::RestartScheduled {
        server: ServerKind::Tpmd,
        failed_generation: 1,
        delay_ms: 10,
        deaths_in_window: 1
    }));
    assert_eq!(
        h.sup.snapshot().server(ServerKind::Tpmd).state,
        SupervisedState::RestartPending { at: 1_010 }
    );
    // Not a moment early.
    h.advance_to(1_009);
    assert_eq!(h.starts(ServerKind::Tpmd).len(), 1);
    h.advance_to(1_010);
    assert_eq!(h.starts(ServerKind::Tpmd)[1], (1_010, 2));
    assert_eq!(hello_generations(&h, ServerKind::Tpmd)[1], (2, 1));
    h.settle();
    let view = h.sup.snapshot();
    assert_eq!(view.server(ServerKind::Tpmd).state, SupervisedState::Ready);
    assert_eq!(view.server(ServerKind::Tpmd).restarts, 1);
    // A second death soon after waits twice as long.
    h.kill(ServerKind::Tpmd);
    let at = h.now;
    h.settle();
    assert_eq!(h.starts(ServerKind::Tpmd)[2], (at + 20, 3));
    // The other servers were left alone.
    assert_eq!(h.starts(ServerKind::Bnxtd).len(), 1);
    assert_eq!(h.starts(ServerKind::Teed).len(), 1);
}

#[test]
fn restarted_teed_gets_a_new_generation_and_later_client_hellos_name_it() {
    let mut h = booted(InitConfig::default());
    let mark = h.log.len();
    h.kill(ServerKind::Teed);
    h.settle();
    assert_eq!(hello_generations(&h, ServerKind::Teed)[1], (2, 2));
    // Clients learn from the transport, not from init: no stop or start for them.
    assert!(h.find_from(mark, is_stop(ServerKind::Tpmd)).is_none());
    assert!(h.find_from(mark, is_start(ServerKind::Bnxtd)).is_none());

    h.kill(ServerKind::Bnxtd);
    h.settle();
    assert_eq!(hello_generations(&h, ServerKind::Bnxtd)[1], (2, 2));
}

#[test]
fn quick_deaths_beyond_the_limit_are_given_up() {
    let mut config = InitConfig::default();
    config.restart.max_restarts = 3;
    let mut h = booted(config);
    for _ in 0..3 {
        h.kill(ServerKind::Bnxtd);
        h.settle();
        assert_eq!(
            h.sup.snapshot().server(ServerKind::Bnxtd).state,
            SupervisedState::Ready
        );
    }
    h.kill(ServerKind::Bnxtd);
    h.settle();
    h.advance_to(h.now + 60_000);
    assert_eq!(
        h.starts(ServerKind::Bnxtd).len(),
        4,
        "first start + 3 restarts"
    );
    assert!(h.notices().iter().any(|n| matches!(
        n,
        Notice::GaveUp {
            server: ServerKind::Bnxtd,
            generation: 4,
            deaths_in_window: 4,
            ..
        }
    )));
    let view = h.sup.snapshot();
    assert!(view.server(ServerKind::Bnxtd).given_up());
    assert_eq!(view.server(ServerKind::Bnxtd).restarts, 3);
}

#[test]
fn deaths_spread_beyond_the_window_are_not_given_up() {
    let mut config = InitConfig::default();
    config.restart.max_restarts = 2;
    config.restart.window_ms = 1_000;
    let mut h = booted(config);
    for _ in 0..5 {
        h.kill(ServerKind::Tpmd);
        h.settle();
        h.advance_to(h.now + 5_000);
    }
    assert_eq!(h.starts(ServerKind::Tpmd).len(), 6);
    assert!(!h.sup.snapshot().server(ServerKind::Tpmd).given_up());
}

#[test]
fn operator_restart_is_stop_then_start_at_once_and_not_a_crash() {
    let mut h = booted(InitConfig::default());
    let mark = h.log.len();
    h.sup.request_restart(h.now, ServerKind::Bnxtd);
    h.pump();
    let (stop_i, stop_at) = h.find_from(mark, is_stop(ServerKind::Bnxtd)).unwrap();
    let (start_i, start_at) = h.find_from(mark, is_start(ServerKind::Bnxtd)).unwrap();
    assert!(stop_i < start_i);
    assert_eq!((stop_at, start_at), (1_000, 1_000), "no backoff");
    assert_eq!(h.starts(ServerKind::Bnxtd)[1].1, 2);
    assert!(h.notices().contains(&Notice::OperatorRestart {
        server: ServerKind::Bnxtd,
        old_generation: 1,
        new_generation: 2
    }));
    assert!(!h
        .notices()
        .iter()
        .any(|n| matches!(n, Notice::RestartScheduled { .. })));
    h.settle();
    let view = h.sup.snapshot();
    assert_eq!(view.server(ServerKind::Bnxtd).state, SupervisedState::Ready);
    assert_eq!(view.server(ServerKind::Bnxtd).restarts, 0);
    assert_eq!(view.server(ServerKind::Bnxtd).operator_restarts, 1);
}

#[test]
fn operator_restart_revives_a_given_up_server_with_a_fresh_budget() {
    let mut config = InitConfig::default();
    config.restart.max_restarts = 0;
    let mut h = booted(config);
    h.kill(ServerKind::Tpmd);
    assert!(h.sup.snapshot().server(ServerKind::Tpmd).given_up());
    h.sup.request_restart(h.now, ServerKind::Tpmd);
    h.settle();
    assert_eq!(
        h.sup.snapshot().server(ServerKind::Tpmd).state,
        SupervisedState::Ready
    );
    assert_eq!(h.starts(ServerKind::Tpmd).last().unwrap().1, 2);
}

#[test]
fn ready_from_a_previous_incarnation_is_ignored() {
    let mut h = booted(InitConfig::default());
    h.behaviour(ServerKind::Tpmd).on_hello = OnHello::Silent;
    h.sup.request_restart(h.now, ServerKind::Tpmd);
    h.pump();
    // The old incarnation (generation 1) answers the new Hello's request id.
    let request_id = h
        .log
        .iter()
        .rev()
        .find_map(|(_, e)| match e {
            Effect::Send {
                server: ServerKind::Tpmd,
                frame,
            } => Some(frame.header.request_id),
            _ => None,
        })
        .unwrap();
    h.sup.handle_event(
        h.now,
        ServerKind::Tpmd,
        Frame {
            header: Header::new(1, INIT_GENERATION, request_id),
            body: ServerEvent::Ready { generation: 1 },
        },
    );
    assert!(matches!(
        h.sup.snapshot().server(ServerKind::Tpmd).state,
        SupervisedState::Starting { .. }
    ));
    // The same answer from the current incarnation counts.
    h.sup.handle_event(
        h.now,
        ServerKind::Tpmd,
        Frame {
            header: Header::new(2, INIT_GENERATION, request_id),
            body: ServerEvent::Ready { generation: 2 },
        },
    );
    assert_eq!(
        h.sup.snapshot().server(ServerKind::Tpmd).state,
        SupervisedState::Ready
    );
}

#[test]
fn refused_hello_stops_the_incarnation_and_restarts_it() {
    let mut h = booted(InitConfig::default());
    h.behaviour(ServerKind::Tpmd).on_hello = OnHello::Refuse;
    h.sup.request_restart(h.now, ServerKind::Tpmd);
    h.pump();
    h.behaviour(ServerKind::Tpmd).on_hello = OnHello::Ready;
    h.settle();
    assert!(h.notices().iter().any(|n| matches!(
        n,
        Notice::StartRefused {
            server: ServerKind::Tpmd,
            generation: 2,
            ..
        }
    )));
    assert_eq!(h.starts(ServerKind::Tpmd).last().unwrap().1, 3);
    assert_eq!(
        h.sup.snapshot().server(ServerKind::Tpmd).state,
        SupervisedState::Ready
    );
}

#[test]
fn exit_of_a_stopped_generation_is_not_mistaken_for_the_new_one() {
    let mut h = booted(InitConfig::default());
    h.sup.request_restart(h.now, ServerKind::Teed);
    h.settle();
    // A shell that reports the killed incarnation's exit late, with its generation.
    h.sup.incarnation_exited(h.now, ServerKind::Teed, 1);
    h.pump();
    assert_eq!(
        h.sup.snapshot().server(ServerKind::Teed).state,
        SupervisedState::Ready
    );
    assert_eq!(h.starts(ServerKind::Teed).len(), 2);
}
