//! What the probe and the shutdown share: their timers and the journal writes (no-ops
//! without a journal).

use optee_abi::mem::PhysMem;
use tee_proto::lifecycle::DeclineReason;

use crate::config::Millis;
use crate::core::Phase;
use crate::journal::{owner_tag, EntryState};
use crate::Teed;

impl<M: PhysMem> Teed<M> {
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
