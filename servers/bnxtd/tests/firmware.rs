//! Start-up, crash boot, fastboot and shutdown of bnxtd (Linux tee_bnxt_fw after 914ab19e471d).
#![allow(clippy::unwrap_used)]

mod common;

use bnxtd::BnxtdConfig;
use common::{ready, Harness, TeedMode, BNXTD_GENERATION};
use optee_abi::{teec, uuid};
use tee_client::testing::no_shutdown_hook_config;
use tee_proto::bnxt::{BnxtError, BnxtRequest, BnxtResponse};
use tee_proto::lifecycle::{BootKind, ServerKind, ShutdownReason, ShutdownReport};
use tee_proto::teed::{Login, Param, TeedRequest};

/// One request of each kind a NIC driver sends.
fn every_kind_of_request() -> [BnxtRequest; 3] {
    [
        BnxtRequest::Load,
        BnxtRequest::CoredumpLen,
        BnxtRequest::CopyCoredump {
            offset: 0,
            size: 16,
        },
    ]
}

#[test]
fn start_opens_the_bnxt_session_then_registers_4_mib_then_reports_ready() {
    let mut h = Harness::new(BnxtdConfig::default());
    h.teed.mode = TeedMode::Hold;
    h.hello(BootKind::Kexec, false);
    assert_eq!(
        h.held[0].body,
        TeedRequest::OpenSession {
            ta: *uuid::BNXT_TA.as_bytes(),
            login: Login::Public
        }
    );
    h.answer_held();
    assert!(h.to_init.is_empty());
    assert_eq!(h.held[0].body, TeedRequest::ShmAlloc { size: 4 << 20 });
    h.answer_held();
    assert_eq!(h.to_init[0].body, ready());
    let status = h.core.status();
    assert_eq!(status.kind, ServerKind::Bnxtd);
    assert_eq!(status.generation, BNXTD_GENERATION);
    assert_eq!(status.registered_bytes, 4 << 20);
}

#[test]
fn crash_boot_never_contacts_teed_and_answers_tee_unavailable() {
    let mut h = Harness::new(BnxtdConfig::default());
    h.hello(BootKind::CrashKernel, true);
    assert_eq!(h.to_init[0].body, ready());
    for request in every_kind_of_request() {
        assert_eq!(
            h.call(request),
            BnxtResponse::Error(BnxtError::TeeUnavailable)
        );
    }
    assert!(h.teed.log.is_empty());
}

#[test]
fn load_fastboots_with_four_none_params() {
    let mut h = Harness::serving();
    let sent = h.teed.log.len();
    assert_eq!(h.call(BnxtRequest::Load), BnxtResponse::Loaded);
    assert_eq!(h.teed.ta.fastboots, 1);
    let TeedRequest::Invoke { func, params, .. } = &h.teed.requests()[sent] else {
        panic!("not an invoke");
    };
    assert_eq!(*func, 0);
    assert_eq!(params.as_slice(), &[Param::None; 4]);
}

#[test]
fn item_not_found_from_fastboot_is_a_corrupt_image_and_other_codes_pass_through() {
    let mut h = Harness::serving();
    h.teed.ta.fastboot_ret = teec::ERROR_ITEM_NOT_FOUND;
    assert_eq!(
        h.call(BnxtRequest::Load),
        BnxtResponse::Error(BnxtError::CorruptImage)
    );
    h.teed.ta.fastboot_ret = teec::ERROR_BAD_STATE;
    assert_eq!(
        h.call(BnxtRequest::Load),
        BnxtResponse::Error(BnxtError::Tee {
            code: teec::ERROR_BAD_STATE,
            origin: teec::origin::TRUSTED_APP
        })
    );
}

/// core/pta/bcm/bnxt.c answers a failed firmware load with TEE_ERROR_TARGET_DEAD; Linux's
/// tee_bnxt_fw.c tee_bnxt_fw_load fails the load on it. bnxtd names the cause (no valid
/// image) and keeps serving: the next load is sent again.
#[test]
fn target_dead_from_fastboot_fails_the_load_as_tee_bnxt_fw_does() {
    let mut h = Harness::serving();
    h.teed.ta.fastboot_ret = teec::ERROR_TARGET_DEAD;
    assert_eq!(
        h.call(BnxtRequest::Load),
        BnxtResponse::Error(BnxtError::CorruptImage)
    );
    h.teed.ta.fastboot_ret = teec::SUCCESS;
    assert_eq!(h.call(BnxtRequest::Load), BnxtResponse::Loaded);
    assert_eq!(h.teed.ta.fastboots, 2, "both loads reached the TA");
}

#[test]
fn a_silent_teed_turns_a_load_into_retry_at_the_deadline() {
    let mut h = Harness::serving();
    h.teed.mode = TeedMode::Hold;
    let id = h.request(1, BnxtRequest::Load);
    h.run_timers(BnxtdConfig::default().deadlines.teed_call_ms);
    assert_eq!(h.response(id), &BnxtResponse::Error(BnxtError::Retryable));
}

#[test]
fn shutdown_frees_the_buffer_then_closes_the_session_then_acks_and_then_no_device() {
    for reason in [ShutdownReason::Kexec, ShutdownReason::Crash] {
        let mut h = Harness::serving();
        h.teed.mode = TeedMode::Hold;
        h.shutdown(reason);
        let shm = *h.teed.shms.keys().next().unwrap();
        let session = *h.teed.sessions.keys().next().unwrap();
        assert_eq!(h.answer_held().body, TeedRequest::ShmFree { shm });
        assert_eq!(h.to_init.len(), 1, "no ack before the session is closed");
        assert_eq!(h.answer_held().body, TeedRequest::CloseSession { session });
        assert!(h.held.is_empty());
        assert_eq!(
            h.shutdown_ack(),
            ShutdownReport {
                unregistered: 1,
                sessions_closed: 1,
                cache_buffers_freed: 0,
                errors: 0
            }
        );
        let sent = h.teed.log.len();
        for request in every_kind_of_request() {
            assert_eq!(h.call(request), BnxtResponse::Error(BnxtError::NoDevice));
        }
        assert_eq!(h.teed.log.len(), sent);
    }
}

/// 914ab19e471d added tee_bnxt_fw's shutdown hook; without it the 4 MiB registration and the
/// session outlive the normal world.
#[test]
fn seed_914ab19e471d_without_a_shutdown_hook_nothing_is_released() {
    let mut h = Harness::new(no_shutdown_hook_config());
    h.hello(BootKind::Cold, false);
    let sent = h.teed.log.len();
    h.shutdown(ShutdownReason::Kexec);
    assert_eq!(h.teed.log.len(), sent);
    assert_eq!(
        h.shutdown_ack(),
        ShutdownReport {
            unregistered: 0,
            sessions_closed: 0,
            cache_buffers_freed: 0,
            errors: 0
        }
    );
    assert_eq!(h.teed.shms.values().next().unwrap().1, 4 << 20);
}
