//! The requester's end of the hosted secure world's control channel (init's, or a test's that
//! plays init): statistics, machine reset, and a fresh SMC conduit for each teed incarnation.
//!
//! The channel is an inherited seqpacket endpoint (the launcher handed the other end to the
//! secure world), never a path, so no other process can ask for a conduit or reset the machine.
//! Two ways to use it, on the same channel: [`SecureLink::call`] waits, bounded by
//! [`CALL_DEADLINE`], for its own answer (a conduit, a window); [`SecureLink::send`] and
//! [`SecureLink::try_recv`] let a requester that must never block (init's event loop) poll for
//! answers instead. Answers are matched by request id; one that arrives while a `call` waits
//! for another is kept for `try_recv`, and one nobody waits for any more is the caller's to drop.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::endpoint::{Endpoint, EndpointError};
use crate::event::{Interest, PollSet, Token};
use crate::server::stream_socket;
use tee_proto::secure::{SecureRequest, SecureResponse, SecureStats};
use tee_proto::{Frame, Header, WireError, FRAME_MAX};

/// The requester's generation in its frames; the secure world has none and ignores it.
const REQUESTER_GENERATION: tee_proto::Generation = 1;

/// How long the secure world may take to answer one control request. It answers at once unless
/// an SMC is running (a TPM command on libtpms, a few milliseconds); this bound only catches a
/// wedged or dead secure world.
pub const CALL_DEADLINE: Duration = Duration::from_secs(2);

/// Why a control call failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("the secure world closed its control channel")]
    Closed,
    #[error("no answer from the secure world within {0:?}")]
    Timeout(Duration),
    #[error("control channel failed")]
    Endpoint(#[from] EndpointError),
    #[error("control channel wait failed")]
    Poll(#[source] std::io::Error),
    #[error("the secure world refused: {0:?}")]
    Refused(WireError),
    #[error("unexpected answer from the secure world: {0}")]
    Unexpected(String),
    #[error("the conduit the secure world sent is unusable")]
    Conduit(#[source] std::io::Error),
}

/// One answer from the secure world, with what came attached.
#[derive(Debug)]
pub struct Answer {
    pub id: u32,
    pub response: SecureResponse,
    pub attached: Vec<OwnedFd>,
}

/// The requester's end of the control channel.
#[derive(Debug)]
pub struct SecureLink {
    endpoint: Endpoint,
    next_id: u32,
    /// Answers that arrived while a `call` waited for another.
    kept: std::collections::VecDeque<Answer>,
}

impl SecureLink {
    /// Wraps the endpoint (made non-blocking: every wait here is a poll with a deadline).
    pub fn new(endpoint: Endpoint) -> SecureLink {
        if let Err(error) = endpoint.set_nonblocking(true) {
            tracing::warn!(%error, "control channel stays blocking");
        }
        SecureLink {
            endpoint,
            next_id: 1,
            kept: std::collections::VecDeque::new(),
        }
    }

    /// The channel, to poll for answers.
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.endpoint.as_fd()
    }

    /// Sends `request` (with `attached`) without waiting; returns its request id.
    pub fn send(
        &mut self,
        request: SecureRequest,
        attached: Option<&OwnedFd>,
    ) -> Result<u32, LinkError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let frame = Frame {
            header: Header::new(REQUESTER_GENERATION, 0, id),
            body: request,
        };
        let attached: Vec<_> = attached.iter().map(|fd| fd.as_fd()).collect();
        match self.endpoint.send_frame(&frame, &attached) {
            Ok(()) => Ok(id),
            Err(EndpointError::Io(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => {
                Err(LinkError::Closed)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The next answer that has arrived, without waiting; `Ok(None)` when there is none yet.
    pub fn try_recv(&mut self) -> Result<Option<Answer>, LinkError> {
        if let Some(answer) = self.kept.pop_front() {
            return Ok(Some(answer));
        }
        let mut buf = vec![0u8; FRAME_MAX];
        loop {
            let (len, attached) = match self.endpoint.recv(&mut buf) {
                Ok(Some(packet)) => packet,
                Ok(None) => return Err(LinkError::Closed),
                Err(error) if error.is_would_block() => return Ok(None),
                Err(error) => return Err(error.into()),
            };
            match tee_proto::decode::<SecureResponse>(&buf[..len]) {
                Ok(frame) => {
                    return Ok(Some(Answer {
                        id: frame.header.request_id,
                        response: frame.body,
                        attached,
                    }))
                }
                Err(error) => tracing::warn!(%error, "undecodable control answer dropped"),
            }
        }
    }

    /// What the secure world holds right now.
    pub fn stats(&mut self) -> Result<SecureStats, LinkError> {
        match self.call(SecureRequest::Stats)? {
            (SecureResponse::Stats(stats), _) => Ok(stats),
            (other, _) => Err(unexpected(other)),
        }
    }

    /// Machine reset of the secure world; returns once it is complete.
    pub fn reset(&mut self) -> Result<(), LinkError> {
        match self.call(SecureRequest::Reset)? {
            (SecureResponse::ResetDone, _) => Ok(()),
            (other, _) => Err(unexpected(other)),
        }
    }

    /// Puts a client's window (a memory object) at `[base, base + len)` of the secure world's
    /// view of normal-world RAM.
    pub fn map_window(&mut self, base: u64, len: u64, window: &OwnedFd) -> Result<(), LinkError> {
        match self.call_with(SecureRequest::MapWindow { base, len }, Some(window))? {
            (SecureResponse::WindowMapped, _) => Ok(()),
            (other, _) => Err(unexpected(other)),
        }
    }

    /// A fresh SMC conduit for the next teed incarnation; the secure world closes the one it
    /// served before.
    pub fn new_conduit(&mut self) -> Result<UnixStream, LinkError> {
        match self.call(SecureRequest::NewConduit)? {
            (SecureResponse::Conduit, mut fds) if fds.len() == 1 => {
                stream_socket(fds.remove(0)).map_err(LinkError::Conduit)
            }
            (SecureResponse::Conduit, fds) => Err(LinkError::Unexpected(format!(
                "a conduit answer with {} attachments",
                fds.len()
            ))),
            (other, _) => Err(unexpected(other)),
        }
    }

    /// Sends `request` and waits, bounded, for its answer.
    fn call(
        &mut self,
        request: SecureRequest,
    ) -> Result<(SecureResponse, Vec<OwnedFd>), LinkError> {
        self.call_with(request, None)
    }

    /// [`SecureLink::call`] with a descriptor attached to the request. Other answers that
    /// arrive meanwhile are kept for [`SecureLink::try_recv`].
    pub fn call_with(
        &mut self,
        request: SecureRequest,
        attached: Option<&OwnedFd>,
    ) -> Result<(SecureResponse, Vec<OwnedFd>), LinkError> {
        let id = self.send(request, attached)?;
        let deadline = Instant::now() + CALL_DEADLINE;
        let mut others = Vec::new();
        let result = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Err(LinkError::Timeout(CALL_DEADLINE));
            }
            let ready = {
                let mut set = PollSet::new();
                set.register(self.endpoint.as_fd(), Token(0), Interest::READABLE);
                set.wait(Some(left)).map_err(LinkError::Poll)
            };
            match ready {
                Ok(ready) if ready.is_empty() => continue,
                Ok(_) => {}
                Err(error) => break Err(error),
            }
            // Only fresh packets here: what was kept before belongs to try_recv's callers.
            let kept = std::mem::take(&mut self.kept);
            let got = self.try_recv();
            self.kept = kept;
            match got {
                Ok(Some(answer)) if answer.id == id => {
                    break match answer.response {
                        SecureResponse::Error(error) => Err(LinkError::Refused(error)),
                        body => Ok((body, answer.attached)),
                    };
                }
                Ok(Some(other)) => others.push(other),
                Ok(None) => {}
                Err(error) => break Err(error),
            }
        };
        self.kept.extend(others);
        result
    }
}

fn unexpected(answer: SecureResponse) -> LinkError {
    LinkError::Unexpected(format!("{answer:?}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A stand-in for the secure world's side: answers with `answer` (and `attach`) to the
    /// request it receives, after first sending a stale answer.
    fn world(endpoint: Endpoint, answer: SecureResponse, attach: bool) {
        let mut buf = vec![0u8; FRAME_MAX];
        let (len, _) = endpoint.recv(&mut buf).unwrap().unwrap();
        let request: Frame<SecureRequest> = tee_proto::decode(&buf[..len]).unwrap();
        let stale = Frame {
            header: Header::new(0, 0, request.header.request_id.wrapping_add(100)),
            body: SecureResponse::ResetDone,
        };
        endpoint.send_frame(&stale, &[]).unwrap();
        let (conduit, _peer) = UnixStream::pair().unwrap();
        let fds: Vec<_> = if attach {
            vec![conduit.as_fd()]
        } else {
            vec![]
        };
        let frame = Frame {
            header: request.header.reply_to(0),
            body: answer,
        };
        endpoint.send_frame(&frame, &fds).unwrap();
    }

    #[test]
    fn a_conduit_comes_with_its_answer_and_stale_answers_are_dropped() {
        let (ours, theirs) = Endpoint::pair().unwrap();
        let serve = std::thread::spawn(move || world(theirs, SecureResponse::Conduit, true));
        let mut link = SecureLink::new(ours);
        assert!(link.new_conduit().is_ok());
        serve.join().unwrap();
    }

    #[test]
    fn a_refusal_a_missing_conduit_and_a_closed_channel_are_typed_errors() {
        let (ours, theirs) = Endpoint::pair().unwrap();
        let refuse = SecureResponse::Error(WireError::Retryable);
        let serve = std::thread::spawn(move || world(theirs, refuse, false));
        let mut link = SecureLink::new(ours);
        assert!(matches!(
            link.new_conduit(),
            Err(LinkError::Refused(WireError::Retryable))
        ));
        serve.join().unwrap();

        let (ours, theirs) = Endpoint::pair().unwrap();
        let serve = std::thread::spawn(move || world(theirs, SecureResponse::Conduit, false));
        let mut link = SecureLink::new(ours);
        assert!(matches!(link.new_conduit(), Err(LinkError::Unexpected(_))));
        serve.join().unwrap();

        let (ours, theirs) = Endpoint::pair().unwrap();
        drop(theirs);
        assert!(matches!(
            SecureLink::new(ours).stats(),
            Err(LinkError::Closed)
        ));
    }
}
