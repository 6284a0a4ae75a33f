//! Property: whatever registers the secure world answers with — random frames, RPCs with
//! random commands in buffers teed gave it, silence, a conduit lost midway — teed never
//! panics, answers every client request within the call deadline, every Status at once, the
//! probe within its deadline and the shutdown within its own, and ends stopped or declined.
#![allow(clippy::unwrap_used)]

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;

use optee_abi::msg::{Direction, MsgArg, Param};
use optee_abi::smc::{func, join_u32_pair, rpc, split_u64, Regs};
use optee_abi::uuid::{BNXT_TA, FTPM_TA};
use proptest::prelude::*;
use secure_world::Config as SecureConfig;
use tee_proto::lifecycle::{BootKind, InitRequest, ServerEvent, ServerKind, ShutdownReason};
use tee_proto::teed::{Login, TeedRequest, TeedResponse};
use tee_proto::{Frame, Header};
use tee_sim::{TeedHarness, Twist};
use tee_sim::{BNXTD, TPMD};
use teed::{ClientId, Millis, TeedConfig};

/// Steps one phase may take before it counts as a hang.
const STEP_BOUND: usize = 100_000;

/// How the scripted secure world answers one SMC.
#[derive(Debug, Clone)]
enum Answer {
    /// The model answers.
    Honest,
    /// These registers.
    Frame(Regs),
    /// Never.
    Silent,
    /// An RPC command with one value param in the buffer teed's last answer handed over (or
    /// an ALLOC of one, when it handed none).
    CmdInGiven { cmd: u32, a: u64, b: u64 },
}

fn word() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..8,
        4 => (0u64..8).prop_map(|f| 0xFFFF_0000 + f),
        1 => Just(0xFFFF_FFFF),
        2 => any::<u64>(),
    ]
}

fn register() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 0u64..0x1_0000,
        1 => (0u64..0x1000).prop_map(|page| 0x4000_0000 + page * 4096),
        2 => any::<u64>(),
    ]
}

/// Mostly the commands teed serves (GET_TIME .. SHM_FREE), sometimes any.
fn rpc_command() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 3u32..8, 1 => any::<u32>()]
}

/// A value param: plausible, or near the top of u64 where sums overflow.
fn register_or_huge() -> impl Strategy<Value = u64> {
    prop_oneof![2 => register(), 1 => (0u64..1 << 20).prop_map(|d| u64::MAX - d)]
}

fn frame() -> impl Strategy<Value = Regs> {
    (word(), proptest::array::uniform7(register())).prop_map(|(a0, rest)| {
        let mut regs = [a0; 8];
        regs[1..].copy_from_slice(&rest);
        regs
    })
}

fn answer() -> impl Strategy<Value = Answer> {
    prop_oneof![
        2 => Just(Answer::Honest),
        6 => frame().prop_map(Answer::Frame),
        1 => Just(Answer::Silent),
        2 => (rpc_command(), register_or_huge(), register_or_huge())
            .prop_map(|(cmd, a, b)| Answer::CmdInGiven { cmd, a, b }),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    /// The model answers the probe, so the hostility reaches requests and the shutdown.
    honest_probe: bool,
    answers: Vec<Answer>,
    /// The shell loses the conduit after this many scripted SMCs.
    conduit_fails_after: Option<usize>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<bool>(),
        proptest::collection::vec(answer(), 1..48),
        proptest::option::of(0usize..64),
    )
        .prop_map(|(honest_probe, answers, conduit_fails_after)| Case {
            honest_probe,
            answers,
            conduit_fails_after,
        })
}

/// Installs the script: every SMC after the (optionally honest) probe takes the next answer,
/// round and round.
fn script(h: &mut TeedHarness, case: &Case, armed: Rc<Cell<bool>>, lost: Rc<Cell<bool>>) {
    let mut ram = h.ram.clone();
    let answers = case.answers.clone();
    let fails_after = case.conduit_fails_after;
    let mut n = 0usize;
    h.script = Some(Box::new(move |regs| {
        if !armed.get() {
            return Twist::Honest;
        }
        if fails_after == Some(n) {
            lost.set(true);
        }
        let answer = answers[n % answers.len()].clone();
        n += 1;
        match answer {
            Answer::Honest => Twist::Honest,
            Answer::Frame(out) => Twist::Answer(out),
            Answer::Silent => Twist::Silent,
            Answer::CmdInGiven { cmd, a, b } => {
                let (pa, cookie) = (
                    join_u32_pair(regs[1], regs[2]),
                    join_u32_pair(regs[4], regs[5]),
                );
                if regs[0] as u32 != func::RETURN_FROM_RPC || cookie == 0 {
                    return Twist::Answer([u64::from(rpc::ALLOC), 160, 0, 0, 0, 0, 0, 0]);
                }
                let mut arg = MsgArg::new(cmd);
                let value = Param::Value {
                    dir: Direction::InOut,
                    a,
                    b,
                    c: 0,
                    meta: false,
                };
                let _ = arg.push(value);
                let _ = arg.write_to(&mut ram, pa);
                let (hi, lo) = split_u64(cookie);
                Twist::Answer([u64::from(rpc::CMD), hi, lo, 0, 0, 0, 0, 0])
            }
        }
    }));
}

/// Steps until `done`, losing the conduit when the script says so; a hang fails the case.
fn drive(
    h: &mut TeedHarness,
    lost: &Cell<bool>,
    mut done: impl FnMut(&mut TeedHarness) -> bool,
) -> Result<(), TestCaseError> {
    for _ in 0..STEP_BOUND {
        if lost.get() && !h.conduit_broken {
            h.conduit_broken = true;
            let now = h.now;
            h.teed.conduit_failed(now);
        }
        if done(h) {
            return Ok(());
        }
        prop_assert!(
            h.step(),
            "nothing left to do, yet not done (at {} ms)",
            h.now
        );
    }
    Err(TestCaseError::fail(format!(
        "no progress after {STEP_BOUND} steps"
    )))
}

/// Sends `requests` and checks each is answered within `call_ms`; returns the answers.
fn round(
    h: &mut TeedHarness,
    lost: &Cell<bool>,
    call_ms: Millis,
    requests: Vec<(ClientId, TeedRequest)>,
) -> Result<Vec<(ClientId, TeedResponse)>, TestCaseError> {
    let mut waiting: BTreeMap<(ClientId, u32), Millis> = BTreeMap::new();
    for (client, body) in requests {
        let id = h.send(client, body);
        waiting.insert((client, id), h.now);
    }
    let mut answered = Vec::new();
    let mut late = None;
    drive(h, lost, |h| {
        for (client, frame) in h.take_replies() {
            if let Some(sent) = waiting.remove(&(client, frame.header.request_id)) {
                if h.now > sent + call_ms {
                    late = Some((client, h.now - sent));
                }
                answered.push((client, frame.body));
            }
        }
        waiting.is_empty()
    })?;
    prop_assert_eq!(late, None, "answered after the call deadline");
    Ok(answered)
}

fn status_answered_at_once(h: &mut TeedHarness) -> Result<(), TestCaseError> {
    h.events.clear();
    let frame = Frame {
        header: Header::new(0, 0, 7),
        body: InitRequest::Status,
    };
    let now = h.now;
    h.teed.handle_init(now, frame);
    while !h.events.iter().any(|e| matches!(e, ServerEvent::Status(_))) {
        prop_assert!(h.step(), "Status never answered");
        prop_assert_eq!(h.now, now, "Status waited for time to pass");
    }
    Ok(())
}

fn run(case: Case) -> Result<(), TestCaseError> {
    let mut cfg = TeedConfig::new();
    // Small, so random RPC storms end quickly; the bound itself is tested on its default.
    cfg.bounds.max_rpcs_per_call = 16;
    let deadlines = cfg.deadlines;
    let mut h = TeedHarness::new(cfg, SecureConfig::default());
    // A clock well past zero, so that sums with values from the secure world can overflow.
    h.now = 1 << 30;
    h.connect(TPMD, ServerKind::Tpmd);
    h.connect(BNXTD, ServerKind::Bnxtd);
    let (armed, lost) = (
        Rc::new(Cell::new(!case.honest_probe)),
        Rc::new(Cell::new(false)),
    );
    script(&mut h, &case, armed.clone(), lost.clone());

    let booted = h.boot(BootKind::Kexec, 1);
    prop_assert!(booted.is_ok(), "probe hung: {booted:?}");
    prop_assert!(
        h.now <= (1 << 30) + deadlines.probe_ms,
        "probe past its deadline"
    );
    armed.set(true);

    let first = vec![
        (TPMD, TeedRequest::ShmAlloc { size: 8192 }),
        (
            TPMD,
            TeedRequest::OpenSession {
                ta: *FTPM_TA.as_bytes(),
                login: Login::Public,
            },
        ),
        (
            BNXTD,
            TeedRequest::OpenSession {
                ta: *BNXT_TA.as_bytes(),
                login: Login::Public,
            },
        ),
        (BNXTD, TeedRequest::ShmAlloc { size: 4 << 20 }),
    ];
    let got = round(&mut h, &lost, deadlines.call_ms, first)?;
    status_answered_at_once(&mut h)?;

    let mut second = Vec::new();
    for (client, body) in got {
        match body {
            TeedResponse::SessionOpened { session } => {
                let invoke = TeedRequest::Invoke {
                    session,
                    func: 0,
                    cancel_id: 0,
                    params: heapless::Vec::new(),
                };
                second.push((client, invoke));
                second.push((client, TeedRequest::CloseSession { session }));
            }
            TeedResponse::ShmAllocated { shm, .. } => {
                second.push((client, TeedRequest::ShmFree { shm }))
            }
            _ => {}
        }
    }
    round(&mut h, &lost, deadlines.call_ms, second)?;
    status_answered_at_once(&mut h)?;

    h.events.clear();
    let asked = h.now;
    let frame = Frame {
        header: Header::new(0, 0, 8),
        body: InitRequest::Shutdown {
            reason: ShutdownReason::Kexec,
        },
    };
    h.teed.handle_init(asked, frame);
    drive(&mut h, &lost, |h| {
        h.events
            .iter()
            .any(|e| matches!(e, ServerEvent::ShutdownAck(_)))
    })?;
    prop_assert!(
        h.now <= asked + deadlines.shutdown_ms,
        "shutdown past its deadline"
    );
    prop_assert!(h.teed.is_stopped() || h.teed.declined().is_some());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_secure_world_answers_never_panic_hang_or_wedge_teed(case in case()) {
        run(case)?;
    }
}
