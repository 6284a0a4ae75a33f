//! b5c10dd04b74 "optee: clear stale cache entries during initialization".
//!
//! A kernel kexec'd from one that did not drain the RPC cache meets cookies that are pointers
//! of the previous kernel. The fix drains the cache at probe in *unmapped* mode, discarding every
//! returned cookie without looking at it, before enabling the cache again.
#![allow(clippy::unwrap_used)]

use tee_sim::{Sim, SimConfig};
use teed::Hardening;

/// Every kernel is "buggy" at shutdown (no drain); `fixed` says whether probe clears the cache.
fn run(fixed: bool) -> teed::TeedStats {
    let mut cfg = SimConfig::new(510);
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
    let stats = run(false);
    assert!(stats.stale_rpc_cookies > 0, "{stats:?}");
    assert_eq!(stats.cache_cookies_discarded, 0);
}

#[test]
fn seed_b5c10dd04b74_probe_discards_stale_cookies_unmapped() {
    let stats = run(true);
    assert!(stats.cache_cookies_discarded > 0, "{stats:?}");
    assert_eq!(stats.stale_rpc_cookies, 0);
}
