//! The Broadcom BNXT firmware pseudo TA (core/pta/bcm/bnxt.c upstream; Linux tee_bnxt_fw).
//!
//! FASTBOOT loads the NIC firmware; HEALTH_STATUS and HANDSHAKE_STATUS read the NIC's state;
//! COPY_COREDUMP copies a slice of the 32 MiB crash-dump region into the client's buffer. The
//! dump in that region is a deterministic 8 MiB image (the rest reads as zeros) so that tests
//! elsewhere can check what they received against the `bnxt-image` crate, which both sides share.

use optee_abi::teec;
use optee_abi::uuid::{self, Uuid};
use tracing::debug;

use super::{ClientIdentity, ParamType, SessionId, TaContext, TaFlags, TaStep, TrustedApp};

/// Command: boot the NIC firmware (params unused).
pub const FASTBOOT: u32 = 0;
/// Command: p0 VALUE_OUTPUT a = the NIC's health register (PTA_BNXT_HEALTH_STATUS).
pub const HEALTH_STATUS: u32 = 1;
/// Command: p0 VALUE_INOUT a = timeout in ms in, handshake status out
/// (PTA_BNXT_HANDSHAKE_STATUS).
pub const HANDSHAKE_STATUS: u32 = 2;
/// Command: p0 MEMREF_INOUT destination, p1 VALUE_INPUT a = offset, b = size
/// (PTA_BNXT_CRASH_DUMP_COPY).
pub const COPY_COREDUMP: u32 = 3;
/// The crash-dump region the PTA copies from (BNXT_CRASH_LEN, core/drivers/bnxt/bnxt_fw.c).
pub const CRASH_LEN: u64 = 32 << 20;
/// bnxt_wait_handshake: the ChiMP finished booting (BNXT_HANDSHAKE_SUCCESS).
pub const HANDSHAKE_SUCCESS: u64 = 0;
/// bnxt_wait_handshake: the wait ran out (BNXT_HANDSHAKE_WAIT_TIMEOUT).
pub const HANDSHAKE_WAIT_TIMEOUT: u64 = 2;
use bnxt_image::{coredump_chunk, COREDUMP_LEN};

/// The BNXT pseudo TA.
#[derive(Debug)]
pub struct BnxtTa {
    /// FASTBOOTs since the instance was loaded (volatile).
    fastboots: u64,
    /// Whether a valid firmware image is in secure memory (get_bnxt_images_info finds one).
    image_valid: bool,
}

impl Default for BnxtTa {
    fn default() -> Self {
        BnxtTa {
            fastboots: 0,
            image_valid: true,
        }
    }
}

impl BnxtTa {
    pub fn new() -> BnxtTa {
        BnxtTa::default()
    }

    /// A PTA whose secure memory holds no valid firmware image: every FASTBOOT fails.
    pub fn without_image() -> BnxtTa {
        BnxtTa {
            image_valid: false,
            ..BnxtTa::default()
        }
    }

    /// FASTBOOT commands served since load or reset.
    pub fn fastboots(&self) -> u64 {
        self.fastboots
    }

    /// bnxt.c invoke_command: bnxt_load_fw failing (its only failure is no valid image,
    /// TEE_ERROR_ITEM_NOT_FOUND from get_bnxt_images_info) is answered TEE_ERROR_TARGET_DEAD.
    /// The params are not looked at.
    fn fastboot(&mut self) -> u32 {
        if !self.image_valid {
            return teec::ERROR_TARGET_DEAD;
        }
        self.fastboots += 1;
        teec::SUCCESS
    }

    /// get_bnxt_status: the health register into p0.a. Its encoding is the NIC firmware's; the
    /// model has no NIC and its register reads 0.
    fn health_status(ctx: &mut TaContext<'_>) -> u32 {
        let expected = [
            ParamType::ValueOutput,
            ParamType::None,
            ParamType::None,
            ParamType::None,
        ];
        if ctx.param_types() != expected {
            return teec::ERROR_BAD_PARAMETERS;
        }
        match ctx.value(0).and_then(|(_, b, c)| ctx.set_value(0, 0, b, c)) {
            Ok(()) => teec::SUCCESS,
            Err(_) => teec::ERROR_BAD_PARAMETERS,
        }
    }

    /// get_bnxt_handshake_status: bnxt_wait_handshake(p0.a) into p0.a: success once the
    /// firmware booted, else the timeout status (the model answers at once, without waiting
    /// out the timeout).
    fn handshake_status(&self, ctx: &mut TaContext<'_>) -> u32 {
        let expected = [
            ParamType::ValueInout,
            ParamType::None,
            ParamType::None,
            ParamType::None,
        ];
        if ctx.param_types() != expected {
            return teec::ERROR_BAD_PARAMETERS;
        }
        let status = if self.fastboots > 0 {
            HANDSHAKE_SUCCESS
        } else {
            HANDSHAKE_WAIT_TIMEOUT
        };
        match ctx
            .value(0)
            .and_then(|(_, b, c)| ctx.set_value(0, status, b, c))
        {
            Ok(()) => teec::SUCCESS,
            Err(_) => teec::ERROR_BAD_PARAMETERS,
        }
    }

    /// copy_bnxt_crash_dump and bnxt_copy_crash_dump: exact param types, a non-null memref at
    /// least as large as the request, offset + size (32-bit values) inside BNXT_CRASH_LEN;
    /// each refusal is BAD_PARAMETERS.
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
        // TEE_Param values are 32 bits wide; upstream reads them into uint32_t.
        let (offset, size) = (u64::from(offset as u32), u64::from(size as u32));
        let (Ok(capacity), Ok(false)) = (ctx.memref_size(0), ctx.memref_is_null(0)) else {
            return teec::ERROR_BAD_PARAMETERS;
        };
        if capacity < size || offset + size > CRASH_LEN {
            return teec::ERROR_BAD_PARAMETERS;
        }
        // The 8 MiB image, then the rest of the region, which holds nothing. Copied out of
        // the region as bnxt.c copies it (one memcpy into the client's buffer), so the copy
        // costs what a copy costs.
        let image = crash_image();
        let in_image = COREDUMP_LEN.saturating_sub(offset).min(size);
        let start = offset.min(COREDUMP_LEN) as usize;
        let Some(bytes) = image.get(start..start + in_image as usize) else {
            return teec::ERROR_BAD_PARAMETERS;
        };
        if ctx.write_memref(0, 0, bytes).is_err() {
            return teec::ERROR_BAD_PARAMETERS;
        }
        let zeros = [0u8; 64 * 1024];
        let mut done = in_image;
        while done < size {
            let here = (size - done).min(zeros.len() as u64) as usize;
            if ctx.write_memref(0, done, &zeros[..here]).is_err() {
                return teec::ERROR_BAD_PARAMETERS;
            }
            done += here as u64;
        }
        teec::SUCCESS
    }
}

/// The crash region's dump, made once per process from the shared image definition.
fn crash_image() -> &'static [u8] {
    static IMAGE: std::sync::OnceLock<Box<[u8]>> = std::sync::OnceLock::new();
    IMAGE.get_or_init(|| {
        let mut image = vec![0u8; COREDUMP_LEN as usize];
        // Cannot fail: the buffer is exactly the image's length.
        let _ = coredump_chunk(0, &mut image);
        image.into_boxed_slice()
    })
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
        let result = match func {
            FASTBOOT => self.fastboot(),
            HEALTH_STATUS => Self::health_status(ctx),
            HANDSHAKE_STATUS => self.handshake_status(ctx),
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
