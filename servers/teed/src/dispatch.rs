//! Where the machines' results meet. An SMC's answer goes to the engine or to the machine that
//! asked for it; an ended call is routed by its purpose from [`Teed::dispatch`] alone; timers
//! reach the calls and the running machine; and the phase changes the machines bring about
//! (ready, declined, stopped) happen here.

use optee_abi::mem::PhysMem;
use optee_abi::smc::{join_u32_pair, Regs};
use tee_proto::lifecycle::{DeclineReason, ServerEvent};
use tee_proto::teed::TeedResponse;
use tee_proto::{Frame, Header, WireError};

use crate::abi;
use crate::call::{FastCall, Outcome, Pending};
use crate::client::{invoked, Requests};
use crate::config::Millis;
use crate::core::{Phase, Teed};
use crate::leftovers;
use crate::probe::{Answer, ProbeEnd};
use crate::release;
use crate::shutdown::ShutdownDone;
use crate::types::{CallId, ClientId, Effect, Purpose, ReplyTo};

impl<M: PhysMem> Teed<M> {
    /// Hands an SMC's registers to whoever asked for it.
    pub(crate) fn on_smc_return(&mut self, now: Millis, pending: Pending, regs: Regs) {
        match pending {
            Pending::Call(id) => {
                let ended = self
                    .engine
                    .on_call_return(&mut self.registry, now, id, regs);
                if let Some(outcome) = ended {
                    self.finish_call(now, id, outcome);
                }
            }
            Pending::Fast(FastCall::DrainMapped) => {
                let Phase::ShuttingDown(s) = &mut self.phase else {
                    return;
                };
                let (code, cookie) = (regs[0] as u32, join_u32_pair(regs[1], regs[2]));
                let done =
                    s.on_drain_mapped(now, code, cookie, &mut self.registry, &mut self.engine);
                if let Some(done) = done {
                    self.stop(done);
                }
            }
            Pending::Fast(fast) => {
                if let Some(answer) = Answer::read(fast, &regs) {
                    self.on_probe_answer(now, answer);
                }
            }
            Pending::Abi(_) => {
                abi::on_notif_value(&mut self.engine, &regs);
                if let Phase::Probing(p) = &mut self.phase {
                    p.on_abi_done(&self.engine);
                }
            }
        }
    }

    /// Ends a call: its purpose is served first, then its slot and thread come free. A call
    /// abandoned inside the secure world while its client waits is detached instead: the client
    /// hears `SecureWorldFault` now, and the call's end settles the books later.
    pub(crate) fn finish_call(&mut self, now: Millis, id: CallId, outcome: Outcome) {
        if outcome == Outcome::Abandoned {
            if let Some(purpose) = self.engine.detach(&mut self.registry, now, id) {
                if let Some(to) = purpose.reply_to() {
                    tracing::warn!(client = ?to.client, "secure world fault: call detached");
                    let error = TeedResponse::Error(WireError::SecureWorldFault);
                    self.reply(to.client, to.header, error);
                }
                return;
            }
        }
        let Some(call) = self.engine.end_call(id, &outcome) else {
            return;
        };
        self.dispatch(now, call.purpose, outcome, call.answered);
        self.engine.thread_freed(call.arg_slot);
    }

    fn requests(&mut self) -> Requests<'_, M> {
        Requests {
            cfg: &self.cfg,
            reg: &mut self.registry,
            engine: &mut self.engine,
        }
    }

    /// The one place an ended call's outcome is routed, by what the call was for. When the
    /// client was `answered` already (a detached call), only the books are settled.
    fn dispatch(&mut self, now: Millis, purpose: Purpose, outcome: Outcome, answered: bool) {
        let waits = |reply: Option<ReplyTo>| reply.filter(|_| !answered);
        match purpose {
            Purpose::Register { shm, list, reply } => {
                let heard = self
                    .requests()
                    .registered(now, shm, list, outcome, !answered);
                self.answer(waits(reply), heard);
            }
            Purpose::Unregister { shm, reply } => {
                let result = release::unregistered(&mut self.registry, shm, &outcome);
                if let (Ok(()), Phase::ShuttingDown(s)) = (&result, &mut self.phase) {
                    s.note_unregistered();
                }
                self.answer(waits(reply), Some(result.map(|()| TeedResponse::ShmFreed)));
            }
            Purpose::OpenSession {
                reply,
                ta,
                journal_slot,
            } => {
                // A session nobody waits for any more is closed again.
                let unwanted = answered || matches!(self.phase, Phase::Stopped);
                let heard =
                    self.requests()
                        .opened(now, reply.client, ta, journal_slot, outcome, unwanted);
                self.answer(waits(Some(reply)), heard);
            }
            Purpose::Invoke { reply, kinds } => {
                if !answered {
                    let body = invoked(outcome, &kinds);
                    self.reply(reply.client, reply.header, body);
                }
            }
            Purpose::CloseSession { session, reply } => {
                let result = release::closed(&mut self.registry, session, &outcome);
                if let (Ok(()), Phase::ShuttingDown(s)) = (&result, &mut self.phase) {
                    s.note_closed();
                }
                self.answer(
                    waits(reply),
                    Some(result.map(|()| TeedResponse::SessionClosed)),
                );
            }
            Purpose::Cancel { reply } => {
                if !answered {
                    self.reply(reply.client, reply.header, TeedResponse::Cancelled);
                }
            }
            Purpose::Orphan { .. }
            | Purpose::ReclaimRegistration { .. }
            | Purpose::ReclaimSession { .. } => {
                let stats = &mut self.engine.stats;
                leftovers::record(&mut self.registry, stats, &purpose, &outcome);
                if let Phase::Probing(p) = &mut self.phase {
                    p.on_leftover_call_done(&self.engine);
                }
            }
            Purpose::RegisterPrivate {
                parent,
                cookie,
                list,
            } => {
                let reg = &mut self.registry;
                self.engine
                    .on_private_registered(reg, parent, cookie, list, &outcome);
            }
            Purpose::UnregisterPrivate { parent, cookie } => {
                let reg = &mut self.registry;
                self.engine.on_private_unregistered(reg, parent, cookie);
            }
            Purpose::Abi(call) => {
                abi::call_done(&mut self.registry, &mut self.engine, call, &outcome);
                if let Phase::Probing(p) = &mut self.phase {
                    p.on_abi_done(&self.engine);
                }
            }
        }
    }

    /// Timers of calls and of the running machine.
    pub(crate) fn on_timers(&mut self, now: Millis) {
        for (id, expired) in self.engine.due_calls(now) {
            match expired {
                Some(outcome) => self.finish_call(now, id, outcome),
                None => self.engine.send_next(id),
            }
        }
        match &mut self.phase {
            Phase::Probing(p) => {
                if let Some(end) = p.on_timer(now, &mut self.engine.stats) {
                    self.end_probe(end);
                }
            }
            Phase::ShuttingDown(s) => {
                if let Some(done) = s.on_timer(now, &mut self.registry, &mut self.engine) {
                    self.stop(done);
                }
            }
            _ => {}
        }
    }

    /// Moves the running machine on after any input. Without a conduit a shutdown has nothing
    /// left it can do: it acks at once, counting what it could not release.
    pub(crate) fn pump(&mut self, now: Millis) {
        if matches!(
            self.phase,
            Phase::Probing(_) | Phase::Serving | Phase::ShuttingDown(_)
        ) && !self.conduit_lost
        {
            abi::pump(now, &mut self.registry, &mut self.engine);
        }
        if let Phase::Probing(p) = &mut self.phase {
            if let Some(end) = p.advance(now, &mut self.registry, &mut self.engine) {
                self.end_probe(end);
            }
        }
        if let Phase::ShuttingDown(s) = &mut self.phase {
            let done = if self.conduit_lost {
                Some(s.give_up(&self.registry, &mut self.engine))
            } else {
                s.advance(now, &mut self.registry, &mut self.engine)
            };
            if let Some(done) = done {
                self.stop(done);
            }
        }
    }

    // ---- phase changes ----

    fn on_probe_answer(&mut self, now: Millis, answer: Answer) {
        if answer == Answer::CookieDiscarded {
            // b5c10dd04b74: the cookie is from an earlier world; count it, never dereference it.
            self.engine.stats.cache_cookies_discarded += 1;
        }
        let end = match &mut self.phase {
            Phase::Probing(p) => p.on_answer(now, answer, &mut self.engine),
            // A late answer (the probe declined or was stopped meanwhile) keeps its verdict.
            _ => answer.end(),
        };
        if let Some(end) = end {
            self.end_probe(end);
        }
    }

    fn end_probe(&mut self, end: ProbeEnd) {
        match end {
            ProbeEnd::Ready => {
                self.phase = Phase::Serving;
                self.served = true;
                let generation = self.generation;
                tracing::info!(generation, "serving");
                self.send_init(ServerEvent::Ready { generation });
            }
            ProbeEnd::Declined(reason) => self.decline(reason),
        }
    }

    pub(crate) fn decline(&mut self, reason: DeclineReason) {
        // Once is enough: a refused SMC answered after the decline must not decline again.
        if matches!(self.phase, Phase::Declined(_)) {
            return;
        }
        self.phase = Phase::Declined(reason);
        self.send_init(ServerEvent::Declined { reason });
    }

    /// The shutdown finished: stop, fail the calls that will never get a thread now, and ack.
    fn stop(&mut self, done: ShutdownDone) {
        self.phase = Phase::Stopped;
        for id in self.engine.parked_calls() {
            self.finish_call(0, id, Outcome::Deadline);
        }
        self.send_init_reply(done.request, ServerEvent::ShutdownAck(done.report));
    }

    // ---- what the server says ----

    /// Replies to a client unless its endpoint closed.
    pub(crate) fn reply(&mut self, client: ClientId, request: Header, body: TeedResponse) {
        if self
            .registry
            .clients
            .get(&client)
            .is_some_and(|c| !c.connected)
        {
            return;
        }
        let frame = Frame {
            header: request.reply_to(self.generation),
            body,
        };
        self.engine.post(Effect::Reply { client, frame });
    }

    /// Replies with what a call's end says, when someone waits for it and it says something.
    fn answer(&mut self, to: Option<ReplyTo>, heard: Option<Result<TeedResponse, WireError>>) {
        if let (Some(to), Some(result)) = (to, heard) {
            let body = result.unwrap_or_else(TeedResponse::Error);
            self.reply(to.client, to.header, body);
        }
    }

    fn send_init(&mut self, body: ServerEvent) {
        let frame = Frame {
            header: self.init_header,
            body,
        };
        self.engine.post(Effect::ToInit(frame));
    }

    pub(crate) fn send_init_reply(&mut self, request: Header, body: ServerEvent) {
        let frame = Frame {
            header: request.reply_to(self.generation),
            body,
        };
        self.engine.post(Effect::ToInit(frame));
    }
}
