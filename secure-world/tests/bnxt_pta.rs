//! The BNXT PTA as core/pta/bcm/bnxt.c answers: FASTBOOT failures are TARGET_DEAD, HEALTH
//! and HANDSHAKE status, and COPY_COREDUMP over the 32 MiB crash region
//! (core/drivers/bnxt/bnxt_fw.c bnxt_copy_crash_dump).
#![allow(clippy::unwrap_used)]

mod common;

use optee_abi::mem::PhysMem;
use optee_abi::msg::{Direction, MsgArg, Param};
use optee_abi::teec::{self, origin};
use optee_abi::uuid::BNXT_TA;
use secure_world::ta::bnxt::{
    BnxtTa, COPY_COREDUMP, CRASH_LEN, FASTBOOT, HANDSHAKE_STATUS, HANDSHAKE_SUCCESS,
    HANDSHAKE_WAIT_TIMEOUT, HEALTH_STATUS,
};
use secure_world::SecureWorld;
use tee_test_support::normal_world::NormalWorld;

use common::{open_ok, setup};

const COOKIE: u64 = 0xB0B;

fn value(dir: Direction, a: u64) -> Param {
    Param::Value {
        dir,
        a,
        b: 0,
        c: 0,
        meta: false,
    }
}

fn invoke(
    sw: &mut SecureWorld,
    nw: &mut NormalWorld,
    session: u32,
    func: u32,
    params: &[Param],
) -> MsgArg {
    nw.invoke(sw, session, func, params).unwrap()
}

/// bnxt.c: `if (bnxt_load_fw(1) != BNXT_SUCCESS) return TEE_ERROR_TARGET_DEAD;` — without a
/// valid image the load fails, from the TA; the PTA's session stays usable and the NIC never
/// completes its handshake.
#[test]
fn bnxt_c_fastboot_without_an_image_is_target_dead() {
    let (mut sw, mut nw) = setup();
    sw.add_ta(Box::new(BnxtTa::without_image()));
    let session = open_ok(&mut sw, &mut nw, BNXT_TA);
    for _ in 0..2 {
        let arg = invoke(&mut sw, &mut nw, session, FASTBOOT, &[Param::None; 4]);
        assert_eq!(
            (arg.ret, arg.ret_origin),
            (teec::ERROR_TARGET_DEAD, origin::TRUSTED_APP)
        );
    }
    let inout = [value(Direction::InOut, 10)];
    let arg = invoke(&mut sw, &mut nw, session, HANDSHAKE_STATUS, &inout);
    assert_eq!(arg.ret, teec::SUCCESS);
    assert_eq!(arg.params[0].a, HANDSHAKE_WAIT_TIMEOUT);
    assert_eq!(nw.close_session(&mut sw, session).unwrap(), teec::SUCCESS);
}

/// bnxt.c get_bnxt_status / get_bnxt_handshake_status: exact param types; the handshake
/// completes once the firmware booted.
#[test]
fn bnxt_c_health_and_handshake_status() {
    let (mut sw, mut nw) = setup();
    let session = open_ok(&mut sw, &mut nw, BNXT_TA);
    let health = invoke(
        &mut sw,
        &mut nw,
        session,
        HEALTH_STATUS,
        &[value(Direction::Out, 0x55)],
    );
    assert_eq!(health.ret, teec::SUCCESS);
    assert_eq!(health.params[0].a, 0, "the model's health register");
    for wrong in [
        &[value(Direction::In, 0)][..],
        &[value(Direction::Out, 0), value(Direction::In, 0)][..],
    ] {
        let arg = invoke(&mut sw, &mut nw, session, HEALTH_STATUS, wrong);
        assert_eq!(arg.ret, teec::ERROR_BAD_PARAMETERS);
    }

    let inout = [value(Direction::InOut, 10)];
    let before = invoke(&mut sw, &mut nw, session, HANDSHAKE_STATUS, &inout);
    assert_eq!(before.params[0].a, HANDSHAKE_WAIT_TIMEOUT);
    let wrong = invoke(
        &mut sw,
        &mut nw,
        session,
        HANDSHAKE_STATUS,
        &[value(Direction::Out, 0)],
    );
    assert_eq!(wrong.ret, teec::ERROR_BAD_PARAMETERS);
    let boot = invoke(&mut sw, &mut nw, session, FASTBOOT, &[Param::None; 4]);
    assert_eq!(boot.ret, teec::SUCCESS);
    let after = invoke(&mut sw, &mut nw, session, HANDSHAKE_STATUS, &inout);
    assert_eq!(after.ret, teec::SUCCESS);
    assert_eq!(after.params[0].a, HANDSHAKE_SUCCESS);
}

/// bnxt_fw.c bnxt_copy_crash_dump: offset + size (32-bit values) must stay inside
/// BNXT_CRASH_LEN (32 MiB); past the 8 MiB dump the region reads as zeros. bnxt.c
/// copy_bnxt_crash_dump refuses a null memref or one smaller than the request.
#[test]
fn bnxt_fw_c_crash_dump_copy_covers_the_32_mib_region() {
    let (mut sw, mut nw) = setup();
    let (code, frames) = nw.register(&mut sw, COOKIE, 0, 4096).unwrap();
    assert_eq!(code, teec::SUCCESS);
    let session = open_ok(&mut sw, &mut nw, BNXT_TA);
    let copy = |sw: &mut SecureWorld, nw: &mut NormalWorld, memref: Param, offset, len| {
        let params = [
            memref,
            Param::Value {
                dir: Direction::In,
                a: offset,
                b: len,
                c: 0,
                meta: false,
            },
            Param::None,
            Param::None,
        ];
        invoke(sw, nw, session, COPY_COREDUMP, &params).ret
    };
    let shm = Param::Rmem {
        dir: Direction::InOut,
        offs: 0,
        size: 4096,
        shm_ref: COOKIE,
    };
    assert_eq!(CRASH_LEN, 32 << 20);
    nw.ram.write(frames[0], &[0xAA; 16]).unwrap();
    let dump_end = bnxt_image::COREDUMP_LEN;
    assert_eq!(copy(&mut sw, &mut nw, shm, dump_end - 8, 16), teec::SUCCESS);
    let mut got = [0u8; 16];
    nw.ram.read(frames[0], &mut got).unwrap();
    let mut want = [0u8; 16];
    bnxt_image::coredump_chunk(dump_end - 8, &mut want[..8]).unwrap();
    assert_eq!(got, want, "the image's last bytes, then zeros");

    assert_eq!(
        copy(&mut sw, &mut nw, shm, CRASH_LEN - 16, 16),
        teec::SUCCESS
    );
    assert_eq!(
        copy(&mut sw, &mut nw, shm, CRASH_LEN - 15, 16),
        teec::ERROR_BAD_PARAMETERS
    );
    // Only the low 32 bits of a value reach the PTA: 4 GiB + 0 is offset 0.
    nw.ram.write(frames[0], &[0u8; 16]).unwrap();
    assert_eq!(copy(&mut sw, &mut nw, shm, 1 << 32, 16), teec::SUCCESS);
    nw.ram.read(frames[0], &mut got).unwrap();
    bnxt_image::coredump_chunk(0, &mut want).unwrap();
    assert_eq!(got, want);
    // Larger than the memref, or a null memref.
    assert_eq!(
        copy(&mut sw, &mut nw, shm, 0, 4097),
        teec::ERROR_BAD_PARAMETERS
    );
    let null = Param::Tmem {
        dir: Direction::InOut,
        buf_ptr: 0,
        size: 4096,
        shm_ref: 0,
        noncontig: false,
        meta: false,
    };
    assert_eq!(
        copy(&mut sw, &mut nw, null, 0, 16),
        teec::ERROR_BAD_PARAMETERS
    );
}
