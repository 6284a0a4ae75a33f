//! optee-abi's message decoders on hostile bytes (`optee_abi::fuzzing::check_msg_arg`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| optee_abi::fuzzing::check_msg_arg(data));
