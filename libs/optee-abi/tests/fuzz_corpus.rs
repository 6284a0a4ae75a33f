//! Replays every committed input of the msg_arg, page_list fuzz target(s)
//! (fuzz/corpus/<target> and fuzz/regressions/<target>) through the targets' own checks, so
//! the default test run keeps each crash fixed without a nightly toolchain.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use optee_abi::fuzzing::{check_msg_arg, check_page_list};

/// The repository's fuzz/ directory, found upwards from this crate.
fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("fuzz"))
        .find(|dir| dir.join("Cargo.toml").is_file())
        .unwrap()
}

fn replay(target: &str, check: fn(&[u8])) {
    let mut replayed = 0;
    for kind in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            eprintln!("{}", path.display());
            check(&std::fs::read(&path).unwrap());
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no committed inputs for {target}");
}

#[test]
fn msg_arg_corpus_replays() {
    replay("msg_arg", check_msg_arg);
}

#[test]
fn page_list_corpus_replays() {
    replay("page_list", check_page_list);
}
