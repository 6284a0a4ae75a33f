//! TPM consumer ↔ tpmd: raw TPM 2.0 commands in, raw responses out.
//!
//! * The consumer sends one [`TpmRequest::Command`] holding a whole TPM 2.0 command (header
//!   included, at most [`TPM_BUFFER_MAX`] bytes); tpmd answers with one [`TpmResponse`] carrying
//!   the same `request_id`. tpmd runs one command at a time, in arrival order, because the fTPM
//!   TA has a single session and the TPM itself is serial.
//! * `Response` holds the TPM's complete response, whatever its response code: a TPM error is a
//!   TPM answer, not an IPC error. [`TpmResponse::Error`] is for failures around the TPM (no TEE,
//!   restart, malformed command, shutdown); a consumer that speaks only TPM can turn it into a
//!   TPM response with [`TpmError::to_tpm_rc`] and [`tpm_error_response`].
//! * A command in flight when tpmd or teed restarts gets `Retryable` (or `ServerRestarted`),
//!   never a wrong answer. After init's `Shutdown`, tpmd answers `ShuttingDown`; in a boot where
//!   teed declined, `TeeUnavailable`.
//! * Payloads are secrets (keys, auth values): never log them.

use heapless::Vec;
use serde::{Deserialize, Serialize};

use crate::frame::Generation;

/// Largest TPM command and largest TPM response (each half of tpmd's 8 KiB shared buffer).
pub const TPM_BUFFER_MAX: usize = 4096;

/// Size of a TPM 2.0 command or response header: tag (2), size (4), code (4), big-endian.
pub const TPM_HEADER_SIZE: usize = 10;

/// TPM 2.0 response codes tpmd produces itself.
pub mod rc {
    pub const SUCCESS: u32 = 0x000;
    /// TPM_RC_FAILURE: the TPM is in failure mode / unreachable.
    pub const FAILURE: u32 = 0x101;
    /// TPM_RC_COMMAND_SIZE: the command's size is inconsistent or too large.
    pub const COMMAND_SIZE: u32 = 0x142;
    /// TPM_RC_MEMORY: out of memory, may succeed later.
    pub const MEMORY: u32 = 0x904;
    /// TPM_RC_CANCELED: the command was cancelled.
    pub const CANCELED: u32 = 0x909;
    /// TPM_RC_RETRY: the TPM was busy; send the command again.
    pub const RETRY: u32 = 0x922;
}

/// TPM_ST_NO_SESSIONS, the tag of a response without sessions.
pub const TPM_ST_NO_SESSIONS: u16 = 0x8001;

// TEE Client API result codes the mapping distinguishes (kept local so the protocol does not
// depend on the ABI crate).
const TEEC_ERROR_CANCEL: u32 = 0xFFFF_0002;
const TEEC_ERROR_OUT_OF_MEMORY: u32 = 0xFFFF_000C;
const TEEC_ERROR_BUSY: u32 = 0xFFFF_000D;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TpmRequest {
    /// One complete TPM 2.0 command.
    Command {
        #[serde(with = "crate::byte_vec")]
        bytes: Vec<u8, TPM_BUFFER_MAX>,
    },
}

// Without an allocator the data must live inline; the size difference is the point.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TpmResponse {
    /// One complete TPM 2.0 response.
    Response {
        #[serde(with = "crate::byte_vec")]
        bytes: Vec<u8, TPM_BUFFER_MAX>,
    },
    Error(TpmError),
}

/// Why tpmd could not produce a TPM response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum TpmError {
    /// teed declined this boot (crash kernel, no secure world): no TPM until the next boot.
    #[error("TEE unavailable")]
    TeeUnavailable,
    /// The command was lost to a restart; sending it again is safe.
    #[error("command lost, retry")]
    Retryable,
    /// The frame was addressed to an older tpmd; resend to this generation.
    #[error("tpmd restarted, now generation {generation}")]
    ServerRestarted { generation: Generation },
    /// The frame did not decode as a TPM request.
    #[error("malformed request")]
    BadRequest,
    #[error("command of {len} bytes exceeds the TPM buffer")]
    CommandTooLarge { len: u32 },
    #[error("command of {len} bytes is shorter than a TPM header")]
    CommandTooShort { len: u32 },
    /// The TA's response declared an impossible size.
    #[error("TPM response declares {declared} bytes")]
    BadResponse { declared: u32 },
    /// The secure world failed the call with a TEE Client API result code and origin.
    #[error("secure world returned {code:#010x} (origin {origin})")]
    Tee { code: u32, origin: u32 },
    #[error("shutting down")]
    ShuttingDown,
}

impl TpmError {
    /// Whether sending the same command again may succeed without anything else changing.
    pub fn is_retryable(&self) -> bool {
        matches!(self, TpmError::Retryable | TpmError::ServerRestarted { .. })
    }

    /// The TPM 2.0 response code that tells a TPM-only client the same thing.
    pub fn to_tpm_rc(&self) -> u32 {
        match self {
            TpmError::Retryable | TpmError::ServerRestarted { .. } => rc::RETRY,
            TpmError::CommandTooLarge { .. } | TpmError::CommandTooShort { .. } => rc::COMMAND_SIZE,
            TpmError::Tee { code, .. } => match *code {
                TEEC_ERROR_BUSY => rc::RETRY,
                TEEC_ERROR_OUT_OF_MEMORY => rc::MEMORY,
                TEEC_ERROR_CANCEL => rc::CANCELED,
                _ => rc::FAILURE,
            },
            TpmError::TeeUnavailable
            | TpmError::BadRequest
            | TpmError::BadResponse { .. }
            | TpmError::ShuttingDown => rc::FAILURE,
        }
    }
}

/// A 10-byte TPM 2.0 response with no sessions, no parameters and response code `rc`.
pub fn tpm_error_response(rc: u32) -> [u8; TPM_HEADER_SIZE] {
    let mut response = [0u8; TPM_HEADER_SIZE];
    response[0..2].copy_from_slice(&TPM_ST_NO_SESSIONS.to_be_bytes());
    response[2..6].copy_from_slice(&(TPM_HEADER_SIZE as u32).to_be_bytes());
    response[6..10].copy_from_slice(&rc.to_be_bytes());
    response
}

/// The size a TPM 2.0 command or response declares in its header (big-endian at bytes 2..6),
/// or `None` if `bytes` is shorter than that field.
pub fn declared_size(bytes: &[u8]) -> Option<u32> {
    let field: [u8; 4] = bytes.get(2..6)?.try_into().ok()?;
    Some(u32::from_be_bytes(field))
}
