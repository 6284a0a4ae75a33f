//! The BNXT front end: FASTBOOT and COPY_COREDUMP of the BNXT TA (REFERENCE §4), with the
//! dump served in chunks out of a fetched window.
//!
//! A fetched window is copied out of the registered buffer as soon as the TA's answer arrives,
//! and chunks are served from that private copy. Serving them from the buffer itself would be
//! wrong after a teed restart that bnxtd has not heard of yet: the successor reclaims the
//! buffer and may hand its pages to another client (tpmd's commands are secrets).

use alloc::vec::Vec as HeapVec;

use heapless::Vec;
use optee_abi::mem::PhysMem;
use optee_abi::teec;
use optee_abi::uuid::{self, Uuid};
use tee_proto::bnxt::{
    BnxtError, BnxtRequest, BnxtResponse, COREDUMP_CHUNK_MAX, COREDUMP_WINDOW_MAX,
};
use tee_proto::lifecycle::ServerKind;
use tee_proto::teed::Param;
use tee_proto::BnxtInterface;
use tracing::debug;

use crate::window::Window;
use tee_client::engine::{Begin, ClientError, Failure, ShmBuffer, TaCall, TaReply, TaService};

/// TA command: boot the NIC firmware (four NONE params).
pub const FASTBOOT: u32 = 0;
/// TA command: copy dump bytes into the buffer (p0 MEMREF_INOUT, p1 VALUE_IN a = offset,
/// b = size).
pub const COPY_COREDUMP: u32 = 3;
/// Length of the NIC's crash dump (ethtool's crash dump, the TA's image).
pub const COREDUMP_LEN: u32 = 8 << 20;
/// The registered buffer holds one window.
pub const SHM_SIZE: u32 = COREDUMP_WINDOW_MAX;

/// A checked NIC-driver request waiting for its turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BnxtJob {
    Load,
    CoredumpLen,
    /// A chunk inside the dump (already cut at its end).
    Copy {
        offset: u32,
        size: u32,
    },
}

/// The NIC-specific part of bnxtd: the last fetched dump window.
#[derive(Debug, Default)]
pub struct BnxtService {
    /// Which dump bytes `cache` holds.
    window: Option<Window>,
    /// A private copy of the window, taken from the buffer when the TA filled it.
    cache: HeapVec<u8>,
    /// The window the TA is copying into the buffer.
    fetching: Option<Window>,
}

/// The one mapping from client failures to NIC-driver errors.
pub fn bnxt_error(error: ClientError) -> BnxtError {
    match error.failure() {
        Failure::TeeUnavailable => BnxtError::TeeUnavailable,
        Failure::Retry => BnxtError::Retryable,
        Failure::Gone => BnxtError::NoDevice,
        Failure::Tee { code, origin } => BnxtError::Tee { code, origin },
    }
}

impl BnxtService {
    /// Copies the window the TA just wrote out of the buffer.
    fn take_window(
        &mut self,
        window: Window,
        mem: &mut dyn PhysMem,
        shm: ShmBuffer,
    ) -> Result<(), ClientError> {
        self.cache.resize(window.len as usize, 0);
        mem.read(shm.pa, &mut self.cache)?;
        self.window = Some(window);
        Ok(())
    }

    /// The chunk, from the private copy of `window`.
    fn serve_chunk(&self, window: Window, offset: u32, size: u32) -> BnxtResponse {
        let start = (offset - window.start) as usize;
        let bytes = self.cache.get(start..start + size as usize);
        match bytes.map(Vec::from_slice) {
            Some(Ok(data)) => BnxtResponse::Coredump { offset, data },
            // Unreachable: the window covers the chunk and sizes were checked on arrival.
            _ => BnxtResponse::Error(BnxtError::BadSize {
                size,
                max: COREDUMP_CHUNK_MAX as u32,
            }),
        }
    }
}

impl TaService for BnxtService {
    type Interface = BnxtInterface;
    type Job = BnxtJob;

    const KIND: ServerKind = ServerKind::Bnxtd;
    const TA: Uuid = uuid::BNXT_TA;
    const SHM_SIZE: u32 = SHM_SIZE;

    fn accept(&mut self, request: BnxtRequest) -> Result<BnxtJob, BnxtResponse> {
        match request {
            BnxtRequest::Load => Ok(BnxtJob::Load),
            BnxtRequest::CoredumpLen => Ok(BnxtJob::CoredumpLen),
            BnxtRequest::CopyCoredump { offset, size } => {
                let max = COREDUMP_CHUNK_MAX as u32;
                if size == 0 || size > max {
                    return Err(BnxtResponse::Error(BnxtError::BadSize { size, max }));
                }
                if offset >= COREDUMP_LEN {
                    return Err(BnxtResponse::Error(BnxtError::BadOffset {
                        offset,
                        len: COREDUMP_LEN,
                    }));
                }
                // The last chunk of the dump may be shorter than asked.
                let size = size.min(COREDUMP_LEN - offset);
                Ok(BnxtJob::Copy { offset, size })
            }
        }
    }

    fn begin(
        &mut self,
        job: &BnxtJob,
        _mem: &mut dyn PhysMem,
        shm: ShmBuffer,
    ) -> Begin<BnxtResponse> {
        match *job {
            BnxtJob::Load => {
                // A reloaded NIC can crash again: a cached window would be an old dump.
                self.window = None;
                Begin::Call(TaCall::new(FASTBOOT, [Param::None; 4]))
            }
            BnxtJob::CoredumpLen => Begin::Done(BnxtResponse::CoredumpLen { len: COREDUMP_LEN }),
            BnxtJob::Copy { offset, size } => {
                // A read from the start is a new dump read: fetch it fresh, as Linux always does.
                let cached = self
                    .window
                    .filter(|window| offset != 0 && window.contains(offset, size));
                if let Some(window) = cached {
                    return Begin::Done(self.serve_chunk(window, offset, size));
                }
                let window = Window::covering(offset, size, COREDUMP_LEN);
                debug!(
                    start = window.start,
                    len = window.len,
                    "fetching a dump window"
                );
                self.window = None;
                self.fetching = Some(window);
                Begin::Call(TaCall::new(
                    COPY_COREDUMP,
                    [
                        Param::MemrefInOut {
                            shm: shm.id,
                            offset: 0,
                            size: window.len,
                        },
                        Param::ValueIn {
                            a: u64::from(window.start),
                            b: u64::from(window.len),
                            c: 0,
                        },
                        Param::None,
                        Param::None,
                    ],
                ))
            }
        }
    }

    fn complete(
        &mut self,
        job: &BnxtJob,
        mem: &mut dyn PhysMem,
        shm: ShmBuffer,
        reply: TaReply<'_>,
    ) -> BnxtResponse {
        let fetched = self.fetching.take();
        let tee_error = BnxtError::Tee {
            code: reply.ret,
            origin: reply.origin,
        };
        match *job {
            // Linux's tee_bnxt_fw_load fails the load (-EINVAL) on any error. The PTA answers
            // TARGET_DEAD when bnxt_load_fw fails (core/pta/bcm/bnxt.c), whose one failure is
            // no valid image; ITEM_NOT_FOUND is what tee_bnxt_fw.c documents for it. Both are
            // the image; anything else is passed on as the TEE said it.
            BnxtJob::Load => match reply.ret {
                teec::SUCCESS => BnxtResponse::Loaded,
                teec::ERROR_TARGET_DEAD | teec::ERROR_ITEM_NOT_FOUND => {
                    BnxtResponse::Error(BnxtError::CorruptImage)
                }
                _ => BnxtResponse::Error(tee_error),
            },
            BnxtJob::CoredumpLen => BnxtResponse::CoredumpLen { len: COREDUMP_LEN },
            BnxtJob::Copy { offset, size } => match (reply.ret, fetched) {
                (teec::SUCCESS, Some(window)) => match self.take_window(window, mem, shm) {
                    Ok(()) => self.serve_chunk(window, offset, size),
                    Err(error) => self.fail(error),
                },
                (teec::SUCCESS, None) => self.fail(ClientError::UnexpectedReply),
                _ => BnxtResponse::Error(tee_error),
            },
        }
    }

    fn fail(&self, error: ClientError) -> BnxtResponse {
        BnxtResponse::Error(bnxt_error(error))
    }
}
