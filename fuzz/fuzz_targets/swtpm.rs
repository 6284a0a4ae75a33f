//! tpmd's swtpm data and control decoders on hostile bytes (`tpmd::fuzzing::check_swtpm`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tpmd::fuzzing::check_swtpm(data));
