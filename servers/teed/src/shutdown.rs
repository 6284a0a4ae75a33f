//! The shutdown: let calls in flight finish; unregister and close what clients left (beyond
//! Linux); drain the RPC cache in *mapped* mode, freeing each returned buffer (f25889f93184);
//! ack. Bounded by the shutdown deadline.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use optee_abi::mem::PhysMem;
use optee_abi::smc::{func, ret};
use tee_proto::lifecycle::{ServerEvent, ShutdownReason, ShutdownReport};
use tee_proto::Header;

use crate::call::{FastCall, Outcome};
use crate::config::Millis;
use crate::core::Phase;
use crate::types::{CallStatus, ShmState};
use crate::Teed;

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

    pub(crate) fn on_drain_mapped(&mut self, now: Millis, code: u32, cookie: u64) {
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

    pub(crate) fn finish_shutdown(&mut self) {
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
}
