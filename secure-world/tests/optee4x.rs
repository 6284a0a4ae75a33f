//! The OP-TEE 4.x profile: capabilities (core/arch/arm/tee/entry_fast.c), CALL_WITH_RPC_ARG and
//! CALL_WITH_REGD_ARG with their return codes and RPC commands in the supplied RPC struct
//! (core/arch/arm/kernel/thread_optee_smc.c), asynchronous notifications (core/kernel/notif.c,
//! core/kernel/notif_default.c, core/tee/entry_std.c) and the wait keys above the asynchronous
//! values (core/kernel/wait_queue.c).
#![allow(clippy::unwrap_used)]

mod common;

use optee_abi::mem::PhysMem;
use optee_abi::msg::{arg_size, cmd, rpc_cmd, MsgArg};
use optee_abi::smc::{async_notif, func, nsec_cap, ret, rpc, sec_cap, split_u64, Regs};
use optee_abi::teec;
use secure_world::ram::SparseRam;
use secure_world::{Config, NotifError, Profile, SecureWorld, RPC_ARG_SIZE};
use tee_test_support::normal_world::{
    fast_call, invoke_message, open_session_message, NormalWorld, RpcEvent,
};

use common::{setup_with, TimeTa, ASK_TIME, NAP, TIME_TA};

fn modern() -> Config {
    Config::for_profile(Profile::Optee4x)
}

fn world(config: Config) -> (SecureWorld, NormalWorld) {
    let (mut sw, nw) = setup_with(config);
    sw.add_ta(Box::new(TimeTa::default()));
    (sw, nw)
}

/// What the test normal world saw of one yielding call's RPCs.
#[derive(Debug, Default)]
struct Seen {
    /// (cmd, a, b) of each RPC command, read from the RPC struct.
    cmds: Vec<(u32, u64, u64)>,
    /// Cookies RPC CMD named.
    cmd_cookies: Vec<u64>,
    allocs: usize,
    frees: Vec<u64>,
}

/// Serves RPCs until the call returns; RPC commands are read from and answered in `rpc_pa`,
/// the RPC struct the call supplied (contiguous in these tests).
fn drive(
    sw: &mut SecureWorld,
    ram: &mut SparseRam,
    mut regs: Regs,
    rpc_pa: u64,
    seen: &mut Seen,
) -> Regs {
    for _ in 0..100 {
        if !rpc::is_rpc(regs[0]) {
            return regs;
        }
        let mut back = [
            u64::from(func::RETURN_FROM_RPC),
            regs[1],
            regs[2],
            regs[3],
            0,
            0,
            0,
            0,
        ];
        match regs[0] as u32 {
            rpc::CMD => {
                seen.cmd_cookies.push((regs[1] << 32) | regs[2]);
                let mut arg = MsgArg::read_from(&*ram, rpc_pa).unwrap();
                let first = arg.params.first().copied().unwrap_or_default();
                seen.cmds.push((arg.cmd, first.a, first.b));
                arg.ret = teec::SUCCESS;
                if arg.cmd == rpc_cmd::GET_TIME {
                    (arg.params[0].a, arg.params[0].b) = (1234, 5);
                }
                arg.write_to(ram, rpc_pa).unwrap();
            }
            rpc::ALLOC => {
                seen.allocs += 1;
                (back[1], back[2]) = (0, 0);
            }
            rpc::FREE => seen.frees.push((regs[1] << 32) | regs[2]),
            _ => {}
        }
        regs = sw.smc(ram, back);
    }
    panic!("call never returned");
}

/// Writes `arg` at `pa` and starts CALL_WITH_RPC_ARG on it.
fn start_rpc_arg(sw: &mut SecureWorld, ram: &mut SparseRam, pa: u64, arg: &MsgArg) -> Regs {
    arg.write_to(ram, pa).unwrap();
    let (hi, lo) = split_u64(pa);
    sw.smc(
        ram,
        [u64::from(func::CALL_WITH_RPC_ARG), hi, lo, 0, 0, 0, 0, 0],
    )
}

/// CALL_WITH_RPC_ARG of `arg` in a fresh page, to the end: the returned code, the message as
/// the secure world left it, and the RPCs it asked for.
fn call_rpc_arg(sw: &mut SecureWorld, nw: &mut NormalWorld, arg: &MsgArg) -> (u32, MsgArg, Seen) {
    let pa = nw.alloc_frame();
    let regs = start_rpc_arg(sw, &mut nw.ram, pa, arg);
    let mut seen = Seen::default();
    let rpc_pa = pa + arg.encoded_len() as u64;
    let regs = drive(sw, &mut nw.ram, regs, rpc_pa, &mut seen);
    let back = MsgArg::read_from(&nw.ram, pa).unwrap();
    (regs[0] as u32, back, seen)
}

fn regd_call(sw: &mut SecureWorld, ram: &mut SparseRam, cookie: u64, offset: u64) -> Regs {
    let (hi, lo) = split_u64(cookie);
    sw.smc(
        ram,
        [
            u64::from(func::CALL_WITH_REGD_ARG),
            hi,
            lo,
            offset,
            0,
            0,
            0,
            0,
        ],
    )
}

fn open_rpc_arg(sw: &mut SecureWorld, nw: &mut NormalWorld) -> u32 {
    let (code, opened, seen) = call_rpc_arg(sw, nw, &open_session_message(TIME_TA));
    assert_eq!((code, opened.ret), (ret::OK, teec::SUCCESS));
    assert_eq!(seen.allocs, 0);
    opened.session
}

#[test]
fn capabilities_and_revision_follow_the_profile_entry_fast_c() {
    let (mut sw, mut nw) = world(modern());
    let caps = fast_call(
        &mut sw,
        &mut nw.ram,
        func::EXCHANGE_CAPABILITIES,
        nsec_cap::UNIPROCESSOR,
    );
    assert_eq!(caps[0], u64::from(ret::OK));
    assert_ne!(caps[1] & sec_cap::RPC_ARG, 0);
    assert_ne!(caps[1] & sec_cap::ASYNC_NOTIF, 0);
    assert_ne!(caps[1] & sec_cap::DYNAMIC_SHM, 0);
    // NOTIF_VALUE_MAX = NOTIF_SYNC_VALUE_BASE (64) + CFG_NUM_THREADS; THREAD_RPC_MAX_NUM_PARAMS.
    assert_eq!((caps[2], caps[3]), (64 + 2, 4));
    let rev = fast_call(&mut sw, &mut nw.ram, func::GET_OS_REVISION, 0);
    assert_eq!(rev[..2], [4, 10]);

    let (mut old, mut old_nw) = world(Config::default());
    let caps = fast_call(&mut old, &mut old_nw.ram, func::EXCHANGE_CAPABILITIES, 0);
    assert_eq!(caps[1] & (sec_cap::RPC_ARG | sec_cap::ASYNC_NOTIF), 0);
    assert_eq!((caps[2], caps[3]), (0, 0));
    for id in [func::ENABLE_ASYNC_NOTIF, func::GET_ASYNC_NOTIF_VALUE] {
        let r = fast_call(&mut old, &mut old_nw.ram, id, 0);
        assert_eq!(r[0], u64::from(ret::UNKNOWN_FUNCTION), "{id:#x} under 3.14");
    }
}

#[test]
fn call_with_rpc_arg_carries_rpc_commands_in_the_supplied_struct_thread_optee_smc_c() {
    let (mut sw, mut nw) = world(modern());
    let session = open_rpc_arg(&mut sw, &mut nw);
    let invoke = invoke_message(
        session,
        ASK_TIME,
        &[optee_abi::msg::Param::Value {
            dir: optee_abi::msg::Direction::Out,
            a: 0,
            b: 0,
            c: 0,
            meta: false,
        }],
    )
    .unwrap();
    let (code, done, seen) = call_rpc_arg(&mut sw, &mut nw, &invoke);
    assert_eq!((code, done.ret), (ret::OK, teec::SUCCESS));
    assert_eq!((done.params[0].a, done.params[0].b), (1234, 5));
    assert_eq!(seen.cmds, [(rpc_cmd::GET_TIME, 0, 0)]);
    // No RPC ALLOC, no RPC FREE: the RPC struct is the normal world's, named by no cookie.
    assert_eq!((seen.allocs, seen.frees.len()), (0, 0));
    assert_eq!(seen.cmd_cookies, [0]);
    assert_eq!(sw.stats().cached_buffers, 0);
    assert!(sw.threads().threads.iter().all(|t| !t.has_rpc_buffer));
}

#[test]
fn call_with_rpc_arg_refusals_are_ebadaddr_or_ethread_limit_thread_optee_smc_c() {
    let (mut sw, mut nw) = world(modern());
    let config = modern();
    let ebadaddr = u64::from(ret::EBADADDR);
    let close = MsgArg::close_session(1);
    // Not page-aligned; outside RAM.
    let page = nw.alloc_frame();
    assert_eq!(
        start_rpc_arg(&mut sw, &mut nw.ram, page + 8, &close)[0],
        ebadaddr
    );
    let outside = config.ram_base + config.ram_size;
    let (hi, lo) = split_u64(outside);
    let r = sw.smc(
        &mut nw.ram,
        [u64::from(func::CALL_WITH_RPC_ARG), hi, lo, 0, 0, 0, 0, 0],
    );
    assert_eq!(r[0], ebadaddr);
    // More than OPTEE_MSG_MAX_NUM_PARAMS (127), or a message whose RPC struct leaves the page:
    // 123 params take 3,968 bytes and the 160-byte RPC struct no longer fits.
    for num_params in [128u32, 123] {
        let mut header = [0u8; 32];
        header[28..32].copy_from_slice(&num_params.to_le_bytes());
        nw.ram.write(page, &header).unwrap();
        let (hi, lo) = split_u64(page);
        let r = sw.smc(
            &mut nw.ram,
            [u64::from(func::CALL_WITH_RPC_ARG), hi, lo, 0, 0, 0, 0, 0],
        );
        assert_eq!(r[0], ebadaddr, "{num_params} params");
    }
    assert_eq!(
        arg_size(122) as u64 + RPC_ARG_SIZE,
        4096,
        "122 params fit exactly"
    );
    assert_eq!(sw.threads().free(), 2, "a refused call holds no thread");
    let heap = sw.heap().used;

    // Both threads asleep in SUSPEND: the next call finds none free.
    let session = open_rpc_arg(&mut sw, &mut nw);
    for _ in 0..2 {
        let pa = nw.alloc_frame();
        let r = start_rpc_arg(
            &mut sw,
            &mut nw.ram,
            pa,
            &invoke_message(session, NAP, &[]).unwrap(),
        );
        assert_eq!(r[0] as u32, rpc::CMD);
    }
    let pa = nw.alloc_frame();
    let r = start_rpc_arg(&mut sw, &mut nw.ram, pa, &close);
    assert_eq!(r[0], u64::from(ret::ETHREAD_LIMIT));
    assert!(sw.heap().used > heap);
}

#[test]
fn a_cached_rpc_buffer_is_freed_before_a_call_with_its_own_rpc_struct_thread_optee_smc_c() {
    let (mut sw, mut nw) = world(modern());
    let enable = fast_call(&mut sw, &mut nw.ram, func::ENABLE_SHM_CACHE, 0);
    assert_eq!(enable[0], u64::from(ret::OK));
    let session = nw.open_session(&mut sw, TIME_TA).unwrap().session;
    // CALL_WITH_ARG with an RPC: thread 0 keeps the RPC ALLOC'd buffer in the cache.
    let value = optee_abi::msg::Param::Value {
        dir: optee_abi::msg::Direction::Out,
        a: 0,
        b: 0,
        c: 0,
        meta: false,
    };
    let asked = nw.invoke(&mut sw, session, ASK_TIME, &[value]).unwrap();
    assert_eq!(asked.ret, teec::SUCCESS);
    assert_eq!(sw.stats().cached_buffers, 1);
    let cached = nw.outstanding_rpc_buffers();
    assert_eq!(cached.len(), 1);
    // A call bringing its own RPC struct first hands that buffer back (clear_prealloc_rpc_cache).
    let (code, _, seen) = call_rpc_arg(
        &mut sw,
        &mut nw,
        &invoke_message(session, ASK_TIME, &[value]).unwrap(),
    );
    assert_eq!(code, ret::OK);
    assert_eq!(seen.frees, cached);
    assert_eq!(sw.stats().cached_buffers, 0);
}

/// Registers one page under `cookie` and returns its address.
fn registered_page(sw: &mut SecureWorld, nw: &mut NormalWorld, cookie: u64) -> u64 {
    let (code, frames) = nw.register(sw, cookie, 0, 4096).unwrap();
    assert_eq!(code, teec::SUCCESS);
    frames[0]
}

#[test]
fn call_with_regd_arg_runs_the_message_in_a_registered_page_thread_optee_smc_c() {
    let (mut sw, mut nw) = world(modern());
    let page = registered_page(&mut sw, &mut nw, 0xA11);
    let offset = 512;
    let open = open_session_message(TIME_TA);
    open.write_to(&mut nw.ram, page + offset).unwrap();
    let regs = regd_call(&mut sw, &mut nw.ram, 0xA11, offset);
    let mut seen = Seen::default();
    let rpc_pa = page + offset + open.encoded_len() as u64;
    let regs = drive(&mut sw, &mut nw.ram, regs, rpc_pa, &mut seen);
    assert_eq!(regs[0], u64::from(ret::OK));
    let opened = MsgArg::read_from(&nw.ram, page + offset).unwrap();
    assert_eq!(
        opened.ret,
        teec::SUCCESS,
        "result written back in the registered page"
    );
    // The argument page stays registered, unused once the call returned.
    let info = sw.registrations().next().unwrap();
    assert_eq!((info.cookie, info.users), (0xA11, 0));

    // A call holds its argument registration: an UNREGISTER_SHM of it waits for the call.
    let nap = invoke_message(opened.session, NAP, &[]).unwrap();
    nap.write_to(&mut nw.ram, page).unwrap();
    let r = regd_call(&mut sw, &mut nw.ram, 0xA11, 0);
    assert_eq!(r[0] as u32, rpc::CMD, "asleep in SUSPEND");
    assert_eq!(sw.registrations().next().unwrap().users, 1);
}

#[test]
fn call_with_regd_arg_refusals_thread_optee_smc_c() {
    let (mut sw, mut nw) = world(modern());
    let page = registered_page(&mut sw, &mut nw, 0xB22);
    let close = MsgArg::close_session(7);
    close.write_to(&mut nw.ram, page).unwrap();
    let ebadaddr = u64::from(ret::EBADADDR);
    // mobj_reg_shm_get_by_cookie fails.
    assert_eq!(
        regd_call(&mut sw, &mut nw.ram, 0xB23, 0)[0],
        ebadaddr,
        "unknown cookie"
    );
    // Not aligned for struct optee_msg_arg.
    close.write_to(&mut nw.ram, page + 4).unwrap();
    assert_eq!(
        regd_call(&mut sw, &mut nw.ram, 0xB22, 4)[0],
        ebadaddr,
        "misaligned"
    );
    // The message fits, its RPC struct does not; the header itself is past the end.
    let tight = 4096 - 32;
    close.write_to(&mut nw.ram, page + tight).unwrap();
    assert_eq!(
        regd_call(&mut sw, &mut nw.ram, 0xB22, tight)[0],
        ebadaddr,
        "no room for the RPC arg"
    );
    assert_eq!(
        regd_call(&mut sw, &mut nw.ram, 0xB22, 4096)[0],
        ebadaddr,
        "past the end"
    );
    // More than OPTEE_MSG_MAX_NUM_PARAMS.
    let mut header = [0u8; 32];
    header[28..32].copy_from_slice(&200u32.to_le_bytes());
    nw.ram.write(page, &header).unwrap();
    assert_eq!(
        regd_call(&mut sw, &mut nw.ram, 0xB22, 0)[0],
        ebadaddr,
        "too many params"
    );
    // The last offset that leaves room for both: a CLOSE (32 bytes) and the RPC struct.
    let last = 4096 - 32 - RPC_ARG_SIZE;
    close.write_to(&mut nw.ram, page + last).unwrap();
    let r = regd_call(&mut sw, &mut nw.ram, 0xB22, last);
    assert_eq!(r[0], u64::from(ret::OK));
    let closed = MsgArg::read_from(&nw.ram, page + last).unwrap();
    assert_eq!(closed.ret, teec::ERROR_ITEM_NOT_FOUND, "the command ran");
    // Refusals left nothing behind.
    assert_eq!(sw.registrations().next().unwrap().users, 0);
    assert_eq!(sw.threads().free(), 2);
}

/// Runs the ENOMEM scenario on a heap of `capacity` (None: the default): a session, a
/// registered page, one REGD call asleep in SUSPEND, then a second REGD call. Returns the heap
/// in use before the second call and its answer.
fn second_regd_call(capacity: Option<usize>) -> (usize, u64) {
    let mut config = modern();
    if let Some(capacity) = capacity {
        config.core_heap_bytes = capacity;
    }
    let (mut sw, mut nw) = world(config);
    let session = nw.open_session(&mut sw, TIME_TA).unwrap().session;
    let page = registered_page(&mut sw, &mut nw, 0xC33);
    invoke_message(session, NAP, &[])
        .unwrap()
        .write_to(&mut nw.ram, page)
        .unwrap();
    let r = regd_call(&mut sw, &mut nw.ram, 0xC33, 0);
    assert_eq!(r[0] as u32, rpc::CMD);
    let used = sw.heap().used;
    MsgArg::close_session(9)
        .write_to(&mut nw.ram, page + 1024)
        .unwrap();
    (used, regd_call(&mut sw, &mut nw.ram, 0xC33, 1024)[0])
}

#[test]
fn call_with_regd_arg_is_enomem_when_the_registration_cannot_be_mapped_thread_optee_smc_c() {
    let (used, roomy) = second_regd_call(None);
    assert_eq!(roomy, u64::from(ret::OK));
    // The same run with one byte too few for the mapping (a 64-byte mobj charges 80).
    let (_, tight) = second_regd_call(Some(used + 79));
    assert_eq!(tight, u64::from(ret::ENOMEM));
    let (_, enough) = second_regd_call(Some(used + 80));
    assert_eq!(enough, u64::from(ret::OK));
}

#[test]
fn regd_and_rpc_arg_calls_do_not_exist_under_3_14() {
    let (mut sw, mut nw) = world(Config::default());
    let page = registered_page(&mut sw, &mut nw, 0xD44);
    MsgArg::close_session(1)
        .write_to(&mut nw.ram, page)
        .unwrap();
    assert_eq!(
        regd_call(&mut sw, &mut nw.ram, 0xD44, 0)[0],
        u64::from(ret::EBADCMD)
    );
    let r = start_rpc_arg(&mut sw, &mut nw.ram, page, &MsgArg::close_session(1));
    assert_eq!(r[0], u64::from(ret::EBADCMD));
}

/// A yielding call with a command and no params, through CALL_WITH_ARG.
fn simple_call(sw: &mut SecureWorld, nw: &mut NormalWorld, command: u32) -> Result<MsgArg, u32> {
    nw.call(sw, &MsgArg::new(command)).map_err(|e| match e {
        tee_test_support::normal_world::CallError::Smc(code) => code,
        other => panic!("{other}"),
    })
}

#[test]
fn async_notifications_start_queue_values_run_the_bottom_half_and_stop_notif_c() {
    let (mut sw, mut nw) = world(modern());
    assert_eq!(sw.raise_async_notif(0), Err(NotifError::NotStarted));
    let enable = fast_call(&mut sw, &mut nw.ram, func::ENABLE_ASYNC_NOTIF, 0);
    assert_eq!(enable[0], u64::from(ret::OK));
    assert!(sw.async_notif().started);
    assert_eq!(sw.raise_async_notif(64), Err(NotifError::BadValue(64)));
    sw.raise_async_notif(5).unwrap();
    sw.raise_async_notif(0).unwrap();
    assert!(sw.async_notif().bottom_half_wanted);
    // Lowest value first, PENDING while another is queued, then nothing VALID.
    let get = |sw: &mut SecureWorld, nw: &mut NormalWorld| {
        let r = fast_call(sw, &mut nw.ram, func::GET_ASYNC_NOTIF_VALUE, 0);
        assert_eq!(r[0], u64::from(ret::OK));
        (r[1], r[2])
    };
    let both = async_notif::VALID | async_notif::PENDING;
    assert_eq!(
        get(&mut sw, &mut nw),
        (async_notif::VALUE_DO_BOTTOM_HALF, both)
    );
    assert_eq!(get(&mut sw, &mut nw), (5, async_notif::VALID));
    assert_eq!(get(&mut sw, &mut nw), (0, 0));
    // Value 0 asked for a yielding DO_BOTTOM_HALF; it leaves `ret` alone.
    let done = simple_call(&mut sw, &mut nw, cmd::DO_BOTTOM_HALF).unwrap();
    assert_eq!(done.ret, 0);
    let info = sw.async_notif();
    assert_eq!((info.bottom_halves, info.bottom_half_wanted), (1, false));
    // STOP: no more values until the next ENABLE; a bottom half now does nothing.
    simple_call(&mut sw, &mut nw, cmd::STOP_ASYNC_NOTIF).unwrap();
    assert!(!sw.async_notif().started);
    assert_eq!(sw.raise_async_notif(0), Err(NotifError::NotStarted));
    simple_call(&mut sw, &mut nw, cmd::DO_BOTTOM_HALF).unwrap();
    assert_eq!(sw.async_notif().bottom_halves, 1);
    fast_call(&mut sw, &mut nw.ram, func::ENABLE_ASYNC_NOTIF, 0);
    assert!(sw.async_notif().started);
}

#[test]
fn async_notification_commands_do_not_exist_under_3_14_entry_std_c() {
    let (mut sw, mut nw) = world(Config::default());
    assert_eq!(sw.raise_async_notif(0), Err(NotifError::Unsupported));
    for command in [cmd::DO_BOTTOM_HALF, cmd::STOP_ASYNC_NOTIF] {
        assert_eq!(
            simple_call(&mut sw, &mut nw, command).unwrap_err(),
            ret::EBADCMD
        );
    }
}

#[test]
fn the_started_state_and_unread_values_outlive_the_normal_world_until_a_reset_notif_c() {
    let (mut sw, mut nw) = world(modern());
    fast_call(&mut sw, &mut nw.ram, func::ENABLE_ASYNC_NOTIF, 0);
    sw.raise_async_notif(3).unwrap();
    // A kexec: a new normal world over the same secure world, which kept everything.
    let mut next = NormalWorld::new(&modern());
    assert!(sw.stats().notif_started);
    // A second ENABLE is "already started": the old world's value is still there to read.
    fast_call(&mut sw, &mut next.ram, func::ENABLE_ASYNC_NOTIF, 0);
    let r = fast_call(&mut sw, &mut next.ram, func::GET_ASYNC_NOTIF_VALUE, 0);
    assert_eq!((r[1], r[2]), (3, async_notif::VALID));
    // STOP leaves queued values in the bitmap (notif_default.c never clears it).
    sw.raise_async_notif(4).unwrap();
    simple_call(&mut sw, &mut next, cmd::STOP_ASYNC_NOTIF).unwrap();
    assert_eq!(sw.stats().notif_pending, 1);
    fast_call(&mut sw, &mut next.ram, func::ENABLE_ASYNC_NOTIF, 0);
    sw.reset();
    assert_eq!(sw.async_notif(), Default::default());
    assert_eq!(sw.stats().notif_pending, 0);
}

/// The NOTIFICATION WAIT key a thread sends while waiting for a TA another thread is in.
fn wait_key_under(config: Config) -> u64 {
    let (mut sw, mut nw) = world(config);
    let session = nw.open_session(&mut sw, TIME_TA).unwrap().session;
    let nap = invoke_message(session, NAP, &[]).unwrap();
    // Thread 0 sleeps inside the TA; thread 1 must wait for it.
    let (_, first) = nw.start(&mut sw, &nap).unwrap();
    let first = nw.resume_once(&mut sw, &first).unwrap();
    assert_eq!(first[0] as u32, rpc::CMD, "thread 0 in SUSPEND");
    nw.events.clear();
    let (_, second) = nw.start(&mut sw, &nap).unwrap();
    let mut regs = second;
    for _ in 0..10 {
        let waited = nw.events.iter().find_map(|e| match *e {
            RpcEvent::Cmd { cmd, a, b } if cmd == rpc_cmd::NOTIFICATION => Some((a, b)),
            _ => None,
        });
        if let Some((what, key)) = waited {
            assert_eq!(what, rpc_cmd::NOTIFICATION_WAIT);
            return key;
        }
        regs = nw.resume_once(&mut sw, &regs).unwrap();
    }
    panic!("thread 1 never waited: {:?}", nw.events);
}

#[test]
fn waiting_threads_use_keys_above_the_async_values_wait_queue_c() {
    // Thread 1 waits: key 1 under 3.14, NOTIF_SYNC_VALUE_BASE + 1 under 4.x.
    assert_eq!(wait_key_under(Config::default()), 1);
    assert_eq!(wait_key_under(modern()), 64 + 1);
}
