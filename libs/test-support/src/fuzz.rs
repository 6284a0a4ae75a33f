//! The default test run's replay of the committed fuzz inputs: every file of
//! `fuzz/corpus/<target>` and `fuzz/regressions/<target>` through the target's own check, so a
//! crash once found stays fixed without a nightly toolchain.

use std::path::{Path, PathBuf};

/// The repository's fuzz/ directory, found upwards from this crate.
fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("fuzz"))
        .find(|dir| dir.join("Cargo.toml").is_file())
        .unwrap_or_else(|| panic!("no fuzz/Cargo.toml above {}", env!("CARGO_MANIFEST_DIR")))
}

/// Runs `check` on every committed input of `target`; panics (naming the file) when a check
/// does, and when the target has no committed input at all.
pub fn replay(target: &str, check: fn(&[u8])) {
    let mut replayed = 0;
    for kind in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("listing {kind}/{target}: {e}"))
                .path();
            let input = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            eprintln!("{}", path.display());
            check(&input);
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no committed inputs for {target}");
}
