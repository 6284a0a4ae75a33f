//! Errors: [`ProtoError`] for framing failures (local to the receiver or sender), and
//! [`WireError`], the error a server sends back to a client, designed for the client to act on.

use serde::{Deserialize, Serialize};

use crate::shared::{FramePart, Generation};

/// A frame could not be encoded or decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// The message could not be serialized (not a buffer-size problem).
    #[error("message could not be encoded")]
    Encode,
    /// The output buffer cannot hold the encoded frame.
    #[error("buffer too small for the encoded frame")]
    BufferTooSmall,
    /// The encoded or received frame is longer than any valid frame.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge { len: usize, max: usize },
    /// The bytes are not a valid encoding of the expected part of a frame.
    #[error("malformed frame {part}")]
    Decode { part: FramePart },
    /// The peer speaks another protocol version; the body was not looked at.
    #[error("protocol version {got}, expected {expected}")]
    Version { got: u16, expected: u16 },
    /// A complete frame was followed by extra bytes.
    #[error("{count} trailing bytes after the frame")]
    TrailingBytes { count: usize },
}

/// The error a server answers with, phrased for what the client should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum WireError {
    /// The frame was addressed to an older incarnation of the server; the client must re-open
    /// its sessions and shared memory with the incarnation named here, then retry.
    #[error("server restarted, now generation {generation}")]
    ServerRestarted { generation: Generation },
    /// teed declined to start this boot (crash kernel or unusable secure world).
    #[error("TEE unavailable")]
    TeeUnavailable,
    /// The request was lost (e.g. to a restart); sending it again is safe.
    #[error("request lost, retry")]
    Retryable,
    /// The resource is not the caller's, or the caller may not do this.
    #[error("denied")]
    Denied,
    /// The service has shut down for this boot.
    #[error("no device")]
    NoDevice,
    /// The request is malformed or its arguments are invalid.
    #[error("bad request")]
    BadRequest,
    /// The server cannot take the request now (e.g. every secure thread busy).
    #[error("busy")]
    Busy,
    /// The server or the secure world ran out of memory.
    #[error("out of memory")]
    OutOfMemory,
    /// The named session or shared memory does not exist.
    #[error("not found")]
    NotFound,
    /// A shutdown is in progress; no new work is accepted.
    #[error("shutting down")]
    ShuttingDown,
    /// The secure world answered with a TEE Client API result code and origin.
    #[error("secure world returned {code:#010x} (origin {origin})")]
    Tee { code: u32, origin: u32 },
    /// The client holds as much as teed lets one client hold (buffers, bytes, sessions, journal
    /// slots or calls in flight); release something first. Retrying unchanged fails again.
    #[error("quota exceeded")]
    QuotaExceeded,
    /// The secure world broke the call protocol: no answer within the call's deadline, or more
    /// RPC round trips than any real call makes. What the call did there is unknown.
    #[error("secure world fault")]
    SecureWorldFault,
}

impl WireError {
    /// Whether sending the same request again (after re-opening, for `ServerRestarted`) may
    /// succeed without anything else changing.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            WireError::ServerRestarted { .. } | WireError::Retryable | WireError::Busy
        )
    }
}
