//! The hosted shell of a TEE client server (tpmd, bnxtd): the same event loop drives any
//! [`crate::engine::Client`], whatever trusted application it fronts.
//!
//! Process model: init's `Hello` brings `[teed endpoint, RAM file, consumer listener, ...]`.
//! The shell maps the RAM, then polls the lifecycle endpoint, the teed endpoint, the listeners
//! and every consumer connection, with the core's next deadline as the timeout; after every
//! input it carries out what the core asks. `TeedEndpoint` swaps the teed endpoint. The shell
//! exits when init closes the lifecycle endpoint: cleanly after an acknowledged shutdown,
//! otherwise because init is gone.
//!
//! Every endpoint is non-blocking once serving: a frame that cannot be sent at once (a peer
//! that stopped reading) is dropped with a warning and left to the receiver's deadlines, so
//! the shell never blocks on a peer.

pub mod consumers;
pub mod front_end;

use std::io;
use std::os::fd::OwnedFd;
use std::process::ExitCode;

use crate::engine::{Client, Effect, ResponseOf, TaService};
use crate::{ClientConfig, ConsumerId};
use tee_proto::lifecycle::{InitRequest, ServerState};
use tee_proto::teed::TeedResponse;
use tee_proto::{accept_request, Frame, Incoming, Interface, LifecycleInterface, FRAME_MAX};

use self::consumers::{ConsumerToken, Consumers, Listener, ListenerKind};
use self::front_end::{FrontEnd, FrontEndInbound, NoFrontEnd};
use tee_rt::clock::Clock;
use tee_rt::endpoint::{Endpoint, EndpointError};
use tee_rt::event::{Interest, PollSet, Token};
use tee_rt::logging::error_chain;
use tee_rt::ram::{RamError, RamFile};
use tee_rt::server::{await_hello, map_ram, refuse_hello, Exit};

const LIFECYCLE: Token = Token(0);
const TEED: Token = Token(1);

/// Why a shell could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    /// The lifecycle endpoint failed.
    #[error("lifecycle endpoint failed")]
    Lifecycle(#[source] EndpointError),
    /// `Hello` came with the wrong attachments.
    #[error("Hello carried {got} attachments; expected {expected}")]
    Attachments { expected: &'static str, got: usize },
    /// The RAM attachment could not be mapped.
    #[error("ram attachment unusable")]
    Ram(#[from] RamError),
    /// An endpoint or listener attachment could not be set up.
    #[error("attachment unusable")]
    Attachment(#[source] io::Error),
    /// Waiting for events failed.
    #[error("event wait failed")]
    Poll(#[source] io::Error),
}

/// What a client's `Hello` carries, in order.
struct ClientAttachments {
    teed: Endpoint,
    ram: RamFile,
    listeners: Vec<Listener>,
    /// Listener attachments after the native one, for the front-end.
    extra: Vec<OwnedFd>,
}

impl ClientAttachments {
    const EXPECTED: &'static str = "teed endpoint, ram, consumer listener";

    /// The first listener speaks native frames; a later front-end (tpmd's swtpm socket
    /// protocol) will take the next one. Attachments nobody serves yet are closed.
    fn parse(fds: Vec<OwnedFd>) -> Result<ClientAttachments, ShellError> {
        let got = fds.len();
        let mut fds = fds.into_iter();
        let (Some(teed), Some(ram), Some(native)) = (fds.next(), fds.next(), fds.next()) else {
            return Err(ShellError::Attachments {
                expected: Self::EXPECTED,
                got,
            });
        };
        let extra: Vec<OwnedFd> = fds.collect();
        let teed = Endpoint::from_fd(teed);
        teed.set_nonblocking(true).map_err(ShellError::Attachment)?;
        let native =
            Listener::from_fd(ListenerKind::Native, native).map_err(ShellError::Attachment)?;
        Ok(ClientAttachments {
            teed,
            ram: map_ram(ram)?,
            listeners: vec![native],
            extra,
        })
    }
}

/// A client server's whole life after logging is set up: takes the lifecycle endpoint from the
/// environment, serves until init closes it, and turns the outcome into the exit status.
pub fn main<S>(config: ClientConfig) -> ExitCode
where
    S: TaService + Default,
{
    main_with::<S, NoFrontEnd>(config, NoFrontEnd::from_attachments)
}

/// [`main`] with a consumer front-end built from the listener attachments after the native one.
pub fn main_with<S, F>(
    config: ClientConfig,
    front_end: impl FnOnce(Vec<OwnedFd>) -> io::Result<F>,
) -> ExitCode
where
    S: TaService + Default,
    F: FrontEnd<S::Interface>,
{
    let lifecycle = match tee_rt::spawn::lifecycle_from_env() {
        Ok(lifecycle) => lifecycle,
        Err(error) => {
            tracing::error!(error = %error_chain(&error), "no lifecycle endpoint");
            return ExitCode::FAILURE;
        }
    };
    match run_with::<S, F>(config, lifecycle, front_end) {
        Ok(exit) => exit.code(),
        Err(error) => {
            tracing::error!(error = %error_chain(&error), "server failed");
            ExitCode::FAILURE
        }
    }
}

/// Runs a client server of service `S` on the lifecycle endpoint init gave it, until init
/// closes that endpoint.
pub fn run<S>(config: ClientConfig, lifecycle: Endpoint) -> Result<Exit, ShellError>
where
    S: TaService + Default,
{
    run_with::<S, NoFrontEnd>(config, lifecycle, NoFrontEnd::from_attachments)
}

/// [`run`] with a consumer front-end built from the listener attachments after the native one.
pub fn run_with<S, F>(
    config: ClientConfig,
    lifecycle: Endpoint,
    front_end: impl FnOnce(Vec<OwnedFd>) -> io::Result<F>,
) -> Result<Exit, ShellError>
where
    S: TaService + Default,
    F: FrontEnd<S::Interface>,
{
    let Some((hello, fds)) = await_hello(&lifecycle).map_err(ShellError::Lifecycle)? else {
        tracing::warn!("init closed the lifecycle endpoint before Hello");
        return Ok(Exit::InitGone);
    };
    let parsed = ClientAttachments::parse(fds).and_then(|mut attachments| {
        let extra = std::mem::take(&mut attachments.extra);
        let front_end = front_end(extra).map_err(ShellError::Attachment)?;
        Ok((attachments, front_end))
    });
    let attachments = match parsed {
        Ok(parsed) => parsed,
        Err(error) => {
            refuse_hello(&lifecycle, hello.header, &error).map_err(ShellError::Lifecycle)?;
            return Err(error);
        }
    };
    lifecycle
        .set_nonblocking(true)
        .map_err(ShellError::Attachment)?;
    let generation = match hello.body {
        InitRequest::Hello { generation, .. } => generation,
        _ => 0,
    };
    let span = tee_rt::logging::incarnation_span(S::KIND, generation);
    let _entered = span.enter();
    let (attachments, front_end) = attachments;
    let mut shell = ClientShell::<S, F> {
        core: Client::new(config),
        ram: attachments.ram,
        clock: Clock::new(),
        lifecycle,
        teed: Some(attachments.teed),
        consumers: Consumers::new(attachments.listeners),
        front_end,
    };
    let now = shell.clock.now();
    shell.core.handle_init(now, &mut shell.ram, hello);
    shell.carry_out();
    loop {
        if let Some(exit) = shell.turn()? {
            tracing::info!(?exit, "exiting");
            return Ok(exit);
        }
    }
}

/// The state of a running client shell.
struct ClientShell<S: TaService, F> {
    core: Client<S>,
    ram: RamFile,
    clock: Clock,
    lifecycle: Endpoint,
    teed: Option<Endpoint>,
    consumers: Consumers,
    front_end: F,
}

impl<S: TaService, F: FrontEnd<S::Interface>> ClientShell<S, F> {
    /// One wait and everything it brought; `Some` when the shell must exit.
    fn turn(&mut self) -> Result<Option<Exit>, ShellError> {
        let timeout = self.clock.until(self.core.poll_timeout());
        let ready = {
            let mut set = PollSet::new();
            set.register(self.lifecycle.as_fd(), LIFECYCLE, Interest::READABLE);
            if let Some(teed) = &self.teed {
                set.register(teed.as_fd(), TEED, Interest::READABLE);
            }
            self.consumers.register(&mut set);
            self.front_end.register(&mut set);
            set.wait(timeout).map_err(ShellError::Poll)?
        };
        for readiness in ready {
            match readiness.token {
                LIFECYCLE => {
                    if let Some(exit) = self.on_lifecycle()? {
                        return Ok(Some(exit));
                    }
                }
                TEED => self.on_teed(),
                token if self.front_end.owns(token) => {
                    self.front_end.on_ready(&readiness);
                    self.take_front_end_inbound();
                }
                token => match Consumers::classify(token) {
                    Some(ConsumerToken::Listener(index)) => self.consumers.accept(index),
                    Some(ConsumerToken::Connection(id)) => {
                        if readiness.writable {
                            self.flush_consumer(id);
                        }
                        if readiness.should_read() {
                            self.on_consumer(id);
                        }
                    }
                    None => {}
                },
            }
            self.carry_out();
        }
        let now = self.clock.now();
        if self.core.poll_timeout().is_some_and(|at| at <= now) {
            self.core.handle_timeout(now, &mut self.ram);
            self.carry_out();
        }
        Ok(None)
    }

    /// Drains the lifecycle endpoint; `Some` once init closed it.
    fn on_lifecycle(&mut self) -> Result<Option<Exit>, ShellError> {
        let mut buf = vec![0u8; FRAME_MAX];
        loop {
            let (len, mut fds) = match self.lifecycle.recv(&mut buf) {
                Ok(Some(packet)) => packet,
                Ok(None) => {
                    let exit = if self.core.status().state == ServerState::Stopped {
                        Exit::Clean
                    } else {
                        tracing::warn!("init closed the lifecycle endpoint");
                        Exit::InitGone
                    };
                    return Ok(Some(exit));
                }
                Err(error) if error.is_would_block() => return Ok(None),
                Err(
                    error @ (EndpointError::Truncated { .. } | EndpointError::TooManyFds { .. }),
                ) => {
                    tracing::warn!(%error, "lifecycle packet refused");
                    continue;
                }
                Err(error) => return Err(ShellError::Lifecycle(error)),
            };
            let frame =
                match accept_request::<LifecycleInterface>(&buf[..len], self.core.generation()) {
                    Incoming::Request(frame) => frame,
                    Incoming::Answer(answer) => {
                        self.send_init(&answer);
                        continue;
                    }
                    Incoming::Drop(error) => {
                        tracing::warn!(%error, "undecodable lifecycle packet dropped");
                        continue;
                    }
                };
            if let InitRequest::TeedEndpoint { teed_generation } = frame.body {
                if fds.len() != 1 {
                    tracing::warn!(got = fds.len(), "TeedEndpoint without exactly one endpoint");
                    self.send_init(&Frame {
                        header: frame.header.reply_to(self.core.generation()),
                        body: LifecycleInterface::bad_request(),
                    });
                    continue;
                }
                let endpoint = Endpoint::from_fd(fds.remove(0));
                endpoint
                    .set_nonblocking(true)
                    .map_err(ShellError::Attachment)?;
                tracing::info!(teed_generation, "teed endpoint replaced");
                self.teed = Some(endpoint);
            } else if !fds.is_empty() {
                tracing::warn!(count = fds.len(), "unexpected attachments closed");
            }
            let now = self.clock.now();
            self.core.handle_init(now, &mut self.ram, frame);
            self.carry_out();
        }
    }

    /// Drains the teed endpoint.
    fn on_teed(&mut self) {
        let mut buf = vec![0u8; FRAME_MAX];
        loop {
            let Some(teed) = &self.teed else {
                return;
            };
            let (len, fds) = match teed.recv(&mut buf) {
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
            match tee_proto::decode::<TeedResponse>(&buf[..len]) {
                Ok(frame) => {
                    let now = self.clock.now();
                    self.core.handle_teed(now, &mut self.ram, frame);
                    self.carry_out();
                }
                Err(error) => tracing::warn!(%error, "malformed frame from teed dropped"),
            }
        }
    }

    /// Reads what consumer `id` sent and hands every whole frame to the core.
    fn on_consumer(&mut self, id: ConsumerId) {
        let Some(connection) = self.consumers.connection(id) else {
            return;
        };
        let mut frames = Vec::new();
        let mut failed = connection.fill().err();
        while failed.is_none() {
            match connection.next_frame() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(error) => failed = Some(error),
            }
        }
        let closed = connection.is_peer_closed();
        for bytes in frames {
            match accept_request::<S::Interface>(&bytes, self.core.generation()) {
                Incoming::Request(frame) => {
                    let now = self.clock.now();
                    self.core.handle_consumer(now, &mut self.ram, id, frame);
                }
                Incoming::Answer(answer) => self.answer_consumer(id, &answer),
                Incoming::Drop(error) => {
                    tracing::warn!(consumer = id.0, %error, "undecodable consumer frame dropped");
                }
            }
            self.carry_out();
        }
        if let Some(error) = failed {
            tracing::warn!(consumer = id.0, %error, "consumer connection dropped");
            self.forget_consumer(id);
        } else if closed {
            tracing::debug!(consumer = id.0, "consumer disconnected");
            self.forget_consumer(id);
        }
    }

    fn flush_consumer(&mut self, id: ConsumerId) {
        let Some(connection) = self.consumers.connection(id) else {
            return;
        };
        if let Err(error) = connection.flush() {
            tracing::warn!(consumer = id.0, %error, "consumer connection dropped");
            self.forget_consumer(id);
        }
    }

    fn forget_consumer(&mut self, id: ConsumerId) {
        self.consumers.remove(id);
        self.core.consumer_gone(id);
    }

    fn answer_consumer(&mut self, id: ConsumerId, frame: &Frame<ResponseOf<S>>) {
        let mut buf = [0u8; FRAME_MAX];
        let sent = match tee_proto::encode(frame, &mut buf) {
            Ok(encoded) => self.consumers.answer(id, encoded),
            Err(error) => {
                tracing::error!(%error, "consumer answer could not be encoded");
                return;
            }
        };
        if let Err(error) = sent {
            tracing::warn!(consumer = id.0, %error, "consumer connection dropped");
            self.core.consumer_gone(id);
        }
    }

    fn send_init(&self, frame: &Frame<tee_proto::lifecycle::ServerEvent>) {
        if let Err(error) = self.lifecycle.send_frame(frame, &[]) {
            tracing::warn!(%error, "frame to init dropped");
        }
    }

    /// Passes what the front-end decoded to the core. The effects it causes are left to the
    /// caller's `carry_out`.
    fn take_front_end_inbound(&mut self) {
        let FrontEndInbound { requests, gone } = self.front_end.take_inbound();
        for (consumer, frame) in requests {
            let now = self.clock.now();
            self.core
                .handle_consumer(now, &mut self.ram, consumer, frame);
        }
        for consumer in gone {
            self.core.consumer_gone(consumer);
        }
    }

    /// Carries out everything the core asked for.
    fn carry_out(&mut self) {
        while let Some(effect) = self.core.poll() {
            match effect {
                Effect::ToTeed(frame) => match &self.teed {
                    Some(teed) => {
                        if let Err(error) = teed.send_frame(&frame, &[]) {
                            tracing::warn!(%error, "frame to teed dropped");
                        }
                    }
                    None => tracing::warn!("no teed endpoint; frame to teed dropped"),
                },
                Effect::ToInit(frame) => self.send_init(&frame),
                Effect::ToConsumer { consumer, frame }
                    if self.front_end.owns_consumer(consumer) =>
                {
                    self.front_end.answer(consumer, &frame);
                    self.take_front_end_inbound();
                }
                Effect::ToConsumer { consumer, frame } => self.answer_consumer(consumer, &frame),
            }
        }
    }
}
