//! Replays every committed input of the swtpm fuzz target
//! (fuzz/corpus/<target> and fuzz/regressions/<target>) through the target's own check, so
//! the default test run keeps each crash fixed without a nightly toolchain.

use tee_test_support::fuzz::replay;
use tpmd::fuzzing::check_swtpm;

#[test]
fn swtpm_corpus_replays() {
    replay("swtpm", check_swtpm);
}
