//! f25889f93184 "optee: fix tee out of memory failure seen during kexec reboot".
//!
//! It added the OP-TEE driver's `.shutdown`: drain the RPC shm cache in mapped mode and free each
//! returned buffer. Without it, every secure thread keeps the RPC argument buffer of a world
//! that is about to vanish, and hands its cookie back to the next kernel (OP-TEE issue #1312).
//!
//! Run against both OP-TEE profiles of the model; against 4.x the scenario's teed is the Linux
//! 5.14 driver, which uses the RPC cache ([`teed::TeedConfig::modern_abi`] off): a driver that
//! passes its RPC struct with the call (5.19) never has a buffer cached.
#![allow(clippy::unwrap_used)]

use secure_world::Profile;
use tee_sim::{Sim, SimConfig};
use teed::Hardening;

fn config(no_drain: bool, no_probe_drain: bool, profile: Profile) -> SimConfig {
    let mut cfg = SimConfig::for_profile(25889, profile);
    cfg.teed.modern_abi = false;
    cfg.teed.hardening = Hardening::LINUX;
    cfg.teed.seed_bugs.no_shutdown_cache_drain = no_drain;
    cfg.teed.seed_bugs.no_probe_cache_drain = no_probe_drain;
    cfg.expect_fixed = false;
    cfg
}

#[test]
fn seed_f25889f93184_without_the_shutdown_drain_the_cache_outlives_the_world() {
    for profile in Profile::ALL {
        // A pre-series kernel on both sides of the kexec.
        let mut sim = Sim::scripted(config(true, true, profile));
        sim.power_on().unwrap();
        sim.traffic(4).unwrap();
        sim.kexec().unwrap();
        let at_kexec = &sim.transitions()[0].secure;
        assert!(
            at_kexec.cached_buffers > 0,
            "{profile}: cached buffers of the old world: {at_kexec:?}"
        );
        sim.traffic(4).unwrap();
        let stale = sim.teed().unwrap().stats().stale_rpc_cookies;
        assert!(
            stale > 0,
            "{profile}: the next kernel is handed cookies it never issued"
        );
    }
}

/// The modern driver on OP-TEE 4.x passes its RPC struct with every call: nothing is ever
/// cached, so even without the shutdown drain no buffer outlives the world.
#[test]
fn seed_f25889f93184_with_the_rpc_struct_passed_nothing_is_cached_to_outlive_the_world() {
    let mut cfg = config(true, true, Profile::Optee4x);
    cfg.teed.modern_abi = true;
    let mut sim = Sim::scripted(cfg);
    sim.power_on().unwrap();
    sim.traffic(4).unwrap();
    sim.kexec().unwrap();
    assert_eq!(sim.transitions()[0].secure.cached_buffers, 0);
    sim.traffic(4).unwrap();
    assert_eq!(sim.teed().unwrap().stats().stale_rpc_cookies, 0);
}

#[test]
fn seed_f25889f93184_the_shutdown_drain_frees_every_cached_buffer() {
    for profile in Profile::ALL {
        let mut sim = Sim::scripted(config(false, true, profile));
        sim.power_on().unwrap();
        for _ in 0..5 {
            sim.traffic(4).unwrap();
            sim.kexec().unwrap();
            let at_kexec = &sim.transitions().last().unwrap().secure;
            assert_eq!(at_kexec.cached_buffers, 0, "{profile}");
            assert!(!at_kexec.cache_enabled);
            assert_eq!(sim.teed().unwrap().stats().stale_rpc_cookies, 0);
        }
    }
}
