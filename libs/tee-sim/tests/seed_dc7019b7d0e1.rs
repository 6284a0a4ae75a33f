//! dc7019b7d0e1 "tee: add tee_shm_alloc_kernel_buf()".
//!
//! Before it, a driver that needed a registered multi-page buffer had to ask for a dma-buf
//! backed one, whose release runs only when the task returns to user mode. The task doing
//! kexec never does, so even a driver *with* a shutdown hook left its registration behind.
#![allow(clippy::unwrap_used)]

use tee_proto::lifecycle::ServerKind;
use tee_sim::{Sim, SimConfig};
use teed::Hardening;
use teesys_init::StartOutcome;

fn config(no_kernel_buf: bool) -> SimConfig {
    let mut cfg = SimConfig::new(7019);
    cfg.teed.hardening = Hardening::LINUX;
    cfg.teed.seed_bugs.no_kernel_buf = no_kernel_buf;
    cfg.expect_fixed = false;
    cfg
}

#[test]
fn seed_dc7019b7d0e1_dma_buf_release_never_runs_before_kexec() {
    let mut sim = Sim::scripted(config(true));
    sim.power_on().unwrap();
    sim.kexec().unwrap();
    // bnxtd's shutdown hook freed its buffer and acked; the unregister was only queued.
    let left = &sim.transitions()[0].secure;
    assert!(
        left.registered_bytes >= 4 << 20,
        "the freed buffer is still registered: {left:?}"
    );
    for _ in 0..3 {
        sim.kexec().unwrap();
    }
    assert_ne!(
        sim.outcome(ServerKind::Bnxtd),
        Some(StartOutcome::Ready),
        "4th kexec fails"
    );
}

#[test]
fn seed_dc7019b7d0e1_kernel_buffers_unregister_before_the_ack() {
    let mut sim = Sim::scripted(config(false));
    sim.power_on().unwrap();
    for _ in 0..8 {
        sim.kexec().unwrap();
        assert_eq!(sim.outcome(ServerKind::Bnxtd), Some(StartOutcome::Ready));
    }
    assert!(sim
        .transitions()
        .iter()
        .all(|t| t.secure.registrations == 0));
}

/// teed's own sweep (beyond Linux) also covers the old behaviour: defence in depth.
#[test]
fn seed_dc7019b7d0e1_teed_sweep_catches_what_a_deferred_release_left() {
    let mut cfg = config(true);
    cfg.teed.hardening = Hardening::default();
    let mut sim = Sim::scripted(cfg);
    sim.power_on().unwrap();
    for _ in 0..8 {
        sim.kexec().unwrap();
        assert_eq!(sim.outcome(ServerKind::Bnxtd), Some(StartOutcome::Ready));
    }
    assert!(sim
        .transitions()
        .iter()
        .all(|t| t.secure.registrations == 0));
}
