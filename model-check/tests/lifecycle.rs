//! The lifecycle model checked over the real cores, and shown to catch a fix taken away.

use secure_world::Profile;
use tee_sim::sim::SimConfig;
use teed::Hardening;
use teesys_model_check::{check, names, replay, Action, LifecycleModel, Server, Violation};

/// The default machine, every fix in place, to a bounded depth (`cargo xtask check-model` runs
/// depth 12, about a minute per profile): no property breaks.
/// (teed core.rs / init supervisor.rs / secure-world world.rs, replayed by tee-sim.)
#[test]
fn lifecycle_holds_to_a_bounded_depth() {
    let report = check(LifecycleModel::new(7), 2);
    assert!(
        report.violations.is_empty(),
        "violations: {:?}",
        report.violations
    );
    // init's restart counts keep kill chains apart: the space is far from closed at depth 7.
    assert!(report.unique_states > 1_000, "{report:?}");
    assert!(report.max_depth >= 7, "{report:?}");
}

/// The OP-TEE 4.x profile (argument pages, notifications) to a shorter depth.
#[test]
fn lifecycle_holds_under_optee_4x() {
    let cfg = SimConfig::for_profile(0x5eed, Profile::Optee4x);
    let report = check(LifecycleModel::with_config(cfg, 5), 2);
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

/// Found by the checker once init's restart counts were part of the state: init gives teed up
/// (its sixth death in the window) while the clients have traffic in flight. The clients used
/// to retry their acquisitions from a teed that would never come back, for ever, so the machine
/// never settled; now a client that has no endpoint to teed waits, silent, for init to link a
/// successor, and its consumers hear "TEE unavailable" when their requests expire.
#[test]
fn clients_of_a_given_up_teed_fall_quiet() {
    let path = [
        Action::Kill(Server::Teed),
        Action::Kill(Server::Teed),
        Action::Kill(Server::Teed),
        Action::Kill(Server::Teed),
        Action::Kill(Server::Bnxtd),
        Action::Kill(Server::Bnxtd),
        Action::Kill(Server::Bnxtd),
        Action::Kill(Server::Bnxtd),
        Action::Kill(Server::Teed),
        Action::InFlight,
        Action::Kill(Server::Teed),
    ];
    let cfg = LifecycleModel::new(path.len()).cfg;
    let state = replay(&cfg, &path);
    assert!(state.violation.is_none(), "{state:?}");
    assert!(state.can_end, "{state:?}");
    let teed = &state.summary.servers[0];
    assert_eq!(teed.0, "given-up", "{state:?}");
}
