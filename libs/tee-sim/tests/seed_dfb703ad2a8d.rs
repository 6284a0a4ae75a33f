//! dfb703ad2a8d "tpm_ftpm_tee: Free and unregister TEE shared memory during kexec".
//!
//! tpm_ftpm_tee already had a shutdown hook, but its 8 KiB buffer was dma-buf backed, so the free
//! in that hook only queued the release: every kexec left the registration in OP-TEE.
//!
//! Run against both OP-TEE profiles of the model: against 4.x teed also registers its argument
//! pages at probe and unregisters them at shutdown, which changes none of this.
#![allow(clippy::unwrap_used)]

use secure_world::Profile;
use tee_sim::{Sim, SimConfig};
use teed::Hardening;

fn kexecs(dma_buf: bool, n: usize, profile: Profile) -> Vec<u64> {
    let mut cfg = SimConfig::for_profile(703, profile);
    cfg.teed.hardening = Hardening::LINUX;
    cfg.teed.seed_bugs.tpmd_dma_buf = dma_buf;
    cfg.expect_fixed = false;
    let mut sim = Sim::scripted(cfg);
    sim.power_on().unwrap();
    for _ in 0..n {
        sim.traffic(1).unwrap();
        sim.kexec().unwrap();
    }
    sim.transitions()
        .iter()
        .map(|t| t.secure.registered_bytes)
        .collect()
}

#[test]
fn seed_dfb703ad2a8d_dma_buf_ftpm_buffer_leaks_every_kexec() {
    for profile in Profile::ALL {
        let left = kexecs(true, 3, profile);
        assert_eq!(
            left,
            [8192, 2 * 8192, 3 * 8192],
            "{profile}: one 8 KiB registration per kexec"
        );
    }
}

#[test]
fn seed_dfb703ad2a8d_kernel_buffer_is_unregistered_in_the_shutdown_hook() {
    for profile in Profile::ALL {
        assert_eq!(kexecs(false, 3, profile), [0, 0, 0], "{profile}");
    }
}
