//! 376e4199e327 "tee: Correct inappropriate usage of TEE_SHM_DMA_BUF flag".
//!
//! It introduced TEE_SHM_PRIV: driver-internal buffers (message arguments, RPC allocations) are
//! never registered with OP-TEE, and the pool registers exactly what is not private. Without it,
//! RPC buffers were registrations too, and when a crashed kernel's cache was discarded at the next
//! probe (unmapped: nothing may be dereferenced), their registrations stayed in OP-TEE.
//!
//! Run against both OP-TEE profiles of the model. RPC buffers exist only for a driver that does
//! not pass its RPC struct with the call, and Linux 5.14 predates that (5.19): against 4.x the
//! scenario's teed is the 5.14 driver ([`teed::TeedConfig::modern_abi`] off).
#![allow(clippy::unwrap_used)]

use secure_world::Profile;
use tee_sim::{Sim, SimConfig};

/// Traffic, a crash with no shutdown IPC, the crash kernel, a kexec back.
fn after_crash(register_private: bool, profile: Profile) -> secure_world::Stats {
    let mut cfg = SimConfig::for_profile(376, profile);
    cfg.teed.modern_abi = false;
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
    for profile in Profile::ALL {
        let stats = after_crash(true, profile);
        // tpmd's and bnxtd's buffers, plus private buffers nobody will ever unregister.
        assert!(stats.registrations > 2, "{profile}: {stats:?}");
    }
}

#[test]
fn seed_376e4199e327_private_buffers_are_never_registered() {
    for profile in Profile::ALL {
        let stats = after_crash(false, profile);
        assert_eq!(
            stats.registrations, 2,
            "{profile}: only the clients' buffers: {stats:?}"
        );
    }
}
