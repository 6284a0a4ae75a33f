//! Messages of up to `OPTEE_MSG_MAX_NUM_PARAMS` params read through the borrowed [`MsgView`]
//! (optee_msg.h, core/arch/arm/kernel/thread_optee_smc.c), and params read as the secure world
//! copies them in (core/tee/entry_std.c copy_in_params).
#![allow(clippy::unwrap_used)]

use optee_abi::msg::{
    self, arg_size, attr, Direction, MsgArg, MsgHeader, MsgView, Param, RawParam, LINUX_MAX_PARAMS,
    MSG_MAX_NUM_PARAMS,
};
use optee_abi::AbiError;
use proptest::prelude::*;

/// A message of `n` VALUE_INPUT params whose value a is the param's index.
fn message_bytes(n: usize) -> Vec<u8> {
    let header = MsgHeader {
        cmd: msg::cmd::INVOKE_COMMAND,
        func: 7,
        session: 0x1234,
        cancel_id: 9,
        ret: 0,
        ret_origin: 0,
        num_params: n as u32,
    };
    let mut bytes = header.to_bytes().to_vec();
    for i in 0..n {
        let param = RawParam {
            attr: attr::VALUE_INPUT,
            a: i as u64,
            b: !(i as u64),
            c: 0,
        };
        bytes.extend_from_slice(&param.to_bytes());
    }
    bytes
}

/// optee_msg.h: OPTEE_MSG_MAX_NUM_PARAMS = (4096 - sizeof(struct optee_msg_arg)) /
/// sizeof(struct optee_msg_param), so the largest message fills one page exactly.
#[test]
fn optee_msg_h_max_num_params_is_127_and_fills_one_page() {
    assert_eq!(MSG_MAX_NUM_PARAMS, 127);
    assert_eq!(arg_size(MSG_MAX_NUM_PARAMS), 4096);
    assert_eq!(LINUX_MAX_PARAMS, 6);
}

/// thread_optee_smc.c map_cmd_buffer: up to OPTEE_MSG_MAX_NUM_PARAMS params are read; one
/// more is refused. Linux's cap stays what `MsgArg` decodes.
#[test]
fn thread_optee_smc_view_reads_127_params_lazily_and_refuses_128() {
    let bytes = message_bytes(MSG_MAX_NUM_PARAMS);
    let view = MsgView::new(&bytes, MSG_MAX_NUM_PARAMS).unwrap();
    assert_eq!(view.num_params(), 127);
    assert_eq!(view.header().session, 0x1234);
    assert_eq!(view.header().cancel_id, 9);
    assert_eq!(view.param(126).unwrap().a, 126);
    assert_eq!(view.param(126).unwrap().b, !126);
    assert_eq!(view.param(127), None);
    assert_eq!(view.param(usize::MAX), None);
    let indices: Vec<u64> = view.params().map(|p| p.a).collect();
    assert_eq!(indices, (0..127).collect::<Vec<u64>>());
    assert_eq!(
        MsgArg::decode(&bytes),
        Err(AbiError::TooManyParams {
            count: 127,
            max: LINUX_MAX_PARAMS
        })
    );

    let mut too_many = message_bytes(MSG_MAX_NUM_PARAMS);
    too_many[28..32].copy_from_slice(&128u32.to_le_bytes());
    too_many.extend_from_slice(&[0u8; 32]);
    assert_eq!(
        MsgView::new(&too_many, MSG_MAX_NUM_PARAMS),
        Err(AbiError::TooManyParams {
            count: 128,
            max: 127
        })
    );
    assert_eq!(
        MsgView::new(&bytes[..4095], MSG_MAX_NUM_PARAMS),
        Err(AbiError::Truncated {
            needed: 4096,
            have: 4095
        })
    );
}

#[test]
fn a_view_and_msg_arg_agree_on_linux_sized_messages() {
    let mut arg = MsgArg::new(msg::cmd::OPEN_SESSION);
    arg.ret = 0xFFFF_0006;
    arg.ret_origin = 3;
    for i in 0..LINUX_MAX_PARAMS as u64 {
        arg.push(Param::Value {
            dir: Direction::InOut,
            a: i,
            b: 2 * i,
            c: 3 * i,
            meta: false,
        })
        .unwrap();
    }
    let mut bytes = vec![0u8; arg.encoded_len()];
    arg.encode(&mut bytes).unwrap();
    let view = MsgView::new(&bytes, MSG_MAX_NUM_PARAMS).unwrap();
    assert_eq!(view.header(), arg.header());
    assert!(view.params().eq(arg.params.iter().copied()));
}

/// entry_std.c copy_in_params: the type is `attr & OPTEE_MSG_ATTR_TYPE_MASK`, META is refused,
/// NONCONTIG decides how a TMEM is read, and the cache attributes are ignored.
#[test]
fn entry_std_copy_in_params_masks_the_type_and_refuses_meta() {
    let cache_bits = 0x7 << 16;
    let raw = |attr: u64| RawParam {
        attr,
        a: 0x4000_1000,
        b: 64,
        c: 0x77,
    };
    assert_eq!(
        raw(attr::RMEM_INOUT | cache_bits).decode_masked(),
        Ok(Param::Rmem {
            dir: Direction::InOut,
            offs: 0x4000_1000,
            size: 64,
            shm_ref: 0x77
        })
    );
    // NONCONTIG means nothing to an RMEM; upstream never looks at it there.
    assert_eq!(
        raw(attr::RMEM_INPUT | attr::NONCONTIG).decode_masked(),
        raw(attr::RMEM_INPUT).decode_masked()
    );
    assert_eq!(
        raw(attr::TMEM_OUTPUT | attr::NONCONTIG | cache_bits).decode_masked(),
        Ok(Param::Tmem {
            dir: Direction::Out,
            buf_ptr: 0x4000_1000,
            size: 64,
            shm_ref: 0x77,
            noncontig: true,
            meta: false
        })
    );
    assert_eq!(
        raw(attr::VALUE_OUTPUT | (1 << 40)).decode_masked(),
        raw(attr::VALUE_OUTPUT).decode_masked()
    );
    assert_eq!(
        raw(attr::NONE | cache_bits).decode_masked(),
        Ok(Param::None)
    );
    // The strict reading refuses what the secure world ignores.
    assert!(raw(attr::RMEM_INOUT | cache_bits).decode_typed().is_err());
    for refused in [
        attr::VALUE_INPUT | attr::META,
        attr::TMEM_INPUT | attr::META,
        attr::NONE | attr::META,
        4,
        8,
        0xc | cache_bits,
        0xff,
    ] {
        assert_eq!(
            raw(refused).decode_masked(),
            Err(AbiError::BadAttr(refused)),
            "{refused:#x}"
        );
    }
}

proptest! {
    /// Whatever the strict reading accepts without META, the masked reading reads the same.
    #[test]
    fn masked_decode_agrees_with_strict_decode(attr in any::<u64>(), a in any::<u64>(), b in any::<u64>(), c in any::<u64>()) {
        let raw = RawParam { attr, a, b, c };
        if let Ok(strict) = raw.decode_typed() {
            if attr & attr::META == 0 {
                prop_assert_eq!(raw.decode_masked(), Ok(strict));
            }
        }
    }

    /// Bits above NONCONTIG never change the masked reading.
    #[test]
    fn high_attr_bits_are_ignored(attr in 0u64..0x400, high in any::<u64>()) {
        let raw = RawParam { attr, a: 1, b: 2, c: 3 };
        let noisy = RawParam { attr: attr | (high << 10), ..raw };
        prop_assert_eq!(raw.decode_masked().ok(), noisy.decode_masked().ok());
    }

    /// A view never panics and agrees with `MsgArg::decode` within Linux's cap.
    #[test]
    fn view_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(view) = MsgView::new(&bytes, MSG_MAX_NUM_PARAMS) {
            prop_assert_eq!(view.params().count(), view.num_params());
            if let Ok(arg) = MsgArg::decode(&bytes) {
                prop_assert_eq!(view.header(), arg.header());
            }
        }
    }
}
