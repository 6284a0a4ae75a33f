//! A TPM consumer of tpmd's native socket, with the few TPM 2.0 commands teectl needs built
//! by hand (TPM 2.0 Library, Part 3; big-endian). Commands that need an authorisation carry
//! one empty password session (`TPM_RS_PW`): what the owner hierarchy, the PCRs and the soak's
//! NV counter accept.

use std::time::Duration;

use tee_proto::tpm::{TpmError, TpmRequest, TpmResponse, TPM_BUFFER_MAX, TPM_HEADER_SIZE};

use crate::CliError;
use teesys_root::wire::{CallError, FramedStream};
use teesys_root::StatePaths;

const TPM_ST_NO_SESSIONS: u16 = 0x8001;
const TPM_ST_SESSIONS: u16 = 0x8002;
const TPM_CC_NV_DEFINE_SPACE: u32 = 0x012A;
const TPM_CC_NV_INCREMENT: u32 = 0x0134;
const TPM_CC_STARTUP: u32 = 0x0144;
const TPM_CC_NV_READ: u32 = 0x014E;
const TPM_CC_GET_RANDOM: u32 = 0x017B;
const TPM_CC_PCR_READ: u32 = 0x017E;
const TPM_CC_PCR_EXTEND: u32 = 0x0182;
const TPM_SU_CLEAR: u16 = 0x0000;
const TPM_ALG_SHA256: u16 = 0x000B;
/// TPM_RH_OWNER.
pub const TPM_RH_OWNER: u32 = 0x4000_0001;
/// TPM_RS_PW: the password session.
const TPM_RS_PW: u32 = 0x4000_0009;
/// TPM_RC_INITIALIZE: the TPM needs Startup (or, for Startup, already had it).
pub const TPM_RC_INITIALIZE: u32 = 0x100;
/// TPM_RC_NV_UNINITIALIZED: the index was never written (a counter never incremented).
pub const TPM_RC_NV_UNINITIALIZED: u32 = 0x14A;
/// TPM_RC_NV_DEFINED: an index with this handle exists.
pub const TPM_RC_NV_DEFINED: u32 = 0x14C;
/// TPM_RC_YIELDED, TPM_RC_TESTING, TPM_RC_NV_RATE, TPM_RC_RETRY, TPM_RC_NV_UNAVAILABLE:
/// warnings that mean "not done, send it again".
pub const TPM_RC_YIELDED: u32 = 0x908;
pub const TPM_RC_TESTING: u32 = 0x90A;
pub const TPM_RC_NV_RATE: u32 = 0x920;
pub const TPM_RC_RETRY: u32 = 0x922;
pub const TPM_RC_NV_UNAVAILABLE: u32 = 0x923;

/// Whether a TPM response code is a warning after which the command was not run and may be
/// sent again.
pub fn rc_is_retry(rc: u32) -> bool {
    matches!(
        rc,
        TPM_RC_YIELDED | TPM_RC_TESTING | TPM_RC_NV_RATE | TPM_RC_RETRY | TPM_RC_NV_UNAVAILABLE
    )
}

/// `TPMA_NV_*` bits of an NV index's attributes.
pub mod nv_attr {
    pub const OWNERWRITE: u32 = 1 << 1;
    /// TPM_NT_COUNTER in the TPM_NT field (bits 7:4): an 8-byte monotonic counter.
    pub const NT_COUNTER: u32 = 1 << 4;
    pub const OWNERREAD: u32 = 1 << 17;
    pub const NO_DA: u32 = 1 << 25;
}

/// A TPM command: header (tag, size, code) then `body` (handles, authorisations, parameters).
fn framed(tag: u16, code: u32, body: &[u8]) -> Vec<u8> {
    let size = u32::try_from(TPM_HEADER_SIZE + body.len()).unwrap_or(u32::MAX);
    let mut bytes = Vec::with_capacity(TPM_HEADER_SIZE + body.len());
    bytes.extend_from_slice(&tag.to_be_bytes());
    bytes.extend_from_slice(&size.to_be_bytes());
    bytes.extend_from_slice(&code.to_be_bytes());
    bytes.extend_from_slice(body);
    bytes
}

/// A command without sessions.
fn command(code: u32, params: &[u8]) -> Vec<u8> {
    framed(TPM_ST_NO_SESSIONS, code, params)
}

/// A command with `handles`, one empty password session, then `params`.
fn command_with_password(code: u32, handles: &[u32], params: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(4 * handles.len() + 13 + params.len());
    for handle in handles {
        body.extend_from_slice(&handle.to_be_bytes());
    }
    // authorizationSize, then TPMS_AUTH_COMMAND: sessionHandle, nonce (empty TPM2B),
    // sessionAttributes (none), hmac = the password (empty TPM2B).
    body.extend_from_slice(&9u32.to_be_bytes());
    body.extend_from_slice(&TPM_RS_PW.to_be_bytes());
    body.extend_from_slice(&0u16.to_be_bytes());
    body.push(0);
    body.extend_from_slice(&0u16.to_be_bytes());
    body.extend_from_slice(params);
    framed(TPM_ST_SESSIONS, code, &body)
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

/// TPM2_PCR_Extend of one PCR's SHA-256 bank with `digest`.
pub fn pcr_extend_sha256(index: u32, digest: &[u8; 32]) -> Vec<u8> {
    let mut params = Vec::with_capacity(38);
    params.extend_from_slice(&1u32.to_be_bytes()); // one TPMT_HA
    params.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
    params.extend_from_slice(digest);
    command_with_password(TPM_CC_PCR_EXTEND, &[index], &params)
}

/// TPM2_NV_DefineSpace by the owner of an 8-byte counter index with an empty auth value and
/// no policy, readable and writable with owner authorisation, outside dictionary-attack
/// protection.
pub fn nv_define_counter(index: u32) -> Vec<u8> {
    let attributes =
        nv_attr::NT_COUNTER | nv_attr::OWNERWRITE | nv_attr::OWNERREAD | nv_attr::NO_DA;
    // TPMS_NV_PUBLIC: nvIndex, nameAlg, attributes, authPolicy (empty), dataSize.
    let mut public = Vec::with_capacity(14);
    public.extend_from_slice(&index.to_be_bytes());
    public.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
    public.extend_from_slice(&attributes.to_be_bytes());
    public.extend_from_slice(&0u16.to_be_bytes());
    public.extend_from_slice(&8u16.to_be_bytes());
    let mut params = Vec::with_capacity(18);
    params.extend_from_slice(&0u16.to_be_bytes()); // auth: empty TPM2B_AUTH
    params.extend_from_slice(&(public.len() as u16).to_be_bytes());
    params.extend_from_slice(&public);
    command_with_password(TPM_CC_NV_DEFINE_SPACE, &[TPM_RH_OWNER], &params)
}

/// TPM2_NV_Increment of a counter index, authorised by the owner.
pub fn nv_increment(index: u32) -> Vec<u8> {
    command_with_password(TPM_CC_NV_INCREMENT, &[TPM_RH_OWNER, index], &[])
}

/// TPM2_NV_Read of a counter index's 8 bytes, authorised by the owner.
pub fn nv_read_counter(index: u32) -> Vec<u8> {
    let mut params = [0u8; 4];
    params[..2].copy_from_slice(&8u16.to_be_bytes()); // size
    params[2..].copy_from_slice(&0u16.to_be_bytes()); // offset
    command_with_password(TPM_CC_NV_READ, &[TPM_RH_OWNER, index], &params)
}

/// The parameters of a successful response to a command with sessions: after the
/// parameterSize field, before the authorisation area.
pub fn session_parameters(answer: &TpmAnswer) -> Option<&[u8]> {
    let size = u32::from_be_bytes(answer.params.get(..4)?.try_into().ok()?);
    answer.params.get(4..4 + usize::try_from(size).ok()?)
}

/// The value NV_Read returned for a counter index (its 8 bytes, big-endian).
pub fn counter_value(answer: &TpmAnswer) -> Option<u64> {
    let (data, _) = tpm2b(session_parameters(answer)?)?;
    Some(u64::from_be_bytes(data.try_into().ok()?))
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
    /// Connects with `deadline` on every later read and write; a failure is returned as is,
    /// for callers that tell a restarting server from a missing stack.
    pub fn connect_within(paths: &StatePaths, deadline: Duration) -> Result<Self, CallError> {
        let stream = FramedStream::connect(&paths.tpm_sock(), deadline)?;
        Ok(TpmConsumer { stream })
    }

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
    fn session_commands_match_the_tpm2_byte_layouts() {
        // The empty password session: authorizationSize 9, TPM_RS_PW, empty nonce, no
        // attributes, empty password.
        let pw = [0, 0, 0, 9, 0x40, 0, 0, 9, 0, 0, 0, 0, 0];
        let index = [0x01, 0x50, 0x0C, 0x4A];
        let owner = [0x40, 0, 0, 1];
        let increment = nv_increment(0x0150_0C4A);
        assert_eq!(
            &increment[..10],
            &[0x80, 0x02, 0, 0, 0, 31, 0, 0, 0x01, 0x34]
        );
        assert_eq!(&increment[10..14], &owner);
        assert_eq!(&increment[14..18], &index);
        assert_eq!(&increment[18..], &pw);
        let read = nv_read_counter(0x0150_0C4A);
        assert_eq!(&read[..10], &[0x80, 0x02, 0, 0, 0, 35, 0, 0, 0x01, 0x4E]);
        assert_eq!(&read[18..31], &pw);
        assert_eq!(&read[31..], &[0, 8, 0, 0]);
        let define = nv_define_counter(0x0150_0C4A);
        assert_eq!(&define[..10], &[0x80, 0x02, 0, 0, 0, 45, 0, 0, 0x01, 0x2A]);
        assert_eq!(&define[10..14], &owner);
        assert_eq!(&define[14..27], &pw);
        // auth (empty), TPM2B_NV_PUBLIC of 14 bytes: index, SHA-256, attributes
        // NO_DA | OWNERREAD | NT_COUNTER | OWNERWRITE, no policy, 8 bytes.
        assert_eq!(
            &define[27..],
            &[0, 0, 0, 14, 0x01, 0x50, 0x0C, 0x4A, 0, 0x0B, 0x02, 0x02, 0, 0x12, 0, 0, 0, 8]
        );
        let extend = pcr_extend_sha256(16, &[7; 32]);
        assert_eq!(extend.len(), 10 + 4 + 13 + 4 + 2 + 32);
        assert_eq!(&extend[..10], &[0x80, 0x02, 0, 0, 0, 65, 0, 0, 0x01, 0x82]);
        assert_eq!(&extend[10..14], &[0, 0, 0, 16]);
        assert_eq!(&extend[14..27], &pw);
        assert_eq!(&extend[27..33], &[0, 0, 0, 1, 0, 0x0B]);
    }

    #[test]
    fn a_counter_value_is_read_between_parameter_size_and_sessions() {
        let mut params = vec![0, 0, 0, 10, 0, 8];
        params.extend_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
        params.extend_from_slice(&[0, 0, 1, 0, 0]); // the password session's answer
        let answer = TpmAnswer { rc: 0, params };
        assert_eq!(counter_value(&answer), Some(0x0102_0304_0506_0708));
        let short = TpmAnswer {
            rc: 0,
            params: vec![0, 0, 0, 10, 0, 8, 1, 2],
        };
        assert_eq!(counter_value(&short), None);
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
