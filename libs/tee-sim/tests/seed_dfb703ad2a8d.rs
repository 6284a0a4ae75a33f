//! dfb703ad2a8d "tpm_ftpm_tee: Free and unregister TEE shared memory during kexec".
//!
//! tpm_ftpm_tee already had a shutdown hook, but its 8 KiB buffer was dma-buf backed, so the free
//! in that hook only queued the release: every kexec left the registration in OP-TEE.
#![allow(clippy::unwrap_used)]

use tee_sim::{Sim, SimConfig};
use teed::Hardening;

fn kexecs(dma_buf: bool, n: usize) -> Vec<u64> {
    let mut cfg = SimConfig::new(703);
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
    let left = kexecs(true, 3);
    assert_eq!(
        left,
        [8192, 2 * 8192, 3 * 8192],
        "one 8 KiB registration per kexec"
    );
}

#[test]
fn seed_dfb703ad2a8d_kernel_buffer_is_unregistered_in_the_shutdown_hook() {
    assert_eq!(kexecs(false, 3), [0, 0, 0]);
}
