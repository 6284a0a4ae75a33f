//! The swtpm control channel: requests as tpm2-tss's swtpm TCTI, swtpm_ioctl and QEMU send
//! them, and tpmd's answers byte for byte.
#![allow(clippy::unwrap_used)]

use tpmd::swtpm::{
    answer, capability, code, result, ControlAnswer, ControlDecoder, ControlError, ControlEvent,
    ControlRequest, ControlResponse, SUPPORTED_CAPABILITIES,
};

/// Decodes one whole request and returns the answer's wire bytes and event.
fn exchange(request: &[u8]) -> (Vec<u8>, Option<ControlEvent>) {
    let mut decoder = ControlDecoder::new();
    let decoded = decoder.push(request).unwrap();
    assert!(!decoder.is_mid_request());
    let ControlAnswer { response, event } = answer(&decoded);
    (response.encode().to_vec(), event)
}

// ---- golden exchanges ----

#[test]
fn tcti_swtpm_set_locality_zero_is_answered_with_four_zero_bytes() {
    assert_eq!(
        exchange(&[0, 0, 0, 0x05, 0]),
        (vec![0, 0, 0, 0], None),
        "tcti-swtpm refuses to initialise without exactly this answer"
    );
}

#[test]
fn qemu_style_padded_set_locality_is_one_request() {
    let mut decoder = ControlDecoder::new();
    assert_eq!(
        decoder.push(&[0, 0, 0, 0x05, 0, 0, 0, 0]),
        Some(ControlRequest::SetLocality { locality: 0 })
    );
    // The padding was dropped: the next request decodes from a clean start.
    assert!(!decoder.is_mid_request());
    assert_eq!(
        decoder.push(&[0, 0, 0, 0x01]),
        Some(ControlRequest::GetCapability)
    );
}

#[test]
fn other_localities_are_refused_with_bad_locality() {
    for locality in [1u8, 3, 4, 5, 0xff] {
        assert_eq!(
            exchange(&[0, 0, 0, 0x05, locality]),
            (vec![0, 0, 0, 0x3d], None),
            "locality {locality}"
        );
    }
}

#[test]
fn get_capability_answers_the_supported_set() {
    let (bytes, event) = exchange(&[0, 0, 0, 0x01]);
    assert_eq!(bytes, vec![0, 0, 0, 0, 0, 0, 0x2c, 0x0f]);
    assert_eq!(event, None);
    assert_eq!(SUPPORTED_CAPABILITIES, 0x2c0f);
    for advertised in [
        capability::INIT,
        capability::SHUTDOWN,
        capability::GET_TPMESTABLISHED,
        capability::SET_LOCALITY,
        capability::STOP,
        capability::GET_CONFIG,
        capability::SET_BUFFERSIZE,
    ] {
        assert_ne!(SUPPORTED_CAPABILITIES & advertised, 0);
    }
    assert_eq!(SUPPORTED_CAPABILITIES & capability::CANCEL_TPM_CMD, 0);
    assert_eq!(SUPPORTED_CAPABILITIES & capability::SET_DATAFD, 0);
}

#[test]
fn init_from_tss2_tcti_swtpm_reset_answers_ok_and_tells_the_shell() {
    // Tss2_Tcti_Swtpm_Reset sends INIT with PTM_INIT_FLAG_DELETE_VOLATILE.
    assert_eq!(
        exchange(&[0, 0, 0, 0x02, 0, 0, 0, 1]),
        (
            vec![0, 0, 0, 0],
            Some(ControlEvent::Init {
                delete_volatile: true
            })
        )
    );
    assert_eq!(
        exchange(&[0, 0, 0, 0x02, 0, 0, 0, 0]),
        (
            vec![0, 0, 0, 0],
            Some(ControlEvent::Init {
                delete_volatile: false
            })
        )
    );
}

#[test]
fn shutdown_and_stop_answer_ok_and_tell_the_shell() {
    assert_eq!(
        exchange(&[0, 0, 0, 0x03]),
        (vec![0, 0, 0, 0], Some(ControlEvent::Shutdown))
    );
    assert_eq!(
        exchange(&[0, 0, 0, 0x0e]),
        (vec![0, 0, 0, 0], Some(ControlEvent::Stop))
    );
}

#[test]
fn get_tpm_established_answers_not_established_in_eight_bytes() {
    assert_eq!(exchange(&[0, 0, 0, 0x04]), (vec![0; 8], None));
    assert_eq!(
        &*ControlResponse::Established { established: true }.encode(),
        &[0, 0, 0, 0, 1, 0, 0, 0]
    );
}

#[test]
fn set_buffersize_answers_4096_for_any_request() {
    let expected = vec![0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0x10, 0, 0, 0, 0x10, 0];
    assert_eq!(
        exchange(&[0, 0, 0, 0x11, 0, 0, 0, 0]),
        (expected.clone(), None)
    );
    assert_eq!(
        exchange(&[0, 0, 0, 0x11, 0, 0, 0x20, 0]),
        (expected, None),
        "a request for 8192 still gets the fixed 4096"
    );
}

#[test]
fn get_config_answers_no_key_flags() {
    assert_eq!(exchange(&[0, 0, 0, 0x0f]), (vec![0; 8], None));
}

#[test]
fn cancel_answers_tpm_fail() {
    assert_eq!(exchange(&[0, 0, 0, 0x09]), (vec![0, 0, 0, 0x09], None));
}

#[test]
fn unimplemented_protocol_commands_answer_tpm_fail() {
    let requests: [&[u8]; 7] = [
        &[0, 0, 0, 0x06],
        &[0, 0, 0, 0x08],
        &[0, 0, 0, 0x0a],
        &[0, 0, 0, 0x0b, 0],
        &[0, 0, 0, 0x0c, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0],
        &[0, 0, 0, 0x10],
        &[
            0, 0, 0, 0x12, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
    ];
    for request in requests {
        assert_eq!(
            exchange(request),
            (vec![0, 0, 0, 0x09], None),
            "{request:02x?}"
        );
    }
}

#[test]
fn codes_outside_the_protocol_answer_bad_ordinal() {
    for code in [0u32, 0x13, 0x100, u32::MAX] {
        let mut decoder = ControlDecoder::new();
        let decoded = decoder.push(&code.to_be_bytes()).unwrap();
        assert_eq!(decoded, ControlRequest::Unknown { code });
        assert_eq!(
            &*answer(&decoded).response.encode(),
            &[0, 0, 0, 0x0a],
            "code {code:#x}"
        );
    }
}

// ---- framing across reads ----

#[test]
fn a_request_split_across_reads_completes_on_its_last_byte() {
    let request = [0, 0, 0, 0x02, 0, 0, 0, 1];
    let mut decoder = ControlDecoder::new();
    for byte in &request[..7] {
        assert_eq!(decoder.push(&[*byte]), None);
        assert!(decoder.is_mid_request());
    }
    assert_eq!(
        decoder.push(&request[7..]),
        Some(ControlRequest::Init { flags: 1 })
    );
}

#[test]
fn counted_payloads_are_consumed_across_reads() {
    // HASH_DATA: u32 length 5, then five data bytes in two reads.
    let mut decoder = ControlDecoder::new();
    assert_eq!(decoder.push(&[0, 0, 0, 0x07, 0, 0, 0, 5, 1, 2]), None);
    assert!(decoder.is_mid_request());
    assert_eq!(
        decoder.push(&[3, 4, 5]),
        Some(ControlRequest::Unsupported {
            code: code::HASH_DATA
        })
    );
    // SET_STATEBLOB: flags, type, length 3 at payload offset 8, then the blob.
    let request = vec![0, 0, 0, 0x0d, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 3];
    assert_eq!(decoder.push(&request), None);
    assert_eq!(
        decoder.push(&[9, 9, 9]),
        Some(ControlRequest::Unsupported {
            code: code::SET_STATEBLOB
        })
    );
    assert!(!decoder.is_mid_request());
}

#[test]
fn an_empty_counted_payload_completes_at_once() {
    let mut decoder = ControlDecoder::new();
    assert_eq!(
        decoder.push(&[0, 0, 0, 0x07, 0, 0, 0, 0]),
        Some(ControlRequest::Unsupported {
            code: code::HASH_DATA
        })
    );
}

#[test]
fn input_ending_inside_a_fixed_payload_is_truncation_answered_bad_parameter() {
    let mut decoder = ControlDecoder::new();
    assert_eq!(decoder.push(&[0, 0, 0, 0x02, 0, 0]), None);
    let error = decoder.finish().unwrap_err();
    assert_eq!(
        error,
        ControlError::Truncated {
            code: Some(code::INIT),
            missing: 2
        }
    );
    assert_eq!(&*error.response().encode(), &[0, 0, 0, 0x03]);
    assert_eq!(error.response().result(), result::BAD_PARAMETER);
    // finish() leaves a clean decoder.
    assert!(!decoder.is_mid_request());
    assert_eq!(decoder.finish(), Ok(()));
}

#[test]
fn input_ending_inside_the_code_or_a_counted_payload_is_truncation() {
    let mut decoder = ControlDecoder::new();
    assert_eq!(decoder.push(&[0, 0]), None);
    assert_eq!(
        decoder.finish(),
        Err(ControlError::Truncated {
            code: None,
            missing: 2
        })
    );
    assert_eq!(decoder.push(&[0, 0, 0, 0x07, 0, 1, 0, 0, 0xaa]), None);
    assert_eq!(
        decoder.finish(),
        Err(ControlError::Truncated {
            code: Some(code::HASH_DATA),
            missing: 0x1_0000 - 1
        })
    );
}

#[test]
fn only_real_answers_carry_a_failure_result() {
    assert_eq!(
        answer(&ControlRequest::GetCapability).response.result(),
        result::SUCCESS
    );
    assert_eq!(
        answer(&ControlRequest::SetLocality { locality: 2 })
            .response
            .result(),
        result::BAD_LOCALITY
    );
    assert_eq!(
        answer(&ControlRequest::Unknown { code: 77 })
            .response
            .result(),
        result::BAD_ORDINAL
    );
}
