//! The control channel's answers: what tpmd says to each request, and the bytes that say it.

use tee_proto::tpm::TPM_BUFFER_MAX;

use super::control::{ControlError, ControlRequest};

/// Result codes of the control channel (TPM 1.2 `TPM_RESULT` values, as swtpm uses them).
pub mod result {
    pub const SUCCESS: u32 = 0;
    pub const BAD_PARAMETER: u32 = 3;
    pub const FAIL: u32 = 9;
    pub const BAD_ORDINAL: u32 = 10;
    pub const BAD_LOCALITY: u32 = 0x3d;
}

/// Capability bits of GET_CAPABILITY (`PTM_CAP_*` in swtpm's `tpm_ioctl.h`).
pub mod capability {
    pub const INIT: u32 = 1 << 0;
    pub const SHUTDOWN: u32 = 1 << 1;
    pub const GET_TPMESTABLISHED: u32 = 1 << 2;
    pub const SET_LOCALITY: u32 = 1 << 3;
    pub const HASHING: u32 = 1 << 4;
    pub const CANCEL_TPM_CMD: u32 = 1 << 5;
    pub const STORE_VOLATILE: u32 = 1 << 6;
    pub const RESET_TPMESTABLISHED: u32 = 1 << 7;
    pub const GET_STATEBLOB: u32 = 1 << 8;
    pub const SET_STATEBLOB: u32 = 1 << 9;
    pub const STOP: u32 = 1 << 10;
    pub const GET_CONFIG: u32 = 1 << 11;
    pub const SET_DATAFD: u32 = 1 << 12;
    pub const SET_BUFFERSIZE: u32 = 1 << 13;
    pub const GET_INFO: u32 = 1 << 14;
}

/// What tpmd answers successfully. CANCEL_TPM_CMD is decoded but always fails, so it is not
/// advertised.
pub const SUPPORTED_CAPABILITIES: u32 = capability::INIT
    | capability::SHUTDOWN
    | capability::GET_TPMESTABLISHED
    | capability::SET_LOCALITY
    | capability::STOP
    | capability::GET_CONFIG
    | capability::SET_BUFFERSIZE;

/// An encoded control answer; derefs to its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EncodedControl {
    bytes: [u8; CONTROL_RESPONSE_MAX],
    len: usize,
}

impl EncodedControl {
    fn bytes(mut self, data: &[u8]) -> Self {
        // Every answer fits: the longest is CONTROL_RESPONSE_MAX bytes.
        if let Some(slot) = self.bytes.get_mut(self.len..self.len + data.len()) {
            slot.copy_from_slice(data);
            self.len += data.len();
        }
        self
    }

    fn word(self, value: u32) -> Self {
        self.bytes(&value.to_be_bytes())
    }
}

impl core::ops::Deref for EncodedControl {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

/// The fTPM's one buffer size (each half of tpmd's shared buffer); it cannot be changed.
const BUFFER_SIZE: u32 = TPM_BUFFER_MAX as u32;

/// The longest encoded answer (SET_BUFFERSIZE: result and three sizes).
pub const CONTROL_RESPONSE_MAX: usize = 16;

/// One answer on the control channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlResponse {
    /// GET_CAPABILITY: result 0, then the mask. (Older swtpm documents the same 8 bytes as one
    /// big-endian u64 mask; the upper half is the zero result either way.)
    Capabilities { mask: u32 },
    /// A bare result code.
    Result(u32),
    /// GET_TPMESTABLISHED: result 0, the bit, and the three padding bytes of `ptm_est` that
    /// swtpm sends too (QEMU reads all eight).
    Established { established: bool },
    /// GET_CONFIG: result 0 and the key flags.
    Config { flags: u32 },
    /// SET_BUFFERSIZE: result 0, the size in use, the smallest and the largest possible.
    BufferSize { in_use: u32, min: u32, max: u32 },
}

impl ControlResponse {
    /// The wire bytes, big-endian.
    pub fn encode(&self) -> EncodedControl {
        let out = EncodedControl::default();
        match *self {
            ControlResponse::Capabilities { mask } => out.word(0).word(mask),
            ControlResponse::Result(code) => out.word(code),
            ControlResponse::Established { established } => {
                out.word(result::SUCCESS)
                    .bytes(&[u8::from(established), 0, 0, 0])
            }
            ControlResponse::Config { flags } => out.word(result::SUCCESS).word(flags),
            ControlResponse::BufferSize { in_use, min, max } => {
                out.word(result::SUCCESS).word(in_use).word(min).word(max)
            }
        }
    }

    /// The result code the answer carries.
    pub fn result(&self) -> u32 {
        match *self {
            ControlResponse::Result(code) => code,
            _ => result::SUCCESS,
        }
    }
}

impl ControlError {
    /// What swtpm answers to an incomplete request: TPM_BAD_PARAMETER.
    pub fn response(&self) -> ControlResponse {
        ControlResponse::Result(result::BAD_PARAMETER)
    }
}

/// Requests the shell should know about beyond answering them. None changes the TPM; the shell
/// logs them, and closes the control connection after [`ControlEvent::Shutdown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlEvent {
    /// A client asked for a TPM reset (INIT).
    Init { delete_volatile: bool },
    /// A client asked the TPM process to end (SHUTDOWN).
    Shutdown,
    /// A client asked the TPM to stop until the next INIT (STOP).
    Stop,
}

/// The answer to one request and what the shell should learn from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlAnswer {
    pub response: ControlResponse,
    pub event: Option<ControlEvent>,
}

impl ControlAnswer {
    fn plain(response: ControlResponse) -> Self {
        ControlAnswer {
            response,
            event: None,
        }
    }

    fn success_with(event: ControlEvent) -> Self {
        ControlAnswer {
            response: ControlResponse::Result(result::SUCCESS),
            event: Some(event),
        }
    }
}

/// tpmd's answer to a control request. The fTPM is shared by every consumer and lives in the
/// secure world, so:
/// * **INIT** answers success **without resetting** the TPM. In teesys the TPM reset
///   (`_TPM_Init`) is a normal-world boot: the secure world's fTPM re-initialises when the
///   normal world boots, never on a consumer's word. A reset on request would clear the PCRs
///   and sessions of every other consumer, and would let any client wipe the boot measurements
///   and extend a forged chain into fresh PCRs. The TPM is always initialised while tpmd
///   serves (swtpm's `not-need-init`), so clients that send INIT first (`swtpm_ioctl -i`,
///   `Tss2_Tcti_Swtpm_Reset`, QEMU) work unchanged and go on with TPM2_Startup. The shell gets
///   [`ControlEvent::Init`] to log.
/// * **SHUTDOWN** and **STOP** answer success and change nothing: tpmd's lifecycle is init's,
///   and one consumer cannot stop the TPM for the others.
/// * **GET_TPMESTABLISHED** answers "not established": that bit belongs to the TIS interface's
///   locality-4 (DRTM) sequence, which the fTPM does not have.
/// * **SET_LOCALITY** accepts 0 only. The fTPM runs every command at locality 0 (Linux
///   `tpm_ftpm_tee` passes none), so accepting another would let a client believe its commands
///   run where they do not; TPM_BAD_LOCALITY says so.
/// * **CANCEL_TPM_CMD** answers TPM_FAIL: a TA call runs to completion (Linux
///   `tpm_ftpm_tee` cannot cancel either), and a control connection does not name which
///   consumer's command it means.
/// * **SET_BUFFERSIZE** answers 4096 as size, minimum and maximum, whatever was asked: the
///   shared buffer's halves fix it, and the protocol lets the server pick the size it uses.
/// * **GET_CONFIG** answers no key flags (tpmd holds no state-encryption keys).
/// * Other protocol commands (hashing, state blobs, SET_DATAFD, GET_INFO, ...) answer
///   TPM_FAIL; codes outside the protocol answer TPM_BAD_ORDINAL, as swtpm does.
pub fn answer(request: &ControlRequest) -> ControlAnswer {
    match *request {
        ControlRequest::GetCapability => ControlAnswer::plain(ControlResponse::Capabilities {
            mask: SUPPORTED_CAPABILITIES,
        }),
        ControlRequest::Init { .. } => ControlAnswer::success_with(ControlEvent::Init {
            delete_volatile: request.deletes_volatile(),
        }),
        ControlRequest::Shutdown => ControlAnswer::success_with(ControlEvent::Shutdown),
        ControlRequest::Stop => ControlAnswer::success_with(ControlEvent::Stop),
        ControlRequest::GetTpmEstablished => {
            ControlAnswer::plain(ControlResponse::Established { established: false })
        }
        ControlRequest::SetLocality { locality: 0 } => {
            ControlAnswer::plain(ControlResponse::Result(result::SUCCESS))
        }
        ControlRequest::SetLocality { .. } => {
            ControlAnswer::plain(ControlResponse::Result(result::BAD_LOCALITY))
        }
        ControlRequest::GetConfig => ControlAnswer::plain(ControlResponse::Config { flags: 0 }),
        ControlRequest::SetBufferSize { .. } => ControlAnswer::plain(ControlResponse::BufferSize {
            in_use: BUFFER_SIZE,
            min: BUFFER_SIZE,
            max: BUFFER_SIZE,
        }),
        ControlRequest::CancelTpmCommand | ControlRequest::Unsupported { .. } => {
            ControlAnswer::plain(ControlResponse::Result(result::FAIL))
        }
        ControlRequest::Unknown { .. } => {
            ControlAnswer::plain(ControlResponse::Result(result::BAD_ORDINAL))
        }
    }
}
