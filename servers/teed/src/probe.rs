//! The probe: crash flag → decline with no SMC (adf752af454e); API UID and revision;
//! capabilities; thread count; resume threads an earlier world left suspended (beyond Linux);
//! reclaim what the journal lists (beyond Linux); drain stale RPC-cache entries in *unmapped*
//! mode, discarding their cookies (b5c10dd04b74); enable the cache; Ready. Every wait is bounded
//! by the probe deadline: where Linux hung, teed declines.
//!
//! A machine of its own, driven from outside: it makes its calls through the call engine, reads
//! and writes the journal through the registry, and tells the server how it ended.

use alloc::vec::Vec;

use optee_abi::mem::{PhysMem, PAGE_SIZE_U64};
use optee_abi::msg::{cmd, MsgArg};
use optee_abi::smc::{func, ret, sec_cap, Regs, MSG_REVISION_MAJOR, MSG_UID};
use optee_abi::teec;
use tee_proto::lifecycle::{BootInfo, BootKind, DeclineReason, RamWindow};
use tee_proto::Generation;

use crate::call::{FastCall, Outcome};
use crate::config::{Millis, TeedConfig};
use crate::engine::CallEngine;
use crate::journal::{self, EntryState, Leftover};
use crate::registry::Registry;
use crate::types::{Purpose, TeedStats};

/// Steps of the probe, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ProbeStep {
    Uid,
    Revision,
    OsRevision,
    Capabilities,
    ThreadCount,
    ResumeOrphans,
    Reclaim,
    DrainUnmapped,
    EnableCache,
}

/// How a probe ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeEnd {
    /// The cache is on: serve.
    Ready,
    Declined(DeclineReason),
}

/// What init's Hello tells the probe.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hello {
    pub generation: Generation,
    pub boot: BootInfo,
    pub ram: RamWindow,
    pub journal: RamWindow,
}

/// What the answer to one of the probe's fast calls says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Go on with this step.
    Next(ProbeStep),
    /// The secure world has this many threads.
    Threads(u32),
    /// A stale cache entry was discarded; drain again.
    CookieDiscarded,
    /// The secure world is busy: ask again after a pause.
    Retry,
    Ready,
    Decline(DeclineReason),
}

impl Answer {
    /// Reads the registers a probe fast call returned; `None` for a call the probe never makes.
    pub fn read(fast: FastCall, regs: &Regs) -> Option<Answer> {
        let code = regs[0] as u32;
        let incompatible = Answer::Decline(DeclineReason::IncompatibleSecureWorld);
        let answer = match fast {
            FastCall::Uid => {
                let uid = [regs[0], regs[1], regs[2], regs[3]].map(|r| r as u32);
                if uid == MSG_UID {
                    Answer::Next(ProbeStep::Revision)
                } else {
                    incompatible
                }
            }
            FastCall::Revision if code == MSG_REVISION_MAJOR => Answer::Next(ProbeStep::OsRevision),
            FastCall::Revision => incompatible,
            FastCall::OsRevision => {
                tracing::info!(major = regs[0], minor = regs[1], "OP-TEE OS revision");
                Answer::Next(ProbeStep::Capabilities)
            }
            FastCall::Capabilities if code == ret::OK && regs[1] & sec_cap::DYNAMIC_SHM != 0 => {
                Answer::Next(ProbeStep::ThreadCount)
            }
            FastCall::Capabilities => incompatible,
            FastCall::ThreadCount if code == ret::OK => Answer::Threads(regs[1] as u32),
            FastCall::ThreadCount => Answer::Threads(0),
            FastCall::DrainUnmapped => match code {
                ret::OK => Answer::CookieDiscarded,
                ret::EBUSY => Answer::Retry,
                _ => Answer::Next(ProbeStep::EnableCache),
            },
            FastCall::EnableCache => match code {
                ret::OK => Answer::Ready,
                ret::EBUSY => Answer::Retry,
                _ => incompatible,
            },
            FastCall::DrainMapped => return None,
        };
        Some(answer)
    }

    /// The end this answer brings on its own, at whatever step the probe is (also when it already
    /// declined or was stopped and the answer came late).
    pub fn end(&self) -> Option<ProbeEnd> {
        match *self {
            Answer::Ready => Some(ProbeEnd::Ready),
            Answer::Decline(reason) => Some(ProbeEnd::Declined(reason)),
            Answer::Next(_) | Answer::Threads(_) | Answer::CookieDiscarded | Answer::Retry => None,
        }
    }
}

/// The probe in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Probe {
    step: ProbeStep,
    deadline: Millis,
    retry_at: Option<Millis>,
    /// The step's SMC or calls are out.
    busy: bool,
    /// Secure threads, as the secure world counted them.
    thread_count: u32,
    resume_orphans: bool,
    /// Seed bug b5c10dd04b74: skip the stale-cache drain.
    skip_cache_drain: bool,
    retry_ms: Millis,
}

impl Probe {
    /// Takes this boot's memory and message slots, and starts the probe; or declines at once
    /// (a crash kernel, or no memory for the message slots).
    pub fn start<M: PhysMem>(
        now: Millis,
        cfg: &TeedConfig,
        hello: Hello,
        reg: &mut Registry<M>,
        engine: &mut CallEngine,
    ) -> Result<Probe, DeclineReason> {
        let boot = hello.boot;
        let crash_boot = boot.crash_flag || boot.kind == BootKind::CrashKernel;
        if crash_boot && !cfg.seed_bugs.probe_in_crash_kernel {
            // adf752af454e: every secure thread may be suspended mid-call; touch nothing.
            tracing::info!("crash kernel: declining before any SMC");
            return Err(DeclineReason::CrashKernel);
        }
        reg.open(
            hello.ram,
            hello.journal,
            cfg.hardening.journal,
            boot.boot_id,
            hello.generation,
        );
        let slots = match reg.journal_arg_slots() {
            Some(pas) => pas,
            None => {
                let bytes = journal::ARG_SLOT_BYTES * journal::ARG_SLOTS as u64;
                let run = reg
                    .frames
                    .alloc(bytes.div_ceil(PAGE_SIZE_U64))
                    .ok_or(DeclineReason::SecureWorldUnavailable)?;
                (0..journal::ARG_SLOTS as u64)
                    .map(|i| run.pa + i * journal::ARG_SLOT_BYTES)
                    .collect()
            }
        };
        engine.set_arg_slots(slots);
        Ok(Probe {
            step: ProbeStep::Uid,
            deadline: now + cfg.deadlines.probe_ms,
            retry_at: None,
            busy: false,
            thread_count: 0,
            resume_orphans: cfg.hardening.resume_orphans,
            skip_cache_drain: cfg.seed_bugs.no_probe_cache_drain,
            retry_ms: cfg.deadlines.retry_ms,
        })
    }

    /// When the probe next needs [`Probe::on_timer`].
    pub fn next_timeout(&self) -> Option<Millis> {
        Some(
            self.retry_at
                .map_or(self.deadline, |t| t.min(self.deadline)),
        )
    }

    fn next(&mut self, step: ProbeStep) {
        self.step = step;
        self.busy = false;
        self.retry_at = None;
    }

    /// Starts the current step unless it is already out or waiting for its retry.
    pub fn advance<M: PhysMem>(
        &mut self,
        now: Millis,
        reg: &mut Registry<M>,
        engine: &mut CallEngine,
    ) {
        loop {
            if self.busy || self.retry_at.is_some() {
                return;
            }
            self.busy = true;
            match self.step {
                ProbeStep::Uid => engine.fast(FastCall::Uid, func::CALLS_UID),
                ProbeStep::Revision => engine.fast(FastCall::Revision, func::CALLS_REVISION),
                ProbeStep::OsRevision => engine.fast(FastCall::OsRevision, func::GET_OS_REVISION),
                ProbeStep::Capabilities => {
                    engine.fast(FastCall::Capabilities, func::EXCHANGE_CAPABILITIES)
                }
                ProbeStep::ThreadCount => {
                    engine.fast(FastCall::ThreadCount, func::GET_THREAD_COUNT)
                }
                ProbeStep::ResumeOrphans => {
                    if !self.resume_orphans || self.thread_count == 0 {
                        self.next(ProbeStep::Reclaim);
                        continue;
                    }
                    for thread in 0..self.thread_count {
                        let regs = [
                            u64::from(func::RETURN_FROM_RPC),
                            0,
                            0,
                            u64::from(thread),
                            0,
                            0,
                            0,
                            0,
                        ];
                        engine.start_yielding(now, Purpose::Orphan { thread }, None, regs, true);
                    }
                }
                ProbeStep::Reclaim => {
                    if !start_reclaim(now, reg, engine) {
                        self.next(ProbeStep::DrainUnmapped);
                        continue;
                    }
                }
                ProbeStep::DrainUnmapped => {
                    if self.skip_cache_drain {
                        self.next(ProbeStep::EnableCache);
                        continue;
                    }
                    engine.fast(FastCall::DrainUnmapped, func::DISABLE_SHM_CACHE)
                }
                ProbeStep::EnableCache => {
                    engine.fast(FastCall::EnableCache, func::ENABLE_SHM_CACHE)
                }
            }
            return;
        }
    }

    /// The answer to the step's fast call.
    pub fn on_answer(&mut self, now: Millis, answer: Answer) -> Option<ProbeEnd> {
        match answer {
            Answer::Next(step) => self.next(step),
            Answer::Threads(count) => {
                self.thread_count = count;
                self.next(ProbeStep::ResumeOrphans);
            }
            Answer::CookieDiscarded => self.next(ProbeStep::DrainUnmapped),
            Answer::Retry => {
                self.busy = false;
                self.retry_at = Some(now + self.retry_ms);
            }
            Answer::Ready | Answer::Decline(_) => {}
        }
        answer.end()
    }

    /// A resumed orphan or a reclaim call ended (see [`record_leftover_call`]): once the step's
    /// last one did, move on, or start another round of leftovers.
    pub fn on_leftover_call_done(&mut self, engine: &CallEngine) {
        let outstanding = engine.any_call(|purpose| {
            matches!(
                purpose,
                Purpose::Orphan { .. }
                    | Purpose::ReclaimRegistration { .. }
                    | Purpose::ReclaimSession { .. }
            )
        });
        if outstanding {
            return;
        }
        match self.step {
            ProbeStep::ResumeOrphans => self.next(ProbeStep::Reclaim),
            // Another round: leftovers that did not fit in the message slots.
            ProbeStep::Reclaim => self.busy = false,
            _ => {}
        }
    }

    /// Time passed: the deadline declines; a due retry lets the step start again.
    pub fn on_timer(&mut self, now: Millis, stats: &mut TeedStats) -> Option<ProbeEnd> {
        if now >= self.deadline {
            tracing::warn!(step = ?self.step, "probe deadline expired");
            stats.deadline_expiries += 1;
            return Some(ProbeEnd::Declined(DeclineReason::DeadlineExpired));
        }
        if self.retry_at.is_some_and(|t| now >= t) {
            self.retry_at = None;
        }
        None
    }
}

/// Records what a resumed orphan or a reclaim call did, whether or not the probe still runs.
pub(crate) fn record_leftover_call<M: PhysMem>(
    reg: &mut Registry<M>,
    stats: &mut TeedStats,
    purpose: &Purpose,
    outcome: &Outcome,
) {
    match purpose {
        Purpose::Orphan { thread } => {
            if matches!(outcome, Outcome::Done(_)) {
                tracing::info!(thread, "resumed a thread an earlier world left suspended");
                stats.orphans_resumed += 1;
            }
        }
        Purpose::ReclaimRegistration { journal_slot } => {
            if let Outcome::Done(arg) = outcome {
                if arg.ret == teec::SUCCESS {
                    stats.reclaimed_registrations += 1;
                }
                reg.journal_registration(Some(*journal_slot), EntryState::Free);
            }
        }
        Purpose::ReclaimSession { journal_slot } => {
            if let Outcome::Done(arg) = outcome {
                if arg.ret == teec::SUCCESS {
                    stats.reclaimed_sessions += 1;
                }
                reg.journal_session(Some(*journal_slot), EntryState::Free, None);
            }
        }
        _ => {}
    }
}

/// Starts reclaiming journal leftovers; false when there is nothing (left) to do.
fn start_reclaim<M: PhysMem>(now: Millis, reg: &mut Registry<M>, engine: &mut CallEngine) -> bool {
    let Some(leftovers) = reg.leftovers() else {
        return false;
    };
    // First read every open whose outcome only its message slot knows: the secure world wrote
    // it there in the step that created the session, and the calls below reuse the slots.
    let mut work = Vec::with_capacity(leftovers.len());
    for leftover in leftovers {
        match leftover {
            Leftover::OpeningSession { slot, arg_slot, .. } => {
                let opened = engine
                    .slot_pa(arg_slot as usize)
                    .and_then(|pa| MsgArg::read_from(&reg.mem, pa).ok())
                    .filter(|a| a.cmd == cmd::OPEN_SESSION && a.ret == teec::SUCCESS);
                match opened {
                    Some(arg) => {
                        reg.journal_session(Some(slot), EntryState::Live, Some(arg.session));
                        work.push(Leftover::Session {
                            slot,
                            session: arg.session,
                            owner: 0,
                        });
                    }
                    None => reg.journal_session(Some(slot), EntryState::Free, None),
                }
            }
            other => work.push(other),
        }
    }
    let mut started = false;
    for leftover in work {
        let (purpose, arg) = match leftover {
            Leftover::Registration { slot, cookie, .. } => (
                Purpose::ReclaimRegistration { journal_slot: slot },
                MsgArg::unregister_shm(cookie),
            ),
            Leftover::Session { slot, session, .. } => (
                Purpose::ReclaimSession { journal_slot: slot },
                MsgArg::close_session(session),
            ),
            Leftover::OpeningSession { .. } => continue,
        };
        match engine.submit(reg, now, purpose, &arg) {
            Ok(_) => started = true,
            // Out of message slots: the rest goes in the next round.
            Err(_) => break,
        }
    }
    started
}
