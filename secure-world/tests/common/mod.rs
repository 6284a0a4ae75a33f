//! Test TAs and helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use optee_abi::teec;
use optee_abi::uuid::Uuid;
use secure_world::ta::{
    ClientIdentity, ParamType, RpcReply, SessionId, ShmType, TaContext, TaFlags, TaRpc, TaStep,
    TrustedApp,
};
use secure_world::{Config, SecureWorld};
use tee_test_support::normal_world::NormalWorld;

pub const TIME_TA: Uuid = Uuid::from_fields(0x7e57_0001, 1, 1, [1, 2, 3, 4, 5, 6, 7, 8]);
pub const SINGLE_TA: Uuid = Uuid::from_fields(0x7e57_0002, 2, 2, [1, 2, 3, 4, 5, 6, 7, 8]);

/// Commands of [`TimeTa`].
pub const ASK_TIME: u32 = 0;
/// p0 VALUE_INPUT a = size, b = shm type as optee_rpc_cmd.h numbers it (0 application,
/// 1 kernel): SHM_ALLOC, write and read back a pattern, SHM_FREE.
pub const ROUND_TRIP_SHM: u32 = 1;
pub const NAP: u32 = 2;

/// A TA that needs the normal world: GET_TIME, SHM_ALLOC + SHM_FREE, SUSPEND.
#[derive(Default)]
pub struct TimeTa {
    pub shm_pattern_ok: Option<bool>,
}

impl TrustedApp for TimeTa {
    fn uuid(&self) -> Uuid {
        TIME_TA
    }
    fn flags(&self) -> TaFlags {
        TaFlags::PTA_DEFAULT
    }
    fn name(&self) -> &'static str {
        "test_time"
    }
    fn open_session(&mut self, _: SessionId, _: &ClientIdentity, _: &mut TaContext<'_>) -> u32 {
        teec::SUCCESS
    }
    fn invoke(&mut self, _: SessionId, func: u32, ctx: &mut TaContext<'_>) -> TaStep {
        match func {
            ASK_TIME => TaStep::Rpc(TaRpc::GetTime),
            ROUND_TRIP_SHM => match ctx.value(0) {
                Ok((size, kind, _)) => {
                    let kind = if kind == ShmType::Kernel.value() {
                        ShmType::Kernel
                    } else {
                        ShmType::Application
                    };
                    TaStep::Rpc(TaRpc::ShmAlloc { size, kind })
                }
                Err(_) => TaStep::Complete(teec::ERROR_BAD_PARAMETERS),
            },
            NAP => TaStep::Rpc(TaRpc::Suspend { millis: 5 }),
            _ => TaStep::Complete(teec::ERROR_NOT_SUPPORTED),
        }
    }
    fn resume(&mut self, _: SessionId, reply: RpcReply, ctx: &mut TaContext<'_>) -> TaStep {
        match reply {
            RpcReply::Time { .. } if ctx.cancelled() => TaStep::Complete(teec::ERROR_CANCEL),
            RpcReply::Time { seconds, nanos } => match ctx.set_value(0, seconds, nanos, 0) {
                Ok(()) => TaStep::Complete(teec::SUCCESS),
                Err(_) => TaStep::Complete(teec::ERROR_BAD_PARAMETERS),
            },
            RpcReply::Shm(shm) => {
                let pattern: Vec<u8> = (0..shm.buffer().size()).map(|i| (i * 7) as u8).collect();
                let mut back = vec![0u8; pattern.len()];
                let ok = ctx.write_shm(&shm, 0, &pattern).is_ok()
                    && ctx.read_shm(&shm, 0, &mut back).is_ok()
                    && back == pattern;
                self.shm_pattern_ok = Some(ok);
                TaStep::Rpc(TaRpc::ShmFree { shm })
            }
            RpcReply::Done => TaStep::Complete(teec::SUCCESS),
            RpcReply::Failed(code) => TaStep::Complete(code),
        }
    }
    fn close_session(&mut self, _: SessionId) {}
}

/// A single-instance, single-session TA with persistent and volatile counters (like fTPM).
pub struct SingleSessionTa {
    pub keep_alive: bool,
    nv_counter: u64,
    volatile_counter: u64,
}

impl SingleSessionTa {
    pub fn new(keep_alive: bool) -> SingleSessionTa {
        SingleSessionTa {
            keep_alive,
            nv_counter: 0,
            volatile_counter: 0,
        }
    }
}

/// SingleSessionTa command: bump both counters; p0 VALUE_OUTPUT gets (nv, volatile).
pub const BUMP: u32 = 0;

impl TrustedApp for SingleSessionTa {
    fn uuid(&self) -> Uuid {
        SINGLE_TA
    }
    fn flags(&self) -> TaFlags {
        let base = TaFlags::SINGLE_INSTANCE.union(TaFlags::DEVICE_ENUM);
        if self.keep_alive {
            base.union(TaFlags::INSTANCE_KEEP_ALIVE)
        } else {
            base
        }
    }
    fn name(&self) -> &'static str {
        "test_single"
    }
    fn open_session(&mut self, _: SessionId, _: &ClientIdentity, _: &mut TaContext<'_>) -> u32 {
        teec::SUCCESS
    }
    fn invoke(&mut self, _: SessionId, func: u32, ctx: &mut TaContext<'_>) -> TaStep {
        if func != BUMP || ctx.param_types()[0] != ParamType::ValueOutput {
            return TaStep::Complete(teec::ERROR_BAD_PARAMETERS);
        }
        self.nv_counter += 1;
        self.volatile_counter += 1;
        match ctx.set_value(0, self.nv_counter, self.volatile_counter, 0) {
            Ok(()) => TaStep::Complete(teec::SUCCESS),
            Err(_) => TaStep::Complete(teec::ERROR_BAD_PARAMETERS),
        }
    }
    fn close_session(&mut self, _: SessionId) {}
    fn unload(&mut self) {
        self.volatile_counter = 0;
    }
}

/// A default secure world and a matching normal world.
pub fn setup() -> (SecureWorld, NormalWorld) {
    setup_with(Config::default())
}

pub fn setup_with(config: Config) -> (SecureWorld, NormalWorld) {
    let nw = NormalWorld::new(&config);
    (SecureWorld::new(config, 0x5eed), nw)
}

/// Opens a session and insists on success.
pub fn open_ok(sw: &mut SecureWorld, nw: &mut NormalWorld, ta: Uuid) -> u32 {
    let arg = nw.open_session(sw, ta).unwrap();
    assert_eq!(arg.ret, teec::SUCCESS, "open {ta}");
    arg.session
}
