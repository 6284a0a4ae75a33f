//! Boot order, Hello contents and boot numbering.
#![allow(clippy::unwrap_used)]

mod common;

use common::{is_hello, is_start, Harness, OnHello};
use tee_proto::lifecycle::{BootKind, DeclineReason, InitRequest, ServerKind};
use teesys_init::{Effect, InitConfig, Phase, StartOutcome, SupervisedState, INIT_GENERATION};

fn booted_summary(h: &Harness) -> teesys_init::BootSummary {
    match &h.log[h.last_booted_index().unwrap()].1 {
        Effect::Booted(summary) => *summary,
        _ => unreachable!(),
    }
}

#[test]
fn teed_hello_comes_first_and_clients_start_only_after_teed_is_ready() {
    let config = InitConfig::default();
    let mut h = Harness::new(config);
    h.behaviour(ServerKind::Teed).hello_latency = 50;
    h.boot(BootKind::Cold);

    // At boot only teed is started, and its Hello follows its Start.
    let (teed_start, _) = h.find_from(0, is_start(ServerKind::Teed)).unwrap();
    let (teed_hello, _) = h.find_from(0, is_hello(ServerKind::Teed)).unwrap();
    assert!(teed_start < teed_hello);
    assert!(h.find_from(0, is_start(ServerKind::Tpmd)).is_none());
    assert!(h.find_from(0, is_start(ServerKind::Bnxtd)).is_none());

    // Nothing for the clients while teed is still probing.
    h.advance_to(49);
    assert!(h.find_from(0, is_start(ServerKind::Tpmd)).is_none());

    h.run_until(|h| h.last_booted_index().is_some());
    let (tpmd_start, tpmd_at) = h.find_from(0, is_start(ServerKind::Tpmd)).unwrap();
    let (bnxtd_start, bnxtd_at) = h.find_from(0, is_start(ServerKind::Bnxtd)).unwrap();
    assert_eq!(tpmd_at, 50, "clients start when teed's Ready arrives");
    assert_eq!(bnxtd_at, 50);
    assert!(teed_hello < tpmd_start && tpmd_start < bnxtd_start);

    // Hello contents: teed gets the RAM and journal windows, clients get none.
    let (_, teed_hello) = h.hellos(ServerKind::Teed)[0];
    let InitRequest::Hello {
        generation,
        teed_generation,
        boot,
        ram,
        journal,
        windows,
        grants,
    } = teed_hello
    else {
        unreachable!()
    };
    // The core names no grants: the shell that attaches the capabilities does.
    assert!(grants.is_empty());
    assert_eq!((generation, teed_generation), (1, 1));
    assert_eq!(boot.boot_id, 1);
    assert_eq!(boot.kind, BootKind::Cold);
    assert!(!boot.crash_flag);
    assert_eq!(ram, config.ram);
    assert_eq!(journal, config.journal);
    assert_eq!(windows, config.windows);
    for client in [ServerKind::Tpmd, ServerKind::Bnxtd] {
        let (_, hello) = h.hellos(client)[0];
        let InitRequest::Hello {
            generation,
            teed_generation,
            ram,
            journal,
            ..
        } = hello
        else {
            unreachable!()
        };
        assert_eq!((generation, teed_generation), (1, 1));
        assert_eq!((ram.len, journal.len), (0, 0));
    }

    let summary = booted_summary(&h);
    assert_eq!(summary.booted_at, 55);
    assert!(summary
        .servers
        .iter()
        .all(|s| s.outcome == StartOutcome::Ready && s.generation == 1));
    assert_eq!(h.sup.snapshot().phase, Phase::Running);
}

#[test]
fn frames_from_init_are_addressed_to_the_current_generation() {
    let mut h = Harness::new(InitConfig::default());
    h.boot_and_settle(BootKind::Cold);
    let frame = h
        .log
        .iter()
        .find_map(|(_, e)| match e {
            Effect::Send {
                server: ServerKind::Bnxtd,
                frame,
            } => Some(frame.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(frame.header.from_generation, INIT_GENERATION);
    assert_eq!(frame.header.to_generation, 1);
}

#[test]
fn teed_declining_also_releases_the_clients_and_boot_completes_with_it_held() {
    let mut h = Harness::new(InitConfig::default());
    h.boot(BootKind::CrashKernel);
    h.run_until(|h| h.last_booted_index().is_some());
    let (_, teed_settled_at) = h
        .find_from(0, |e| {
            matches!(e, Effect::Notice(teesys_init::Notice::Declined { .. }))
        })
        .unwrap();
    assert_eq!(h.starts(ServerKind::Tpmd), vec![(teed_settled_at, 1)]);
    let summary = booted_summary(&h);
    assert_eq!(
        summary.servers[0].outcome,
        StartOutcome::Declined(DeclineReason::CrashKernel)
    );
    assert_eq!(summary.servers[1].outcome, StartOutcome::Ready);
}

#[test]
fn silent_teed_is_retried_then_given_up_and_the_clients_still_start() {
    let mut config = InitConfig {
        start_deadline_ms: 100,
        ..InitConfig::default()
    };
    config.restart.max_restarts = 2;
    let mut h = Harness::new(config);
    h.behaviour(ServerKind::Teed).on_hello = OnHello::Silent;
    h.boot(BootKind::Cold);
    h.run_until(|h| h.last_booted_index().is_some());

    // Three incarnations, each stopped at its start deadline.
    let teed_starts = h.starts(ServerKind::Teed);
    assert_eq!(
        teed_starts.iter().map(|s| s.1).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(teed_starts[1].0, 100 + 10);
    assert_eq!(teed_starts[2].0, 110 + 100 + 20);
    let expired = h
        .notices()
        .into_iter()
        .filter(|n| matches!(n, teesys_init::Notice::StartDeadlineExpired { .. }))
        .count();
    assert_eq!(expired, 3);
    assert!(h.notices().iter().any(|n| matches!(
        n,
        teesys_init::Notice::GaveUp {
            server: ServerKind::Teed,
            failed_starts: 3,
            ..
        }
    )));
    // The clients' Hello names teed's last generation.
    let (_, hello) = h.hellos(ServerKind::Tpmd)[0];
    assert!(matches!(
        hello,
        InitRequest::Hello {
            teed_generation: 3,
            ..
        }
    ));
    assert_eq!(booted_summary(&h).servers[0].outcome, StartOutcome::GivenUp);
    assert_eq!(
        h.sup.snapshot().server(ServerKind::Teed).state,
        SupervisedState::GivenUp
    );
}

#[test]
fn boot_ids_increase_and_generations_keep_counting_across_boots() {
    let mut h = Harness::new(InitConfig::default());
    h.boot_and_settle(BootKind::Cold);
    h.sup.request_kexec(h.now);
    h.run_to_transition();
    h.boot_and_settle(BootKind::Kexec);
    let hellos = h.hellos(ServerKind::Teed);
    let InitRequest::Hello {
        generation, boot, ..
    } = hellos[1].1
    else {
        unreachable!()
    };
    assert_eq!(boot.boot_id, 2);
    assert_eq!(boot.kind, BootKind::Kexec);
    assert_eq!(generation, 2);
    assert_eq!(h.sup.snapshot().boot.unwrap().boot_id, 2);
}

#[test]
fn operator_restart_of_a_client_waiting_for_its_turn_is_refused() {
    let mut h = Harness::new(InitConfig::default());
    h.behaviour(ServerKind::Teed).hello_latency = 100;
    h.boot(BootKind::Cold);
    h.sup.request_restart(h.now, ServerKind::Tpmd);
    h.pump();
    assert!(h.starts(ServerKind::Tpmd).is_empty());
    assert!(h
        .notices()
        .iter()
        .any(|n| matches!(n, teesys_init::Notice::RequestIgnored { .. })));
}
