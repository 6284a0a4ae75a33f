//! Per-client quotas (issue 14, point 5): one client at its quota hears `QuotaExceeded`, and
//! the other still registers its buffer and opens its session, because both quotas together
//! fit the secure heap.
#![allow(clippy::unwrap_used)]

use optee_abi::uuid::{BNXT_TA, FTPM_TA};
use secure_world::Config as SecureConfig;
use tee_proto::lifecycle::{BootKind, ServerKind};
use tee_proto::teed::{TeedRequest, TeedResponse};
use tee_proto::WireError;
use tee_sim::TeedHarness;
use tee_sim::{BNXTD, TPMD};
use teed::{TeedConfig, BNXTD_QUOTA};

const QUOTA: TeedResponse = TeedResponse::Error(WireError::QuotaExceeded);

fn serving() -> TeedHarness {
    let mut h = TeedHarness::new(TeedConfig::new(), SecureConfig::default());
    h.connect(TPMD, ServerKind::Tpmd);
    h.connect(BNXTD, ServerKind::Bnxtd);
    h.boot(BootKind::Cold, 1).unwrap();
    h
}

fn session(r: TeedResponse) -> u32 {
    match r {
        TeedResponse::SessionOpened { session } => session,
        other => panic!("expected a session, got {other:?}"),
    }
}

fn shm(r: TeedResponse) -> u32 {
    match r {
        TeedResponse::ShmAllocated { shm, .. } => shm,
        other => panic!("expected a buffer, got {other:?}"),
    }
}

#[test]
fn a_client_at_its_quota_is_refused_while_the_other_still_registers_and_opens() {
    let mut h = serving();
    // bnxtd takes everything its quota allows: two sessions, two 4 MiB buffers.
    let sessions = [
        session(h.open(BNXTD, BNXT_TA).unwrap()),
        session(h.open(BNXTD, BNXT_TA).unwrap()),
    ];
    assert_eq!(h.open(BNXTD, BNXT_TA).unwrap(), QUOTA);
    let first = shm(h.alloc(BNXTD, 4 << 20).unwrap());
    shm(h.alloc(BNXTD, 4 << 20).unwrap());
    assert_eq!(h.alloc(BNXTD, 4096).unwrap(), QUOTA, "buffers");
    // Freeing one makes room for a buffer, but not for more bytes than the quota.
    assert_eq!(h.free(BNXTD, first).unwrap(), TeedResponse::ShmFreed);
    assert_eq!(
        h.alloc(BNXTD, (BNXTD_QUOTA.bytes - (4 << 20) + 4096) as u32)
            .unwrap(),
        QUOTA,
        "registered bytes"
    );

    // tpmd's normal needs still fit, in teed and in the secure heap.
    shm(h.alloc(TPMD, 8192).unwrap());
    let tpm_session = session(h.open(TPMD, FTPM_TA).unwrap());
    let stats = h.secure.stats();
    assert_eq!((stats.registrations, stats.sessions), (2, 3));

    // Calls in flight: bnxtd's fifth concurrent invoke is refused before any SMC, tpmd's is not.
    h.hold_smcs = true;
    let invoke = |session| TeedRequest::Invoke {
        session,
        func: 0,
        cancel_id: 0,
        params: heapless::Vec::new(),
    };
    let calls = BNXTD_QUOTA.calls as usize;
    let held: Vec<u32> = (0..calls)
        .map(|i| h.send(BNXTD, invoke(sessions[i % 2])))
        .collect();
    let refused = h.send(BNXTD, invoke(sessions[0]));
    let tpm_call = h.send(TPMD, invoke(tpm_session));
    // Refused at once: answered before any held SMC runs or any timer fires.
    assert_eq!(h.wait_reply(BNXTD, refused).unwrap(), QUOTA);
    assert_eq!(h.take_replies(), vec![], "the others are in flight");
    h.hold_smcs = false;
    for id in held {
        assert!(matches!(
            h.wait_reply(BNXTD, id).unwrap(),
            TeedResponse::Invoked { .. }
        ));
    }
    assert!(matches!(
        h.wait_reply(TPMD, tpm_call).unwrap(),
        TeedResponse::Invoked { .. }
    ));
    assert!(h.teed.stats().quota_refusals >= 4);
}
