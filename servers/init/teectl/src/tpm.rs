//! A TPM consumer of tpmd's native socket, with the few TPM 2.0 commands teectl needs built
//! by hand (big-endian, no sessions).

use std::time::Duration;

use tee_proto::tpm::{TpmError, TpmRequest, TpmResponse, TPM_BUFFER_MAX, TPM_HEADER_SIZE};

use crate::CliError;
use teesys_root::wire::FramedStream;
use teesys_root::StatePaths;

const TPM_ST_NO_SESSIONS: u16 = 0x8001;
const TPM_CC_STARTUP: u32 = 0x0144;
const TPM_CC_GET_RANDOM: u32 = 0x017B;
const TPM_CC_PCR_READ: u32 = 0x017E;
const TPM_SU_CLEAR: u16 = 0x0000;
const TPM_ALG_SHA256: u16 = 0x000B;
/// TPM_RC_INITIALIZE: the TPM needs Startup (or, for Startup, already had it).
pub const TPM_RC_INITIALIZE: u32 = 0x100;
/// TPM_RC_RETRY.
pub const TPM_RC_RETRY: u32 = 0x922;

/// A TPM command: header (tag, size, code) then `params`.
fn command(code: u32, params: &[u8]) -> Vec<u8> {
    let size = u32::try_from(TPM_HEADER_SIZE + params.len()).unwrap_or(u32::MAX);
    let mut bytes = Vec::with_capacity(TPM_HEADER_SIZE + params.len());
    bytes.extend_from_slice(&TPM_ST_NO_SESSIONS.to_be_bytes());
    bytes.extend_from_slice(&size.to_be_bytes());
    bytes.extend_from_slice(&code.to_be_bytes());
    bytes.extend_from_slice(params);
    bytes
}

pub fn startup_clear() -> Vec<u8> {
    command(TPM_CC_STARTUP, &TPM_SU_CLEAR.to_be_bytes())
}

pub fn get_random(bytes: u16) -> Vec<u8> {
    command(TPM_CC_GET_RANDOM, &bytes.to_be_bytes())
}

/// PCR_Read of one PCR of the SHA-256 bank.
pub fn pcr_read_sha256(index: u8) -> Vec<u8> {
    let mut select = [0u8; 3];
    if let Some(byte) = select.get_mut(usize::from(index / 8)) {
        *byte = 1 << (index % 8);
    }
    let mut params = Vec::new();
    params.extend_from_slice(&1u32.to_be_bytes()); // one selection
    params.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
    params.push(select.len() as u8);
    params.extend_from_slice(&select);
    command(TPM_CC_PCR_READ, &params)
}

/// A TPM response split into its code and parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmAnswer {
    pub rc: u32,
    pub params: Vec<u8>,
}

pub fn parse_response(bytes: &[u8]) -> Result<TpmAnswer, CliError> {
    let malformed = |why: &str| CliError::Tpm(format!("malformed TPM response: {why}"));
    let header = bytes
        .get(..TPM_HEADER_SIZE)
        .ok_or_else(|| malformed("shorter than a header"))?;
    let size = u32::from_be_bytes([header[2], header[3], header[4], header[5]]);
    if usize::try_from(size).ok() != Some(bytes.len()) {
        return Err(malformed("size field disagrees with the length"));
    }
    Ok(TpmAnswer {
        rc: u32::from_be_bytes([header[6], header[7], header[8], header[9]]),
        params: bytes[TPM_HEADER_SIZE..].to_vec(),
    })
}

/// The bytes of a TPM2B (u16 big-endian size, then that many bytes) at the start of `bytes`.
fn tpm2b(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let size = usize::from(u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]));
    let body = bytes.get(2..2 + size)?;
    Some((body, &bytes[2 + size..]))
}

/// GetRandom's random bytes.
pub fn random_bytes(answer: &TpmAnswer) -> Option<Vec<u8>> {
    tpm2b(&answer.params).map(|(body, _)| body.to_vec())
}

/// PCR_Read's first digest (after the update counter and the echoed selection).
pub fn first_digest(answer: &TpmAnswer) -> Option<Vec<u8>> {
    let params = &answer.params;
    let selections = u32::from_be_bytes(params.get(4..8)?.try_into().ok()?);
    let mut rest = params.get(8..)?;
    for _ in 0..selections {
        let select_len = usize::from(*rest.get(2)?);
        rest = rest.get(3 + select_len..)?;
    }
    let digests = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
    if digests == 0 {
        return None;
    }
    tpm2b(&rest[4..]).map(|(body, _)| body.to_vec())
}

/// What one command to tpmd gave back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TpmOutcome {
    Answer(TpmAnswer),
    /// tpmd could not produce a TPM answer.
    Failed(TpmError),
}

/// A connection to tpmd's native consumer socket.
pub struct TpmConsumer {
    stream: FramedStream,
}

impl TpmConsumer {
    pub fn connect(paths: &StatePaths) -> Result<Self, CliError> {
        let stream = FramedStream::connect(&paths.tpm_sock(), Duration::from_secs(30))
            .map_err(|_| CliError::NotRunning(paths.dir().to_path_buf()))?;
        Ok(TpmConsumer { stream })
    }

    pub fn send(&mut self, command: &[u8]) -> Result<TpmOutcome, CliError> {
        if command.len() > TPM_BUFFER_MAX {
            return Err(CliError::Tpm("command too large".into()));
        }
        let mut bytes = heapless::Vec::new();
        bytes
            .extend_from_slice(command)
            .map_err(|_| CliError::Tpm("command too large".into()))?;
        match self.stream.call(TpmRequest::Command { bytes })? {
            TpmResponse::Response { bytes } => Ok(TpmOutcome::Answer(parse_response(&bytes)?)),
            TpmResponse::Error(error) => Ok(TpmOutcome::Failed(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn commands_match_the_tpm2_byte_layouts() {
        assert_eq!(
            startup_clear(),
            [0x80, 0x01, 0, 0, 0, 0x0C, 0, 0, 0x01, 0x44, 0, 0]
        );
        assert_eq!(
            get_random(16),
            [0x80, 0x01, 0, 0, 0, 0x0C, 0, 0, 0x01, 0x7B, 0, 0x10]
        );
        let pcr = pcr_read_sha256(10);
        assert_eq!(pcr.len(), 20);
        assert_eq!(&pcr[2..6], &20u32.to_be_bytes());
        // count 1, SHA-256, three select bytes with bit 10 (byte 1, bit 2) set.
        assert_eq!(&pcr[10..], &[0, 0, 0, 1, 0, 0x0B, 3, 0, 0b100, 0]);
    }

    #[test]
    fn responses_are_parsed_and_size_checked() {
        let mut random = vec![0x80, 0x01, 0, 0, 0, 16, 0, 0, 0, 0, 0, 4, 9, 8, 7, 6];
        let answer = parse_response(&random).unwrap();
        assert_eq!(answer.rc, 0);
        assert_eq!(random_bytes(&answer).unwrap(), [9, 8, 7, 6]);
        random.push(0);
        assert!(parse_response(&random).is_err());
        assert!(parse_response(&[0x80, 1, 0]).is_err());
    }

    #[test]
    fn the_first_pcr_digest_is_found_after_the_selection() {
        let mut params = vec![0, 0, 0, 7]; // update counter
        params.extend_from_slice(&[0, 0, 0, 1, 0, 0x0B, 3, 1, 0, 0]); // selection echo
        params.extend_from_slice(&[0, 0, 0, 1, 0, 32]); // one digest of 32 bytes
        params.extend_from_slice(&[0xAB; 32]);
        let answer = TpmAnswer { rc: 0, params };
        assert_eq!(first_digest(&answer).unwrap(), vec![0xAB; 32]);
        let truncated = TpmAnswer {
            rc: 0,
            params: vec![0, 0, 0, 7, 0, 0, 0, 1],
        };
        assert_eq!(first_digest(&truncated), None);
    }
}
