//! The data channel: TPM commands framed by their header's size field, and tpmd's answers as
//! wire bytes.

use alloc::vec::Vec;
use core::ops::Deref;

use heapless::Vec as BoundedVec;
use tee_proto::tpm::{
    declared_size, tpm_error_response, TpmError, TpmRequest, TpmResponse, TPM_BUFFER_MAX,
    TPM_HEADER_SIZE,
};

/// Bytes that precede the size field in a TPM header (the tag); the size field follows.
const SIZE_FIELD_END: usize = 6;

/// Why a data connection's byte stream cannot be framed. Framing is lost for good: the shell
/// writes [`framing_error_response`] (TPM_RC_COMMAND_SIZE, after every earlier command's
/// answer) and closes the connection, as there is no way to find the next command's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    #[error("command declares {declared} bytes, shorter than a TPM header")]
    CommandTooShort { declared: u32 },
    #[error("command declares {declared} bytes, more than the TPM buffer")]
    CommandTooLarge { declared: u32 },
    /// The peer stopped sending inside a command.
    #[error("input ended {received} bytes into a command")]
    Truncated { received: usize },
}

impl DataError {
    /// The tpmd consumer error that says the same thing, so that the one mapping to TPM
    /// response codes ([`TpmError::to_tpm_rc`]) also covers framing.
    pub fn to_tpm_error(self) -> TpmError {
        match self {
            DataError::CommandTooShort { declared } => TpmError::CommandTooShort { len: declared },
            DataError::CommandTooLarge { declared } => TpmError::CommandTooLarge { len: declared },
            DataError::Truncated { received } => TpmError::CommandTooShort {
                len: u32::try_from(received).unwrap_or(u32::MAX),
            },
        }
    }
}

/// The answer to a stream that cannot be framed: a 10-byte TPM response with
/// TPM_RC_COMMAND_SIZE (0x142).
pub fn framing_error_response(error: DataError) -> [u8; TPM_HEADER_SIZE] {
    tpm_error_response(error.to_tpm_error().to_tpm_rc())
}

/// Accumulates the bytes of one data connection and yields the complete TPM commands in them,
/// in order. A bad size field is reported as soon as the first six bytes of a command are in,
/// without waiting for the rest.
#[derive(Debug, Default)]
pub struct DataDecoder {
    buffer: Vec<u8>,
    /// Bytes at the front of `buffer` already handed out as commands.
    consumed: usize,
    /// Set once framing is lost; every later call reports it again.
    failed: Option<DataError>,
}

impl DataDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the connection. After a framing error they are dropped.
    pub fn push(&mut self, input: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if self.consumed > 0 {
            self.buffer.drain(..self.consumed);
            self.consumed = 0;
        }
        self.buffer.extend_from_slice(input);
    }

    /// The next complete command, `Ok(None)` if more bytes are needed, or the framing error.
    pub fn next_command(&mut self) -> Result<Option<TpmRequest>, DataError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        let pending = self.buffer.get(self.consumed..).unwrap_or_default();
        if pending.len() < SIZE_FIELD_END {
            return Ok(None);
        }
        let declared = declared_size(pending).unwrap_or(0);
        let len = match usize::try_from(declared) {
            Ok(len) if len < TPM_HEADER_SIZE => {
                return Err(self.fail(DataError::CommandTooShort { declared }))
            }
            Ok(len) if len <= TPM_BUFFER_MAX => len,
            _ => return Err(self.fail(DataError::CommandTooLarge { declared })),
        };
        let Some(command) = pending.get(..len) else {
            return Ok(None);
        };
        let mut bytes = BoundedVec::new();
        // Cannot fail: `len` was checked against the capacity above.
        if bytes.extend_from_slice(command).is_err() {
            return Err(self.fail(DataError::CommandTooLarge { declared }));
        }
        self.consumed += len;
        Ok(Some(TpmRequest::Command { bytes }))
    }

    /// The peer closed its sending side: an error if a command was left incomplete.
    pub fn finish(&mut self) -> Result<(), DataError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        match self.buffered() {
            0 => Ok(()),
            received => Err(self.fail(DataError::Truncated { received })),
        }
    }

    /// Bytes received but not yet handed out as a command.
    pub fn buffered(&self) -> usize {
        self.buffer.len().saturating_sub(self.consumed)
    }

    /// Whether framing was lost.
    pub fn has_failed(&self) -> bool {
        self.failed.is_some()
    }

    fn fail(&mut self, error: DataError) -> DataError {
        self.failed = Some(error);
        self.buffer = Vec::new();
        self.consumed = 0;
        error
    }
}

/// The wire bytes of one answer: the TPM's own response, or a 10-byte TPM error response
/// standing in for a failure around the TPM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseBytes<'a> {
    Tpm(&'a [u8]),
    Substitute([u8; TPM_HEADER_SIZE]),
}

impl Deref for ResponseBytes<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            ResponseBytes::Tpm(bytes) => bytes,
            ResponseBytes::Substitute(bytes) => bytes,
        }
    }
}

/// Maps tpmd's answer to what the data channel sends: the TPM response as is, or a TPM error
/// response carrying [`TpmError::to_tpm_rc`] (TPM_RC_RETRY 0x922 for a command lost to a
/// restart, TPM_RC_FAILURE 0x101 without a TEE, ...). A swtpm client thus sees a TPM answer
/// for every command it sent.
pub fn response_bytes(response: &TpmResponse) -> ResponseBytes<'_> {
    match response {
        TpmResponse::Response { bytes } => ResponseBytes::Tpm(bytes),
        TpmResponse::Error(error) => {
            ResponseBytes::Substitute(tpm_error_response(error.to_tpm_rc()))
        }
    }
}
