//! Beyond Linux: the lifecycle journal. A normal world that crashed with no shutdown IPC, then
//! came back by kexec from the crash kernel (no machine reset), or a teed killed between any two
//! steps, leaves nothing behind in the secure world, and the single-session fTPM opens again.
//!
//! Run against both OP-TEE profiles of the model: against 4.x the journal also covers teed's
//! registered argument pages (a teed killed while registering them included).
#![allow(clippy::unwrap_used)]

use secure_world::Profile;
use tee_proto::lifecycle::ServerKind;
use tee_sim::{Sim, SimConfig};
use teed::Hardening;
use teesys_init::StartOutcome;

fn config(hardening: Hardening, profile: Profile) -> SimConfig {
    let mut cfg = SimConfig::for_profile(42, profile);
    cfg.teed.hardening = hardening;
    cfg.expect_fixed = hardening == Hardening::default();
    cfg
}

/// Crash mid-traffic with no shutdown IPC, boot the crash kernel, kexec back.
fn crash_then_kexec_back(hardening: Hardening, profile: Profile) -> Sim {
    let mut sim = Sim::scripted(config(hardening, profile));
    sim.power_on().unwrap();
    assert_eq!(sim.outcome(ServerKind::Tpmd), Some(StartOutcome::Ready));
    sim.traffic(3).unwrap();
    sim.crash(false).unwrap();
    let crashed = &sim.transitions().last().unwrap().secure;
    assert!(
        crashed.registrations >= 2 && crashed.sessions >= 2,
        "the crash left both clients' state"
    );
    assert!(
        sim.teed().unwrap().declined().is_some(),
        "crash kernel: teed declined; {:?} {:?}",
        sim.teed().map(|t| t.status()),
        sim.init_view()
    );
    sim.kexec().unwrap();
    sim
}

#[test]
fn linux_cannot_recover_from_a_crash_without_shutdown() {
    for profile in Profile::ALL {
        linux_stays_locked_out(profile);
    }
}

fn linux_stays_locked_out(profile: Profile) {
    let sim = crash_then_kexec_back(Hardening::LINUX, profile);
    // The fTPM session the crashed world left open locks tpmd out; the stale registrations stay.
    assert_ne!(sim.outcome(ServerKind::Tpmd), Some(StartOutcome::Ready));
    let stats = sim.secure.stats();
    assert!(stats.sessions >= 1 && stats.registrations >= 2, "{stats:?}");
}

#[test]
fn the_journal_reclaims_everything_a_crash_left() {
    for profile in Profile::ALL {
        reclaims_everything(profile);
    }
}

fn reclaims_everything(profile: Profile) {
    let mut sim = crash_then_kexec_back(Hardening::default(), profile);
    assert_eq!(
        sim.outcome(ServerKind::Tpmd),
        Some(StartOutcome::Ready),
        "the fTPM opens again"
    );
    let teed = sim.teed().unwrap();
    assert!(teed.stats().reclaimed_registrations >= 2 && teed.stats().reclaimed_sessions >= 2);
    // What the secure world holds now is exactly this boot's: one buffer and one session each.
    // (Against 4.x, with this boot's argument pages and nothing of the crashed boot's.)
    let own = usize::from(profile == Profile::Optee4x);
    assert_eq!(own, usize::from(sim.teed().unwrap().arg_pages().is_some()));
    let stats = sim.secure.stats();
    assert_eq!(
        (stats.registrations, stats.sessions),
        (2 + own, 2),
        "{profile}"
    );
    sim.traffic(3).unwrap();
    sim.kexec().unwrap();
    let left = &sim.transitions().last().unwrap().secure;
    assert_eq!(
        (left.registrations, left.sessions, left.cached_buffers),
        (0, 0, 0)
    );
}

/// teed killed at every step of a stretch of traffic and of a kexec: the next incarnation
/// reclaims what its predecessor held, tpmd reopens the fTPM, and the next orderly kexec leaves
/// nothing. The invariant checker also runs after every step.
#[test]
fn a_teed_killed_between_any_two_steps_leaves_nothing_behind() {
    for profile in Profile::ALL {
        killed_anywhere(profile);
    }
}

fn killed_anywhere(profile: Profile) {
    for k in 0..120 {
        let mut sim = Sim::scripted(config(Hardening::default(), profile));
        sim.power_on().unwrap();
        if k % 2 == 0 {
            sim.traffic_steps(k / 2).unwrap();
        } else {
            sim.request_kexec_and_step(k / 2).unwrap();
        }
        sim.kill_server(ServerKind::Teed).unwrap();
        sim.traffic(2).unwrap();
        assert_eq!(
            sim.outcome(ServerKind::Tpmd),
            Some(StartOutcome::Ready),
            "{profile} k={k}"
        );
        sim.kexec().unwrap();
        let left = &sim.transitions().last().unwrap().secure;
        assert_eq!(
            (left.registrations, left.sessions, left.cached_buffers),
            (0, 0, 0),
            "{profile} k={k}"
        );
        assert_eq!(left.threads_suspended, 0, "k={k}");
    }
}
