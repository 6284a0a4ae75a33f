//! Error semantics: retryability, display texts, the TPM response-code mapping and the small
//! helpers beside the messages.
#![allow(clippy::unwrap_used)]

mod common;

use common::samples::{bnxt_errors, tpm_errors, wire_errors};
use tee_proto::bnxt::BnxtError;
use tee_proto::lifecycle::RamWindow;
use tee_proto::teed::Login;
use tee_proto::tpm::{declared_size, rc, tpm_error_response, TpmError, TPM_HEADER_SIZE};
use tee_proto::{FramePart, ProtoError, WireError};

#[test]
fn only_transient_wire_errors_are_retryable() {
    let retryable: Vec<WireError> = wire_errors()
        .into_iter()
        .filter(WireError::is_retryable)
        .collect();
    assert_eq!(
        retryable,
        vec![
            WireError::ServerRestarted { generation: 7 },
            WireError::ServerRestarted {
                generation: u32::MAX
            },
            WireError::Retryable,
            WireError::Busy,
        ]
    );
}

#[test]
fn service_errors_are_retryable_only_after_loss_or_restart() {
    for error in tpm_errors() {
        let expected = matches!(
            error,
            TpmError::Retryable | TpmError::ServerRestarted { .. }
        );
        assert_eq!(error.is_retryable(), expected, "{error:?}");
    }
    for error in bnxt_errors() {
        let expected = matches!(
            error,
            BnxtError::Retryable | BnxtError::ServerRestarted { .. }
        );
        assert_eq!(error.is_retryable(), expected, "{error:?}");
    }
}

#[test]
fn display_texts_carry_the_details() {
    assert_eq!(
        WireError::ServerRestarted { generation: 12 }.to_string(),
        "server restarted, now generation 12"
    );
    assert_eq!(
        WireError::Tee {
            code: 0xFFFF_000D,
            origin: 4
        }
        .to_string(),
        "secure world returned 0xffff000d (origin 4)"
    );
    assert_eq!(WireError::TeeUnavailable.to_string(), "TEE unavailable");
    assert_eq!(
        ProtoError::Version {
            got: 2,
            expected: 1
        }
        .to_string(),
        "protocol version 2, expected 1"
    );
    assert_eq!(
        ProtoError::Decode {
            part: FramePart::Body
        }
        .to_string(),
        "malformed frame body"
    );
    assert_eq!(
        BnxtError::BadSize { size: 0, max: 4096 }.to_string(),
        "chunk size 0 is not in 1..=4096"
    );
    // Every sample (each variant, differing details) reads differently.
    let texts: Vec<String> = wire_errors().iter().map(ToString::to_string).collect();
    for (index, text) in texts.iter().enumerate() {
        assert!(!text.is_empty());
        assert!(
            !texts[index + 1..].contains(text),
            "duplicate text {text:?}"
        );
    }
}

#[test]
fn tpm_errors_map_to_tpm_response_codes() {
    assert_eq!(TpmError::Retryable.to_tpm_rc(), 0x922);
    assert_eq!(
        TpmError::ServerRestarted { generation: 2 }.to_tpm_rc(),
        rc::RETRY
    );
    assert_eq!(TpmError::TeeUnavailable.to_tpm_rc(), 0x101);
    assert_eq!(TpmError::CommandTooLarge { len: 5000 }.to_tpm_rc(), 0x142);
    assert_eq!(TpmError::CommandTooShort { len: 4 }.to_tpm_rc(), 0x142);
    assert_eq!(
        TpmError::BadResponse { declared: 3 }.to_tpm_rc(),
        rc::FAILURE
    );
    assert_eq!(TpmError::ShuttingDown.to_tpm_rc(), rc::FAILURE);
    assert_eq!(TpmError::BadRequest.to_tpm_rc(), rc::FAILURE);
    let tee = |code| TpmError::Tee { code, origin: 3 }.to_tpm_rc();
    assert_eq!(tee(0xFFFF_000D), rc::RETRY, "TEEC busy");
    assert_eq!(tee(0xFFFF_000C), rc::MEMORY, "TEEC out of memory");
    assert_eq!(tee(0xFFFF_0002), rc::CANCELED, "TEEC cancel");
    assert_eq!(tee(0xFFFF_3024), rc::FAILURE, "TEEC target dead");
    // No mapping claims success.
    for error in tpm_errors() {
        assert_ne!(error.to_tpm_rc(), rc::SUCCESS, "{error:?}");
    }
}

#[test]
fn tpm_error_response_is_a_big_endian_ten_byte_response() {
    assert_eq!(
        tpm_error_response(0x922),
        [0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x09, 0x22]
    );
    let response = tpm_error_response(0x0102_0304);
    assert_eq!(response.len(), TPM_HEADER_SIZE);
    assert_eq!(&response[6..], &[1, 2, 3, 4]);
    assert_eq!(declared_size(&response), Some(10));
}

#[test]
fn declared_size_reads_the_header_field() {
    assert_eq!(declared_size(&common::samples::STARTUP_CLEAR), Some(12));
    assert_eq!(
        declared_size(&[0x80, 0x01, 0x00, 0x00, 0x10, 0x00]),
        Some(4096)
    );
    assert_eq!(declared_size(&[0x80, 0x01, 0x00, 0x00, 0x10]), None);
    assert_eq!(declared_size(&[]), None);
}

#[test]
fn ram_window_bounds_are_exact_and_overflow_safe() {
    let window = RamWindow {
        base: 0x4000_0000,
        len: 0x1000,
    };
    assert!(window.contains(0x4000_0000, 0x1000));
    assert!(window.contains(0x4000_0800, 0x800));
    assert!(window.contains(0x4000_1000, 0), "empty range at the end");
    assert!(!window.contains(0x4000_0800, 0x801));
    assert!(!window.contains(0x3FFF_FFFF, 1));
    assert!(!window.contains(u64::MAX, 2));
    let to_top = RamWindow {
        base: u64::MAX - 1,
        len: 2,
    };
    assert!(!to_top.contains(u64::MAX - 1, 1), "window end overflows");
}

#[test]
fn login_values_match_the_tee_client_api() {
    assert_eq!(Login::Public.teec_value(), 0);
    assert_eq!(Login::User.teec_value(), 1);
    assert_eq!(Login::Group.teec_value(), 2);
    assert_eq!(Login::Application.teec_value(), 4);
}
