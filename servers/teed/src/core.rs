//! The teed core: inputs in through `handle_*`, effects out through [`Teed::poll`], the next
//! deadline from [`Teed::poll_timeout`]. No IO, clock or thread inside.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

use optee_abi::mem::PhysMem;
use optee_abi::smc::Regs;
use tee_proto::lifecycle::{
    DeclineReason, InitRequest, ServerEvent, ServerKind, ServerState, ServerStatus,
};
use tee_proto::teed::{ShmId, TeedRequest, TeedResponse};
use tee_proto::{Frame, Generation, Header, WireError};

use crate::call::Pending;
use crate::config::{Millis, TeedConfig};
use crate::frames::FrameAllocator;
use crate::journal::Journal;
use crate::probe::Probe;
use crate::shutdown::ShutdownRun;
use crate::types::{
    Call, CallId, CallStatus, Client, ClientId, Effect, PrivateBuf, Session, Shm, SmcToken,
    TeedStats,
};

/// Where the server stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    AwaitingHello,
    Probing(Probe),
    Serving,
    ShuttingDown(ShutdownRun),
    Stopped,
    Declined(DeclineReason),
}

/// The message-argument slots: driver-private memory, in the journal when there is one.
#[derive(Debug, Clone, Default)]
pub(crate) struct ArgSlots {
    pub pas: Vec<u64>,
    pub used: Vec<bool>,
}

impl ArgSlots {
    pub fn take(&mut self) -> Option<usize> {
        let slot = self.used.iter().position(|u| !u)?;
        self.used[slot] = true;
        Some(slot)
    }

    pub fn give_back(&mut self, slot: usize) {
        if let Some(u) = self.used.get_mut(slot) {
            *u = false;
        }
    }
}

/// The TEE server: owner of the SMC conduit and of the registry of shared memory.
pub struct Teed<M: PhysMem> {
    pub(crate) cfg: TeedConfig,
    pub(crate) mem: M,
    pub(crate) generation: Generation,
    pub(crate) phase: Phase,
    pub(crate) init_header: Header,
    pub(crate) frames: FrameAllocator,
    pub(crate) journal: Option<Journal>,
    pub(crate) epoch: u32,
    pub(crate) cookie_seq: u32,
    pub(crate) thread_count: u32,
    pub(crate) args: ArgSlots,
    pub(crate) clients: BTreeMap<ClientId, Client>,
    pub(crate) shms: BTreeMap<ShmId, Shm>,
    pub(crate) next_shm: ShmId,
    pub(crate) sessions: BTreeMap<u32, Session>,
    pub(crate) private: BTreeMap<u64, PrivateBuf>,
    pub(crate) calls: BTreeMap<CallId, Call>,
    pub(crate) next_call: CallId,
    pub(crate) pending: BTreeMap<SmcToken, Pending>,
    pub(crate) next_token: u64,
    pub(crate) effects: VecDeque<Effect>,
    pub(crate) stats: TeedStats,
    pub(crate) now: Millis,
    /// Calls parked in NOTIFICATION WAIT, by key.
    pub(crate) notif_waiters: BTreeMap<u64, CallId>,
    /// Keys sent before anyone waited for them.
    pub(crate) notif_sent: alloc::collections::BTreeSet<u64>,
    /// This boot's id, which the fTPM TA reads from the client identity.
    pub(crate) boot_id: u64,
    /// Set once the probe finished: this incarnation served.
    pub(crate) served: bool,
    /// The shell lost the SMC conduit: the secure world is out of reach for good.
    pub(crate) conduit_lost: bool,
}

impl<M: PhysMem> Teed<M> {
    /// A teed that waits for init's Hello.
    pub fn new(cfg: TeedConfig, mem: M) -> Teed<M> {
        Teed {
            cfg,
            mem,
            generation: 0,
            phase: Phase::AwaitingHello,
            init_header: Header::new(0, 0, 0),
            frames: FrameAllocator::new(0, 0),
            journal: None,
            epoch: 0,
            cookie_seq: 0,
            thread_count: 0,
            args: ArgSlots::default(),
            clients: BTreeMap::new(),
            shms: BTreeMap::new(),
            next_shm: 1,
            sessions: BTreeMap::new(),
            private: BTreeMap::new(),
            calls: BTreeMap::new(),
            next_call: 1,
            pending: BTreeMap::new(),
            next_token: 1,
            effects: VecDeque::new(),
            stats: TeedStats::default(),
            now: 0,
            notif_waiters: BTreeMap::new(),
            notif_sent: alloc::collections::BTreeSet::new(),
            boot_id: 0,
            served: false,
            conduit_lost: false,
        }
    }

    /// Registers a client endpoint that init connected, with the kind of server behind it.
    pub fn connect_client(&mut self, client: ClientId, kind: ServerKind) {
        self.clients.insert(
            client,
            Client {
                kind,
                connected: true,
                deferred: Vec::new(),
            },
        );
    }

    /// A message from init.
    pub fn handle_init(&mut self, now: Millis, frame: Frame<InitRequest>) {
        self.now = now;
        let header = frame.header;
        match frame.body {
            InitRequest::Hello {
                generation,
                boot,
                ram,
                journal,
                ..
            } => {
                if !matches!(self.phase, Phase::AwaitingHello) {
                    tracing::warn!("second Hello ignored");
                    return;
                }
                self.generation = generation;
                self.boot_id = boot.boot_id;
                self.init_header = header.reply_to(generation);
                self.start_probe(now, boot, ram, journal);
            }
            InitRequest::Shutdown { reason } => self.start_shutdown(now, header, reason),
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
        self.now = now;
        let header = frame.header;
        if header.is_stale_for(self.generation) {
            let generation = self.generation;
            self.reply(
                client,
                header,
                TeedResponse::Error(WireError::ServerRestarted { generation }),
            );
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
        let Some(kind) = self
            .clients
            .get(&client)
            .filter(|c| c.connected)
            .map(|c| c.kind)
        else {
            self.reply(client, header, TeedResponse::Error(WireError::Denied));
            return;
        };
        // Seed bug (dma-buf release): the deferred release runs when the client's task "returns to
        // user mode", modelled as its next request for new work. A shutdown only frees and
        // closes, so during a kexec it never runs, as in Linux.
        if !is_release {
            self.run_deferred_releases(now, client);
        }
        self.handle_request(now, client, kind, header, frame.body);
        self.pump(now);
    }

    /// The shell lost the SMC conduit (the secure world's process is gone, or the stream is out
    /// of step). Call it before handing back the refusals the shell answers outstanding SMCs
    /// with: a probe then declines as `SecureWorldUnavailable`, and new requests are answered
    /// "TEE unavailable" rather than sent to a secure world that cannot answer.
    pub fn conduit_failed(&mut self, now: Millis) {
        self.now = now;
        if self.conduit_lost {
            return;
        }
        self.conduit_lost = true;
        tracing::error!("SMC conduit lost");
        if matches!(self.phase, Phase::Probing(_)) {
            self.decline(DeclineReason::SecureWorldUnavailable);
        }
        self.pump(now);
    }

    /// A client endpoint closed (its process died or shut down).
    pub fn client_disconnected(&mut self, now: Millis, client: ClientId) {
        self.now = now;
        let Some(c) = self.clients.get_mut(&client) else {
            return;
        };
        c.connected = false;
        if self.cfg.hardening.reclaim_on_disconnect {
            self.reclaim_client(now, client);
        }
        self.pump(now);
    }

    /// The registers an SMC returned.
    pub fn handle_smc_return(&mut self, now: Millis, token: SmcToken, regs: Regs) {
        self.now = now;
        let Some(pending) = self.pending.remove(&token) else {
            tracing::warn!(token = token.0, "answer to an SMC that is not outstanding");
            return;
        };
        match pending {
            Pending::Fast(fast) => self.on_fast_return(now, fast, regs),
            Pending::Call(id) => self.on_call_return(now, id, regs),
        }
        self.pump(now);
    }

    /// Time has reached an earlier [`Teed::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Millis) {
        self.now = now;
        self.on_timers(now);
        self.pump(now);
    }

    /// The next effect to carry out.
    pub fn poll(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// When [`Teed::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let mut next: Option<Millis> = None;
        let mut consider = |t: Millis| next = Some(next.map_or(t, |n| n.min(t)));
        for call in self.calls.values() {
            match call.status {
                CallStatus::WaitingThread { retry_at } => {
                    consider(retry_at.min(call.deadline));
                }
                CallStatus::Sleeping { until } => consider(until),
                CallStatus::InFlight(_) | CallStatus::WaitingChild => {}
            }
        }
        match &self.phase {
            Phase::Probing(p) => {
                consider(p.deadline);
                if let Some(t) = p.retry_at {
                    consider(t);
                }
            }
            Phase::ShuttingDown(s) => {
                consider(s.deadline);
                if let Some(t) = s.retry_at {
                    consider(t);
                }
            }
            _ => {}
        }
        next
    }

    /// The counters.
    pub fn stats(&self) -> TeedStats {
        self.stats
    }

    /// Normal-world pages this incarnation has allocated (client buffers, private buffers,
    /// message slots without a journal).
    pub fn frames_used_pages(&self) -> u64 {
        self.frames.used_pages()
    }

    /// This incarnation's generation.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// Normal-world RAM as teed sees it (the simulator inspects it).
    pub fn mem(&self) -> &M {
        &self.mem
    }

    /// Registered (or registering) client buffers: (owner, cookie, pa, size).
    pub fn registrations(&self) -> impl Iterator<Item = (ClientId, u64, u64, u32)> + '_ {
        self.shms
            .values()
            .map(|s| (s.owner, s.cookie, s.run.pa, s.size))
    }

    /// Open sessions: (id, owner).
    pub fn sessions(&self) -> impl Iterator<Item = (u32, ClientId)> + '_ {
        self.sessions.iter().map(|(id, s)| (*id, s.owner))
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
            Phase::Serving => ServerState::Serving,
            Phase::ShuttingDown(_) => ServerState::ShuttingDown,
            Phase::Stopped => ServerState::Stopped,
            Phase::Declined(_) => ServerState::Declined,
        };
        ServerStatus {
            kind: ServerKind::Teed,
            generation: self.generation,
            state,
            sessions: self.sessions.len() as u32,
            registrations: self.shms.len() as u32,
            registered_bytes: self.shms.values().map(|s| u64::from(s.size)).sum(),
        }
    }

    // ---- shared helpers ----

    pub(crate) fn emit_smc(&mut self, pending: Pending, regs: Regs) -> SmcToken {
        let token = SmcToken(self.next_token);
        self.next_token += 1;
        self.pending.insert(token, pending);
        self.stats.smcs += 1;
        self.effects.push_back(Effect::Smc { token, regs });
        token
    }

    pub(crate) fn reply(&mut self, client: ClientId, request: Header, body: TeedResponse) {
        // A client whose endpoint closed hears nothing more.
        if self.clients.get(&client).is_some_and(|c| !c.connected) {
            return;
        }
        let frame = Frame {
            header: request.reply_to(self.generation),
            body,
        };
        self.effects.push_back(Effect::Reply { client, frame });
    }

    pub(crate) fn send_init(&mut self, body: ServerEvent) {
        let frame = Frame {
            header: self.init_header,
            body,
        };
        self.effects.push_back(Effect::ToInit(frame));
    }

    pub(crate) fn send_init_reply(&mut self, request: Header, body: ServerEvent) {
        let frame = Frame {
            header: request.reply_to(self.generation),
            body,
        };
        self.effects.push_back(Effect::ToInit(frame));
    }

    /// A cookie unique for the secure world's lifetime: this incarnation's epoch (one more than
    /// every earlier one, kept in the journal) and a counter. Never a pointer, never reused.
    pub(crate) fn new_cookie(&mut self) -> u64 {
        self.cookie_seq = self.cookie_seq.wrapping_add(1);
        (u64::from(self.epoch) << 32) | u64::from(self.cookie_seq)
    }

    /// Moves the phase machines on after any input.
    pub(crate) fn pump(&mut self, now: Millis) {
        self.advance_probe(now);
        self.advance_shutdown(now);
    }
}
