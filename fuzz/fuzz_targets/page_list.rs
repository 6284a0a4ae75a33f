//! optee-abi's page-list encoders and walkers on hostile bytes
//! (`optee_abi::fuzzing::check_page_list`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| optee_abi::fuzzing::check_page_list(data));
