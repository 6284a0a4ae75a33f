//! Sessions: TA lookup, single-instance rules, ids, heap charge, reset and TA state.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use optee_abi::msg::{attr, cmd, Direction, MsgArg, Param, RawParam};
use optee_abi::teec::{self, origin};
use optee_abi::uuid::{Uuid, BNXT_TA, DEVICE_PTA};
use secure_world::heap::charge_for;
use secure_world::{Config, SecureWorld, SESSION_BYTES};
use tee_test_support::normal_world::NormalWorld;

use common::{open_ok, setup, SingleSessionTa, BUMP, SINGLE_TA};

fn bump(sw: &mut SecureWorld, nw: &mut NormalWorld, session: u32) -> (u64, u64) {
    let out = Param::Value {
        dir: Direction::Out,
        a: 0,
        b: 0,
        c: 0,
        meta: false,
    };
    let arg = nw.invoke(sw, session, BUMP, &[out]).unwrap();
    assert_eq!(arg.ret, teec::SUCCESS);
    (arg.params[0].a, arg.params[0].b)
}

#[test]
fn single_instance_single_session_ta_refuses_a_second_session() {
    let (mut sw, mut nw) = setup();
    sw.add_ta(Box::new(SingleSessionTa::new(true)));
    let first = open_ok(&mut sw, &mut nw, SINGLE_TA);
    let second = nw.open_session(&mut sw, SINGLE_TA).unwrap();
    assert_eq!(
        (second.ret, second.ret_origin),
        (teec::ERROR_BUSY, origin::TEE)
    );
    assert_eq!(sw.stats().sessions, 1);
    assert_eq!(nw.close_session(&mut sw, first).unwrap(), teec::SUCCESS);
    open_ok(&mut sw, &mut nw, SINGLE_TA);
}

#[test]
fn bnxt_and_device_ptas_take_many_sessions() {
    let (mut sw, mut nw) = setup();
    let a = open_ok(&mut sw, &mut nw, BNXT_TA);
    let b = open_ok(&mut sw, &mut nw, BNXT_TA);
    let c = open_ok(&mut sw, &mut nw, DEVICE_PTA);
    assert!(a != b && b != c && a != c);
    let listed: Vec<(u32, Uuid)> = sw.sessions().map(|s| (s.id, s.ta)).collect();
    let mut expected = vec![(a, BNXT_TA), (b, BNXT_TA), (c, DEVICE_PTA)];
    expected.sort();
    assert_eq!(listed, expected);
}

#[test]
fn unknown_ta_and_unknown_session_are_refused_by_the_tee() {
    let (mut sw, mut nw) = setup();
    let nobody = Uuid::from_fields(1, 2, 3, [4; 8]);
    let arg = nw.open_session(&mut sw, nobody).unwrap();
    assert_eq!(
        (arg.ret, arg.ret_origin),
        (teec::ERROR_ITEM_NOT_FOUND, origin::TEE)
    );
    let arg = nw.invoke(&mut sw, 0xdead, 0, &[]).unwrap();
    assert_eq!(
        (arg.ret, arg.ret_origin),
        (teec::ERROR_BAD_PARAMETERS, origin::TEE)
    );
    // tee/entry_std.c entry_close_session -> tee_ta_close_session: no such session.
    assert_eq!(
        nw.close_session(&mut sw, 0xdead).unwrap(),
        teec::ERROR_ITEM_NOT_FOUND
    );
    let mut cancel = MsgArg::new(cmd::CANCEL);
    cancel.session = 0xdead;
    assert_eq!(
        nw.call(&mut sw, &cancel).unwrap().ret,
        teec::ERROR_BAD_PARAMETERS
    );
}

/// tee/entry_std.c entry_close_session and entry_cancel: a CLOSE_SESSION or CANCEL that carries
/// parameters is refused with BAD_PARAMETERS, and the session stays open.
#[test]
fn close_and_cancel_with_parameters_are_refused() {
    let (mut sw, mut nw) = setup();
    let session = nw.open_session(&mut sw, BNXT_TA).unwrap().session;
    let value = RawParam {
        attr: attr::VALUE_INPUT,
        a: 1,
        b: 2,
        c: 3,
    };
    for command in [cmd::CLOSE_SESSION, cmd::CANCEL] {
        let mut arg = MsgArg::new(command);
        arg.session = session;
        arg.push(value).unwrap();
        let answer = nw.call(&mut sw, &arg).unwrap();
        assert_eq!(
            (answer.ret, answer.ret_origin),
            (teec::ERROR_BAD_PARAMETERS, origin::TEE),
            "command {command}"
        );
    }
    // Still open: the plain close works.
    assert_eq!(nw.close_session(&mut sw, session).unwrap(), teec::SUCCESS);
}

#[test]
fn open_session_needs_two_meta_value_params() {
    let (mut sw, mut nw) = setup();
    let (a, b) = BNXT_TA.to_value_pair();
    let mut arg = MsgArg::new(cmd::OPEN_SESSION);
    arg.push(RawParam {
        attr: attr::VALUE_INPUT,
        a,
        b,
        c: 0,
    })
    .unwrap();
    arg.push(RawParam {
        attr: attr::VALUE_INPUT | attr::META,
        a: 0,
        b: 0,
        c: 0,
    })
    .unwrap();
    let back = nw.call(&mut sw, &arg).unwrap();
    assert_eq!(
        (back.ret, back.ret_origin),
        (teec::ERROR_BAD_PARAMETERS, origin::TEE)
    );
    let mut arg = MsgArg::new(cmd::OPEN_SESSION);
    arg.push(RawParam {
        attr: attr::VALUE_INPUT | attr::META,
        a,
        b,
        c: 0,
    })
    .unwrap();
    assert_eq!(
        nw.call(&mut sw, &arg).unwrap().ret,
        teec::ERROR_BAD_PARAMETERS
    );
    assert_eq!(sw.stats().sessions, 0);
}

#[test]
fn sessions_cost_heap_until_closed_and_ids_never_repeat_while_open() {
    let (mut sw, mut nw) = setup();
    let base = sw.heap().used;
    let mut open = Vec::new();
    let mut seen = BTreeSet::new();
    for _ in 0..20 {
        let id = open_ok(&mut sw, &mut nw, BNXT_TA);
        assert!(seen.insert(id), "id {id} reused");
        open.push(id);
    }
    assert_eq!(
        sw.heap().used,
        base + 20 * charge_for(SESSION_BYTES).unwrap()
    );
    for id in open {
        assert_eq!(nw.close_session(&mut sw, id).unwrap(), teec::SUCCESS);
    }
    assert_eq!(sw.heap().used, base);
    let again = open_ok(&mut sw, &mut nw, BNXT_TA);
    assert!(!seen.contains(&again));
}

#[test]
fn session_ids_depend_only_on_the_boot_nonce() {
    let first_id = |nonce| {
        let config = Config::default();
        let mut nw = NormalWorld::new(&config);
        let mut sw = SecureWorld::new(config, nonce);
        open_ok(&mut sw, &mut nw, BNXT_TA)
    };
    assert_eq!(first_id(11), first_id(11));
    assert_ne!(first_id(11), first_id(12));
}

#[test]
fn reset_clears_everything_but_ta_persistent_state() {
    let (mut sw, mut nw) = setup();
    sw.add_ta(Box::new(SingleSessionTa::new(true)));
    let session = open_ok(&mut sw, &mut nw, SINGLE_TA);
    assert_eq!(bump(&mut sw, &mut nw, session), (1, 1));
    assert_eq!(bump(&mut sw, &mut nw, session), (2, 2));
    nw.register(&mut sw, 5, 0, 4096).unwrap();
    sw.reset();
    let stats = sw.stats();
    assert_eq!(
        (stats.sessions, stats.registrations, stats.heap_used),
        (0, 0, sw.heap().baseline)
    );
    // The session left open before the reset no longer blocks the single-session TA.
    let session = open_ok(&mut sw, &mut nw, SINGLE_TA);
    assert_eq!(
        bump(&mut sw, &mut nw, session),
        (3, 1),
        "NV kept, volatile state reset"
    );
}

#[test]
fn a_kexec_keeps_the_stale_session_and_locks_the_single_session_ta_out() {
    let (mut sw, mut nw) = setup();
    sw.add_ta(Box::new(SingleSessionTa::new(true)));
    let stale = open_ok(&mut sw, &mut nw, SINGLE_TA);
    // The normal world kexecs: nothing reaches the secure world.
    let mut nw = NormalWorld::new(sw.config());
    let arg = nw.open_session(&mut sw, SINGLE_TA).unwrap();
    assert_eq!(arg.ret, teec::ERROR_BUSY);
    // Closing the stale session (what teed's journal does) lets the new boot in.
    assert_eq!(nw.close_session(&mut sw, stale).unwrap(), teec::SUCCESS);
    open_ok(&mut sw, &mut nw, SINGLE_TA);
}

#[test]
fn without_keep_alive_the_instance_unloads_with_its_last_session() {
    let (mut sw, mut nw) = setup();
    sw.add_ta(Box::new(SingleSessionTa::new(false)));
    let session = open_ok(&mut sw, &mut nw, SINGLE_TA);
    assert_eq!(bump(&mut sw, &mut nw, session), (1, 1));
    nw.close_session(&mut sw, session).unwrap();
    let session = open_ok(&mut sw, &mut nw, SINGLE_TA);
    assert_eq!(bump(&mut sw, &mut nw, session), (2, 1));
}
