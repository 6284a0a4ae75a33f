//! The Broadcom BNXT firmware pseudo TA (core/pta/bcm/bnxt.c upstream; Linux tee_bnxt_fw).
//!
//! FASTBOOT loads the NIC firmware; COPY_COREDUMP copies a slice of the NIC's crash dump into
//! the client's registered buffer. The dump here is a deterministic 8 MiB image so that tests
//! elsewhere can check what they received against the `bnxt-image` crate, which both sides share.

use optee_abi::teec;
use optee_abi::uuid::{self, Uuid};
use tracing::debug;

use super::{ClientIdentity, ParamType, SessionId, TaContext, TaFlags, TaStep, TrustedApp};

/// Command: boot the NIC firmware (4 NONE params).
pub const FASTBOOT: u32 = 0;
/// Command: p0 MEMREF_INOUT destination, p1 VALUE_INPUT a = offset, b = size.
pub const COPY_COREDUMP: u32 = 3;
use bnxt_image::{coredump_chunk, COREDUMP_LEN};

/// The BNXT pseudo TA.
#[derive(Debug, Default)]
pub struct BnxtTa {
    /// FASTBOOTs since the instance was loaded (volatile).
    fastboots: u64,
}

impl BnxtTa {
    pub fn new() -> BnxtTa {
        BnxtTa::default()
    }

    /// FASTBOOT commands served since load or reset.
    pub fn fastboots(&self) -> u64 {
        self.fastboots
    }

    fn copy_coredump(ctx: &mut TaContext<'_>) -> u32 {
        let expected = [
            ParamType::MemrefInout,
            ParamType::ValueInput,
            ParamType::None,
            ParamType::None,
        ];
        if ctx.param_types() != expected {
            return teec::ERROR_BAD_PARAMETERS;
        }
        let Ok((offset, size, _)) = ctx.value(1) else {
            return teec::ERROR_BAD_PARAMETERS;
        };
        let Ok(capacity) = ctx.memref_size(0) else {
            return teec::ERROR_BAD_PARAMETERS;
        };
        let in_image = offset
            .checked_add(size)
            .is_some_and(|end| end <= COREDUMP_LEN);
        if !in_image || size > capacity {
            return teec::ERROR_BAD_PARAMETERS;
        }
        let mut chunk = vec![0u8; 64 * 1024];
        let mut done = 0u64;
        while done < size {
            let here = (size - done).min(chunk.len() as u64) as usize;
            if coredump_chunk(offset + done, &mut chunk[..here]).is_none()
                || ctx.write_memref(0, done, &chunk[..here]).is_err()
            {
                return teec::ERROR_BAD_PARAMETERS;
            }
            done += here as u64;
        }
        teec::SUCCESS
    }
}

impl TrustedApp for BnxtTa {
    fn uuid(&self) -> Uuid {
        uuid::BNXT_TA
    }

    /// PTA_DEFAULT_FLAGS | TA_FLAG_DEVICE_ENUM, as upstream registers it: many sessions may
    /// be open at once, which is why leaked bnxt sessions never block the next boot.
    fn flags(&self) -> TaFlags {
        TaFlags::PTA_DEFAULT.union(TaFlags::DEVICE_ENUM)
    }

    fn name(&self) -> &'static str {
        "pta_bnxt"
    }

    fn open_session(&mut self, _: SessionId, _: &ClientIdentity, _: &mut TaContext<'_>) -> u32 {
        teec::SUCCESS
    }

    fn invoke(&mut self, session: SessionId, func: u32, ctx: &mut TaContext<'_>) -> TaStep {
        // The Linux client always sends four params; the model holds clients to that.
        if ctx.params_passed() != 4 {
            return TaStep::Complete(teec::ERROR_BAD_PARAMETERS);
        }
        let result = match func {
            FASTBOOT => {
                if ctx.param_types().iter().all(|t| *t == ParamType::None) {
                    self.fastboots += 1;
                    teec::SUCCESS
                } else {
                    teec::ERROR_BAD_PARAMETERS
                }
            }
            COPY_COREDUMP => Self::copy_coredump(ctx),
            _ => teec::ERROR_NOT_SUPPORTED,
        };
        debug!(
            session,
            func,
            result = teec::result_name(result),
            "bnxt invoke"
        );
        TaStep::Complete(result)
    }

    fn close_session(&mut self, _: SessionId) {}

    fn unload(&mut self) {
        self.fastboots = 0;
    }
}
