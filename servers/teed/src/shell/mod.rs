//! teed's hosted shell: the adapter between the sans-IO core and the process world.
//!
//! * init's `Hello` brings `[SMC conduit (stream socket to the secure world), RAM file]`; each
//!   `ClientEndpoint` brings the teed side of one client incarnation's endpoint pair.
//! * Every `Effect::Smc` runs at once and synchronously on the conduit, behind the allow-list
//!   ([`gate`]), and its answer goes straight back into the core: one conduit, so SMCs stay
//!   in the order the core asked for them.
//! * The loop polls the lifecycle endpoint and the client endpoints with the core's next
//!   deadline as the timeout. A client endpoint that closes is a disconnected client.
//! * Endpoints are non-blocking: a frame a peer has no room for is dropped with a warning and
//!   left to that peer's deadlines, so teed never blocks on a client or on init.

mod clients;
mod gate;

use std::io;
use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::time::Duration;

use tee_proto::lifecycle::{InitRequest, RamWindow, ServerEvent, ServerKind};
use tee_proto::teed::TeedResponse;
use tee_proto::{
    accept_request, Frame, Incoming, Interface, LifecycleInterface, TeedInterface, FRAME_MAX,
};
use tee_rt::clock::Clock;
use tee_rt::conduit::UnixConduit;
use tee_rt::endpoint::{Endpoint, EndpointError};
use tee_rt::event::{Interest, PollSet, Token};
use tee_rt::logging::{error_chain, incarnation_span};
use tee_rt::ram::{RamError, RamFile};
use tee_rt::server::{await_hello, map_ram, refuse_hello, stream_socket, Exit};
use teed::{ClientId, Effect, Teed, TeedConfig};

use self::clients::{client_id, ClientEndpoints};
use self::gate::SmcGate;

const LIFECYCLE: Token = Token(0);

/// Bound on one conduit read or write. The secure world answers every SMC at once (a yielding
/// call comes back as an RPC), so silence this long means it is gone or wedged.
const CONDUIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why teed's shell could not go on.
#[derive(Debug, thiserror::Error)]
enum ShellError {
    #[error("lifecycle endpoint failed")]
    Lifecycle(#[source] EndpointError),
    #[error("Hello carried {got} attachments; expected conduit and ram")]
    Attachments { got: usize },
    #[error("conduit attachment unusable")]
    Conduit(#[source] io::Error),
    #[error("ram attachment unusable")]
    Ram(#[from] RamError),
    #[error("event wait failed")]
    Poll(#[source] io::Error),
}

/// Runs teed on the lifecycle endpoint init gave it.
pub fn run() -> ExitCode {
    let lifecycle = match tee_rt::spawn::lifecycle_from_env() {
        Ok(lifecycle) => lifecycle,
        Err(error) => {
            tracing::error!(error = %error_chain(&error), "no lifecycle endpoint");
            return ExitCode::FAILURE;
        }
    };
    match serve(lifecycle) {
        Ok(exit) => {
            tracing::info!(?exit, "exiting");
            exit.code()
        }
        Err(error) => {
            tracing::error!(error = %error_chain(&error), "teed failed");
            ExitCode::FAILURE
        }
    }
}

/// What teed's `Hello` carries, in order.
struct TeedAttachments {
    conduit: UnixConduit,
    ram: RamFile,
}

impl TeedAttachments {
    fn parse(fds: Vec<OwnedFd>) -> Result<TeedAttachments, ShellError> {
        let got = fds.len();
        let mut fds = fds.into_iter();
        let (Some(conduit), Some(ram)) = (fds.next(), fds.next()) else {
            return Err(ShellError::Attachments { got });
        };
        if fds.count() > 0 {
            tracing::warn!(got, "attachments beyond conduit and ram closed");
        }
        let stream = stream_socket(conduit).map_err(ShellError::Conduit)?;
        stream
            .set_read_timeout(Some(CONDUIT_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(CONDUIT_TIMEOUT)))
            .map_err(ShellError::Conduit)?;
        Ok(TeedAttachments {
            conduit: UnixConduit::from_stream(stream),
            ram: map_ram(ram)?,
        })
    }
}

fn serve(lifecycle: Endpoint) -> Result<Exit, ShellError> {
    let Some((hello, fds)) = await_hello(&lifecycle).map_err(ShellError::Lifecycle)? else {
        tracing::warn!("init closed the lifecycle endpoint before Hello");
        return Ok(Exit::InitGone);
    };
    let attachments = match TeedAttachments::parse(fds) {
        Ok(attachments) => attachments,
        Err(error) => {
            refuse_hello(&lifecycle, hello.header, &error).map_err(ShellError::Lifecycle)?;
            return Err(error);
        }
    };
    lifecycle
        .set_nonblocking(true)
        .map_err(|error| ShellError::Lifecycle(error.into()))?;
    let generation = match hello.body {
        InitRequest::Hello {
            generation,
            ram,
            journal,
            ..
        } => {
            warn_outside_ram(&attachments.ram, "frame window", ram);
            warn_outside_ram(&attachments.ram, "journal", journal);
            generation
        }
        _ => 0,
    };
    let span = incarnation_span(ServerKind::Teed, generation);
    let _entered = span.enter();
    let mut shell = TeedShell {
        core: Teed::new(TeedConfig::new(), attachments.ram),
        gate: SmcGate::new(attachments.conduit),
        clock: Clock::new(),
        lifecycle,
        clients: ClientEndpoints::default(),
    };
    let now = shell.clock.now();
    shell.core.handle_init(now, hello);
    shell.carry_out();
    loop {
        if let Some(exit) = shell.turn()? {
            tracing::info!(
                refused_smcs = shell.gate.refused(),
                conduit_broken = shell.gate.is_broken(),
                stats = ?shell.core.stats(),
                "incarnation ends"
            );
            return Ok(exit);
        }
    }
}

/// The core would find out page by page; say it once, up front.
fn warn_outside_ram(ram: &RamFile, what: &str, window: RamWindow) {
    use optee_abi::mem::PhysMem;
    if window.len > 0 && !ram.contains(window.base, window.len) {
        tracing::warn!(
            what,
            base = format_args!("{:#x}", window.base),
            len = window.len,
            "Hello names memory outside the RAM file"
        );
    }
}

/// The state of the running shell.
struct TeedShell {
    core: Teed<RamFile>,
    gate: SmcGate<UnixConduit>,
    clock: Clock,
    lifecycle: Endpoint,
    clients: ClientEndpoints,
}

impl TeedShell {
    /// One wait and everything it brought; `Some` when teed must exit.
    fn turn(&mut self) -> Result<Option<Exit>, ShellError> {
        let timeout = self.clock.until(self.core.poll_timeout());
        let ready = {
            let mut set = PollSet::new();
            set.register(self.lifecycle.as_fd(), LIFECYCLE, Interest::READABLE);
            self.clients.register(&mut set);
            set.wait(timeout).map_err(ShellError::Poll)?
        };
        for readiness in ready {
            if readiness.token == LIFECYCLE {
                if let Some(exit) = self.on_lifecycle()? {
                    return Ok(Some(exit));
                }
            } else if let Some(client) = ClientEndpoints::classify(readiness.token) {
                self.on_client(client);
            }
        }
        let now = self.clock.now();
        if self.core.poll_timeout().is_some_and(|at| at <= now) {
            self.core.handle_timeout(now);
            self.carry_out();
        }
        Ok(None)
    }

    /// Drains the lifecycle endpoint; `Some` once init closed it.
    fn on_lifecycle(&mut self) -> Result<Option<Exit>, ShellError> {
        let mut buf = vec![0u8; FRAME_MAX];
        loop {
            let (len, fds) = match self.lifecycle.recv(&mut buf) {
                Ok(Some(packet)) => packet,
                Ok(None) => {
                    if self.core.is_stopped() {
                        return Ok(Some(Exit::Clean));
                    }
                    tracing::warn!("init closed the lifecycle endpoint");
                    return Ok(Some(Exit::InitGone));
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
            match accept_request::<LifecycleInterface>(&buf[..len], self.core.generation()) {
                Incoming::Request(frame) => self.on_init_request(frame, fds),
                Incoming::Answer(answer) => self.send_init(&answer),
                Incoming::Drop(error) => {
                    tracing::warn!(%error, "undecodable lifecycle packet dropped");
                }
            }
        }
    }

    fn on_init_request(&mut self, frame: Frame<InitRequest>, mut fds: Vec<OwnedFd>) {
        if let InitRequest::ClientEndpoint { client, generation } = frame.body {
            let id = client_id(client, generation);
            let (Some(id), 1) = (id, fds.len()) else {
                tracing::warn!(
                    ?client,
                    generation,
                    attachments = fds.len(),
                    "ClientEndpoint refused"
                );
                self.send_init(&Frame {
                    header: frame.header.reply_to(self.core.generation()),
                    body: LifecycleInterface::bad_request(),
                });
                return;
            };
            let endpoint = Endpoint::from_fd(fds.remove(0));
            if let Err(error) = endpoint.set_nonblocking(true) {
                tracing::warn!(%error, "client endpoint unusable");
                return;
            }
            if self.clients.insert(id, endpoint).is_some() {
                tracing::warn!(client = id, "client endpoint replaced");
            }
            tracing::info!(
                ?client,
                generation,
                client_id = id,
                clients = self.clients.len(),
                "client connected"
            );
            self.core.connect_client(id, client);
        } else if !fds.is_empty() {
            tracing::warn!(count = fds.len(), "unexpected attachments closed");
        }
        let now = self.clock.now();
        self.core.handle_init(now, frame);
        self.carry_out();
    }

    /// Drains one client endpoint.
    fn on_client(&mut self, client: ClientId) {
        let mut buf = vec![0u8; FRAME_MAX];
        loop {
            let Some(endpoint) = self.clients.get(client) else {
                return;
            };
            let (len, fds) = match endpoint.recv(&mut buf) {
                Ok(Some(packet)) => packet,
                Ok(None) => {
                    tracing::info!(client, "client endpoint closed");
                    self.clients.remove(client);
                    let now = self.clock.now();
                    self.core.client_disconnected(now, client);
                    self.carry_out();
                    return;
                }
                Err(error) if error.is_would_block() => return,
                Err(error) => {
                    tracing::warn!(client, %error, "client packet refused");
                    continue;
                }
            };
            if !fds.is_empty() {
                tracing::warn!(
                    client,
                    count = fds.len(),
                    "attachments from a client closed"
                );
            }
            match accept_request::<TeedInterface>(&buf[..len], self.core.generation()) {
                Incoming::Request(frame) => {
                    let now = self.clock.now();
                    self.core.handle_client(now, client, frame);
                    self.carry_out();
                }
                Incoming::Answer(answer) => self.reply(client, &answer),
                Incoming::Drop(error) => {
                    tracing::warn!(client, %error, "undecodable client packet dropped");
                }
            }
        }
    }

    fn reply(&self, client: ClientId, frame: &Frame<TeedResponse>) {
        let Some(endpoint) = self.clients.get(client) else {
            tracing::debug!(client, "reply for a client that left dropped");
            return;
        };
        if let Err(error) = endpoint.send_frame(frame, &[]) {
            tracing::warn!(client, %error, "reply dropped");
        }
    }

    fn send_init(&self, frame: &Frame<ServerEvent>) {
        if let Err(error) = self.lifecycle.send_frame(frame, &[]) {
            tracing::warn!(%error, "frame to init dropped");
        }
    }

    /// Carries out everything the core asked for; SMCs run at once, in order.
    fn carry_out(&mut self) {
        while let Some(effect) = self.core.poll() {
            match effect {
                Effect::Smc { token, regs } => {
                    let answer = self.gate.call(regs);
                    let now = self.clock.now();
                    // The core hears of a lost conduit before the refusal, so it can tell an
                    // unreachable secure world from an incompatible one.
                    if self.gate.is_broken() {
                        self.core.conduit_failed(now);
                    }
                    self.core.handle_smc_return(now, token, answer);
                }
                Effect::Reply { client, frame } => self.reply(client, &frame),
                Effect::ToInit(frame) => self.send_init(&frame),
            }
        }
    }
}
