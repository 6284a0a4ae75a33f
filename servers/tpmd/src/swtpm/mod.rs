//! The swtpm socket protocol, as a sans-IO codec: unmodified TPM clients (tpm2-tools, tss-esapi,
//! tpm2-pytss, tpm2-abrmd through tpm2-tss's `swtpm` TCTI, and `swtpm_ioctl`) talk to tpmd as if
//! it were swtpm. The shell owns the sockets; nothing here reads, writes or keeps time.
//!
//! Two channels, both big-endian (facts from swtpm's `tpm_ioctl.h` and tpm2-tss's
//! `tcti-swtpm.c`):
//! * **Data** (`swtpm.sock`, or TCP port P): raw TPM 2.0 commands in, raw responses out, framed
//!   only by the size field of the TPM header. tcti-swtpm opens one connection per command;
//!   other clients keep it open and may send several commands back to back. [`DataDecoder`]
//!   frames the bytes, [`DataConnection`] adds per-connection ordering of the answers, and
//!   [`response_bytes`] turns tpmd's answer into wire bytes (a TPM error response when tpmd
//!   could not reach the TPM, so a client always sees a TPM answer and never hangs).
//! * **Control** (`swtpm.sock.ctrl`, or TCP port P+1): a u32 command code and a payload whose
//!   length depends on the code; the answer is a u32 result (TPM 1.2 style, 0 = success) and a
//!   payload. [`ControlDecoder`] decodes, [`answer`] decides, [`ControlResponse::encode`]
//!   writes. tcti-swtpm needs only `SET_LOCALITY(0)` answered `00 00 00 00`.
//!
//! The TPM behind tpmd is the secure world's fTPM, shared by every consumer and reset only by a
//! normal-world boot; control commands that would reset, stop or reconfigure it are therefore
//! acknowledged without touching it (each decision is documented at [`answer`]).
//!
//! [`hosted`] (feature `hosted`) puts both channels on real sockets for tpmd's hosted shell.
//!
//! TPM payloads are secrets: nothing here logs them.

mod connection;
mod control;
mod data;
#[cfg(feature = "hosted")]
pub mod hosted;
mod reply;

pub use connection::{DataConnection, DataOutput, Ticket, UnknownTicket};
pub use control::{code, ControlDecoder, ControlError, ControlRequest, INIT_FLAG_DELETE_VOLATILE};
pub use data::{framing_error_response, response_bytes, DataDecoder, DataError, ResponseBytes};
pub use reply::{
    answer, capability, result, ControlAnswer, ControlEvent, ControlResponse, EncodedControl,
    CONTROL_RESPONSE_MAX, SUPPORTED_CAPABILITIES,
};
