//! The check behind the `teed_hostile_sw` fuzz target (`fuzz/`), kept here so that the default
//! test run replays every committed corpus and regression input through the same code
//! (`tests/fuzz_corpus.rs`). It panics only when a property fails.

use crate::hostile::{run, Case};

/// Steps one phase may take before it counts as a hang: the property test's bound, so that a
/// hang here is one there too. Inputs hold at most [`crate::hostile::MAX_ANSWERS`] answers,
/// which keeps a typical case to a few hundred steps.
const STEP_BOUND: usize = crate::hostile::STEP_BOUND;

/// teed's sans-IO core against a secure world whose every answer the input scripts
/// ([`Case::from_bytes`]): the [`crate::hostile`] scenario must hold.
pub fn check_teed_hostile_sw(data: &[u8]) {
    let case = Case::from_bytes(data);
    if let Err(violation) = run(&case, STEP_BOUND) {
        panic!("hostile secure world: {violation} ({case:?})");
    }
}
