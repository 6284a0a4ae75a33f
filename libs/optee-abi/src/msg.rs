//! `struct optee_msg_arg` and `struct optee_msg_param` (`optee_msg.h`), byte-exact and
//! little-endian.
//!
//! Header (32 bytes): cmd @0, func @4, session @8, cancel_id @12, pad @16, ret @20,
//! ret_origin @24, num_params @28; then `num_params` params of 32 bytes: attr @0 and three
//! u64 words @8, @16, @24 (the tmem / rmem / value union).

use heapless::Vec;

use crate::mem::{PhysMem, PAGE_SIZE};
use crate::AbiError;

/// Param attribute values.
pub mod attr {
    pub const NONE: u64 = 0x0;
    pub const VALUE_INPUT: u64 = 0x1;
    pub const VALUE_OUTPUT: u64 = 0x2;
    pub const VALUE_INOUT: u64 = 0x3;
    pub const RMEM_INPUT: u64 = 0x5;
    pub const RMEM_OUTPUT: u64 = 0x6;
    pub const RMEM_INOUT: u64 = 0x7;
    pub const TMEM_INPUT: u64 = 0x9;
    pub const TMEM_OUTPUT: u64 = 0xa;
    pub const TMEM_INOUT: u64 = 0xb;
    /// The bits that hold the type.
    pub const TYPE_MASK: u64 = 0xff;
    /// Meta param: not passed to the TA (OPEN_SESSION's UUIDs).
    pub const META: u64 = 1 << 8;
    /// The tmem buffer is a non-contiguous page list.
    pub const NONCONTIG: u64 = 1 << 9;
}

/// Message commands (`optee_msg_arg.cmd`).
pub mod cmd {
    pub const OPEN_SESSION: u32 = 0;
    pub const INVOKE_COMMAND: u32 = 1;
    pub const CLOSE_SESSION: u32 = 2;
    pub const CANCEL: u32 = 3;
    pub const REGISTER_SHM: u32 = 4;
    pub const UNREGISTER_SHM: u32 = 5;
    pub const DO_BOTTOM_HALF: u32 = 6;
    pub const STOP_ASYNC_NOTIF: u32 = 7;
}

/// RPC commands (`optee_rpc_cmd.h`), in an `optee_msg_arg` sent with an RPC CMD.
pub mod rpc_cmd {
    pub const GET_TIME: u32 = 3;
    pub const NOTIFICATION: u32 = 4;
    pub const SUSPEND: u32 = 5;
    pub const SHM_ALLOC: u32 = 6;
    pub const SHM_FREE: u32 = 7;
    /// NOTIFICATION value a: wait for the key in value b (`OPTEE_RPC_NOTIFICATION_WAIT`).
    pub const NOTIFICATION_WAIT: u64 = 0;
    /// NOTIFICATION value a: wake whoever waits for the key in value b
    /// (`OPTEE_RPC_NOTIFICATION_SEND`).
    pub const NOTIFICATION_SEND: u64 = 1;
    /// SHM_ALLOC / SHM_FREE value a: memory for a TA (application).
    pub const SHM_TYPE_APPL: u64 = 0;
    /// SHM_ALLOC / SHM_FREE value a: memory for OP-TEE itself (kernel).
    pub const SHM_TYPE_KERNEL: u64 = 1;
}

/// Size of the `optee_msg_arg` header.
pub const ARG_HEADER_SIZE: usize = 32;
/// Size of one `optee_msg_param`.
pub const PARAM_SIZE: usize = 32;
/// Params Linux puts in one message (`TEE_NUM_PARAMS` 4 plus OPEN_SESSION's two META params):
/// what a [`MsgArg`] holds, and all that teed and its clients ever build.
pub const LINUX_MAX_PARAMS: usize = 6;
/// Params a message may carry at the ABI level: as many as fit one 4 KiB page after the header,
/// (4096 - 32) / 32 = 127 (`OPTEE_MSG_MAX_NUM_PARAMS`, optee_msg.h). The secure world accepts
/// this many (core/arch/arm/kernel/thread_optee_smc.c); read such messages with [`MsgView`].
pub const MSG_MAX_NUM_PARAMS: usize = (PAGE_SIZE - ARG_HEADER_SIZE) / PARAM_SIZE;

/// Bytes of an `optee_msg_arg` with `num_params` params.
pub const fn arg_size(num_params: usize) -> usize {
    ARG_HEADER_SIZE + PARAM_SIZE * num_params
}

/// Which way a param's data flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
    InOut,
}

impl Direction {
    /// The offset of this direction from the INPUT attr of its family.
    const fn offset(self) -> u64 {
        match self {
            Direction::In => 0,
            Direction::Out => 1,
            Direction::InOut => 2,
        }
    }

    /// True when the secure world reads the data.
    pub const fn is_input(self) -> bool {
        matches!(self, Direction::In | Direction::InOut)
    }

    /// True when the secure world writes the data.
    pub const fn is_output(self) -> bool {
        matches!(self, Direction::Out | Direction::InOut)
    }
}

/// A param as typed data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    /// Unused slot.
    None,
    /// Three plain values.
    Value {
        dir: Direction,
        a: u64,
        b: u64,
        c: u64,
        meta: bool,
    },
    /// A slice of registered shm named by its cookie.
    Rmem {
        dir: Direction,
        offs: u64,
        size: u64,
        shm_ref: u64,
    },
    /// Temporary memory by physical address (or a page list with `noncontig`).
    Tmem {
        dir: Direction,
        buf_ptr: u64,
        size: u64,
        shm_ref: u64,
        noncontig: bool,
        meta: bool,
    },
}

/// A param as its four raw words: what lies in memory, whether or not its attr is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RawParam {
    pub attr: u64,
    pub a: u64,
    pub b: u64,
    pub c: u64,
}

impl RawParam {
    /// Interprets the raw words by their attribute, strictly: a bit beyond the type, META and
    /// NONCONTIG, or a flag on a type that takes none, is an error. This is how a normal world
    /// reads back what it built; the secure world's reading is [`RawParam::decode_masked`].
    pub fn decode_typed(&self) -> Result<Param, AbiError> {
        let meta = self.attr & attr::META != 0;
        let noncontig = self.attr & attr::NONCONTIG != 0;
        let known_flags = attr::TYPE_MASK | attr::META | attr::NONCONTIG;
        if self.attr & !known_flags != 0 {
            return Err(AbiError::BadAttr(self.attr));
        }
        let dir = |base: u64| match (self.attr & attr::TYPE_MASK) - base {
            0 => Direction::In,
            1 => Direction::Out,
            _ => Direction::InOut,
        };
        let ty = self.attr & attr::TYPE_MASK;
        match ty {
            attr::NONE if !meta && !noncontig => Ok(Param::None),
            attr::VALUE_INPUT..=attr::VALUE_INOUT if !noncontig => Ok(Param::Value {
                dir: dir(attr::VALUE_INPUT),
                a: self.a,
                b: self.b,
                c: self.c,
                meta,
            }),
            attr::RMEM_INPUT..=attr::RMEM_INOUT if !noncontig && !meta => Ok(Param::Rmem {
                dir: dir(attr::RMEM_INPUT),
                offs: self.a,
                size: self.b,
                shm_ref: self.c,
            }),
            attr::TMEM_INPUT..=attr::TMEM_INOUT => Ok(Param::Tmem {
                dir: dir(attr::TMEM_INPUT),
                buf_ptr: self.a,
                size: self.b,
                shm_ref: self.c,
                noncontig,
                meta,
            }),
            _ => Err(AbiError::BadAttr(self.attr)),
        }
    }

    /// Interprets the raw words as OP-TEE does when it copies a param in (core/tee/entry_std.c
    /// copy_in_params): META is refused, the type is `attr & TYPE_MASK`, NONCONTIG counts for a
    /// TMEM only, and every other bit (the cache attributes at bit 16, anything unknown) is
    /// ignored. The result never has `meta` set.
    pub fn decode_masked(&self) -> Result<Param, AbiError> {
        if self.attr & attr::META != 0 {
            return Err(AbiError::BadAttr(self.attr));
        }
        let ty = self.attr & attr::TYPE_MASK;
        let noncontig = ty >= attr::TMEM_INPUT && self.attr & attr::NONCONTIG != 0;
        RawParam {
            attr: ty | if noncontig { attr::NONCONTIG } else { 0 },
            ..*self
        }
        .decode_typed()
        .map_err(|_| AbiError::BadAttr(self.attr))
    }

    /// The param in its 32 bytes.
    pub fn to_bytes(&self) -> [u8; PARAM_SIZE] {
        let mut out = [0u8; PARAM_SIZE];
        self.write(&mut out);
        out
    }

    fn read(bytes: &[u8]) -> RawParam {
        RawParam {
            attr: le64(bytes, 0),
            a: le64(bytes, 8),
            b: le64(bytes, 16),
            c: le64(bytes, 24),
        }
    }

    fn write(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.attr.to_le_bytes());
        out[8..16].copy_from_slice(&self.a.to_le_bytes());
        out[16..24].copy_from_slice(&self.b.to_le_bytes());
        out[24..32].copy_from_slice(&self.c.to_le_bytes());
    }
}

impl From<Param> for RawParam {
    fn from(param: Param) -> RawParam {
        let flag = |on: bool, bit: u64| if on { bit } else { 0 };
        match param {
            Param::None => RawParam::default(),
            Param::Value { dir, a, b, c, meta } => RawParam {
                attr: (attr::VALUE_INPUT + dir.offset()) | flag(meta, attr::META),
                a,
                b,
                c,
            },
            Param::Rmem {
                dir,
                offs,
                size,
                shm_ref,
            } => RawParam {
                attr: attr::RMEM_INPUT + dir.offset(),
                a: offs,
                b: size,
                c: shm_ref,
            },
            Param::Tmem {
                dir,
                buf_ptr,
                size,
                shm_ref,
                noncontig,
                meta,
            } => RawParam {
                attr: (attr::TMEM_INPUT + dir.offset())
                    | flag(noncontig, attr::NONCONTIG)
                    | flag(meta, attr::META),
                a: buf_ptr,
                b: size,
                c: shm_ref,
            },
        }
    }
}

/// The 32-byte `optee_msg_arg` header, params aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MsgHeader {
    pub cmd: u32,
    pub func: u32,
    pub session: u32,
    pub cancel_id: u32,
    pub ret: u32,
    pub ret_origin: u32,
    pub num_params: u32,
}

impl MsgHeader {
    /// Reads a header; fails only on fewer than [`ARG_HEADER_SIZE`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<MsgHeader, AbiError> {
        if bytes.len() < ARG_HEADER_SIZE {
            return Err(AbiError::Truncated {
                needed: ARG_HEADER_SIZE,
                have: bytes.len(),
            });
        }
        Ok(MsgHeader {
            cmd: le32(bytes, 0),
            func: le32(bytes, 4),
            session: le32(bytes, 8),
            cancel_id: le32(bytes, 12),
            ret: le32(bytes, 20),
            ret_origin: le32(bytes, 24),
            num_params: le32(bytes, 28),
        })
    }

    /// The header in its 32 bytes (the pad word zero).
    pub fn to_bytes(&self) -> [u8; ARG_HEADER_SIZE] {
        let words = [
            self.cmd,
            self.func,
            self.session,
            self.cancel_id,
            0,
            self.ret,
            self.ret_origin,
            self.num_params,
        ];
        let mut out = [0u8; ARG_HEADER_SIZE];
        for (i, word) in words.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&word.to_le_bytes());
        }
        out
    }
}

/// A message checked in place and decoded lazily: the header at once, each param when asked.
/// It borrows the bytes and holds no params itself, so a side that accepts up to
/// [`MSG_MAX_NUM_PARAMS`] never builds a 4 KiB value to read one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgView<'a> {
    header: MsgHeader,
    /// Exactly `header.num_params` params.
    params: &'a [u8],
}

impl<'a> MsgView<'a> {
    /// Checks `bytes` as a message of at most `max_params` params: truncation and the param
    /// count fail, anything else is left to whoever reads the params.
    pub fn new(bytes: &'a [u8], max_params: usize) -> Result<MsgView<'a>, AbiError> {
        let header = MsgHeader::decode(bytes)?;
        if header.num_params as usize > max_params {
            return Err(AbiError::TooManyParams {
                count: header.num_params,
                max: max_params,
            });
        }
        let needed = arg_size(header.num_params as usize);
        let params = bytes
            .get(ARG_HEADER_SIZE..needed)
            .ok_or(AbiError::Truncated {
                needed,
                have: bytes.len(),
            })?;
        Ok(MsgView { header, params })
    }

    /// The header.
    pub fn header(&self) -> MsgHeader {
        self.header
    }

    /// Params the message carries.
    pub fn num_params(&self) -> usize {
        self.params.len() / PARAM_SIZE
    }

    /// Param `index`, decoded now; `None` beyond the last.
    pub fn param(&self, index: usize) -> Option<RawParam> {
        let at = index.checked_mul(PARAM_SIZE)?;
        self.params.get(at..at + PARAM_SIZE).map(RawParam::read)
    }

    /// Every param in order, each decoded as it is reached.
    pub fn params(&self) -> impl ExactSizeIterator<Item = RawParam> + 'a {
        self.params.chunks_exact(PARAM_SIZE).map(RawParam::read)
    }
}

/// An `optee_msg_arg` with its params.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MsgArg {
    pub cmd: u32,
    pub func: u32,
    pub session: u32,
    pub cancel_id: u32,
    pub ret: u32,
    pub ret_origin: u32,
    pub params: Vec<RawParam, LINUX_MAX_PARAMS>,
}

impl MsgArg {
    /// A message for `cmd` with no params and zeroed fields.
    pub fn new(cmd: u32) -> MsgArg {
        MsgArg {
            cmd,
            ..MsgArg::default()
        }
    }

    /// REGISTER_SHM of a buffer described by the non-contiguous page list at `list_pa`
    /// (offset 0), `size` bytes long, that the secure world will know as `cookie`.
    pub fn register_shm(list_pa: u64, size: u64, cookie: u64) -> MsgArg {
        MsgArg::with_param(
            cmd::REGISTER_SHM,
            Param::Tmem {
                dir: Direction::Out,
                buf_ptr: list_pa,
                size,
                shm_ref: cookie,
                noncontig: true,
                meta: false,
            },
        )
    }

    /// UNREGISTER_SHM of the buffer registered as `cookie`.
    pub fn unregister_shm(cookie: u64) -> MsgArg {
        MsgArg::with_param(
            cmd::UNREGISTER_SHM,
            Param::Rmem {
                dir: Direction::In,
                offs: 0,
                size: 0,
                shm_ref: cookie,
            },
        )
    }

    /// CLOSE_SESSION of `session`.
    pub fn close_session(session: u32) -> MsgArg {
        MsgArg {
            session,
            ..MsgArg::new(cmd::CLOSE_SESSION)
        }
    }

    /// A message for `cmd` with one param.
    fn with_param(cmd: u32, param: Param) -> MsgArg {
        let mut arg = MsgArg::new(cmd);
        // Cannot fail: one param is within LINUX_MAX_PARAMS.
        let _ = arg.push(param);
        arg
    }

    /// Appends a param, failing when the message already holds [`LINUX_MAX_PARAMS`].
    pub fn push(&mut self, param: impl Into<RawParam>) -> Result<(), AbiError> {
        self.params
            .push(param.into())
            .map_err(|_| AbiError::TooManyParams {
                count: LINUX_MAX_PARAMS as u32 + 1,
                max: LINUX_MAX_PARAMS,
            })
    }

    /// The header of this message.
    pub fn header(&self) -> MsgHeader {
        MsgHeader {
            cmd: self.cmd,
            func: self.func,
            session: self.session,
            cancel_id: self.cancel_id,
            ret: self.ret,
            ret_origin: self.ret_origin,
            num_params: self.params.len() as u32,
        }
    }

    /// Bytes this message occupies.
    pub fn encoded_len(&self) -> usize {
        arg_size(self.params.len())
    }

    /// Reads `num_params` from a header without decoding the rest.
    pub fn peek_num_params(bytes: &[u8]) -> Result<u32, AbiError> {
        Ok(MsgHeader::decode(bytes)?.num_params)
    }

    /// Decodes a message; fails on truncation or more than [`LINUX_MAX_PARAMS`] params.
    pub fn decode(bytes: &[u8]) -> Result<MsgArg, AbiError> {
        let view = MsgView::new(bytes, LINUX_MAX_PARAMS)?;
        let header = view.header();
        let mut params = Vec::new();
        for param in view.params() {
            // Cannot overflow: MsgView checked num_params <= LINUX_MAX_PARAMS.
            let _ = params.push(param);
        }
        Ok(MsgArg {
            cmd: header.cmd,
            func: header.func,
            session: header.session,
            cancel_id: header.cancel_id,
            ret: header.ret,
            ret_origin: header.ret_origin,
            params,
        })
    }

    /// Encodes into `out`, returning the bytes written.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, AbiError> {
        let needed = self.encoded_len();
        if out.len() < needed {
            return Err(AbiError::BufferTooSmall {
                needed,
                have: out.len(),
            });
        }
        out[..ARG_HEADER_SIZE].copy_from_slice(&self.header().to_bytes());
        for (i, p) in self.params.iter().enumerate() {
            let at = ARG_HEADER_SIZE + i * PARAM_SIZE;
            p.write(&mut out[at..at + PARAM_SIZE]);
        }
        Ok(needed)
    }

    /// Reads a message from normal-world memory at `pa`.
    pub fn read_from(mem: &(impl PhysMem + ?Sized), pa: u64) -> Result<MsgArg, AbiError> {
        let mut buf = [0u8; arg_size(LINUX_MAX_PARAMS)];
        mem.read(pa, &mut buf[..ARG_HEADER_SIZE])?;
        let num_params = MsgArg::peek_num_params(&buf)?;
        if num_params as usize > LINUX_MAX_PARAMS {
            return Err(AbiError::TooManyParams {
                count: num_params,
                max: LINUX_MAX_PARAMS,
            });
        }
        let len = arg_size(num_params as usize);
        mem.read(pa + ARG_HEADER_SIZE as u64, &mut buf[ARG_HEADER_SIZE..len])?;
        MsgArg::decode(&buf[..len])
    }

    /// Writes this message to normal-world memory at `pa`.
    pub fn write_to(&self, mem: &mut (impl PhysMem + ?Sized), pa: u64) -> Result<(), AbiError> {
        let mut buf = [0u8; arg_size(LINUX_MAX_PARAMS)];
        let len = self.encode(&mut buf)?;
        mem.write(pa, &buf[..len])?;
        Ok(())
    }
}

fn le32(bytes: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(w)
}

fn le64(bytes: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(w)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Encodes `arg` and returns its bytes.
    fn encoded(arg: &MsgArg) -> [u8; arg_size(LINUX_MAX_PARAMS)] {
        let mut bytes = [0u8; arg_size(LINUX_MAX_PARAMS)];
        arg.encode(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn register_shm_names_a_noncontiguous_output_tmem() {
        let bytes = encoded(&MsgArg::register_shm(
            0x4000_3000,
            0x2345,
            0x0000_0007_0000_0009,
        ));
        assert_eq!(le32(&bytes, 0), cmd::REGISTER_SHM);
        assert_eq!(le32(&bytes, 8), 0, "no session");
        assert_eq!(le32(&bytes, 28), 1, "one param");
        assert_eq!(le64(&bytes, 32), attr::TMEM_OUTPUT | attr::NONCONTIG);
        assert_eq!(le64(&bytes, 40), 0x4000_3000, "buf_ptr: the page list");
        assert_eq!(le64(&bytes, 48), 0x2345, "size");
        assert_eq!(
            le64(&bytes, 56),
            0x0000_0007_0000_0009,
            "shm_ref: the cookie"
        );
    }

    #[test]
    fn unregister_shm_names_the_cookie_in_an_input_rmem() {
        let bytes = encoded(&MsgArg::unregister_shm(0x0000_0003_0000_0001));
        assert_eq!(le32(&bytes, 0), cmd::UNREGISTER_SHM);
        assert_eq!(le32(&bytes, 28), 1, "one param");
        assert_eq!(le64(&bytes, 32), attr::RMEM_INPUT);
        assert_eq!(le64(&bytes, 40), 0, "offs");
        assert_eq!(le64(&bytes, 48), 0, "size");
        assert_eq!(
            le64(&bytes, 56),
            0x0000_0003_0000_0001,
            "shm_ref: the cookie"
        );
    }

    #[test]
    fn close_session_carries_only_the_session() {
        let bytes = encoded(&MsgArg::close_session(0x1234));
        assert_eq!(le32(&bytes, 0), cmd::CLOSE_SESSION);
        assert_eq!(le32(&bytes, 8), 0x1234, "session");
        assert_eq!(le32(&bytes, 28), 0, "no params");
        assert!(bytes[4..8].iter().chain(&bytes[12..28]).all(|b| *b == 0));
    }
}
