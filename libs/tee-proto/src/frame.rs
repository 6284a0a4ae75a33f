//! The frame every message travels in, and its postcard encoding.
//!
//! Layout: a [`Header`] (protocol version first, so that a future header can still be told
//! apart), then the body. A reply echoes the `request_id` of the frame it answers and addresses
//! the requester's generation ([`Header::reply_to`]).
//!
//! Generations: init numbers every incarnation of a server from 1 upwards; 0 means "unknown",
//! e.g. a client's first contact. A frame whose `to_generation` is neither 0 nor the receiver's
//! own was meant for a predecessor and is answered with "server restarted".

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::ProtoError;
pub use crate::shared::{FramePart, Generation};

/// Bumped on every change to any message of any interface.
pub const PROTOCOL_VERSION: u16 = 4;

/// Upper bound on the encoded size of any frame of any interface: the largest bodies carry
/// 4096 data bytes (a TPM command or a coredump chunk), and the header and fields around them
/// need less than 256 bytes. The tests prove every message's worst case fits.
pub const FRAME_MAX: usize = 4096 + 256;

/// What precedes every message body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Must equal [`PROTOCOL_VERSION`].
    pub version: u16,
    /// The sender's own generation.
    pub from_generation: Generation,
    /// The sender's view of the receiver's generation; 0 = does not know.
    pub to_generation: Generation,
    /// Chosen by the requester; echoed in the reply.
    pub request_id: u32,
}

impl Header {
    /// A header for a new request at the current protocol version.
    pub fn new(from_generation: Generation, to_generation: Generation, request_id: u32) -> Self {
        Header {
            version: PROTOCOL_VERSION,
            from_generation,
            to_generation,
            request_id,
        }
    }

    /// The header of the reply to this frame, sent by a receiver of generation `my_generation`.
    pub fn reply_to(&self, my_generation: Generation) -> Header {
        Header::new(my_generation, self.from_generation, self.request_id)
    }

    /// Whether this frame was addressed to an earlier incarnation than `my_generation`.
    pub fn is_stale_for(&self, my_generation: Generation) -> bool {
        self.to_generation != 0 && self.to_generation != my_generation
    }
}

/// A header and a message body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame<T> {
    pub header: Header,
    pub body: T,
}

/// Encodes `frame` into `buf` and returns the used prefix.
pub fn encode<'buf, T: Serialize>(
    frame: &Frame<T>,
    buf: &'buf mut [u8],
) -> Result<&'buf [u8], ProtoError> {
    let encoded = postcard::to_slice(frame, buf).map_err(|error| match error {
        postcard::Error::SerializeBufferFull => ProtoError::BufferTooSmall,
        _ => ProtoError::Encode,
    })?;
    // Never emit what every receiver would refuse.
    if encoded.len() > FRAME_MAX {
        return Err(ProtoError::FrameTooLarge {
            len: encoded.len(),
            max: FRAME_MAX,
        });
    }
    Ok(encoded)
}

/// Decodes only the header, checking the version, and returns it with the undecoded body bytes.
pub fn decode_header(bytes: &[u8]) -> Result<(Header, &[u8]), ProtoError> {
    if bytes.len() > FRAME_MAX {
        return Err(ProtoError::FrameTooLarge {
            len: bytes.len(),
            max: FRAME_MAX,
        });
    }
    let header_error = ProtoError::Decode {
        part: FramePart::Header,
    };
    // The version is read alone first so that a peer with a different header layout is still
    // reported as a version mismatch.
    let (version, _) = postcard::take_from_bytes::<u16>(bytes).map_err(|_| header_error)?;
    if version != PROTOCOL_VERSION {
        return Err(ProtoError::Version {
            got: version,
            expected: PROTOCOL_VERSION,
        });
    }
    postcard::take_from_bytes::<Header>(bytes).map_err(|_| header_error)
}

/// Decodes a whole frame: header (version checked before the body is looked at), body, and no
/// trailing bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<Frame<T>, ProtoError> {
    let (header, body_bytes) = decode_header(bytes)?;
    let (body, rest) =
        postcard::take_from_bytes::<T>(body_bytes).map_err(|_| ProtoError::Decode {
            part: FramePart::Body,
        })?;
    if !rest.is_empty() {
        return Err(ProtoError::TrailingBytes { count: rest.len() });
    }
    Ok(Frame { header, body })
}
