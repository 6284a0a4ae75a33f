//! REGISTER_SHM / UNREGISTER_SHM: page-list validation, cookies, heap, blocking unregister.
#![allow(clippy::unwrap_used)]

mod common;

use optee_abi::mem::PhysMem;
use optee_abi::msg::{attr, cmd, rpc_cmd, Direction, MsgArg, Param, RawParam};
use optee_abi::pagelist::write_page_list;
use optee_abi::smc::{ret, rpc};
use optee_abi::teec;
use optee_abi::uuid::BNXT_TA;
use secure_world::ta::bnxt::COPY_COREDUMP;
use secure_world::{Config, NOTIFICATION_SEND, NOTIFICATION_WAIT};
use tee_test_support::normal_world::{invoke_message, is_rpc_of, unregister_message, RpcEvent};

use common::{open_ok, setup, setup_with};

const OK: u32 = teec::SUCCESS;
const BAD: u32 = teec::ERROR_BAD_PARAMETERS;

/// ret_origin the caller planted: REGISTER_SHM must leave it alone.
const PLANTED_ORIGIN: u32 = 0x55;

fn register_raw(
    sw: &mut secure_world::SecureWorld,
    nw: &mut tee_test_support::normal_world::NormalWorld,
    params: &[RawParam],
) -> MsgArg {
    let mut arg = MsgArg::new(cmd::REGISTER_SHM);
    arg.ret_origin = PLANTED_ORIGIN;
    for p in params {
        arg.push(*p).unwrap();
    }
    nw.call(sw, &arg).unwrap()
}

fn tmem_noncontig(buf_ptr: u64, size: u64, cookie: u64) -> RawParam {
    RawParam {
        attr: attr::TMEM_OUTPUT | attr::NONCONTIG,
        a: buf_ptr,
        b: size,
        c: cookie,
    }
}

#[test]
fn registration_is_recorded_with_its_pages_and_offset() {
    let (mut sw, mut nw) = setup();
    let (code, _) = nw.register(&mut sw, 0xAA, 0, 8192).unwrap();
    assert_eq!(code, OK);
    let (code, _) = nw.register(&mut sw, 0xBB, 0x100, 4096).unwrap();
    assert_eq!(code, OK);
    let regs: Vec<_> = sw.registrations().collect();
    assert_eq!(regs.len(), 2);
    assert_eq!(
        (
            regs[0].cookie,
            regs[0].pages,
            regs[0].size,
            regs[0].page_offset
        ),
        (0xBB, 2, 4096, 0x100)
    );
    assert_eq!(
        (regs[1].cookie, regs[1].pages, regs[1].size),
        (0xAA, 2, 8192)
    );
    let stats = sw.stats();
    assert_eq!((stats.registrations, stats.registered_bytes), (2, 12288));
    // Header 80 + 16 bytes of page addresses, rounded, plus the allocation header: 112 each.
    assert_eq!(stats.heap_used, sw.heap().baseline + 2 * 112);
}

#[test]
fn pages_outside_normal_world_ram_are_refused() {
    let (mut sw, mut nw) = setup();
    let config = Config::default();
    let list = nw.alloc_frame();
    let good = nw.alloc_frame();
    let outside = config.ram_base + config.ram_size;
    let reserved = config.reserved_shm.unwrap().base;
    for bad_page in [outside, config.ram_base - 4096, reserved] {
        nw.ram.write_u64(list, good).unwrap();
        nw.ram.write_u64(list + 8, bad_page).unwrap();
        let arg = register_raw(&mut sw, &mut nw, &[tmem_noncontig(list, 8192, 1)]);
        assert_eq!(arg.ret, BAD, "page {bad_page:#x}");
        assert_eq!(arg.ret_origin, PLANTED_ORIGIN);
    }
    // The list page itself outside RAM.
    let arg = register_raw(&mut sw, &mut nw, &[tmem_noncontig(outside, 4096, 1)]);
    assert_eq!(arg.ret, BAD);
    assert_eq!(sw.stats().registrations, 0);
    assert_eq!(sw.heap().used, sw.heap().baseline, "failures leak nothing");
}

#[test]
fn malformed_page_lists_are_refused() {
    let (mut sw, mut nw) = setup();
    // Misaligned entry.
    let list = nw.alloc_frame();
    let page = nw.alloc_frame();
    nw.ram.write_u64(list, page + 8).unwrap();
    assert_eq!(
        register_raw(&mut sw, &mut nw, &[tmem_noncontig(list, 4096, 1)]).ret,
        BAD
    );

    // Misaligned next-list pointer: 600 pages need two list pages.
    let data = nw.alloc_frames(600);
    let lists = nw.alloc_frames(2);
    write_page_list(&mut nw.ram, &lists, &data).unwrap();
    let size = 600 * 4096;
    assert_eq!(
        register_raw(&mut sw, &mut nw, &[tmem_noncontig(lists[0], size, 2)]).ret,
        OK
    );
    nw.ram.write_u64(lists[0] + 511 * 8, lists[1] + 16).unwrap();
    assert_eq!(
        register_raw(&mut sw, &mut nw, &[tmem_noncontig(lists[0], size, 3)]).ret,
        BAD
    );
    // A next pointer leading out of RAM.
    nw.ram.write_u64(lists[0] + 511 * 8, 0).unwrap();
    assert_eq!(
        register_raw(&mut sw, &mut nw, &[tmem_noncontig(lists[0], size, 4)]).ret,
        BAD
    );
    assert_eq!(sw.stats().registrations, 1);
}

#[test]
fn sizes_offsets_and_attrs_are_checked() {
    let (mut sw, mut nw) = setup();
    let list = nw.alloc_frame();
    let page = nw.alloc_frame();
    nw.ram.write_u64(list, page).unwrap();
    // Zero pages: size 0 at offset 0.
    assert_eq!(
        register_raw(&mut sw, &mut nw, &[tmem_noncontig(list, 0, 1)]).ret,
        BAD
    );
    // size + offset overflows.
    assert_eq!(
        register_raw(
            &mut sw,
            &mut nw,
            &[tmem_noncontig(list | 0x10, u64::MAX, 1)]
        )
        .ret,
        BAD
    );
    // Offset pushes the buffer into a second page the list does not describe (entry 1 = 0).
    assert_eq!(
        register_raw(&mut sw, &mut nw, &[tmem_noncontig(list | 0x800, 4096, 1)]).ret,
        BAD
    );
    // Attr must be exactly TMEM_OUTPUT | NONCONTIG.
    for bad_attr in [
        attr::TMEM_OUTPUT,
        attr::TMEM_INOUT | attr::NONCONTIG,
        attr::TMEM_OUTPUT | attr::NONCONTIG | attr::META,
    ] {
        let p = RawParam {
            attr: bad_attr,
            a: list,
            b: 4096,
            c: 1,
        };
        assert_eq!(
            register_raw(&mut sw, &mut nw, &[p]).ret,
            BAD,
            "attr {bad_attr:#x}"
        );
    }
    // Exactly one param.
    let p = tmem_noncontig(list, 4096, 1);
    assert_eq!(register_raw(&mut sw, &mut nw, &[p, p]).ret, BAD);
    assert_eq!(register_raw(&mut sw, &mut nw, &[]).ret, BAD);
    // The same list is fine once the request is well formed, offset included.
    assert_eq!(
        register_raw(&mut sw, &mut nw, &[tmem_noncontig(list | 0x10, 4000, 1)]).ret,
        OK
    );
    assert_eq!(sw.stats().registrations, 1);
}

#[test]
fn unregister_unknown_or_twice_fails() {
    let (mut sw, mut nw) = setup();
    assert_eq!(nw.unregister(&mut sw, 0x1234).unwrap(), BAD);
    nw.register(&mut sw, 0x1234, 0, 4096).unwrap();
    assert_eq!(nw.unregister(&mut sw, 0x1234).unwrap(), OK);
    assert_eq!(nw.unregister(&mut sw, 0x1234).unwrap(), BAD);
    assert_eq!(sw.heap().used, sw.heap().baseline);
    // UNREGISTER reads the cookie whatever the attr.
    nw.register(&mut sw, 0x99, 0, 4096).unwrap();
    let mut arg = MsgArg::new(cmd::UNREGISTER_SHM);
    arg.push(RawParam {
        attr: attr::VALUE_INPUT,
        a: 0,
        b: 0,
        c: 0x99,
    })
    .unwrap();
    assert_eq!(nw.call(&mut sw, &arg).unwrap().ret, OK);
    // But it takes exactly one param.
    let mut arg = MsgArg::new(cmd::UNREGISTER_SHM);
    arg.push(RawParam::default()).unwrap();
    arg.push(RawParam::default()).unwrap();
    let back = nw.call(&mut sw, &arg).unwrap();
    assert_eq!((back.ret, back.ret_origin), (BAD, teec::origin::TEE));
}

#[test]
fn duplicate_cookies_are_accepted_and_the_newest_is_found_first() {
    let (mut sw, mut nw) = setup();
    assert_eq!(nw.register(&mut sw, 7, 0, 2 * 4096).unwrap().0, OK);
    assert_eq!(nw.register(&mut sw, 7, 0, 3 * 4096).unwrap().0, OK);
    assert_eq!(sw.registrations().next().unwrap().pages, 3);
    assert_eq!(nw.unregister(&mut sw, 7).unwrap(), OK);
    let left: Vec<_> = sw.registrations().collect();
    assert_eq!((left.len(), left[0].pages), (1, 2));
    assert_eq!(nw.unregister(&mut sw, 7).unwrap(), OK);
    assert_eq!(nw.unregister(&mut sw, 7).unwrap(), BAD);
}

#[test]
fn unregister_of_a_buffer_in_use_blocks_until_its_last_user_is_done() {
    let (mut sw, mut nw) = setup_with(Config {
        foreign_intr_every: Some(1),
        ..Config::default()
    });
    let (code, _) = nw.register(&mut sw, 0xC0DE, 0, 4096).unwrap();
    assert_eq!(code, OK);
    let session = open_ok(&mut sw, &mut nw, BNXT_TA);
    let memref = Param::Rmem {
        dir: Direction::InOut,
        offs: 0,
        size: 4096,
        shm_ref: 0xC0DE,
    };
    let range = Param::Value {
        dir: Direction::In,
        a: 0,
        b: 4096,
        c: 0,
        meta: false,
    };
    let copy = invoke_message(
        session,
        COPY_COREDUMP,
        &[memref, range, Param::None, Param::None],
    )
    .unwrap();
    // Thread 0 is interrupted while it holds the registration.
    let (copy_pa, copy_regs) = nw.start(&mut sw, &copy).unwrap();
    assert!(is_rpc_of(&copy_regs, rpc::FOREIGN_INTR) && copy_regs[3] == 0);
    assert_eq!(sw.registrations().next().unwrap().users, 1);

    // Thread 1 unregisters: after its own interrupt it asks for an RPC buffer, then waits.
    let (unreg_pa, mut regs) = nw.start(&mut sw, &unregister_message(0xC0DE)).unwrap();
    regs = nw.resume_once(&mut sw, &regs).unwrap();
    assert!(is_rpc_of(&regs, rpc::ALLOC) && regs[3] == 1);
    regs = nw.resume_once(&mut sw, &regs).unwrap();
    assert!(is_rpc_of(&regs, rpc::CMD));
    let info = sw.registrations().next().unwrap();
    assert!(info.releasing && info.users == 1);
    // Waking up early changes nothing: it waits again.
    regs = nw.resume_once(&mut sw, &regs).unwrap();
    assert!(is_rpc_of(&regs, rpc::CMD) && regs[3] == 1);
    let waits = nw
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                RpcEvent::Cmd {
                    cmd: rpc_cmd::NOTIFICATION,
                    a: NOTIFICATION_WAIT,
                    b: 1
                }
            )
        })
        .count();
    // One WAIT served so far; the second is the CMD now pending in `regs`.
    assert_eq!(waits, 1);
    // A second unregister of the same cookie while the first waits: no free thread at all.
    assert_eq!(
        nw.start(&mut sw, &unregister_message(0xC0DE)).unwrap().1[0],
        u64::from(ret::ETHREAD_LIMIT)
    );
    assert_eq!(sw.stats().registrations, 1);

    // Thread 0 finishes its copy, drops the buffer and wakes thread 1.
    let copied = nw.finish(&mut sw, copy_pa, copy_regs).unwrap();
    assert_eq!(copied.ret, OK);
    assert!(nw.events.contains(&RpcEvent::Cmd {
        cmd: rpc_cmd::NOTIFICATION,
        a: NOTIFICATION_SEND,
        b: 1
    }));
    assert_eq!(
        sw.stats().registrations,
        1,
        "freed by the waiter, not the waker"
    );

    let unregistered = nw.finish(&mut sw, unreg_pa, regs).unwrap();
    assert_eq!(unregistered.ret, OK);
    assert_eq!(sw.stats().registrations, 0);
    assert_eq!(sw.threads().free(), 2);
    assert_eq!(nw.unregister(&mut sw, 0xC0DE).unwrap(), BAD);
    assert!(nw.outstanding_rpc_buffers().is_empty());
}

#[test]
fn a_second_unregister_while_the_first_waits_is_refused() {
    let config = Config {
        threads: 3,
        foreign_intr_every: Some(1),
        ..Config::default()
    };
    let (mut sw, mut nw) = setup_with(config);
    nw.register(&mut sw, 0xD, 0, 4096).unwrap();
    let session = open_ok(&mut sw, &mut nw, BNXT_TA);
    let memref = Param::Rmem {
        dir: Direction::InOut,
        offs: 0,
        size: 4096,
        shm_ref: 0xD,
    };
    let range = Param::Value {
        dir: Direction::In,
        a: 0,
        b: 16,
        c: 0,
        meta: false,
    };
    let copy = invoke_message(
        session,
        COPY_COREDUMP,
        &[memref, range, Param::None, Param::None],
    )
    .unwrap();
    let (copy_pa, copy_regs) = nw.start(&mut sw, &copy).unwrap();
    let (_, mut regs) = nw.start(&mut sw, &unregister_message(0xD)).unwrap();
    while !is_rpc_of(&regs, rpc::CMD) {
        regs = nw.resume_once(&mut sw, &regs).unwrap();
    }
    // Thread 2: the registration is already being released.
    let second = nw.call(&mut sw, &unregister_message(0xD)).unwrap();
    assert_eq!(second.ret, BAD);
    nw.finish(&mut sw, copy_pa, copy_regs).unwrap();
}
