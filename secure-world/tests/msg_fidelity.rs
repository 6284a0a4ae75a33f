//! The message ABI as OP-TEE 3.14 reads it: up to OPTEE_MSG_MAX_NUM_PARAMS params
//! (thread_optee_smc.c), attrs through OPTEE_MSG_ATTR_TYPE_MASK and RMEMs checked against their
//! memory object (tee/entry_std.c), and the capabilities entry_fast.c reports.
#![allow(clippy::unwrap_used)]

mod common;

use optee_abi::mem::PhysMem;
use optee_abi::msg::{
    attr, cmd, Direction, MsgHeader, MsgView, Param, RawParam, MSG_MAX_NUM_PARAMS,
};
use optee_abi::smc::{func, nsec_cap, ret, sec_cap, split_u64, Regs};
use optee_abi::teec::{self, origin};
use optee_abi::uuid::BNXT_TA;
use secure_world::ta::bnxt::COPY_COREDUMP;
use secure_world::{Config, SecureWorld};
use tee_test_support::normal_world::{fast_call, NormalWorld};

use common::{open_ok, setup, setup_with};

const COOKIE: u64 = 0xB0B;
/// Bits 16..18: OPTEE_MSG_ATTR_CACHE_MASK << OPTEE_MSG_ATTR_CACHE_SHIFT (optee_msg.h).
const CACHE_BITS: u64 = 0x7 << 16;

/// Writes a message of `params` into a fresh page, runs CALL_WITH_ARG to its end and returns
/// the SMC's code with the message as the secure world left it (read through a view: it may
/// hold more params than `MsgArg` does).
fn call_raw(
    sw: &mut SecureWorld,
    nw: &mut NormalWorld,
    header: MsgHeader,
    params: &[RawParam],
) -> (u32, MsgHeader, Vec<RawParam>) {
    let pa = nw.alloc_frame();
    let header = MsgHeader {
        num_params: params.len() as u32,
        ..header
    };
    let mut bytes = header.to_bytes().to_vec();
    for p in params {
        bytes.extend_from_slice(&p.to_bytes());
    }
    nw.ram.write(pa, &bytes).unwrap();
    let (hi, lo) = split_u64(pa);
    let mut regs: Regs = sw.smc(
        &mut nw.ram,
        [u64::from(func::CALL_WITH_ARG), hi, lo, 0, 0, 0, 0, 0],
    );
    while let Some(back) = nw.serve_rpc(&regs) {
        regs = sw.smc(&mut nw.ram, back);
    }
    let mut back = vec![0u8; bytes.len()];
    nw.ram.read(pa, &mut back).unwrap();
    let view = MsgView::new(&back, MSG_MAX_NUM_PARAMS).unwrap();
    (regs[0] as u32, view.header(), view.params().collect())
}

fn invoke_header(session: u32, func_id: u32) -> MsgHeader {
    MsgHeader {
        cmd: cmd::INVOKE_COMMAND,
        session,
        func: func_id,
        ..MsgHeader::default()
    }
}

fn rmem(attr_bits: u64, offs: u64, size: u64, shm_ref: u64) -> RawParam {
    RawParam {
        attr: attr_bits,
        a: offs,
        b: size,
        c: shm_ref,
    }
}

fn value_in(a: u64, b: u64) -> RawParam {
    RawParam {
        attr: attr::VALUE_INPUT,
        a,
        b,
        c: 0,
    }
}

/// thread_optee_smc.c map_cmd_buffer: a message of OPTEE_MSG_MAX_NUM_PARAMS (127) params is
/// mapped and handed to the entry, which refuses it as entry_std.c does (more than
/// TEE_NUM_PARAMS for the TA: BAD_PARAMETERS from the TEE); the SMC itself succeeds, and
/// every param comes back as it was sent.
#[test]
fn thread_optee_smc_a_127_param_message_reaches_the_entry() {
    let (mut sw, mut nw) = setup();
    let session = open_ok(&mut sw, &mut nw, BNXT_TA);
    let params: Vec<RawParam> = (0..MSG_MAX_NUM_PARAMS as u64)
        .map(|i| value_in(i, i * 3))
        .collect();
    let heap_before = sw.heap().used;
    let (code, header, back) = call_raw(
        &mut sw,
        &mut nw,
        invoke_header(session, COPY_COREDUMP),
        &params,
    );
    assert_eq!(code, ret::OK);
    assert_eq!(
        (header.ret, header.ret_origin),
        (teec::ERROR_BAD_PARAMETERS, origin::TEE)
    );
    assert_eq!(header.num_params, 127);
    assert_eq!(back, params);
    assert_eq!(sw.heap().used, heap_before, "the mapping is released");
    assert_eq!(sw.threads().free(), 2);

    // OPEN_SESSION and CLOSE_SESSION with 127 params: refused in the entry, not at the SMC.
    let open = MsgHeader {
        cmd: cmd::OPEN_SESSION,
        ..MsgHeader::default()
    };
    let (code, header, _) = call_raw(&mut sw, &mut nw, open, &params);
    assert_eq!(code, ret::OK);
    assert_eq!(header.ret, teec::ERROR_BAD_PARAMETERS);
    let close = MsgHeader {
        cmd: cmd::CLOSE_SESSION,
        session,
        ..MsgHeader::default()
    };
    let (code, header, _) = call_raw(&mut sw, &mut nw, close, &params);
    assert_eq!(code, ret::OK);
    assert_eq!(header.ret, teec::ERROR_BAD_PARAMETERS);
    assert_eq!(sw.sessions().count(), 1, "the session is still open");
}

/// thread_optee_smc.c: one param more than OPTEE_MSG_MAX_NUM_PARAMS is EBADADDR, with no
/// thread or heap taken; an unknown command with many params is EBADCMD (entry_std.c).
#[test]
fn thread_optee_smc_128_params_are_ebadaddr_and_unknown_commands_ebadcmd() {
    let (mut sw, mut nw) = setup();
    let pa = nw.alloc_frame();
    let header = MsgHeader {
        cmd: cmd::INVOKE_COMMAND,
        num_params: 128,
        ..MsgHeader::default()
    };
    nw.ram.write(pa, &header.to_bytes()).unwrap();
    let (hi, lo) = split_u64(pa);
    let regs = sw.smc(
        &mut nw.ram,
        [u64::from(func::CALL_WITH_ARG), hi, lo, 0, 0, 0, 0, 0],
    );
    assert_eq!(regs[0], u64::from(ret::EBADADDR));
    assert_eq!(sw.heap().used, sw.heap().baseline);
    assert_eq!(sw.threads().free(), 2);

    let unknown = MsgHeader {
        cmd: 0x77,
        ..MsgHeader::default()
    };
    let params = vec![value_in(1, 2); 20];
    let (code, _, _) = call_raw(&mut sw, &mut nw, unknown, &params);
    assert_eq!(code, ret::EBADCMD);
    assert_eq!(sw.heap().used, sw.heap().baseline);
}

/// entry_std.c copy_in_params: the type is `attr & OPTEE_MSG_ATTR_TYPE_MASK`; cache bits do
/// not change it, META is refused with BAD_PARAMETERS from the TEE.
#[test]
fn entry_std_copy_in_params_ignores_cache_bits_and_refuses_meta() {
    let (mut sw, mut nw) = setup();
    let (code, frames) = nw.register(&mut sw, COOKIE, 0, 8192).unwrap();
    assert_eq!(code, teec::SUCCESS);
    let session = open_ok(&mut sw, &mut nw, BNXT_TA);
    let none = RawParam::default();
    let with_cache_bits = [
        rmem(attr::RMEM_INOUT | CACHE_BITS, 0, 4096, COOKIE),
        RawParam {
            attr: attr::VALUE_INPUT | CACHE_BITS,
            ..value_in(0, 4096)
        },
        RawParam {
            attr: attr::NONE | CACHE_BITS,
            ..none
        },
        none,
    ];
    let (code, header, back) = call_raw(
        &mut sw,
        &mut nw,
        invoke_header(session, COPY_COREDUMP),
        &with_cache_bits,
    );
    assert_eq!(code, ret::OK);
    assert_eq!(header.ret, teec::SUCCESS);
    assert_eq!(back[0].b, 4096, "the output size is written back");
    assert_eq!(
        back[0].attr,
        attr::RMEM_INOUT | CACHE_BITS,
        "attr untouched"
    );
    assert_eq!(
        sw.registrations().next().unwrap().users,
        0,
        "the reference is dropped"
    );
    let mut dump = [0u8; 16];
    nw.ram.read(frames[0], &mut dump).unwrap();
    let mut expected = [0u8; 16];
    bnxt_image::coredump_chunk(0, &mut expected).unwrap();
    assert_eq!(dump, expected);

    for meta in [
        attr::VALUE_INPUT | attr::META,
        attr::RMEM_INOUT | attr::META,
    ] {
        let mut params = with_cache_bits;
        params[1].attr = meta;
        let (code, header, _) = call_raw(
            &mut sw,
            &mut nw,
            invoke_header(session, COPY_COREDUMP),
            &params,
        );
        assert_eq!(code, ret::OK);
        assert_eq!(
            (header.ret, header.ret_origin),
            (teec::ERROR_BAD_PARAMETERS, origin::TEE),
            "{meta:#x}"
        );
    }
    assert_eq!(sw.registrations().next().unwrap().users, 0);
}

/// entry_std.c set_rmem_param with mobj_dyn_shm.c's mobj size: an RMEM may address every page
/// of its registration from the page offset on (pages x 4096 - offset), whatever size was
/// registered; beyond that, or with an overflowing offs + size, it is TEE_ERROR_SECURITY from
/// the TEE, checked before the session is looked up.
#[test]
fn entry_std_set_rmem_param_beyond_the_mobj_is_security() {
    let (mut sw, mut nw) = setup();
    // 3000 bytes at offset 100 of one page: the mobj is 4096 - 100 = 3996 bytes.
    let (code, _) = nw.register(&mut sw, COOKIE, 100, 3000).unwrap();
    assert_eq!(code, teec::SUCCESS);
    assert_eq!(sw.registrations().next().unwrap().size, 3000);
    let session = open_ok(&mut sw, &mut nw, BNXT_TA);
    let copy = |sw: &mut SecureWorld, nw: &mut NormalWorld, session, offs, size| {
        let params = [
            rmem(attr::RMEM_INOUT, offs, size, COOKIE),
            value_in(0, 16),
            RawParam::default(),
            RawParam::default(),
        ];
        let (code, header, _) = call_raw(sw, nw, invoke_header(session, COPY_COREDUMP), &params);
        assert_eq!(code, ret::OK);
        (header.ret, header.ret_origin)
    };
    let security = (teec::ERROR_SECURITY, origin::TEE);
    // Past the registered 3000 bytes but inside the mobj: accepted.
    assert_eq!(
        copy(&mut sw, &mut nw, session, 3980, 16),
        (teec::SUCCESS, origin::TRUSTED_APP)
    );
    assert_eq!(copy(&mut sw, &mut nw, session, 0, 3996).0, teec::SUCCESS);
    assert_eq!(copy(&mut sw, &mut nw, session, 0, 3997), security);
    assert_eq!(copy(&mut sw, &mut nw, session, 3981, 16), security);
    assert_eq!(copy(&mut sw, &mut nw, session, u64::MAX, 2), security);
    // Params are copied in before the session is looked up.
    assert_eq!(copy(&mut sw, &mut nw, session ^ 0x40, 0, 3997), security);
    // An unknown cookie stays BAD_PARAMETERS.
    let params = [rmem(attr::RMEM_INOUT, 0, 16, COOKIE + 1), value_in(0, 16)];
    let (_, header, _) = call_raw(
        &mut sw,
        &mut nw,
        invoke_header(session, COPY_COREDUMP),
        &params,
    );
    assert_eq!(header.ret, teec::ERROR_BAD_PARAMETERS);
    // No refusal keeps the registration referenced: it unregisters at once.
    assert_eq!(sw.registrations().next().unwrap().users, 0);
    assert_eq!(nw.unregister(&mut sw, COOKIE).unwrap(), teec::SUCCESS);
}

/// entry_std.c set_tmem_param: a null address is a null memref even with NONCONTIG set.
#[test]
fn entry_std_set_tmem_param_null_with_noncontig_is_a_null_memref() {
    let (mut sw, mut nw) = setup();
    let session = open_ok(&mut sw, &mut nw, BNXT_TA);
    let null = Param::Tmem {
        dir: Direction::InOut,
        buf_ptr: 0,
        size: 0,
        shm_ref: 0,
        noncontig: true,
        meta: false,
    };
    let params = [
        RawParam::from(null),
        value_in(0, 16),
        RawParam::default(),
        RawParam::default(),
    ];
    let (code, header, _) = call_raw(
        &mut sw,
        &mut nw,
        invoke_header(session, COPY_COREDUMP),
        &params,
    );
    assert_eq!(code, ret::OK);
    // The PTA sees a null buffer, too small for 16 bytes: its own refusal.
    assert_eq!(
        (header.ret, header.ret_origin),
        (teec::ERROR_BAD_PARAMETERS, origin::TRUSTED_APP)
    );
}

/// entry_fast.c as 3.14 builds it without CFG_CORE_RESERVED_SHM: no HAVE_RESERVED_SHM, and
/// GET_SHM_CONFIG is an unknown function. UNREGISTERED_SHM is never reported.
#[test]
fn entry_fast_without_reserved_shm_has_no_get_shm_config() {
    let config = Config {
        reserved_shm: None,
        ..Config::default()
    };
    let (mut sw, mut nw) = setup_with(config);
    let caps = fast_call(
        &mut sw,
        &mut nw.ram,
        func::EXCHANGE_CAPABILITIES,
        nsec_cap::UNIPROCESSOR,
    );
    assert_eq!(caps[0], u64::from(ret::OK));
    assert_eq!(caps[1], sec_cap::DYNAMIC_SHM | sec_cap::MEMREF_NULL);
    let shm = fast_call(&mut sw, &mut nw.ram, func::GET_SHM_CONFIG, 0);
    assert_eq!(shm, [u64::from(ret::UNKNOWN_FUNCTION), 0, 0, 0, 0, 0, 0, 0]);

    let (mut sw, mut nw) = setup();
    let caps = fast_call(&mut sw, &mut nw.ram, func::EXCHANGE_CAPABILITIES, 0);
    assert_ne!(caps[1] & sec_cap::HAVE_RESERVED_SHM, 0);
    assert_eq!(caps[1] & sec_cap::UNREGISTERED_SHM, 0);
    let shm = fast_call(&mut sw, &mut nw.ram, func::GET_SHM_CONFIG, 0);
    assert_eq!(shm[0], u64::from(ret::OK));
    let reserved = Config::default().reserved_shm.unwrap();
    assert_eq!((shm[1], shm[2]), (reserved.base, reserved.size));
}
