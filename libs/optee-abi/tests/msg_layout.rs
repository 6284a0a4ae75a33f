//! `optee_msg_arg` layouts checked byte by byte against `optee_msg.h` (REFERENCE.md §3).
#![allow(clippy::unwrap_used)]

use optee_abi::msg::{self, attr, cmd, rpc_cmd, Direction, MsgArg, Param, RawParam};
use optee_abi::AbiError;

fn word32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn word64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

#[test]
fn constants_match_optee_msg_h() {
    assert_eq!(msg::ARG_HEADER_SIZE, 32);
    assert_eq!(msg::PARAM_SIZE, 32);
    assert_eq!(msg::arg_size(0), 32);
    assert_eq!(msg::arg_size(6), 32 + 6 * 32);
    assert_eq!(
        [
            attr::NONE,
            attr::VALUE_INPUT,
            attr::VALUE_OUTPUT,
            attr::VALUE_INOUT
        ],
        [0, 1, 2, 3]
    );
    assert_eq!(
        [attr::RMEM_INPUT, attr::RMEM_OUTPUT, attr::RMEM_INOUT],
        [5, 6, 7]
    );
    assert_eq!(
        [attr::TMEM_INPUT, attr::TMEM_OUTPUT, attr::TMEM_INOUT],
        [9, 0xa, 0xb]
    );
    assert_eq!(attr::META, 0x100);
    assert_eq!(attr::NONCONTIG, 0x200);
    assert_eq!(attr::TMEM_OUTPUT | attr::NONCONTIG, 0x20a);
    assert_eq!(
        [
            cmd::OPEN_SESSION,
            cmd::INVOKE_COMMAND,
            cmd::CLOSE_SESSION,
            cmd::CANCEL
        ],
        [0, 1, 2, 3]
    );
    assert_eq!(
        [
            cmd::REGISTER_SHM,
            cmd::UNREGISTER_SHM,
            cmd::DO_BOTTOM_HALF,
            cmd::STOP_ASYNC_NOTIF
        ],
        [4, 5, 6, 7]
    );
    assert_eq!(
        [
            rpc_cmd::GET_TIME,
            rpc_cmd::NOTIFICATION,
            rpc_cmd::SUSPEND,
            rpc_cmd::SHM_ALLOC,
            rpc_cmd::SHM_FREE
        ],
        [3, 4, 5, 6, 7]
    );
    assert_eq!(
        [rpc_cmd::NOTIFICATION_WAIT, rpc_cmd::NOTIFICATION_SEND],
        [0, 1]
    );
}

#[test]
fn header_fields_sit_at_their_offsets() {
    let mut arg = MsgArg::new(cmd::INVOKE_COMMAND);
    arg.func = 0x1111_2222;
    arg.session = 0x3333_4444;
    arg.cancel_id = 0x5555_6666;
    arg.ret = 0xFFFF_0006;
    arg.ret_origin = 3;
    arg.push(Param::Value {
        dir: Direction::InOut,
        a: 1,
        b: 2,
        c: 3,
        meta: false,
    })
    .unwrap();
    arg.push(Param::Rmem {
        dir: Direction::Out,
        offs: 0x10,
        size: 0x20,
        shm_ref: 0xabc,
    })
    .unwrap();
    let mut buf = [0xEEu8; 256];
    let len = arg.encode(&mut buf).unwrap();
    assert_eq!(len, 96);
    assert_eq!(word32(&buf, 0), cmd::INVOKE_COMMAND);
    assert_eq!(word32(&buf, 4), 0x1111_2222);
    assert_eq!(word32(&buf, 8), 0x3333_4444);
    assert_eq!(word32(&buf, 12), 0x5555_6666);
    assert_eq!(word32(&buf, 16), 0, "pad is zeroed");
    assert_eq!(word32(&buf, 20), 0xFFFF_0006);
    assert_eq!(word32(&buf, 24), 3);
    assert_eq!(word32(&buf, 28), 2);
    assert_eq!(word64(&buf, 32), attr::VALUE_INOUT);
    assert_eq!(
        [word64(&buf, 40), word64(&buf, 48), word64(&buf, 56)],
        [1, 2, 3]
    );
    assert_eq!(word64(&buf, 64), attr::RMEM_OUTPUT);
    assert_eq!(
        [word64(&buf, 72), word64(&buf, 80), word64(&buf, 88)],
        [0x10, 0x20, 0xabc]
    );
    assert_eq!(buf[96], 0xEE, "nothing written past the message");
    assert_eq!(MsgArg::decode(&buf[..len]).unwrap(), arg);
}

#[test]
fn register_shm_param_is_0x20a() {
    let p = Param::Tmem {
        dir: Direction::Out,
        buf_ptr: 0x4000_1000 | 0x10,
        size: 8192,
        shm_ref: 7,
        noncontig: true,
        meta: false,
    };
    let raw = RawParam::from(p);
    assert_eq!(raw.attr, 0x20a);
    assert_eq!(raw.decode_typed().unwrap(), p);
}

#[test]
fn open_session_meta_values() {
    let p = Param::Value {
        dir: Direction::In,
        a: 9,
        b: 8,
        c: 4,
        meta: true,
    };
    let raw = RawParam::from(p);
    assert_eq!(raw.attr, attr::VALUE_INPUT | attr::META);
    assert_eq!(raw.decode_typed().unwrap(), p);
}

#[test]
fn every_param_kind_round_trips() {
    let dirs = [Direction::In, Direction::Out, Direction::InOut];
    let mut params = vec![Param::None];
    for dir in dirs {
        params.push(Param::Value {
            dir,
            a: 1,
            b: u64::MAX,
            c: 0,
            meta: false,
        });
        params.push(Param::Rmem {
            dir,
            offs: 4,
            size: 5,
            shm_ref: 6,
        });
        for noncontig in [false, true] {
            params.push(Param::Tmem {
                dir,
                buf_ptr: 1,
                size: 2,
                shm_ref: 3,
                noncontig,
                meta: false,
            });
        }
    }
    for p in params {
        assert_eq!(RawParam::from(p).decode_typed().unwrap(), p, "{p:?}");
    }
}

#[test]
fn bad_attrs_are_typed_errors() {
    for attr in [
        4u64,
        8,
        0xc,
        0xff,
        0x400,
        attr::NONE | attr::META,
        attr::RMEM_INPUT | attr::NONCONTIG,
    ] {
        let raw = RawParam {
            attr,
            ..RawParam::default()
        };
        assert_eq!(
            raw.decode_typed(),
            Err(AbiError::BadAttr(attr)),
            "attr {attr:#x}"
        );
    }
}

#[test]
fn truncation_and_param_limits() {
    assert_eq!(
        MsgArg::decode(&[0u8; 31]),
        Err(AbiError::Truncated {
            needed: 32,
            have: 31
        })
    );
    let mut buf = [0u8; 64];
    buf[28] = 1;
    assert_eq!(
        MsgArg::decode(&buf[..63]),
        Err(AbiError::Truncated {
            needed: 64,
            have: 63
        })
    );
    assert!(MsgArg::decode(&buf).is_ok());
    buf[28] = 7;
    assert_eq!(
        MsgArg::decode(&buf),
        Err(AbiError::TooManyParams { count: 7, max: 6 })
    );
    let mut full = MsgArg::new(0);
    for _ in 0..6 {
        full.push(Param::None).unwrap();
    }
    assert!(full.push(Param::None).is_err());
    let mut small = [0u8; 100];
    assert_eq!(
        full.encode(&mut small),
        Err(AbiError::BufferTooSmall {
            needed: 224,
            have: 100
        })
    );
}
