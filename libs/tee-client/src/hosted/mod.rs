//! The hosted shell of a TEE client server (tpmd, bnxtd): one [`Handler`] of the hosted serve
//! loop (`tee_rt::serve`) drives any [`crate::engine::Client`], whatever trusted application
//! it fronts.
//!
//! init's `Hello` grants [`ClientGrants`]: the endpoint to teed, the RAM file, the native
//! consumer listener and, for a front-end (tpmd's swtpm protocol), its listeners. Besides init's
//! endpoint, which the loop serves, the handler polls the teed endpoint, the listeners and every
//! consumer connection. `TeedEndpoint` swaps the teed endpoint.
//!
//! Every endpoint is non-blocking once serving: a frame that cannot be sent at once (a peer
//! that stopped reading) is dropped with a warning and left to the receiver's deadlines, so
//! the shell never blocks on a peer.

pub mod consumers;
pub mod front_end;

use std::io;
use std::os::fd::OwnedFd;
use std::process::ExitCode;

use tee_proto::grants::{ClientGrants, SwtpmGrants};
use tee_proto::lifecycle::{InitRequest, ServerKind, ServerState};
use tee_proto::teed::TeedResponse;
use tee_proto::FRAME_MAX;
use tee_proto::{accept_request, Frame, Generation, Incoming, Interface, LifecycleInterface};
use tee_rt::clock::Millis;
use tee_rt::endpoint::Endpoint;
use tee_rt::event::{PollSet, Readiness, Token};
use tee_rt::ram::RamFile;
use tee_rt::serve::{single_endpoint, Handler, Io, StartError};
use tee_rt::server::map_ram;

use self::consumers::{ConsumerToken, Consumers, Listener, ListenerKind};
use self::front_end::{FrontEnd, FrontEndInbound, NoFrontEnd};
use crate::engine::{Client, Effect, ResponseOf, TaService};
use crate::{ClientConfig, ConsumerId};

const TEED: Token = Token(1);

/// Maps the client's window at the base `Hello` names for it: the only normal-world RAM the
/// client sees (its buffers). A `Hello` naming none grants all of RAM at the usual base.
fn map_window(hello: &Frame<InitRequest>, window: OwnedFd) -> Result<RamFile, StartError> {
    match hello.body {
        InitRequest::Hello { ram, .. } if ram.len > 0 => {
            Ok(RamFile::from_fd(window, ram.base, ram.len)?)
        }
        _ => Ok(map_ram(window)?),
    }
}

/// Builds a consumer front-end from the swtpm listeners `Hello` granted (if any).
pub type FrontEndFactory<F> = fn(Option<SwtpmGrants<OwnedFd>>) -> io::Result<F>;

/// What a client shell is built with besides its grants.
pub struct ShellConfig<F> {
    pub client: ClientConfig,
    pub front_end: FrontEndFactory<F>,
}

/// A client server of service `S` with no front-end besides native frames: its whole life
/// after logging is set up.
pub fn main<S>(config: ClientConfig) -> ExitCode
where
    S: TaService + Default,
{
    main_with::<S, NoFrontEnd>(config, NoFrontEnd::from_grants)
}

/// [`main`] with a consumer front-end built from the swtpm listeners.
pub fn main_with<S, F>(config: ClientConfig, front_end: FrontEndFactory<F>) -> ExitCode
where
    S: TaService + Default,
    F: FrontEnd<S::Interface>,
{
    tee_rt::serve::main::<ClientShell<S, F>>(ShellConfig {
        client: config,
        front_end,
    })
}

/// The state of a running client shell.
pub struct ClientShell<S: TaService, F> {
    core: Client<S>,
    ram: RamFile,
    teed: Option<Endpoint>,
    consumers: Consumers,
    front_end: F,
    /// One receive buffer for every packet from teed, so an answer costs no allocation.
    rx: Box<[u8]>,
}

impl<S, F> Handler for ClientShell<S, F>
where
    S: TaService + Default,
    F: FrontEnd<S::Interface>,
{
    const KIND: ServerKind = S::KIND;
    type Config = ShellConfig<F>;
    type Grants = ClientGrants<OwnedFd>;

    fn start(
        config: ShellConfig<F>,
        hello: &Frame<InitRequest>,
        grants: ClientGrants<OwnedFd>,
    ) -> Result<Self, StartError> {
        let teed = Endpoint::from_fd(grants.teed);
        teed.set_nonblocking(true)
            .map_err(StartError::grant("teed endpoint"))?;
        let native = Listener::from_fd(ListenerKind::Native, grants.consumers)
            .map_err(StartError::grant("consumer listener"))?;
        let front_end = (config.front_end)(grants.swtpm).map_err(StartError::grant("front-end"))?;
        Ok(ClientShell {
            core: Client::new(config.client),
            ram: map_window(hello, grants.window)?,
            teed: Some(teed),
            consumers: Consumers::new(vec![native]),
            front_end,
            rx: vec![0u8; FRAME_MAX].into_boxed_slice(),
        })
    }

    fn generation(&self) -> Generation {
        self.core.generation()
    }

    fn is_stopped(&self) -> bool {
        self.core.status().state == ServerState::Stopped
    }

    fn poll_timeout(&self) -> Option<Millis> {
        [
            self.core.poll_timeout(),
            self.consumers.next_deadline(),
            self.front_end.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn on_init(&mut self, io: &Io<'_>, frame: Frame<InitRequest>, attached: Vec<OwnedFd>) {
        if let InitRequest::TeedEndpoint { teed_generation } = frame.body {
            let Some(endpoint) = single_endpoint(attached) else {
                io.to_init(&Frame {
                    header: frame.header.reply_to(self.core.generation()),
                    body: LifecycleInterface::bad_request(),
                });
                return;
            };
            tracing::info!(teed_generation, "teed endpoint replaced");
            self.teed = Some(endpoint);
        }
        self.core.handle_init(io.now(), &mut self.ram, frame);
        self.carry_out(io);
    }

    fn on_timeout(&mut self, io: &Io<'_>) {
        let now = io.now();
        if self.core.poll_timeout().is_some_and(|at| at <= now) {
            self.core.handle_timeout(now, &mut self.ram);
        }
        for consumer in self.consumers.expire(now) {
            self.core.consumer_gone(consumer);
        }
        self.front_end.on_timeout(now);
        self.take_front_end_inbound(io);
        self.carry_out(io);
    }

    fn register<'a>(&'a self, set: &mut PollSet<'a>) {
        if let Some(teed) = &self.teed {
            set.register(teed.as_fd(), TEED, tee_rt::event::Interest::READABLE);
        }
        self.consumers.register(set);
        self.front_end.register(set);
    }

    fn on_ready(&mut self, io: &Io<'_>, readiness: &Readiness) {
        match readiness.token {
            TEED => self.on_teed(io),
            token if self.front_end.owns(token) => {
                self.front_end.on_ready(io.now(), readiness);
                self.take_front_end_inbound(io);
            }
            token => match Consumers::classify(token) {
                Some(ConsumerToken::Listener(index)) => {
                    for evicted in self.consumers.accept(io.now(), index) {
                        self.core.consumer_gone(evicted);
                    }
                }
                Some(ConsumerToken::Connection(id)) => {
                    if readiness.writable {
                        self.flush_consumer(io, id);
                    }
                    if readiness.should_read() {
                        self.on_consumer(io, id);
                    }
                }
                None => {}
            },
        }
        self.carry_out(io);
    }
}

impl<S: TaService, F: FrontEnd<S::Interface>> ClientShell<S, F> {
    /// Takes one packet from the teed endpoint. poll(2) is level-triggered, so a packet still
    /// queued brings the next turn; an answer costs no second recvmsg that would only answer
    /// EAGAIN.
    fn on_teed(&mut self, io: &Io<'_>) {
        loop {
            let Some(teed) = &self.teed else {
                return;
            };
            let (len, fds) = match teed.recv(&mut self.rx) {
                Ok(Some(packet)) => packet,
                Ok(None) => {
                    // A new teed's endpoint comes with init's TeedEndpoint; until then requests
                    // are dropped and the core's deadlines answer them.
                    tracing::warn!("teed endpoint closed");
                    self.teed = None;
                    return;
                }
                Err(error) if error.is_would_block() => return,
                Err(error) => {
                    tracing::warn!(%error, "teed packet refused");
                    continue;
                }
            };
            if !fds.is_empty() {
                tracing::warn!(count = fds.len(), "attachments from teed closed");
            }
            match tee_proto::decode::<TeedResponse>(&self.rx[..len]) {
                Ok(frame) => {
                    self.core.handle_teed(io.now(), &mut self.ram, frame);
                    self.carry_out(io);
                }
                Err(error) => tracing::warn!(%error, "malformed frame from teed dropped"),
            }
            return;
        }
    }

    /// Reads what consumer `id` sent; the frame whose turn it is goes to the core, the rest
    /// wait their turn. The effects it causes are left to the caller's `carry_out`.
    fn on_consumer(&mut self, io: &Io<'_>, id: ConsumerId) {
        let received = self.consumers.receive(io.now(), id);
        for bytes in received.to_core {
            self.submit(io, id, bytes);
        }
        match received.ended {
            None => {}
            Some(Some(error)) => {
                tracing::warn!(consumer = id.0, %error, "consumer connection dropped");
                self.forget_consumer(id);
            }
            Some(None) => {
                tracing::debug!(consumer = id.0, "consumer disconnected");
                self.forget_consumer(id);
            }
        }
    }

    /// Hands a consumer's frame to the core; a frame the shell answers (or drops) itself ends
    /// the consumer's turn at once, and its next waiting frame follows.
    fn submit(&mut self, io: &Io<'_>, id: ConsumerId, bytes: Vec<u8>) {
        let mut next = Some(bytes);
        while let Some(bytes) = next.take() {
            match accept_request::<S::Interface>(&bytes, self.core.generation()) {
                Incoming::Request(frame) => {
                    self.core
                        .handle_consumer(io.now(), &mut self.ram, id, frame);
                }
                Incoming::Answer(answer) => next = self.answer_consumer(io, id, &answer),
                Incoming::Drop(error) => {
                    tracing::warn!(consumer = id.0, %error, "undecodable consumer frame dropped");
                    next = self.consumers.pass(io.now(), id);
                }
            }
        }
    }

    fn flush_consumer(&mut self, io: &Io<'_>, id: ConsumerId) {
        if let Err(error) = self.consumers.flush(io.now(), id) {
            tracing::warn!(consumer = id.0, %error, "consumer connection dropped");
            self.core.consumer_gone(id);
        }
    }

    fn forget_consumer(&mut self, id: ConsumerId) {
        self.consumers.remove(id);
        self.core.consumer_gone(id);
    }

    /// Sends an answer; returns the consumer's next frame whose turn came with it.
    fn answer_consumer(
        &mut self,
        io: &Io<'_>,
        id: ConsumerId,
        frame: &Frame<ResponseOf<S>>,
    ) -> Option<Vec<u8>> {
        let mut buf = [0u8; FRAME_MAX];
        let sent = match tee_proto::encode(frame, &mut buf) {
            Ok(encoded) => self.consumers.answer(io.now(), id, encoded),
            Err(error) => {
                tracing::error!(%error, "consumer answer could not be encoded");
                return self.consumers.pass(io.now(), id);
            }
        };
        match sent {
            Ok(next) => next,
            Err(error) => {
                tracing::warn!(consumer = id.0, %error, "consumer connection dropped");
                self.core.consumer_gone(id);
                None
            }
        }
    }

    /// Passes what the front-end decoded to the core. The effects it causes are left to the
    /// caller's `carry_out`.
    fn take_front_end_inbound(&mut self, io: &Io<'_>) {
        let FrontEndInbound { requests, gone } = self.front_end.take_inbound();
        for (consumer, frame) in requests {
            self.core
                .handle_consumer(io.now(), &mut self.ram, consumer, frame);
        }
        for consumer in gone {
            self.core.consumer_gone(consumer);
        }
    }

    /// Carries out everything the core asked for.
    fn carry_out(&mut self, io: &Io<'_>) {
        while let Some(effect) = self.core.poll() {
            match effect {
                Effect::ToTeed(frame) => match &self.teed {
                    Some(teed) => {
                        if let Err(error) = teed.send_frame(&frame, &[]) {
                            tracing::warn!(%error, "frame to teed dropped");
                        }
                    }
                    None => {
                        // teed is gone and no successor was linked (a restart in progress, or
                        // teed given up): fail what waits for it now rather than at a deadline.
                        tracing::warn!("no teed endpoint; frame to teed dropped");
                        self.core.teed_unreachable(io.now(), &mut self.ram);
                    }
                },
                Effect::ToInit(frame) => io.to_init(&frame),
                Effect::ToConsumer { consumer, frame }
                    if self.front_end.owns_consumer(consumer) =>
                {
                    self.front_end.answer(io.now(), consumer, &frame);
                    self.take_front_end_inbound(io);
                }
                Effect::ToConsumer { consumer, frame } => {
                    if let Some(next) = self.answer_consumer(io, consumer, &frame) {
                        self.submit(io, consumer, next);
                    }
                    // Its turn ended: frames it sent meanwhile may already be buffered.
                    self.on_consumer(io, consumer);
                }
            }
        }
    }
}
