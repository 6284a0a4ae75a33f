//! The control channel's requests: a big-endian u32 command code, then a payload whose length
//! the code determines (swtpm `tpm_ioctl.h`; only the request halves of its unions travel).
//!
//! The channel is lockstep: a client sends one request and waits for its answer. swtpm reads a
//! request as "whatever arrived until its fixed part was complete" and ignores the rest, and
//! clients rely on that: QEMU sends the whole 4-byte `ptm_loc` union for SET_LOCALITY where
//! tcti-swtpm sends the one meaningful byte. [`ControlDecoder`] does the same: bytes that come
//! in the same chunk after a complete request are padding and are dropped.

use heapless::Vec as BoundedVec;
use tracing::debug;

/// Control command codes (`CMD_*` in swtpm's `tpm_ioctl.h`).
pub mod code {
    pub const GET_CAPABILITY: u32 = 0x01;
    pub const INIT: u32 = 0x02;
    pub const SHUTDOWN: u32 = 0x03;
    pub const GET_TPMESTABLISHED: u32 = 0x04;
    pub const SET_LOCALITY: u32 = 0x05;
    pub const HASH_START: u32 = 0x06;
    pub const HASH_DATA: u32 = 0x07;
    pub const HASH_END: u32 = 0x08;
    pub const CANCEL_TPM_CMD: u32 = 0x09;
    pub const STORE_VOLATILE: u32 = 0x0a;
    pub const RESET_TPMESTABLISHED: u32 = 0x0b;
    pub const GET_STATEBLOB: u32 = 0x0c;
    pub const SET_STATEBLOB: u32 = 0x0d;
    pub const STOP: u32 = 0x0e;
    pub const GET_CONFIG: u32 = 0x0f;
    pub const SET_DATAFD: u32 = 0x10;
    pub const SET_BUFFERSIZE: u32 = 0x11;
    pub const GET_INFO: u32 = 0x12;
}

/// `PTM_INIT_FLAG_DELETE_VOLATILE`: drop saved volatile state instead of resuming it.
pub const INIT_FLAG_DELETE_VOLATILE: u32 = 1;

const CODE_SIZE: usize = 4;
/// The largest fixed payload: GET_INFO's u64 flags, u32 offset and u32 padding.
const FIXED_PAYLOAD_MAX: usize = 16;
const HEAD_MAX: usize = CODE_SIZE + FIXED_PAYLOAD_MAX;

/// One decoded control request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlRequest {
    GetCapability,
    /// A TPM reset request (`_TPM_Init`); `flags` may hold [`INIT_FLAG_DELETE_VOLATILE`].
    Init {
        flags: u32,
    },
    Shutdown,
    GetTpmEstablished,
    SetLocality {
        locality: u8,
    },
    CancelTpmCommand,
    Stop,
    GetConfig,
    /// 0 queries the buffer size; anything else asks for that size.
    SetBufferSize {
        requested: u32,
    },
    /// A protocol command tpmd does not implement; its payload has been consumed.
    Unsupported {
        code: u32,
    },
    /// A code outside the protocol.
    Unknown {
        code: u32,
    },
}

impl ControlRequest {
    /// Whether an INIT asked for saved volatile state to be deleted.
    pub fn deletes_volatile(&self) -> bool {
        matches!(self, ControlRequest::Init { flags } if flags & INIT_FLAG_DELETE_VOLATILE != 0)
    }
}

/// Why the control channel's input could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// Input ended (or the shell's read deadline passed) inside a request. swtpm answers that
    /// with TPM_BAD_PARAMETER, as [`ControlError::response`] does.
    #[error("control request {code:?} ended {missing} bytes short")]
    Truncated { code: Option<u32>, missing: u64 },
}

/// How long a request's payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PayloadShape {
    Fixed(usize),
    /// A fixed part, then as many bytes as the big-endian u32 at `length_at` (within the fixed
    /// part) says.
    Counted {
        fixed: usize,
        length_at: usize,
    },
}

fn payload_shape(code: u32) -> PayloadShape {
    match code {
        code::INIT | code::SET_BUFFERSIZE => PayloadShape::Fixed(4),
        code::SET_LOCALITY | code::RESET_TPMESTABLISHED => PayloadShape::Fixed(1),
        code::GET_STATEBLOB => PayloadShape::Fixed(12),
        code::GET_INFO => PayloadShape::Fixed(FIXED_PAYLOAD_MAX),
        code::HASH_DATA => PayloadShape::Counted {
            fixed: 4,
            length_at: 0,
        },
        code::SET_STATEBLOB => PayloadShape::Counted {
            fixed: 12,
            length_at: 8,
        },
        // Everything else, known or not, has no request payload.
        _ => PayloadShape::Fixed(0),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// Collecting the code and the fixed part of the payload.
    #[default]
    Collecting,
    /// Consuming the counted part of an unsupported request's payload.
    Skipping { code: u32, remaining: u64 },
}

/// Decodes one control connection's requests, one per exchange.
#[derive(Debug, Default)]
pub struct ControlDecoder {
    head: BoundedVec<u8, HEAD_MAX>,
    state: State,
}

impl ControlDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes bytes read from the connection; returns the request they complete, if any.
    /// Bytes that follow a complete request in the same chunk are dropped (see the module doc).
    pub fn push(&mut self, mut input: &[u8]) -> Option<ControlRequest> {
        loop {
            match self.state {
                State::Skipping { code, remaining } => {
                    let available = u64::try_from(input.len()).unwrap_or(u64::MAX);
                    let taken = remaining.min(available);
                    let remaining = remaining - taken;
                    // `taken` fits in usize: it is at most `input.len()`.
                    input = input
                        .get(usize::try_from(taken).unwrap_or(0)..)
                        .unwrap_or(&[]);
                    if remaining > 0 {
                        self.state = State::Skipping { code, remaining };
                        return None;
                    }
                    self.state = State::Collecting;
                    return Some(self.complete(ControlRequest::Unsupported { code }, input));
                }
                State::Collecting => {
                    input = self.fill_head(input, CODE_SIZE);
                    let code = self.code()?;
                    let shape = payload_shape(code);
                    let fixed = match shape {
                        PayloadShape::Fixed(len) | PayloadShape::Counted { fixed: len, .. } => len,
                    };
                    input = self.fill_head(input, CODE_SIZE + fixed);
                    let payload = self.head.get(CODE_SIZE..CODE_SIZE + fixed)?;
                    let request = match shape {
                        PayloadShape::Fixed(_) => decode_fixed(code, payload),
                        PayloadShape::Counted { length_at, .. } => {
                            let remaining = u64::from(be_u32(payload, length_at));
                            self.head.clear();
                            self.state = State::Skipping { code, remaining };
                            continue;
                        }
                    };
                    return Some(self.complete(request, input));
                }
            }
        }
    }

    /// Input ended, or the shell gave up waiting for the rest of a request: an error if a
    /// request was left incomplete. The decoder is empty afterwards.
    pub fn finish(&mut self) -> Result<(), ControlError> {
        let outcome = match self.state {
            State::Skipping { code, remaining } => Err(ControlError::Truncated {
                code: Some(code),
                missing: remaining,
            }),
            State::Collecting if self.head.is_empty() => Ok(()),
            State::Collecting => {
                let code = self.code();
                let needed = match code.map(payload_shape) {
                    Some(PayloadShape::Fixed(len) | PayloadShape::Counted { fixed: len, .. }) => {
                        CODE_SIZE + len
                    }
                    None => CODE_SIZE,
                };
                let missing = needed.saturating_sub(self.head.len());
                Err(ControlError::Truncated {
                    code,
                    missing: u64::try_from(missing).unwrap_or(u64::MAX),
                })
            }
        };
        self.head.clear();
        self.state = State::Collecting;
        outcome
    }

    /// Whether part of a request has been received.
    pub fn is_mid_request(&self) -> bool {
        !self.head.is_empty() || matches!(self.state, State::Skipping { .. })
    }

    /// Moves bytes from `input` into the head until it holds `target` bytes; returns the rest.
    fn fill_head<'a>(&mut self, input: &'a [u8], target: usize) -> &'a [u8] {
        let wanted = target.saturating_sub(self.head.len()).min(input.len());
        let (taken, rest) = input.split_at(wanted);
        // Cannot fail: `target` never exceeds HEAD_MAX.
        if self.head.extend_from_slice(taken).is_err() {
            return rest;
        }
        rest
    }

    /// The command code, once its four bytes are in.
    fn code(&self) -> Option<u32> {
        let bytes: [u8; CODE_SIZE] = self.head.get(..CODE_SIZE)?.try_into().ok()?;
        Some(u32::from_be_bytes(bytes))
    }

    fn complete(&mut self, request: ControlRequest, surplus: &[u8]) -> ControlRequest {
        if !surplus.is_empty() {
            debug!(
                ?request,
                dropped = surplus.len(),
                "swtpm control: padding after request"
            );
        }
        self.head.clear();
        request
    }
}

/// A request whose payload is complete and of fixed length.
fn decode_fixed(code: u32, payload: &[u8]) -> ControlRequest {
    match code {
        code::GET_CAPABILITY => ControlRequest::GetCapability,
        code::INIT => ControlRequest::Init {
            flags: be_u32(payload, 0),
        },
        code::SHUTDOWN => ControlRequest::Shutdown,
        code::GET_TPMESTABLISHED => ControlRequest::GetTpmEstablished,
        code::SET_LOCALITY => ControlRequest::SetLocality {
            locality: payload.first().copied().unwrap_or(0),
        },
        code::CANCEL_TPM_CMD => ControlRequest::CancelTpmCommand,
        code::STOP => ControlRequest::Stop,
        code::GET_CONFIG => ControlRequest::GetConfig,
        code::SET_BUFFERSIZE => ControlRequest::SetBufferSize {
            requested: be_u32(payload, 0),
        },
        code::HASH_START..=code::GET_INFO => ControlRequest::Unsupported { code },
        _ => ControlRequest::Unknown { code },
    }
}

/// The big-endian u32 at `at`, or 0 if `bytes` is too short (callers pass complete payloads).
fn be_u32(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..at + 4)
        .and_then(|field| field.try_into().ok())
        .map_or(0, u32::from_be_bytes)
}
