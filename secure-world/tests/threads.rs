//! The secure thread pool, RPCs and the RPC shm cache.
#![allow(clippy::unwrap_used)]

mod common;

use optee_abi::msg::{rpc_cmd, Direction, Param};
use optee_abi::smc::{func, ret, rpc};
use optee_abi::teec::{self, origin};
use secure_world::{
    Config, SuspendReason, ThreadState, NOTIFICATION_SEND, NOTIFICATION_WAIT, RPC_ARG_SIZE,
};
use tee_test_support::normal_world::{
    cookie_of, fast_call, invoke_message, is_rpc_of, unregister_message, RpcEvent,
};

use common::{open_ok, setup, setup_with, TimeTa, ASK_TIME, NAP, ROUND_TRIP_SHM, TIME_TA};

fn always_interrupted() -> Config {
    Config {
        foreign_intr_every: Some(1),
        ..Config::default()
    }
}

fn value_out() -> Param {
    Param::Value {
        dir: Direction::Out,
        a: 0,
        b: 0,
        c: 0,
        meta: false,
    }
}

#[test]
fn ethread_limit_when_every_thread_is_suspended() {
    let (mut sw, mut nw) = setup_with(always_interrupted());
    let (pa0, r0) = nw.start(&mut sw, &unregister_message(1)).unwrap();
    let (_pa1, r1) = nw.start(&mut sw, &unregister_message(2)).unwrap();
    assert!(is_rpc_of(&r0, rpc::FOREIGN_INTR) && r0[3] == 0);
    assert!(is_rpc_of(&r1, rpc::FOREIGN_INTR) && r1[3] == 1);
    assert_eq!(sw.threads().suspended(), 2);
    assert_eq!(
        sw.threads().threads[0].state,
        ThreadState::Suspended(SuspendReason::ForeignIntr)
    );
    let (_, r2) = nw.start(&mut sw, &unregister_message(3)).unwrap();
    assert_eq!(r2[0], u64::from(ret::ETHREAD_LIMIT));
    // Finishing one call frees its thread for the next.
    let done = nw.finish(&mut sw, pa0, r0).unwrap();
    assert_eq!(done.ret, teec::ERROR_BAD_PARAMETERS, "unknown cookie");
    let (_, r3) = nw.start(&mut sw, &unregister_message(4)).unwrap();
    assert!(is_rpc_of(&r3, rpc::FOREIGN_INTR) && r3[3] == 0);
}

#[test]
fn resume_must_name_a_suspended_thread() {
    let (mut sw, mut nw) = setup_with(always_interrupted());
    let (pa, r) = nw.start(&mut sw, &unregister_message(1)).unwrap();
    let resume = |tid: u64| [u64::from(func::RETURN_FROM_RPC), 0, 0, tid, 0, 0, 0, 0];
    assert_eq!(sw.smc(&mut nw.ram, resume(1))[0], u64::from(ret::ERESUME));
    assert_eq!(sw.smc(&mut nw.ram, resume(5))[0], u64::from(ret::ERESUME));
    // Registers are 32 bits wide: the high half of a3 is ignored.
    assert_eq!(
        sw.smc(&mut nw.ram, resume((1 << 40) | 1))[0],
        u64::from(ret::ERESUME)
    );
    assert_eq!(sw.threads().suspended(), 1);
    nw.finish(&mut sw, pa, r).unwrap();
    assert_eq!(sw.smc(&mut nw.ram, resume(0))[0], u64::from(ret::ERESUME));
}

#[test]
fn a_crashed_normal_world_leaves_threads_suspended_until_reset() {
    let (mut sw, mut nw) = setup_with(always_interrupted());
    nw.start(&mut sw, &unregister_message(1)).unwrap();
    // The normal world "reboots" and carries on with fast calls only; nothing times out.
    for _ in 0..100 {
        fast_call(&mut sw, &mut nw.ram, func::GET_THREAD_COUNT, 0);
    }
    assert_eq!(sw.threads().suspended(), 1);
    assert_eq!(
        fast_call(&mut sw, &mut nw.ram, func::ENABLE_SHM_CACHE, 0)[0],
        u64::from(ret::EBUSY)
    );
    sw.reset();
    assert_eq!(sw.threads().free(), 2);
    assert_eq!(sw.heap().used, sw.heap().baseline);
}

#[test]
fn cache_toggles_are_busy_while_a_thread_is_not_free() {
    let (mut sw, mut nw) = setup_with(always_interrupted());
    let (pa, r) = nw.start(&mut sw, &unregister_message(1)).unwrap();
    for id in [func::ENABLE_SHM_CACHE, func::DISABLE_SHM_CACHE] {
        assert_eq!(
            fast_call(&mut sw, &mut nw.ram, id, 0)[0],
            u64::from(ret::EBUSY)
        );
    }
    assert!(!sw.stats().cache_enabled);
    nw.finish(&mut sw, pa, r).unwrap();
    assert_eq!(
        fast_call(&mut sw, &mut nw.ram, func::ENABLE_SHM_CACHE, 0)[0],
        u64::from(ret::OK)
    );
    assert!(sw.stats().cache_enabled);
}

#[test]
fn rpc_alloc_cmd_free_round_trip_without_cache() {
    let (mut sw, mut nw) = setup();
    sw.add_ta(Box::new(TimeTa::default()));
    let session = open_ok(&mut sw, &mut nw, TIME_TA);
    let heap_before = sw.heap().used;
    let arg = nw
        .invoke(&mut sw, session, ASK_TIME, &[value_out()])
        .unwrap();
    assert_eq!(arg.ret, teec::SUCCESS);
    assert_eq!((arg.params[0].a, arg.params[0].b), nw.time);
    let cookie = match nw.events[..] {
        [RpcEvent::Alloc { size, cookie }, RpcEvent::Cmd {
            cmd: rpc_cmd::GET_TIME,
            ..
        }, RpcEvent::Free { cookie: freed }] => {
            assert_eq!(size, RPC_ARG_SIZE);
            assert_eq!(cookie, freed);
            cookie
        }
        ref other => panic!("unexpected RPCs {other:?}"),
    };
    assert_ne!(cookie, 0);
    assert!(nw.outstanding_rpc_buffers().is_empty());
    assert_eq!(sw.heap().used, heap_before);
    assert!(!sw.threads().threads[0].has_rpc_buffer);
}

#[test]
fn cache_keeps_one_buffer_per_thread_and_disable_returns_them_one_by_one() {
    let (mut sw, mut nw) = setup();
    sw.add_ta(Box::new(TimeTa::default()));
    let session = open_ok(&mut sw, &mut nw, TIME_TA);
    assert_eq!(
        fast_call(&mut sw, &mut nw.ram, func::ENABLE_SHM_CACHE, 0)[0],
        u64::from(ret::OK)
    );

    nw.invoke(&mut sw, session, ASK_TIME, &[value_out()])
        .unwrap();
    nw.invoke(&mut sw, session, ASK_TIME, &[value_out()])
        .unwrap();
    let allocs = nw
        .events
        .iter()
        .filter(|e| matches!(e, RpcEvent::Alloc { .. }))
        .count();
    let frees = nw
        .events
        .iter()
        .filter(|e| matches!(e, RpcEvent::Free { .. }))
        .count();
    assert_eq!(
        (allocs, frees),
        (1, 0),
        "second call reused the cached buffer"
    );
    assert_eq!(sw.stats().cached_buffers, 1);

    // Two calls at once: thread 0 reuses its buffer, thread 1 needs its own.
    let message = invoke_message(session, ASK_TIME, &[value_out()]).unwrap();
    let (pa0, r0) = nw.start(&mut sw, &message).unwrap();
    assert!(is_rpc_of(&r0, rpc::CMD) && r0[3] == 0);
    let (pa1, r1) = nw.start(&mut sw, &message).unwrap();
    assert!(is_rpc_of(&r1, rpc::ALLOC) && r1[3] == 1);
    nw.finish(&mut sw, pa0, r0).unwrap();
    nw.finish(&mut sw, pa1, r1).unwrap();
    assert_eq!(sw.stats().cached_buffers, 2);

    let mut allocated: Vec<u64> = nw
        .events
        .iter()
        .filter_map(|e| match e {
            RpcEvent::Alloc { cookie, .. } => Some(*cookie),
            _ => None,
        })
        .collect();
    let mut returned = Vec::new();
    for _ in 0..2 {
        let r = fast_call(&mut sw, &mut nw.ram, func::DISABLE_SHM_CACHE, 0);
        assert_eq!(r[0], u64::from(ret::OK));
        returned.push(cookie_of(&r));
    }
    let r = fast_call(&mut sw, &mut nw.ram, func::DISABLE_SHM_CACHE, 0);
    assert_eq!(r[0], u64::from(ret::ENOTAVAIL));
    assert!(!sw.stats().cache_enabled);
    assert_eq!(sw.stats().cached_buffers, 0);
    allocated.sort_unstable();
    returned.sort_unstable();
    assert_eq!(allocated, returned);

    // Cache off again: the next call frees its buffer at the end.
    nw.events.clear();
    nw.invoke(&mut sw, session, ASK_TIME, &[value_out()])
        .unwrap();
    assert!(matches!(nw.events.last(), Some(RpcEvent::Free { .. })));
}

#[test]
fn refused_rpc_alloc_fails_the_ta_request() {
    let (mut sw, mut nw) = setup();
    sw.add_ta(Box::new(TimeTa::default()));
    let session = open_ok(&mut sw, &mut nw, TIME_TA);
    nw.refuse_alloc = true;
    let arg = nw
        .invoke(&mut sw, session, ASK_TIME, &[value_out()])
        .unwrap();
    assert_eq!(arg.ret, teec::ERROR_OUT_OF_MEMORY);
    assert_eq!(
        nw.events,
        [RpcEvent::Alloc {
            size: RPC_ARG_SIZE,
            cookie: 0
        }]
    );
    assert_eq!(sw.threads().free(), 2);
}

#[test]
fn ta_shm_alloc_and_suspend_reach_the_normal_world() {
    let (mut sw, mut nw) = setup();
    sw.add_ta(Box::new(TimeTa::default()));
    let session = open_ok(&mut sw, &mut nw, TIME_TA);
    let heap_before = sw.heap().used;
    for size in [100u64, 3 * 4096 + 5] {
        nw.events.clear();
        let size_param = Param::Value {
            dir: Direction::In,
            a: size,
            b: 0,
            c: 0,
            meta: false,
        };
        let arg = nw
            .invoke(&mut sw, session, ROUND_TRIP_SHM, &[size_param])
            .unwrap();
        assert_eq!(arg.ret, teec::SUCCESS);
        let cmds: Vec<u32> = nw
            .events
            .iter()
            .filter_map(|e| match e {
                RpcEvent::Cmd { cmd, .. } => Some(*cmd),
                _ => None,
            })
            .collect();
        assert_eq!(cmds, [rpc_cmd::SHM_ALLOC, rpc_cmd::SHM_FREE]);
        assert!(nw.outstanding_rpc_buffers().is_empty(), "size {size}");
    }
    assert_eq!(sw.heap().used, heap_before);
    nw.events.clear();
    let arg = nw.invoke(&mut sw, session, NAP, &[]).unwrap();
    assert_eq!(arg.ret, teec::SUCCESS);
    assert!(nw.events.contains(&RpcEvent::Cmd {
        cmd: rpc_cmd::SUSPEND,
        a: 5,
        b: 0
    }));
}

#[test]
fn foreign_interrupts_follow_the_configured_period() {
    let config = Config {
        foreign_intr_every: Some(3),
        ..Config::default()
    };
    let (mut sw, mut nw) = setup_with(config);
    let mut interrupted = Vec::new();
    for i in 1..=6u64 {
        nw.events.clear();
        nw.call(&mut sw, &unregister_message(i)).unwrap();
        interrupted.push(nw.events.contains(&RpcEvent::ForeignIntr));
    }
    assert_eq!(interrupted, [false, false, true, false, false, true]);
}

#[test]
fn a_second_call_into_a_busy_ta_waits_for_it() {
    let (mut sw, mut nw) = setup();
    sw.add_ta(Box::new(TimeTa::default()));
    let session = open_ok(&mut sw, &mut nw, TIME_TA);
    let ask = invoke_message(session, ASK_TIME, &[value_out()]).unwrap();
    // Thread 0 is inside the TA, waiting for GET_TIME.
    let (pa0, mut r0) = nw.start(&mut sw, &ask).unwrap();
    r0 = nw.resume_once(&mut sw, &r0).unwrap();
    assert!(is_rpc_of(&r0, rpc::CMD) && r0[3] == 0);
    // Thread 1 wants the same TA: it waits (NOTIFICATION WAIT on its own id).
    let (pa1, mut r1) = nw.start(&mut sw, &ask).unwrap();
    r1 = nw.resume_once(&mut sw, &r1).unwrap();
    assert!(is_rpc_of(&r1, rpc::CMD) && r1[3] == 1);
    let wait = RpcEvent::Cmd {
        cmd: rpc_cmd::NOTIFICATION,
        a: NOTIFICATION_WAIT,
        b: 1,
    };
    // Woken early, it checks again and goes back to waiting.
    r1 = nw.resume_once(&mut sw, &r1).unwrap();
    assert!(is_rpc_of(&r1, rpc::CMD) && r1[3] == 1);
    assert!(nw.events.contains(&wait));
    // Thread 0 finishes and wakes thread 1 on its way out.
    let first = nw.finish(&mut sw, pa0, r0).unwrap();
    assert_eq!(first.ret, teec::SUCCESS);
    let wake = RpcEvent::Cmd {
        cmd: rpc_cmd::NOTIFICATION,
        a: NOTIFICATION_SEND,
        b: 1,
    };
    assert!(nw.events.contains(&wake));
    let second = nw.finish(&mut sw, pa1, r1).unwrap();
    assert_eq!(second.ret, teec::SUCCESS);
    assert_eq!((second.params[0].a, second.params[0].b), nw.time);
    assert_eq!(sw.threads().free(), 2);
}

#[test]
fn closing_a_session_waits_for_its_invocation_and_later_callers_see_it_gone() {
    let config = Config {
        threads: 3,
        ..Config::default()
    };
    let (mut sw, mut nw) = setup_with(config);
    sw.add_ta(Box::new(TimeTa::default()));
    let session = open_ok(&mut sw, &mut nw, TIME_TA);
    let ask = invoke_message(session, ASK_TIME, &[value_out()]).unwrap();
    let (pa0, mut r0) = nw.start(&mut sw, &ask).unwrap();
    r0 = nw.resume_once(&mut sw, &r0).unwrap();
    // Thread 1 closes the session, thread 2 invokes it: both wait for the TA.
    let mut close = optee_abi::msg::MsgArg::new(optee_abi::msg::cmd::CLOSE_SESSION);
    close.session = session;
    let (pa1, r1) = nw.start(&mut sw, &close).unwrap();
    let (pa2, r2) = nw.start(&mut sw, &ask).unwrap();
    assert_eq!(sw.stats().sessions, 1);
    nw.finish(&mut sw, pa0, r0).unwrap();
    assert_eq!(nw.finish(&mut sw, pa1, r1).unwrap().ret, teec::SUCCESS);
    let late = nw.finish(&mut sw, pa2, r2).unwrap();
    assert_eq!(
        (late.ret, late.ret_origin),
        (teec::ERROR_BAD_PARAMETERS, origin::TEE)
    );
    assert_eq!(sw.stats().sessions, 0);
}

#[test]
fn cancel_reaches_an_invocation_suspended_in_the_ta() {
    let (mut sw, mut nw) = setup();
    sw.add_ta(Box::new(TimeTa::default()));
    let session = open_ok(&mut sw, &mut nw, TIME_TA);
    let mut ask = invoke_message(session, ASK_TIME, &[value_out()]).unwrap();
    ask.cancel_id = 42;
    let (pa, mut r) = nw.start(&mut sw, &ask).unwrap();
    r = nw.resume_once(&mut sw, &r).unwrap();
    assert!(is_rpc_of(&r, rpc::CMD));
    let mut cancel = optee_abi::msg::MsgArg::new(optee_abi::msg::cmd::CANCEL);
    cancel.session = session;
    cancel.cancel_id = 42;
    assert_eq!(nw.call(&mut sw, &cancel).unwrap().ret, teec::SUCCESS);
    assert_eq!(nw.finish(&mut sw, pa, r).unwrap().ret, teec::ERROR_CANCEL);
    // The next invocation is not cancelled.
    assert_eq!(
        nw.invoke(&mut sw, session, ASK_TIME, &[value_out()])
            .unwrap()
            .ret,
        teec::SUCCESS
    );
}
