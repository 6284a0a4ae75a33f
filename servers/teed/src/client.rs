//! Client requests (sessions, invokes, shared memory) and what their calls' completions do.
//!
//! Owner isolation lives here: a client reaches only its own sessions and buffers, and opens
//! sessions only to the TAs the policy grants its kind.

use alloc::vec::Vec;

use optee_abi::mem::PhysMem;
use optee_abi::msg::{cmd, Direction, MsgArg, Param as MsgParam};
use optee_abi::pagelist::{list_pages_needed, write_page_list};
use optee_abi::teec;
use optee_abi::uuid::Uuid;
use tee_proto::lifecycle::ServerKind;
use tee_proto::teed::{Login, Param, ParamOut, SessionId, ShmId, TeedRequest, TeedResponse};
use tee_proto::{Header, WireError};

use crate::call::Outcome;
use crate::config::Millis;
use crate::core::Phase;
use crate::engine::run_pages;
use crate::journal::{owner_tag, EntryState};
use crate::types::{ClientId, OutKind, Purpose, ReplyTo, Session, Shm, ShmState};
use crate::Teed;

impl<M: PhysMem> Teed<M> {
    pub(crate) fn handle_request(
        &mut self,
        now: Millis,
        client: ClientId,
        kind: ServerKind,
        header: Header,
        body: TeedRequest,
    ) {
        let reply = ReplyTo { client, header };
        let result = match body {
            TeedRequest::OpenSession { ta, login } => {
                self.open_session(now, reply, kind, Uuid::from_bytes(ta), login)
            }
            TeedRequest::Invoke {
                session,
                func,
                cancel_id,
                params,
            } => self.invoke(now, reply, session, func, cancel_id, &params),
            TeedRequest::CloseSession { session } => self
                .owned_session(client, session)
                .map(|()| self.start_close(now, session, Some(reply))),
            TeedRequest::Cancel { session, cancel_id } => {
                self.owned_session(client, session).and_then(|()| {
                    let mut arg = MsgArg::new(cmd::CANCEL);
                    arg.session = session;
                    arg.cancel_id = cancel_id;
                    self.submit_msg(now, Purpose::Cancel { reply }, &arg)
                        .map(|_| ())
                })
            }
            TeedRequest::ShmAlloc { size } => self.shm_alloc(now, reply, kind, size),
            TeedRequest::ShmFree { shm } => self.shm_free(now, reply, kind, shm),
        };
        if let Err(error) = result {
            self.reply(client, header, TeedResponse::Error(error));
        }
    }

    fn owned_session(&self, client: ClientId, session: SessionId) -> Result<(), WireError> {
        match self.sessions.get(&session) {
            Some(s) if s.owner != client => Err(WireError::Denied),
            Some(s) if s.closing => Err(WireError::NotFound),
            Some(_) => Ok(()),
            None => Err(WireError::NotFound),
        }
    }

    fn owned_shm(&self, client: ClientId, shm: ShmId) -> Result<&Shm, WireError> {
        match self.shms.get(&shm) {
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
    ) -> Result<(), WireError> {
        if !self.cfg.policy.allows(kind, &ta) {
            tracing::warn!(client = reply.client, %ta, "session to a TA outside the client's grant");
            return Err(WireError::Denied);
        }
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
        // The client identity carries this boot's id: the fTPM model resets the TPM when a new
        // normal-world boot opens it, as a reboot resets a real TPM.
        let (ca, cb) = boot_client_uuid(self.boot_id).to_value_pair();
        arg.push(meta(ca, cb, u64::from(login.teec_value())))
            .map_err(|_| WireError::BadRequest)?;
        let slot = self.args.take().ok_or(WireError::Busy)?;
        let journal_slot = self.journal_session_begin(kind, slot);
        if self.cfg.hardening.journal && self.journal.is_some() && journal_slot.is_none() {
            self.args.give_back(slot);
            return Err(WireError::Busy);
        }
        let purpose = Purpose::OpenSession {
            reply,
            ta,
            journal_slot,
        };
        self.submit_in_slot(now, purpose, slot, &arg).map(|_| ())
    }

    fn invoke(
        &mut self,
        now: Millis,
        reply: ReplyTo,
        session: SessionId,
        func: u32,
        cancel_id: u32,
        params: &[Param],
    ) -> Result<(), WireError> {
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
        self.submit_msg(now, Purpose::Invoke { reply, kinds }, &arg)
            .map(|_| ())
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

    fn shm_alloc(
        &mut self,
        now: Millis,
        reply: ReplyTo,
        kind: ServerKind,
        size: u32,
    ) -> Result<(), WireError> {
        if size == 0 || size > self.cfg.max_shm_bytes {
            return Err(WireError::BadRequest);
        }
        let pages = u64::from(size).div_ceil(optee_abi::mem::PAGE_SIZE_U64);
        let data = self.frames.alloc(pages).ok_or(WireError::OutOfMemory)?;
        let list_count = list_pages_needed(pages as usize) as u64;
        let Some(list) = self.frames.alloc(list_count) else {
            self.frames.free(data);
            return Err(WireError::OutOfMemory);
        };
        let written = self.mem.zero(data.pa, data.bytes()).is_ok()
            && write_page_list(&mut self.mem, &run_pages(list), &run_pages(data)).is_ok();
        if !written {
            self.frames.free(data);
            self.frames.free(list);
            return Err(WireError::OutOfMemory);
        }
        let cookie = self.new_cookie();
        let journal_slot = match self.journal.as_mut() {
            Some(j) => match j.begin_registration(
                &mut self.mem,
                owner_tag(kind),
                cookie,
                data.pa,
                u64::from(size),
            ) {
                Ok(Some(slot)) => Some(slot),
                _ => {
                    self.frames.free(data);
                    self.frames.free(list);
                    return Err(WireError::Busy);
                }
            },
            None => None,
        };
        let shm = self.next_shm;
        self.next_shm += 1;
        self.shms.insert(
            shm,
            Shm {
                owner: reply.client,
                owner_kind: kind,
                cookie,
                run: data,
                size,
                state: ShmState::Registering,
                journal_slot,
            },
        );
        let arg = MsgArg::register_shm(list.pa, u64::from(size), cookie);
        if let Err(error) = self.submit_msg(
            now,
            Purpose::Register {
                shm,
                list,
                reply: Some(reply),
            },
            &arg,
        ) {
            self.frames.free(list);
            self.drop_shm(shm, true);
            return Err(error);
        }
        Ok(())
    }

    fn shm_free(
        &mut self,
        now: Millis,
        reply: ReplyTo,
        kind: ServerKind,
        shm: ShmId,
    ) -> Result<(), WireError> {
        self.owned_shm(reply.client, shm)?;
        if self.cfg.seed_bugs.deferred_release_for(kind) {
            // dma-buf style: the release runs when the client next returns to user mode.
            if let Some(s) = self.shms.get_mut(&shm) {
                s.state = ShmState::ReleasePending;
            }
            if let Some(c) = self.clients.get_mut(&reply.client) {
                c.deferred.push(shm);
            }
            self.reply(reply.client, reply.header, TeedResponse::ShmFreed);
            return Ok(());
        }
        self.start_unregister(now, shm, Some(reply))
    }

    /// Seed bug (dma-buf release): the deferred frees of a client run when it calls in again.
    pub(crate) fn run_deferred_releases(&mut self, now: Millis, client: ClientId) {
        let deferred = match self.clients.get_mut(&client) {
            Some(c) => core::mem::take(&mut c.deferred),
            None => return,
        };
        for shm in deferred {
            if self
                .shms
                .get(&shm)
                .is_some_and(|s| s.state == ShmState::ReleasePending)
            {
                let _ = self.start_unregister(now, shm, None);
            }
        }
    }

    /// Unregisters a client buffer; the reply (if any) goes out only after UNREGISTER_SHM returned.
    pub(crate) fn start_unregister(
        &mut self,
        now: Millis,
        shm: ShmId,
        reply: Option<ReplyTo>,
    ) -> Result<(), WireError> {
        let Some(s) = self.shms.get_mut(&shm) else {
            return Err(WireError::NotFound);
        };
        let previous = s.state;
        s.state = ShmState::Unregistering;
        let (cookie, slot) = (s.cookie, s.journal_slot);
        self.journal_registration(slot, EntryState::Removing);
        let arg = MsgArg::unregister_shm(cookie);
        if let Err(error) = self.submit_msg(now, Purpose::Unregister { shm, reply }, &arg) {
            if let Some(s) = self.shms.get_mut(&shm) {
                s.state = previous;
            }
            self.journal_registration(slot, EntryState::Live);
            return Err(error);
        }
        Ok(())
    }

    /// Closes a session; the reply (if any) goes out after CLOSE_SESSION returned.
    pub(crate) fn start_close(&mut self, now: Millis, session: SessionId, reply: Option<ReplyTo>) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        s.closing = true;
        let slot = s.journal_slot;
        self.journal_session(slot, EntryState::Removing, None);
        if let Err(error) = self.submit_msg(
            now,
            Purpose::CloseSession { session, reply },
            &MsgArg::close_session(session),
        ) {
            if let Some(s) = self.sessions.get_mut(&session) {
                s.closing = false;
            }
            self.journal_session(slot, EntryState::Live, None);
            if let Some(r) = reply {
                self.reply(r.client, r.header, TeedResponse::Error(error));
            }
        }
    }

    /// Releases everything a client holds (its endpoint closed).
    pub(crate) fn reclaim_client(&mut self, now: Millis, client: ClientId) {
        let shms: Vec<ShmId> = self
            .shms
            .iter()
            .filter(|(_, s)| {
                s.owner == client
                    && matches!(s.state, ShmState::Registered | ShmState::ReleasePending)
            })
            .map(|(id, _)| *id)
            .collect();
        for shm in shms {
            let _ = self.start_unregister(now, shm, None);
        }
        let sessions: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.owner == client && !s.closing)
            .map(|(id, _)| *id)
            .collect();
        for session in sessions {
            self.start_close(now, session, None);
        }
    }

    fn client_connected(&self, client: ClientId) -> bool {
        self.clients.get(&client).is_some_and(|c| c.connected)
    }

    fn drop_shm(&mut self, shm: ShmId, free_frames: bool) {
        if let Some(s) = self.shms.remove(&shm) {
            self.journal_registration(s.journal_slot, EntryState::Free);
            if free_frames {
                self.frames.free(s.run);
            }
        }
    }

    /// A call finished: do what its purpose asks.
    pub(crate) fn complete(&mut self, now: Millis, purpose: Purpose, outcome: Outcome) {
        match purpose {
            Purpose::Register { shm, list, reply } => {
                self.frames.free(list);
                self.on_registered(now, shm, reply, outcome);
            }
            Purpose::Unregister { shm, reply } => self.on_unregistered(shm, reply, outcome),
            Purpose::OpenSession {
                reply,
                ta,
                journal_slot,
            } => self.on_opened(now, reply, ta, journal_slot, outcome),
            Purpose::Invoke { reply, kinds } => {
                let body = match outcome {
                    Outcome::Done(arg) => invoked(&arg, &kinds),
                    other => TeedResponse::Error(other.wire_error()),
                };
                self.reply(reply.client, reply.header, body);
            }
            Purpose::CloseSession { session, reply } => {
                if !matches!(outcome, Outcome::Done(_)) {
                    // The secure world never saw the close: the session is still open there.
                    if let Some(s) = self.sessions.get_mut(&session) {
                        s.closing = false;
                        let slot = s.journal_slot;
                        self.journal_session(slot, EntryState::Live, None);
                    }
                    if let Some(r) = reply {
                        self.reply(
                            r.client,
                            r.header,
                            TeedResponse::Error(outcome.wire_error()),
                        );
                    }
                    return;
                }
                // Whatever `ret` says, a session OP-TEE answered a close for is gone.
                if let Some(s) = self.sessions.remove(&session) {
                    self.journal_session(s.journal_slot, EntryState::Free, None);
                }
                self.note_shutdown_close();
                if let Some(r) = reply {
                    self.reply(r.client, r.header, TeedResponse::SessionClosed);
                }
            }
            Purpose::Cancel { reply } => {
                self.reply(reply.client, reply.header, TeedResponse::Cancelled);
            }
            Purpose::ReclaimRegistration { .. }
            | Purpose::ReclaimSession { .. }
            | Purpose::Orphan { .. } => self.on_probe_call_done(&purpose, &outcome),
            Purpose::RegisterPrivate { .. } | Purpose::UnregisterPrivate { .. } => {
                self.on_private_done(&purpose, &outcome)
            }
        }
    }

    fn on_registered(&mut self, now: Millis, shm: ShmId, reply: Option<ReplyTo>, outcome: Outcome) {
        let ok = matches!(&outcome, Outcome::Done(arg) if arg.ret == teec::SUCCESS);
        if !ok {
            self.stats.register_refusals += 1;
            if let Outcome::Done(arg) = &outcome {
                self.stats.last_register_ret = arg.ret;
            }
            // ec185dd3ab25: before the fix a failed registration kept its pages.
            let free = !self.cfg.seed_bugs.leak_pages_on_register_failure;
            self.drop_shm(shm, free);
            tracing::warn!(shm, ?outcome, "registration refused");
            if let Some(r) = reply {
                self.reply(
                    r.client,
                    r.header,
                    TeedResponse::Error(outcome.wire_error()),
                );
            }
            return;
        }
        let Some(s) = self.shms.get_mut(&shm) else {
            return;
        };
        s.state = ShmState::Registered;
        let (owner, pa, size, slot) = (s.owner, s.run.pa, s.size, s.journal_slot);
        self.journal_registration(slot, EntryState::Live);
        if !self.client_connected(owner) {
            let _ = self.start_unregister(now, shm, None);
            return;
        }
        if let Some(r) = reply {
            self.reply(
                r.client,
                r.header,
                TeedResponse::ShmAllocated { shm, pa, size },
            );
        }
    }

    fn on_unregistered(&mut self, shm: ShmId, reply: Option<ReplyTo>, outcome: Outcome) {
        // BAD_PARAMETERS: OP-TEE no longer knows the cookie, so it is gone as well.
        let gone = matches!(&outcome, Outcome::Done(arg)
            if arg.ret == teec::SUCCESS || arg.ret == teec::ERROR_BAD_PARAMETERS);
        if gone {
            self.drop_shm(shm, true);
            self.note_shutdown_unregister();
            if let Some(r) = reply {
                self.reply(r.client, r.header, TeedResponse::ShmFreed);
            }
            return;
        }
        if let Some(s) = self.shms.get_mut(&shm) {
            s.state = ShmState::Registered;
            let slot = s.journal_slot;
            self.journal_registration(slot, EntryState::Live);
        }
        if let Some(r) = reply {
            self.reply(
                r.client,
                r.header,
                TeedResponse::Error(outcome.wire_error()),
            );
        }
    }

    fn on_opened(
        &mut self,
        now: Millis,
        reply: ReplyTo,
        ta: Uuid,
        journal_slot: Option<usize>,
        outcome: Outcome,
    ) {
        let session = match &outcome {
            Outcome::Done(arg) if arg.ret == teec::SUCCESS => arg.session,
            _ => {
                self.journal_session(journal_slot, EntryState::Free, None);
                self.reply(
                    reply.client,
                    reply.header,
                    TeedResponse::Error(outcome.wire_error()),
                );
                return;
            }
        };
        self.journal_session(journal_slot, EntryState::Live, Some(session));
        self.sessions.insert(
            session,
            Session {
                owner: reply.client,
                ta,
                journal_slot,
                closing: false,
            },
        );
        if !self.client_connected(reply.client) || matches!(self.phase, Phase::Stopped) {
            self.start_close(now, session, None);
            return;
        }
        self.reply(
            reply.client,
            reply.header,
            TeedResponse::SessionOpened { session },
        );
    }
}

/// The client UUID teed presents in OPEN_SESSION: `teesboot` and the boot id, big-endian.
pub fn boot_client_uuid(boot_id: u64) -> Uuid {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(b"teesboot");
    bytes[8..].copy_from_slice(&boot_id.to_be_bytes());
    Uuid::from_bytes(bytes)
}

fn invoked(arg: &MsgArg, kinds: &[OutKind]) -> TeedResponse {
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
