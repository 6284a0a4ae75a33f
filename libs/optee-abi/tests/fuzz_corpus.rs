//! Replays every committed input of the msg_arg, page_list fuzz targets
//! (fuzz/corpus/<target> and fuzz/regressions/<target>) through the target's own check, so
//! the default test run keeps each crash fixed without a nightly toolchain.

use optee_abi::fuzzing::{check_msg_arg, check_page_list};
use tee_test_support::fuzz::replay;

#[test]
fn msg_arg_corpus_replays() {
    replay("msg_arg", check_msg_arg);
}

#[test]
fn page_list_corpus_replays() {
    replay("page_list", check_page_list);
}
