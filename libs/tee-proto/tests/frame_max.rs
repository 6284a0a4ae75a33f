//! FRAME_MAX bounds every frame of every interface: each message's worst case (largest varints,
//! full buffers) under the worst-case header fits, and the largest frames have the exact sizes
//! the encoding implies.
#![allow(clippy::unwrap_used)]

mod common;

use common::samples::*;
use common::{encode_to_vec, worst_header};
use serde::Serialize;
use tee_proto::FRAME_MAX;

fn largest_frame<T: Serialize>(samples: &[T]) -> usize {
    samples
        .iter()
        .map(|sample| encode_to_vec(worst_header(), sample).len())
        .max()
        .unwrap()
}

#[test]
fn every_interface_fits_frame_max() {
    let largest = [
        ("TeedRequest", largest_frame(&teed_requests())),
        ("TeedResponse", largest_frame(&teed_responses())),
        ("InitRequest", largest_frame(&init_requests())),
        ("ServerEvent", largest_frame(&server_events())),
        ("TpmRequest", largest_frame(&tpm_requests())),
        ("TpmResponse", largest_frame(&tpm_responses())),
        ("BnxtRequest", largest_frame(&bnxt_requests())),
        ("BnxtResponse", largest_frame(&bnxt_responses())),
    ];
    for (name, size) in largest {
        assert!(size <= FRAME_MAX, "{name}: {size} > {FRAME_MAX}");
    }
}

#[test]
fn worst_case_sizes_are_what_the_encoding_implies() {
    // Header: version 1 (1 byte) + three u32 varints at their 5-byte maximum.
    let header = 1 + 3 * 5;
    // Variant tag (1) + length varint of 4096 (2) + the bytes.
    assert_eq!(largest_frame(&tpm_requests()), header + 1 + 2 + 4096);
    assert_eq!(largest_frame(&tpm_responses()), header + 1 + 2 + 4096);
    // Variant tag (1) + offset (5) + length varint (2) + the bytes: the largest of all.
    assert_eq!(largest_frame(&bnxt_responses()), header + 1 + 5 + 2 + 4096);
    // Invoke: tag + three u32 + length (1) + four ValueInOut of tag + three 10-byte u64.
    assert_eq!(
        largest_frame(&teed_requests()),
        header + 1 + 3 * 5 + 1 + 4 * (1 + 3 * 10)
    );
}

#[test]
fn small_interfaces_stay_far_below_the_limit() {
    // Control messages should not grow towards the data-carrying limit unnoticed.
    for size in [
        largest_frame(&teed_requests()),
        largest_frame(&teed_responses()),
        largest_frame(&init_requests()),
        largest_frame(&server_events()),
        largest_frame(&bnxt_requests()),
    ] {
        assert!(size <= 256, "control frame of {size} bytes");
    }
}
