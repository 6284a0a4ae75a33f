//! Replays every committed input of the sw_entry fuzz target
//! (fuzz/corpus/<target> and fuzz/regressions/<target>) through the target's own check, so
//! the default test run keeps each crash fixed without a nightly toolchain.

use secure_world::fuzzing::check_sw_entry;
use tee_test_support::fuzz::replay;

#[test]
fn sw_entry_corpus_replays() {
    replay("sw_entry", check_sw_entry);
}
