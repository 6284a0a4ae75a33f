//! tpmd on Redox, the bgad shape: the core is `tpmd::Tpmd`, unchanged; the `tpm` scheme adapter
//! is `tee_redox::client::ClientScheme` with [`RawTpm`], the consumer path's codec; `main.rs` is
//! the Redox-only main (`tee_redox::sys::client`).
//!
//! `/scheme/tpm/tpm0` speaks what TPM stacks speak to Linux's `/dev/tpmrm0` (tpm2-tss's device
//! TCTI): write one whole TPM 2.0 command, read its whole response. A failure around the TPM (no
//! TEE this boot, a restart, a malformed command) is a TPM response too, with the response code
//! `tee_proto::tpm::TpmError::to_tpm_rc` gives it, so a TPM-only consumer understands it.

use tee_proto::tpm::{tpm_error_response, TpmRequest, TpmResponse, TPM_BUFFER_MAX};
use tee_proto::{Frame, Generation, Header, TpmInterface};
use tee_redox::client::{ClientScheme, ConsumerCodec, Decoded};
use tee_redox::policy::{Who, TPM_GROUP};
use tee_redox::{Caller, SchemeError};
use tpmd::FtpmService;

/// The codec of `/scheme/tpm/tpm0`: raw TPM 2.0 commands and responses.
#[derive(Debug)]
pub enum RawTpm {}

impl ConsumerCodec<TpmInterface> for RawTpm {
    const PATH: &'static str = "tpm0";
    /// One command fills at most the command half of tpmd's buffer (tpm_ftpm_tee's layout).
    const MAX_WRITE: usize = TPM_BUFFER_MAX;

    fn may_open(caller: &Caller) -> bool {
        Who::RootOrGroup(TPM_GROUP).admits(caller)
    }

    fn decode(bytes: &[u8], request_id: u32, _generation: Generation) -> Decoded<TpmInterface> {
        let Ok(bytes) = heapless::Vec::from_slice(bytes) else {
            return Decoded::Reject(SchemeError::TooLarge {
                len: bytes.len(),
                max: TPM_BUFFER_MAX,
            });
        };
        // The consumer names no generation: its command is never stale.
        Decoded::Request(Frame {
            header: Header::new(0, 0, request_id),
            body: TpmRequest::Command { bytes },
        })
    }

    fn encode(frame: &Frame<TpmResponse>) -> Result<Vec<u8>, SchemeError> {
        Ok(match &frame.body {
            TpmResponse::Response { bytes } => bytes.to_vec(),
            TpmResponse::Error(error) => tpm_error_response(error.to_tpm_rc()).to_vec(),
        })
    }
}

/// The `tpm` scheme.
pub type TpmScheme<M> = ClientScheme<FtpmService, RawTpm, M>;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
