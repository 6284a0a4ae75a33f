//! The event loop of a teesys daemon on Redox, one thread: the scheme socket (non-blocking),
//! a monotonic timer armed at the adapter's next deadline, and the daemon's own descriptors
//! (a client's handle on teed's scheme), all in one event queue.
//!
//! A read that finds nothing yet on a handle opened without `O_NONBLOCK` is parked and answered
//! once the adapter has something (after any later event), so a consumer may simply block in
//! `read`; a cancelled or closed request is answered `EINTR` or `EBADF`. Readiness goes to init
//! once the adapter's start-up settled; handles that became readable get `fevent` posts.

use std::process::ExitCode;
use std::time::Instant;

use event::{EventFlags, RawEventQueue};
use libredox::flag;
use libredox::Fd;
use redox_scheme::scheme::IntoTag;
use redox_scheme::scheme::{Op, SchemeResponse, SchemeState};
use redox_scheme::{CallerCtx, RequestKind, Response, SignalBehavior, Socket};
use syscall::data::TimeSpec;
use syscall::error::{Error, EAGAIN, EBADF, EINTR, ENOSYS, EWOULDBLOCK};

use super::shim::Shim;
use super::{failed, notify_ready, StartError};
use crate::adapter::{SchemeAdapter, Startup};
use crate::Millis;

const SOCKET: usize = 0;
const TIMER: usize = 1;
/// Tokens of a daemon's own descriptors start here.
const SOURCES: usize = 2;

/// A daemon as the loop drives it: its adapter and its own descriptors.
pub trait Daemon {
    type Adapter: SchemeAdapter;

    fn adapter(&mut self) -> &mut Self::Adapter;

    /// Descriptors to watch besides the socket and the timer.
    fn sources(&self) -> Vec<usize>;

    /// Source `index` (into [`Daemon::sources`]) is readable. `Err` ends the daemon with it.
    fn on_source(&mut self, index: usize) -> Result<(), ExitCode>;

    /// After each turn: send what the adapter queued for the daemon's peers.
    fn after_turn(&mut self) -> Result<(), ExitCode>;
}

/// The event queue, the timer and the clock, opened before the daemon enters the null
/// namespace.
pub struct Runtime {
    queue: RawEventQueue,
    timer: Fd,
    start: Instant,
}

impl Runtime {
    pub fn open() -> Result<Runtime, StartError> {
        let queue = RawEventQueue::new().map_err(failed("create the event queue"))?;
        let timer = Fd::open(
            &format!("/scheme/time/{}", flag::CLOCK_MONOTONIC),
            flag::O_RDWR | flag::O_CLOEXEC,
            0,
        )
        .map_err(failed("open the monotonic timer"))?;
        Ok(Runtime {
            queue,
            timer,
            start: Instant::now(),
        })
    }

    /// Milliseconds since the runtime opened.
    pub fn now(&self) -> Millis {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Fires the timer `in_ms` from now (Redox's timer: write the absolute monotonic time).
    fn arm(&self, in_ms: Millis) -> Result<(), Error> {
        let mut now = TimeSpec::default();
        libredox::call::read(self.timer.raw(), &mut now)?;
        let at = TimeSpec::from_nanos(now.to_nanos() + u128::from(in_ms) * 1_000_000);
        libredox::call::write(self.timer.raw(), &at)?;
        Ok(())
    }

    /// Serves `daemon` on `socket` until the scheme is unmounted (0) or the daemon gives up.
    pub fn serve<D: Daemon>(&self, daemon: &mut D, socket: &Socket) -> ExitCode {
        match self.run(daemon, socket) {
            Ok(code) => code,
            Err(error) => {
                tracing::error!(%error, "event loop failed");
                ExitCode::FAILURE
            }
        }
    }

    fn run<D: Daemon>(&self, daemon: &mut D, socket: &Socket) -> Result<ExitCode, Error> {
        let read = EventFlags::READ;
        queued(self.queue.subscribe(socket.inner().raw(), SOCKET, read))?;
        queued(self.queue.subscribe(self.timer.raw(), TIMER, read))?;
        for (index, fd) in daemon.sources().into_iter().enumerate() {
            queued(self.queue.subscribe(fd, SOURCES + index, read))?;
        }
        let mut state = SchemeState::new();
        let mut parked: Vec<(Op, CallerCtx)> = Vec::new();
        let mut notified = false;
        loop {
            daemon.adapter().advance(self.now());
            loop {
                let request = match socket.next_request(SignalBehavior::Restart) {
                    Ok(Some(request)) => request,
                    Ok(None) => {
                        tracing::info!("scheme unmounted");
                        return Ok(ExitCode::SUCCESS);
                    }
                    Err(error) if matches!(error.errno, EAGAIN | EWOULDBLOCK) => break,
                    Err(error) => return Err(error),
                };
                match request.kind() {
                    RequestKind::Call(call) => {
                        let caller = call.caller();
                        let mut op = match call.op() {
                            Ok(op) => op,
                            Err(call) => {
                                socket.write_response(
                                    Response::new(Err(Error::new(ENOSYS)), call),
                                    SignalBehavior::Restart,
                                )?;
                                continue;
                            }
                        };
                        let mut shim = Shim::new(daemon.adapter());
                        let answer = op.handle_sync_dont_consume(&caller, &mut shim, &mut state);
                        if would_block(&answer) && !op.is_explicitly_nonblock() {
                            parked.push((op, caller));
                        } else {
                            respond(socket, op, answer)?;
                        }
                    }
                    RequestKind::Cancellation(cancel) => {
                        if let Some(at) = parked.iter().position(|(op, _)| op.req_id() == cancel.id)
                        {
                            let (op, _) = parked.remove(at);
                            respond(socket, op, SchemeResponse::Regular(Err(Error::new(EINTR))))?;
                        }
                    }
                    RequestKind::OnClose { id } => {
                        daemon.adapter().close(id);
                        let (closed, kept): (Vec<_>, Vec<_>) = parked
                            .drain(..)
                            .partition(|(op, _)| op.file_id() == Some(id));
                        parked = kept;
                        for (op, _) in closed {
                            respond(socket, op, SchemeResponse::Regular(Err(Error::new(EBADF))))?;
                        }
                    }
                    _ => {}
                }
            }
            // Parked reads whose answer came in this turn.
            let mut waiting = Vec::with_capacity(parked.len());
            for (mut op, caller) in parked.drain(..) {
                let mut shim = Shim::new(daemon.adapter());
                let answer = op.handle_sync_dont_consume(&caller, &mut shim, &mut state);
                if would_block(&answer) {
                    waiting.push((op, caller));
                } else {
                    respond(socket, op, answer)?;
                }
            }
            parked = waiting;
            if let Err(code) = daemon.after_turn() {
                return Ok(code);
            }
            for id in daemon.adapter().take_readable() {
                let post = Response::post_fevent(id, syscall::flag::EVENT_READ.bits());
                socket.write_response(post, SignalBehavior::Restart)?;
            }
            if !notified {
                match daemon.adapter().startup() {
                    Startup::Pending => {}
                    Startup::Refused => return Ok(ExitCode::FAILURE),
                    settled => {
                        if let Startup::Declined(reason) = settled {
                            tracing::error!(
                                ?reason,
                                "declined: serving, every request answered \"TEE unavailable\""
                            );
                        }
                        if let Err(error) = notify_ready() {
                            tracing::error!(%error, "readiness not signalled");
                        }
                        notified = true;
                    }
                }
            }
            if let Some(at) = daemon.adapter().poll_timeout() {
                self.arm(at.saturating_sub(self.now()))?;
            }
            let event = queued(self.queue.next_event())?;
            if event.user_data >= SOURCES {
                if let Err(code) = daemon.on_source(event.user_data - SOURCES) {
                    return Ok(code);
                }
            }
        }
    }
}

/// redox_event reports errors with its own libredox's type; the loop speaks syscall's.
fn queued<T>(result: Result<T, event::libredox::error::Error>) -> Result<T, Error> {
    result.map_err(|error| Error::new(error.errno()))
}

fn would_block(answer: &SchemeResponse) -> bool {
    matches!(answer, SchemeResponse::Regular(Err(error)) if matches!(error.errno, EAGAIN | EWOULDBLOCK))
}

/// Answers `op` as redox-scheme's `Op::handle_sync` would.
fn respond(socket: &Socket, op: Op, answer: SchemeResponse) -> Result<(), Error> {
    let response = match answer {
        SchemeResponse::Opened(open) => Response::open_dup_like(open, op),
        SchemeResponse::RegularAndNotifyOnDetach(status) => {
            Response::new_notify_on_detach(status, op)
        }
        SchemeResponse::Regular(status) => Response::new(status, op),
    };
    socket.write_response(response, SignalBehavior::Restart)?;
    Ok(())
}
