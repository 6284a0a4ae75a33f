//! Carrying out what the cores ask: starting and stopping incarnations, routing messages,
//! running SMCs on the secure world, and the transitions between boots.

use rand::Rng;
use tee_proto::lifecycle::{BootKind, InitRequest, ServerEvent, ServerKind};
use tee_proto::teed::TeedResponse;
use tee_proto::tpm::{TpmError, TpmResponse};
use tee_proto::{Frame, WireError};
use teed::{ClientId, Effect as TeedEffect, Teed};
use teesys_init::{Effect as InitEffect, Transition};
use tpmd::ConsumerId;

use super::grants;
use super::net::{Channel, Message};
use super::{ClientProc, Sim, SimFailure};

/// Routes what a client core asks for onto the wires.
fn drain_client<S: tee_client::engine::TaService>(
    net: &mut super::net::Net,
    p: &mut ClientProc<tee_client::engine::Client<S>>,
    kind: ServerKind,
    to_consumer: Channel,
    wrap: impl Fn(u64, Frame<tee_client::engine::ResponseOf<S>>) -> Message,
) {
    while let Some(effect) = p.core.poll() {
        match effect {
            tee_client::engine::Effect::ToTeed(frame) => {
                net.push(Channel::ClientToTeed(p.id), Message::TeedRequest(frame))
            }
            tee_client::engine::Effect::ToInit(frame) => {
                net.push(Channel::ToInit(kind), Message::Event(frame))
            }
            tee_client::engine::Effect::ToConsumer { consumer, frame } => {
                net.push(to_consumer, wrap(consumer.0, frame))
            }
        }
    }
}

impl Sim {
    /// Carries out init's effects.
    pub(crate) fn drain_init(&mut self) -> Result<(), SimFailure> {
        while let Some(effect) = self.init.poll() {
            match effect {
                InitEffect::Start { server, generation } => self.start(server, generation),
                InitEffect::Stop { server } => self.stop(server),
                InitEffect::Send { server, mut frame } => {
                    let handles = grants::attach(server, &mut frame);
                    self.net
                        .push(Channel::InitTo(server), Message::Init(frame, handles))
                }
                InitEffect::Transition(transition) => self.transition(transition)?,
                InitEffect::Booted(summary) => {
                    self.note(format!("booted {:?}", summary.servers));
                    self.booted = Some(summary);
                    match self.transitions.last_mut() {
                        Some(t) if t.booted.is_none() => t.booted = Some(summary),
                        Some(_) => {}
                        None => self.first_boot = self.first_boot.or(Some(summary)),
                    }
                }
                InitEffect::Notice(notice) => self.note(format!("notice {notice:?}")),
            }
        }
        Ok(())
    }

    fn start(&mut self, server: ServerKind, generation: u32) {
        self.note(format!("start {server:?} gen {generation}"));
        match server {
            ServerKind::Teed => {
                let mut teed = Teed::new(self.cfg.teed.clone(), self.ram.clone());
                if let Some(p) = &self.tpmd {
                    teed.connect_client(p.id, ServerKind::Tpmd);
                }
                if let Some(p) = &self.bnxtd {
                    teed.connect_client(p.id, ServerKind::Bnxtd);
                }
                self.teed = Some(teed);
            }
            ServerKind::Tpmd => {
                let id = ClientId {
                    kind: server,
                    generation,
                };
                self.tpmd = Some(ClientProc {
                    core: tpmd::Tpmd::new(self.cfg.tpmd),
                    id,
                });
                if let Some(t) = self.teed.as_mut() {
                    t.connect_client(id, server);
                }
            }
            ServerKind::Bnxtd => {
                let id = ClientId {
                    kind: server,
                    generation,
                };
                self.bnxtd = Some(ClientProc {
                    core: bnxtd::Bnxtd::new(self.cfg.bnxtd),
                    id,
                });
                if let Some(t) = self.teed.as_mut() {
                    t.connect_client(id, server);
                }
            }
        }
    }

    /// Ends an incarnation: its endpoints close and what was in flight to or from it is lost.
    fn end(&mut self, server: ServerKind) -> bool {
        match server {
            ServerKind::Teed => {
                let Some(teed) = self.teed.take() else {
                    return false;
                };
                self.ended_teed = Some(teed.has_served() && teed.is_stopped());
                self.checker.teed_ended();
                self.net.retain(|c| {
                    !matches!(
                        c,
                        Channel::InitTo(ServerKind::Teed)
                            | Channel::ToInit(ServerKind::Teed)
                            | Channel::ClientToTeed(_)
                            | Channel::TeedToClient(_)
                            | Channel::SmcCall
                            | Channel::SmcReturn
                    )
                });
                self.hostile_pending.clear();
            }
            ServerKind::Tpmd => {
                let Some(p) = self.tpmd.take() else {
                    return false;
                };
                self.close_client(
                    ServerKind::Tpmd,
                    p.id,
                    [Channel::ConsumerToTpmd, Channel::TpmdToConsumer],
                );
                self.tpm_consumer.server_gone();
            }
            ServerKind::Bnxtd => {
                let Some(p) = self.bnxtd.take() else {
                    return false;
                };
                self.close_client(
                    ServerKind::Bnxtd,
                    p.id,
                    [Channel::NicToBnxtd, Channel::BnxtdToNic],
                );
                self.nic.server_gone();
            }
        }
        self.drain_teed();
        true
    }

    /// A client incarnation's endpoints close: what was in flight to or from it is lost, and
    /// teed hears that it is gone.
    fn close_client(&mut self, kind: ServerKind, id: ClientId, consumer: [Channel; 2]) {
        self.net.retain(|c| {
            *c != Channel::InitTo(kind)
                && *c != Channel::ToInit(kind)
                && *c != Channel::ClientToTeed(id)
                && *c != Channel::TeedToClient(id)
                && !consumer.contains(c)
        });
        if let Some(t) = self.teed.as_mut() {
            t.client_disconnected(self.now, id);
        }
    }

    fn stop(&mut self, server: ServerKind) {
        self.note(format!("stop {server:?}"));
        self.end(server);
    }

    /// kill -9: the process dies and init hears of it.
    pub(crate) fn kill(&mut self, server: ServerKind) {
        if self.end(server) {
            self.stats.kills += 1;
            self.note(format!("killed {server:?}"));
            self.init.server_exited(self.now, server);
        }
    }

    fn transition(&mut self, transition: Transition) -> Result<(), SimFailure> {
        self.note(format!("transition {transition:?}"));
        let mut checker = std::mem::replace(
            &mut self.checker,
            super::invariants::Checker::new(false, self.cfg.teed.hardening),
        );
        let checked = checker.on_transition(self, transition);
        self.checker = checker;
        checked?;
        // Read before the servers end: the model checker judges leftovers by it.
        let shutdown_completed = transition != Transition::EnterCrashKernel
            && super::invariants::completed_shutdown(self).is_ok();
        for server in [ServerKind::Tpmd, ServerKind::Bnxtd, ServerKind::Teed] {
            self.end(server);
        }
        self.transitions.push(super::script::TransitionRecord {
            secure: self.secure.stats(),
            shutdown_completed,
            booted: None,
        });
        // The old world's queues die with it, SMCs it never issued included.
        self.net = Default::default();
        let kind = match transition {
            Transition::Kexec => BootKind::Kexec,
            Transition::EnterCrashKernel => BootKind::CrashKernel,
            Transition::Reset => {
                // A machine reset restarts the secure world and loses RAM.
                self.secure.reset();
                self.ram.clear();
                self.checker.secure_world_reset();
                BootKind::Reset
            }
        };
        self.pending_boot = Some(kind);
        Ok(())
    }

    pub(crate) fn drain_teed(&mut self) {
        let Some(teed) = self.teed.as_mut() else {
            return;
        };
        while let Some(effect) = teed.poll() {
            match effect {
                TeedEffect::Smc { token, regs } => {
                    self.net.push(Channel::SmcCall, Message::Smc(token, regs))
                }
                TeedEffect::Reply { client, frame } => self
                    .net
                    .push(Channel::TeedToClient(client), Message::TeedResponse(frame)),
                TeedEffect::ToInit(frame) => self
                    .net
                    .push(Channel::ToInit(ServerKind::Teed), Message::Event(frame)),
            }
        }
    }

    pub(crate) fn drain_clients(&mut self) -> Result<(), SimFailure> {
        if let Some(p) = self.tpmd.as_mut() {
            drain_client(
                &mut self.net,
                p,
                ServerKind::Tpmd,
                Channel::TpmdToConsumer,
                Message::TpmResponse,
            );
        }
        if let Some(p) = self.bnxtd.as_mut() {
            drain_client(
                &mut self.net,
                p,
                ServerKind::Bnxtd,
                Channel::BnxtdToNic,
                Message::BnxtResponse,
            );
        }
        Ok(())
    }

    /// Delivers the head of `channel`.
    pub(crate) fn deliver(&mut self, channel: Channel) -> Result<(), SimFailure> {
        let Some(message) = self.net.pop(channel) else {
            return Ok(());
        };
        let now = self.now;
        let mut ram = self.ram.clone();
        match (channel, message) {
            (Channel::InitTo(server), Message::Init(frame, handles)) => {
                grants::take(server, &frame, handles).map_err(|why| self.fail(why))?;
                self.deliver_init(now, server, frame);
            }
            (Channel::ToInit(server), Message::Event(frame)) => {
                if self.cfg.breaks.lose_teed_shutdown_ack
                    && server == ServerKind::Teed
                    && matches!(frame.body, ServerEvent::ShutdownAck(_))
                {
                    self.note("break: teed's shutdown ack lost".into());
                    return Ok(());
                }
                self.note(format!("{server:?} -> init {:?}", frame.body));
                self.init.handle_event(now, server, frame);
                self.drain_init()?;
            }
            (Channel::ClientToTeed(id), Message::TeedRequest(frame)) => {
                if let Some(t) = self.teed.as_mut() {
                    t.handle_client(now, id, frame);
                } else {
                    // As the hosted shell does when it has no endpoint to teed.
                    self.teed_unreachable(id);
                    self.drain_clients()?;
                }
            }
            (Channel::TeedToClient(id), Message::TeedResponse(frame)) => {
                self.deliver_to_client(id, frame)?;
            }
            (Channel::SmcCall, Message::Smc(token, regs)) => {
                if self.cfg.breaks.reuse_retired_cookies {
                    self.reuse_a_retired_cookie(&mut ram, &regs);
                }
                let out = self.secure.smc(&mut ram, regs);
                if self.trace_smcs {
                    let arg = optee_abi::msg::MsgArg::read_from(
                        &ram,
                        optee_abi::smc::join_u32_pair(regs[1], regs[2]),
                    );
                    self.note(format!(
                        "smc {:x?} -> {:x?} arg {:?}",
                        &regs[..4],
                        &out[..4],
                        arg.map(|a| (a.cmd, a.session, a.ret, a.params.get(1).copied()))
                    ));
                }
                self.net.push(Channel::SmcReturn, Message::Smc(token, out));
            }
            (Channel::SmcReturn, Message::Smc(token, regs)) => {
                if let Some(t) = self.teed.as_mut() {
                    t.handle_smc_return(now, token, regs);
                }
            }
            (Channel::ConsumerToTpmd, Message::TpmRequest(consumer, frame)) => {
                if let Some(p) = self.tpmd.as_mut() {
                    p.core
                        .handle_consumer(now, &mut ram, ConsumerId(consumer), frame);
                }
            }
            (Channel::TpmdToConsumer, Message::TpmResponse(consumer, mut frame)) => {
                self.stats.tpm_answers += 1;
                if self.cfg.breaks.tpm_always_fails {
                    frame.body = TpmResponse::Error(TpmError::TeeUnavailable);
                }
                if consumer == super::script::SCRIPT_CONSUMER {
                    self.script_answers.push(frame.body);
                } else {
                    self.tpm_consumer.answer(frame).map_err(|m| self.fail(m))?;
                    self.stats.tpm_correct = self.tpm_consumer.correct;
                }
            }
            (Channel::NicToBnxtd, Message::BnxtRequest(consumer, frame)) => {
                if let Some(p) = self.bnxtd.as_mut() {
                    p.core
                        .handle_consumer(now, &mut ram, ConsumerId(consumer), frame);
                }
            }
            (Channel::BnxtdToNic, Message::BnxtResponse(consumer, frame)) => {
                if consumer == super::script::SCRIPT_CONSUMER {
                    self.script_bnxt_answers.push(frame.body);
                    return Ok(());
                }
                self.nic.answer(frame).map_err(|m| self.fail(m))?;
                self.stats.coredump_chunks = self.nic.chunks_checked;
            }
            (channel, message) => {
                return Err(self.fail(format!("message {message:?} on channel {channel:?}")))
            }
        }
        self.drain_teed();
        self.drain_clients()
    }

    /// A frame from init reaches the core of `server`, if it runs.
    fn deliver_init(&mut self, now: u64, server: ServerKind, frame: Frame<InitRequest>) {
        let mut ram = self.ram.clone();
        match server {
            ServerKind::Teed => {
                if let Some(t) = self.teed.as_mut() {
                    t.handle_init(now, frame);
                }
            }
            ServerKind::Tpmd => {
                if let Some(p) = self.tpmd.as_mut() {
                    p.core.handle_init(now, &mut ram, frame);
                }
            }
            ServerKind::Bnxtd => {
                if let Some(p) = self.bnxtd.as_mut() {
                    p.core.handle_init(now, &mut ram, frame);
                }
            }
        }
    }

    /// The client incarnation `id` sent to teed while no teed runs: it hears so at once.
    fn teed_unreachable(&mut self, id: ClientId) {
        let now = self.now;
        let mut ram = self.ram.clone();
        if let Some(p) = self.tpmd.as_mut().filter(|p| p.id == id) {
            p.core.teed_unreachable(now, &mut ram);
        } else if let Some(p) = self.bnxtd.as_mut().filter(|p| p.id == id) {
            p.core.teed_unreachable(now, &mut ram);
        }
    }

    fn deliver_to_client(
        &mut self,
        id: ClientId,
        frame: Frame<TeedResponse>,
    ) -> Result<(), SimFailure> {
        let now = self.now;
        let mut ram = self.ram.clone();
        if let Some(at) = self
            .hostile_pending
            .iter()
            .position(|(c, r)| *c == id && *r == frame.header.request_id)
        {
            self.hostile_pending.remove(at);
            return match frame.body {
                TeedResponse::Error(
                    WireError::Denied | WireError::NotFound | WireError::ServerRestarted { .. },
                )
                | TeedResponse::Error(WireError::ShuttingDown | WireError::Retryable) => Ok(()),
                other => Err(self.fail(format!("isolation: a forged request got {other:?}"))),
            };
        }
        self.checker.watch_reply(id, &frame.body);
        if let TeedResponse::Error(error) = frame.body {
            if self.refusals.len() < super::MAX_REFUSALS {
                self.refusals.push((id.kind, error));
            }
        }
        if let Some(p) = self.tpmd.as_mut().filter(|p| p.id == id) {
            p.core.handle_teed(now, &mut ram, frame);
        } else if let Some(p) = self.bnxtd.as_mut().filter(|p| p.id == id) {
            p.core.handle_teed(now, &mut ram, frame);
        }
        Ok(())
    }

    /// Consumers ask something of tpmd and bnxtd.
    pub(crate) fn consumer_traffic(&mut self) {
        if self.tpmd.is_some() && self.tpm_consumer.idle() {
            let frame = self.tpm_consumer.next_request();
            self.net
                .push(Channel::ConsumerToTpmd, Message::TpmRequest(1, frame));
        }
        if self.bnxtd.is_some() && self.nic.idle() {
            let pick = self.rng.gen();
            let frame = self.nic.next_request(pick);
            self.net
                .push(Channel::NicToBnxtd, Message::BnxtRequest(1, frame));
        }
    }
}
