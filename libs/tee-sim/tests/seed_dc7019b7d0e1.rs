//! dc7019b7d0e1 "tee: add tee_shm_alloc_kernel_buf()".
//!
//! Before it, a driver that needed a registered multi-page buffer had to ask for a dma-buf
//! backed one, whose release runs only when the task returns to user mode. The task doing
//! kexec never does, so even a driver *with* a shutdown hook left its registration behind.
//!
//! Run against both OP-TEE profiles of the model: against 4.x teed also registers its argument
//! pages at probe and unregisters them at shutdown, which changes none of this.
#![allow(clippy::unwrap_used)]

use optee_abi::teec;
use secure_world::Profile;
use tee_proto::lifecycle::ServerKind;
use tee_proto::WireError;
use tee_sim::{Sim, SimConfig};
use teed::Hardening;
use teesys_init::StartOutcome;

fn config(no_kernel_buf: bool, profile: Profile) -> SimConfig {
    let mut cfg = SimConfig::for_profile(7019, profile);
    cfg.teed.hardening = Hardening::LINUX;
    cfg.teed.seed_bugs.no_kernel_buf = no_kernel_buf;
    cfg.expect_fixed = false;
    cfg
}

/// How bnxtd and tpmd came up after one kexec, and the typed errors teed answered bnxtd with.
#[derive(Debug, PartialEq)]
struct AfterKexec {
    bnxtd: Option<StartOutcome>,
    tpmd: Option<StartOutcome>,
    bnxtd_refusals: Vec<WireError>,
}

/// Powers on, then runs `kexecs` orderly kexecs, recording each boot.
fn kexecs(sim: &mut Sim, kexecs: usize) -> Vec<AfterKexec> {
    sim.power_on().unwrap();
    assert_eq!(sim.outcome(ServerKind::Bnxtd), Some(StartOutcome::Ready));
    (0..kexecs)
        .map(|_| {
            sim.kexec().unwrap();
            AfterKexec {
                bnxtd: sim.outcome(ServerKind::Bnxtd),
                tpmd: sim.outcome(ServerKind::Tpmd),
                bnxtd_refusals: sim.teed_refusals(ServerKind::Bnxtd),
            }
        })
        .collect()
}

fn ready() -> AfterKexec {
    AfterKexec {
        bnxtd: Some(StartOutcome::Ready),
        tpmd: Some(StartOutcome::Ready),
        bnxtd_refusals: Vec::new(),
    }
}

/// With the old behaviour, kexecs 1-3 come up Ready; on the 4th the secure world refuses bnxtd's
/// 4 MiB registration with TEE_ERROR_BAD_PARAMETERS (it overlaps what earlier boots left
/// registered) and bnxtd does not come up. tpmd's small buffer still fits.
#[test]
fn seed_dc7019b7d0e1_dma_buf_release_never_runs_before_kexec() {
    for profile in Profile::ALL {
        release_never_runs(profile);
    }
}

fn release_never_runs(profile: Profile) {
    let mut sim = Sim::scripted(config(true, profile));
    let boots = kexecs(&mut sim, 4);
    // bnxtd's shutdown hook freed its buffer and acked; the unregister was only queued.
    let left = &sim.transitions()[0].secure;
    assert!(
        left.registered_bytes >= 4 << 20,
        "the freed buffer is still registered: {left:?}"
    );
    for (kexec, record) in sim.transitions().iter().enumerate() {
        assert!(
            record.secure.registered_bytes >= (kexec as u64 + 1) * (4 << 20),
            "kexec {}: every earlier boot's buffer is still registered: {:?}",
            kexec + 1,
            record.secure
        );
    }
    for (kexec, boot) in boots[..3].iter().enumerate() {
        assert_eq!(*boot, ready(), "kexec {}", kexec + 1);
    }
    let fourth = &boots[3];
    assert_ne!(fourth.bnxtd, Some(StartOutcome::Ready), "4th kexec fails");
    assert_eq!(fourth.bnxtd, Some(StartOutcome::GivenUp), "{fourth:?}");
    assert_eq!(fourth.tpmd, Some(StartOutcome::Ready), "{fourth:?}");
    assert!(!fourth.bnxtd_refusals.is_empty(), "{fourth:?}");
    for refusal in &fourth.bnxtd_refusals {
        assert!(
            matches!(
                refusal,
                WireError::Tee {
                    code: teec::ERROR_BAD_PARAMETERS,
                    ..
                }
            ),
            "the registration is refused with TEE_ERROR_BAD_PARAMETERS: {refusal:?}"
        );
    }
}

#[test]
fn seed_dc7019b7d0e1_kernel_buffers_unregister_before_the_ack() {
    for profile in Profile::ALL {
        let mut sim = Sim::scripted(config(false, profile));
        for (kexec, boot) in kexecs(&mut sim, 8).iter().enumerate() {
            assert_eq!(*boot, ready(), "{profile}: kexec {}", kexec + 1);
        }
        assert_eq!(sim.transitions().len(), 8);
        assert!(sim
            .transitions()
            .iter()
            .all(|t| t.secure.registrations == 0));
    }
}

/// teed's own sweep (beyond Linux) also covers the old behaviour: defence in depth.
#[test]
fn seed_dc7019b7d0e1_teed_sweep_catches_what_a_deferred_release_left() {
    for profile in Profile::ALL {
        let mut cfg = config(true, profile);
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
}
