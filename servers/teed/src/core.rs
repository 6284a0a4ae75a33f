//! The teed core: inputs in through `handle_*`, effects out through [`Teed::poll`], the next
//! deadline from [`Teed::poll_timeout`]. No IO, clock or thread inside.
//!
//! `Teed` composes four parts: the [`Registry`] (what this incarnation holds), the
//! [`CallEngine`] (every SMC and yielding call), and the [`Probe`] and [`Shutdown`] machines,
//! which act only through those two. When a call ends, the engine hands it back and one function
//! routes it by purpose (`dispatch.rs`).

use optee_abi::mem::PhysMem;
use optee_abi::smc::{ret, Regs};
use tee_proto::lifecycle::{
    DeclineReason, InitRequest, ServerEvent, ServerKind, ServerState, ServerStatus, ShutdownReport,
};
use tee_proto::teed::{TeedRequest, TeedResponse};
use tee_proto::{Frame, Generation, Header, WireError};

use crate::abi::{self, AbiStats, ArgPages, Caps};
use crate::call::Outcome;
use crate::client::Requests;
use crate::config::{Millis, TeedConfig};
use crate::engine::CallEngine;
use crate::probe::{Hello, Probe};
use crate::registry::Registry;
use crate::release;
use crate::shutdown::Shutdown;
use crate::types::{Client, ClientId, Effect, ReplyTo, SmcToken, TeedStats};

/// Where the server stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    AwaitingHello,
    Probing(Probe),
    Serving,
    ShuttingDown(Shutdown),
    Stopped,
    Declined(DeclineReason),
}

/// The TEE server: owner of the SMC conduit and of the registry of shared memory.
pub struct Teed<M: PhysMem> {
    pub(crate) cfg: TeedConfig,
    pub(crate) generation: Generation,
    pub(crate) init_header: Header,
    pub(crate) phase: Phase,
    pub(crate) registry: Registry<M>,
    pub(crate) engine: CallEngine,
    /// Set once the probe finished: this incarnation served.
    pub(crate) served: bool,
    /// The shell lost the SMC conduit: the secure world is out of reach for good.
    pub(crate) conduit_lost: bool,
}

impl<M: PhysMem> Teed<M> {
    /// A teed that waits for init's Hello.
    pub fn new(cfg: TeedConfig, mem: M) -> Teed<M> {
        Teed {
            engine: CallEngine::new(&cfg),
            cfg,
            generation: 0,
            init_header: Header::new(0, 0, 0),
            phase: Phase::AwaitingHello,
            registry: Registry::new(mem),
            served: false,
            conduit_lost: false,
        }
    }

    /// Registers a client endpoint that init connected, with the kind of server behind it.
    pub fn connect_client(&mut self, client: ClientId, kind: ServerKind) {
        self.registry.clients.insert(
            client,
            Client {
                kind,
                connected: true,
                deferred: alloc::vec::Vec::new(),
            },
        );
    }

    /// A message from init.
    pub fn handle_init(&mut self, now: Millis, frame: Frame<InitRequest>) {
        let header = frame.header;
        match frame.body {
            InitRequest::Hello {
                generation,
                boot,
                ram,
                journal,
                windows,
                ..
            } => {
                if !matches!(self.phase, Phase::AwaitingHello) {
                    tracing::warn!("second Hello ignored");
                    return;
                }
                self.generation = generation;
                self.init_header = header.reply_to(generation);
                let hello = Hello {
                    generation,
                    boot,
                    ram,
                    windows,
                    journal,
                };
                match Probe::start(now, &self.cfg, hello, &mut self.registry, &mut self.engine) {
                    Ok(probe) => self.phase = Phase::Probing(probe),
                    Err(reason) => self.decline(reason),
                }
            }
            InitRequest::Shutdown { reason } => match self.phase {
                Phase::Serving => {
                    let run = Shutdown::new(now, &self.cfg, header, reason);
                    self.phase = Phase::ShuttingDown(run);
                }
                Phase::ShuttingDown(_) => {}
                _ => {
                    // Nothing was ever served (declined, or never probed): nothing to release.
                    if !matches!(self.phase, Phase::Declined(_)) {
                        self.phase = Phase::Stopped;
                    }
                    let ack = ServerEvent::ShutdownAck(ShutdownReport::default());
                    self.send_init_reply(header, ack);
                }
            },
            // The shell connects endpoints that travel with these frames.
            InitRequest::ClientEndpoint { .. } | InitRequest::TeedEndpoint { .. } => {}
            InitRequest::Status => {
                let status = self.status();
                self.send_init_reply(header, ServerEvent::Status(status));
            }
        }
        self.pump(now);
    }

    /// A request from a client.
    pub fn handle_client(&mut self, now: Millis, client: ClientId, frame: Frame<TeedRequest>) {
        let header = frame.header;
        if header.is_stale_for(self.generation) {
            let generation = self.generation;
            let error = WireError::ServerRestarted { generation };
            self.reply(client, header, TeedResponse::Error(error));
            return;
        }
        let refusal = match &self.phase {
            Phase::Serving if self.conduit_lost => Some(WireError::TeeUnavailable),
            Phase::Serving => None,
            Phase::ShuttingDown(_) => Some(WireError::ShuttingDown),
            Phase::AwaitingHello | Phase::Probing(_) => Some(WireError::Retryable),
            Phase::Stopped => Some(WireError::NoDevice),
            Phase::Declined(_) => Some(WireError::TeeUnavailable),
        };
        // A client shutting down frees its buffer after init's Shutdown reached teed only if init
        // broke the order; serve frees and closes then, refuse new work.
        let is_release = matches!(
            frame.body,
            TeedRequest::ShmFree { .. } | TeedRequest::CloseSession { .. }
        );
        if let Some(error) = refusal {
            if !(is_release && matches!(self.phase, Phase::ShuttingDown(_))) {
                self.reply(client, header, TeedResponse::Error(error));
                return;
            }
        }
        let Some(kind) = self.registry.connected_kind(client) else {
            self.reply(client, header, TeedResponse::Error(WireError::Denied));
            return;
        };
        // Seed bug (dma-buf release): the deferred release runs when the client's task "returns to
        // user mode", modelled as its next request for new work. A shutdown only frees and
        // closes, so during a kexec it never runs, as in Linux.
        if !is_release {
            release::run_deferred_releases(&mut self.registry, &mut self.engine, now, client);
        }
        let mut requests = Requests {
            cfg: &self.cfg,
            reg: &mut self.registry,
            engine: &mut self.engine,
        };
        let heard = requests.handle(now, ReplyTo { client, header }, kind, frame.body);
        match heard {
            Ok(None) => {}
            Ok(Some(body)) => self.reply(client, header, body),
            Err(error) => self.reply(client, header, TeedResponse::Error(error)),
        }
        self.pump(now);
    }

    /// The shell lost the SMC conduit (the secure world's process is gone, the stream is out
    /// of step, or an SMC never came back). A probe then declines as `SecureWorldUnavailable`;
    /// every call outstanding ends at once as a failed SMC, whether or not the shell ever
    /// answers it; a shutdown acks; and new requests are answered "TEE unavailable" rather than
    /// sent to a secure world that cannot answer.
    pub fn conduit_failed(&mut self, now: Millis) {
        if self.conduit_lost {
            return;
        }
        self.conduit_lost = true;
        tracing::error!("SMC conduit lost");
        if matches!(self.phase, Phase::Probing(_)) {
            self.decline(DeclineReason::SecureWorldUnavailable);
        }
        for id in self.engine.all_calls() {
            self.finish_call(now, id, Outcome::Smc(ret::UNKNOWN_FUNCTION));
        }
        self.pump(now);
    }

    /// A client endpoint closed (its process died or shut down).
    pub fn client_disconnected(&mut self, now: Millis, client: ClientId) {
        let Some(c) = self.registry.clients.get_mut(&client) else {
            return;
        };
        c.connected = false;
        if self.cfg.hardening.reclaim_on_disconnect {
            release::reclaim_client(&mut self.registry, &mut self.engine, now, client);
        }
        self.pump(now);
    }

    /// The registers an SMC returned.
    pub fn handle_smc_return(&mut self, now: Millis, token: SmcToken, regs: Regs) {
        let Some(pending) = self.engine.take_pending(token) else {
            tracing::warn!(token = token.0, "answer to an SMC that is not outstanding");
            return;
        };
        self.on_smc_return(now, pending, regs);
        self.pump(now);
    }

    /// Time has reached an earlier [`Teed::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Millis) {
        self.on_timers(now);
        self.pump(now);
    }

    /// The next effect to carry out.
    pub fn poll(&mut self) -> Option<Effect> {
        self.engine.next_effect()
    }

    /// When [`Teed::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let phase = match &self.phase {
            Phase::Probing(p) => p.next_timeout(),
            Phase::ShuttingDown(s) => s.next_timeout(),
            _ => None,
        };
        match (self.engine.next_timeout(), phase) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The counters.
    pub fn stats(&self) -> TeedStats {
        self.engine.stats
    }

    /// Normal-world pages this incarnation has allocated (client buffers, private buffers,
    /// message slots without a journal).
    pub fn frames_used_pages(&self) -> u64 {
        self.registry.frames.used_pages()
    }

    /// This incarnation's generation.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// Normal-world RAM as teed sees it (the simulator inspects it).
    pub fn mem(&self) -> &M {
        &self.registry.mem
    }

    /// Registered (or registering) client buffers: (owner, cookie, pa, size).
    pub fn registrations(&self) -> impl Iterator<Item = (ClientId, u64, u64, u32)> + '_ {
        self.registry
            .shms
            .values()
            .map(|s| (s.owner, s.cookie, s.run.pa, s.size))
    }

    /// Open sessions: (id, owner).
    pub fn sessions(&self) -> impl Iterator<Item = (u32, ClientId)> + '_ {
        self.registry.sessions.iter().map(|(id, s)| (*id, s.owner))
    }

    /// What each outstanding yielding call is for (read-only; the simulator's coverage names
    /// what a fault cut into with it).
    pub fn call_purposes(&self) -> impl Iterator<Item = &crate::types::Purpose> + '_ {
        self.engine.purposes()
    }

    /// Outstanding calls parked with their secure thread suspended until a timer or a
    /// notification resumes them (RPC SUSPEND, NOTIFICATION WAIT).
    pub fn sleeping_calls(&self) -> usize {
        self.engine.sleeping_calls()
    }

    /// True once the probe finished and requests are served.
    pub fn is_serving(&self) -> bool {
        matches!(self.phase, Phase::Serving)
    }

    /// True once this incarnation finished its probe and served, whatever it does now.
    pub fn has_served(&self) -> bool {
        self.served
    }

    /// True when the probe declined.
    pub fn declined(&self) -> Option<DeclineReason> {
        match self.phase {
            Phase::Declined(r) => Some(r),
            _ => None,
        }
    }

    /// True after the shutdown was acknowledged.
    pub fn is_stopped(&self) -> bool {
        matches!(self.phase, Phase::Stopped)
    }

    /// The status init asks for.
    pub fn status(&self) -> ServerStatus {
        let state = match self.phase {
            Phase::AwaitingHello | Phase::Probing(_) => ServerState::Starting,
            Phase::Serving if self.conduit_lost => ServerState::Unavailable,
            Phase::Serving => ServerState::Serving,
            Phase::ShuttingDown(_) => ServerState::ShuttingDown,
            Phase::Stopped => ServerState::Stopped,
            Phase::Declined(_) => ServerState::Declined,
        };
        let shms = &self.registry.shms;
        ServerStatus {
            kind: ServerKind::Teed,
            generation: self.generation,
            state,
            sessions: self.registry.sessions.len() as u32,
            registrations: shms.len() as u32,
            registered_bytes: shms.values().map(|s| u64::from(s.size)).sum(),
        }
    }
}

/// The modern interface (`crate::abi`) as the shell and the tests see it.
impl<M: PhysMem> Teed<M> {
    /// The secure world raised its notification interrupt (with SEC_CAP_ASYNC_NOTIF): read the
    /// values it queued. Ignored before notifications are enabled or once they are stopped.
    pub fn notification_interrupt(&mut self, now: Millis) {
        if self.conduit_lost || !self.engine.abi.notif.enabled {
            return;
        }
        abi::read_value(&mut self.engine);
        self.pump(now);
    }

    /// What EXCHANGE_CAPABILITIES said, once the probe read it.
    pub fn secure_caps(&self) -> Caps {
        self.engine.abi.caps
    }

    /// The registered argument pages: (cookie, first page, bytes).
    pub fn arg_pages(&self) -> Option<(u64, u64, u64)> {
        match self.engine.abi.arg_pages {
            ArgPages::Registered { cookie, run }
            | ArgPages::Registering { cookie, run }
            | ArgPages::Unregistering { cookie, run } => Some((cookie, run.pa, run.bytes())),
            ArgPages::None => None,
        }
    }

    /// Asynchronous notifications are enabled in this incarnation (and not stopped).
    pub fn notifications_enabled(&self) -> bool {
        self.engine.abi.notif.enabled
    }

    /// An asynchronous notification is being served: a GET_ASYNC_NOTIF_VALUE round or a
    /// bottom half is out or wanted, or notifications are being stopped.
    pub fn notification_in_flight(&self) -> bool {
        use crate::abi::AbiCall;
        use crate::types::Purpose;
        !self.engine.abi.notif_idle()
            || self
                .engine
                .any_call(|p| matches!(p, Purpose::Abi(AbiCall::StopNotif | AbiCall::BottomHalf)))
    }

    /// Counters of the modern interface.
    pub fn abi_stats(&self) -> AbiStats {
        self.engine.abi.stats
    }
}
