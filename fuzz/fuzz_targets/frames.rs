//! Every tee-proto frame decoder on hostile bytes (`tee_proto::fuzzing::check_frames`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tee_proto::fuzzing::check_frames(data));
