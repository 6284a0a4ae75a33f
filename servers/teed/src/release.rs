//! Releasing what clients hold: unregistering their buffers and closing their sessions — for the
//! client's own request, its disconnection, its deferred frees (seed bug: dma-buf release) or the
//! shutdown sweep — and recording what the secure world answered.
//!
//! Each release is journaled as `Removing` before its SMC, so a crash in between leaves an entry
//! the next probe reclaims.

use alloc::vec::Vec;

use optee_abi::mem::PhysMem;
use optee_abi::msg::MsgArg;
use optee_abi::teec;
use tee_proto::teed::{SessionId, ShmId};
use tee_proto::WireError;

use crate::call::Outcome;
use crate::config::Millis;
use crate::engine::CallEngine;
use crate::journal::EntryState;
use crate::registry::Registry;
use crate::types::{ClientId, Purpose, ReplyTo, ShmState};

/// Unregisters a client buffer; the reply (if any) goes out only after UNREGISTER_SHM returned.
pub(crate) fn start_unregister<M: PhysMem>(
    reg: &mut Registry<M>,
    engine: &mut CallEngine,
    now: Millis,
    shm: ShmId,
    reply: Option<ReplyTo>,
) -> Result<(), WireError> {
    let Some(s) = reg.shms.get_mut(&shm) else {
        return Err(WireError::NotFound);
    };
    let previous = s.state;
    s.state = ShmState::Unregistering;
    let (cookie, slot) = (s.cookie, s.journal_slot);
    reg.journal_registration(slot, EntryState::Removing);
    let arg = MsgArg::unregister_shm(cookie);
    if let Err(error) = engine.submit(reg, now, Purpose::Unregister { shm, reply }, &arg) {
        if let Some(s) = reg.shms.get_mut(&shm) {
            s.state = previous;
        }
        reg.journal_registration(slot, EntryState::Live);
        return Err(error);
    }
    Ok(())
}

/// Closes a session; the reply (if any) goes out after CLOSE_SESSION returned. An error means
/// the close was not sent and the session stays open.
pub(crate) fn start_close<M: PhysMem>(
    reg: &mut Registry<M>,
    engine: &mut CallEngine,
    now: Millis,
    session: SessionId,
    reply: Option<ReplyTo>,
) -> Result<(), WireError> {
    let Some(s) = reg.sessions.get_mut(&session) else {
        return Ok(());
    };
    s.closing = true;
    let slot = s.journal_slot;
    reg.journal_session(slot, EntryState::Removing, None);
    let arg = MsgArg::close_session(session);
    if let Err(error) = engine.submit(reg, now, Purpose::CloseSession { session, reply }, &arg) {
        if let Some(s) = reg.sessions.get_mut(&session) {
            s.closing = false;
        }
        reg.journal_session(slot, EntryState::Live, None);
        return Err(error);
    }
    Ok(())
}

/// Releases everything a client holds (its endpoint closed).
pub(crate) fn reclaim_client<M: PhysMem>(
    reg: &mut Registry<M>,
    engine: &mut CallEngine,
    now: Millis,
    client: ClientId,
) {
    let shms: Vec<ShmId> = reg
        .shms
        .iter()
        .filter(|(_, s)| {
            s.owner == client && matches!(s.state, ShmState::Registered | ShmState::ReleasePending)
        })
        .map(|(id, _)| *id)
        .collect();
    for shm in shms {
        let _ = start_unregister(reg, engine, now, shm, None);
    }
    let sessions: Vec<SessionId> = reg
        .sessions
        .iter()
        .filter(|(_, s)| s.owner == client && !s.closing)
        .map(|(id, _)| *id)
        .collect();
    for session in sessions {
        let _ = start_close(reg, engine, now, session, None);
    }
}

/// Seed bug (dma-buf release): the deferred frees of a client run when it calls in again.
pub(crate) fn run_deferred_releases<M: PhysMem>(
    reg: &mut Registry<M>,
    engine: &mut CallEngine,
    now: Millis,
    client: ClientId,
) {
    let deferred = match reg.clients.get_mut(&client) {
        Some(c) => core::mem::take(&mut c.deferred),
        None => return,
    };
    for shm in deferred {
        let pending = reg
            .shms
            .get(&shm)
            .is_some_and(|s| s.state == ShmState::ReleasePending);
        if pending {
            let _ = start_unregister(reg, engine, now, shm, None);
        }
    }
}

/// UNREGISTER_SHM of a client buffer ended. `Ok` when the buffer is gone (and forgotten); an
/// error when the secure world still holds it.
pub(crate) fn unregistered<M: PhysMem>(
    reg: &mut Registry<M>,
    shm: ShmId,
    outcome: &Outcome,
) -> Result<(), WireError> {
    // BAD_PARAMETERS: OP-TEE no longer knows the cookie, so it is gone as well.
    let gone = matches!(outcome, Outcome::Done(arg)
        if arg.ret == teec::SUCCESS || arg.ret == teec::ERROR_BAD_PARAMETERS);
    if gone {
        reg.drop_shm(shm, true);
        return Ok(());
    }
    if let Some(s) = reg.shms.get_mut(&shm) {
        s.state = ShmState::Registered;
        let slot = s.journal_slot;
        reg.journal_registration(slot, EntryState::Live);
    }
    Err(outcome.wire_error())
}

/// CLOSE_SESSION ended. `Ok` when the session is gone (and forgotten); an error when the secure
/// world never saw the close and the session stays open.
pub(crate) fn closed<M: PhysMem>(
    reg: &mut Registry<M>,
    session: SessionId,
    outcome: &Outcome,
) -> Result<(), WireError> {
    if !matches!(outcome, Outcome::Done(_)) {
        if let Some(s) = reg.sessions.get_mut(&session) {
            s.closing = false;
            let slot = s.journal_slot;
            reg.journal_session(slot, EntryState::Live, None);
        }
        return Err(outcome.wire_error());
    }
    // Whatever `ret` says, a session OP-TEE answered a close for is gone.
    if let Some(s) = reg.sessions.remove(&session) {
        reg.journal_session(s.journal_slot, EntryState::Free, None);
    }
    Ok(())
}
