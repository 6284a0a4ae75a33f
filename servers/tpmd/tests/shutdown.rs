//! Shutdown: TPM2_Shutdown, then ShmFree, then CloseSession, then the ack (Linux order, after
//! dfb703ad2a8d made the fTPM buffer's release synchronous).
#![allow(clippy::unwrap_used)]

mod common;

use common::{expected_response, tpm_command, Harness, TeedMode, TpmCommands};
use tee_client::testing::no_shutdown_hook_config;
use tee_proto::lifecycle::{BootKind, ServerEvent, ServerState, ShutdownReason, ShutdownReport};
use tee_proto::teed::{TeedRequest, TeedResponse};
use tee_proto::tpm::{TpmError, TpmResponse};
use tee_proto::WireError;
use tpmd::{shutdown_clear_command, TpmdConfig};

const FULL_RELEASE: ShutdownReport = client_report(1, 1, 0);

/// A client's shutdown report (clients hold no cache buffers).
const fn client_report(unregistered: u32, sessions_closed: u32, errors: u32) -> ShutdownReport {
    ShutdownReport {
        unregistered,
        sessions_closed,
        cache_buffers_freed: 0,
        errors,
    }
}

#[test]
fn tpm2_shutdown_has_the_spec_bytes() {
    assert_eq!(
        shutdown_clear_command(),
        [0x80, 0x01, 0x00, 0x00, 0x00, 0x0C, 0x00, 0x00, 0x01, 0x45, 0x00, 0x00]
    );
}

#[test]
fn dfb703ad2a8d_kexec_sends_tpm2_shutdown_then_frees_then_closes_then_acks() {
    for reason in [ShutdownReason::Kexec, ShutdownReason::Reboot] {
        let mut h = Harness::serving();
        h.teed.mode = TeedMode::Hold;
        let sent = h.teed.log.len();
        h.shutdown(reason);

        h.answer_held();
        assert_eq!(
            h.teed.ta.commands.last().unwrap(),
            &shutdown_clear_command().to_vec(),
            "{reason:?}: TPM2_Shutdown(SU_CLEAR) goes first"
        );
        let shm = *h.teed.shms.keys().next().unwrap();
        assert_eq!(h.held[0].body, TeedRequest::ShmFree { shm });
        h.answer_held();
        assert!(h.to_init.len() == 1, "no ack before the session is closed");
        let session = *h.teed.sessions.keys().next().unwrap();
        assert_eq!(h.held[0].body, TeedRequest::CloseSession { session });
        h.answer_held();

        assert_eq!(h.teed_requests_since(sent).len(), 3);
        assert!(h.teed.shms.is_empty() && h.teed.sessions.is_empty());
        assert_eq!(h.shutdown_ack(), FULL_RELEASE);
        assert_eq!(h.core.status().state, ServerState::Stopped);
        assert_eq!(h.core.poll_timeout(), None);
    }
}

#[test]
fn a_crash_shutdown_releases_without_tpm2_shutdown() {
    let mut h = Harness::serving();
    let sent = h.teed.log.len();
    h.shutdown(ShutdownReason::Crash);
    let requests = h.teed_requests_since(sent);
    assert!(matches!(requests[0], TeedRequest::ShmFree { .. }));
    assert!(matches!(requests[1], TeedRequest::CloseSession { .. }));
    assert_eq!(requests.len(), 2);
    assert_eq!(h.shutdown_ack(), FULL_RELEASE);
}

#[test]
fn after_shutdown_every_command_is_refused_and_nothing_is_sent() {
    let mut h = Harness::serving();
    h.shutdown(ShutdownReason::Kexec);
    let sent = h.teed.log.len();
    let id = h.command(1, &tpm_command(0x17b, &[0, 8]));
    assert_eq!(h.response(id), &TpmResponse::Error(TpmError::ShuttingDown));
    assert_eq!(h.teed.log.len(), sent);
}

#[test]
fn the_command_in_flight_finishes_before_the_release_and_queued_ones_are_refused() {
    let mut h = Harness::serving();
    h.teed.mode = TeedMode::Hold;
    let command = tpm_command(0x101, &[]);
    let running = h.command(1, &command);
    let queued = h.command(2, &tpm_command(0x102, &[]));
    h.shutdown(ShutdownReason::Kexec);

    assert_eq!(
        h.held.len(),
        1,
        "nothing is released while the TA call runs"
    );
    assert_eq!(
        h.response(queued),
        &TpmResponse::Error(TpmError::ShuttingDown)
    );
    h.answer_held();
    assert_eq!(
        h.response(running),
        &TpmResponse::Response {
            bytes: heapless::Vec::from_slice(&expected_response(&command)).unwrap()
        }
    );
    while !h.held.is_empty() {
        h.answer_held();
    }
    assert_eq!(h.shutdown_ack(), FULL_RELEASE);
}

#[test]
fn a_silent_teed_cannot_hold_the_ack_past_the_shutdown_deadline() {
    let mut h = Harness::serving();
    h.teed.mode = TeedMode::Hold;
    let start = h.now;
    h.shutdown(ShutdownReason::Kexec);
    h.run_timers(60_000);
    let report = h.shutdown_ack();
    assert_eq!(report.unregistered, 0);
    assert_eq!(
        report.errors, 2,
        "the buffer and the session were not released"
    );
    let budget = TpmdConfig::default().deadlines.shutdown_ms;
    assert!(h.now - start <= budget, "acked after {} ms", h.now - start);
}

#[test]
fn failed_releases_are_counted_as_errors() {
    let mut h = Harness::serving();
    h.teed.mode = TeedMode::Hold;
    h.shutdown(ShutdownReason::Crash);
    h.answer_held_with(TeedResponse::Error(WireError::Busy));
    h.answer_held();
    assert_eq!(h.shutdown_ack(), client_report(0, 1, 1));
}

/// The client as it was before it had a shutdown hook (for the fTPM: before 1760eb689ed6,
/// outside the series; the bnxtd test of the same switch mirrors 914ab19e471d).
#[test]
fn no_shutdown_hook_acks_at_once_and_frees_nothing() {
    let mut h = Harness::new(no_shutdown_hook_config());
    h.hello(BootKind::Cold, false);
    let sent = h.teed.log.len();
    h.shutdown(ShutdownReason::Kexec);
    assert_eq!(h.teed.log.len(), sent, "nothing sent to teed");
    assert_eq!(h.shutdown_ack(), client_report(0, 0, 0));
    assert_eq!(
        h.teed.shms.len(),
        1,
        "the registration outlives the normal world"
    );
    assert_eq!(h.teed.sessions.len(), 1);
}

#[test]
fn shutdown_before_hello_or_in_a_crash_boot_acks_at_once() {
    let mut h = Harness::new(TpmdConfig::default());
    h.shutdown(ShutdownReason::Kexec);
    assert_eq!(h.shutdown_ack(), client_report(0, 0, 0));

    let mut h = Harness::new(TpmdConfig::default());
    h.hello(BootKind::CrashKernel, true);
    h.shutdown(ShutdownReason::Kexec);
    assert!(h.teed.log.is_empty());
    assert!(matches!(h.last_to_init(), ServerEvent::ShutdownAck(_)));
}

#[test]
fn a_shutdown_during_start_releases_what_the_start_got() {
    let mut h = Harness::new(TpmdConfig::default());
    h.teed.mode = TeedMode::Hold;
    h.hello(BootKind::Cold, false);
    h.shutdown(ShutdownReason::Kexec);
    h.answer_held(); // the open completes after the Shutdown
    assert!(matches!(h.held[0].body, TeedRequest::CloseSession { .. }));
    h.answer_held();
    assert!(h.teed.sessions.is_empty());
    assert_eq!(h.shutdown_ack(), client_report(0, 1, 0));
}
