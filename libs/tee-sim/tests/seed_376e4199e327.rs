//! 376e4199e327 "tee: Correct inappropriate usage of TEE_SHM_DMA_BUF flag".
//!
//! It introduced TEE_SHM_PRIV: driver-internal buffers (message arguments, RPC allocations) are
//! never registered with OP-TEE, and the pool registers exactly what is not private. Without it,
//! RPC buffers were registrations too, and when a crashed kernel's cache was discarded at the next
//! probe (unmapped: nothing may be dereferenced), their registrations stayed in OP-TEE.
#![allow(clippy::unwrap_used)]

use tee_sim::{Sim, SimConfig};

/// Traffic, a crash with no shutdown IPC, the crash kernel, a kexec back.
fn after_crash(register_private: bool) -> secure_world::Stats {
    let mut cfg = SimConfig::new(376);
    cfg.teed.seed_bugs.register_private_buffers = register_private;
    cfg.expect_fixed = false;
    let mut sim = Sim::scripted(cfg);
    sim.power_on().unwrap();
    sim.traffic(4).unwrap();
    sim.crash(false).unwrap();
    sim.kexec().unwrap();
    sim.secure.stats()
}

#[test]
fn seed_376e4199e327_registered_rpc_buffers_leak_when_the_cache_is_discarded() {
    let stats = after_crash(true);
    // tpmd's and bnxtd's buffers, plus private buffers nobody will ever unregister.
    assert!(stats.registrations > 2, "{stats:?}");
}

#[test]
fn seed_376e4199e327_private_buffers_are_never_registered() {
    let stats = after_crash(false);
    assert_eq!(
        stats.registrations, 2,
        "only the clients' buffers: {stats:?}"
    );
}
