//! RPC SHM_ALLOC answers as OP-TEE 3.14 takes them (core/arch/arm/kernel/thread_optee_smc.c
//! get_rpc_alloc_res, rpc_shm_mobj_alloc, thread_rpc_alloc_kernel_payload): contiguous memory
//! only up to one page-aligned page, larger buffers as NONCONTIG page lists.
#![allow(clippy::unwrap_used)]

mod common;

use optee_abi::mem::{PhysMem, PAGE_SIZE_U64};
use optee_abi::msg::{attr, rpc_cmd, Direction, MsgArg, Param, RawParam};
use optee_abi::pagelist::write_page_list;
use optee_abi::smc::{func, split_u64, Regs, RpcRequest};
use optee_abi::teec::{self, origin};
use secure_world::SecureWorld;
use tee_test_support::normal_world::{invoke_message, NormalWorld};

use common::{open_ok, setup, TimeTa, ROUND_TRIP_SHM, TIME_TA};

/// The cookie this test's normal world gives the RPC argument buffer.
const ARG_COOKIE: u64 = 0xA5A5;
/// The cookie of every SHM_ALLOC answer.
const SHM_COOKIE: u64 = 0xC0DE;

/// An RPC command the secure world sent: (cmd, value a, value b).
type Cmd = (u32, u64, u64);

/// Invokes ROUND_TRIP_SHM for `size` bytes of shm of `kind` (optee_rpc_cmd.h numbering) and
/// runs the call to its end, answering every RPC here: SHM_ALLOC gets `answer(nw, size)`.
/// Returns the message as the secure world left it and the RPC commands it sent.
fn round_trip(
    sw: &mut SecureWorld,
    nw: &mut NormalWorld,
    session: u32,
    size: u64,
    kind: u64,
    mut answer: impl FnMut(&mut NormalWorld, u64) -> RawParam,
) -> (MsgArg, Vec<Cmd>) {
    let request = Param::Value {
        dir: Direction::In,
        a: size,
        b: kind,
        c: 0,
        meta: false,
    };
    let message = invoke_message(session, ROUND_TRIP_SHM, &[request]).unwrap();
    let (call_pa, mut regs) = nw.start(sw, &message).unwrap();
    let mut arg_pa = 0;
    let mut cmds = Vec::new();
    while let Some(rpc) = RpcRequest::decode(&regs) {
        let mut back: Regs = [
            u64::from(func::RETURN_FROM_RPC),
            regs[1],
            regs[2],
            regs[3],
            0,
            0,
            0,
            0,
        ];
        match rpc {
            RpcRequest::Alloc { .. } => {
                arg_pa = nw.alloc_frame();
                (back[1], back[2]) = split_u64(arg_pa);
                (back[4], back[5]) = split_u64(ARG_COOKIE);
            }
            RpcRequest::Free { cookie } => assert_eq!(cookie, ARG_COOKIE),
            RpcRequest::ForeignIntr => {}
            RpcRequest::Cmd { cookie } => {
                assert_eq!(cookie, ARG_COOKIE);
                let mut cmd = MsgArg::read_from(&nw.ram, arg_pa).unwrap();
                let first = cmd.params[0];
                cmds.push((cmd.cmd, first.a, first.b));
                cmd.ret = teec::SUCCESS;
                if cmd.cmd == rpc_cmd::SHM_ALLOC {
                    cmd.params[0] = answer(nw, first.b);
                }
                cmd.write_to(&mut nw.ram, arg_pa).unwrap();
            }
        }
        regs = sw.smc(&mut nw.ram, back);
    }
    assert_eq!(regs[0], 0, "the call returns OK");
    (MsgArg::read_from(&nw.ram, call_pa).unwrap(), cmds)
}

/// `n` physically contiguous fresh frames.
fn contiguous_frames(nw: &mut NormalWorld, n: usize) -> Vec<u64> {
    let frames = nw.alloc_frames(n);
    assert!(frames.windows(2).all(|w| w[1] == w[0] + PAGE_SIZE_U64));
    frames
}

fn contiguous_answer(pa: u64, size: u64) -> RawParam {
    RawParam {
        attr: attr::TMEM_OUTPUT,
        a: pa,
        b: size,
        c: SHM_COOKIE,
    }
}

fn time_ta_session() -> (SecureWorld, NormalWorld, u32) {
    let (mut sw, mut nw) = setup();
    sw.add_ta(Box::new(TimeTa::default()));
    let session = open_ok(&mut sw, &mut nw, TIME_TA);
    (sw, nw, session)
}

/// rpc_shm_mobj_alloc: outside the reserved area a contiguous answer must be page-aligned and
/// at most one page. An 8 KiB contiguous answer is refused; get_rpc_alloc_res hands it back
/// with SHM_FREE of the same type and the TA sees the allocation fail.
#[test]
fn rpc_shm_mobj_alloc_refuses_a_contiguous_8_kib_answer() {
    let (mut sw, mut nw, session) = time_ta_session();
    let heap_before = sw.heap().used;
    let appl = rpc_cmd::SHM_TYPE_APPL;
    let (arg, cmds) = round_trip(&mut sw, &mut nw, session, 8192, appl, |nw, size| {
        contiguous_answer(contiguous_frames(nw, 2)[0], size)
    });
    assert_eq!(
        (arg.ret, arg.ret_origin),
        (teec::ERROR_OUT_OF_MEMORY, origin::TRUSTED_APP)
    );
    assert_eq!(
        cmds,
        [
            (rpc_cmd::SHM_ALLOC, appl, 8192),
            (rpc_cmd::SHM_FREE, appl, SHM_COOKIE)
        ]
    );
    assert_eq!(sw.heap().used, heap_before);

    // One page, but not page-aligned: refused the same way.
    let (arg, cmds) = round_trip(&mut sw, &mut nw, session, 4096, appl, |nw, size| {
        contiguous_answer(nw.alloc_frame() + 8, size)
    });
    assert_eq!(arg.ret, teec::ERROR_OUT_OF_MEMORY);
    assert_eq!(cmds[1], (rpc_cmd::SHM_FREE, appl, SHM_COOKIE));

    // One aligned page is what a contiguous answer may be.
    let (arg, cmds) = round_trip(&mut sw, &mut nw, session, 4096, appl, |nw, size| {
        contiguous_answer(nw.alloc_frame(), size)
    });
    assert_eq!(arg.ret, teec::SUCCESS);
    assert_eq!(cmds[1], (rpc_cmd::SHM_FREE, appl, SHM_COOKIE));
    assert_eq!(sw.heap().used, heap_before);
}

/// get_rpc_alloc_res: an 8 KiB answer as a NONCONTIG page list (as Linux's smc_abi.c
/// handle_rpc_func_cmd_shm_alloc gives it) is taken; the TA's bytes land in the listed pages,
/// and the buffer is freed with SHM_FREE of its type.
#[test]
fn get_rpc_alloc_res_takes_8_kib_as_a_page_list() {
    let (mut sw, mut nw, session) = time_ta_session();
    let heap_before = sw.heap().used;
    let appl = rpc_cmd::SHM_TYPE_APPL;
    let mut data = Vec::new();
    let (arg, cmds) = round_trip(&mut sw, &mut nw, session, 8192, appl, |nw, size| {
        // Out of physical order, as scattered pages are.
        let pages = nw.alloc_frames(3);
        data = vec![pages[2], pages[0]];
        let list = nw.alloc_frame();
        write_page_list(&mut nw.ram, &[list], &data).unwrap();
        RawParam {
            attr: attr::TMEM_OUTPUT | attr::NONCONTIG,
            a: list,
            b: size,
            c: SHM_COOKIE,
        }
    });
    assert_eq!(arg.ret, teec::SUCCESS);
    assert_eq!(
        cmds,
        [
            (rpc_cmd::SHM_ALLOC, appl, 8192),
            (rpc_cmd::SHM_FREE, appl, SHM_COOKIE)
        ]
    );
    // TimeTa wrote byte i = i * 7 over the whole buffer: byte 4096 starts the second page.
    let mut first = [0u8; 2];
    nw.ram.read(data[1], &mut first).unwrap();
    assert_eq!(first, [(4096 * 7) as u8, (4097 * 7) as u8]);
    assert_eq!(sw.heap().used, heap_before);
}

/// thread_rpc_alloc_kernel_payload: kernel shm over one page fails before any RPC; a page is
/// asked for with type KERNEL.
#[test]
fn thread_rpc_alloc_kernel_payload_refuses_more_than_a_page_without_an_rpc() {
    let (mut sw, mut nw, session) = time_ta_session();
    let kernel = rpc_cmd::SHM_TYPE_KERNEL;
    let (arg, cmds) = round_trip(&mut sw, &mut nw, session, 4097, kernel, |_, _| {
        panic!("no SHM_ALLOC may reach the normal world")
    });
    assert_eq!(
        (arg.ret, arg.ret_origin),
        (teec::ERROR_OUT_OF_MEMORY, origin::TRUSTED_APP)
    );
    assert!(cmds.is_empty());
    let (arg, cmds) = round_trip(&mut sw, &mut nw, session, 4096, kernel, |nw, size| {
        contiguous_answer(nw.alloc_frame(), size)
    });
    assert_eq!(arg.ret, teec::SUCCESS);
    assert_eq!(
        cmds,
        [
            (rpc_cmd::SHM_ALLOC, kernel, 4096),
            (rpc_cmd::SHM_FREE, kernel, SHM_COOKIE)
        ]
    );
}
