//! Cookies never collide within a secure world's lifetime, even without the journal: the epoch
//! holds enough of the boot id and the generation that 1,000 teed restarts in one boot, or
//! 1,000 boots, hand the secure world 1,000 sets of distinct cookies.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use optee_abi::uuid::FTPM_TA;
use secure_world::Config as SecureConfig;
use tee_proto::lifecycle::{BootKind, ServerEvent, ServerKind, ShutdownReason};
use tee_proto::teed::{TeedRequest, TeedResponse};
use tee_sim::TeedHarness;
use teed::{ClientId, TeedConfig};

fn no_journal() -> TeedConfig {
    let mut cfg = TeedConfig::new();
    cfg.hardening.journal = false;
    cfg
}

/// One incarnation's life: a buffer and a session, released, then an orderly shutdown.
fn serve_once(h: &mut TeedHarness, generation: u32) {
    let tpmd = ClientId {
        kind: ServerKind::Tpmd,
        generation,
    };
    h.connect(tpmd, ServerKind::Tpmd);
    let shm = match h.alloc(tpmd, 8192).unwrap() {
        TeedResponse::ShmAllocated { shm, .. } => shm,
        other => panic!("generation {generation}: {other:?}"),
    };
    let session = match h.open(tpmd, FTPM_TA).unwrap() {
        TeedResponse::SessionOpened { session } => session,
        other => panic!("generation {generation}: {other:?}"),
    };
    assert_eq!(h.free(tpmd, shm).unwrap(), TeedResponse::ShmFreed);
    let close = TeedRequest::CloseSession { session };
    assert_eq!(h.request(tpmd, close).unwrap(), TeedResponse::SessionClosed);
    let ack = h.shutdown(ShutdownReason::Kexec).unwrap();
    assert!(matches!(ack, ServerEvent::ShutdownAck(_)), "{ack:?}");
}

fn assert_distinct(cookies: &[u64], runs: usize) {
    let distinct: BTreeSet<u64> = cookies.iter().copied().collect();
    assert!(cookies.len() >= runs, "every run registered a buffer");
    assert_eq!(distinct.len(), cookies.len(), "a cookie came back");
}

#[test]
fn a_thousand_restarts_in_one_boot_reuse_no_cookie_without_the_journal() {
    let mut h = TeedHarness::new(no_journal(), SecureConfig::default());
    h.boot(BootKind::Cold, 1).unwrap();
    serve_once(&mut h, 1);
    for generation in 2..=1000 {
        h.new_teed(no_journal());
        let ready = h.restart(BootKind::Cold, generation).unwrap();
        assert_eq!(ready, ServerEvent::Ready { generation });
        serve_once(&mut h, generation);
    }
    assert_distinct(&h.cookies_seen, 1000);
}

#[test]
fn a_thousand_boots_reuse_no_cookie_without_the_journal() {
    let mut h = TeedHarness::new(no_journal(), SecureConfig::default());
    for boot in 1..=1000u32 {
        h.new_teed(no_journal());
        // Generations restart with every boot, and some boots restart teed once more.
        let generation = 1 + boot % 3;
        let ready = h.boot(BootKind::Kexec, generation).unwrap();
        assert_eq!(ready, ServerEvent::Ready { generation });
        serve_once(&mut h, generation);
    }
    assert_distinct(&h.cookies_seen, 1000);
}
