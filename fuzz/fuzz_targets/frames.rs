//! tee-proto frames of every interface on hostile bytes: header and body decoders must never
//! panic (teed, tpmd, bnxtd, init and teectl each read these from a peer process).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tee_proto::bnxt::{BnxtRequest, BnxtResponse};
use tee_proto::control::{ControlRequest, ControlResponse};
use tee_proto::frame::{decode, decode_header};
use tee_proto::lifecycle::{InitRequest, ServerEvent};
use tee_proto::secure::{SecureRequest, SecureResponse};
use tee_proto::teed::{TeedRequest, TeedResponse};
use tee_proto::tpm::{TpmRequest, TpmResponse};

fuzz_target!(|data: &[u8]| {
    let _ = decode_header(data);
    let _ = decode::<TeedRequest>(data);
    let _ = decode::<TeedResponse>(data);
    let _ = decode::<InitRequest>(data);
    let _ = decode::<ServerEvent>(data);
    let _ = decode::<TpmRequest>(data);
    let _ = decode::<TpmResponse>(data);
    let _ = decode::<BnxtRequest>(data);
    let _ = decode::<BnxtResponse>(data);
    let _ = decode::<ControlRequest>(data);
    let _ = decode::<ControlResponse>(data);
    let _ = decode::<SecureRequest>(data);
    let _ = decode::<SecureResponse>(data);
});
