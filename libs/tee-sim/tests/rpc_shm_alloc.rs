//! teed answers an RPC SHM_ALLOC of more than one page with a NONCONTIG page list in private
//! memory, as Linux's drivers/tee/optee/smc_abi.c handle_rpc_func_cmd_shm_alloc does, because
//! OP-TEE takes contiguous memory there only up to a page (core/arch/arm/kernel/
//! thread_optee_smc.c rpc_shm_mobj_alloc); the model checks the answer, and SHM_FREE gives every
//! page back.
#![allow(clippy::unwrap_used)]

use optee_abi::teec;
use optee_abi::uuid::Uuid;
use secure_world::ta::{
    ClientIdentity, RpcReply, RpcShm, SessionId, ShmType, TaContext, TaFlags, TaRpc, TaStep,
    TrustedApp,
};
use secure_world::Config as SecureConfig;
use tee_proto::lifecycle::{BootKind, ServerKind};
use tee_proto::teed::{Param, ParamOut, TeedResponse};
use tee_sim::{TeedHarness, TPMD};
use teed::TeedConfig;

const PAYLOAD_TA: Uuid = Uuid::from_fields(0x7e57_0a11, 0x5107, 6, [1, 2, 3, 4, 5, 6, 7, 8]);

/// p0 VALUE_INOUT a = size: SHM_ALLOC of an application payload, fill it with a pattern, read
/// it back, keep it; p0.a out = 1 when the pattern read back.
const TAKE: u32 = 0;
/// SHM_FREE of the payload TAKE kept.
const GIVE_BACK: u32 = 1;

/// A TA that holds an RPC payload across calls, as a TA's file or socket cache does.
#[derive(Default)]
struct PayloadTa {
    held: Option<RpcShm>,
}

impl TrustedApp for PayloadTa {
    fn uuid(&self) -> Uuid {
        PAYLOAD_TA
    }
    fn flags(&self) -> TaFlags {
        TaFlags::PTA_DEFAULT
    }
    fn name(&self) -> &'static str {
        "test_payload"
    }
    fn open_session(&mut self, _: SessionId, _: &ClientIdentity, _: &mut TaContext<'_>) -> u32 {
        teec::SUCCESS
    }
    fn invoke(&mut self, _: SessionId, func: u32, ctx: &mut TaContext<'_>) -> TaStep {
        match (func, self.held.take()) {
            (TAKE, None) => match ctx.value(0) {
                Ok((size, _, _)) => TaStep::Rpc(TaRpc::ShmAlloc {
                    size,
                    kind: ShmType::Application,
                }),
                Err(_) => TaStep::Complete(teec::ERROR_BAD_PARAMETERS),
            },
            (GIVE_BACK, Some(shm)) => TaStep::Rpc(TaRpc::ShmFree { shm }),
            (_, held) => {
                self.held = held;
                TaStep::Complete(teec::ERROR_BAD_STATE)
            }
        }
    }
    fn resume(&mut self, _: SessionId, reply: RpcReply, ctx: &mut TaContext<'_>) -> TaStep {
        match reply {
            RpcReply::Shm(shm) => {
                let pattern: Vec<u8> = (0..shm.buffer().size()).map(|i| (i % 251) as u8).collect();
                let mut back = vec![0u8; pattern.len()];
                let ok = ctx.write_shm(&shm, 0, &pattern).is_ok()
                    && ctx.read_shm(&shm, 0, &mut back).is_ok()
                    && back == pattern;
                self.held = Some(shm);
                let code = match ctx.set_value(0, u64::from(ok), 0, 0) {
                    Ok(()) => teec::SUCCESS,
                    Err(_) => teec::ERROR_BAD_PARAMETERS,
                };
                TaStep::Complete(code)
            }
            RpcReply::Done => TaStep::Complete(teec::SUCCESS),
            RpcReply::Failed(code) => TaStep::Complete(code),
            RpcReply::Time { .. } => TaStep::Complete(teec::ERROR_BAD_STATE),
        }
    }
    fn close_session(&mut self, _: SessionId) {}
}

/// teed serving tpmd, which may open the payload TA.
fn serving() -> (TeedHarness, u32) {
    serving_with(SecureConfig::default())
}

fn serving_with(secure: SecureConfig) -> (TeedHarness, u32) {
    let mut config = TeedConfig::new();
    config.policy.allowed.push((ServerKind::Tpmd, PAYLOAD_TA));
    let mut h = TeedHarness::new(config, secure);
    h.secure.add_ta(Box::new(PayloadTa::default()));
    h.connect(TPMD, ServerKind::Tpmd);
    h.boot(BootKind::Cold, 1).unwrap();
    let TeedResponse::SessionOpened { session } = h.open(TPMD, PAYLOAD_TA).unwrap() else {
        panic!("no session");
    };
    // A first round trip leaves the thread's RPC argument buffer in the RPC cache, so the
    // tests count only the payloads.
    assert_eq!(take(&mut h, session, 16), (teec::SUCCESS, 1));
    assert_eq!(give_back(&mut h, session), teec::SUCCESS);
    (h, session)
}

/// (ret, p0.a) of TAKE for `size` bytes.
fn take(h: &mut TeedHarness, session: u32, size: u64) -> (u32, u64) {
    let inout = Param::ValueInOut {
        a: size,
        b: 0,
        c: 0,
    };
    match h.invoke(TPMD, session, TAKE, &[inout]).unwrap() {
        TeedResponse::Invoked { ret, params, .. } => match params.first() {
            Some(ParamOut::Value { a, .. }) => (ret, *a),
            _ => (ret, 0),
        },
        other => panic!("not invoked: {other:?}"),
    }
}

fn give_back(h: &mut TeedHarness, session: u32) -> u32 {
    match h.invoke(TPMD, session, GIVE_BACK, &[]).unwrap() {
        TeedResponse::Invoked { ret, .. } => ret,
        other => panic!("not invoked: {other:?}"),
    }
}

/// smc_abi.c handle_rpc_func_cmd_shm_alloc / thread_optee_smc.c get_rpc_alloc_res: 8 KiB is
/// answered with a page list the model takes (two data pages and one list page of teed's own
/// memory while the TA holds it); SHM_FREE gives all three back and the secure heap returns to
/// where it was.
#[test]
fn smc_abi_shm_alloc_of_8_kib_is_a_page_list_freed_with_shm_free() {
    let (mut h, session) = serving();
    let pages_before = h.teed.frames_used_pages();
    let heap_before = h.secure.heap().used;
    assert_eq!(take(&mut h, session, 8192), (teec::SUCCESS, 1));
    assert_eq!(h.teed.frames_used_pages(), pages_before + 3);
    assert_eq!(give_back(&mut h, session), teec::SUCCESS);
    assert_eq!(h.teed.frames_used_pages(), pages_before);
    assert_eq!(h.secure.heap().used, heap_before);
    assert_eq!(h.teed.stats().stale_rpc_cookies, 0);

    // One page stays contiguous: no list page.
    assert_eq!(take(&mut h, session, 4096), (teec::SUCCESS, 1));
    assert_eq!(h.teed.frames_used_pages(), pages_before + 1);
    assert_eq!(give_back(&mut h, session), teec::SUCCESS);
    assert_eq!(h.teed.frames_used_pages(), pages_before);
}

/// The bound teed answers: SHM_VASPACE_SIZE (32 MiB, core/mm/core_mmu.c), the most OP-TEE can
/// map. 32 MiB takes a chain of list pages; one byte more is refused with OUT_OF_MEMORY and
/// counted, and nothing is held. (OP-TEE copies the page list onto its core heap, 8 bytes a
/// page: a 64 KiB heap cannot take 32 MiB, so the model gets a larger one here and only teed's
/// bound decides.)
#[test]
fn core_mmu_shm_vaspace_bounds_the_shm_alloc_teed_answers() {
    let (mut h, session) = serving_with(SecureConfig {
        core_heap_bytes: 1 << 20,
        ..SecureConfig::default()
    });
    let pages_before = h.teed.frames_used_pages();
    let (ret, _) = take(&mut h, session, (32 << 20) + 1);
    assert_eq!(ret, teec::ERROR_OUT_OF_MEMORY);
    assert_eq!(h.teed.stats().refused_rpc_buffers, 1);
    assert_eq!(h.teed.frames_used_pages(), pages_before);

    assert_eq!(take(&mut h, session, 32 << 20), (teec::SUCCESS, 1));
    // 8192 data pages, described by ceil(8192 / 511) = 17 list pages.
    assert_eq!(h.teed.frames_used_pages(), pages_before + 8192 + 17);
    assert_eq!(give_back(&mut h, session), teec::SUCCESS);
    assert_eq!(h.teed.frames_used_pages(), pages_before);
}
