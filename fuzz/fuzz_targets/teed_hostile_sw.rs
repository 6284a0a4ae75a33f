//! teed's sans-IO core driven by a hostile secure world
//! (`tee_sim::fuzzing::check_teed_hostile_sw`, the `tee_sim::hostile` scenario).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tee_sim::fuzzing::check_teed_hostile_sw(data));
