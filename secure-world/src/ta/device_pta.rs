//! The device-enumeration pseudo TA (core/pta/device.c upstream; Linux drivers/tee/optee/device.c).
//!
//! Command 0 fills its MEMREF_OUTPUT param with the 16-octet UUIDs of every TA flagged
//! `DEVICE_ENUM`; when the buffer is too small it answers SHORT_BUFFER with the size needed.

use optee_abi::teec;
use optee_abi::uuid::{self, Uuid};

use super::{ClientIdentity, ParamType, SessionId, TaContext, TaFlags, TaStep, TrustedApp};

/// Command: list the device TAs.
pub const GET_DEVICES: u32 = 0;

/// The device-enumeration PTA.
#[derive(Debug, Default)]
pub struct DevicePta;

impl DevicePta {
    fn get_devices(ctx: &mut TaContext<'_>) -> u32 {
        let expected = [
            ParamType::MemrefOutput,
            ParamType::None,
            ParamType::None,
            ParamType::None,
        ];
        if ctx.param_types() != expected {
            return teec::ERROR_BAD_PARAMETERS;
        }
        let list: Vec<u8> = ctx
            .device_tas()
            .iter()
            .flat_map(|u| *u.as_bytes())
            .collect();
        let needed = list.len() as u64;
        let Ok(capacity) = ctx.memref_size(0) else {
            return teec::ERROR_BAD_PARAMETERS;
        };
        let is_null = ctx.memref_is_null(0).unwrap_or(true);
        if capacity < needed || (is_null && needed > 0) {
            return match ctx.set_memref_size(0, needed) {
                Ok(()) => teec::ERROR_SHORT_BUFFER,
                Err(_) => teec::ERROR_BAD_PARAMETERS,
            };
        }
        if ctx.write_memref(0, 0, &list).is_err() || ctx.set_memref_size(0, needed).is_err() {
            return teec::ERROR_BAD_PARAMETERS;
        }
        teec::SUCCESS
    }
}

impl TrustedApp for DevicePta {
    fn uuid(&self) -> Uuid {
        uuid::DEVICE_PTA
    }

    fn flags(&self) -> TaFlags {
        TaFlags::PTA_DEFAULT
    }

    fn name(&self) -> &'static str {
        "pta_device"
    }

    fn open_session(&mut self, _: SessionId, _: &ClientIdentity, _: &mut TaContext<'_>) -> u32 {
        teec::SUCCESS
    }

    fn invoke(&mut self, _: SessionId, func: u32, ctx: &mut TaContext<'_>) -> TaStep {
        TaStep::Complete(match func {
            GET_DEVICES => Self::get_devices(ctx),
            _ => teec::ERROR_NOT_SUPPORTED,
        })
    }

    fn close_session(&mut self, _: SessionId) {}
}
