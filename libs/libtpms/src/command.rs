//! Hand-built TPM 2.0 commands and a response reader: just the handful tests and health
//! checks need (TPM 2.0 Library spec, Part 3). Every command authorises with an empty
//! password session (`TPM_RS_PW`), which is what a fresh TPM's hierarchies and these tests'
//! NV indices accept.

/// `TPM_ST_NO_SESSIONS`.
pub const ST_NO_SESSIONS: u16 = 0x8001;
/// `TPM_ST_SESSIONS`.
pub const ST_SESSIONS: u16 = 0x8002;

/// Command codes (`TPM_CC_*`).
pub mod cc {
    pub const NV_DEFINE_SPACE: u32 = 0x12A;
    pub const NV_INCREMENT: u32 = 0x134;
    pub const NV_WRITE: u32 = 0x137;
    pub const STARTUP: u32 = 0x144;
    pub const SHUTDOWN: u32 = 0x145;
    pub const NV_READ: u32 = 0x14E;
    pub const GET_CAPABILITY: u32 = 0x17A;
    pub const GET_RANDOM: u32 = 0x17B;
    pub const PCR_READ: u32 = 0x17E;
    pub const PCR_EXTEND: u32 = 0x182;
}

/// Response codes (`TPM_RC_*`) tests look for.
pub mod rc {
    pub const SUCCESS: u32 = 0;
    /// A command other than Startup before TPM2_Startup.
    pub const INITIALIZE: u32 = 0x100;
    /// Startup when already started, or Startup(STATE) without a saved state.
    pub const FAILURE: u32 = 0x101;
    /// An NV index read before it was ever written (a counter never incremented).
    pub const NV_UNINITIALIZED: u32 = 0x14A;
    /// DA lockout.
    pub const LOCKOUT: u32 = 0x921;
    /// Try again (the first DA-protected authorisation after Startup gets it once).
    pub const RETRY: u32 = 0x922;
}

/// `TPM_SU_CLEAR`.
pub const SU_CLEAR: u16 = 0;
/// `TPM_SU_STATE`.
pub const SU_STATE: u16 = 1;

/// `TPM_RH_OWNER`.
pub const RH_OWNER: u32 = 0x4000_0001;
/// `TPM_RS_PW`: the password session handle.
pub const RS_PW: u32 = 0x4000_0009;
/// `TPM_ALG_SHA256`.
pub const ALG_SHA256: u16 = 0x000B;
/// `TPM_CAP_TPM_PROPERTIES`.
pub const CAP_TPM_PROPERTIES: u32 = 6;
/// `TPM_PT_LOCKOUT_COUNTER` (PT_VAR + 14).
pub const PT_LOCKOUT_COUNTER: u32 = 0x20E;

/// `TPMA_NV_*` attribute bits.
pub mod nv_attr {
    pub const OWNERWRITE: u32 = 1 << 1;
    pub const AUTHWRITE: u32 = 1 << 2;
    /// `TPM_NT_COUNTER` in the `TPM_NT` field (bits 7:4): an 8-byte monotonic counter.
    pub const NT_COUNTER: u32 = 1 << 4;
    pub const OWNERREAD: u32 = 1 << 17;
    pub const AUTHREAD: u32 = 1 << 18;
    pub const NO_DA: u32 = 1 << 25;
}

/// Accumulates a command body; [`Builder::finish`] prepends the header.
struct Builder {
    tag: u16,
    code: u32,
    body: Vec<u8>,
}

impl Builder {
    fn new(tag: u16, code: u32) -> Builder {
        Builder {
            tag,
            code,
            body: Vec::new(),
        }
    }

    fn u8(mut self, v: u8) -> Builder {
        self.body.push(v);
        self
    }

    fn u16(mut self, v: u16) -> Builder {
        self.body.extend_from_slice(&v.to_be_bytes());
        self
    }

    fn u32(mut self, v: u32) -> Builder {
        self.body.extend_from_slice(&v.to_be_bytes());
        self
    }

    fn bytes(mut self, v: &[u8]) -> Builder {
        self.body.extend_from_slice(v);
        self
    }

    /// A TPM2B: u16 size, then the bytes (callers keep them far below 64 KiB).
    fn sized(self, v: &[u8]) -> Builder {
        self.u16(v.len() as u16).bytes(v)
    }

    /// The authorisation area with one password session carrying `password`.
    fn password_session(self, password: &[u8]) -> Builder {
        // handle + nonce size + attributes + hmac size + password
        let area = 4 + 2 + 1 + 2 + password.len() as u32;
        self.u32(area).u32(RS_PW).sized(&[]).u8(0).sized(password)
    }

    fn finish(self) -> Vec<u8> {
        let size = (10 + self.body.len()) as u32;
        let mut out = Vec::with_capacity(size as usize);
        out.extend_from_slice(&self.tag.to_be_bytes());
        out.extend_from_slice(&size.to_be_bytes());
        out.extend_from_slice(&self.code.to_be_bytes());
        out.extend_from_slice(&self.body);
        out
    }
}

/// TPM2_Startup(`startup_type`).
pub fn startup(startup_type: u16) -> Vec<u8> {
    Builder::new(ST_NO_SESSIONS, cc::STARTUP)
        .u16(startup_type)
        .finish()
}

/// TPM2_Shutdown(`shutdown_type`).
pub fn shutdown(shutdown_type: u16) -> Vec<u8> {
    Builder::new(ST_NO_SESSIONS, cc::SHUTDOWN)
        .u16(shutdown_type)
        .finish()
}

/// TPM2_GetRandom(`bytes`).
pub fn get_random(bytes: u16) -> Vec<u8> {
    Builder::new(ST_NO_SESSIONS, cc::GET_RANDOM)
        .u16(bytes)
        .finish()
}

/// TPM2_PCR_Extend of `pcr`'s SHA-256 bank with `digest`.
pub fn pcr_extend_sha256(pcr: u32, digest: &[u8; 32]) -> Vec<u8> {
    Builder::new(ST_SESSIONS, cc::PCR_EXTEND)
        .u32(pcr)
        .password_session(&[])
        .u32(1)
        .u16(ALG_SHA256)
        .bytes(digest)
        .finish()
}

/// TPM2_PCR_Read of one PCR (0..24) of the SHA-256 bank.
pub fn pcr_read_sha256(pcr: u8) -> Vec<u8> {
    let mut select = [0u8; 3];
    if let Some(byte) = select.get_mut(usize::from(pcr / 8)) {
        *byte = 1 << (pcr % 8);
    }
    Builder::new(ST_NO_SESSIONS, cc::PCR_READ)
        .u32(1)
        .u16(ALG_SHA256)
        .u8(3)
        .bytes(&select)
        .finish()
}

/// TPM2_NV_DefineSpace by the owner: an ordinary index of `size` bytes with an empty auth value.
pub fn nv_define_space(index: u32, size: u16, attributes: u32) -> Vec<u8> {
    let mut public = Builder::new(0, 0)
        .u32(index)
        .u16(ALG_SHA256)
        .u32(attributes)
        .sized(&[])
        .u16(size)
        .body;
    let mut info = (public.len() as u16).to_be_bytes().to_vec();
    info.append(&mut public);
    Builder::new(ST_SESSIONS, cc::NV_DEFINE_SPACE)
        .u32(RH_OWNER)
        .password_session(&[])
        .sized(&[])
        .bytes(&info)
        .finish()
}

/// TPM2_NV_Write of `data` at `offset`, authorised by `auth_handle` (the owner or the index).
pub fn nv_write(auth_handle: u32, index: u32, offset: u16, data: &[u8]) -> Vec<u8> {
    Builder::new(ST_SESSIONS, cc::NV_WRITE)
        .u32(auth_handle)
        .u32(index)
        .password_session(&[])
        .sized(data)
        .u16(offset)
        .finish()
}

/// TPM2_NV_Read of `size` bytes at `offset`, authorised by `auth_handle`.
pub fn nv_read(auth_handle: u32, index: u32, size: u16, offset: u16) -> Vec<u8> {
    Builder::new(ST_SESSIONS, cc::NV_READ)
        .u32(auth_handle)
        .u32(index)
        .password_session(&[])
        .u16(size)
        .u16(offset)
        .finish()
}

/// TPM2_NV_Increment of a counter index, authorised by `auth_handle` (the owner or the index).
pub fn nv_increment(auth_handle: u32, index: u32) -> Vec<u8> {
    Builder::new(ST_SESSIONS, cc::NV_INCREMENT)
        .u32(auth_handle)
        .u32(index)
        .password_session(&[])
        .finish()
}

/// TPM2_GetCapability(`capability`, `property`, `count`).
pub fn get_capability(capability: u32, property: u32, count: u32) -> Vec<u8> {
    Builder::new(ST_NO_SESSIONS, cc::GET_CAPABILITY)
        .u32(capability)
        .u32(property)
        .u32(count)
        .finish()
}

/// A response split into its header fields and parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response<'a> {
    pub tag: u16,
    pub code: u32,
    /// The parameter area (after the parameterSize field for session responses).
    pub params: &'a [u8],
}

impl<'a> Response<'a> {
    /// Splits a response without handles (every command above); `None` when malformed.
    pub fn parse(bytes: &'a [u8]) -> Option<Response<'a>> {
        let tag = u16::from_be_bytes(bytes.get(0..2)?.try_into().ok()?);
        let size = u32::from_be_bytes(bytes.get(2..6)?.try_into().ok()?) as usize;
        let code = u32::from_be_bytes(bytes.get(6..10)?.try_into().ok()?);
        let rest = bytes.get(10..size)?;
        if size != bytes.len() {
            return None;
        }
        let params = if tag == ST_SESSIONS && code == rc::SUCCESS {
            let len = u32::from_be_bytes(rest.get(0..4)?.try_into().ok()?) as usize;
            rest.get(4..4 + len)?
        } else {
            rest
        };
        Some(Response { tag, code, params })
    }

    /// The leading TPM2B of the parameters (GetRandom's bytes, NV_Read's data).
    pub fn first_sized(&self) -> Option<&'a [u8]> {
        let len = usize::from(u16::from_be_bytes(self.params.get(0..2)?.try_into().ok()?));
        self.params.get(2..2 + len)
    }

    /// The single digest of a one-PCR PCR_Read response.
    pub fn pcr_digest(&self) -> Option<&'a [u8]> {
        // updateCounter u32, selection count u32 + (alg u16, sizeofSelect u8, select[..])
        let select_len = usize::from(*self.params.get(10)?);
        let digests = self.params.get(11 + select_len..)?;
        let count = u32::from_be_bytes(digests.get(0..4)?.try_into().ok()?);
        if count != 1 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes(digests.get(4..6)?.try_into().ok()?));
        digests.get(6..6 + len)
    }

    /// The value of the first property of a GetCapability(TPM_PROPERTIES) response.
    pub fn first_property(&self) -> Option<(u32, u32)> {
        // moreData u8, capability u32, count u32, then (property u32, value u32) pairs
        let count = u32::from_be_bytes(self.params.get(5..9)?.try_into().ok()?);
        if count == 0 {
            return None;
        }
        let property = u32::from_be_bytes(self.params.get(9..13)?.try_into().ok()?);
        let value = u32::from_be_bytes(self.params.get(13..17)?.try_into().ok()?);
        Some((property, value))
    }
}

/// The response code of a raw response (`None` when it is shorter than a header).
pub fn response_code(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(6..10)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn startup_and_get_random_match_the_documented_bytes() {
        assert_eq!(
            startup(SU_CLEAR),
            [0x80, 0x01, 0, 0, 0, 0x0C, 0, 0, 0x01, 0x44, 0, 0]
        );
        assert_eq!(
            get_random(16),
            [0x80, 0x01, 0, 0, 0, 0x0C, 0, 0, 0x01, 0x7B, 0, 0x10]
        );
    }

    #[test]
    fn header_size_field_counts_the_whole_command() {
        for command in [
            pcr_extend_sha256(16, &[7; 32]),
            nv_define_space(0x0150_0001, 8, nv_attr::OWNERWRITE),
            nv_write(RH_OWNER, 0x0150_0001, 0, b"abc"),
            nv_read(RH_OWNER, 0x0150_0001, 3, 0),
            nv_increment(RH_OWNER, 0x0150_0001),
            get_capability(CAP_TPM_PROPERTIES, PT_LOCKOUT_COUNTER, 1),
            pcr_read_sha256(23),
        ] {
            let size = u32::from_be_bytes(command[2..6].try_into().unwrap()) as usize;
            assert_eq!(size, command.len());
        }
    }

    #[test]
    fn nv_increment_matches_the_documented_bytes() {
        assert_eq!(
            nv_increment(RH_OWNER, 0x0150_0002),
            [
                0x80, 0x02, 0, 0, 0, 31, 0, 0, 0x01, 0x34, // header
                0x40, 0, 0, 1, 0x01, 0x50, 0, 2, // owner, index
                0, 0, 0, 9, 0x40, 0, 0, 9, 0, 0, 0, 0, 0, // empty password session
            ]
        );
    }

    /// A counter index on a real TPM: unreadable until its first increment, then it counts
    /// up by one per increment from wherever the TPM starts new counters.
    #[test]
    fn a_counter_index_counts_increments_on_a_real_tpm() {
        fn run(tpm: &mut crate::Tpm, command: &[u8]) -> u32 {
            response_code(&tpm.process(command).unwrap()).unwrap()
        }
        fn read(tpm: &mut crate::Tpm, index: u32) -> u64 {
            let response = tpm.process(&nv_read(RH_OWNER, index, 8, 0)).unwrap();
            let parsed = Response::parse(&response).unwrap();
            assert_eq!(parsed.code, rc::SUCCESS);
            u64::from_be_bytes(parsed.first_sized().unwrap().try_into().unwrap())
        }
        let mut tpm = crate::Tpm::manufacture().unwrap();
        assert_eq!(run(&mut tpm, &startup(SU_CLEAR)), rc::SUCCESS);
        let index = 0x0150_0003;
        let attributes =
            nv_attr::NT_COUNTER | nv_attr::OWNERWRITE | nv_attr::OWNERREAD | nv_attr::NO_DA;
        let define = nv_define_space(index, 8, attributes);
        assert_eq!(run(&mut tpm, &define), rc::SUCCESS);
        let unread = run(&mut tpm, &nv_read(RH_OWNER, index, 8, 0));
        assert_eq!(unread, rc::NV_UNINITIALIZED);
        let increment = nv_increment(RH_OWNER, index);
        assert_eq!(run(&mut tpm, &increment), rc::SUCCESS);
        let first = read(&mut tpm, index);
        for _ in 0..3 {
            assert_eq!(run(&mut tpm, &increment), rc::SUCCESS);
        }
        assert_eq!(read(&mut tpm, index), first + 3);
    }

    #[test]
    fn response_parsing_checks_sizes() {
        let ok = [0x80, 0x01, 0, 0, 0, 0x0E, 0, 0, 0, 0, 0, 2, 0xAB, 0xCD];
        let parsed = Response::parse(&ok).unwrap();
        assert_eq!(parsed.code, rc::SUCCESS);
        assert_eq!(parsed.first_sized(), Some(&[0xAB, 0xCD][..]));
        assert_eq!(Response::parse(&ok[..13]), None);
        let err = [0x80, 0x01, 0, 0, 0, 0x0A, 0, 0, 0x01, 0x00];
        assert_eq!(response_code(&err), Some(rc::INITIALIZE));
        assert_eq!(response_code(&err[..9]), None);
    }
}
