//! The simulator's coverage: the default 1,000 seeds, run covered, land every fault kind while
//! every phase it can cut into is in flight (under each OP-TEE profile), with every invariant
//! kept; the classifier names constructed states as expected; coverage is deterministic per
//! seed, and a covered run without aim is exactly `Sim::run`. `cargo xtask sim-coverage` writes
//! the same figures into SIM_COVERAGE.md.
#![allow(clippy::unwrap_used)]

use secure_world::Profile;
use tee_sim::coverage::{cover_seeds, possible_pairs, Phases, DEFAULT_SEEDS};
use tee_sim::sim::classify::Observed;
use tee_sim::{Aiming, Fault, InFlight, Sim, SimConfig};

fn every_pair_reached_under(profile: Profile) {
    let run = cover_seeds(profile, 0..DEFAULT_SEEDS, true);
    let c = &run.coverage;
    let rarest: Vec<String> = c
        .rarest(profile, 5)
        .into_iter()
        .map(|((f, p), n)| format!("{} during {}: {n}", f.name(), p.name()))
        .collect();
    eprintln!(
        "OP-TEE {profile}: {}/{} pairs over {DEFAULT_SEEDS} seeds, {} faults; rarest {rarest:?}",
        c.reached(profile),
        possible_pairs(profile).len(),
        c.faults
    );
    if let Some(failure) = run.failures.first() {
        panic!(
            "{failure}\nreplay: TEESYS_OPTEE={profile} TEESYS_SEED={} cargo test -p tee-sim \
             --test coverage replay",
            failure.seed
        );
    }
    let missing: Vec<String> = c
        .missing(profile)
        .into_iter()
        .map(|(f, p)| format!("{} during {}", f.name(), p.name()))
        .collect();
    assert!(missing.is_empty(), "not reached: {missing:?}");
    // Nothing landed where the list says nothing can.
    assert!(
        c.impossible(profile).is_empty(),
        "{:?}",
        c.impossible(profile)
    );
}

#[test]
fn the_default_seeds_reach_every_pair_under_optee_3_14() {
    every_pair_reached_under(Profile::Optee3_14);
}

#[test]
fn the_default_seeds_reach_every_pair_under_optee_4x() {
    every_pair_reached_under(Profile::Optee4x);
}

/// `TEESYS_SEED=<n> [TEESYS_OPTEE=4.x]`: replays one aimed covered run, with its trail.
#[test]
fn replay() {
    let Some(seed) = std::env::var("TEESYS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    else {
        return;
    };
    let profile = std::env::var("TEESYS_OPTEE")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or_default();
    let cfg = SimConfig::for_profile(seed, profile);
    let (result, coverage) = Sim::run_covered(cfg, Some(Aiming::default()));
    eprintln!(
        "{result:?}\n{} faults landed, {} aimed",
        coverage.faults, coverage.aimed
    );
    assert!(result.is_ok());
}

#[test]
fn coverage_is_deterministic_per_seed() {
    for profile in Profile::ALL {
        for seed in [3, 46, 535] {
            let cfg = SimConfig::for_profile(seed, profile);
            let aim = Some(Aiming::default());
            let (first, a) = Sim::run_covered(cfg.clone(), aim);
            let (second, b) = Sim::run_covered(cfg, aim);
            assert_eq!(first, second, "seed {seed}");
            assert_eq!(a, b, "seed {seed}");
            assert!(a.faults > 0);
        }
    }
}

/// Without aim a covered run only watches: it is the run `Sim::run` makes, counted.
#[test]
fn a_covered_run_without_aim_is_the_plain_run() {
    for profile in Profile::ALL {
        let mut faults = 0;
        for seed in 0..20 {
            let cfg = SimConfig::for_profile(seed, profile);
            let (covered, coverage) = Sim::run_covered(cfg.clone(), None);
            assert_eq!(covered, Sim::run(cfg), "seed {seed}");
            assert_eq!(coverage.aimed, 0);
            faults += coverage.faults;
        }
        // The script's own faults are counted.
        assert!(faults > 20, "{faults}");
    }
}

fn phases(sim: &Sim) -> Phases {
    Observed::of(sim).phases()
}

#[test]
fn the_classifier_names_the_states_a_script_leaves() {
    let mut sim = Sim::scripted(SimConfig::new(11));
    sim.power_on().unwrap();
    assert_eq!(phases(&sim).iter().collect::<Vec<_>>(), [InFlight::Idle]);
    // A kexec asked for and one step run: init's shutdown is draining.
    sim.request_kexec_and_step(1).unwrap();
    assert!(phases(&sim).contains(InFlight::ShutdownDraining));
    assert!(
        !Observed::of(&sim).lands(Fault::Kexec, &sim),
        "init refuses it now"
    );
    assert!(Observed::of(&sim).lands(Fault::CrashWithoutShutdown, &sim));
    sim.settle().unwrap();
    // Traffic cut into after one step: a consumer's request is in flight.
    sim.traffic_steps(1).unwrap();
    assert!(phases(&sim).contains(InFlight::ClientRequest));
    sim.settle().unwrap();
    // A crash boot: the crash kernel serves without a TEE.
    sim.crash(false).unwrap();
    assert!(phases(&sim).contains(InFlight::CrashKernel));
}

/// The 4.x profile's own phases show up while teed registers its argument pages at boot.
#[test]
fn the_4x_boot_registers_its_argument_pages_in_flight() {
    let mut sim = Sim::scripted(SimConfig::for_profile(12, Profile::Optee4x));
    let mut seen = Phases::default();
    sim.power_on().unwrap();
    // Walk a kexec and the next boot step by step, collecting what was in flight.
    sim.request_kexec_and_step(0).unwrap();
    while sim.step_once().unwrap() {
        for p in phases(&sim).iter() {
            seen.insert(p);
        }
    }
    assert!(seen.contains(InFlight::Starting));
    assert!(
        seen.contains(InFlight::ArgPages),
        "{:?}",
        seen.iter().collect::<Vec<_>>()
    );
}
