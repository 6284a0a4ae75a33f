//! The BNXT PTA (fastboot, coredump copy into registered shm) and the device PTA.
#![allow(clippy::unwrap_used)]

mod common;

use bnxt_image::{self as bnxt, coredump_checksum, COREDUMP_LEN};
use optee_abi::mem::PhysMem;
use optee_abi::msg::{Direction, Param};
use optee_abi::teec::{self, origin};
use optee_abi::uuid::{BNXT_TA, DEVICE_PTA, FTPM_TA};
use secure_world::ta::bnxt::{COPY_COREDUMP, FASTBOOT};
use secure_world::ta::device_pta::GET_DEVICES;
use secure_world::SecureWorld;
use tee_test_support::normal_world::NormalWorld;

use common::{open_ok, setup, SingleSessionTa, SINGLE_TA};

const CHUNK: u64 = 4 << 20;
const COOKIE: u64 = 0xB0B;

fn copy_params(offs: u64, size: u64, offset: u64, len: u64) -> [Param; 4] {
    [
        Param::Rmem {
            dir: Direction::InOut,
            offs,
            size,
            shm_ref: COOKIE,
        },
        Param::Value {
            dir: Direction::In,
            a: offset,
            b: len,
            c: 0,
            meta: false,
        },
        Param::None,
        Param::None,
    ]
}

/// Reads `len` bytes of a registered buffer through its data frames.
fn read_frames(nw: &NormalWorld, frames: &[u64], len: u64) -> Vec<u8> {
    let mut out = vec![0u8; len as usize];
    for (chunk, frame) in out.chunks_mut(4096).zip(frames) {
        nw.ram.read(*frame, chunk).unwrap();
    }
    out
}

fn bnxt_with_buffer() -> (SecureWorld, NormalWorld, u32, Vec<u64>) {
    let (mut sw, mut nw) = setup();
    let (code, frames) = nw.register(&mut sw, COOKIE, 0, CHUNK).unwrap();
    assert_eq!(code, teec::SUCCESS);
    let session = open_ok(&mut sw, &mut nw, BNXT_TA);
    (sw, nw, session, frames)
}

#[test]
fn coredump_chunks_match_the_deterministic_image() {
    let (mut sw, mut nw, session, frames) = bnxt_with_buffer();
    let mut sums = Vec::new();
    for offset in [0, CHUNK] {
        let arg = nw
            .invoke(
                &mut sw,
                session,
                COPY_COREDUMP,
                &copy_params(0, CHUNK, offset, CHUNK),
            )
            .unwrap();
        assert_eq!(
            (arg.ret, arg.ret_origin),
            (teec::SUCCESS, origin::TRUSTED_APP)
        );
        let got = bnxt::checksum(&read_frames(&nw, &frames, CHUNK));
        assert_eq!(
            Some(got),
            coredump_checksum(offset, CHUNK),
            "chunk at {offset:#x}"
        );
        sums.push(got);
    }
    assert_ne!(sums[0], sums[1]);
    assert_eq!(2 * CHUNK, COREDUMP_LEN);
    // A slice into the middle of the buffer lands at the memref's offset.
    let arg = nw
        .invoke(
            &mut sw,
            session,
            COPY_COREDUMP,
            &copy_params(4096, 100, 77, 100),
        )
        .unwrap();
    assert_eq!(arg.ret, teec::SUCCESS);
    let mut got = [0u8; 100];
    nw.ram.read(frames[1], &mut got).unwrap();
    let mut want = [0u8; 100];
    bnxt::coredump_chunk(77, &mut want).unwrap();
    assert_eq!(got, want);
}

#[test]
fn coredump_requests_out_of_range_are_bad_parameters() {
    let (mut sw, mut nw, session, _) = bnxt_with_buffer();
    let bad = |sw: &mut SecureWorld, nw: &mut NormalWorld, params: &[Param]| {
        nw.invoke(sw, session, COPY_COREDUMP, params).unwrap().ret
    };
    // Beyond the 32 MiB crash region (BNXT_CRASH_LEN).
    assert_eq!(
        bad(
            &mut sw,
            &mut nw,
            &copy_params(0, CHUNK, (32 << 20) - 15, 16)
        ),
        teec::ERROR_BAD_PARAMETERS
    );
    assert_eq!(
        bad(&mut sw, &mut nw, &copy_params(0, CHUNK, u64::MAX, 2)),
        teec::ERROR_BAD_PARAMETERS
    );
    // More than the memref holds.
    assert_eq!(
        bad(&mut sw, &mut nw, &copy_params(0, 4096, 0, 4097)),
        teec::ERROR_BAD_PARAMETERS
    );
    // Wrong param types.
    let mut swapped = copy_params(0, CHUNK, 0, 16);
    swapped.swap(1, 2);
    assert_eq!(bad(&mut sw, &mut nw, &swapped), teec::ERROR_BAD_PARAMETERS);
    // Memref beyond the registration (TEE_ERROR_SECURITY, entry_std.c set_rmem_param), or an
    // unknown cookie: refused before the TA runs.
    let arg = nw
        .invoke(
            &mut sw,
            session,
            COPY_COREDUMP,
            &copy_params(1, CHUNK, 0, 16),
        )
        .unwrap();
    assert_eq!(
        (arg.ret, arg.ret_origin),
        (teec::ERROR_SECURITY, origin::TEE)
    );
    let mut params = copy_params(0, 16, 0, 16);
    params[0] = Param::Rmem {
        dir: Direction::InOut,
        offs: 0,
        size: 16,
        shm_ref: COOKIE + 1,
    };
    let arg = nw.invoke(&mut sw, session, COPY_COREDUMP, &params).unwrap();
    assert_eq!(
        (arg.ret, arg.ret_origin),
        (teec::ERROR_BAD_PARAMETERS, origin::TEE)
    );
    // Nothing stays referenced.
    assert_eq!(sw.registrations().next().unwrap().users, 0);
}

/// bnxt.c invoke_command: FASTBOOT does not look at its params; an unknown command is
/// NOT_SUPPORTED.
#[test]
fn fastboot_ignores_its_params() {
    let (mut sw, mut nw) = setup();
    let session = open_ok(&mut sw, &mut nw, BNXT_TA);
    let none4 = [Param::None; 4];
    let value = Param::Value {
        dir: Direction::In,
        a: 0,
        b: 0,
        c: 0,
        meta: false,
    };
    for params in [&none4[..], &none4[..2], &[value, Param::None][..]] {
        assert_eq!(
            nw.invoke(&mut sw, session, FASTBOOT, params).unwrap().ret,
            teec::SUCCESS
        );
    }
    assert_eq!(
        nw.invoke(&mut sw, session, 9, &none4).unwrap().ret,
        teec::ERROR_NOT_SUPPORTED
    );
}

fn get_devices(
    sw: &mut SecureWorld,
    nw: &mut NormalWorld,
    session: u32,
    buf: u64,
    size: u64,
) -> (u32, u64) {
    let out = Param::Tmem {
        dir: Direction::Out,
        buf_ptr: buf,
        size,
        shm_ref: 0,
        noncontig: false,
        meta: false,
    };
    let arg = nw
        .invoke(
            sw,
            session,
            GET_DEVICES,
            &[out, Param::None, Param::None, Param::None],
        )
        .unwrap();
    (arg.ret, arg.params[0].b)
}

#[test]
fn device_pta_lists_device_tas_with_short_buffer_first() {
    let (mut sw, mut nw) = setup();
    let session = open_ok(&mut sw, &mut nw, DEVICE_PTA);
    // Linux asks with a null memref first.
    assert_eq!(
        get_devices(&mut sw, &mut nw, session, 0, 0),
        (teec::ERROR_SHORT_BUFFER, 32)
    );
    let buf = nw.alloc_frame();
    assert_eq!(
        get_devices(&mut sw, &mut nw, session, buf, 8),
        (teec::ERROR_SHORT_BUFFER, 32)
    );
    assert_eq!(
        get_devices(&mut sw, &mut nw, session, buf, 64),
        (teec::SUCCESS, 32)
    );
    // Registration order: the BNXT PTA, then the fTPM.
    let mut got = [0u8; 32];
    nw.ram.read(buf, &mut got).unwrap();
    assert_eq!(&got[..16], BNXT_TA.as_bytes());
    assert_eq!(&got[16..], FTPM_TA.as_bytes());

    sw.add_ta(Box::new(SingleSessionTa::new(true)));
    assert_eq!(
        get_devices(&mut sw, &mut nw, session, buf, 64),
        (teec::SUCCESS, 48)
    );
    let mut got = [0u8; 48];
    nw.ram.read(buf, &mut got).unwrap();
    assert_eq!(&got[32..], SINGLE_TA.as_bytes());
}
