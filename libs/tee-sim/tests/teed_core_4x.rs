//! teed's core against the OP-TEE 4.x profile of the model: argument pages registered at probe
//! and used by every call (CALL_WITH_REGD_ARG, thread_optee_smc.c; Linux smc_abi.c does the
//! same), asynchronous notifications (notif.c, notif_default.c; Linux smc_abi.c irq_handler),
//! and what Linux mainline's shutdown leaves behind (smc_abi.c optee_shutdown) cleaned up at
//! shutdown, or at the next probe after a crash.
#![allow(clippy::unwrap_used)]

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use optee_abi::msg::{cmd, rpc_cmd, Direction, MsgArg, Param};
use optee_abi::smc::{func, ret, rpc, Regs};
use optee_abi::uuid::{BNXT_TA, FTPM_TA};
use secure_world::{Config as SecureConfig, Profile};
use tee_proto::lifecycle::{BootKind, ServerEvent, ServerKind, ShutdownReason};
use tee_proto::teed::{TeedRequest, TeedResponse};
use tee_sim::{TeedHarness, Twist, BNXTD, TPMD};
use teed::TeedConfig;

/// A harness on `profile` whose every SMC function id is recorded.
fn harness(profile: Profile) -> (TeedHarness, Rc<RefCell<Vec<u32>>>) {
    let mut h = TeedHarness::new(TeedConfig::new(), SecureConfig::for_profile(profile));
    h.connect(TPMD, ServerKind::Tpmd);
    h.connect(BNXTD, ServerKind::Bnxtd);
    let seen = Rc::new(RefCell::new(Vec::new()));
    let log = Rc::clone(&seen);
    h.script = Some(Box::new(move |regs: &Regs| {
        log.borrow_mut().push(regs[0] as u32);
        Twist::Honest
    }));
    (h, seen)
}

fn session_of(r: TeedResponse) -> u32 {
    match r {
        TeedResponse::SessionOpened { session } => session,
        other => panic!("expected a session, got {other:?}"),
    }
}

fn shm_of(r: TeedResponse) -> u32 {
    match r {
        TeedResponse::ShmAllocated { shm, .. } => shm,
        other => panic!("expected a buffer, got {other:?}"),
    }
}

/// Opens a BNXT session and registers a buffer for bnxtd: (session, shm).
fn bnxtd_holds(h: &mut TeedHarness) -> (u32, u32) {
    let session = session_of(h.open(BNXTD, BNXT_TA).unwrap());
    let shm = shm_of(h.alloc(BNXTD, 64 << 10).unwrap());
    (session, shm)
}

#[test]
fn probe_registers_the_argument_pages_and_every_call_names_them_smc_abi_c() {
    let (mut h, seen) = harness(Profile::Optee4x);
    assert_eq!(
        h.boot(BootKind::Cold, 1).unwrap(),
        ServerEvent::Ready { generation: 1 }
    );
    let caps = h.teed.secure_caps();
    assert_eq!((caps.rpc_param_count, caps.async_notif), (4, true));
    let (cookie, _, bytes) = h.teed.arg_pages().expect("argument pages registered");
    assert_eq!(bytes, 16 * 4096, "one page per message slot");
    let registered: Vec<u64> = h.secure.registrations().map(|r| r.cookie).collect();
    assert_eq!(registered, [cookie]);
    assert!(h.teed.notifications_enabled());
    assert!(h.secure.async_notif().started);
    // Linux does not enable the RPC cache when the RPC struct travels with the call.
    assert!(!h.secure.stats().cache_enabled);
    // The registration itself went with CALL_WITH_RPC_ARG; nothing used CALL_WITH_ARG.
    assert!(seen.borrow().contains(&func::CALL_WITH_RPC_ARG));
    assert!(!seen.borrow().contains(&func::CALL_WITH_ARG));

    seen.borrow_mut().clear();
    let (session, shm) = bnxtd_holds(&mut h);
    let yielding: Vec<u32> = seen
        .borrow()
        .iter()
        .copied()
        .filter(|f| !func::is_fast(*f))
        .collect();
    assert!(!yielding.is_empty());
    assert!(
        yielding
            .iter()
            .all(|f| [func::CALL_WITH_REGD_ARG, func::RETURN_FROM_RPC].contains(f)),
        "{yielding:x?}"
    );
    assert_eq!(h.free(BNXTD, shm).unwrap(), TeedResponse::ShmFreed);
    let closed = h.request(BNXTD, TeedRequest::CloseSession { session });
    assert_eq!(closed.unwrap(), TeedResponse::SessionClosed);
    // No RPC ALLOC was ever asked for: no private buffer, nothing cached.
    assert_eq!(h.secure.stats().cached_buffers, 0);
}

#[test]
fn shutdown_unregisters_the_argument_pages_and_stops_notifications() {
    let (mut h, seen) = harness(Profile::Optee4x);
    h.boot(BootKind::Cold, 1).unwrap();
    // bnxtd leaves its session and buffer: the sweep releases them, then the pages go.
    bnxtd_holds(&mut h);
    seen.borrow_mut().clear();
    match h.shutdown(ShutdownReason::Kexec).unwrap() {
        ServerEvent::ShutdownAck(report) => assert_eq!(report.errors, 0, "{report:?}"),
        other => panic!("{other:?}"),
    }
    let stats = h.secure.stats();
    assert_eq!(
        (stats.registrations, stats.sessions, stats.cached_buffers),
        (0, 0, 0)
    );
    assert!(!stats.notif_started, "STOP_ASYNC_NOTIF sent");
    assert_eq!(h.teed.abi_stats().notif_stops, 1);
    assert_eq!(h.teed.abi_stats().arg_pages_unregistered, 1);
    assert_eq!(h.teed.arg_pages(), None);
    // The last yielding call (the unregister of the pages) could not name them.
    let last_call = seen
        .borrow()
        .iter()
        .rev()
        .copied()
        .find(|f| !func::is_fast(*f) && *f != func::RETURN_FROM_RPC);
    assert_eq!(last_call, Some(func::CALL_WITH_RPC_ARG));
    // The next boot's probe registers them again and enables notifications again.
    h.new_teed(TeedConfig::new());
    h.connect(BNXTD, ServerKind::Bnxtd);
    h.boot(BootKind::Kexec, 2).unwrap();
    assert_eq!(h.teed.stats().reclaimed_registrations, 0, "nothing left");
    assert_eq!(h.secure.stats().registrations, 1);
    assert!(h.secure.async_notif().started);
}

#[test]
fn a_crash_without_shutdown_is_reclaimed_at_the_next_probe() {
    let (mut h, _) = harness(Profile::Optee4x);
    h.boot(BootKind::Cold, 1).unwrap();
    bnxtd_holds(&mut h);
    let (old_pages, _, _) = h.teed.arg_pages().unwrap();
    // Values the old world never read: a bottom half and a wake-up for a waiter now gone.
    h.secure.raise_async_notif(0).unwrap();
    h.secure.raise_async_notif(5).unwrap();
    assert_eq!(h.secure.stats().registrations, 2);

    // The normal world dies with no shutdown; a new kernel's teed boots (by kexec from the
    // crash kernel, which declined).
    h.new_teed(TeedConfig::new());
    h.connect(BNXTD, ServerKind::Bnxtd);
    h.boot(BootKind::Kexec, 2).unwrap();
    assert!(h.teed.is_serving());
    let stats = h.teed.stats();
    assert_eq!(
        stats.reclaimed_registrations, 2,
        "bnxtd's buffer and the argument pages"
    );
    assert_eq!(stats.reclaimed_sessions, 1);
    let (new_pages, _, _) = h.teed.arg_pages().unwrap();
    assert_ne!(new_pages, old_pages);
    let registered: Vec<u64> = h.secure.registrations().map(|r| r.cookie).collect();
    assert_eq!(registered, [new_pages], "only this boot's argument pages");
    assert_eq!(h.secure.stats().sessions, 0);
    // Notifications were still started: the queued values were read at probe, the bottom
    // half ran, the stale wake-up was dropped.
    let abi = h.teed.abi_stats();
    assert_eq!(
        (abi.stale_notif_values, abi.bottom_halves),
        (1, 1),
        "{abi:?}"
    );
    let notif = h.secure.async_notif();
    assert_eq!((notif.pending, notif.bottom_halves), (0, 1));
    assert!(notif.started);
    // And the fTPM's single session opens again.
    h.connect(TPMD, ServerKind::Tpmd);
    session_of(h.open(TPMD, FTPM_TA).unwrap());
}

#[test]
fn a_notification_interrupt_is_read_and_its_bottom_half_run() {
    let (mut h, seen) = harness(Profile::Optee4x);
    h.boot(BootKind::Cold, 1).unwrap();
    seen.borrow_mut().clear();
    h.secure.raise_async_notif(7).unwrap();
    h.secure.raise_async_notif(0).unwrap();
    h.teed.notification_interrupt(h.now);
    h.settle();
    let reads = seen
        .borrow()
        .iter()
        .filter(|f| **f == func::GET_ASYNC_NOTIF_VALUE)
        .count();
    assert_eq!(reads, 2, "read until nothing was pending");
    let abi = h.teed.abi_stats();
    assert_eq!((abi.notif_values, abi.bottom_halves), (2, 1), "{abi:?}");
    assert_eq!(h.secure.async_notif().bottom_halves, 1);
    assert!(!h.secure.async_notif().bottom_half_wanted);
    // An interrupt with nothing queued reads once and does nothing more.
    h.teed.notification_interrupt(h.now);
    h.settle();
    assert_eq!(h.teed.abi_stats().bottom_halves, 1);
}

/// A thread waiting in NOTIFICATION WAIT for key 9 is woken by the asynchronous value 9, as
/// Linux's irq_handler (smc_abi.c) hands every value but 0 to optee_notif_send (notif.c), and
/// not by its wait deadline. The secure world here is scripted: it parks the client's open in
/// that wait, written in the RPC struct of teed's message slot.
#[test]
fn an_async_value_wakes_the_notification_waiter_of_its_key_smc_abi_c() {
    let (mut h, _) = harness(Profile::Optee4x);
    h.boot(BootKind::Cold, 1).unwrap();
    let (_, pages, _) = h.teed.arg_pages().unwrap();
    let parked = Rc::new(Cell::new(false));
    let resumed = Rc::new(Cell::new(false));
    let (park, resume) = (Rc::clone(&parked), Rc::clone(&resumed));
    let mut ram = h.ram.clone();
    h.script = Some(Box::new(move |regs: &Regs| {
        let function = regs[0] as u32;
        if function == func::CALL_WITH_REGD_ARG && !park.get() {
            let at = pages + regs[3];
            let msg = MsgArg::read_from(&ram, at).unwrap();
            if msg.cmd == cmd::OPEN_SESSION {
                let mut wait = MsgArg::new(rpc_cmd::NOTIFICATION);
                let key = Param::Value {
                    dir: Direction::In,
                    a: rpc_cmd::NOTIFICATION_WAIT,
                    b: 9,
                    c: 0,
                    meta: false,
                };
                wait.push(key).unwrap();
                wait.write_to(&mut ram, at + msg.encoded_len() as u64)
                    .unwrap();
                park.set(true);
                return Twist::Answer([u64::from(rpc::CMD), 0, 0, 1, 0, 0, 0, 0]);
            }
        }
        if function == func::RETURN_FROM_RPC && park.get() && regs[3] == 1 {
            resume.set(true);
            return Twist::Answer([u64::from(ret::EBADCMD), 0, 0, 0, 0, 0, 0, 0]);
        }
        Twist::Honest
    }));
    let open = TeedRequest::OpenSession {
        ta: *BNXT_TA.as_bytes(),
        login: tee_proto::teed::Login::Public,
    };
    let id = h.send(BNXTD, open);
    let waiting = Rc::clone(&parked);
    h.run_until(move |_| waiting.get()).unwrap();
    // Parked: nothing to send until the key comes (or the wait deadline, a timer not fired).
    assert_eq!(h.teed.poll(), None);
    assert!(!resumed.get());
    let parked_at = h.now;
    h.secure.raise_async_notif(9).unwrap();
    h.teed.notification_interrupt(h.now);
    let woken = Rc::clone(&resumed);
    h.run_until(move |_| woken.get()).unwrap();
    assert_eq!(h.now, parked_at, "woken by the value, not by the deadline");
    assert_eq!(h.teed.abi_stats().notif_values, 1);
    assert!(matches!(
        h.wait_reply(BNXTD, id).unwrap(),
        TeedResponse::Error(_)
    ));
}

#[test]
fn under_3_14_nothing_of_the_modern_interface_is_used() {
    let (mut h, seen) = harness(Profile::Optee3_14);
    h.boot(BootKind::Cold, 1).unwrap();
    bnxtd_holds(&mut h);
    h.shutdown(ShutdownReason::Kexec).unwrap();
    let modern = [
        func::CALL_WITH_RPC_ARG,
        func::CALL_WITH_REGD_ARG,
        func::ENABLE_ASYNC_NOTIF,
        func::GET_ASYNC_NOTIF_VALUE,
    ];
    assert!(seen.borrow().iter().all(|f| !modern.contains(f)));
    assert!(seen.borrow().contains(&func::ENABLE_SHM_CACHE));
    assert_eq!(h.teed.arg_pages(), None);
    assert_eq!(h.teed.secure_caps(), teed::Caps::default());
    // An interrupt a 3.14 world can never raise is ignored.
    h.teed.notification_interrupt(h.now);
    assert_eq!(h.teed.poll(), None);
    assert_eq!(h.secure.stats().registrations, 0);
}
