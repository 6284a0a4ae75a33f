//! Per-client quotas: how much one client may hold at once — buffers, their bytes, sessions,
//! journal entries and calls in flight — so that a greedy or broken client cannot take the
//! secure heap, the journal or the message slots from the other. The limits are in
//! [`crate::config::Policy`], with the heap arithmetic that sizes them.

use optee_abi::mem::PhysMem;
use tee_proto::WireError;

use crate::config::Quota;
use crate::engine::CallEngine;
use crate::registry::Registry;
use crate::types::{ClientId, Purpose};

/// What a request would add to what its client holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ask {
    /// A buffer of this many bytes (and the call that registers it).
    Buffer { bytes: u64 },
    /// A session (and the call that opens it).
    Session,
    /// A call that holds a message slot while it runs.
    Call,
}

/// What a client holds now, counting what is on its way in or out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    pub buffers: u64,
    pub bytes: u64,
    pub sessions: u64,
    pub calls: u64,
}

impl Usage {
    /// Counts `client`'s buffers, sessions (opening ones too) and calls in flight.
    pub fn of<M: PhysMem>(reg: &Registry<M>, engine: &CallEngine, client: ClientId) -> Usage {
        let mut usage = Usage::default();
        for shm in reg.shms.values().filter(|s| s.owner == client) {
            usage.buffers += 1;
            usage.bytes += u64::from(shm.size);
        }
        usage.sessions = reg.sessions.values().filter(|s| s.owner == client).count() as u64;
        for purpose in engine.calls_of(client) {
            usage.calls += 1;
            if matches!(purpose, Purpose::OpenSession { .. }) {
                usage.sessions += 1;
            }
        }
        usage
    }

    /// Whether `ask` still fits `quota`; the refusal names the limit it would pass.
    pub fn allows(&self, quota: &Quota, ask: Ask, journal: bool) -> Result<(), &'static str> {
        let fits = |held: u64, more: u64, limit: u64| held.saturating_add(more) <= limit;
        if !fits(self.calls, 1, u64::from(quota.calls)) {
            return Err("calls in flight");
        }
        let journal_entries = self.buffers + self.sessions;
        let journaled = |entries: u64| !journal || fits(entries, 1, u64::from(quota.journal_slots));
        match ask {
            Ask::Call => Ok(()),
            Ask::Buffer { bytes } => {
                if !fits(self.buffers, 1, u64::from(quota.buffers)) {
                    Err("buffers")
                } else if !fits(self.bytes, bytes, quota.bytes) {
                    Err("registered bytes")
                } else if !journaled(journal_entries) {
                    Err("journal slots")
                } else {
                    Ok(())
                }
            }
            Ask::Session => {
                if !fits(self.sessions, 1, u64::from(quota.sessions)) {
                    Err("sessions")
                } else if !journaled(journal_entries) {
                    Err("journal slots")
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// Refuses `ask` with `QuotaExceeded` when `client` (of quota `quota`) would pass a limit.
pub(crate) fn check<M: PhysMem>(
    reg: &Registry<M>,
    engine: &mut CallEngine,
    quota: &Quota,
    client: ClientId,
    ask: Ask,
) -> Result<(), WireError> {
    // Nothing can pass an unlimited quota (Linux's behaviour, for the seed scenarios and the
    // scale runs): skip the count, which walks every buffer and grows with them.
    if *quota == Quota::UNLIMITED {
        return Ok(());
    }
    let usage = Usage::of(reg, engine, client);
    match usage.allows(quota, ask, reg.has_journal()) {
        Ok(()) => Ok(()),
        Err(limit) => {
            engine.stats.quota_refusals += 1;
            tracing::warn!(%client, limit, ?ask, ?usage, "client quota reached");
            Err(WireError::QuotaExceeded)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BNXTD_QUOTA, TPMD_QUOTA};

    #[test]
    fn each_limit_refuses_one_past_it() {
        let q = TPMD_QUOTA;
        let full_calls = Usage {
            calls: u64::from(q.calls),
            ..Usage::default()
        };
        assert_eq!(
            full_calls.allows(&q, Ask::Call, true),
            Err("calls in flight")
        );
        let two_buffers = Usage {
            buffers: 2,
            bytes: 16 << 10,
            ..Usage::default()
        };
        let more = Ask::Buffer { bytes: 4096 };
        assert_eq!(two_buffers.allows(&q, more, true), Err("buffers"));
        let big = Ask::Buffer { bytes: 64 << 10 };
        let one = Usage {
            buffers: 1,
            bytes: 8 << 10,
            ..Usage::default()
        };
        assert_eq!(one.allows(&q, big, true), Err("registered bytes"));
        assert_eq!(one.allows(&q, Ask::Session, true), Ok(()));
        let sessions = Usage {
            sessions: 2,
            ..Usage::default()
        };
        assert_eq!(sessions.allows(&q, Ask::Session, true), Err("sessions"));
        let tight = Quota {
            journal_slots: 1,
            ..BNXTD_QUOTA
        };
        assert_eq!(one.allows(&tight, Ask::Session, true), Err("journal slots"));
        assert_eq!(one.allows(&tight, Ask::Session, false), Ok(()));
    }

    #[test]
    fn normal_needs_fit_their_quotas() {
        let tpmd = Usage {
            buffers: 0,
            ..Usage::default()
        };
        assert_eq!(
            tpmd.allows(&TPMD_QUOTA, Ask::Buffer { bytes: 8 << 10 }, true),
            Ok(())
        );
        assert_eq!(
            Usage::default().allows(&BNXTD_QUOTA, Ask::Buffer { bytes: 4 << 20 }, true),
            Ok(())
        );
    }
}
