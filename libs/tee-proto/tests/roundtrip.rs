//! Every variant of every message survives encode → decode unchanged, under a typical and a
//! worst-case header, and arbitrary messages do too.
#![allow(clippy::unwrap_used)]

mod common;

use common::samples::*;
use common::{roundtrip, strategies, worst_header};
use proptest::prelude::*;
use tee_proto::{Header, FRAME_MAX};

fn roundtrip_all<T>(samples: Vec<T>)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug + Clone,
{
    for sample in samples {
        roundtrip(Header::new(3, 0, 17), sample.clone());
        roundtrip(worst_header(), sample);
    }
}

#[test]
fn samples_cover_every_variant() {
    assert_covers(
        &wire_errors(),
        wire_error_variant,
        WIRE_ERROR_VARIANTS,
        "WireError",
    );
    assert_covers(&params(), param_variant, PARAM_VARIANTS, "teed::Param");
    assert_covers(
        &teed_requests(),
        teed_request_variant,
        TEED_REQUEST_VARIANTS,
        "TeedRequest",
    );
    assert_covers(
        &teed_responses(),
        teed_response_variant,
        TEED_RESPONSE_VARIANTS,
        "TeedResponse",
    );
    assert_covers(
        &init_requests(),
        init_request_variant,
        INIT_REQUEST_VARIANTS,
        "InitRequest",
    );
    assert_covers(
        &server_events(),
        server_event_variant,
        SERVER_EVENT_VARIANTS,
        "ServerEvent",
    );
    assert_covers(
        &tpm_errors(),
        tpm_error_variant,
        TPM_ERROR_VARIANTS,
        "TpmError",
    );
    assert_covers(
        &tpm_requests(),
        tpm_request_variant,
        TPM_REQUEST_VARIANTS,
        "TpmRequest",
    );
    assert_covers(
        &tpm_responses(),
        tpm_response_variant,
        TPM_RESPONSE_VARIANTS,
        "TpmResponse",
    );
    assert_covers(
        &bnxt_errors(),
        bnxt_error_variant,
        BNXT_ERROR_VARIANTS,
        "BnxtError",
    );
    assert_covers(
        &bnxt_requests(),
        bnxt_request_variant,
        BNXT_REQUEST_VARIANTS,
        "BnxtRequest",
    );
    assert_covers(
        &bnxt_responses(),
        bnxt_response_variant,
        BNXT_RESPONSE_VARIANTS,
        "BnxtResponse",
    );
}

#[test]
fn teed_messages_roundtrip() {
    roundtrip_all(teed_requests());
    roundtrip_all(teed_responses());
}

#[test]
fn lifecycle_messages_roundtrip() {
    roundtrip_all(init_requests());
    roundtrip_all(server_events());
}

#[test]
fn tpm_messages_roundtrip() {
    roundtrip_all(tpm_requests());
    roundtrip_all(tpm_responses());
}

#[test]
fn bnxt_messages_roundtrip() {
    roundtrip_all(bnxt_requests());
    roundtrip_all(bnxt_responses());
}

#[test]
fn distinct_messages_encode_distinctly() {
    // A decoder can only tell variants apart if their encodings differ.
    let encodings: Vec<Vec<u8>> = teed_requests()
        .iter()
        .map(|request| common::encode_to_vec(Header::new(1, 1, 1), request))
        .collect();
    for (index, encoding) in encodings.iter().enumerate() {
        for other in &encodings[index + 1..] {
            assert_ne!(encoding, other);
        }
    }
}

proptest! {
    #[test]
    fn arbitrary_teed_frames_roundtrip_within_limit(
        header in strategies::header(),
        request in strategies::teed_request(),
        response in strategies::teed_response(),
    ) {
        prop_assert!(roundtrip(header, request) <= FRAME_MAX);
        prop_assert!(roundtrip(header, response) <= FRAME_MAX);
    }

    #[test]
    fn arbitrary_lifecycle_frames_roundtrip_within_limit(
        header in strategies::header(),
        request in strategies::init_request(),
        event in strategies::server_event(),
    ) {
        prop_assert!(roundtrip(header, request) <= FRAME_MAX);
        prop_assert!(roundtrip(header, event) <= FRAME_MAX);
    }

    #[test]
    fn arbitrary_tpm_frames_roundtrip_within_limit(
        header in strategies::header(),
        request in strategies::tpm_request(),
        response in strategies::tpm_response(),
    ) {
        prop_assert!(roundtrip(header, request) <= FRAME_MAX);
        prop_assert!(roundtrip(header, response) <= FRAME_MAX);
    }

    #[test]
    fn arbitrary_bnxt_frames_roundtrip_within_limit(
        header in strategies::header(),
        request in strategies::bnxt_request(),
        response in strategies::bnxt_response(),
    ) {
        prop_assert!(roundtrip(header, request) <= FRAME_MAX);
        prop_assert!(roundtrip(header, response) <= FRAME_MAX);
    }
}
