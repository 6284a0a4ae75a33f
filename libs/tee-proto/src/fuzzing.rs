//! The check behind the `frames` fuzz target (`fuzz/`), kept here so that the default test run
//! replays every committed corpus and regression input through the same code
//! (`tests/fuzz_corpus.rs`). It panics only when a property fails.

use core::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::bnxt::{BnxtRequest, BnxtResponse};
use crate::control::{ControlRequest, ControlResponse};
use crate::lifecycle::{InitRequest, ServerEvent};
use crate::secure::{SecureRequest, SecureResponse};
use crate::teed::{TeedRequest, TeedResponse};
use crate::tpm::{TpmRequest, TpmResponse};
use crate::{decode, decode_header, encode, FRAME_MAX};

/// Decodes `bytes` as a frame of `T`; what decodes must re-encode (within [`FRAME_MAX`]) to
/// bytes that decode to the same frame, with the header [`decode_header`] saw.
fn round_trip<T>(bytes: &[u8])
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let Ok(frame) = decode::<T>(bytes) else {
        return;
    };
    let header = decode_header(bytes).map(|(header, _)| header);
    assert_eq!(header, Ok(frame.header), "a frame's header decodes alone");
    let mut buf = [0u8; FRAME_MAX];
    let encoded = encode(&frame, &mut buf);
    let Ok(encoded) = encoded else {
        panic!("a decoded frame does not re-encode: {encoded:?}");
    };
    assert!(encoded.len() <= bytes.len(), "re-encoding grew the frame");
    let again = decode::<T>(encoded);
    assert_eq!(again.as_ref(), Ok(&frame), "decode -> encode -> decode");
}

/// Every tee-proto frame decoder on hostile bytes (teed, tpmd, bnxtd, init and teectl each read
/// these from a peer process): never a panic, a typed error or a frame that round-trips.
pub fn check_frames(data: &[u8]) {
    let _ = decode_header(data);
    round_trip::<TeedRequest>(data);
    round_trip::<TeedResponse>(data);
    round_trip::<InitRequest>(data);
    round_trip::<ServerEvent>(data);
    round_trip::<TpmRequest>(data);
    round_trip::<TpmResponse>(data);
    round_trip::<BnxtRequest>(data);
    round_trip::<BnxtResponse>(data);
    round_trip::<ControlRequest>(data);
    round_trip::<ControlResponse>(data);
    round_trip::<SecureRequest>(data);
    round_trip::<SecureResponse>(data);
}
