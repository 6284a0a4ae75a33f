//! Replays every committed input of the init_control fuzz target
//! (fuzz/corpus/<target> and fuzz/regressions/<target>) through the target's own check, so
//! the default test run keeps each crash fixed without a nightly toolchain.

use tee_test_support::fuzz::replay;
use teesys_root::fuzzing::check_init_control;

#[test]
fn init_control_corpus_replays() {
    replay("init_control", check_init_control);
}
