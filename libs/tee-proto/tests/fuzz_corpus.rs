//! Replays every committed input of the frames fuzz target
//! (fuzz/corpus/<target> and fuzz/regressions/<target>) through the target's own check, so
//! the default test run keeps each crash fixed without a nightly toolchain.

use tee_proto::fuzzing::check_frames;
use tee_test_support::fuzz::replay;

#[test]
fn frames_corpus_replays() {
    replay("frames", check_frames);
}
