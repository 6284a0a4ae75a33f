//! The probe: crash flag → decline with no SMC (adf752af454e); API UID and revision;
//! capabilities; thread count; drain stale RPC-cache entries in *unmapped* mode, discarding their
//! cookies (b5c10dd04b74); then resume threads an earlier world left suspended (beyond Linux) and
//! drain again; reclaim what the journal lists (beyond Linux); enable the cache; Ready. Every wait
//! is bounded by the probe deadline: where Linux hung, teed declines.
//!
//! The drain comes before any yielding call, as Linux orders optee_probe (smc_abi.c: the unmapped
//! drain runs before the driver issues its first call): a cached RPC argument still holds a
//! cookie of the previous kernel, and a call made first could have the secure world send it back
//! (OP-TEE issue #1312). DISABLE_SHM_CACHE answers EBUSY while a thread is suspended
//! (thread_disable_prealloc_rpc_cache), which is where Linux waited for ever; teed resumes those
//! orphans (RETURN_FROM_RPC, not a new call) and drains again.
//!
//! With a modern secure world (SEC_CAP_RPC_ARG, SEC_CAP_ASYNC_NOTIF; `crate::abi`) three steps
//! follow the reclaim: register teed's argument pages (the reclaim has unregistered those an
//! earlier boot left), enable asynchronous notifications and read whatever values an earlier
//! world left queued; and the RPC cache is not enabled, as Linux does not enable it when the
//! RPC struct travels with the call (smc_abi.c optee_probe), since no thread needs one then.
//!
//! A machine of its own, driven from outside: it makes its calls through the call engine, reads
//! and writes the journal through the registry, and tells the server how it ended.

use optee_abi::mem::{PhysMem, PAGE_SIZE_U64};
use optee_abi::smc::{func, ret, sec_cap, Regs, MSG_REVISION_MAJOR, MSG_UID};
use tee_proto::lifecycle::{BootInfo, BootKind, ClientWindows, DeclineReason, RamWindow};
use tee_proto::Generation;

use crate::abi::{self, ArgPages, Caps};
use crate::call::FastCall;
use crate::config::{Bounds, Millis, TeedConfig};
use crate::engine::CallEngine;
use crate::journal;
use crate::leftovers;
use crate::registry::Registry;
use crate::types::TeedStats;

/// Steps of the probe, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ProbeStep {
    Uid,
    Revision,
    OsRevision,
    Capabilities,
    ThreadCount,
    DrainUnmapped,
    ResumeOrphans,
    Reclaim,
    /// With SEC_CAP_RPC_ARG: REGISTER_SHM of the argument pages.
    RegisterArgs,
    /// With SEC_CAP_ASYNC_NOTIF: ENABLE_ASYNC_NOTIF.
    EnableNotif,
    /// With notifications enabled: read the values an earlier world left queued.
    ReadStaleNotif,
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
    pub windows: ClientWindows,
    pub journal: RamWindow,
}

/// What the answer to one of the probe's fast calls says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Go on with this step.
    Next(ProbeStep),
    /// What EXCHANGE_CAPABILITIES offers (dynamic shm is there).
    Caps(Caps),
    /// ENABLE_ASYNC_NOTIF answered this code.
    NotifEnabled(u32),
    /// The secure world has this many threads.
    Threads(u32),
    /// A stale cache entry was discarded; drain again.
    CookieDiscarded,
    /// The cache is empty and off.
    Drained,
    /// The cache cannot be drained: a thread is not free.
    DrainBusy,
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
                Answer::Caps(Caps::read(regs))
            }
            FastCall::Capabilities => incompatible,
            FastCall::ThreadCount if code == ret::OK => Answer::Threads(regs[1] as u32),
            FastCall::ThreadCount => Answer::Threads(0),
            FastCall::DrainUnmapped => match code {
                ret::OK => Answer::CookieDiscarded,
                ret::EBUSY => Answer::DrainBusy,
                _ => Answer::Drained,
            },
            FastCall::EnableCache => match code {
                ret::OK => Answer::Ready,
                ret::EBUSY => Answer::Retry,
                _ => incompatible,
            },
            FastCall::EnableNotif => Answer::NotifEnabled(code),
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
            Answer::Next(_)
            | Answer::Caps(_)
            | Answer::NotifEnabled(_)
            | Answer::Threads(_)
            | Answer::CookieDiscarded
            | Answer::Drained
            | Answer::DrainBusy
            | Answer::Retry => None,
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
    /// Orphans were resumed once already (the drain runs again after them).
    orphans_resumed: bool,
    /// Seed bug b5c10dd04b74: skip the stale-cache drain.
    skip_cache_drain: bool,
    /// Use the modern interface when offered ([`TeedConfig::modern_abi`]).
    modern_abi: bool,
    /// Pack argument structs as Linux mainline does ([`TeedConfig::mainline_shutdown`]).
    mainline: bool,
    retry_ms: Millis,
    /// Cookies the unmapped drain discarded so far, and the most a real cache holds.
    drained: u32,
    bounds: Bounds,
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
            hello.windows,
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
            deadline: now.saturating_add(cfg.deadlines.probe_ms),
            retry_at: None,
            busy: false,
            thread_count: 0,
            resume_orphans: cfg.hardening.resume_orphans,
            orphans_resumed: false,
            skip_cache_drain: cfg.seed_bugs.no_probe_cache_drain,
            modern_abi: cfg.modern_abi,
            mainline: cfg.mainline_shutdown,
            retry_ms: cfg.deadlines.retry_ms,
            drained: 0,
            bounds: cfg.bounds,
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

    /// Starts the current step unless it is already out or waiting for its retry; `Some` when
    /// the probe ends without another SMC.
    pub fn advance<M: PhysMem>(
        &mut self,
        now: Millis,
        reg: &mut Registry<M>,
        engine: &mut CallEngine,
    ) -> Option<ProbeEnd> {
        loop {
            if self.busy || self.retry_at.is_some() {
                return None;
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
                ProbeStep::DrainUnmapped => {
                    if self.skip_cache_drain {
                        self.next(ProbeStep::ResumeOrphans);
                        continue;
                    }
                    engine.fast(FastCall::DrainUnmapped, func::DISABLE_SHM_CACHE)
                }
                ProbeStep::ResumeOrphans => {
                    if !self.resume_orphans || self.thread_count == 0 || self.orphans_resumed {
                        self.next(ProbeStep::Reclaim);
                        continue;
                    }
                    self.orphans_resumed = true;
                    leftovers::resume_orphans(now, engine, self.thread_count);
                }
                ProbeStep::Reclaim => {
                    if !leftovers::start_reclaim(now, reg, engine) {
                        self.next(ProbeStep::RegisterArgs);
                        continue;
                    }
                }
                ProbeStep::RegisterArgs => {
                    if !abi::start_register_args(now, reg, engine) {
                        self.next(ProbeStep::EnableNotif);
                        continue;
                    }
                }
                ProbeStep::EnableNotif => {
                    if !engine.abi.caps.async_notif {
                        self.next(ProbeStep::EnableCache);
                        continue;
                    }
                    engine.fast(FastCall::EnableNotif, func::ENABLE_ASYNC_NOTIF);
                }
                ProbeStep::ReadStaleNotif => {
                    if !abi::start_stale_read(engine) {
                        self.next(ProbeStep::EnableCache);
                        continue;
                    }
                }
                // Linux enables the cache only when no RPC struct travels with the call.
                ProbeStep::EnableCache if engine.abi.caps.rpc_arg() => {
                    return Some(ProbeEnd::Ready);
                }
                ProbeStep::EnableCache => {
                    engine.fast(FastCall::EnableCache, func::ENABLE_SHM_CACHE)
                }
            }
            return None;
        }
    }

    /// The answer to the step's fast call.
    pub fn on_answer(
        &mut self,
        now: Millis,
        answer: Answer,
        engine: &mut CallEngine,
    ) -> Option<ProbeEnd> {
        match answer {
            Answer::Next(step) => self.next(step),
            Answer::Caps(caps) => {
                tracing::info!(?caps, modern = self.modern_abi, "secure world capabilities");
                // A Linux 5.14 driver knows neither capability: it uses neither.
                let used = if self.modern_abi {
                    caps
                } else {
                    Caps::default()
                };
                abi::adopt_caps(engine, used, self.mainline);
                self.next(ProbeStep::ThreadCount);
            }
            Answer::NotifEnabled(code) => {
                engine.abi.notif_enabled(code);
                self.next(ProbeStep::ReadStaleNotif);
            }
            Answer::Threads(count) => {
                if count > self.bounds.max_threads {
                    tracing::warn!(count, "absurd secure thread count; clamped");
                }
                self.thread_count = count.min(self.bounds.max_threads);
                self.next(ProbeStep::DrainUnmapped);
            }
            Answer::CookieDiscarded => {
                self.drained = self.drained.saturating_add(1);
                if self.drained > self.bounds.max_cache_drain {
                    // A cache holds one buffer per thread: this one never empties.
                    tracing::warn!(drained = self.drained, "RPC cache never empties");
                    let reason = DeclineReason::IncompatibleSecureWorld;
                    return Some(ProbeEnd::Declined(reason));
                }
                self.next(ProbeStep::DrainUnmapped);
            }
            // Empty and off, and every thread was free: no orphan to resume.
            Answer::Drained => self.next(ProbeStep::Reclaim),
            Answer::DrainBusy if self.resume_orphans && !self.orphans_resumed => {
                // A thread is suspended: resume the orphans, then drain again.
                self.next(ProbeStep::ResumeOrphans);
            }
            Answer::DrainBusy | Answer::Retry => {
                self.busy = false;
                self.retry_at = Some(now.saturating_add(self.retry_ms));
            }
            Answer::Ready | Answer::Decline(_) => {}
        }
        answer.end()
    }

    /// A resumed orphan or a reclaim call ended (recorded by [`leftovers::record`]): once the
    /// step's last one did, move on, or start another round of leftovers.
    pub fn on_leftover_call_done(&mut self, engine: &CallEngine) {
        if engine.any_call(leftovers::is_leftover_call) {
            return;
        }
        match self.step {
            // Resumed threads that finished left their RPC argument in the cache: drain again.
            ProbeStep::ResumeOrphans if !self.skip_cache_drain => {
                self.next(ProbeStep::DrainUnmapped)
            }
            ProbeStep::ResumeOrphans => self.next(ProbeStep::Reclaim),
            // Another round: leftovers that did not fit in the message slots.
            ProbeStep::Reclaim => self.busy = false,
            _ => {}
        }
    }

    /// A call or a notification read of the modern interface ended: the argument pages are
    /// registered (or refused), or the stale values are read and their bottom half ran.
    pub fn on_abi_done(&mut self, engine: &CallEngine) {
        match self.step {
            ProbeStep::RegisterArgs
                if !matches!(engine.abi.arg_pages, ArgPages::Registering { .. }) =>
            {
                self.next(ProbeStep::EnableNotif)
            }
            ProbeStep::ReadStaleNotif if engine.abi.notif_idle() => {
                self.next(ProbeStep::EnableCache)
            }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::call::Pending;
    use crate::types::Effect;
    use tee_test_support::secure_world::ram::SparseRam;

    const RAM: RamWindow = RamWindow {
        base: 0x4000_0000,
        len: 1 << 20,
    };
    const NO_JOURNAL: RamWindow = RamWindow { base: 0, len: 0 };

    fn hello(kind: BootKind, crash_flag: bool) -> Hello {
        Hello {
            generation: 1,
            boot: BootInfo {
                boot_id: 7,
                kind,
                crash_flag,
            },
            ram: RAM,
            windows: ClientWindows::NONE,
            journal: NO_JOURNAL,
        }
    }

    fn parts(cfg: &TeedConfig) -> (Registry<SparseRam>, CallEngine) {
        let reg = Registry::new(SparseRam::new(RAM.base, RAM.len));
        (reg, CallEngine::new(cfg))
    }

    /// The fast call the probe asked for; the engine forgets it as the shell answers.
    fn asked(engine: &mut CallEngine) -> (FastCall, u32) {
        let Some(Effect::Smc { token, regs }) = engine.next_effect() else {
            panic!("no SMC asked for");
        };
        let Some(Pending::Fast(fast)) = engine.take_pending(token) else {
            panic!("not a fast call");
        };
        (fast, regs[0] as u32)
    }

    fn answer(
        probe: &mut Probe,
        engine: &mut CallEngine,
        now: Millis,
        fast: FastCall,
        regs: Regs,
    ) -> Option<ProbeEnd> {
        probe.on_answer(now, Answer::read(fast, &regs).unwrap(), engine)
    }

    #[test]
    fn a_crash_kernel_declines_before_any_smc() {
        let cfg = TeedConfig::new();
        let (mut reg, mut engine) = parts(&cfg);
        let started = Probe::start(
            0,
            &cfg,
            hello(BootKind::CrashKernel, false),
            &mut reg,
            &mut engine,
        );
        assert_eq!(started, Err(DeclineReason::CrashKernel));
        let flagged = Probe::start(0, &cfg, hello(BootKind::Kexec, true), &mut reg, &mut engine);
        assert_eq!(flagged, Err(DeclineReason::CrashKernel));
        assert_eq!(engine.next_effect(), None);
    }

    #[test]
    fn a_fresh_secure_world_is_probed_step_by_step_to_ready() {
        let cfg = TeedConfig::new();
        let (mut reg, mut engine) = parts(&cfg);
        let mut probe =
            Probe::start(0, &cfg, hello(BootKind::Cold, false), &mut reg, &mut engine).unwrap();
        let uid = MSG_UID.map(u64::from);
        let ok = u64::from(ret::OK);
        let script: [(FastCall, u32, Regs); 6] = [
            (
                FastCall::Uid,
                func::CALLS_UID,
                [uid[0], uid[1], uid[2], uid[3], 0, 0, 0, 0],
            ),
            (
                FastCall::Revision,
                func::CALLS_REVISION,
                [u64::from(MSG_REVISION_MAJOR), 0, 0, 0, 0, 0, 0, 0],
            ),
            (
                FastCall::OsRevision,
                func::GET_OS_REVISION,
                [3, 18, 0, 0, 0, 0, 0, 0],
            ),
            (
                FastCall::Capabilities,
                func::EXCHANGE_CAPABILITIES,
                [ok, sec_cap::DYNAMIC_SHM, 0, 0, 0, 0, 0, 0],
            ),
            // No threads: nothing to resume; no journal: nothing to reclaim.
            (
                FastCall::ThreadCount,
                func::GET_THREAD_COUNT,
                [ok, 0, 0, 0, 0, 0, 0, 0],
            ),
            // The cache holds nothing stale.
            (
                FastCall::DrainUnmapped,
                func::DISABLE_SHM_CACHE,
                [u64::from(ret::ENOTAVAIL), 0, 0, 0, 0, 0, 0, 0],
            ),
        ];
        for (fast, function, regs) in script {
            probe.advance(1, &mut reg, &mut engine);
            assert_eq!(asked(&mut engine), (fast, function));
            assert_eq!(answer(&mut probe, &mut engine, 1, fast, regs), None);
        }
        probe.advance(1, &mut reg, &mut engine);
        assert_eq!(
            asked(&mut engine),
            (FastCall::EnableCache, func::ENABLE_SHM_CACHE)
        );
        let enabled = [ok, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            answer(&mut probe, &mut engine, 1, FastCall::EnableCache, enabled),
            Some(ProbeEnd::Ready)
        );
    }

    #[test]
    fn a_busy_cache_is_asked_again_after_a_pause() {
        let cfg = TeedConfig::new();
        let (mut reg, mut engine) = parts(&cfg);
        let mut probe =
            Probe::start(0, &cfg, hello(BootKind::Cold, false), &mut reg, &mut engine).unwrap();
        probe.next(ProbeStep::EnableCache);
        probe.advance(10, &mut reg, &mut engine);
        assert_eq!(asked(&mut engine).0, FastCall::EnableCache);
        let busy = [u64::from(ret::EBUSY), 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            answer(&mut probe, &mut engine, 10, FastCall::EnableCache, busy),
            None
        );
        let retry_at = 10 + cfg.deadlines.retry_ms;
        assert_eq!(probe.next_timeout(), Some(retry_at));
        probe.advance(11, &mut reg, &mut engine);
        assert_eq!(
            engine.next_effect(),
            None,
            "nothing before the pause is over"
        );
        let mut stats = TeedStats::default();
        assert_eq!(probe.on_timer(retry_at, &mut stats), None);
        probe.advance(retry_at, &mut reg, &mut engine);
        assert_eq!(asked(&mut engine).0, FastCall::EnableCache);
    }

    #[test]
    fn the_deadline_declines_where_linux_would_hang() {
        let cfg = TeedConfig::new();
        let (mut reg, mut engine) = parts(&cfg);
        let mut probe =
            Probe::start(0, &cfg, hello(BootKind::Cold, false), &mut reg, &mut engine).unwrap();
        probe.advance(0, &mut reg, &mut engine);
        let mut stats = TeedStats::default();
        assert_eq!(probe.next_timeout(), Some(cfg.deadlines.probe_ms));
        assert_eq!(probe.on_timer(cfg.deadlines.probe_ms - 1, &mut stats), None);
        assert_eq!(
            probe.on_timer(cfg.deadlines.probe_ms, &mut stats),
            Some(ProbeEnd::Declined(DeclineReason::DeadlineExpired))
        );
        assert_eq!(stats.deadline_expiries, 1);
    }

    #[test]
    fn a_late_answer_keeps_its_verdict() {
        let refused = [u64::from(ret::UNKNOWN_FUNCTION), 0, 0, 0, 0, 0, 0, 0];
        let late = Answer::read(FastCall::Uid, &refused).unwrap();
        let incompatible = DeclineReason::IncompatibleSecureWorld;
        assert_eq!(late.end(), Some(ProbeEnd::Declined(incompatible)));
        assert_eq!(
            Answer::read(FastCall::DrainMapped, &refused),
            None,
            "not the probe's call"
        );
    }
}
