//! The simulator over many seeds: every run must keep every invariant. A failure prints its
//! seed; `TEESYS_SEED=<n> cargo test -p tee-sim --test sim_seeds replay` replays it.
#![allow(clippy::unwrap_used)]

use tee_sim::{Sim, SimConfig};

fn seeds() -> u64 {
    if std::env::var_os("TEESYS_SOAK").is_some() {
        100_000
    } else {
        std::env::var("TEESYS_SEEDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1_000)
    }
}

#[test]
fn every_seed_keeps_every_invariant() {
    let n = seeds();
    let mut totals = tee_sim::SimStats::default();
    for seed in 0..n {
        match Sim::run(SimConfig::new(seed)) {
            Ok(stats) => {
                totals.kexecs += stats.kexecs;
                totals.crashes += stats.crashes;
                totals.kills += stats.kills;
                totals.boots += stats.boots;
                totals.hostile_frames += stats.hostile_frames;
                totals.tpm_answers += stats.tpm_answers;
                totals.coredump_chunks += stats.coredump_chunks;
                totals.steps += stats.steps;
            }
            Err(failure) => panic!("{failure}\nreplay: TEESYS_SEED={seed} cargo test -p tee-sim --test sim_seeds replay"),
        }
    }
    eprintln!("{n} seeds: {totals:?}");
    // The runs did what they are for.
    assert!(totals.kexecs > n && totals.crashes > n / 4 && totals.kills > n / 4);
    assert!(totals.coredump_chunks > 0 && totals.hostile_frames > 0);
}

#[test]
fn replay() {
    if let Some(seed) = std::env::var("TEESYS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        let result = Sim::run(SimConfig::new(seed));
        eprintln!("{result:?}");
        assert!(result.is_ok());
    }
}

/// A deliberately broken fix (teed's shutdown no longer drains the RPC cache, f25889f93184) is
/// caught by the invariants, its seed printed, and the failure replays exactly from that seed.
#[test]
fn a_disabled_fix_is_caught_and_replays_from_its_seed() {
    let broken = |seed| {
        let mut cfg = SimConfig::new(seed);
        cfg.teed.seed_bugs.no_shutdown_cache_drain = true;
        cfg
    };
    let failure = (0..200)
        .find_map(|seed| Sim::run(broken(seed)).err())
        .expect("a disabled fix must be caught within 200 seeds");
    eprintln!("{failure}");
    assert!(failure
        .to_string()
        .starts_with(&format!("seed {}:", failure.seed)));
    assert!(
        failure.message.contains("cached buffers"),
        "{}",
        failure.message
    );
    assert_eq!(
        Sim::run(broken(failure.seed)).unwrap_err(),
        failure,
        "replays exactly"
    );
}
