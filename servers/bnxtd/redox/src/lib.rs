//! bnxtd on Redox, the bgad shape: the core is `bnxtd::Bnxtd`, unchanged; the `bnxt` scheme
//! adapter is `tee_redox::client::ClientScheme` with [`NicFrames`], the consumer path's codec;
//! `main.rs` is the Redox-only main (`tee_redox::sys::client`).
//!
//! `/scheme/bnxt/nic` is for the NIC driver, which runs as root (Redox drivers do): it writes
//! `tee_proto::bnxt` request frames (`Load`, `CoredumpLen`, `CopyCoredump`) and reads one answer
//! frame per request, the API Linux's tee_bnxt_fw gives bnxt_en (`load()`, `copy_coredump()`).

use bnxtd::BnxtService;
use tee_proto::bnxt::BnxtResponse;
use tee_proto::{BnxtInterface, Frame, Generation, FRAME_MAX};
use tee_redox::client::{decode_frame, encode_frame, ClientScheme, ConsumerCodec, Decoded};
use tee_redox::policy::Who;
use tee_redox::{Caller, SchemeError};

/// The codec of `/scheme/bnxt/nic`: tee-proto frames both ways.
#[derive(Debug)]
pub enum NicFrames {}

impl ConsumerCodec<BnxtInterface> for NicFrames {
    const PATH: &'static str = "nic";
    const MAX_WRITE: usize = FRAME_MAX;

    fn may_open(caller: &Caller) -> bool {
        Who::Root.admits(caller)
    }

    fn decode(bytes: &[u8], _request_id: u32, generation: Generation) -> Decoded<BnxtInterface> {
        decode_frame::<BnxtInterface>(bytes, generation)
    }

    fn encode(frame: &Frame<BnxtResponse>) -> Result<Vec<u8>, SchemeError> {
        encode_frame(frame)
    }
}

/// The `bnxt` scheme.
pub type BnxtScheme<M> = ClientScheme<BnxtService, NicFrames, M>;
