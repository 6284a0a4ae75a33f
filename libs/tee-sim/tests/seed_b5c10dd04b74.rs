//! b5c10dd04b74 "optee: clear stale cache entries during initialization".
//!
//! A kernel kexec'd from one that did not drain the RPC cache meets cookies that are pointers
//! of the previous kernel. The fix drains the cache at probe in *unmapped* mode, discarding every
//! returned cookie without looking at it, before enabling the cache again.
//!
//! Run against both OP-TEE profiles of the model; against 4.x the scenario's teed is the Linux
//! 5.14 driver, which knows no RPC struct passed with the call (5.19) and so uses the RPC cache
//! ([`teed::TeedConfig::modern_abi`] off).
#![allow(clippy::unwrap_used)]

use secure_world::Profile;
use tee_sim::{Sim, SimConfig};
use teed::Hardening;

/// Every kernel is "buggy" at shutdown (no drain); `fixed` says whether probe clears the cache.
fn run(fixed: bool, profile: Profile) -> teed::TeedStats {
    let mut cfg = SimConfig::for_profile(510, profile);
    cfg.teed.modern_abi = false;
    cfg.teed.hardening = Hardening::LINUX;
    cfg.teed.seed_bugs.no_shutdown_cache_drain = true;
    cfg.teed.seed_bugs.no_probe_cache_drain = !fixed;
    cfg.expect_fixed = false;
    let mut sim = Sim::scripted(cfg);
    sim.power_on().unwrap();
    sim.traffic(4).unwrap();
    sim.kexec().unwrap();
    assert!(
        sim.transitions()[0].secure.cached_buffers > 0,
        "the old world left its cache"
    );
    sim.traffic(4).unwrap();
    sim.teed().unwrap().stats()
}

#[test]
fn seed_b5c10dd04b74_without_the_probe_drain_stale_cookies_come_back() {
    for profile in Profile::ALL {
        let stats = run(false, profile);
        assert!(stats.stale_rpc_cookies > 0, "{profile}: {stats:?}");
        assert_eq!(stats.cache_cookies_discarded, 0);
    }
}

#[test]
fn seed_b5c10dd04b74_probe_discards_stale_cookies_unmapped() {
    for profile in Profile::ALL {
        let stats = run(true, profile);
        assert!(stats.cache_cookies_discarded > 0, "{profile}: {stats:?}");
        assert_eq!(stats.stale_rpc_cookies, 0);
    }
}
