//! optee-abi's message decoders on hostile bytes: optee_msg_arg as OP-TEE's
//! core/include/optee_msg.h lays it out, each param decoded typed and masked
//! (core/tee/entry_std.c masks attr with OPTEE_MSG_ATTR_TYPE_MASK). Must never panic, and a
//! decoded message must encode back to the bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use optee_abi::msg::MsgArg;

fuzz_target!(|data: &[u8]| {
    let _ = MsgArg::peek_num_params(data);
    let Ok(arg) = MsgArg::decode(data) else {
        return;
    };
    for param in &arg.params {
        let _ = param.decode_typed();
        let _ = param.decode_masked();
    }
    let mut out = vec![0u8; arg.encoded_len()];
    if let Ok(n) = arg.encode(&mut out) {
        assert_eq!(MsgArg::decode(&out[..n]).ok().as_ref(), Some(&arg));
    }
});
