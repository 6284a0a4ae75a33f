//! The shutdown: let calls in flight finish; unregister and close what clients left (beyond
//! Linux); with a modern secure world, stop asynchronous notifications (STOP_ASYNC_NOTIF) and
//! unregister teed's argument pages, both of which Linux mainline's shutdown leaves behind
//! (drivers/tee/optee/smc_abi.c optee_shutdown; see `crate::abi`); drain the RPC cache in
//! *mapped* mode, freeing each returned buffer (f25889f93184); ack. Bounded by the shutdown
//! deadline.
//!
//! A machine of its own, driven from outside: it releases through the registry and the call
//! engine, keeps the report, and says when it is done; the server then stops and acks.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use optee_abi::mem::PhysMem;
use optee_abi::smc::{func, ret};
use tee_proto::lifecycle::{ShutdownReason, ShutdownReport};
use tee_proto::Header;

use crate::abi::{self, ArgPages};
use crate::call::FastCall;
use crate::config::{Millis, TeedConfig};
use crate::engine::CallEngine;
use crate::registry::Registry;
use crate::release::{start_close, start_unregister};
use crate::types::ShmState;

/// Steps of the shutdown, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShutdownStep {
    Quiesce,
    Sweep,
    /// STOP_ASYNC_NOTIF, when this incarnation enabled notifications.
    StopNotif,
    /// UNREGISTER_SHM of teed's argument pages, when they are registered.
    UnregisterArgs,
    DrainMapped,
}

/// A finished shutdown: the ack owed to init's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShutdownDone {
    pub request: Header,
    pub report: ShutdownReport,
}

/// The shutdown in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shutdown {
    step: ShutdownStep,
    deadline: Millis,
    retry_at: Option<Millis>,
    busy: bool,
    request: Header,
    report: ShutdownReport,
    /// Sweep targets already tried, so a failing one is not retried for ever.
    swept_shms: BTreeSet<u32>,
    swept_sessions: BTreeSet<u32>,
    sweep: bool,
    /// Seed bug f25889f93184: leave the RPC cache undrained.
    skip_cache_drain: bool,
    /// Linux mainline's optee_shutdown ([`TeedConfig::mainline_shutdown`]): with an RPC struct
    /// in use, nothing at all (no stop, no unregister, no drain).
    mainline: bool,
    retry_ms: Millis,
    /// Cookies the mapped drain returned, against [`crate::config::Bounds::max_cache_drain`].
    drained: u32,
    max_drain: u32,
}

impl Shutdown {
    /// A shutdown for init's `request`.
    pub fn new(now: Millis, cfg: &TeedConfig, request: Header, reason: ShutdownReason) -> Shutdown {
        tracing::info!(?reason, "shutdown");
        Shutdown {
            step: ShutdownStep::Quiesce,
            deadline: now.saturating_add(cfg.deadlines.shutdown_ms),
            retry_at: None,
            busy: false,
            request,
            report: ShutdownReport::default(),
            swept_shms: BTreeSet::new(),
            swept_sessions: BTreeSet::new(),
            sweep: cfg.hardening.sweep_on_shutdown,
            skip_cache_drain: cfg.seed_bugs.no_shutdown_cache_drain,
            mainline: cfg.mainline_shutdown,
            retry_ms: cfg.deadlines.retry_ms,
            drained: 0,
            max_drain: cfg.bounds.max_cache_drain,
        }
    }

    /// When the shutdown next needs [`Shutdown::on_timer`].
    pub fn next_timeout(&self) -> Option<Millis> {
        Some(
            self.retry_at
                .map_or(self.deadline, |t| t.min(self.deadline)),
        )
    }

    /// A client buffer was unregistered while shutting down.
    pub fn note_unregistered(&mut self) {
        self.report.unregistered += 1;
    }

    /// A session was closed while shutting down.
    pub fn note_closed(&mut self) {
        self.report.sessions_closed += 1;
    }

    /// Moves through every step that has nothing left to wait for.
    pub fn advance<M: PhysMem>(
        &mut self,
        now: Millis,
        reg: &mut Registry<M>,
        engine: &mut CallEngine,
    ) -> Option<ShutdownDone> {
        loop {
            // Nothing else may be in flight when the cache is switched off.
            if self.retry_at.is_some() || !engine.is_idle() {
                return None;
            }
            match self.step {
                ShutdownStep::Quiesce => {
                    self.step = ShutdownStep::Sweep;
                    self.busy = false;
                }
                ShutdownStep::Sweep => {
                    if !self.sweep || !self.sweep_round(now, reg, engine) {
                        // smc_abi.c optee_shutdown: `if (!optee->rpc_param_count)
                        // optee_disable_shm_cache(optee);` and nothing else.
                        if self.mainline && engine.abi.caps.rpc_arg() {
                            tracing::warn!(
                                "mainline shutdown: argument pages and notifications left behind"
                            );
                            return Some(self.finish(reg, engine));
                        }
                        self.step = ShutdownStep::StopNotif;
                        self.busy = false;
                        continue;
                    }
                    self.busy = true;
                    return None;
                }
                // Each runs its one call (if it has one) and moves on once it ended.
                ShutdownStep::StopNotif => {
                    if !self.busy && abi::start_stop_notif(now, reg, engine) {
                        self.busy = true;
                        return None;
                    }
                    self.step = ShutdownStep::UnregisterArgs;
                    self.busy = false;
                }
                ShutdownStep::UnregisterArgs => {
                    // The last call naming the argument pages has ended (the engine is idle).
                    if !self.busy && abi::start_unregister_args(now, reg, engine) {
                        self.busy = true;
                        return None;
                    }
                    self.step = ShutdownStep::DrainMapped;
                    self.busy = false;
                }
                ShutdownStep::DrainMapped => {
                    if self.busy {
                        return None;
                    }
                    if self.skip_cache_drain {
                        return Some(self.finish(reg, engine));
                    }
                    self.busy = true;
                    engine.fast(FastCall::DrainMapped, func::DISABLE_SHM_CACHE);
                    return None;
                }
            }
        }
    }

    /// Unregisters and closes what is left; false when nothing (untried) is left.
    fn sweep_round<M: PhysMem>(
        &mut self,
        now: Millis,
        reg: &mut Registry<M>,
        engine: &mut CallEngine,
    ) -> bool {
        // No more than the free message slots can start this round: taking only those keeps
        // a round's cost flat however many registrations are left (the rest wait for the next).
        let shms: Vec<u32> = reg
            .shms
            .iter()
            .filter(|(id, sh)| {
                !self.swept_shms.contains(id)
                    && matches!(sh.state, ShmState::Registered | ShmState::ReleasePending)
            })
            .map(|(id, _)| *id)
            .take(engine.free_slots().max(1))
            .collect();
        let sessions: Vec<u32> = reg
            .sessions
            .iter()
            .filter(|(id, se)| !self.swept_sessions.contains(id) && !se.closing)
            .map(|(id, _)| *id)
            .collect();
        let mut started = false;
        for shm in shms {
            self.swept_shms.insert(shm);
            match start_unregister(reg, engine, now, shm, None) {
                Ok(()) => started = true,
                Err(_) => {
                    self.swept_shms.remove(&shm);
                    break;
                }
            }
        }
        for session in sessions {
            if engine.slots_full() {
                break;
            }
            self.swept_sessions.insert(session);
            let _ = start_close(reg, engine, now, session, None);
            started = true;
        }
        started
    }

    /// DISABLE_SHM_CACHE returned `code` with `cookie`.
    pub fn on_drain_mapped<M: PhysMem>(
        &mut self,
        now: Millis,
        code: u32,
        cookie: u64,
        reg: &mut Registry<M>,
        engine: &mut CallEngine,
    ) -> Option<ShutdownDone> {
        self.busy = false;
        match code {
            ret::OK => {
                // f25889f93184: this world made the buffer; free it.
                if engine.free_private(reg, cookie) {
                    engine.stats.cache_buffers_freed += 1;
                    self.report.cache_buffers_freed += 1;
                }
                self.drained = self.drained.saturating_add(1);
                if self.drained > self.max_drain {
                    // A cache holds one buffer per thread: this one never empties.
                    tracing::warn!(drained = self.drained, "RPC cache never empties; giving up");
                    self.report.errors += 1;
                    return Some(self.finish(reg, engine));
                }
                None
            }
            ret::EBUSY => {
                self.retry_at = Some(now.saturating_add(self.retry_ms));
                None
            }
            _ => Some(self.finish(reg, engine)),
        }
    }

    /// Time passed: the deadline ends the shutdown with an error; a due retry lets the drain
    /// go on.
    pub fn on_timer<M: PhysMem>(
        &mut self,
        now: Millis,
        reg: &mut Registry<M>,
        engine: &mut CallEngine,
    ) -> Option<ShutdownDone> {
        if now >= self.deadline {
            tracing::warn!(step = ?self.step, "shutdown deadline expired");
            engine.stats.deadline_expiries += 1;
            self.report.errors += 1;
            return Some(self.finish(reg, engine));
        }
        if self.retry_at.is_some_and(|t| now >= t) {
            self.retry_at = None;
        }
        None
    }

    /// Ends the shutdown now (the conduit is gone): the undone cache drain is one error more.
    pub fn give_up<M: PhysMem>(&self, reg: &Registry<M>, engine: &mut CallEngine) -> ShutdownDone {
        tracing::warn!(step = ?self.step, "no conduit: shutdown ends undone");
        let mut done = self.finish(reg, engine);
        done.report.errors += 1;
        engine.stats.shutdown_errors += 1;
        done
    }

    /// The ack: what the sweep could not release counts as errors.
    fn finish<M: PhysMem>(&self, reg: &Registry<M>, engine: &mut CallEngine) -> ShutdownDone {
        let mut report = self.report;
        let arg_pages = usize::from(engine.abi.arg_pages != ArgPages::None);
        let leftovers = reg.shms.len() + reg.sessions.len() + arg_pages;
        if self.sweep && leftovers > 0 {
            report.errors += leftovers as u32;
        }
        engine.stats.shutdown_errors += u64::from(report.errors);
        ShutdownDone {
            request: self.request,
            report,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::frames::Run;
    use crate::types::{ClientId, Effect, Session, Shm};
    use optee_abi::msg::{cmd, MsgArg};
    use optee_abi::smc::join_u32_pair;
    use tee_proto::lifecycle::ServerKind;
    use tee_test_support::secure_world::ram::SparseRam;

    const RAM_BASE: u64 = 0x4000_0000;

    fn parts(cfg: &TeedConfig) -> (Registry<SparseRam>, CallEngine) {
        let reg = Registry::new(SparseRam::new(RAM_BASE, 1 << 20));
        let mut engine = CallEngine::new(cfg);
        engine.set_arg_slots(alloc::vec![RAM_BASE, RAM_BASE + 0x1000]);
        (reg, engine)
    }

    fn request() -> Header {
        Header::new(0, 1, 42)
    }

    /// The function id of the next SMC asked for, and the message it points at.
    fn next_smc(reg: &Registry<SparseRam>, engine: &mut CallEngine) -> Option<(u32, MsgArg)> {
        let Some(Effect::Smc { regs, .. }) = engine.next_effect() else {
            return None;
        };
        let arg = MsgArg::read_from(&reg.mem, join_u32_pair(regs[1], regs[2])).unwrap_or_default();
        Some((regs[0] as u32, arg))
    }

    #[test]
    fn with_nothing_left_it_drains_the_cache_then_acks() {
        let cfg = TeedConfig::new();
        let (mut reg, mut engine) = parts(&cfg);
        let mut shutdown = Shutdown::new(0, &cfg, request(), ShutdownReason::Kexec);
        assert_eq!(shutdown.advance(0, &mut reg, &mut engine), None);
        let (function, _) = next_smc(&reg, &mut engine).unwrap();
        assert_eq!(function, func::DISABLE_SHM_CACHE);
        assert_eq!(
            shutdown.advance(0, &mut reg, &mut engine),
            None,
            "one drain at a time"
        );
        assert_eq!(next_smc(&reg, &mut engine), None);
        // A cookie this teed never gave out is counted, never freed.
        assert_eq!(
            shutdown.on_drain_mapped(1, ret::OK, 0xdead, &mut reg, &mut engine),
            None
        );
        assert_eq!(engine.stats.stale_rpc_cookies, 1);
        shutdown.advance(1, &mut reg, &mut engine);
        assert_eq!(
            next_smc(&reg, &mut engine).unwrap().0,
            func::DISABLE_SHM_CACHE
        );
        let done = shutdown.on_drain_mapped(2, ret::ENOTAVAIL, 0, &mut reg, &mut engine);
        assert_eq!(
            done,
            Some(ShutdownDone {
                request: request(),
                report: ShutdownReport::default(),
            })
        );
    }

    #[test]
    fn the_seed_bug_acks_without_draining() {
        let mut cfg = TeedConfig::new();
        cfg.seed_bugs.no_shutdown_cache_drain = true;
        let (mut reg, mut engine) = parts(&cfg);
        let mut shutdown = Shutdown::new(0, &cfg, request(), ShutdownReason::Kexec);
        assert!(shutdown.advance(0, &mut reg, &mut engine).is_some());
        assert_eq!(next_smc(&reg, &mut engine), None);
    }

    const TPMD: ClientId = ClientId {
        kind: ServerKind::Tpmd,
        generation: 9,
    };

    #[test]
    fn the_sweep_releases_what_clients_left_and_the_deadline_counts_the_rest() {
        let cfg = TeedConfig::new();
        let (mut reg, mut engine) = parts(&cfg);
        reg.shms.insert(
            1,
            Shm {
                owner: TPMD,
                owner_kind: ServerKind::Tpmd,
                cookie: 0x55,
                run: Run {
                    pa: RAM_BASE + 0x10_000,
                    pages: 1,
                },
                size: 4096,
                state: ShmState::Registered,
                journal_slot: None,
            },
        );
        let session = Session {
            owner: TPMD,
            ta: optee_abi::uuid::FTPM_TA,
            journal_slot: None,
            closing: false,
        };
        reg.sessions.insert(3, session);
        let mut shutdown = Shutdown::new(0, &cfg, request(), ShutdownReason::Reboot);
        assert_eq!(shutdown.advance(0, &mut reg, &mut engine), None);
        let (function, unregister) = next_smc(&reg, &mut engine).unwrap();
        assert_eq!(function, func::CALL_WITH_ARG);
        assert_eq!(unregister, MsgArg::unregister_shm(0x55));
        let (_, close) = next_smc(&reg, &mut engine).unwrap();
        assert_eq!(close.cmd, cmd::CLOSE_SESSION);
        assert_eq!(close.session, 3);
        // The cache is not switched off while those calls are out.
        assert_eq!(shutdown.advance(1, &mut reg, &mut engine), None);
        assert_eq!(next_smc(&reg, &mut engine), None);
        // They never come back: the deadline ends the shutdown, and what is left counts.
        let deadline = cfg.deadlines.shutdown_ms;
        assert_eq!(shutdown.next_timeout(), Some(deadline));
        let done = shutdown.on_timer(deadline, &mut reg, &mut engine).unwrap();
        assert_eq!(done.report.errors, 1 + 2);
        assert_eq!(engine.stats.shutdown_errors, 3);
        assert_eq!(engine.stats.deadline_expiries, 1);
    }
}
