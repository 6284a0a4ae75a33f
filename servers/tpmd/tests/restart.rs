//! teed restarts and silent teeds: the command in flight gets "retry", never a wrong answer;
//! the session and buffer come back; queued commands proceed; no wait is unbounded.
#![allow(clippy::unwrap_used)]

mod common;

use common::{expected_response, tpm_command, Harness, TeedMode, TpmCommands, TEED_GENERATION};
use tee_proto::lifecycle::{ServerEvent, ServerState, ShutdownReason};
use tee_proto::teed::{TeedRequest, TeedResponse};
use tee_proto::tpm::{TpmError, TpmResponse};
use tee_proto::WireError;
use tpmd::TpmdConfig;

#[test]
fn after_a_teed_restart_the_session_and_buffer_are_reopened_and_queued_work_proceeds() {
    let mut h = Harness::serving();
    h.teed.restart();
    h.teed.mode = TeedMode::Hold;
    let lost = h.command(1, &tpm_command(0x101, &[]));
    let queued_command = tpm_command(0x102, &[]);
    let queued = h.command(2, &queued_command);

    // The old-generation invoke is answered ServerRestarted by the new teed.
    let first = h.answer_held();
    assert_eq!(first.header.to_generation, TEED_GENERATION);
    assert_eq!(h.response(lost), &TpmResponse::Error(TpmError::Retryable));
    assert!(h.teed.ta.commands.is_empty(), "the lost command never ran");

    let open = h.answer_held();
    assert!(matches!(open.body, TeedRequest::OpenSession { .. }));
    assert_eq!(open.header.to_generation, TEED_GENERATION + 1);
    let alloc = h.answer_held();
    assert_eq!(alloc.body, TeedRequest::ShmAlloc { size: 8192 });
    h.answer_held();
    assert_eq!(
        h.response(queued),
        &TpmResponse::Response {
            bytes: heapless::Vec::from_slice(&expected_response(&queued_command)).unwrap()
        }
    );
    assert_eq!(h.core.teed_generation(), TEED_GENERATION + 1);
    let status = h.core.status();
    assert_eq!((status.sessions, status.registrations), (1, 1));
    assert_eq!(h.to_init.len(), 1, "recovery is transparent to init");
}

#[test]
fn a_restart_learned_from_an_idle_request_still_reopens_before_the_next_command() {
    let mut h = Harness::serving();
    h.teed.restart();
    let command = tpm_command(0x101, &[]);
    let first = h.command(1, &command);
    assert_eq!(h.response(first), &TpmResponse::Error(TpmError::Retryable));
    // Auto mode: recovery already happened; the resend succeeds.
    let second = h.command(1, &command);
    assert!(matches!(h.response(second), TpmResponse::Response { .. }));
    assert_eq!(h.teed.ta.commands, vec![command]);
}

#[test]
fn a_teed_that_never_answers_a_command_is_cut_off_by_the_deadline() {
    let mut h = Harness::serving();
    h.teed.mode = TeedMode::Hold;
    let id = h.command(1, &tpm_command(0x101, &[]));
    let deadline = h.core.poll_timeout().unwrap();
    assert_eq!(
        deadline,
        h.now + TpmdConfig::default().deadlines.teed_call_ms
    );

    h.advance(deadline - h.now - 1);
    assert!(h.to_consumers.is_empty(), "not before the deadline");
    h.advance(1);
    assert_eq!(h.response(id), &TpmResponse::Error(TpmError::Retryable));
    assert!(TpmError::Retryable.is_retryable());
    let TeedRequest::Invoke {
        cancel_id, session, ..
    } = h.held[0].body.clone()
    else {
        panic!("not the invoke");
    };
    assert_eq!(
        h.held.back().unwrap().body,
        TeedRequest::Cancel { session, cancel_id },
        "the secure world is asked to cancel"
    );

    // The late answer is not delivered to anyone.
    let late = h.held.pop_front().unwrap();
    let body = h.teed.answer(&mut h.ram, &late);
    h.deliver(&late, body);
    h.pump();
    assert_eq!(h.to_consumers.len(), 1);
}

#[test]
fn the_next_command_runs_after_a_timed_out_one() {
    let mut h = Harness::serving();
    h.teed.mode = TeedMode::Hold;
    h.command(1, &tpm_command(0x101, &[]));
    let next = h.command(2, &tpm_command(0x102, &[]));
    h.run_timers(TpmdConfig::default().deadlines.teed_call_ms);
    // Held: the timed-out invoke, its cancel, the next invoke.
    let TeedRequest::Invoke { .. } = h.held.back().unwrap().body else {
        panic!("the next command was not sent");
    };
    let invoke = h.held.pop_back().unwrap();
    let body = h.teed.answer(&mut h.ram, &invoke);
    h.deliver(&invoke, body);
    h.pump();
    assert!(matches!(h.response(next), TpmResponse::Response { .. }));
}

#[test]
fn a_command_queued_too_long_gets_retry() {
    let mut h = Harness::new(TpmdConfig::default());
    // Before Hello nothing can run: the command waits in the queue until its bound.
    let id = h.command(1, &tpm_command(0x101, &[]));
    assert_eq!(
        h.core.poll_timeout(),
        Some(h.now + TpmdConfig::default().deadlines.queue_wait_ms)
    );
    h.run_timers(60_000);
    assert_eq!(h.response(id), &TpmResponse::Error(TpmError::Retryable));
}

#[test]
fn a_restart_during_shutdown_means_there_is_nothing_left_to_release() {
    let mut h = Harness::serving();
    h.teed.mode = TeedMode::Hold;
    h.shutdown(ShutdownReason::Crash);
    h.teed.restart();
    h.answer_held_with(TeedResponse::Error(WireError::ServerRestarted {
        generation: TEED_GENERATION + 1,
    }));
    assert!(h.held.is_empty(), "the session went with the old teed too");
    let ServerEvent::ShutdownAck(report) = h.to_init.last().unwrap().body else {
        panic!("no ack");
    };
    assert_eq!(
        (report.unregistered, report.sessions_closed, report.errors),
        (0, 0, 0)
    );
    assert_eq!(h.core.status().state, ServerState::Stopped);
}

#[test]
fn a_delayed_notice_of_an_earlier_restart_changes_nothing() {
    let mut h = Harness::serving();
    h.teed.restart();
    h.teed.restart();
    let command = tpm_command(0x101, &[]);
    h.command(1, &command); // lost; recovery adopts the newest generation
    assert_eq!(h.core.teed_generation(), TEED_GENERATION + 2);
    let opens = h.teed.log.len();

    // A reply to nothing this client waits on, carrying the intermediate restart.
    let stray = h.teed.log[0].clone();
    h.deliver(
        &stray,
        TeedResponse::Error(WireError::ServerRestarted {
            generation: TEED_GENERATION + 1,
        }),
    );
    h.pump();
    assert_eq!(h.core.teed_generation(), TEED_GENERATION + 2);
    let status = h.core.status();
    assert_eq!(
        (status.sessions, status.registrations),
        (1, 1),
        "nothing forgotten"
    );
    let id = h.command(1, &command);
    assert!(matches!(h.response(id), TpmResponse::Response { .. }));
    assert_eq!(h.teed.log.len(), opens + 1, "no re-open, just the command");
}

/// Hosted, init hands a new teed endpoint when teed restarts: the command that went out on the
/// old endpoint is failed at once ("retry"), not after the call deadline, and the next command
/// is answered by the new teed: the abandoned call's Cancel already met it and taught tpmd of the
/// restart, so the session and buffer are re-opened first.
#[test]
fn a_new_teed_endpoint_fails_the_lost_command_at_once() {
    let mut h = Harness::serving();
    h.teed.mode = TeedMode::Hold;
    let lost = h.command(1, &tpm_command(0x101, &[]));
    assert_eq!(h.held.len(), 1, "the invoke went out to the old teed");
    h.held.clear();
    h.teed.restart();
    h.teed.mode = TeedMode::Auto;
    let before = h.now;
    h.init(tee_proto::lifecycle::InitRequest::TeedEndpoint {
        teed_generation: TEED_GENERATION + 1,
    });
    assert_eq!(h.now, before, "no time had to pass");
    assert_eq!(h.response(lost), &TpmResponse::Error(TpmError::Retryable));
    let again = h.command(1, &tpm_command(0x101, &[]));
    assert!(
        matches!(h.response(again), TpmResponse::Response { .. }),
        "{:?}",
        h.response(again)
    );
    assert_eq!(h.core.teed_generation(), TEED_GENERATION + 1);
}

/// Hosted, the shell tells the core when it has no endpoint to teed for a frame (teed died and
/// no successor was linked, or init gave teed up): the command fails at once ("retry"), not
/// after the call deadline, and a new teed endpoint later serves again.
#[test]
fn an_unreachable_teed_fails_the_command_at_once() {
    let mut h = Harness::serving();
    h.teed.mode = TeedMode::Hold;
    let lost = h.command(1, &tpm_command(0x101, &[]));
    assert_eq!(h.held.len(), 1, "the invoke went out");
    h.held.clear();
    let before = h.now;
    h.core.teed_unreachable(h.now, &mut h.ram);
    h.pump();
    assert_eq!(h.now, before, "no time had to pass");
    assert_eq!(h.response(lost), &TpmResponse::Error(TpmError::Retryable));
    h.teed.restart();
    h.teed.mode = TeedMode::Auto;
    h.init(tee_proto::lifecycle::InitRequest::TeedEndpoint {
        teed_generation: TEED_GENERATION + 1,
    });
    // The new teed answers: at most one more "retry" while the client learns of the restart.
    let mut answers = Vec::new();
    for _ in 0..2 {
        let again = h.command(1, &tpm_command(0x101, &[]));
        answers.push(h.response(again).clone());
        if matches!(answers.last(), Some(TpmResponse::Response { .. })) {
            break;
        }
    }
    assert!(
        matches!(answers.last(), Some(TpmResponse::Response { .. })),
        "{answers:?}"
    );
}
