//! Errors of the TPM engine.

use thiserror::Error;

/// A command could not be run. TPM 2.0 errors (a response code other than TPM_RC_SUCCESS) are
/// not errors here: they are ordinary responses.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TpmError {
    /// the command is shorter than the 10-byte TPM 2.0 header
    #[error("TPM command of {0} bytes is shorter than its header")]
    CommandTooShort(usize),
    /// the command is larger than the TPM's buffer
    #[error("TPM command of {len} bytes exceeds {max} bytes")]
    CommandTooLarge { len: usize, max: usize },
    /// a libtpms library call failed
    #[error("libtpms {call} failed with {code:#x}")]
    Library { call: &'static str, code: u32 },
    /// libtpms produced a response larger than its own buffer limit
    #[error("libtpms returned a malformed response of {0} bytes")]
    BadResponse(usize),
}
