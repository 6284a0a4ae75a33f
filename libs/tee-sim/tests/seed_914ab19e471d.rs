//! 914ab19e471d "firmware: tee_bnxt: release TEE shm, session, and context during kexec".
//!
//! Before it, tee_bnxt_fw had no `.shutdown` hook and its 4 MiB buffer was dma-buf backed, so
//! every kexec left the registration in OP-TEE; each one keeps ~8 KiB of per-page bookkeeping on
//! the 64 KiB core heap, and on the seed's 8 GiB machine the 4 MiB registration failed on the
//! 4th kexec (probe error -22 from REGISTER_SHM's TEE_ERROR_BAD_PARAMETERS).
//!
//! Run against both OP-TEE profiles of the model: against 4.x teed also registers its argument
//! pages at probe and unregisters them at shutdown, which changes none of this.
#![allow(clippy::unwrap_used)]

use optee_abi::teec;
use secure_world::Profile;
use tee_proto::lifecycle::ServerKind;
use tee_sim::{Sim, SimConfig};
use teed::Hardening;
use teesys_init::StartOutcome;

fn linux_5_13_bnxt(profile: Profile) -> SimConfig {
    let mut cfg = SimConfig::for_profile(914, profile);
    cfg.teed.hardening = Hardening::LINUX;
    cfg.teed.seed_bugs.bnxtd_dma_buf = true;
    cfg.bnxtd.seed_bugs.no_shutdown_hook = true;
    cfg.expect_fixed = false;
    cfg
}

#[test]
fn seed_914ab19e471d_bnxt_registration_fails_on_the_4th_kexec_without_the_fix() {
    for profile in Profile::ALL {
        fourth_kexec_fails(profile);
    }
}

fn fourth_kexec_fails(profile: Profile) {
    let mut sim = Sim::scripted(linux_5_13_bnxt(profile));
    sim.power_on().unwrap();
    assert_eq!(sim.outcome(ServerKind::Bnxtd), Some(StartOutcome::Ready));
    for kexec in 1..=3 {
        sim.kexec().unwrap();
        assert_eq!(
            sim.outcome(ServerKind::Bnxtd),
            Some(StartOutcome::Ready),
            "kexec {kexec}"
        );
        let left = &sim.transitions()[kexec - 1].secure;
        assert_eq!(
            left.registered_bytes,
            kexec as u64 * (4 << 20),
            "one 4 MiB leak per kexec"
        );
    }
    sim.kexec().unwrap();
    assert_ne!(
        sim.outcome(ServerKind::Bnxtd),
        Some(StartOutcome::Ready),
        "4th kexec"
    );
    let teed = sim.teed().unwrap();
    assert!(teed.stats().register_refusals > 0);
    assert_eq!(
        teed.stats().last_register_ret,
        teec::ERROR_BAD_PARAMETERS,
        "Linux: -EINVAL (-22)"
    );
}

#[test]
fn seed_914ab19e471d_with_the_fix_kexec_cycles_leave_nothing_registered() {
    for profile in Profile::ALL {
        clean_cycles(profile);
    }
}

fn clean_cycles(profile: Profile) {
    let mut cfg = linux_5_13_bnxt(profile);
    cfg.teed.seed_bugs.bnxtd_dma_buf = false;
    cfg.bnxtd.seed_bugs.no_shutdown_hook = false;
    let mut sim = Sim::scripted(cfg);
    sim.power_on().unwrap();
    let cycles = if std::env::var_os("TEESYS_SOAK").is_some() {
        10_000
    } else {
        1_000
    };
    for _ in 0..cycles {
        sim.kexec().unwrap();
        assert_eq!(sim.outcome(ServerKind::Bnxtd), Some(StartOutcome::Ready));
    }
    assert!(sim
        .transitions()
        .iter()
        .all(|t| t.secure.registrations == 0 && t.secure.sessions == 0));
    assert_eq!(sim.transitions().len(), cycles);
}
