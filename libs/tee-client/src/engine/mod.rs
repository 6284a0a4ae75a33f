//! The lifecycle every TEE client server shares, as a sans-IO state machine.
//!
//! [`Client`] talks to three peers: init (lifecycle), teed (session and registered buffer) and
//! its consumers. Inputs arrive through `handle_*` with the time passed in; outputs are drained
//! from [`Client::poll`]; [`Client::poll_timeout`] names the next deadline. Normal-world RAM is
//! handed in per call, because the shell owns it.
//!
//! The life of a client, mirroring the Linux fTPM and BNXT drivers after the 5.14 series:
//! * `Hello` in a crash boot: no frame to teed; `Ready`, then every consumer request is answered
//!   "TEE unavailable". Otherwise open the session, allocate the buffer, then `Ready`. Failures
//!   are retried with backoff until the start deadline, then the server declines.
//! * Serving: consumer requests queue in arrival order and reach the TA one at a time.
//! * teed restarted (`ServerRestarted`): its successor reclaimed the session and buffer; the
//!   client re-opens and re-allocates, the request in flight gets "retry", queued ones proceed.
//! * `Shutdown`: new work is refused, the call in flight may finish (bounded), then the buffer is
//!   freed (teed unregisters it before answering) and the session closed, and only then acked.

mod drive;
mod link;
mod replies;
mod service;

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use optee_abi::mem::PhysMem;
use tee_proto::lifecycle::{
    BootInfo, BootKind, InitRequest, ServerEvent, ServerState, ServerStatus, ShutdownReason,
    ShutdownReport,
};
use tee_proto::teed::{TeedRequest, TeedResponse};
use tee_proto::{Frame, Generation, Header, Interface, WireError};
use tracing::{debug, info};

use self::link::Link;
pub use self::service::{
    Begin, ClientError, Failure, RequestOf, ResponseOf, ShmBuffer, TaCall, TaReply, TaService,
};
use crate::config::{ClientConfig, Millis};

/// A consumer connection, named by the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConsumerId(pub u64);

/// Something the shell must carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect<R> {
    ToTeed(Frame<TeedRequest>),
    ToInit(Frame<ServerEvent>),
    ToConsumer {
        consumer: ConsumerId,
        frame: Frame<R>,
    },
}

#[derive(Debug)]
enum Phase {
    AwaitingHello,
    /// Opening the session and allocating the buffer; `Ready` still owed to `hello`.
    Starting {
        hello: Header,
        give_up_at: Millis,
    },
    Serving,
    /// Start failed: releasing what was acquired before answering `Declined`.
    Declining {
        hello: Header,
    },
    /// `Ready` was sent, but teed is unavailable this boot.
    Unavailable,
    Declined,
    ShuttingDown(ShutdownRun),
    Stopped,
}

#[derive(Debug)]
struct ShutdownRun {
    /// Every `Shutdown` received; each gets the ack.
    acks: Vec<Header>,
    reason: ShutdownReason,
    deadline: Millis,
    report: ShutdownReport,
    pre_release_sent: bool,
}

/// A consumer request waiting for its turn.
#[derive(Debug)]
struct Queued<J> {
    consumer: ConsumerId,
    header: Header,
    job: J,
    expires_at: Millis,
}

/// The job whose TA call is in flight; `consumer` is `None` once the consumer has gone.
#[derive(Debug)]
struct Active<J> {
    consumer: Option<ConsumerId>,
    header: Header,
    job: J,
    /// The call's handle for `Cancel`.
    cancel_id: u32,
}

const EMPTY_REPORT: ShutdownReport = ShutdownReport {
    unregistered: 0,
    sessions_closed: 0,
    cache_buffers_freed: 0,
    errors: 0,
};

/// The client core, generic over the TA front end it serves.
pub struct Client<S: TaService> {
    config: ClientConfig,
    service: S,
    phase: Phase,
    link: Link,
    queue: VecDeque<Queued<S::Job>>,
    active: Option<Active<S::Job>>,
    effects: VecDeque<Effect<ResponseOf<S>>>,
}

impl<S: TaService + Default> Client<S> {
    pub fn new(config: ClientConfig) -> Self {
        Client {
            config,
            service: S::default(),
            phase: Phase::AwaitingHello,
            link: Link::new(),
            queue: VecDeque::new(),
            active: None,
            effects: VecDeque::new(),
        }
    }
}

impl<S: TaService> Client<S> {
    /// A frame from init.
    pub fn handle_init(&mut self, now: Millis, mem: &mut dyn PhysMem, frame: Frame<InitRequest>) {
        let Frame { header, body } = frame;
        match body {
            InitRequest::Hello {
                generation,
                teed_generation,
                boot,
                ..
            } => self.hello(now, header, generation, teed_generation, boot),
            InitRequest::Shutdown { reason } => self.begin_shutdown(now, header, reason),
            InitRequest::Status => {
                let status = self.status();
                self.reply_init(header, ServerEvent::Status(status));
            }
            // The shell swapped the endpoint: whatever went out on the old one is lost with the
            // old teed. Fail it now (the consumer hears "retry") rather than at its deadline;
            // the next request meets the new teed, which answers ServerRestarted.
            InitRequest::TeedEndpoint { .. } => {
                self.link.shorten_deadline(now);
                self.on_deadlines(now);
                // A successor exists: acquire from it at once, whatever the backoff was.
                self.link.teed_unreachable = false;
                self.link.reset_backoff();
            }
            InitRequest::ClientEndpoint { .. } => {}
        }
        self.drive(now, mem);
    }

    /// A reply from teed.
    pub fn handle_teed(&mut self, now: Millis, mem: &mut dyn PhysMem, frame: Frame<TeedResponse>) {
        self.on_teed_reply(now, mem, frame);
        self.drive(now, mem);
    }

    /// A request from a consumer.
    pub fn handle_consumer(
        &mut self,
        now: Millis,
        mem: &mut dyn PhysMem,
        consumer: ConsumerId,
        frame: Frame<RequestOf<S>>,
    ) {
        let Frame { header, body } = frame;
        let my_generation = self.link.my_generation;
        if my_generation != 0 && header.is_stale_for(my_generation) {
            let restarted = S::Interface::server_restarted(my_generation);
            self.reply_consumer(consumer, header, restarted);
            return;
        }
        let refusal = match self.phase {
            Phase::AwaitingHello | Phase::Starting { .. } | Phase::Serving => None,
            Phase::Declining { .. } | Phase::Unavailable | Phase::Declined => {
                Some(ClientError::TeeUnavailable)
            }
            Phase::ShuttingDown(_) => Some(ClientError::ShuttingDown),
            Phase::Stopped => Some(ClientError::Stopped),
        };
        if let Some(error) = refusal {
            let response = self.service.fail(error);
            self.reply_consumer(consumer, header, response);
            return;
        }
        match self.service.accept(body) {
            Ok(job) => self.queue.push_back(Queued {
                consumer,
                header,
                job,
                expires_at: now.saturating_add(self.config.deadlines.queue_wait_ms),
            }),
            Err(response) => self.reply_consumer(consumer, header, response),
        }
        self.drive(now, mem);
    }

    /// The consumer's connection closed: drop its queued requests; a call in flight for it
    /// still runs to completion (a TPM command must not be cut in half) but is not answered.
    pub fn consumer_gone(&mut self, consumer: ConsumerId) {
        self.queue.retain(|queued| queued.consumer != consumer);
        if let Some(active) = &mut self.active {
            if active.consumer == Some(consumer) {
                active.consumer = None;
            }
        }
    }

    /// The shell has no way to teed (its endpoint closed, no new one came) and could not send
    /// what the core asked: whatever waits for teed fails now, as at its deadline, so a
    /// consumer hears "retry" at once instead of after the call deadline. A new teed endpoint
    /// (`TeedEndpoint`) puts things right again; until then no acquisition is retried.
    pub fn teed_unreachable(&mut self, now: Millis, mem: &mut dyn PhysMem) {
        self.link.teed_unreachable = true;
        self.link.shorten_deadline(now);
        self.on_deadlines(now);
        self.drive(now, mem);
    }

    /// Time has reached `now`: fire whatever deadline has passed.
    pub fn handle_timeout(&mut self, now: Millis, mem: &mut dyn PhysMem) {
        self.on_deadlines(now);
        self.drive(now, mem);
    }

    /// The next thing for the shell to do, until `None`.
    pub fn poll(&mut self) -> Option<Effect<ResponseOf<S>>> {
        self.effects.pop_front()
    }

    /// When [`Client::handle_timeout`] must be called next, if anything waits.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let outstanding = self.link.outstanding.map(|o| o.deadline);
        let retry = match self.phase {
            // Starting keeps its retries: its start deadline must still fire.
            Phase::Starting { .. } => self.link.retry_at,
            Phase::Serving if !self.link.teed_unreachable => self.link.retry_at,
            _ => None,
        };
        let shutdown = match &self.phase {
            Phase::ShuttingDown(run) => Some(run.deadline),
            _ => None,
        };
        let queued = self.queue.iter().map(|queued| queued.expires_at).min();
        [outstanding, retry, shutdown, queued]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn status(&self) -> ServerStatus {
        let state = match self.phase {
            Phase::AwaitingHello | Phase::Starting { .. } | Phase::Declining { .. } => {
                ServerState::Starting
            }
            Phase::Serving | Phase::Unavailable => ServerState::Serving,
            Phase::Declined => ServerState::Declined,
            Phase::ShuttingDown(_) => ServerState::ShuttingDown,
            Phase::Stopped => ServerState::Stopped,
        };
        ServerStatus {
            kind: S::KIND,
            generation: self.link.my_generation,
            state,
            sessions: u32::from(self.link.session.is_some()),
            registrations: u32::from(self.link.shm.is_some()),
            registered_bytes: self.link.shm.map_or(0, |shm| u64::from(shm.size)),
        }
    }

    /// This incarnation's generation (0 before `Hello`); shells screen consumer frames with it.
    pub fn generation(&self) -> Generation {
        self.link.my_generation
    }

    /// A consumer's job is at the TA (its call is in flight), or one waits its turn.
    pub fn has_active_job(&self) -> bool {
        self.active.is_some() || !self.queue.is_empty()
    }

    /// teed's generation as this client last heard of it.
    pub fn teed_generation(&self) -> Generation {
        self.link.teed_generation
    }

    fn hello(
        &mut self,
        now: Millis,
        header: Header,
        generation: Generation,
        teed_generation: Generation,
        boot: BootInfo,
    ) {
        if !matches!(self.phase, Phase::AwaitingHello) {
            self.reply_init(header, ServerEvent::Error(WireError::BadRequest));
            return;
        }
        self.link.my_generation = generation;
        self.link.teed_generation = teed_generation;
        let crash_boot = boot.crash_flag || boot.kind == BootKind::CrashKernel;
        if crash_boot {
            // teed declines in this boot and secure threads may be stuck: never contact it.
            info!(generation, "crash boot: serving without a TEE");
            self.reply_init(header, ServerEvent::Ready { generation });
            self.enter_unavailable();
            return;
        }
        info!(generation, teed_generation, "starting");
        self.phase = Phase::Starting {
            hello: header,
            give_up_at: now.saturating_add(self.config.deadlines.start_ms),
        };
    }

    fn begin_shutdown(&mut self, now: Millis, header: Header, reason: ShutdownReason) {
        match &mut self.phase {
            Phase::ShuttingDown(run) => {
                run.acks.push(header);
                return;
            }
            Phase::Stopped => {
                self.reply_init(header, ServerEvent::ShutdownAck(EMPTY_REPORT));
                return;
            }
            _ => {}
        }
        info!(?reason, "shutdown");
        self.fail_queue(ClientError::ShuttingDown);
        if self.config.seed_bugs.no_shutdown_hook {
            // The old driver had no hook: nothing is released and kexec proceeds at once.
            if let Some(active) = self.active.take() {
                self.answer_active(active, ClientError::ShuttingDown);
            }
            self.phase = Phase::Stopped;
            self.reply_init(header, ServerEvent::ShutdownAck(EMPTY_REPORT));
            return;
        }
        let budget = match reason {
            ShutdownReason::Crash => self.config.deadlines.crash_shutdown_ms,
            ShutdownReason::Kexec | ShutdownReason::Reboot => self.config.deadlines.shutdown_ms,
        };
        // What is in flight may finish within half the budget; the releases keep the rest.
        self.link.shorten_deadline(now.saturating_add(budget / 2));
        self.phase = Phase::ShuttingDown(ShutdownRun {
            acks: alloc::vec![header],
            reason,
            deadline: now.saturating_add(budget),
            report: EMPTY_REPORT,
            pre_release_sent: false,
        });
    }

    /// teed is unavailable this boot: everything waiting, and everything to come, hears so.
    fn enter_unavailable(&mut self) {
        match core::mem::replace(&mut self.phase, Phase::Unavailable) {
            Phase::Starting { hello, .. } => {
                let generation = self.link.my_generation;
                self.reply_init(hello, ServerEvent::Ready { generation });
            }
            Phase::AwaitingHello | Phase::Serving | Phase::Unavailable => {}
            other => {
                // Declining, shutting down or done: the phase already says all there is.
                self.phase = other;
                return;
            }
        }
        self.fail_queue(ClientError::TeeUnavailable);
    }

    fn fail_queue(&mut self, error: ClientError) {
        while let Some(queued) = self.queue.pop_front() {
            let response = self.service.fail(error);
            self.reply_consumer(queued.consumer, queued.header, response);
        }
    }

    fn answer_active(&mut self, active: Active<S::Job>, error: ClientError) {
        if let Some(consumer) = active.consumer {
            let response = self.service.fail(error);
            self.reply_consumer(consumer, active.header, response);
        }
    }

    fn reply_consumer(&mut self, consumer: ConsumerId, request: Header, body: ResponseOf<S>) {
        let header = request.reply_to(self.link.my_generation);
        self.effects.push_back(Effect::ToConsumer {
            consumer,
            frame: Frame { header, body },
        });
    }

    fn reply_init(&mut self, request: Header, body: ServerEvent) {
        let header = request.reply_to(self.link.my_generation);
        debug!(?body, "to init");
        self.effects
            .push_back(Effect::ToInit(Frame { header, body }));
    }

    fn send_teed(&mut self, frame: Frame<TeedRequest>) {
        self.effects.push_back(Effect::ToTeed(frame));
    }
}
