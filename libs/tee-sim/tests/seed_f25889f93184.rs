//! f25889f93184 "optee: fix tee out of memory failure seen during kexec reboot".
//!
//! It added the OP-TEE driver's `.shutdown`: drain the RPC shm cache in mapped mode and free each
//! returned buffer. Without it, every secure thread keeps the RPC argument buffer of a world
//! that is about to vanish, and hands its cookie back to the next kernel (OP-TEE issue #1312).
#![allow(clippy::unwrap_used)]

use tee_sim::{Sim, SimConfig};
use teed::Hardening;

fn config(no_drain: bool, no_probe_drain: bool) -> SimConfig {
    let mut cfg = SimConfig::new(25889);
    cfg.teed.hardening = Hardening::LINUX;
    cfg.teed.seed_bugs.no_shutdown_cache_drain = no_drain;
    cfg.teed.seed_bugs.no_probe_cache_drain = no_probe_drain;
    cfg.expect_fixed = false;
    cfg
}

#[test]
fn seed_f25889f93184_without_the_shutdown_drain_the_cache_outlives_the_world() {
    // A pre-series kernel on both sides of the kexec.
    let mut sim = Sim::scripted(config(true, true));
    sim.power_on().unwrap();
    sim.traffic(4).unwrap();
    sim.kexec().unwrap();
    let at_kexec = &sim.transitions()[0].secure;
    assert!(
        at_kexec.cached_buffers > 0,
        "cached buffers of the old world: {at_kexec:?}"
    );
    sim.traffic(4).unwrap();
    let stale = sim.teed().unwrap().stats().stale_rpc_cookies;
    assert!(
        stale > 0,
        "the next kernel is handed cookies it never issued"
    );
}

#[test]
fn seed_f25889f93184_the_shutdown_drain_frees_every_cached_buffer() {
    let mut sim = Sim::scripted(config(false, true));
    sim.power_on().unwrap();
    for _ in 0..5 {
        sim.traffic(4).unwrap();
        sim.kexec().unwrap();
        let at_kexec = &sim.transitions().last().unwrap().secure;
        assert_eq!(at_kexec.cached_buffers, 0);
        assert!(!at_kexec.cache_enabled);
        assert_eq!(sim.teed().unwrap().stats().stale_rpc_cookies, 0);
    }
}
