use tee_proto::tpm::{rc, TpmError, TPM_HEADER_SIZE};

use super::*;

fn caller(uid: u32, gid: u32) -> Caller {
    Caller { pid: 5, uid, gid }
}

/// tpm-dev-common.c tpm_common_write: one write is one whole command for the TPM.
#[test]
fn a_write_is_one_command_with_the_handles_own_request_id() {
    let command = [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 8];
    let Decoded::Request(frame) = RawTpm::decode(&command, 41, 9) else {
        panic!("not a request");
    };
    assert_eq!(frame.header.request_id, 41);
    assert_eq!(
        frame.header.to_generation, 0,
        "never stale: the consumer names no tpmd"
    );
    let TpmRequest::Command { bytes } = frame.body;
    assert_eq!(bytes.as_slice(), &command);
    assert!(matches!(
        RawTpm::decode(&[0u8; TPM_BUFFER_MAX + 1], 1, 9),
        Decoded::Reject(SchemeError::TooLarge { .. })
    ));
}

/// A failure around the TPM reads as a TPM response code, for consumers that speak only TPM.
#[test]
fn failures_read_back_as_tpm_response_codes() {
    let answer = |body| Frame {
        header: Header::new(3, 0, 1),
        body,
    };
    let response = heapless::Vec::from_slice(&[0x80, 0x01, 0, 0, 0, 10, 0, 0, 0, 0]).unwrap();
    let bytes = RawTpm::encode(&answer(TpmResponse::Response { bytes: response })).unwrap();
    assert_eq!(bytes.len(), TPM_HEADER_SIZE);
    for (error, code) in [
        (TpmError::Retryable, rc::RETRY),
        (TpmError::ServerRestarted { generation: 4 }, rc::RETRY),
        (TpmError::TeeUnavailable, rc::FAILURE),
        (TpmError::ShuttingDown, rc::FAILURE),
        (TpmError::CommandTooShort { len: 3 }, rc::COMMAND_SIZE),
    ] {
        let bytes = RawTpm::encode(&answer(TpmResponse::Error(error))).unwrap();
        assert_eq!(bytes.len(), TPM_HEADER_SIZE);
        assert_eq!(
            u32::from_be_bytes(bytes[6..10].try_into().unwrap()),
            code,
            "{error}"
        );
    }
}

/// As Linux's /dev/tpmrm0 (owned by the tss group), for root and the `tpm` group.
#[test]
fn tpm0_is_for_root_and_the_tpm_group() {
    assert!(RawTpm::may_open(&caller(0, 0)));
    assert!(RawTpm::may_open(&caller(1000, TPM_GROUP)));
    assert!(!RawTpm::may_open(&caller(1000, 1000)));
    assert_eq!(RawTpm::PATH, "tpm0");
}
