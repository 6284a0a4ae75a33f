//! Decoding is total: any byte string yields a value or a typed error, never a panic.
#![allow(clippy::unwrap_used)]

use optee_abi::msg::{MsgArg, RawParam};
use optee_abi::smc::RpcRequest;
use optee_abi::uuid::Uuid;
use proptest::prelude::*;

proptest! {
    #[test]
    fn msg_arg_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(arg) = MsgArg::decode(&bytes) {
            // Whatever decodes re-encodes to the same prefix, pad aside.
            let mut out = vec![0u8; arg.encoded_len()];
            arg.encode(&mut out).unwrap();
            prop_assert_eq!(&out[..16], &bytes[..16]);
            prop_assert_eq!(&out[20..arg.encoded_len()], &bytes[20..arg.encoded_len()]);
            for p in &arg.params {
                let _ = p.decode_typed();
            }
        }
    }

    #[test]
    fn truncated_valid_messages_fail_cleanly(n in 0usize..6, cut in 0usize..224) {
        let mut arg = MsgArg::new(1);
        for i in 0..n {
            arg.push(RawParam { attr: 1, a: i as u64, b: 0, c: 0 }).unwrap();
        }
        let mut buf = vec![0u8; arg.encoded_len()];
        arg.encode(&mut buf).unwrap();
        let cut = cut.min(buf.len());
        let decoded = MsgArg::decode(&buf[..cut]);
        if cut == buf.len() {
            prop_assert_eq!(decoded.unwrap(), arg);
        } else {
            prop_assert!(decoded.is_err());
        }
    }

    #[test]
    fn raw_params_decode_or_error(attr in any::<u64>(), a in any::<u64>(), b in any::<u64>(), c in any::<u64>()) {
        let raw = RawParam { attr, a, b, c };
        if let Ok(p) = raw.decode_typed() {
            prop_assert_eq!(RawParam::from(p), raw);
        }
    }

    #[test]
    fn rpc_decode_never_panics(regs in any::<[u64; 8]>()) {
        let _ = RpcRequest::decode(&regs);
    }

    #[test]
    fn uuid_parse_never_panics(text in ".{0,40}") {
        if let Ok(u) = Uuid::parse(&text) {
            prop_assert_eq!(u.to_string().to_lowercase(), text.to_lowercase());
        }
    }
}
