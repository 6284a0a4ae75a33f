//! The lifecycle model checked over the real cores, and shown to catch a fix taken away.

use secure_world::Profile;
use tee_sim::sim::SimConfig;
use teed::Hardening;
use teesys_model_check::{check, names, replay, Action, LifecycleModel, Server, Violation};

/// The default machine, every fix in place, to the depth: no property breaks.
/// (teed core.rs / init supervisor.rs / secure-world world.rs, replayed by tee-sim.)
#[test]
fn lifecycle_holds_to_depth_12() {
    let report = check(LifecycleModel::new(12), 1);
    assert!(
        report.violations.is_empty(),
        "violations: {:?}",
        report.violations
    );
    // The abstraction's whole space is reached well before depth 12: more than a toy count.
    assert!(report.unique_states > 30, "{report:?}");
    assert!(report.max_depth >= 8, "{report:?}");
}

/// The OP-TEE 4.x profile (argument pages, notifications) to a shorter depth.
#[test]
fn lifecycle_holds_under_optee_4x() {
    let cfg = SimConfig::for_profile(0x5eed, Profile::Optee4x);
    let report = check(LifecycleModel::with_config(cfg, 6), 1);
    assert!(report.violations.is_empty(), "{:?}", report.violations);
}

/// teed as the Linux 5.14 driver (`Hardening::LINUX`: no reclaim of a dead client's buffers,
/// no shutdown sweep, no journal) with the simulator's fix-dependent checks off: the model's own
/// checks must find that a killed bnxtd's registration survives every later orderly shutdown
/// (drivers/tee/optee/smc_abi.c optee_shutdown only drains the cache).
#[test]
fn disabled_reclaim_is_caught() {
    let mut cfg = SimConfig::new(0x5eed);
    cfg.teed.hardening = Hardening::LINUX;
    cfg.expect_fixed = false;
    let report = check(LifecycleModel::with_config(cfg, 2), 1);
    let caught = report
        .violations
        .iter()
        .find(|(name, _, _)| *name == names::CAN_END || *name == names::NOTHING_OUTLIVES_SHUTDOWN);
    assert!(caught.is_some(), "Linux hardening passed: {report:?}");
}

/// The seed bug of the shutdown cache drain (`SeedBugs::no_shutdown_cache_drain`, Linux before
/// the 5.14 series' optee_shutdown) is caught too: cached RPC buffers outlive the shutdown.
#[test]
fn disabled_shutdown_cache_drain_is_caught() {
    let mut cfg = SimConfig::new(0x5eed);
    cfg.teed.seed_bugs.no_shutdown_cache_drain = true;
    cfg.expect_fixed = false;
    let report = check(LifecycleModel::with_config(cfg, 3), 1);
    assert!(
        !report.violations.is_empty(),
        "the seed bug passed the checker: {report:?}"
    );
}

/// A path replays to the same judgement every time: the model is deterministic.
#[test]
fn replay_is_deterministic() {
    let path = [
        Action::InFlight,
        Action::Crash { ipc: false },
        Action::Kill(Server::Tpmd),
        Action::Kexec,
    ];
    let cfg = LifecycleModel::new(4).cfg;
    let a = replay(&cfg, &path);
    let b = replay(&cfg, &path);
    assert_eq!(a.summary, b.summary);
    assert_eq!(a.violation, b.violation);
    assert!(a.violation.is_none() && a.can_end, "{a:?}");
}

/// A reset is checked as a new secure-world lifetime, so cookies may start over; an orderly
/// kexec after traffic leaves the world serving and clean.
#[test]
fn kexec_after_traffic_serves_and_is_clean() {
    let cfg = LifecycleModel::new(2).cfg;
    let state = replay(&cfg, &[Action::Traffic, Action::Kexec]);
    assert!(state.summary.teed_serving, "{state:?}");
    assert!(!matches!(
        state.violation,
        Some(Violation::OutlivedShutdown(_))
    ));
}
