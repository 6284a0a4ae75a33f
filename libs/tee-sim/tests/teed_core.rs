//! teed's core against the secure-world model: probe, sessions, shm, isolation, deadlines.
#![allow(clippy::unwrap_used)]

use optee_abi::teec;
use optee_abi::uuid::{BNXT_TA, FTPM_TA};
use secure_world::ta::ftpm::SUBMIT_COMMAND as FTPM_SUBMIT_COMMAND;
use secure_world::Config as SecureConfig;
use tee_proto::lifecycle::{BootKind, DeclineReason, ServerEvent, ServerKind, ShutdownReason};
use tee_proto::teed::{Param, ParamOut, TeedResponse};
use tee_proto::WireError;
use tee_sim::sim::consumers::TPM_STARTUP_CLEAR;
use tee_sim::TeedHarness;
use tee_sim::{BNXTD, TPMD};
use teed::{ClientId, Hardening, TeedConfig};

fn harness(cfg: TeedConfig) -> TeedHarness {
    let mut h = TeedHarness::new(cfg, SecureConfig::default());
    h.connect(TPMD, ServerKind::Tpmd);
    h.connect(BNXTD, ServerKind::Bnxtd);
    h
}

fn session_of(r: TeedResponse) -> u32 {
    match r {
        TeedResponse::SessionOpened { session } => session,
        other => panic!("expected a session, got {other:?}"),
    }
}

fn shm_of(r: TeedResponse) -> (u32, u64) {
    match r {
        TeedResponse::ShmAllocated { shm, pa, .. } => (shm, pa),
        other => panic!("expected a buffer, got {other:?}"),
    }
}

#[test]
fn probe_reaches_ready_and_enables_the_cache() {
    let mut h = harness(TeedConfig::new());
    assert_eq!(
        h.boot(BootKind::Cold, 1).unwrap(),
        ServerEvent::Ready { generation: 1 }
    );
    assert!(h.teed.is_serving());
    assert!(h.secure.stats().cache_enabled);
    assert!(
        h.smcs >= 7,
        "UID, revision, OS revision, caps, threads, drain, enable"
    );
}

#[test]
fn crash_kernel_declines_before_any_smc() {
    let mut h = harness(TeedConfig::new());
    let event = h.boot(BootKind::CrashKernel, 1).unwrap();
    assert_eq!(
        event,
        ServerEvent::Declined {
            reason: DeclineReason::CrashKernel
        }
    );
    assert_eq!(h.smcs, 0);
    // Clients hear that the TEE is unavailable.
    assert_eq!(
        h.open(BNXTD, BNXT_TA).unwrap(),
        TeedResponse::Error(WireError::TeeUnavailable)
    );
}

#[test]
fn bnxt_session_buffer_and_coredump_round_trip() {
    let mut h = harness(TeedConfig::new());
    h.boot(BootKind::Cold, 1).unwrap();
    let session = session_of(h.open(BNXTD, BNXT_TA).unwrap());
    let (shm, pa) = shm_of(h.alloc(BNXTD, 4 << 20).unwrap());
    assert_eq!(h.secure.stats().registrations, 1);
    assert_eq!(h.secure.stats().registered_bytes, 4 << 20);
    let params = [
        Param::MemrefInOut {
            shm,
            offset: 0,
            size: 4 << 20,
        },
        Param::ValueIn {
            a: 4 << 20,
            b: 4 << 20,
            c: 0,
        },
        Param::None,
        Param::None,
    ];
    match h.invoke(BNXTD, session, 3, &params).unwrap() {
        TeedResponse::Invoked { ret, params, .. } => {
            assert_eq!(ret, teec::SUCCESS);
            assert_eq!(params[0], ParamOut::Memref { size: 4 << 20 });
        }
        other => panic!("{other:?}"),
    }
    let mut got = vec![0u8; 4096];
    use optee_abi::mem::PhysMem;
    h.ram.read(pa + 12345, &mut got).unwrap();
    let mut want = vec![0u8; 4096];
    bnxt_image::coredump_chunk((4 << 20) + 12345, &mut want);
    assert_eq!(
        got, want,
        "the second 4 MiB of the image, read through the shm"
    );
    assert_eq!(h.free(BNXTD, shm).unwrap(), TeedResponse::ShmFreed);
    assert_eq!(
        h.request(
            BNXTD,
            tee_proto::teed::TeedRequest::CloseSession { session }
        )
        .unwrap(),
        TeedResponse::SessionClosed
    );
    let stats = h.secure.stats();
    assert_eq!((stats.registrations, stats.sessions), (0, 0));
}

#[test]
fn clients_reach_only_their_own_sessions_buffers_and_tas() {
    let mut h = harness(TeedConfig::new());
    h.boot(BootKind::Cold, 1).unwrap();
    let session = session_of(h.open(BNXTD, BNXT_TA).unwrap());
    let (shm, _) = shm_of(h.alloc(BNXTD, 8192).unwrap());
    // tpmd may not open the BNXT TA, use bnxtd's session, or name bnxtd's buffer.
    assert_eq!(
        h.open(TPMD, BNXT_TA).unwrap(),
        TeedResponse::Error(WireError::Denied)
    );
    assert_eq!(
        h.invoke(TPMD, session, 0, &[]).unwrap(),
        TeedResponse::Error(WireError::Denied)
    );
    assert_eq!(
        h.free(TPMD, shm).unwrap(),
        TeedResponse::Error(WireError::Denied)
    );
    // Through bnxtd's session, a memref into bnxtd's buffer is refused before any SMC (the
    // session check answers first: see the next test for the buffer-owner check).
    shm_of(h.alloc(TPMD, 8192).unwrap());
    let before = h.smcs;
    let steal = [Param::MemrefIn {
        shm,
        offset: 0,
        size: 16,
    }];
    assert_eq!(
        h.invoke(TPMD, session, 0, &steal).unwrap(),
        TeedResponse::Error(WireError::Denied)
    );
    assert_eq!(h.smcs, before);
    // Out-of-bounds memrefs into one's own buffer are bad requests.
    let oob = [
        Param::MemrefIn {
            shm,
            offset: 8000,
            size: 500,
        },
        Param::None,
        Param::None,
        Param::None,
    ];
    assert_eq!(
        h.invoke(BNXTD, session, 0, &oob).unwrap(),
        TeedResponse::Error(WireError::BadRequest)
    );
    // Unknown clients are denied outright.
    assert_eq!(
        h.open(
            ClientId {
                kind: ServerKind::Tpmd,
                generation: 99
            },
            FTPM_TA
        )
        .unwrap(),
        TeedResponse::Error(WireError::Denied)
    );
}

/// The buffer-owner check on its own: tpmd invokes the fTPM through its *own* session (so the
/// session check passes) with a memref naming bnxtd's buffer. teed refuses with `Denied` before
/// any SMC, and bnxtd's buffer keeps its contents. The same call with tpmd's own buffer in that
/// place reaches the TA and gets its answer written: only the buffer's owner differs.
#[test]
fn a_memref_into_another_clients_buffer_is_refused_by_the_owner_check() {
    use optee_abi::mem::PhysMem;
    let mut h = harness(TeedConfig::new());
    h.boot(BootKind::Cold, 1).unwrap();
    session_of(h.open(BNXTD, BNXT_TA).unwrap());
    let (victim, victim_pa) = shm_of(h.alloc(BNXTD, 8192).unwrap());
    let pattern: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 3) as u8).collect();
    h.ram.write(victim_pa, &pattern).unwrap();

    let own_session = session_of(h.open(TPMD, FTPM_TA).unwrap());
    let (own, own_pa) = shm_of(h.alloc(TPMD, 8192).unwrap());
    h.ram.write(own_pa, &TPM_STARTUP_CLEAR).unwrap();
    let command = Param::MemrefIn {
        shm: own,
        offset: 0,
        size: 12,
    };
    let denied = TeedResponse::Error(WireError::Denied);
    let before = h.smcs;
    // The TA would write its response into p1: bnxtd's buffer.
    let write_into_victim = [
        command,
        Param::MemrefInOut {
            shm: victim,
            offset: 0,
            size: 4096,
        },
    ];
    assert_eq!(
        h.invoke(TPMD, own_session, FTPM_SUBMIT_COMMAND, &write_into_victim)
            .unwrap(),
        denied
    );
    // The TA would read its command from bnxtd's buffer.
    let read_from_victim = [
        Param::MemrefIn {
            shm: victim,
            offset: 0,
            size: 12,
        },
        Param::MemrefInOut {
            shm: own,
            offset: 4096,
            size: 4096,
        },
    ];
    assert_eq!(
        h.invoke(TPMD, own_session, FTPM_SUBMIT_COMMAND, &read_from_victim)
            .unwrap(),
        denied
    );
    for output in [
        Param::MemrefOut {
            shm: victim,
            offset: 0,
            size: 16,
        },
        Param::MemrefIn {
            shm: victim,
            offset: 0,
            size: 16,
        },
    ] {
        assert_eq!(
            h.invoke(TPMD, own_session, FTPM_SUBMIT_COMMAND, &[command, output])
                .unwrap(),
            denied
        );
    }
    assert_eq!(h.smcs, before, "refused before any SMC");
    // A buffer nobody owns is not found: the refusal above is about whose buffer it is.
    let unknown = [
        command,
        Param::MemrefInOut {
            shm: victim.wrapping_add(1000),
            offset: 0,
            size: 4096,
        },
    ];
    assert_eq!(
        h.invoke(TPMD, own_session, FTPM_SUBMIT_COMMAND, &unknown)
            .unwrap(),
        TeedResponse::Error(WireError::NotFound)
    );
    let mut now = vec![0u8; 8192];
    h.ram.read(victim_pa, &mut now).unwrap();
    assert!(now == pattern, "bnxtd's buffer is untouched");

    // The control: tpmd's own buffer in p1, through the same session, reaches the TA, which
    // writes TPM2_Startup's response there.
    let into_own = [
        command,
        Param::MemrefInOut {
            shm: own,
            offset: 4096,
            size: 4096,
        },
    ];
    match h
        .invoke(TPMD, own_session, FTPM_SUBMIT_COMMAND, &into_own)
        .unwrap()
    {
        TeedResponse::Invoked { ret, .. } => assert_eq!(ret, teec::SUCCESS),
        other => panic!("{other:?}"),
    }
    assert!(h.smcs > before, "the control reached the secure world");
    let mut response = [0u8; 10];
    h.ram.read(own_pa + 4096, &mut response).unwrap();
    assert_eq!(response[..2], [0x80, 0x01], "a TPM response: {response:x?}");
    h.ram.read(victim_pa, &mut now).unwrap();
    assert!(now == pattern, "bnxtd's buffer is still untouched");
}

#[test]
fn a_stale_generation_gets_server_restarted() {
    let mut h = harness(TeedConfig::new());
    h.boot(BootKind::Cold, 3).unwrap();
    let frame = tee_proto::Frame {
        header: tee_proto::Header::new(BNXTD.generation, 2, 77),
        body: tee_proto::teed::TeedRequest::ShmAlloc { size: 4096 },
    };
    h.teed.handle_client(h.now, BNXTD, frame);
    h.settle();
    let replies = h.take_replies();
    assert_eq!(replies.len(), 1);
    assert_eq!(
        replies[0].1.body,
        TeedResponse::Error(WireError::ServerRestarted { generation: 3 })
    );
    assert_eq!(replies[0].1.header.request_id, 77);
}

#[test]
fn shutdown_sweeps_leftovers_and_drains_the_cache() {
    let mut h = harness(TeedConfig::new());
    h.boot(BootKind::Cold, 1).unwrap();
    session_of(h.open(BNXTD, BNXT_TA).unwrap());
    shm_of(h.alloc(BNXTD, 4 << 20).unwrap());
    shm_of(h.alloc(TPMD, 8192).unwrap());
    match h.shutdown(ShutdownReason::Kexec).unwrap() {
        ServerEvent::ShutdownAck(report) => {
            assert_eq!(report.unregistered, 2);
            assert_eq!(report.sessions_closed, 1);
            assert_eq!(report.errors, 0);
        }
        other => panic!("{other:?}"),
    }
    let stats = h.secure.stats();
    assert_eq!(
        (stats.registrations, stats.sessions, stats.cached_buffers),
        (0, 0, 0)
    );
    assert!(
        !stats.cache_enabled,
        "the mapped drain leaves the cache disabled"
    );
    assert!(h.teed.is_stopped());
}

/// Every secure thread left suspended by a world that died mid-call (a foreign interrupt
/// arrived in each): Linux's probe waits for ever; teed's deadline fires, and with its
/// hardening it resumes the orphans instead.
#[test]
fn probe_deadline_fires_against_a_secure_world_that_never_becomes_idle() {
    let mut linux = TeedConfig::new();
    linux.hardening = Hardening::LINUX;
    let mut h = TeedHarness::with_threads_left_suspended(BNXTD, linux);
    assert_eq!(
        h.secure.stats().threads_suspended,
        2,
        "both threads suspended in FOREIGN_INTR"
    );
    let event = h.boot(BootKind::Kexec, 2).unwrap();
    assert_eq!(
        event,
        ServerEvent::Declined {
            reason: DeclineReason::DeadlineExpired
        }
    );
    assert!(
        h.now >= TeedConfig::new().deadlines.probe_ms,
        "bounded by the probe deadline"
    );
    assert_eq!(
        h.secure.stats().threads_suspended,
        2,
        "nothing could resume them"
    );

    h.new_teed(TeedConfig::new());
    assert_eq!(
        h.boot(BootKind::Kexec, 3).unwrap(),
        ServerEvent::Ready { generation: 3 }
    );
    assert_eq!(h.teed.stats().orphans_resumed, 2);
    assert_eq!(h.secure.stats().threads_suspended, 0);
}

/// The secure world's process is gone: a probe declines as unavailable (not incompatible), and
/// a serving teed answers new requests "TEE unavailable" instead of entering a dead conduit.
#[test]
fn a_lost_conduit_is_a_typed_unavailability() {
    let mut h = harness(TeedConfig::new());
    h.conduit_broken = true;
    assert_eq!(
        h.boot(BootKind::Cold, 1).unwrap(),
        ServerEvent::Declined {
            reason: DeclineReason::SecureWorldUnavailable
        }
    );
    assert_eq!(h.events.len(), 1, "declined once: {:?}", h.events);

    let mut h = harness(TeedConfig::new());
    h.boot(BootKind::Cold, 1).unwrap();
    session_of(h.open(BNXTD, BNXT_TA).unwrap());
    h.conduit_broken = true;
    // The call in flight fails with a typed error; the next is refused outright.
    assert!(matches!(
        h.alloc(BNXTD, 8192).unwrap(),
        TeedResponse::Error(WireError::Tee { .. })
    ));
    assert_eq!(
        h.alloc(BNXTD, 8192).unwrap(),
        TeedResponse::Error(WireError::TeeUnavailable)
    );
    // Shutdown still completes, counting what it could not release.
    match h.shutdown(ShutdownReason::Kexec).unwrap() {
        ServerEvent::ShutdownAck(report) => assert!(report.errors > 0),
        other => panic!("{other:?}"),
    }
}

/// The probe drains the stale RPC cache before any yielding call, as Linux's optee_probe does
/// (drivers/tee/optee/smc_abi.c: optee_disable_unmapped_shm_cache before the first call;
/// b5c10dd04b74): a world that crashed with a cached RPC argument and a registration left over
/// is drained first, and only then does the journal's reclaim enter the secure world.
#[test]
fn probe_drains_the_stale_cache_before_the_journal_reclaim() {
    use optee_abi::mem::PhysMem;
    use optee_abi::smc::func;
    use std::cell::RefCell;
    use std::rc::Rc;

    let mut h = harness(TeedConfig::new());
    h.boot(BootKind::Cold, 1).unwrap();
    let session = session_of(h.open(TPMD, FTPM_TA).unwrap());
    let (shm, pa) = shm_of(h.alloc(TPMD, 8192).unwrap());
    // TPM2_Shutdown saves the TPM's state: the fTPM writes NV back through secure storage,
    // an RPC (NVMem.c _plat__NvCommit), whose argument the cache keeps.
    let shutdown = tpmd::shutdown_clear_command();
    h.ram.write(pa, &shutdown).unwrap();
    let submit = [
        Param::MemrefIn {
            shm,
            offset: 0,
            size: shutdown.len() as u32,
        },
        Param::MemrefInOut {
            shm,
            offset: 4096,
            size: 4096,
        },
    ];
    h.invoke(TPMD, session, FTPM_SUBMIT_COMMAND, &submit)
        .unwrap();
    assert!(
        h.secure.stats().cached_buffers > 0,
        "the storage RPC left a cached argument"
    );

    // Crash: no shutdown; the next kernel's teed probes the same secure world.
    h.new_teed(TeedConfig::new());
    let functions = Rc::new(RefCell::new(Vec::new()));
    let seen = Rc::clone(&functions);
    h.script = Some(Box::new(move |regs| {
        seen.borrow_mut().push(regs[0] as u32);
        tee_sim::Twist::Honest
    }));
    assert_eq!(
        h.boot(BootKind::Kexec, 2).unwrap(),
        ServerEvent::Ready { generation: 2 }
    );
    let functions = functions.borrow();
    let first_call = functions
        .iter()
        .position(|&f| f == func::CALL_WITH_ARG)
        .expect("the reclaim made yielding calls");
    let last_drain = functions
        .iter()
        .rposition(|&f| f == func::DISABLE_SHM_CACHE)
        .expect("the probe drained");
    assert!(
        last_drain < first_call,
        "drain before any yielding call: {functions:x?}"
    );
    let stats = h.teed.stats();
    assert!(stats.cache_cookies_discarded > 0, "{stats:?}");
    assert!(
        stats.reclaimed_registrations > 0 && stats.reclaimed_sessions > 0,
        "{stats:?}"
    );
    assert_eq!(stats.stale_rpc_cookies, 0);
}
