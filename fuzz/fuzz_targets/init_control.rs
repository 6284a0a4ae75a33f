//! init's control-socket frame reader and request screening on a hostile client's bytes
//! (`teesys_root::fuzzing::check_init_control`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| teesys_root::fuzzing::check_init_control(data));
