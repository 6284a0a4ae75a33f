//! Linux mainline (>= 5.19) against a modern OP-TEE, and what it still leaks across kexec.
//!
//! With SEC_CAP_RPC_ARG, mainline pre-registers the page its argument structs live in
//! (drivers/tee/optee/call.c optee_get_msg_arg, OPTEE_SHM_ARG_SHARED: ten structs to a page with
//! OP-TEE's four RPC params) and frees it only on remove; its shutdown is `if
//! (!optee->rpc_param_count) optee_disable_shm_cache(optee);` (smc_abi.c optee_shutdown), so
//! every kexec leaves that registration, and started notifications, in the secure world. The
//! clients' own shutdowns (the 5.14 series) still run. `TeedConfig::mainline_shutdown` is that
//! behaviour; teesys's own shutdown unregisters the pages, stops notifications and drains.
#![allow(clippy::unwrap_used)]

use optee_abi::teec;
use secure_world::Profile;
use tee_proto::lifecycle::ServerKind;
use tee_sim::{Sim, SimConfig};
use teed::Hardening;
use teesys_init::StartOutcome;

fn mainline(profile: Profile) -> SimConfig {
    let mut cfg = SimConfig::for_profile(519, profile);
    cfg.teed.hardening = Hardening::LINUX;
    cfg.teed.mainline_shutdown = true;
    cfg.expect_fixed = false;
    cfg
}

#[test]
fn mainline_packs_ten_argument_structs_to_a_registered_page() {
    // OPTEE_MSG_GET_ARG_SIZE(6) = 224 and OPTEE_MSG_GET_ARG_SIZE(4) = 160: 4096 / 384 = 10.
    let slots = teed::mainline_arg_slots(0x4000_0000, 4);
    assert_eq!(slots.len(), 10);
    assert_eq!(slots[1] - slots[0], 384);
    assert!(slots.iter().all(|pa| pa + 384 <= 0x4000_1000));
}

/// Under the 4.x profile every mainline kexec leaves one registered argument page behind; the
/// leak per kexec is measured from the secure world's heap at each transition, the failing
/// kexec predicted from it and the first boot's heap peak (the bnxt registration's), and the
/// 4 MiB registration fails exactly there with TEE_ERROR_BAD_PARAMETERS.
#[test]
fn mainline_leaks_its_argument_page_every_kexec_until_the_bnxt_registration_fails() {
    let mut sim = Sim::scripted(mainline(Profile::Optee4x));
    sim.power_on().unwrap();
    assert_eq!(sim.outcome(ServerKind::Bnxtd), Some(StartOutcome::Ready));
    let capacity = sim.secure.stats().heap_capacity;

    // Eight kexecs, each boot's heap peak measured on its own.
    let mut peaks = Vec::new();
    for _ in 0..8 {
        sim.secure.reset_heap_peak();
        sim.kexec().unwrap();
        assert_eq!(sim.outcome(ServerKind::Bnxtd), Some(StartOutcome::Ready));
        peaks.push(sim.secure.stats().heap_peak);
    }
    let left: Vec<_> = sim.transitions().iter().map(|t| t.secure.clone()).collect();
    let leak = left[1].heap_used - left[0].heap_used;
    assert!(leak > 0, "mainline leaves something behind: {left:?}");
    assert_eq!(left[0].registrations, 1, "the argument page of boot 0");
    assert_eq!(left[1].registrations, 2, "and of boot 1");
    assert!(
        left.iter().all(|t| t.sessions == 0),
        "the clients' shutdowns ran"
    );
    assert!(left[1].notif_started, "notifications left started");
    // One page: the model charges a 1-page registration as OP-TEE's heap would (header and
    // one page-list entry, rounded).
    assert_eq!(
        Some(leak),
        secure_world::heap::charge_for(secure_world::registry::REGISTRATION_HEADER_BYTES + 8),
        "one 1-page registration per kexec"
    );
    // Boot k peaks k − 1 leaks above boot 1, give or take the order in which tpmd's and bnxtd's
    // registrations land in that boot (one registration of jitter): normalise every measured
    // boot to boot 1 and take the range.
    let normalised: Vec<usize> = peaks
        .iter()
        .enumerate()
        .map(|(i, peak)| peak - leak * i)
        .collect();
    let (low, high) = (
        *normalised.iter().min().unwrap(),
        *normalised.iter().max().unwrap(),
    );
    assert!(high - low <= leak, "peaks {peaks:?}");
    // The first kexec k whose boot peaks past the capacity: peak_1 + leak·(k − 1) > capacity.
    let first_failing = |peak_1: usize| (capacity - peak_1) / leak + 2;
    let (earliest, latest) = (first_failing(high), first_failing(low));
    let mut kexecs = peaks.len();
    let failed_at = loop {
        sim.kexec().unwrap();
        kexecs += 1;
        if sim.outcome(ServerKind::Bnxtd) != Some(StartOutcome::Ready) {
            break kexecs;
        }
        assert!(
            kexecs < latest,
            "no failure by kexec {kexecs}; predicted {earliest}..={latest}"
        );
    };
    eprintln!(
        "mainline 4.x: leak {leak} B per kexec; kexec 1 peaks at {low}..={high} of {capacity} B; \
         predicted failure at kexec {earliest}..={latest}; failed at kexec {failed_at}"
    );
    assert!(
        (earliest..=latest).contains(&failed_at),
        "failed at {failed_at}, predicted {earliest}..={latest}"
    );
    let teed = sim.teed().unwrap();
    assert_eq!(teed.stats().last_register_ret, teec::ERROR_BAD_PARAMETERS);
    let registrations = sim.secure.stats().registrations;
    assert!(
        registrations >= failed_at,
        "{registrations}: an argument page per kexec and more"
    );
}

/// Against 3.14 mainline has no RPC struct: its argument structs are private buffers, never
/// registered, and its shutdown drains the cache; nothing is left.
#[test]
fn mainline_against_3_14_leaves_nothing() {
    let mut sim = Sim::scripted(mainline(Profile::Optee3_14));
    sim.power_on().unwrap();
    for _ in 0..20 {
        sim.kexec().unwrap();
        assert_eq!(sim.outcome(ServerKind::Bnxtd), Some(StartOutcome::Ready));
    }
    assert!(sim
        .transitions()
        .iter()
        .all(|t| t.secure.registrations == 0 && t.secure.sessions == 0));
}

/// teesys's own shutdown under both profiles: 10,000 kexecs, nothing registered, no session,
/// nothing cached and notifications stopped at every transition.
#[test]
fn teesys_stays_clean_for_10_000_kexecs_under_both_profiles() {
    for profile in Profile::ALL {
        let mut cfg = SimConfig::for_profile(1_000, profile);
        cfg.teed.hardening = Hardening::LINUX;
        let mut sim = Sim::scripted(cfg);
        sim.power_on().unwrap();
        for kexec in 1..=10_000 {
            sim.kexec().unwrap();
            assert_eq!(
                sim.outcome(ServerKind::Bnxtd),
                Some(StartOutcome::Ready),
                "{profile:?} kexec {kexec}"
            );
        }
        assert!(
            sim.transitions().iter().all(|t| t.secure.registrations == 0
                && t.secure.sessions == 0
                && t.secure.cached_buffers == 0
                && !t.secure.notif_started),
            "{profile:?}"
        );
    }
}
