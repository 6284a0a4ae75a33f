//! adf752af454e "optee: refuse to load the driver under the kdump kernel".
//!
//! A crash can leave every secure thread suspended mid-call, waiting for an RPC answer that the
//! dead kernel will never give. The kdump kernel's probe then waited for ever in the cache drain
//! (EBUSY / ETHREAD_LIMIT, a hung task). The fix refuses to probe in the kdump kernel, before
//! any SMC. teed bounds the old behaviour with its probe deadline, so the test can show it.
//!
//! Run against both OP-TEE profiles of the model: against 4.x the threads are left suspended in
//! calls that named teed's registered argument pages, which the later boot reclaims too.
#![allow(clippy::unwrap_used)]

use secure_world::Profile;
use tee_proto::lifecycle::{BootKind, DeclineReason, ServerEvent};
use tee_sim::TeedHarness;
use tee_sim::BNXTD;
use teed::{Hardening, TeedConfig};

/// A normal boot whose two secure threads are both suspended when the kernel crashes.
fn crashed_with_threads_suspended(next: TeedConfig, profile: Profile) -> TeedHarness {
    let h = TeedHarness::with_threads_left_suspended_on(BNXTD, next, profile);
    assert_eq!(h.secure.stats().threads_suspended, 2);
    h
}

#[test]
fn seed_adf752af454e_probing_in_the_kdump_kernel_never_completes() {
    for profile in Profile::ALL {
        probe_in_kdump_kernel(profile);
    }
}

fn probe_in_kdump_kernel(profile: Profile) {
    let mut cfg = TeedConfig::new();
    cfg.hardening = Hardening::LINUX;
    cfg.seed_bugs.probe_in_crash_kernel = true;
    let mut h = crashed_with_threads_suspended(cfg, profile);
    let event = h.boot(BootKind::CrashKernel, 2).unwrap();
    // Linux hung here; teed's deadline turns the hang into a refusal.
    assert_eq!(
        event,
        ServerEvent::Declined {
            reason: DeclineReason::DeadlineExpired
        }
    );
    assert!(
        h.smcs > 10,
        "the probe kept asking a secure world that never became idle"
    );
    assert!(!h.teed.has_served());
}

#[test]
fn seed_adf752af454e_kdump_kernel_declines_before_any_smc_and_a_later_boot_is_clean() {
    for profile in Profile::ALL {
        declined_then_clean(profile);
    }
}

fn declined_then_clean(profile: Profile) {
    let mut h = crashed_with_threads_suspended(TeedConfig::new(), profile);
    let event = h.boot(BootKind::CrashKernel, 2).unwrap();
    assert_eq!(
        event,
        ServerEvent::Declined {
            reason: DeclineReason::CrashKernel
        }
    );
    assert_eq!(h.smcs, 0);
    // A later normal boot (kexec from the crash kernel, no reset) comes up clean: the orphans
    // are resumed and the journal's leftovers reclaimed.
    h.new_teed(TeedConfig::new());
    assert_eq!(
        h.boot(BootKind::Kexec, 3).unwrap(),
        ServerEvent::Ready { generation: 3 }
    );
    let stats = h.secure.stats();
    // Nothing but this boot's own argument pages (4.x).
    let own = usize::from(h.teed.arg_pages().is_some());
    assert_eq!(own, usize::from(profile == Profile::Optee4x));
    assert_eq!(
        (stats.threads_suspended, stats.registrations, stats.sessions),
        (0, own, 0),
        "{profile}"
    );
}
