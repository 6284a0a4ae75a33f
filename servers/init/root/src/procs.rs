//! One running server process: its child handle and init's end of its lifecycle endpoint.

use std::io;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::process::{Child, ExitStatus};

use serde::Serialize;
use tee_proto::grants::Grants;
use tee_proto::lifecycle::{InitRequest, ServerEvent, ServerKind};
use tee_proto::{Frame, Generation};
use tee_rt::endpoint::{Endpoint, EndpointError};
use tee_rt::spawn::spawn_server;

/// What one look at a lifecycle endpoint found.
#[derive(Debug)]
pub enum Received {
    Frame(Frame<ServerEvent>),
    /// The server closed its end (it exited or is exiting).
    HungUp,
    Nothing,
}

#[derive(Debug)]
pub struct ServerProcess {
    pub kind: ServerKind,
    pub generation: Generation,
    child: Child,
    lifecycle: Endpoint,
    /// The lifecycle endpoint reported end of stream; it is no longer polled.
    pub hung_up: bool,
}

impl ServerProcess {
    /// Spawns `program` with the child end of a new lifecycle endpoint.
    pub fn spawn(kind: ServerKind, generation: Generation, program: &Path) -> io::Result<Self> {
        let (ours, theirs) = Endpoint::pair()?;
        ours.set_nonblocking(true)?;
        let child = spawn_server(program, &[], theirs, &[])?;
        tracing::info!(?kind, generation, pid = child.id(), "spawned");
        Ok(ServerProcess {
            kind,
            generation,
            child,
            lifecycle: ours,
            hung_up: false,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn lifecycle_fd(&self) -> BorrowedFd<'_> {
        self.lifecycle.as_fd()
    }

    /// Sends a lifecycle frame with capabilities attached.
    pub fn send<T: Serialize>(
        &self,
        frame: &Frame<T>,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), EndpointError> {
        self.lifecycle.send_frame(frame, fds)
    }

    /// Sends a lifecycle frame; a failure is only logged, since a dead server's exit is
    /// reported by reaping it.
    pub fn send_or_log(&self, frame: &Frame<InitRequest>, fds: &[BorrowedFd<'_>]) {
        if let Err(error) = self.send(frame, fds) {
            tracing::warn!(kind = ?self.kind, body = ?frame.body, %error, "lifecycle send failed");
        }
    }

    /// Sends `Hello` with `grants` attached, naming them in the frame.
    pub fn send_hello<'a>(&self, frame: &Frame<InitRequest>, grants: impl Grants<BorrowedFd<'a>>) {
        let (kinds, fds) = grants.into_parts();
        let mut frame = frame.clone();
        if let InitRequest::Hello { grants, .. } = &mut frame.body {
            *grants = kinds;
        }
        self.send_or_log(&frame, &fds);
    }

    /// Takes one frame off the lifecycle endpoint without blocking.
    pub fn receive(&mut self) -> Received {
        match self.lifecycle.recv_frame::<ServerEvent>() {
            Ok(Some((frame, fds))) => {
                if !fds.is_empty() {
                    tracing::warn!(kind = ?self.kind, count = fds.len(), "server sent descriptors; closed");
                }
                Received::Frame(frame)
            }
            Ok(None) => {
                self.hung_up = true;
                Received::HungUp
            }
            Err(error) if error.is_would_block() => Received::Nothing,
            Err(error) => {
                tracing::warn!(kind = ?self.kind, %error, "bad lifecycle frame dropped");
                Received::Nothing
            }
        }
    }

    /// SIGKILL, as a fault would; the exit is reaped later.
    pub fn kill(&mut self) -> io::Result<()> {
        self.child.kill()
    }

    /// SIGKILL and wait for the exit (init stopping it on purpose).
    pub fn kill_and_reap(mut self) -> io::Result<ExitStatus> {
        match self.child.kill() {
            Ok(()) => {}
            // Already exited: waiting reaps it.
            Err(error) if error.kind() == io::ErrorKind::InvalidInput => {}
            Err(error) => return Err(error),
        }
        self.child.wait()
    }

    /// Stops it for good; a failure is only logged (nothing else can be done about it).
    pub fn reap(self) {
        let kind = self.kind;
        if let Err(error) = self.kill_and_reap() {
            tracing::warn!(?kind, %error, "kill failed");
        }
    }

    /// The exit status once the process has exited.
    pub fn try_reap(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }
}
