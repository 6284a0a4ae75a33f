//! A hostile secure world cannot panic, hang or wedge teed (issue 14, point 6).
//!
//! Each test lets the model answer honestly until a script takes over the SMCs of one call (or
//! of the probe, or of the shutdown) and answers them as no real OP-TEE would. Every case must
//! give the waiting client (or init) a typed answer within its deadline, and teed must go on
//! serving, answering Status and shutting down.
#![allow(clippy::unwrap_used)]

use std::cell::RefCell;
use std::rc::Rc;

use optee_abi::mem::PhysMem;
use optee_abi::msg::{rpc_cmd, Direction, MsgArg, Param};
use optee_abi::smc::{func, join_u32_pair, ret, rpc, split_u64, Regs};
use optee_abi::teec;
use secure_world::Config as SecureConfig;
use tee_proto::lifecycle::{
    BootKind, DeclineReason, InitRequest, ServerEvent, ServerKind, ServerState, ShutdownReason,
    ShutdownReport,
};
use tee_proto::teed::TeedResponse;
use tee_proto::{Frame, Header, WireError};
use tee_sim::TPMD;
use tee_sim::{TeedHarness, Twist};
use teed::TeedConfig;

fn harness(cfg: TeedConfig) -> TeedHarness {
    let mut h = TeedHarness::new(cfg, SecureConfig::default());
    h.connect(TPMD, ServerKind::Tpmd);
    h
}

fn serving(cfg: TeedConfig) -> TeedHarness {
    let mut h = harness(cfg);
    assert_eq!(
        h.boot(BootKind::Cold, 1).unwrap(),
        ServerEvent::Ready { generation: 1 }
    );
    h
}

fn small_budget() -> TeedConfig {
    let mut cfg = TeedConfig::new();
    cfg.bounds.max_rpcs_per_call = 64;
    cfg
}

/// An RPC request from thread 0.
fn rpc_regs(function: u32, a1: u64, a2: u64) -> Regs {
    [u64::from(function), a1, a2, 0, 0, 0, 0, 0]
}

fn cmd_in(cookie: u64) -> Regs {
    let (hi, lo) = split_u64(cookie);
    rpc_regs(rpc::CMD, hi, lo)
}

/// The call returns: OK, message written back.
const DONE: Regs = [0; 8];

fn fast(code: u32, a1: u64, a2: u64) -> Regs {
    [u64::from(code), a1, a2, 0, 0, 0, 0, 0]
}

fn is_yielding(regs: &Regs) -> bool {
    matches!(regs[0] as u32, func::CALL_WITH_ARG | func::RETURN_FROM_RPC)
}

/// Writes an RPC command with one value param into the buffer at `pa`.
fn write_rpc_cmd(ram: &mut impl PhysMem, pa: u64, command: u32, a: u64, b: u64) {
    let mut arg = MsgArg::new(command);
    let value = Param::Value {
        dir: Direction::In,
        a,
        b,
        c: 0,
        meta: false,
    };
    arg.push(value).unwrap();
    arg.write_to(ram, pa).unwrap();
}

/// The (pa, cookie) teed's answer to an RPC ALLOC carries.
fn allocated(answer: &Regs) -> (u64, u64) {
    (
        join_u32_pair(answer[1], answer[2]),
        join_u32_pair(answer[4], answer[5]),
    )
}

/// One scripted answer, given teed's registers.
type Step = Box<dyn FnMut(&Regs) -> Regs>;

/// Answers the yielding SMCs of the next call with `steps`, in order: each step
/// sees teed's registers (the call, then each RETURN_FROM_RPC); then the model answers again.
fn script_call(h: &mut TeedHarness, steps: Vec<Step>) {
    let mut steps = steps.into_iter();
    let mut running = false;
    h.script = Some(Box::new(move |regs| {
        let starts = regs[0] as u32 == func::CALL_WITH_ARG && !running;
        if !(starts || running && is_yielding(regs)) {
            return Twist::Honest;
        }
        running = true;
        match steps.next() {
            Some(mut step) => Twist::Answer(step(regs)),
            None => {
                running = false;
                Twist::Honest
            }
        }
    }));
}

fn status(h: &mut TeedHarness) -> ServerState {
    h.events.clear();
    let frame = Frame {
        header: Header::new(0, 0, 99),
        body: InitRequest::Status,
    };
    h.teed.handle_init(h.now, frame);
    // Answered from the effect queue, before any SMC or timer.
    for _ in 0..64 {
        if let Some(ServerEvent::Status(s)) = h.events.last() {
            return s.state;
        }
        assert!(h.step(), "Status never answered");
    }
    panic!("Status never answered");
}

fn shutdown_report(h: &mut TeedHarness) -> ShutdownReport {
    match h.shutdown(ShutdownReason::Kexec).unwrap() {
        ServerEvent::ShutdownAck(report) => report,
        other => panic!("{other:?}"),
    }
}

/// After the hostile call: the model answers again and teed serves as before.
fn still_serves(h: &mut TeedHarness) {
    h.script = None;
    h.settle();
    assert!(h.teed.is_serving());
    assert!(matches!(
        h.alloc(TPMD, 8192).unwrap(),
        TeedResponse::ShmAllocated { .. }
    ));
}

#[test]
fn a_suspend_of_u64_max_cannot_overflow_and_ends_at_the_call_deadline() {
    let mut h = serving(TeedConfig::new());
    let mut ram = h.ram.clone();
    script_call(
        &mut h,
        vec![
            Box::new(|_| rpc_regs(rpc::ALLOC, 160, 0)),
            Box::new(move |answer| {
                let (pa, cookie) = allocated(answer);
                write_rpc_cmd(&mut ram, pa, rpc_cmd::SUSPEND, u64::MAX, 0);
                cmd_in(cookie)
            }),
            // Resumed early once detached: the thread returns.
            Box::new(|_| DONE),
        ],
    );
    let start = h.now;
    assert_eq!(
        h.alloc(TPMD, 8192).unwrap(),
        TeedResponse::Error(WireError::SecureWorldFault)
    );
    let call_ms = TeedConfig::new().deadlines.call_ms;
    assert_eq!(h.now - start, call_ms, "answered at the call deadline");
    assert!(h.teed.stats().abandoned_calls >= 1);
    still_serves(&mut h);
}

#[test]
fn endless_foreign_interrupts_meet_the_default_rpc_budget() {
    let mut h = serving(TeedConfig::new());
    h.script = Some(Box::new(|regs| match is_yielding(regs) {
        true => Twist::Answer(rpc_regs(rpc::FOREIGN_INTR, 0, 0)),
        false => Twist::Honest,
    }));
    let start = h.now;
    assert_eq!(
        h.alloc(TPMD, 8192).unwrap(),
        TeedResponse::Error(WireError::SecureWorldFault)
    );
    assert_eq!(h.now, start, "the budget, not the clock, ends it");
    let budget = u64::from(TeedConfig::new().bounds.max_rpcs_per_call);
    assert!(h.teed.stats().rpcs > budget);
    still_serves(&mut h);
}

#[test]
fn endless_alloc_free_ping_pong_meets_the_rpc_budget() {
    let mut h = serving(small_budget());
    h.script = Some(Box::new(|regs| {
        if !is_yielding(regs) {
            return Twist::Honest;
        }
        let (_, cookie) = allocated(regs);
        if regs[0] as u32 == func::RETURN_FROM_RPC && cookie != 0 {
            let (hi, lo) = split_u64(cookie);
            Twist::Answer(rpc_regs(rpc::FREE, hi, lo))
        } else {
            Twist::Answer(rpc_regs(rpc::ALLOC, 160, 0))
        }
    }));
    assert_eq!(
        h.alloc(TPMD, 8192).unwrap(),
        TeedResponse::Error(WireError::SecureWorldFault)
    );
    still_serves(&mut h);
}

#[test]
fn absurd_rpc_alloc_and_shm_alloc_sizes_are_refused() {
    let mut h = serving(TeedConfig::new());
    let seen = Rc::new(RefCell::new(Vec::new()));
    let (mut ram, mut read_ram) = (h.ram.clone(), h.ram.clone());
    let (seen_alloc, seen_shm) = (seen.clone(), seen.clone());
    let rpc_pa = Rc::new(RefCell::new(0));
    let rpc_pa_read = rpc_pa.clone();
    script_call(
        &mut h,
        vec![
            Box::new(|_| rpc_regs(rpc::ALLOC, 0xFFFF_FFFF, 0)),
            Box::new(move |answer| {
                seen_alloc.borrow_mut().push(allocated(answer));
                rpc_regs(rpc::ALLOC, 160, 0)
            }),
            Box::new(move |answer| {
                let (pa, cookie) = allocated(answer);
                *rpc_pa.borrow_mut() = pa;
                write_rpc_cmd(&mut ram, pa, rpc_cmd::SHM_ALLOC, 1, u64::MAX);
                cmd_in(cookie)
            }),
            Box::new(move |_| {
                let arg = MsgArg::read_from(&read_ram, *rpc_pa_read.borrow()).unwrap();
                seen_shm.borrow_mut().push((u64::from(arg.ret), 0));
                let _ = &mut read_ram;
                DONE
            }),
        ],
    );
    assert!(matches!(
        h.alloc(TPMD, 8192).unwrap(),
        TeedResponse::ShmAllocated { .. }
    ));
    let seen = seen.borrow();
    assert_eq!(seen[0], (0, 0), "the 4 GiB ALLOC got nothing");
    assert_eq!(seen[1].0, u64::from(teec::ERROR_OUT_OF_MEMORY));
    assert_eq!(h.teed.stats().refused_rpc_buffers, 2);
    still_serves(&mut h);
}

#[test]
fn cookies_teed_never_gave_are_refused() {
    let mut h = serving(TeedConfig::new());
    let stale = 0xdead_beef_0000_0001;
    let (hi, lo) = split_u64(stale);
    script_call(
        &mut h,
        vec![
            Box::new(move |_| rpc_regs(rpc::FREE, hi, lo)),
            Box::new(move |_| cmd_in(stale)),
            Box::new(|_| DONE),
        ],
    );
    assert!(matches!(
        h.alloc(TPMD, 8192).unwrap(),
        TeedResponse::ShmAllocated { .. }
    ));
    assert_eq!(h.teed.stats().stale_rpc_cookies, 2);
    still_serves(&mut h);
}

#[test]
fn an_unknown_rpc_function_gets_an_empty_answer() {
    let mut h = serving(TeedConfig::new());
    let seen = Rc::new(RefCell::new(None));
    let seen_in = seen.clone();
    script_call(
        &mut h,
        vec![
            Box::new(|_| rpc_regs(0xFFFF_0042, 7, 9)),
            Box::new(move |answer| {
                *seen_in.borrow_mut() = Some(*answer);
                DONE
            }),
        ],
    );
    assert!(matches!(
        h.alloc(TPMD, 8192).unwrap(),
        TeedResponse::ShmAllocated { .. }
    ));
    let answer = seen.borrow().unwrap();
    assert_eq!(answer[0] as u32, func::RETURN_FROM_RPC);
    assert_eq!((answer[1], answer[2], answer[4], answer[5]), (0, 0, 0, 0));
    assert_eq!(h.teed.stats().unknown_rpcs, 1);
    still_serves(&mut h);
}

#[test]
fn an_absurd_thread_count_is_clamped() {
    let mut h = harness(TeedConfig::new());
    let resumes = Rc::new(RefCell::new(0u32));
    let counted = resumes.clone();
    let mut drains = 0;
    h.script = Some(Box::new(move |regs| match regs[0] as u32 {
        func::GET_THREAD_COUNT => Twist::Answer(fast(ret::OK, 0xFFFF_FFFF, 0)),
        // A busy first drain: the probe resumes orphans on every thread it believes in.
        func::DISABLE_SHM_CACHE if drains == 0 => {
            drains += 1;
            Twist::Answer(fast(ret::EBUSY, 0, 0))
        }
        func::RETURN_FROM_RPC => {
            *counted.borrow_mut() += 1;
            Twist::Answer(fast(ret::ERESUME, 0, 0))
        }
        _ => Twist::Honest,
    }));
    assert_eq!(
        h.boot(BootKind::Kexec, 1).unwrap(),
        ServerEvent::Ready { generation: 1 }
    );
    assert_eq!(*resumes.borrow(), TeedConfig::new().bounds.max_threads);
}

#[test]
fn a_probe_drain_that_never_empties_declines() {
    let mut h = harness(TeedConfig::new());
    h.script = Some(Box::new(|regs| match regs[0] as u32 {
        func::DISABLE_SHM_CACHE => Twist::Answer(fast(ret::OK, 0xdead, 0xbeef)),
        _ => Twist::Honest,
    }));
    let reason = DeclineReason::IncompatibleSecureWorld;
    assert_eq!(
        h.boot(BootKind::Kexec, 1).unwrap(),
        ServerEvent::Declined { reason }
    );
    assert_eq!(status(&mut h), ServerState::Declined);
    assert_eq!(
        h.alloc(TPMD, 8192).unwrap(),
        TeedResponse::Error(WireError::TeeUnavailable)
    );
    assert_eq!(shutdown_report(&mut h), ShutdownReport::default());
}

#[test]
fn a_probe_drain_busy_for_ever_declines_at_the_probe_deadline() {
    let mut h = harness(TeedConfig::new());
    h.script = Some(Box::new(|regs| match regs[0] as u32 {
        func::DISABLE_SHM_CACHE => Twist::Answer(fast(ret::EBUSY, 0, 0)),
        _ => Twist::Honest,
    }));
    let reason = DeclineReason::DeadlineExpired;
    assert_eq!(
        h.boot(BootKind::Kexec, 1).unwrap(),
        ServerEvent::Declined { reason }
    );
    assert_eq!(h.now, TeedConfig::new().deadlines.probe_ms);
    assert_eq!(status(&mut h), ServerState::Declined);
}

#[test]
fn a_shutdown_drain_that_never_empties_still_acks() {
    let mut h = serving(TeedConfig::new());
    h.script = Some(Box::new(|regs| match regs[0] as u32 {
        func::DISABLE_SHM_CACHE => Twist::Answer(fast(ret::OK, 0xdead, 0xbeef)),
        _ => Twist::Honest,
    }));
    let start = h.now;
    assert!(shutdown_report(&mut h).errors >= 1);
    assert_eq!(h.now, start, "no need to wait for the deadline");
    assert!(h.teed.is_stopped());
}

#[test]
fn a_shutdown_drain_busy_for_ever_acks_at_the_shutdown_deadline() {
    let mut h = serving(TeedConfig::new());
    h.script = Some(Box::new(|regs| match regs[0] as u32 {
        func::DISABLE_SHM_CACHE => Twist::Answer(fast(ret::EBUSY, 0, 0)),
        _ => Twist::Honest,
    }));
    let start = h.now;
    assert!(shutdown_report(&mut h).errors >= 1);
    assert_eq!(h.now - start, TeedConfig::new().deadlines.shutdown_ms);
    assert!(h.teed.is_stopped());
}

#[test]
fn a_secure_world_that_never_answers_still_lets_teed_answer_everyone() {
    let mut h = serving(TeedConfig::new());
    h.script = Some(Box::new(|_| Twist::Silent));
    let start = h.now;
    let deadlines = TeedConfig::new().deadlines;
    assert_eq!(
        h.alloc(TPMD, 8192).unwrap(),
        TeedResponse::Error(WireError::SecureWorldFault)
    );
    assert_eq!(h.now - start, deadlines.call_ms);
    assert_eq!(status(&mut h), ServerState::Serving);
    let start = h.now;
    assert!(shutdown_report(&mut h).errors >= 1);
    assert!(h.now - start <= deadlines.shutdown_ms);
    assert!(h.teed.is_stopped());
}

#[test]
fn a_lost_conduit_ends_every_call_at_once() {
    let mut h = serving(TeedConfig::new());
    h.script = Some(Box::new(|_| Twist::Silent));
    let id = h.send(TPMD, tee_proto::teed::TeedRequest::ShmAlloc { size: 8192 });
    while h.unanswered.is_empty() {
        assert!(h.step());
    }
    // The shell gives up on the SMC that never came back.
    let now = h.now;
    h.teed.conduit_failed(now);
    assert!(matches!(
        h.wait_reply(TPMD, id).unwrap(),
        TeedResponse::Error(WireError::Tee {
            code: teec::ERROR_COMMUNICATION,
            ..
        })
    ));
    assert_eq!(h.now, now, "at once, not at a deadline");
    assert_eq!(
        h.alloc(TPMD, 8192).unwrap(),
        TeedResponse::Error(WireError::TeeUnavailable)
    );
    // Up and answering, and says the secure world is out of reach.
    assert_eq!(status(&mut h), ServerState::Unavailable);
    assert!(shutdown_report(&mut h).errors >= 1);
    assert_eq!(h.now, now, "the shutdown acks at once");
}

#[test]
fn a_probe_that_never_gets_an_answer_declines_at_its_deadline() {
    let mut h = harness(TeedConfig::new());
    h.script = Some(Box::new(|_| Twist::Silent));
    let reason = DeclineReason::DeadlineExpired;
    assert_eq!(
        h.boot(BootKind::Cold, 1).unwrap(),
        ServerEvent::Declined { reason }
    );
    assert_eq!(h.now, TeedConfig::new().deadlines.probe_ms);
    assert_eq!(status(&mut h), ServerState::Declined);
}
