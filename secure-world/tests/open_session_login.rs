//! OPEN_SESSION's client identity (core/tee/entry_std.c get_open_session_meta): the client
//! UUID is zeroed for the anonymous logins, LOGIN_PUBLIC and LOGIN_REE_KERNEL, kept for the
//! others, and a login OP-TEE does not know is refused with BAD_PARAMETERS.
#![allow(clippy::unwrap_used)]

mod common;

use optee_abi::msg::{cmd, Direction, MsgArg, Param};
use optee_abi::teec::{self, login};
use optee_abi::uuid::{Uuid, BNXT_TA};
use tee_test_support::normal_world::NormalWorld;

use common::setup;

const CLAIMED: Uuid = Uuid::from_fields(0x1234_5678, 0x9abc, 0xdef0, [1, 2, 3, 4, 5, 6, 7, 8]);

fn open_with(sw: &mut secure_world::SecureWorld, nw: &mut NormalWorld, login: u32) -> MsgArg {
    let mut arg = MsgArg::new(cmd::OPEN_SESSION);
    let meta = |(a, b): (u64, u64), c: u64| Param::Value {
        dir: Direction::In,
        a,
        b,
        c,
        meta: true,
    };
    arg.push(meta(BNXT_TA.to_value_pair(), 0)).unwrap();
    arg.push(meta(CLAIMED.to_value_pair(), u64::from(login)))
        .unwrap();
    nw.call(sw, &arg).unwrap()
}

fn client_of(sw: &secure_world::SecureWorld, session: u32) -> secure_world::ta::ClientIdentity {
    sw.sessions()
        .find(|s| s.id == session)
        .map(|s| s.client)
        .unwrap()
}

#[test]
fn entry_std_get_open_session_meta_zeroes_the_uuid_of_anonymous_logins() {
    let (mut sw, mut nw) = setup();
    for anonymous in [login::PUBLIC, login::REE_KERNEL] {
        let opened = open_with(&mut sw, &mut nw, anonymous);
        assert_eq!(opened.ret, teec::SUCCESS);
        let client = client_of(&sw, opened.session);
        assert_eq!(client.login, anonymous);
        assert_eq!(
            client.uuid,
            Uuid::from_bytes([0; 16]),
            "login {anonymous:#x}"
        );
        assert_eq!(
            nw.close_session(&mut sw, opened.session).unwrap(),
            teec::SUCCESS
        );
    }
}

#[test]
fn entry_std_get_open_session_meta_keeps_the_uuid_of_identified_logins() {
    let (mut sw, mut nw) = setup();
    for identified in [
        login::USER,
        login::GROUP,
        login::APPLICATION,
        login::APPLICATION_USER,
        login::APPLICATION_GROUP,
    ] {
        let opened = open_with(&mut sw, &mut nw, identified);
        assert_eq!(opened.ret, teec::SUCCESS, "login {identified:#x}");
        assert_eq!(client_of(&sw, opened.session).uuid, CLAIMED);
        assert_eq!(
            nw.close_session(&mut sw, opened.session).unwrap(),
            teec::SUCCESS
        );
    }
}

#[test]
fn entry_std_get_open_session_meta_refuses_unknown_logins() {
    let (mut sw, mut nw) = setup();
    // 3 is unassigned; TEE_LOGIN_TRUSTED_APP (0xF0000000) is for TA-to-TA sessions only.
    for unknown in [3, 7, 0x4000_0000, 0xF000_0000] {
        let refused = open_with(&mut sw, &mut nw, unknown);
        assert_eq!(
            refused.ret,
            teec::ERROR_BAD_PARAMETERS,
            "login {unknown:#x}"
        );
    }
    assert_eq!(sw.stats().sessions, 0);
}
