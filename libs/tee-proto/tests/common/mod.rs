//! Shared test material: one sample of every variant of every message (typical and worst-case
//! field values), coverage checks that stop compiling when a variant is added, and proptest
//! strategies for arbitrary messages.
#![allow(dead_code, clippy::unwrap_used)]

pub mod samples;
pub mod strategies;

use serde::{de::DeserializeOwned, Serialize};
use std::fmt::Debug;
use tee_proto::{decode, encode, Frame, Header, FRAME_MAX};

/// A header with the largest varints, so sizes measured with it are worst cases.
pub fn worst_header() -> Header {
    Header::new(u32::MAX, u32::MAX, u32::MAX)
}

/// Encodes `body` in a frame, decodes it back, asserts equality and returns the encoded size.
pub fn roundtrip<T>(header: Header, body: T) -> usize
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let frame = Frame { header, body };
    let mut buf = vec![0u8; FRAME_MAX];
    let encoded = encode(&frame, &mut buf).unwrap().to_vec();
    let decoded: Frame<T> = decode(&encoded).unwrap();
    assert_eq!(decoded, frame);
    encoded.len()
}

/// Encodes a frame into a fresh vector.
pub fn encode_to_vec<T: Serialize>(header: Header, body: &T) -> Vec<u8> {
    let mut buf = vec![0u8; FRAME_MAX];
    encode(&Frame { header, body }, &mut buf).unwrap().to_vec()
}
