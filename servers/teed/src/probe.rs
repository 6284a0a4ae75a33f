//! The probe: crash flag → decline with no SMC (adf752af454e); API UID and revision;
//! capabilities; thread count; resume threads an earlier world left suspended (beyond Linux);
//! reclaim what the journal lists (beyond Linux); drain stale RPC-cache entries in *unmapped*
//! mode, discarding their cookies (b5c10dd04b74); enable the cache; Ready. Every wait is bounded
//! by the probe deadline: where Linux hung, teed declines.

use alloc::vec::Vec;

use optee_abi::mem::PhysMem;
use optee_abi::msg::{cmd, MsgArg};
use optee_abi::smc::{func, join_u32_pair, ret, sec_cap, Regs, MSG_REVISION_MAJOR, MSG_UID};
use optee_abi::teec;
use tee_proto::lifecycle::{BootInfo, BootKind, DeclineReason, RamWindow, ServerEvent};

use crate::call::{FastCall, Outcome, Pending};
use crate::config::Millis;
use crate::core::{ArgSlots, Phase};
use crate::frames::FrameAllocator;
use crate::journal::{self, EntryState, Journal, Leftover};
use crate::types::Purpose;
use crate::Teed;

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

/// The probe in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Probe {
    pub step: ProbeStep,
    pub deadline: Millis,
    pub retry_at: Option<Millis>,
    /// The step's SMC or calls are out.
    pub busy: bool,
}

impl<M: PhysMem> Teed<M> {
    pub(crate) fn start_probe(
        &mut self,
        now: Millis,
        boot: BootInfo,
        ram: RamWindow,
        journal_window: RamWindow,
    ) {
        let crash_boot = boot.crash_flag || boot.kind == BootKind::CrashKernel;
        if crash_boot && !self.cfg.seed_bugs.probe_in_crash_kernel {
            // adf752af454e: every secure thread may be suspended mid-call; touch nothing.
            tracing::info!("crash kernel: declining before any SMC");
            self.decline(DeclineReason::CrashKernel);
            return;
        }
        self.frames = FrameAllocator::new(ram.base, ram.len);
        self.journal = None;
        if self.cfg.hardening.journal && journal_window.len >= journal::JOURNAL_BYTES {
            match Journal::open(&mut self.mem, journal_window.base) {
                Ok((j, epoch)) => {
                    self.journal = Some(j);
                    self.epoch = epoch;
                }
                Err(error) => tracing::warn!(%error, "journal window unusable; running without"),
            }
        }
        if self.journal.is_none() {
            // Without a journal, boot id and generation still keep cookies apart.
            self.epoch = ((boot.boot_id as u32) << 8) | (self.generation & 0xff);
        }
        self.args = match &self.journal {
            Some(j) => ArgSlots {
                pas: (0..journal::ARG_SLOTS).map(|i| j.arg_slot_pa(i)).collect(),
                used: alloc::vec![false; journal::ARG_SLOTS],
            },
            None => {
                let bytes = journal::ARG_SLOT_BYTES * journal::ARG_SLOTS as u64;
                match self
                    .frames
                    .alloc(bytes.div_ceil(optee_abi::mem::PAGE_SIZE_U64))
                {
                    Some(run) => ArgSlots {
                        pas: (0..journal::ARG_SLOTS as u64)
                            .map(|i| run.pa + i * journal::ARG_SLOT_BYTES)
                            .collect(),
                        used: alloc::vec![false; journal::ARG_SLOTS],
                    },
                    None => {
                        self.decline(DeclineReason::SecureWorldUnavailable);
                        return;
                    }
                }
            }
        };
        self.phase = Phase::Probing(Probe {
            step: ProbeStep::Uid,
            deadline: now + self.cfg.deadlines.probe_ms,
            retry_at: None,
            busy: false,
        });
    }

    pub(crate) fn decline(&mut self, reason: DeclineReason) {
        // Once is enough: a refused SMC answered after the decline must not decline again.
        if matches!(self.phase, Phase::Declined(_)) {
            return;
        }
        self.phase = Phase::Declined(reason);
        self.send_init(ServerEvent::Declined { reason });
    }

    fn probe_mut(&mut self) -> Option<&mut Probe> {
        match &mut self.phase {
            Phase::Probing(p) => Some(p),
            _ => None,
        }
    }

    fn probe_next(&mut self, step: ProbeStep) {
        if let Some(p) = self.probe_mut() {
            p.step = step;
            p.busy = false;
            p.retry_at = None;
        }
    }

    pub(crate) fn fast(&mut self, call: FastCall, id: u32, a1: u64) {
        let regs: Regs = [u64::from(id), a1, 0, 0, 0, 0, 0, 0];
        self.emit_smc(Pending::Fast(call), regs);
    }

    pub(crate) fn advance_probe(&mut self, now: Millis) {
        loop {
            let Phase::Probing(p) = &self.phase else {
                return;
            };
            if p.busy || p.retry_at.is_some() {
                return;
            }
            let step = p.step;
            if let Some(p) = self.probe_mut() {
                p.busy = true;
            }
            match step {
                ProbeStep::Uid => self.fast(FastCall::Uid, func::CALLS_UID, 0),
                ProbeStep::Revision => self.fast(FastCall::Revision, func::CALLS_REVISION, 0),
                ProbeStep::OsRevision => self.fast(FastCall::OsRevision, func::GET_OS_REVISION, 0),
                ProbeStep::Capabilities => {
                    self.fast(FastCall::Capabilities, func::EXCHANGE_CAPABILITIES, 0)
                }
                ProbeStep::ThreadCount => {
                    self.fast(FastCall::ThreadCount, func::GET_THREAD_COUNT, 0)
                }
                ProbeStep::ResumeOrphans => {
                    if !self.cfg.hardening.resume_orphans || self.thread_count == 0 {
                        self.probe_next(ProbeStep::Reclaim);
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
                        self.start_yielding(now, Purpose::Orphan { thread }, None, regs, true);
                    }
                }
                ProbeStep::Reclaim => {
                    if !self.start_reclaim(now) {
                        self.probe_next(ProbeStep::DrainUnmapped);
                        continue;
                    }
                }
                ProbeStep::DrainUnmapped => {
                    if self.cfg.seed_bugs.no_probe_cache_drain {
                        self.probe_next(ProbeStep::EnableCache);
                        continue;
                    }
                    self.fast(FastCall::DrainUnmapped, func::DISABLE_SHM_CACHE, 0)
                }
                ProbeStep::EnableCache => {
                    self.fast(FastCall::EnableCache, func::ENABLE_SHM_CACHE, 0)
                }
            }
            return;
        }
    }

    /// Starts reclaiming journal leftovers; false when there is nothing (left) to do.
    fn start_reclaim(&mut self, now: Millis) -> bool {
        let Some(j) = &self.journal else { return false };
        let Ok(leftovers) = j.leftovers(&self.mem) else {
            return false;
        };
        // First read every open whose outcome only its message slot knows: the secure world wrote
        // it there in the step that created the session, and the calls below reuse the slots.
        let mut work = Vec::with_capacity(leftovers.len());
        for leftover in leftovers {
            match leftover {
                Leftover::OpeningSession { slot, arg_slot, .. } => {
                    let opened = self
                        .args
                        .pas
                        .get(arg_slot as usize)
                        .and_then(|pa| MsgArg::read_from(&self.mem, *pa).ok())
                        .filter(|a| a.cmd == cmd::OPEN_SESSION && a.ret == teec::SUCCESS);
                    match opened {
                        Some(arg) => {
                            self.journal_session(Some(slot), EntryState::Live, Some(arg.session));
                            work.push(Leftover::Session {
                                slot,
                                session: arg.session,
                                owner: 0,
                            });
                        }
                        None => self.journal_session(Some(slot), EntryState::Free, None),
                    }
                }
                other => work.push(other),
            }
        }
        let mut started = false;
        for leftover in work {
            let result = match leftover {
                Leftover::Registration { slot, cookie, .. } => self.submit_msg(
                    now,
                    Purpose::ReclaimRegistration { journal_slot: slot },
                    &MsgArg::unregister_shm(cookie),
                ),
                Leftover::Session { slot, session, .. } => self.submit_msg(
                    now,
                    Purpose::ReclaimSession { journal_slot: slot },
                    &MsgArg::close_session(session),
                ),
                Leftover::OpeningSession { .. } => continue,
            };
            match result {
                Ok(_) => started = true,
                // Out of message slots: the rest goes in the next round.
                Err(_) => break,
            }
        }
        started
    }

    pub(crate) fn on_probe_call_done(&mut self, purpose: &Purpose, outcome: &Outcome) {
        match purpose {
            Purpose::Orphan { thread } => {
                if matches!(outcome, Outcome::Done(_)) {
                    tracing::info!(thread, "resumed a thread an earlier world left suspended");
                    self.stats.orphans_resumed += 1;
                }
            }
            Purpose::ReclaimRegistration { journal_slot } => {
                if let Outcome::Done(arg) = outcome {
                    if arg.ret == teec::SUCCESS {
                        self.stats.reclaimed_registrations += 1;
                    }
                    self.journal_registration(Some(*journal_slot), EntryState::Free);
                }
            }
            Purpose::ReclaimSession { journal_slot } => {
                if let Outcome::Done(arg) = outcome {
                    if arg.ret == teec::SUCCESS {
                        self.stats.reclaimed_sessions += 1;
                    }
                    self.journal_session(Some(*journal_slot), EntryState::Free, None);
                }
            }
            _ => {}
        }
        let step = match &self.phase {
            Phase::Probing(p) => p.step,
            _ => return,
        };
        let outstanding = self.calls.values().any(|c| {
            matches!(
                c.purpose,
                Purpose::Orphan { .. }
                    | Purpose::ReclaimRegistration { .. }
                    | Purpose::ReclaimSession { .. }
            )
        });
        if outstanding {
            return;
        }
        match step {
            ProbeStep::ResumeOrphans => self.probe_next(ProbeStep::Reclaim),
            // Another round: leftovers that did not fit in the message slots.
            ProbeStep::Reclaim => {
                if let Some(p) = self.probe_mut() {
                    p.busy = false;
                }
            }
            _ => {}
        }
    }

    pub(crate) fn on_fast_return(&mut self, now: Millis, fast: FastCall, regs: Regs) {
        let code = regs[0] as u32;
        let retry = now + self.cfg.deadlines.retry_ms;
        match fast {
            FastCall::Uid => {
                let uid = [regs[0], regs[1], regs[2], regs[3]].map(|r| r as u32);
                if uid == MSG_UID {
                    self.probe_next(ProbeStep::Revision);
                } else {
                    self.decline(DeclineReason::IncompatibleSecureWorld);
                }
            }
            FastCall::Revision => {
                if regs[0] as u32 == MSG_REVISION_MAJOR {
                    self.probe_next(ProbeStep::OsRevision);
                } else {
                    self.decline(DeclineReason::IncompatibleSecureWorld);
                }
            }
            FastCall::OsRevision => {
                tracing::info!(major = regs[0], minor = regs[1], "OP-TEE OS revision");
                self.probe_next(ProbeStep::Capabilities);
            }
            FastCall::Capabilities => {
                if code == ret::OK && regs[1] & sec_cap::DYNAMIC_SHM != 0 {
                    self.probe_next(ProbeStep::ThreadCount);
                } else {
                    self.decline(DeclineReason::IncompatibleSecureWorld);
                }
            }
            FastCall::ThreadCount => {
                self.thread_count = if code == ret::OK { regs[1] as u32 } else { 0 };
                self.probe_next(ProbeStep::ResumeOrphans);
            }
            FastCall::DrainUnmapped => match code {
                // b5c10dd04b74: the cookie is from an earlier world; never dereference it.
                ret::OK => {
                    self.stats.cache_cookies_discarded += 1;
                    self.probe_next(ProbeStep::DrainUnmapped);
                }
                ret::EBUSY => self.probe_retry(retry),
                _ => self.probe_next(ProbeStep::EnableCache),
            },
            FastCall::EnableCache => match code {
                ret::OK => {
                    self.phase = Phase::Serving;
                    self.served = true;
                    let generation = self.generation;
                    tracing::info!(generation, "serving");
                    self.send_init(ServerEvent::Ready { generation });
                }
                ret::EBUSY => self.probe_retry(retry),
                _ => self.decline(DeclineReason::IncompatibleSecureWorld),
            },
            FastCall::DrainMapped => {
                self.on_drain_mapped(now, code, join_u32_pair(regs[1], regs[2]))
            }
        }
    }

    fn probe_retry(&mut self, at: Millis) {
        if let Some(p) = self.probe_mut() {
            p.busy = false;
            p.retry_at = Some(at);
        }
    }
}
