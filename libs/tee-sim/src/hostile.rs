//! A hostile secure world against teed: whatever registers it answers with — random frames,
//! RPCs with random commands in buffers teed gave it, silence, a conduit lost midway — teed
//! never panics, answers every client request within the call deadline, every Status at once,
//! the probe within its deadline and the shutdown within its own, and ends stopped or
//! declined.
//!
//! One scenario ([`run`]) over a [`Case`]; the property test (`tests/hostile_sw_props.rs`)
//! draws cases with proptest, the `teed_hostile_sw` fuzz target decodes them from bytes
//! ([`Case::from_bytes`], through [`crate::fuzzing`]).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;

use optee_abi::fuzzing::Input;
use optee_abi::msg::{Direction, MsgArg, Param};
use optee_abi::smc::{func, join_u32_pair, rpc, split_u64, Regs};
use optee_abi::uuid::{BNXT_TA, FTPM_TA};
use secure_world::Config as SecureConfig;
use tee_proto::lifecycle::{BootKind, InitRequest, ServerEvent, ServerKind, ShutdownReason};
use tee_proto::teed::{Login, TeedRequest, TeedResponse};
use tee_proto::{Frame, Header};
use teed::{ClientId, Millis, TeedConfig};

use crate::harness::{TeedHarness, Twist, BNXTD, TPMD};

/// Steps one phase may take before it counts as a hang.
pub const STEP_BOUND: usize = 100_000;

/// Most answers a case scripts (they are used round and round).
pub const MAX_ANSWERS: usize = 48;

/// A property the scenario found broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Violation(pub String);

macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(Violation(format!($($arg)+)));
        }
    };
}

/// How the scripted secure world answers one SMC.
#[derive(Debug, Clone)]
pub enum Answer {
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

/// One scenario's hostility.
#[derive(Debug, Clone)]
pub struct Case {
    /// The model answers the probe, so the hostility reaches requests and the shutdown.
    pub honest_probe: bool,
    /// Every SMC after the (optionally honest) probe takes the next answer, round and round;
    /// an empty list is all honest.
    pub answers: Vec<Answer>,
    /// The shell loses the conduit after this many scripted SMCs.
    pub conduit_fails_after: Option<usize>,
}

/// The fuzz input reader, with the readers of this scenario's answers on top.
struct Bytes<'a>(Input<'a>);

impl<'a> std::ops::Deref for Bytes<'a> {
    type Target = Input<'a>;
    fn deref(&self) -> &Input<'a> {
        &self.0
    }
}

impl std::ops::DerefMut for Bytes<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Bytes<'_> {
    /// a0 of a frame: a return code, an RPC, UNKNOWN_FUNCTION, or any word.
    fn word(&mut self) -> u64 {
        match self.u8() % 11 {
            0..=3 => u64::from(self.u8() % 8),
            4..=7 => 0xFFFF_0000 + u64::from(self.u8() % 8),
            8 => 0xFFFF_FFFF,
            _ => self.u64(),
        }
    }

    /// Another register: small, a RAM page, or any word.
    fn register(&mut self) -> u64 {
        match self.u8() % 6 {
            0..=2 => u64::from(self.u16()),
            3 => 0x4000_0000 + u64::from(self.u16() % 0x1000) * 4096,
            _ => self.u64(),
        }
    }

    /// A value param: plausible, or near the top of u64 where sums overflow.
    fn register_or_huge(&mut self) -> u64 {
        match self.u8() % 3 {
            0 => u64::MAX - u64::from(self.u32() % (1 << 20)),
            _ => self.register(),
        }
    }

    fn answer(&mut self) -> Answer {
        match self.u8() % 11 {
            0 | 1 => Answer::Honest,
            2..=7 => {
                let mut regs = [self.word(); 8];
                for reg in regs.iter_mut().skip(1) {
                    *reg = self.register();
                }
                Answer::Frame(regs)
            }
            8 => Answer::Silent,
            _ => {
                let cmd = match self.u8() {
                    pick @ 0..=0xbf => 3 + u32::from(pick % 5),
                    _ => self.u32(),
                };
                Answer::CmdInGiven {
                    cmd,
                    a: self.register_or_huge(),
                    b: self.register_or_huge(),
                }
            }
        }
    }
}

impl Case {
    /// A case decoded from any bytes (the fuzz target's input): a flags byte (honest probe,
    /// conduit loss and when), then answers until the bytes or [`MAX_ANSWERS`] run out.
    pub fn from_bytes(data: &[u8]) -> Case {
        let mut bytes = Bytes(Input::new(data));
        let flags = bytes.u8();
        let mut answers = Vec::new();
        while !bytes.is_empty() && answers.len() < MAX_ANSWERS {
            answers.push(bytes.answer());
        }
        Case {
            honest_probe: flags & 1 == 1,
            answers,
            conduit_fails_after: (flags & 2 == 2).then_some(usize::from(flags >> 2)),
        }
    }
}

/// Installs the script: every SMC after the (optionally honest) probe takes the next answer,
/// round and round.
fn script(h: &mut TeedHarness, case: &Case, armed: Rc<Cell<bool>>, lost: Rc<Cell<bool>>) {
    let mut ram = h.ram.clone();
    let answers = case.answers.clone();
    let fails_after = case.conduit_fails_after;
    let mut n = 0usize;
    h.script = Some(Box::new(move |regs| {
        if !armed.get() || answers.is_empty() {
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

/// Steps until `done`, losing the conduit when the script says so; a hang is a violation.
fn drive(
    h: &mut TeedHarness,
    lost: &Cell<bool>,
    bound: usize,
    mut done: impl FnMut(&mut TeedHarness) -> bool,
) -> Result<(), Violation> {
    for _ in 0..bound {
        if lost.get() && !h.conduit_broken {
            h.conduit_broken = true;
            let now = h.now;
            h.teed.conduit_failed(now);
        }
        if done(h) {
            return Ok(());
        }
        ensure!(
            h.step(),
            "nothing left to do, yet not done (at {} ms)",
            h.now
        );
    }
    Err(Violation(format!("no progress after {bound} steps")))
}

/// Sends `requests` and checks each is answered within `call_ms`; returns the answers.
fn round(
    h: &mut TeedHarness,
    lost: &Cell<bool>,
    bound: usize,
    call_ms: Millis,
    requests: Vec<(ClientId, TeedRequest)>,
) -> Result<Vec<(ClientId, TeedResponse)>, Violation> {
    let mut waiting: BTreeMap<(ClientId, u32), Millis> = BTreeMap::new();
    for (client, body) in requests {
        let id = h.send(client, body);
        waiting.insert((client, id), h.now);
    }
    let mut answered = Vec::new();
    let mut late = None;
    drive(h, lost, bound, |h| {
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
    ensure!(late.is_none(), "answered after the call deadline: {late:?}");
    Ok(answered)
}

fn status_answered_at_once(h: &mut TeedHarness) -> Result<(), Violation> {
    h.events.clear();
    let frame = Frame {
        header: Header::new(0, 0, 7),
        body: InitRequest::Status,
    };
    let now = h.now;
    h.teed.handle_init(now, frame);
    while !h.events.iter().any(|e| matches!(e, ServerEvent::Status(_))) {
        ensure!(h.step(), "Status never answered");
        ensure!(h.now == now, "Status waited for time to pass");
    }
    Ok(())
}

/// The scenario: boot (probe), a round of allocations and sessions from both clients, Status,
/// a round of invokes, closes and frees, Status, then a kexec shutdown; each phase within
/// `bound` steps and its deadline.
pub fn run(case: &Case, bound: usize) -> Result<(), Violation> {
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
    script(&mut h, case, armed.clone(), lost.clone());

    let booted = h.boot(BootKind::Kexec, 1);
    ensure!(booted.is_ok(), "probe hung: {booted:?}");
    ensure!(
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
    let got = round(&mut h, &lost, bound, deadlines.call_ms, first)?;
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
    round(&mut h, &lost, bound, deadlines.call_ms, second)?;
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
    drive(&mut h, &lost, bound, |h| {
        h.events
            .iter()
            .any(|e| matches!(e, ServerEvent::ShutdownAck(_)))
    })?;
    ensure!(
        h.now <= asked + deadlines.shutdown_ms,
        "shutdown past its deadline"
    );
    ensure!(
        h.teed.is_stopped() || h.teed.declined().is_some(),
        "teed neither stopped nor declined after its shutdown"
    );
    Ok(())
}
