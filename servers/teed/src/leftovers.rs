//! What an earlier normal world left in the secure world (beyond Linux): threads suspended in an
//! RPC, and the registrations and sessions the journal still lists. The probe resumes and
//! reclaims them in two of its steps; this module starts those calls and records their ends.

use alloc::vec::Vec;

use optee_abi::mem::PhysMem;
use optee_abi::msg::{cmd, MsgArg};
use optee_abi::smc::func;
use optee_abi::teec;

use crate::call::Outcome;
use crate::config::Millis;
use crate::engine::CallEngine;
use crate::journal::{EntryState, Leftover};
use crate::registry::Registry;
use crate::types::{Purpose, TeedStats};

/// True for the calls that resume or reclaim leftovers.
pub(crate) fn is_leftover_call(purpose: &Purpose) -> bool {
    matches!(
        purpose,
        Purpose::Orphan { .. }
            | Purpose::ReclaimRegistration { .. }
            | Purpose::ReclaimSession { .. }
    )
}

/// Resumes every secure thread, answering whatever RPC an earlier world left it in with a
/// failure until it returns.
pub(crate) fn resume_orphans(now: Millis, engine: &mut CallEngine, thread_count: u32) {
    for thread in 0..thread_count {
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

/// Records what a resumed orphan or a reclaim call did, whether or not the probe still runs.
pub(crate) fn record<M: PhysMem>(
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
pub(crate) fn start_reclaim<M: PhysMem>(
    now: Millis,
    reg: &mut Registry<M>,
    engine: &mut CallEngine,
) -> bool {
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
