//! Client requests (sessions, invokes, shared memory), and what the calls they start do when
//! they end.
//!
//! Owner isolation lives here: a client reaches only its own sessions and buffers, and opens
//! sessions only to the TAs the policy grants its kind.

use alloc::vec::Vec;

use optee_abi::mem::PhysMem;
use optee_abi::msg::{cmd, Direction, MsgArg, Param as MsgParam};
use optee_abi::uuid::Uuid;
use tee_proto::lifecycle::ServerKind;
use tee_proto::teed::{Login, Param, ParamOut, SessionId, ShmId, TeedRequest, TeedResponse};
use tee_proto::WireError;

use crate::call::Outcome;
use crate::config::{Millis, TeedConfig};
use crate::engine::CallEngine;
use crate::frames::Run;
use crate::journal::EntryState;
use crate::quota::{self, Ask};
use crate::registry::{NewBuffer, Registry};
use crate::release::{start_close, start_unregister};
use crate::types::{ClientId, OutKind, Purpose, ReplyTo, Session, Shm, ShmState};

/// What a client hears now: a reply, or nothing until the call its request started ends.
pub(crate) type Heard = Result<Option<TeedResponse>, WireError>;

/// The client-facing work of the server, over its registry and call engine.
pub(crate) struct Requests<'a, M: PhysMem> {
    pub cfg: &'a TeedConfig,
    pub reg: &'a mut Registry<M>,
    pub engine: &'a mut CallEngine,
}

impl<M: PhysMem> Requests<'_, M> {
    /// Serves one request of a connected client of `kind`.
    pub fn handle(
        &mut self,
        now: Millis,
        reply: ReplyTo,
        kind: ServerKind,
        body: TeedRequest,
    ) -> Heard {
        let client = reply.client;
        match body {
            TeedRequest::OpenSession { ta, login } => {
                self.open_session(now, reply, kind, Uuid::from_bytes(ta), login)
            }
            TeedRequest::Invoke {
                session,
                func,
                cancel_id,
                params,
            } => self.invoke(now, reply, session, func, cancel_id, &params),
            TeedRequest::CloseSession { session } => {
                self.owned_session(client, session)?;
                start_close(self.reg, self.engine, now, session, Some(reply))?;
                Ok(None)
            }
            TeedRequest::Cancel { session, cancel_id } => {
                self.owned_session(client, session)?;
                self.within_quota(client, Ask::Call)?;
                let mut arg = MsgArg::new(cmd::CANCEL);
                arg.session = session;
                arg.cancel_id = cancel_id;
                self.engine
                    .submit(self.reg, now, Purpose::Cancel { reply }, &arg)?;
                Ok(None)
            }
            TeedRequest::ShmAlloc { size } => self.shm_alloc(now, reply, kind, size),
            TeedRequest::ShmFree { shm } => self.shm_free(now, reply, kind, shm),
        }
    }

    /// `QuotaExceeded` when `ask` would take `client` past its kind's quota.
    fn within_quota(&mut self, client: ClientId, ask: Ask) -> Result<(), WireError> {
        let kind = self.reg.connected_kind(client).ok_or(WireError::Denied)?;
        let quota = self.cfg.policy.quota(kind);
        quota::check(self.reg, self.engine, &quota, client, ask)
    }

    fn owned_session(&self, client: ClientId, session: SessionId) -> Result<(), WireError> {
        match self.reg.sessions.get(&session) {
            Some(s) if s.owner != client => Err(WireError::Denied),
            Some(s) if s.closing => Err(WireError::NotFound),
            Some(_) => Ok(()),
            None => Err(WireError::NotFound),
        }
    }

    fn owned_shm(&self, client: ClientId, shm: ShmId) -> Result<&Shm, WireError> {
        match self.reg.shms.get(&shm) {
            Some(s) if s.owner != client => Err(WireError::Denied),
            Some(s) if s.state == ShmState::Registered => Ok(s),
            _ => Err(WireError::NotFound),
        }
    }

    fn open_session(
        &mut self,
        now: Millis,
        reply: ReplyTo,
        kind: ServerKind,
        ta: Uuid,
        login: Login,
    ) -> Heard {
        if !self.cfg.policy.allows(kind, &ta) {
            tracing::warn!(client = %reply.client, %ta, "session to a TA outside the client's grant");
            return Err(WireError::Denied);
        }
        self.within_quota(reply.client, Ask::Session)?;
        let mut arg = MsgArg::new(cmd::OPEN_SESSION);
        let (a, b) = ta.to_value_pair();
        let meta = |a, b, c| MsgParam::Value {
            dir: Direction::In,
            a,
            b,
            c,
            meta: true,
        };
        arg.push(meta(a, b, 0)).map_err(|_| WireError::BadRequest)?;
        // No client UUID: teed opens sessions as Linux's kernel clients do (tpm_ftpm_tee,
        // tee_bnxt_fw: LOGIN_PUBLIC, clnt_uuid left zero), and OP-TEE zeroes it for that login
        // anyway (tee/entry_std.c get_open_session_meta).
        arg.push(meta(0, 0, u64::from(login.teec_value())))
            .map_err(|_| WireError::BadRequest)?;
        let slot = self.engine.take_slot().ok_or(WireError::Busy)?;
        let journal_slot = self.reg.journal_session_begin(kind, slot);
        if self.cfg.hardening.journal && self.reg.has_journal() && journal_slot.is_none() {
            self.engine.give_back_slot(slot);
            return Err(WireError::Busy);
        }
        let purpose = Purpose::OpenSession {
            reply,
            ta,
            journal_slot,
        };
        self.engine
            .submit_in_slot(self.reg, now, purpose, slot, &arg)?;
        Ok(None)
    }

    fn invoke(
        &mut self,
        now: Millis,
        reply: ReplyTo,
        session: SessionId,
        func: u32,
        cancel_id: u32,
        params: &[Param],
    ) -> Heard {
        self.owned_session(reply.client, session)?;
        let mut arg = MsgArg::new(cmd::INVOKE_COMMAND);
        arg.func = func;
        arg.session = session;
        arg.cancel_id = cancel_id;
        let mut kinds = Vec::with_capacity(params.len());
        for param in params {
            let (msg, kind) = self.convert_param(reply.client, param)?;
            arg.push(msg).map_err(|_| WireError::BadRequest)?;
            kinds.push(kind);
        }
        // After the params: a memref into another client's buffer is denied, whatever the quota.
        self.within_quota(reply.client, Ask::Call)?;
        self.engine
            .submit(self.reg, now, Purpose::Invoke { reply, kinds }, &arg)?;
        Ok(None)
    }

    /// A client param as an OP-TEE param: memrefs become RMEM slices of the client's own
    /// registered buffers, bounds-checked.
    fn convert_param(
        &self,
        client: ClientId,
        param: &Param,
    ) -> Result<(MsgParam, OutKind), WireError> {
        let value = |dir, a, b, c| MsgParam::Value {
            dir,
            a,
            b,
            c,
            meta: false,
        };
        let memref = |dir, shm: ShmId, offset: u32, size: u32| {
            let s = self.owned_shm(client, shm)?;
            let end = offset.checked_add(size).ok_or(WireError::BadRequest)?;
            if end > s.size {
                return Err(WireError::BadRequest);
            }
            Ok((
                MsgParam::Rmem {
                    dir,
                    offs: u64::from(offset),
                    size: u64::from(size),
                    shm_ref: s.cookie,
                },
                OutKind::Memref,
            ))
        };
        match *param {
            Param::None => Ok((MsgParam::None, OutKind::Nothing)),
            Param::ValueIn { a, b, c } => Ok((value(Direction::In, a, b, c), OutKind::Nothing)),
            Param::ValueOut => Ok((value(Direction::Out, 0, 0, 0), OutKind::Value)),
            Param::ValueInOut { a, b, c } => Ok((value(Direction::InOut, a, b, c), OutKind::Value)),
            Param::MemrefIn { shm, offset, size } => {
                memref(Direction::In, shm, offset, size).map(|(p, _)| (p, OutKind::Nothing))
            }
            Param::MemrefOut { shm, offset, size } => memref(Direction::Out, shm, offset, size),
            Param::MemrefInOut { shm, offset, size } => memref(Direction::InOut, shm, offset, size),
        }
    }

    fn shm_alloc(&mut self, now: Millis, reply: ReplyTo, kind: ServerKind, size: u32) -> Heard {
        if size == 0 || size > self.cfg.max_shm_bytes {
            return Err(WireError::BadRequest);
        }
        let bytes = u64::from(size);
        self.within_quota(reply.client, Ask::Buffer { bytes })?;
        let NewBuffer { shm, cookie, list } =
            self.reg.new_client_buffer(reply.client, kind, size)?;
        let arg = MsgArg::register_shm(list.pa, u64::from(size), cookie);
        let purpose = Purpose::Register {
            shm,
            list,
            reply: Some(reply),
        };
        if let Err(error) = self.engine.submit(self.reg, now, purpose, &arg) {
            self.reg.frames.free(list);
            self.reg.drop_shm(shm, true);
            return Err(error);
        }
        Ok(None)
    }

    fn shm_free(&mut self, now: Millis, reply: ReplyTo, kind: ServerKind, shm: ShmId) -> Heard {
        self.owned_shm(reply.client, shm)?;
        if self.cfg.seed_bugs.deferred_release_for(kind) {
            // dma-buf style: the release runs when the client next returns to user mode.
            if let Some(s) = self.reg.shms.get_mut(&shm) {
                s.state = ShmState::ReleasePending;
            }
            if let Some(c) = self.reg.clients.get_mut(&reply.client) {
                c.deferred.push(shm);
            }
            return Ok(Some(TeedResponse::ShmFreed));
        }
        start_unregister(self.reg, self.engine, now, shm, Some(reply))?;
        Ok(None)
    }

    // ---- what the calls of client requests do when they end ----

    /// REGISTER_SHM of client buffer `shm` ended (its page list `list` is no longer needed).
    /// `None`: the owner is gone or no longer waits, and the buffer is being unregistered again.
    pub fn registered(
        &mut self,
        now: Millis,
        shm: ShmId,
        list: Run,
        outcome: Outcome,
        owner_waits: bool,
    ) -> Option<Result<TeedResponse, WireError>> {
        if outcome == Outcome::Abandoned {
            // The secure world may hold the registration, and may still read the page list:
            // keep both out of reuse, and the journal entry for the next probe to reclaim.
            self.reg.forget_shm(shm);
            tracing::warn!(
                shm,
                "registration abandoned in the secure world; pages kept"
            );
            return Some(Err(outcome.wire_error()));
        }
        self.reg.frames.free(list);
        if !outcome.succeeded() {
            self.engine.stats.register_refusals += 1;
            if let Outcome::Done(arg) = &outcome {
                self.engine.stats.last_register_ret = arg.ret;
            }
            // ec185dd3ab25: before the fix a failed registration kept its pages.
            let free = !self.cfg.seed_bugs.leak_pages_on_register_failure;
            self.reg.drop_shm(shm, free);
            tracing::warn!(shm, ?outcome, "registration refused");
            return Some(Err(outcome.wire_error()));
        }
        let s = self.reg.shms.get_mut(&shm)?;
        s.state = ShmState::Registered;
        let (owner, pa, size, slot) = (s.owner, s.run.pa, s.size, s.journal_slot);
        self.reg.journal_registration(slot, EntryState::Live);
        if !self.reg.client_connected(owner) || !owner_waits {
            let _ = start_unregister(self.reg, self.engine, now, shm, None);
            return None;
        }
        Some(Ok(TeedResponse::ShmAllocated { shm, pa, size }))
    }

    /// OPEN_SESSION for `client` ended. `None`: the client is gone, no longer waits, or the
    /// server stopped, and the new session is being closed again.
    pub fn opened(
        &mut self,
        now: Millis,
        client: ClientId,
        ta: Uuid,
        journal_slot: Option<usize>,
        outcome: Outcome,
        stopped: bool,
    ) -> Option<Result<TeedResponse, WireError>> {
        let session = match &outcome {
            Outcome::Done(arg) if outcome.succeeded() => arg.session,
            _ => {
                self.reg
                    .journal_session(journal_slot, EntryState::Free, None);
                return Some(Err(outcome.wire_error()));
            }
        };
        self.reg
            .journal_session(journal_slot, EntryState::Live, Some(session));
        self.reg.sessions.insert(
            session,
            Session {
                owner: client,
                ta,
                journal_slot,
                closing: false,
            },
        );
        if !self.reg.client_connected(client) || stopped {
            let _ = start_close(self.reg, self.engine, now, session, None);
            return None;
        }
        Some(Ok(TeedResponse::SessionOpened { session }))
    }
}

/// What an INVOKE_COMMAND's end tells the client: the results it asked for, or why it failed.
pub(crate) fn invoked(outcome: Outcome, kinds: &[OutKind]) -> TeedResponse {
    let Outcome::Done(arg) = outcome else {
        return TeedResponse::Error(outcome.wire_error());
    };
    let mut params = heapless::Vec::new();
    for (i, kind) in kinds.iter().enumerate() {
        let raw = arg.params.get(i).copied().unwrap_or_default();
        let out = match kind {
            OutKind::Nothing => ParamOut::None,
            OutKind::Value => ParamOut::Value {
                a: raw.a,
                b: raw.b,
                c: raw.c,
            },
            OutKind::Memref => ParamOut::Memref {
                size: raw.b.min(u64::from(u32::MAX)) as u32,
            },
        };
        // Cannot overflow: kinds has at most MAX_PARAMS entries.
        let _ = params.push(out);
    }
    TeedResponse::Invoked {
        ret: arg.ret,
        origin: arg.ret_origin,
        params,
    }
}
