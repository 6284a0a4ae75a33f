//! The one hosted serve loop. Every server process (teed, tpmd, bnxtd) runs it around its own
//! [`Handler`]: the loop owns init's lifecycle endpoint, the wait for `Hello` and its typed
//! grants, the clock, `poll(2)` with the core's next deadline, and the exit rules; a handler
//! owns its core and its other endpoints and says what a request, a ready descriptor or a due
//! deadline does.
//!
//! The loop never blocks on a peer: init's endpoint is non-blocking once `Hello` is in, and a
//! handler's endpoints are its own business (they are non-blocking in every shell). A server
//! ends when init closes the lifecycle endpoint: [`Exit::Clean`] after an acknowledged
//! shutdown, [`Exit::InitGone`] otherwise.

use std::io;
use std::os::fd::OwnedFd;
use std::process::ExitCode;

use tee_proto::grants::{GrantError, Grants};
use tee_proto::lifecycle::{InitRequest, ServerEvent, ServerKind};
use tee_proto::{accept_request, Frame, Generation, Incoming, LifecycleInterface, FRAME_MAX};

use crate::clock::{Clock, Millis};
use crate::endpoint::{Endpoint, EndpointError};
use crate::event::{Interest, PollSet, Readiness, Token};
use crate::logging::{error_chain, incarnation_span};
use crate::ram::RamError;
use crate::server::{await_hello, refuse_hello, Exit};

/// The lifecycle endpoint's token; a handler's tokens are any others.
pub const LIFECYCLE: Token = Token(0);

/// Why a server could not take what its `Hello` granted.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The handles do not make the set this server needs.
    #[error("grants refused")]
    Grants(#[from] GrantError),
    /// The RAM grant could not be mapped.
    #[error("ram grant unusable")]
    Ram(#[from] RamError),
    /// Another grant could not be set up.
    #[error("{what} grant unusable")]
    Grant {
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

impl StartError {
    /// A grant named `what` failed with `source`.
    pub fn grant(what: &'static str) -> impl FnOnce(io::Error) -> StartError {
        move |source| StartError::Grant { what, source }
    }
}

/// Why a server's loop could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("lifecycle endpoint failed")]
    Lifecycle(#[source] EndpointError),
    #[error("could not start")]
    Start(#[source] StartError),
    #[error("event wait failed")]
    Poll(#[source] io::Error),
}

/// What a handler may do while it handles something: read the clock, talk to init.
pub struct Io<'a> {
    clock: &'a Clock,
    lifecycle: &'a Endpoint,
}

impl Io<'_> {
    /// Milliseconds since the shell started.
    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    /// Sends a frame to init; one init cannot take at once is dropped and left to init's
    /// deadlines.
    pub fn to_init(&self, frame: &Frame<ServerEvent>) {
        if let Err(error) = self.lifecycle.send_frame(frame, &[]) {
            tracing::warn!(%error, "frame to init dropped");
        }
    }
}

/// The per-server part of a hosted process: a core and the endpoints only it serves.
pub trait Handler: Sized {
    /// Names the incarnation's log span.
    const KIND: ServerKind;
    /// What the handler is built with besides its grants.
    type Config;
    /// What init grants this server with `Hello`.
    type Grants: Grants<OwnedFd>;

    /// Builds the handler from its grants; an error refuses `Hello`. `Hello` itself comes next,
    /// through [`Handler::on_init`].
    fn start(
        config: Self::Config,
        hello: &Frame<InitRequest>,
        grants: Self::Grants,
    ) -> Result<Self, StartError>;
    /// The core's generation, against which stale frames from init are screened.
    fn generation(&self) -> Generation;
    /// True once the core acknowledged a shutdown: init closing the endpoint is then clean.
    fn is_stopped(&self) -> bool;
    /// When [`Handler::on_timeout`] is next due.
    fn poll_timeout(&self) -> Option<Millis>;
    /// A request from init, `Hello` first, with the endpoint an endpoint-carrying request
    /// (`ClientEndpoint`, `TeedEndpoint`) brought.
    fn on_init(&mut self, io: &Io<'_>, frame: Frame<InitRequest>, attached: Vec<OwnedFd>);
    /// The deadline from [`Handler::poll_timeout`] has come.
    fn on_timeout(&mut self, io: &Io<'_>);
    /// Registers the handler's descriptors for this turn (any token but [`LIFECYCLE`]).
    fn register<'a>(&'a self, set: &mut PollSet<'a>);
    /// One of its descriptors is ready.
    fn on_ready(&mut self, io: &Io<'_>, readiness: &Readiness);
    /// Logs what the incarnation leaves behind when it ends.
    fn farewell(&self) {}
}

/// A server's whole life after logging is set up: the lifecycle endpoint from the environment,
/// the loop until init closes it, and the exit status.
pub fn main<H: Handler>(config: H::Config) -> ExitCode {
    let lifecycle = match crate::spawn::lifecycle_from_env() {
        Ok(lifecycle) => lifecycle,
        Err(error) => {
            tracing::error!(error = %error_chain(&error), "no lifecycle endpoint");
            return ExitCode::FAILURE;
        }
    };
    match serve::<H>(config, lifecycle) {
        Ok(exit) => exit.code(),
        Err(error) => {
            tracing::error!(error = %error_chain(&error), "server failed");
            ExitCode::FAILURE
        }
    }
}

/// Runs a server on the lifecycle endpoint init gave it, until init closes that endpoint.
pub fn serve<H: Handler>(config: H::Config, lifecycle: Endpoint) -> Result<Exit, ServeError> {
    let Some((hello, fds)) = await_hello(&lifecycle).map_err(ServeError::Lifecycle)? else {
        tracing::warn!("init closed the lifecycle endpoint before Hello");
        return Ok(Exit::InitGone);
    };
    let (generation, kinds) = match hello.body {
        InitRequest::Hello {
            generation, grants, ..
        } => (generation, grants),
        // await_hello returns nothing else.
        _ => (0, Default::default()),
    };
    let started = H::Grants::from_parts(&kinds, fds)
        .map_err(StartError::from)
        .and_then(|grants| H::start(config, &hello, grants));
    // In the QEMU guest a server that opened /dev/mem for its window gives up root now that
    // its grants are taken (crate::physmem); hosted, nothing changes.
    let started = started.and_then(|handler| {
        crate::physmem::drop_privilege(H::KIND)
            .map(|_| handler)
            .map_err(StartError::grant("privilege drop"))
    });
    let mut handler = match started {
        Ok(handler) => handler,
        Err(error) => {
            refuse_hello(&lifecycle, hello.header, &error).map_err(ServeError::Lifecycle)?;
            return Err(ServeError::Start(error));
        }
    };
    lifecycle
        .set_nonblocking(true)
        .map_err(|error| ServeError::Lifecycle(error.into()))?;
    let span = incarnation_span(H::KIND, generation);
    let _entered = span.enter();
    let clock = Clock::new();
    let io = Io {
        clock: &clock,
        lifecycle: &lifecycle,
    };
    handler.on_init(&io, hello, Vec::new());
    loop {
        if let Some(exit) = turn(&mut handler, &io)? {
            handler.farewell();
            tracing::info!(?exit, "exiting");
            return Ok(exit);
        }
    }
}

/// One wait and everything it brought; `Some` when the server must exit.
fn turn<H: Handler>(handler: &mut H, io: &Io<'_>) -> Result<Option<Exit>, ServeError> {
    let timeout = io.clock.until(handler.poll_timeout());
    let ready = {
        let mut set = PollSet::new();
        set.register(io.lifecycle.as_fd(), LIFECYCLE, Interest::READABLE);
        handler.register(&mut set);
        set.wait(timeout).map_err(ServeError::Poll)?
    };
    for readiness in ready {
        if readiness.token == LIFECYCLE {
            if let Some(exit) = drain_lifecycle(handler, io)? {
                return Ok(Some(exit));
            }
        } else {
            handler.on_ready(io, &readiness);
        }
    }
    if handler.poll_timeout().is_some_and(|at| at <= io.now()) {
        handler.on_timeout(io);
    }
    Ok(None)
}

/// Drains the lifecycle endpoint; `Some` once init closed it.
fn drain_lifecycle<H: Handler>(handler: &mut H, io: &Io<'_>) -> Result<Option<Exit>, ServeError> {
    let mut buf = vec![0u8; FRAME_MAX];
    loop {
        let (len, fds) = match io.lifecycle.recv(&mut buf) {
            Ok(Some(packet)) => packet,
            Ok(None) => {
                if handler.is_stopped() {
                    return Ok(Some(Exit::Clean));
                }
                tracing::warn!("init closed the lifecycle endpoint");
                return Ok(Some(Exit::InitGone));
            }
            Err(error) if error.is_would_block() => return Ok(None),
            Err(error @ (EndpointError::Truncated { .. } | EndpointError::TooManyFds { .. })) => {
                tracing::warn!(%error, "lifecycle packet refused");
                continue;
            }
            Err(error) => return Err(ServeError::Lifecycle(error)),
        };
        match accept_request::<LifecycleInterface>(&buf[..len], handler.generation()) {
            Incoming::Request(frame) => {
                let carries_endpoint = matches!(
                    frame.body,
                    InitRequest::ClientEndpoint { .. } | InitRequest::TeedEndpoint { .. }
                );
                let attached = if carries_endpoint {
                    fds
                } else {
                    if !fds.is_empty() {
                        tracing::warn!(count = fds.len(), "unexpected attachments closed");
                    }
                    Vec::new()
                };
                handler.on_init(io, frame, attached);
            }
            Incoming::Answer(answer) => io.to_init(&answer),
            Incoming::Drop(error) => tracing::warn!(%error, "undecodable lifecycle packet dropped"),
        }
    }
}

/// Takes the one endpoint an endpoint-carrying request brought, non-blocking; `None` (with the
/// reason logged) when it brought none, several, or one that cannot be made non-blocking.
pub fn single_endpoint(mut attached: Vec<OwnedFd>) -> Option<Endpoint> {
    if attached.len() != 1 {
        tracing::warn!(got = attached.len(), "expected exactly one endpoint");
        return None;
    }
    let endpoint = Endpoint::from_fd(attached.remove(0));
    match endpoint.set_nonblocking(true) {
        Ok(()) => Some(endpoint),
        Err(error) => {
            tracing::warn!(%error, "endpoint unusable");
            None
        }
    }
}
