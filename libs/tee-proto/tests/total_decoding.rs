//! Decoding is total: any byte string gives a frame or a typed error, never a panic; strict
//! prefixes of valid frames never decode; whatever decodes re-encodes to a frame that decodes
//! to the same value.
#![allow(clippy::unwrap_used)]

mod common;

use common::{encode_to_vec, samples, strategies};
use proptest::prelude::*;
use proptest::sample::Index;
use serde::{de::DeserializeOwned, Serialize};
use std::fmt::Debug;
use tee_proto::bnxt::{BnxtRequest, BnxtResponse};
use tee_proto::lifecycle::{InitRequest, ServerEvent};
use tee_proto::teed::{TeedRequest, TeedResponse};
use tee_proto::tpm::{TpmRequest, TpmResponse};
use tee_proto::{decode, Frame, ProtoError, FRAME_MAX};

/// Decodes `bytes` as a frame of `T`; if that works, checks it is stable under re-encoding.
fn decode_checked<T>(bytes: &[u8]) -> Result<(), ProtoError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let frame: Frame<T> = decode(bytes)?;
    let again = encode_to_vec(frame.header, &frame.body);
    let decoded_again: Frame<T> = decode(&again).unwrap();
    assert_eq!(decoded_again, frame);
    Ok(())
}

/// Feeds `bytes` to the decoder of every message type.
fn decode_as_every_type(bytes: &[u8]) {
    let _ = decode_checked::<TeedRequest>(bytes);
    let _ = decode_checked::<TeedResponse>(bytes);
    let _ = decode_checked::<InitRequest>(bytes);
    let _ = decode_checked::<ServerEvent>(bytes);
    let _ = decode_checked::<TpmRequest>(bytes);
    let _ = decode_checked::<TpmResponse>(bytes);
    let _ = decode_checked::<BnxtRequest>(bytes);
    let _ = decode_checked::<BnxtResponse>(bytes);
}

/// Asserts that the first `cut` bytes (fewer than all) of a valid frame do not decode as `T`.
fn assert_prefix_fails<T: DeserializeOwned + Debug>(bytes: &[u8], cut: usize) {
    assert!(cut < bytes.len());
    let result = decode::<T>(&bytes[..cut]);
    assert!(
        result.is_err(),
        "prefix of {cut} of {} bytes decoded: {result:?}",
        bytes.len()
    );
}

/// Every strict prefix of every sample fails. The data-carrying samples are long, so beyond
/// their first 300 bytes prefixes are checked at a stride, plus the last few.
fn check_sample_prefixes<T>(samples: Vec<T>)
where
    T: Serialize + DeserializeOwned + Debug,
{
    for sample in samples {
        let bytes = encode_to_vec(common::worst_header(), &sample);
        let len = bytes.len();
        let cuts = (0..len.min(300))
            .chain((300..len).step_by(97))
            .chain(len.saturating_sub(8)..len);
        for cut in cuts {
            assert_prefix_fails::<T>(&bytes, cut);
        }
    }
}

#[test]
fn strict_prefixes_of_samples_fail() {
    // Prefix-freedom: a frame cut short is never mistaken for a shorter valid one.
    check_sample_prefixes(samples::teed_requests());
    check_sample_prefixes(samples::teed_responses());
    check_sample_prefixes(samples::init_requests());
    check_sample_prefixes(samples::server_events());
    check_sample_prefixes(samples::tpm_requests());
    check_sample_prefixes(samples::tpm_responses());
    check_sample_prefixes(samples::bnxt_requests());
    check_sample_prefixes(samples::bnxt_responses());
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..FRAME_MAX + 16)) {
        decode_as_every_type(&bytes);
    }

    #[test]
    fn random_bodies_behind_a_valid_header_never_panic(
        header in strategies::header(),
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        // Past the version check, so the body decoders themselves are exercised.
        let mut bytes = encode_to_vec(header, &());
        bytes.extend_from_slice(&body);
        decode_as_every_type(&bytes);
    }

    #[test]
    fn truncated_frames_fail(
        teed in strategies::teed_request(),
        tpm in strategies::tpm_response(),
        bnxt in strategies::bnxt_response(),
        event in strategies::server_event(),
        cut in any::<Index>(),
    ) {
        let header = common::worst_header();
        let teed = encode_to_vec(header, &teed);
        assert_prefix_fails::<TeedRequest>(&teed, cut.index(teed.len()));
        let tpm = encode_to_vec(header, &tpm);
        assert_prefix_fails::<TpmResponse>(&tpm, cut.index(tpm.len()));
        let bnxt = encode_to_vec(header, &bnxt);
        assert_prefix_fails::<BnxtResponse>(&bnxt, cut.index(bnxt.len()));
        let event = encode_to_vec(header, &event);
        assert_prefix_fails::<ServerEvent>(&event, cut.index(event.len()));
    }

    #[test]
    fn corrupted_frames_never_panic(
        request in strategies::teed_request(),
        response in strategies::bnxt_response(),
        position in any::<Index>(),
        value in any::<u8>(),
    ) {
        for mut bytes in [
            encode_to_vec(common::worst_header(), &request),
            encode_to_vec(common::worst_header(), &response),
        ] {
            let at = position.index(bytes.len());
            bytes[at] = value;
            decode_as_every_type(&bytes);
        }
    }
}
