//! Measures the in-process cost of a GetRandom and of a state swap between two TPMs.
//! Run with `cargo run --release -p libtpms --example bench`.

use std::time::{Duration, Instant};

use libtpms::command::{get_random, response_code, startup, SU_CLEAR};
use libtpms::{Tpm, TpmError};

const ROUNDS: u32 = 5000;

fn started() -> Result<Tpm, TpmError> {
    let mut tpm = Tpm::manufacture()?;
    tpm.process(&startup(SU_CLEAR))?;
    Ok(tpm)
}

fn per_op(total: Duration, ops: u32) -> Duration {
    total / ops.max(1)
}

fn main() -> Result<(), TpmError> {
    let command = get_random(16);
    let mut first = started()?;
    let mut second = started()?;

    // Warm up, then the same TPM every time: no swap.
    first.process(&command)?;
    let begin = Instant::now();
    for _ in 0..ROUNDS {
        first.process(&command)?;
    }
    let plain = per_op(begin.elapsed(), ROUNDS);

    // Alternating TPMs: every command swaps.
    let swaps_before = libtpms::swap_count();
    let begin = Instant::now();
    for round in 0..ROUNDS {
        let tpm = if round % 2 == 0 {
            &mut second
        } else {
            &mut first
        };
        let response = tpm.process(&command)?;
        if response_code(&response) != Some(0) {
            eprintln!("unexpected response code {:?}", response_code(&response));
        }
    }
    let alternating = per_op(begin.elapsed(), ROUNDS);
    let swaps = libtpms::swap_count() - swaps_before;

    println!("GetRandom(16), same TPM:        {plain:?} per command");
    println!("GetRandom(16), alternating TPM: {alternating:?} per command ({swaps} swaps)");
    println!(
        "swap cost (difference):         {:?}",
        alternating.saturating_sub(plain)
    );
    Ok(())
}
