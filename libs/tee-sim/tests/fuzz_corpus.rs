//! Replays every committed input of the teed_hostile_sw fuzz target
//! (fuzz/corpus/<target> and fuzz/regressions/<target>) through the target's own check, so
//! the default test run keeps each crash fixed without a nightly toolchain.

use tee_sim::fuzzing::check_teed_hostile_sw;
use tee_test_support::fuzz::replay;

#[test]
fn teed_hostile_sw_corpus_replays() {
    replay("teed_hostile_sw", check_teed_hostile_sw);
}
