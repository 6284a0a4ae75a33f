//! Probe and shutdown: the two sequences the kexec/kdump series is about, with every wait bounded.
//!
//! Probe: crash flag → decline with no SMC (adf752af454e); API UID and revision; capabilities;
//! thread count; resume threads an earlier world left suspended (beyond Linux); reclaim what the
//! journal lists (beyond Linux); drain stale RPC-cache entries in *unmapped* mode, discarding
//! their cookies (b5c10dd04b74); enable the cache; Ready.
//!
//! Shutdown: let calls in flight finish; unregister and close what clients left (beyond Linux);
//! drain the RPC cache in *mapped* mode, freeing each returned buffer (f25889f93184); ack.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use optee_abi::mem::PhysMem;
use optee_abi::msg::{cmd, MsgArg};
use optee_abi::smc::{func, join_u32_pair, ret, sec_cap, Regs, MSG_REVISION_MAJOR, MSG_UID};
use optee_abi::teec;
use tee_proto::lifecycle::{
    BootInfo, BootKind, DeclineReason, RamWindow, ServerEvent, ShutdownReason, ShutdownReport,
};
use tee_proto::Header;

use crate::config::Millis;
use crate::core::{ArgSlots, FastCall, Pending, Phase};
use crate::engine::{close_msg, unregister_msg, Outcome};
use crate::frames::FrameAllocator;
use crate::journal::{self, owner_tag, EntryState, Journal, Leftover};
use crate::types::{CallStatus, Purpose, ShmState};
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

/// Steps of the shutdown, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShutdownStep {
    Quiesce,
    Sweep,
    DrainMapped,
}

/// The shutdown in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShutdownRun {
    pub step: ShutdownStep,
    pub deadline: Millis,
    pub retry_at: Option<Millis>,
    pub busy: bool,
    pub request: Header,
    pub reason: ShutdownReason,
    pub report: ShutdownReport,
    /// Sweep targets already tried, so a failing one is not retried for ever.
    pub swept_shms: BTreeSet<u32>,
    pub swept_sessions: BTreeSet<u32>,
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

    fn decline(&mut self, reason: DeclineReason) {
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

    fn fast(&mut self, call: FastCall, id: u32, a1: u64) {
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
                    &unregister_msg(cookie),
                ),
                Leftover::Session { slot, session, .. } => self.submit_msg(
                    now,
                    Purpose::ReclaimSession { journal_slot: slot },
                    &close_msg(session),
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

    /// Timers of calls and of the probe and shutdown sequences.
    pub(crate) fn on_timers(&mut self, now: Millis) {
        self.on_call_timers(now);
        match &mut self.phase {
            Phase::Probing(p) => {
                if now >= p.deadline {
                    tracing::warn!(step = ?p.step, "probe deadline expired");
                    self.stats.deadline_expiries += 1;
                    self.decline(DeclineReason::DeadlineExpired);
                } else if p.retry_at.is_some_and(|t| now >= t) {
                    p.retry_at = None;
                }
            }
            Phase::ShuttingDown(s) => {
                if now >= s.deadline {
                    tracing::warn!(step = ?s.step, "shutdown deadline expired");
                    self.stats.deadline_expiries += 1;
                    s.report.errors += 1;
                    self.finish_shutdown();
                } else if s.retry_at.is_some_and(|t| now >= t) {
                    s.retry_at = None;
                }
            }
            _ => {}
        }
    }

    // ---- shutdown ----

    pub(crate) fn start_shutdown(&mut self, now: Millis, request: Header, reason: ShutdownReason) {
        match self.phase {
            Phase::Serving => {
                tracing::info!(?reason, "shutdown");
                self.phase = Phase::ShuttingDown(ShutdownRun {
                    step: ShutdownStep::Quiesce,
                    deadline: now + self.cfg.deadlines.shutdown_ms,
                    retry_at: None,
                    busy: false,
                    request,
                    reason,
                    report: ShutdownReport::default(),
                    swept_shms: BTreeSet::new(),
                    swept_sessions: BTreeSet::new(),
                });
            }
            Phase::ShuttingDown(_) => {}
            _ => {
                // Nothing was ever served (declined, or never probed): nothing to release.
                if !matches!(self.phase, Phase::Declined(_)) {
                    self.phase = Phase::Stopped;
                }
                self.send_init_reply(request, ServerEvent::ShutdownAck(ShutdownReport::default()));
            }
        }
    }

    fn shutdown_mut(&mut self) -> Option<&mut ShutdownRun> {
        match &mut self.phase {
            Phase::ShuttingDown(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn note_shutdown_unregister(&mut self) {
        if let Some(s) = self.shutdown_mut() {
            s.report.unregistered += 1;
        }
    }

    pub(crate) fn note_shutdown_close(&mut self) {
        if let Some(s) = self.shutdown_mut() {
            s.report.sessions_closed += 1;
        }
    }

    pub(crate) fn advance_shutdown(&mut self, now: Millis) {
        loop {
            let Phase::ShuttingDown(s) = &self.phase else {
                return;
            };
            if s.retry_at.is_some() || (s.busy && !self.calls.is_empty()) {
                return;
            }
            let step = s.step;
            // Nothing else may be in flight when the cache is switched off.
            if !self.calls.is_empty() {
                return;
            }
            match step {
                ShutdownStep::Quiesce => {
                    if let Some(s) = self.shutdown_mut() {
                        s.step = ShutdownStep::Sweep;
                        s.busy = false;
                    }
                }
                ShutdownStep::Sweep => {
                    if !self.cfg.hardening.sweep_on_shutdown || !self.sweep_round(now) {
                        if let Some(s) = self.shutdown_mut() {
                            s.step = ShutdownStep::DrainMapped;
                            s.busy = false;
                        }
                        continue;
                    }
                    if let Some(s) = self.shutdown_mut() {
                        s.busy = true;
                    }
                    return;
                }
                ShutdownStep::DrainMapped => {
                    if s.busy {
                        return;
                    }
                    if self.cfg.seed_bugs.no_shutdown_cache_drain {
                        self.finish_shutdown();
                        return;
                    }
                    if let Some(s) = self.shutdown_mut() {
                        s.busy = true;
                    }
                    self.fast(FastCall::DrainMapped, func::DISABLE_SHM_CACHE, 0);
                    return;
                }
            }
        }
    }

    /// Unregisters and closes what is left; false when nothing (untried) is left.
    fn sweep_round(&mut self, now: Millis) -> bool {
        let Some(s) = self.shutdown_mut() else {
            return false;
        };
        let tried_shms = s.swept_shms.clone();
        let tried_sessions = s.swept_sessions.clone();
        let shms: Vec<u32> = self
            .shms
            .iter()
            .filter(|(id, sh)| {
                !tried_shms.contains(id)
                    && matches!(sh.state, ShmState::Registered | ShmState::ReleasePending)
            })
            .map(|(id, _)| *id)
            .collect();
        let sessions: Vec<u32> = self
            .sessions
            .iter()
            .filter(|(id, se)| !tried_sessions.contains(id) && !se.closing)
            .map(|(id, _)| *id)
            .collect();
        let mut started = false;
        for shm in shms {
            if let Some(s) = self.shutdown_mut() {
                s.swept_shms.insert(shm);
            }
            match self.start_unregister(now, shm, None) {
                Ok(()) => started = true,
                Err(_) => {
                    if let Some(s) = self.shutdown_mut() {
                        s.swept_shms.remove(&shm);
                    }
                    break;
                }
            }
        }
        for session in sessions {
            if self.args.used.iter().all(|u| *u) {
                break;
            }
            if let Some(s) = self.shutdown_mut() {
                s.swept_sessions.insert(session);
            }
            self.start_close(now, session, None);
            started = true;
        }
        started
    }

    fn on_drain_mapped(&mut self, now: Millis, code: u32, cookie: u64) {
        let retry = now + self.cfg.deadlines.retry_ms;
        let Some(s) = self.shutdown_mut() else { return };
        s.busy = false;
        match code {
            ret::OK => {
                // f25889f93184: this world made the buffer; free it.
                if self.free_private(cookie) {
                    self.stats.cache_buffers_freed += 1;
                    if let Some(s) = self.shutdown_mut() {
                        s.report.cache_buffers_freed += 1;
                    }
                }
            }
            ret::EBUSY => {
                if let Some(s) = self.shutdown_mut() {
                    s.retry_at = Some(retry);
                }
            }
            _ => self.finish_shutdown(),
        }
    }

    fn finish_shutdown(&mut self) {
        let Phase::ShuttingDown(s) = &self.phase else {
            return;
        };
        let mut report = s.report;
        let request = s.request;
        let leftovers = self.shms.len() + self.sessions.len();
        if self.cfg.hardening.sweep_on_shutdown && leftovers > 0 {
            report.errors += leftovers as u32;
        }
        self.stats.shutdown_errors += u64::from(report.errors);
        self.phase = Phase::Stopped;
        // Calls still waiting for a thread will never get one now.
        let waiting: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| !matches!(c.status, CallStatus::InFlight(_)))
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            self.finish(0, id, Outcome::Deadline);
        }
        self.send_init_reply(request, ServerEvent::ShutdownAck(report));
    }

    // ---- journal helpers (no-ops without a journal) ----

    pub(crate) fn journal_session_begin(
        &mut self,
        kind: tee_proto::lifecycle::ServerKind,
        arg_slot: usize,
    ) -> Option<usize> {
        let j = self.journal.as_mut()?;
        j.begin_session(&mut self.mem, owner_tag(kind), arg_slot)
            .ok()
            .flatten()
    }

    pub(crate) fn journal_registration(&mut self, slot: Option<usize>, state: EntryState) {
        if let (Some(j), Some(slot)) = (self.journal.as_mut(), slot) {
            if let Err(error) = j.set_registration(&mut self.mem, slot, state) {
                tracing::warn!(%error, "journal write failed");
            }
        }
    }

    pub(crate) fn journal_session(
        &mut self,
        slot: Option<usize>,
        state: EntryState,
        session: Option<u32>,
    ) {
        if let (Some(j), Some(slot)) = (self.journal.as_mut(), slot) {
            if let Err(error) = j.set_session(&mut self.mem, slot, state, session) {
                tracing::warn!(%error, "journal write failed");
            }
        }
    }
}
