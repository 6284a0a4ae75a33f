//! ec185dd3ab25 "optee: fix memory leak when failing to register shm pages".
//!
//! Before it, `pool_op_alloc` returned the registration error without freeing the pages it had
//! allocated, so every refused registration leaked normal-world memory for good.
//!
//! Run against both OP-TEE profiles of the model: against 4.x teed also registers its argument
//! pages at probe and unregisters them at shutdown, which changes none of this.
#![allow(clippy::unwrap_used)]

use optee_abi::teec;
use optee_abi::uuid::BNXT_TA;
use secure_world::{Config as SecureConfig, Profile};
use tee_proto::lifecycle::{BootKind, ServerKind};
use tee_proto::teed::TeedResponse;
use tee_proto::WireError;
use tee_sim::TeedHarness;
use tee_sim::BNXTD;
use teed::TeedConfig;

/// Fills the secure heap with registrations, then makes `attempts` more that are refused.
/// Returns the pages teed holds before and after the refused ones.
fn refused_registrations(leak: bool, attempts: u32, profile: Profile) -> (u64, u64) {
    let mut cfg = TeedConfig::new();
    cfg.seed_bugs.leak_pages_on_register_failure = leak;
    // Filling the secure heap takes more than one client's quota: Linux has none.
    cfg.policy.unlimited();
    let mut h = TeedHarness::new(cfg, SecureConfig::for_profile(profile));
    h.connect(BNXTD, ServerKind::Bnxtd);
    h.boot(BootKind::Cold, 1).unwrap();
    h.open(BNXTD, BNXT_TA).unwrap();
    loop {
        match h.alloc(BNXTD, 4 << 20).unwrap() {
            TeedResponse::ShmAllocated { .. } => continue,
            TeedResponse::Error(WireError::Tee { code, .. }) => {
                assert_eq!(code, teec::ERROR_BAD_PARAMETERS);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    let before = h.teed.frames_used_pages();
    for _ in 0..attempts {
        assert!(matches!(
            h.alloc(BNXTD, 4 << 20).unwrap(),
            TeedResponse::Error(_)
        ));
    }
    (before, h.teed.frames_used_pages())
}

#[test]
fn seed_ec185dd3ab25_refused_registrations_leak_pages_without_the_fix() {
    for profile in Profile::ALL {
        let (before, after) = refused_registrations(true, 10, profile);
        assert_eq!(
            after - before,
            10 * 1024,
            "{profile}: each refused 4 MiB registration keeps its 1024 pages"
        );
    }
}

#[test]
fn seed_ec185dd3ab25_refused_registrations_free_their_pages() {
    for profile in Profile::ALL {
        let (before, after) = refused_registrations(false, 10, profile);
        assert_eq!(after, before, "{profile}");
    }
}
