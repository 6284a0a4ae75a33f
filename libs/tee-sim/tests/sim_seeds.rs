//! The simulator over many seeds, under each OP-TEE profile of the model: every run must keep
//! every invariant. A failure prints its seed; `TEESYS_SEED=<n> cargo test -p tee-sim --test
//! sim_seeds replay` replays it (`TEESYS_OPTEE=4.x` for the 4.x profile).
#![allow(clippy::unwrap_used)]

use secure_world::Profile;
use tee_sim::sim::finish::MIN_TPM_CORRECT;
use tee_sim::{Sim, SimConfig, SimFailure};

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

/// Every seed under `profile`, with the totals that show the runs did what they are for.
fn every_seed_under(profile: Profile) -> tee_sim::SimStats {
    let n = seeds();
    let mut totals = tee_sim::SimStats::default();
    for seed in 0..n {
        match Sim::run(SimConfig::for_profile(seed, profile)) {
            Ok(stats) => {
                totals.kexecs += stats.kexecs;
                totals.crashes += stats.crashes;
                totals.kills += stats.kills;
                totals.boots += stats.boots;
                totals.hostile_frames += stats.hostile_frames;
                totals.tpm_answers += stats.tpm_answers;
                totals.tpm_correct += stats.tpm_correct;
                totals.coredump_chunks += stats.coredump_chunks;
                totals.steps += stats.steps;
                totals.notifications += stats.notifications;
                totals.reclaimed += stats.reclaimed;
            }
            Err(failure) => panic!(
                "{failure}\nreplay: TEESYS_OPTEE={profile} TEESYS_SEED={seed} cargo test -p \
                 tee-sim --test sim_seeds replay"
            ),
        }
    }
    eprintln!("{n} seeds under OP-TEE {profile}: {totals:?}");
    // The runs did what they are for.
    assert!(totals.kexecs > n && totals.crashes > n / 4 && totals.kills > n / 4);
    assert!(totals.coredump_chunks > 0 && totals.hostile_frames > 0);
    // Every run ended with correct TPM answers, not only acceptable errors.
    assert!(totals.tpm_correct >= n * MIN_TPM_CORRECT, "{totals:?}");
    totals
}

#[test]
fn every_seed_keeps_every_invariant() {
    every_seed_under(Profile::Optee3_14);
}

/// The same seeds against OP-TEE 4.x: teed's argument pages and asynchronous notifications
/// (with drivers raising bottom halves and wake-ups at random) through the same kexecs, crashes
/// and kills; every completed shutdown also leaves the pages unregistered and notifications
/// stopped.
#[test]
fn every_seed_keeps_every_invariant_under_optee_4x() {
    let totals = every_seed_under(Profile::Optee4x);
    assert!(totals.notifications > seeds(), "{totals:?}");
}

#[test]
fn replay() {
    if let Some(seed) = std::env::var("TEESYS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        let profile = std::env::var("TEESYS_OPTEE")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or_default();
        let result = Sim::run(SimConfig::for_profile(seed, profile));
        eprintln!("{result:?}");
        assert!(result.is_ok());
    }
}

/// The first of 200 seeds a run of `broken` fails, checked to name its seed, to say `what`, and
/// to replay exactly from that seed.
fn caught_and_replayed(broken: impl Fn(u64) -> SimConfig, what: &str) -> SimFailure {
    let failure = (0..200)
        .find_map(|seed| Sim::run(broken(seed)).err())
        .expect("a broken behaviour must be caught within 200 seeds");
    eprintln!("{failure}");
    assert!(failure
        .to_string()
        .starts_with(&format!("seed {}:", failure.seed)));
    assert!(failure.message.contains(what), "{}", failure.message);
    assert_eq!(
        Sim::run(broken(failure.seed)).unwrap_err(),
        failure,
        "replays exactly"
    );
    failure
}

/// A deliberately broken fix (teed's shutdown no longer drains the RPC cache, f25889f93184) is
/// caught by the invariants, its seed printed, and the failure replays exactly from that seed.
#[test]
fn a_disabled_fix_is_caught_and_replays_from_its_seed() {
    caught_and_replayed(
        |seed| {
            let mut cfg = SimConfig::new(seed);
            cfg.teed.seed_bugs.no_shutdown_cache_drain = true;
            cfg
        },
        "cached buffers",
    );
}

/// A run without a single operation still ends with an orderly kexec that must leave nothing
/// behind and a boot that must answer the TPM consumer correctly.
#[test]
fn every_run_ends_with_a_clean_orderly_kexec() {
    let quiet = |seed| {
        let mut cfg = SimConfig::new(seed);
        cfg.faults.ops = 0;
        cfg
    };
    let stats = Sim::run(quiet(5)).unwrap();
    assert_eq!((stats.boots, stats.kexecs), (2, 1), "{stats:?}");
    assert!(stats.tpm_correct >= MIN_TPM_CORRECT, "{stats:?}");
    // With the shutdown drain disabled, only that last kexec can see the cached buffers left.
    let failure = caught_and_replayed(
        |seed| {
            let mut cfg = quiet(seed);
            cfg.teed.seed_bugs.no_shutdown_cache_drain = true;
            cfg
        },
        "cached buffers",
    );
    assert_eq!(failure.seed, 0, "caught on the very first seed");
}

/// The last kexec must complete its shutdown: when teed's acknowledgement is lost (broken on
/// purpose), every earlier shutdown merely goes unchecked, but the last one fails the run.
#[test]
fn a_last_kexec_whose_shutdown_does_not_complete_fails_the_run() {
    let failure = caught_and_replayed(
        |seed| {
            let mut cfg = SimConfig::new(seed);
            cfg.faults.ops = 0;
            cfg.breaks.lose_teed_shutdown_ack = true;
            cfg
        },
        "the last orderly kexec did not complete its shutdown",
    );
    assert_eq!(failure.seed, 0, "caught on the very first seed");
}

/// A TPM whose every answer is a typed error (each acceptable on its own) does not pass a run.
#[test]
fn a_tpm_that_always_fails_does_not_pass() {
    let failure = caught_and_replayed(
        |seed| {
            let mut cfg = SimConfig::new(seed);
            cfg.breaks.tpm_always_fails = true;
            cfg
        },
        "tpm: 0 correct answers",
    );
    assert_eq!(failure.seed, 0, "caught on the very first seed");
    let stats = Sim::run(SimConfig::new(failure.seed)).unwrap();
    assert!(stats.tpm_correct >= MIN_TPM_CORRECT, "{stats:?}");
}

/// The isolation check catches a forged request that reaches another client's session or
/// buffer: broken on purpose, the simulator delivers forged frames labelled as the victim's own,
/// so teed serves them and the forger gets something other than a refusal.
#[test]
fn a_forged_request_that_gets_through_is_caught_and_replays_from_its_seed() {
    caught_and_replayed(
        |seed| {
            let mut cfg = SimConfig::new(seed);
            cfg.breaks.forged_requests_as_victim = true;
            cfg
        },
        "isolation: a forged request got",
    );
}

/// The cookie check catches a cookie used again within one secure-world lifetime: broken on
/// purpose, the simulated conduit hands the secure world registrations under a cookie it
/// already retired.
#[test]
fn a_reused_cookie_is_caught_and_replays_from_its_seed() {
    caught_and_replayed(
        |seed| {
            let mut cfg = SimConfig::new(seed);
            cfg.breaks.reuse_retired_cookies = true;
            cfg
        },
        "reused after it was unregistered",
    );
}
