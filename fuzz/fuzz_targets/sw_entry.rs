//! The secure-world model's SMC entry driven by a hostile normal world
//! (`secure_world::fuzzing::check_sw_entry`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| secure_world::fuzzing::check_sw_entry(data));
