//! init's requests to the secure world's control socket (statistics, machine reset) as
//! asynchronous requests with deadlines: sent without blocking on one non-blocking
//! connection, answered through the host's poll, and failed when their deadline passes, so a
//! slow or silent secure world costs init a missing figure, never a stalled loop.
//!
//! The secure world answers a connection's requests in order; a request past its deadline
//! drops the connection (a late answer would be out of step) and fails every request on it.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
use tee_proto::secure::{SecureRequest, SecureResponse};
use tee_proto::{decode, Frame, Header, FRAME_MAX};
use tee_rt::stream::{FramedStream, StreamError};

/// Why a request to the secure world could not be sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SecureLinkError {
    #[error("cannot reach the secure world's control socket {}: {source}", path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("secure world control stream failed: {0}")]
    Stream(#[from] StreamError),
}

/// The secure world's answer to one request, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SecureAnswer {
    Answered(SecureResponse),
    /// No answer by the deadline, or the connection failed.
    Failed,
}

#[derive(Debug, Clone, Copy)]
struct Waiting {
    id: u32,
    deadline: u64,
}

#[derive(Debug)]
pub(crate) struct SecureLink {
    path: PathBuf,
    stream: Option<FramedStream>,
    next_id: u32,
    waiting: VecDeque<Waiting>,
}

impl SecureLink {
    pub fn new(path: PathBuf) -> SecureLink {
        SecureLink {
            path,
            stream: None,
            next_id: 1,
            waiting: VecDeque::new(),
        }
    }

    /// Sends `request`, to be answered within `within_ms`; its answer comes back from
    /// [`SecureLink::receive`] or [`SecureLink::expire`] under the returned id.
    pub fn send(
        &mut self,
        now: u64,
        request: SecureRequest,
        within_ms: u64,
    ) -> Result<u32, SecureLinkError> {
        let stream = match &mut self.stream {
            Some(stream) => stream,
            None => self.stream.insert(connect_nonblocking(&self.path)?),
        };
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let frame = Frame {
            header: Header::new(0, 0, id),
            body: request,
        };
        if let Err(error) = stream.queue_frame(&frame).and_then(|()| stream.flush()) {
            self.stream = None;
            return Err(error.into());
        }
        self.waiting.push_back(Waiting {
            id,
            deadline: now.saturating_add(within_ms),
        });
        Ok(id)
    }

    /// The connection to poll while requests wait, and whether it wants writing.
    pub fn poll_entry(&self) -> Option<(BorrowedFd<'_>, bool)> {
        let stream = self.stream.as_ref()?;
        (!self.waiting.is_empty() || stream.wants_write())
            .then(|| (stream.as_fd(), stream.wants_write()))
    }

    /// Reads and writes what the connection allows; returns the answers that arrived.
    pub fn on_ready(&mut self) -> Vec<(u32, SecureAnswer)> {
        let mut answers = Vec::new();
        let Some(stream) = &mut self.stream else {
            return answers;
        };
        let mut failed = stream.flush().and_then(|()| stream.fill()).err().map(|e| {
            tracing::warn!(error = %e, "secure world control stream failed");
        });
        while failed.is_none() {
            match stream.next_frame() {
                Ok(Some(bytes)) => match decode::<SecureResponse>(&bytes) {
                    Ok(frame) => {
                        let id = frame.header.request_id;
                        self.waiting.retain(|waiting| waiting.id != id);
                        answers.push((id, SecureAnswer::Answered(frame.body)));
                    }
                    Err(error) => {
                        tracing::warn!(%error, "undecodable answer from the secure world");
                        failed = Some(());
                    }
                },
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(%error, "secure world control stream out of step");
                    failed = Some(());
                }
            }
        }
        if failed.is_some() || stream.is_peer_closed() {
            answers.extend(self.fail_all());
        }
        answers
    }

    /// Fails every request at `now` if the oldest one's deadline passed.
    pub fn expire(&mut self, now: u64) -> Vec<(u32, SecureAnswer)> {
        match self.waiting.front() {
            Some(oldest) if oldest.deadline <= now => {
                tracing::warn!(request = oldest.id, "secure world did not answer in time");
                self.fail_all()
            }
            _ => Vec::new(),
        }
    }

    pub fn next_deadline(&self) -> Option<u64> {
        self.waiting.iter().map(|waiting| waiting.deadline).min()
    }

    /// Forgets the connection (a reset restarts the secure world's side of it anyway).
    pub fn reconnect(&mut self) -> Vec<(u32, SecureAnswer)> {
        self.fail_all()
    }

    fn fail_all(&mut self) -> Vec<(u32, SecureAnswer)> {
        self.stream = None;
        self.waiting
            .drain(..)
            .map(|waiting| (waiting.id, SecureAnswer::Failed))
            .collect()
    }
}

/// Connects without blocking: a secure world whose backlog is full refuses at once.
fn connect_nonblocking(path: &Path) -> Result<FramedStream, SecureLinkError> {
    let error = |source: io::Error| SecureLinkError::Connect {
        path: path.to_path_buf(),
        source,
    };
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|errno| error(errno.into()))?;
    let addr = UnixAddr::new(path).map_err(|errno| error(errno.into()))?;
    connect(fd.as_raw_fd(), &addr).map_err(|errno| error(errno.into()))?;
    FramedStream::new(UnixStream::from(fd), FRAME_MAX).map_err(error)
}
