//! Start-up: the order of the start steps, crash boots, an unavailable TEE, declining.
#![allow(clippy::unwrap_used)]

mod common;

use common::{
    ready, tpm_command, Harness, TeedMode, TpmCommands, TEED_GENERATION, TPMD_GENERATION,
};
use optee_abi::uuid;
use tee_proto::lifecycle::{
    BootKind, DeclineReason, InitRequest, ServerEvent, ServerKind, ServerState,
};
use tee_proto::teed::{Login, TeedRequest, TeedResponse};
use tee_proto::tpm::{TpmError, TpmResponse};
use tee_proto::WireError;
use tpmd::TpmdConfig;

#[test]
fn start_opens_the_session_then_allocates_8k_and_only_then_reports_ready() {
    let mut h = Harness::new(TpmdConfig::default());
    h.teed.mode = TeedMode::Hold;
    h.hello(BootKind::Cold, false);

    assert_eq!(h.held.len(), 1);
    assert_eq!(
        h.held[0].body,
        TeedRequest::OpenSession {
            ta: *uuid::FTPM_TA.as_bytes(),
            login: Login::Public
        }
    );
    assert_eq!(h.held[0].header.from_generation, TPMD_GENERATION);
    assert_eq!(h.held[0].header.to_generation, TEED_GENERATION);
    assert!(h.to_init.is_empty(), "no Ready before the session is open");

    h.answer_held();
    assert_eq!(h.held.len(), 1);
    assert_eq!(h.held[0].body, TeedRequest::ShmAlloc { size: 8192 });
    assert!(
        h.to_init.is_empty(),
        "no Ready before the buffer is registered"
    );

    h.answer_held();
    assert_eq!(h.to_init.len(), 1);
    assert_eq!(h.to_init[0].body, ready());
    let status = h.core.status();
    assert_eq!(status.kind, ServerKind::Tpmd);
    assert_eq!(status.state, ServerState::Serving);
    assert_eq!(
        (
            status.sessions,
            status.registrations,
            status.registered_bytes
        ),
        (1, 1, 8192)
    );
}

#[test]
fn ready_answers_the_hello_request() {
    let mut h = Harness::new(TpmdConfig::default());
    h.hello(BootKind::Kexec, false);
    let ready_frame = &h.to_init[0];
    assert_eq!(ready_frame.body, ready());
    assert_eq!(ready_frame.header.from_generation, TPMD_GENERATION);
    assert_eq!(ready_frame.header.request_id, 101);
}

#[test]
fn crash_boot_never_contacts_teed_and_answers_tee_unavailable() {
    for (kind, crash_flag) in [(BootKind::CrashKernel, false), (BootKind::Kexec, true)] {
        let mut h = Harness::new(TpmdConfig::default());
        h.hello(kind, crash_flag);
        assert!(h.teed.log.is_empty(), "{kind:?}: no frame to teed");
        assert_eq!(h.to_init, vec![h.to_init[0].clone()]);
        assert_eq!(h.to_init[0].body, ready());

        let id = h.command(1, &tpm_command(0x17b, &[0, 8]));
        assert_eq!(
            h.response(id),
            &TpmResponse::Error(TpmError::TeeUnavailable)
        );
        assert!(h.teed.log.is_empty());
        assert_eq!(h.core.status().sessions, 0);
    }
}

#[test]
fn teed_unavailable_at_open_means_ready_without_a_tee() {
    let mut h = Harness::new(TpmdConfig::default());
    h.teed.open_error = Some(WireError::TeeUnavailable);
    h.hello(BootKind::Cold, false);
    assert_eq!(h.to_init.last().unwrap().body, ready());
    assert_eq!(h.teed.log.len(), 1, "no retry after TeeUnavailable");

    let id = h.command(1, &tpm_command(0x17b, &[0, 8]));
    assert_eq!(
        h.response(id),
        &TpmResponse::Error(TpmError::TeeUnavailable)
    );
    assert_eq!(h.teed.log.len(), 1);
}

#[test]
fn commands_sent_while_starting_wait_for_the_start_and_then_run() {
    let mut h = Harness::new(TpmdConfig::default());
    h.teed.mode = TeedMode::Hold;
    h.hello(BootKind::Cold, false);
    let id = h.command(1, &tpm_command(0x17b, &[0, 8]));
    assert!(h.to_consumers.is_empty());
    h.answer_held(); // open
    h.answer_held(); // alloc
    h.answer_held(); // the command
    assert!(matches!(h.response(id), TpmResponse::Response { .. }));
}

#[test]
fn failed_opens_are_retried_with_growing_pauses_then_declined() {
    let mut h = Harness::new(TpmdConfig::default());
    h.teed.open_error = Some(WireError::Busy);
    h.hello(BootKind::Cold, false);
    let start = h.now;
    let mut sent_at = vec![h.now];
    while h.to_init.is_empty() {
        let due = h.core.poll_timeout().expect("a retry is scheduled");
        let before = h.teed.log.len();
        h.advance(due - h.now);
        if h.teed.log.len() > before {
            sent_at.push(h.now);
        }
    }
    let gaps: Vec<u64> = sent_at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() >= 3, "several attempts: {gaps:?}");
    assert!(
        gaps.windows(2).all(|w| w[1] >= w[0]),
        "backoff grows: {gaps:?}"
    );
    assert!(gaps.iter().all(|g| *g <= 1_000), "capped: {gaps:?}");
    assert_eq!(
        h.to_init[0].body,
        ServerEvent::Declined {
            reason: DeclineReason::SecureWorldUnavailable
        }
    );
    let deadlines = TpmdConfig::default().deadlines;
    assert!(h.now - start <= deadlines.start_ms);
    assert_eq!(h.core.status().state, ServerState::Declined);
    assert_eq!(h.core.poll_timeout(), None, "nothing left to wait for");

    let id = h.command(1, &tpm_command(0x17b, &[0, 8]));
    assert_eq!(
        h.response(id),
        &TpmResponse::Error(TpmError::TeeUnavailable)
    );
}

#[test]
fn a_session_opened_before_allocation_keeps_failing_is_closed_before_declining() {
    let mut h = Harness::new(TpmdConfig::default());
    h.teed.alloc_error = Some(WireError::OutOfMemory);
    h.hello(BootKind::Cold, false);
    h.run_timers(60_000);
    let requests = h.teed.requests();
    assert_eq!(
        requests
            .iter()
            .filter(|r| matches!(r, TeedRequest::OpenSession { .. }))
            .count(),
        1,
        "the session is kept across allocation retries"
    );
    assert!(matches!(
        requests.last(),
        Some(TeedRequest::CloseSession { .. })
    ));
    assert!(
        h.teed.sessions.is_empty(),
        "no session left open in the TEE"
    );
    assert!(matches!(
        h.to_init.last().unwrap().body,
        ServerEvent::Declined { .. }
    ));
}

#[test]
fn a_silent_teed_at_start_is_declined_and_a_late_session_is_closed() {
    let mut h = Harness::new(TpmdConfig::default());
    h.teed.mode = TeedMode::Hold;
    h.hello(BootKind::Cold, false);
    h.run_timers(60_000);
    assert!(matches!(
        h.to_init.last().unwrap().body,
        ServerEvent::Declined { .. }
    ));
    let opens = h.held.len();
    assert!(opens >= 2, "the open was retried after its deadline");

    // The first open's success finally arrives: it must not leak a session in the TEE.
    let late = h.held.pop_front().unwrap();
    h.deliver(&late, TeedResponse::SessionOpened { session: 42 });
    h.pump();
    assert_eq!(
        h.held.back().unwrap().body,
        TeedRequest::CloseSession { session: 42 }
    );
}

#[test]
fn status_is_answered_at_any_time() {
    let mut h = Harness::serving();
    h.init(InitRequest::Status);
    let ServerEvent::Status(status) = h.to_init.last().unwrap().body else {
        panic!("not a status");
    };
    assert_eq!(status.generation, TPMD_GENERATION);
    assert_eq!(status.state, ServerState::Serving);
}

#[test]
fn a_second_hello_is_refused() {
    let mut h = Harness::serving();
    h.hello(BootKind::Cold, false);
    assert_eq!(
        h.to_init.last().unwrap().body,
        ServerEvent::Error(WireError::BadRequest)
    );
}
