//! NIC driver ↔ bnxtd: firmware fastboot and crash-dump copy through the BNXT TA.
//!
//! * The driver sends [`BnxtRequest`]s; bnxtd answers each with one [`BnxtResponse`] carrying the
//!   same `request_id`, in arrival order (bnxtd has one session and one 4 MiB buffer).
//! * `Load` asks the TA to fast-boot the NIC firmware: `Loaded`, or `CorruptImage` when the TA
//!   finds no valid image.
//! * A crash dump is read with `CoredumpLen`, then `CopyCoredump` in chunks of at most
//!   [`COREDUMP_CHUNK_MAX`] bytes at increasing offsets. bnxtd fetches windows of at most
//!   [`COREDUMP_WINDOW_MAX`] bytes from the TA into its shared buffer and serves chunks from them;
//!   an offset at or past the length is `BadOffset`, a size of 0 or over the chunk limit
//!   `BadSize`. A chunk may be shorter than asked at the end of the dump.
//! * After init's `Shutdown`, bnxtd answers `NoDevice`; in a boot where teed declined,
//!   `TeeUnavailable`. A request lost to a restart gets `Retryable` (or `ServerRestarted`).

use heapless::Vec;
use serde::{Deserialize, Serialize};

use crate::frame::Generation;

/// Most coredump bytes in one frame.
pub const COREDUMP_CHUNK_MAX: usize = 4096;

/// Most coredump bytes bnxtd fetches from the TA per call (the size of its shared buffer).
pub const COREDUMP_WINDOW_MAX: u32 = 4 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BnxtRequest {
    Load,
    CoredumpLen,
    CopyCoredump { offset: u32, size: u32 },
}

// Without an allocator the data must live inline; the size difference is the point.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BnxtResponse {
    Loaded,
    CoredumpLen {
        len: u32,
    },
    /// Coredump bytes starting at `offset`.
    Coredump {
        offset: u32,
        #[serde(with = "crate::byte_vec")]
        data: Vec<u8, COREDUMP_CHUNK_MAX>,
    },
    Error(BnxtError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum BnxtError {
    /// bnxtd has shut down for this boot.
    #[error("no device")]
    NoDevice,
    /// teed declined this boot: no firmware service until the next boot.
    #[error("TEE unavailable")]
    TeeUnavailable,
    /// The request was lost to a restart; sending it again is safe.
    #[error("request lost, retry")]
    Retryable,
    /// The frame was addressed to an older bnxtd; resend to this generation.
    #[error("bnxtd restarted, now generation {generation}")]
    ServerRestarted { generation: Generation },
    /// The frame did not decode as a BNXT request.
    #[error("malformed request")]
    BadRequest,
    #[error("offset {offset} is outside the {len}-byte coredump")]
    BadOffset { offset: u32, len: u32 },
    #[error("chunk size {size} is not in 1..={max}")]
    BadSize { size: u32, max: u32 },
    /// The TA found no valid firmware image.
    #[error("corrupt firmware image")]
    CorruptImage,
    /// The secure world failed the call with a TEE Client API result code and origin.
    #[error("secure world returned {code:#010x} (origin {origin})")]
    Tee { code: u32, origin: u32 },
}

impl BnxtError {
    /// Whether sending the same request again may succeed without anything else changing.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            BnxtError::Retryable | BnxtError::ServerRestarted { .. }
        )
    }
}
