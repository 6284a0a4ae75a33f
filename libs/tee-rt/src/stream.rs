//! Consumer connections: length-prefixed frames ([`crate::framing`]'s wire format) over a
//! non-blocking Unix stream, buffered both ways so that a slow, silent or hostile consumer can
//! never block the server that serves it.
//!
//! The event loop calls [`FramedStream::fill`] when the socket is readable, takes every whole
//! frame with [`FramedStream::next_frame`], queues answers with [`FramedStream::queue`] and
//! writes them out with [`FramedStream::flush`] (registering for writability while
//! [`FramedStream::wants_write`]).

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;

use serde::Serialize;
use tee_proto::{Frame, ProtoError, FRAME_MAX};

use crate::framing::FRAME_HEADER_BYTES;

pub mod slots;
pub mod turns;

/// Most bytes taken from one connection per readiness, so one busy consumer cannot starve
/// the others.
pub const READ_BUDGET: usize = 64 * 1024;

/// Most unsent bytes kept for one connection; a consumer that lets more pile up is not
/// reading its answers and is dropped.
pub const DEFAULT_BACKLOG_LIMIT: usize = 1 << 20;

/// Failures of a consumer connection; each means the connection should be dropped.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The socket failed.
    #[error("consumer stream i/o failed")]
    Io(#[from] io::Error),
    /// A frame header announced more than the limit: the stream is out of step.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLong {
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The consumer does not read its answers.
    #[error("{pending} unsent bytes would exceed the backlog limit of {limit}")]
    Backlog {
        /// Bytes that would be pending.
        pending: usize,
        /// The limit.
        limit: usize,
    },
    /// An answer could not be encoded.
    #[error("frame could not be encoded")]
    Proto(#[from] ProtoError),
}

/// The receiving half's framing, without the socket: bytes in, whole frames out. A frame
/// header announcing more than the limit is an error as soon as its four bytes are in.
#[derive(Debug)]
pub struct FrameReader {
    inbound: Vec<u8>,
    max_frame: usize,
}

impl FrameReader {
    /// A reader refusing frames over `max_frame` bytes.
    pub fn new(max_frame: usize) -> FrameReader {
        FrameReader {
            inbound: Vec::new(),
            max_frame,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.inbound.extend_from_slice(bytes);
    }

    /// The next whole frame received, if any. An over-long header is an error (the stream can
    /// no longer be trusted to be in step).
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, StreamError> {
        let Some(header) = self.inbound.get(..FRAME_HEADER_BYTES) else {
            return Ok(None);
        };
        let mut len_bytes = [0u8; FRAME_HEADER_BYTES];
        len_bytes.copy_from_slice(header);
        let len = u32::from_le_bytes(len_bytes) as usize;
        if len > self.max_frame {
            return Err(StreamError::TooLong {
                len,
                max: self.max_frame,
            });
        }
        let end = FRAME_HEADER_BYTES + len;
        let Some(payload) = self.inbound.get(FRAME_HEADER_BYTES..end) else {
            return Ok(None);
        };
        let payload = payload.to_vec();
        self.inbound.drain(..end);
        Ok(Some(payload))
    }

    /// Bytes received that do not yet make a whole frame.
    pub fn partial_bytes(&self) -> usize {
        self.inbound.len()
    }
}

/// A buffered, non-blocking, length-prefixed frame connection.
#[derive(Debug)]
pub struct FramedStream {
    stream: UnixStream,
    inbound: FrameReader,
    outbound: Vec<u8>,
    /// Bytes of `outbound` already written.
    written: usize,
    max_frame: usize,
    backlog_limit: usize,
    peer_closed: bool,
}

impl FramedStream {
    /// Wraps an accepted connection (made non-blocking here); frames over `max_frame` bytes
    /// are refused.
    pub fn new(stream: UnixStream, max_frame: usize) -> io::Result<FramedStream> {
        stream.set_nonblocking(true)?;
        Ok(FramedStream {
            stream,
            inbound: FrameReader::new(max_frame),
            outbound: Vec::new(),
            written: 0,
            max_frame,
            backlog_limit: DEFAULT_BACKLOG_LIMIT,
            peer_closed: false,
        })
    }

    /// Changes the limit on unsent bytes.
    pub fn with_backlog_limit(mut self, limit: usize) -> FramedStream {
        self.backlog_limit = limit;
        self
    }

    /// Reads what the socket has, up to [`READ_BUDGET`] bytes; returns the bytes read. After
    /// the peer's end of stream, [`FramedStream::is_peer_closed`] turns true.
    pub fn fill(&mut self) -> Result<usize, StreamError> {
        let mut chunk = [0u8; 16 * 1024];
        let mut total = 0;
        while total < READ_BUDGET {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.peer_closed = true;
                    break;
                }
                Ok(n) => {
                    self.inbound.push(&chunk[..n]);
                    total += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(total)
    }

    /// The next whole frame received, if any. An over-long header is an error (the stream can
    /// no longer be trusted to be in step).
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, StreamError> {
        self.inbound.next_frame()
    }

    /// Whether the peer ended its side of the stream.
    pub fn is_peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Bytes received that do not yet make a whole frame (at the peer's close: a cut frame).
    pub fn partial_bytes(&self) -> usize {
        self.inbound.partial_bytes()
    }

    /// Queues `payload` as one frame; [`FramedStream::flush`] sends it.
    pub fn queue(&mut self, payload: &[u8]) -> Result<(), StreamError> {
        if payload.len() > self.max_frame {
            return Err(StreamError::TooLong {
                len: payload.len(),
                max: self.max_frame,
            });
        }
        let pending = self.pending() + FRAME_HEADER_BYTES + payload.len();
        if pending > self.backlog_limit {
            return Err(StreamError::Backlog {
                pending,
                limit: self.backlog_limit,
            });
        }
        // Compact before growing, so a long-lived connection does not keep sent bytes.
        self.outbound.drain(..self.written);
        self.written = 0;
        self.outbound
            .extend_from_slice(&(payload.len() as u32).to_le_bytes());
        self.outbound.extend_from_slice(payload);
        Ok(())
    }

    /// Encodes `frame` and queues it.
    pub fn queue_frame<T: Serialize>(&mut self, frame: &Frame<T>) -> Result<(), StreamError> {
        let mut buf = [0u8; FRAME_MAX];
        let encoded = tee_proto::encode(frame, &mut buf)?;
        self.queue(encoded)
    }

    /// Writes queued bytes until done or the socket is full.
    pub fn flush(&mut self) -> Result<(), StreamError> {
        while self.written < self.outbound.len() {
            match self.stream.write(&self.outbound[self.written..]) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
        self.outbound.clear();
        self.written = 0;
        Ok(())
    }

    /// Whether queued bytes wait for the socket to become writable.
    pub fn wants_write(&self) -> bool {
        self.pending() > 0
    }

    /// Queued bytes not written yet.
    pub fn unsent_bytes(&self) -> usize {
        self.pending()
    }

    fn pending(&self) -> usize {
        self.outbound.len() - self.written
    }

    /// The socket, for polling.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

/// Accepts the next waiting connection on a non-blocking listener, as a framed stream of
/// tee-proto frames. `None` once no connection waits (an accept failure is logged and also
/// ends the round: the listener stays readable and is tried again next turn). `what` names
/// the listener in logs.
pub fn accept_framed(
    listener: &std::os::unix::net::UnixListener,
    what: &str,
) -> Option<FramedStream> {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return None,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                tracing::warn!(%error, what, "accept failed");
                return None;
            }
        };
        match FramedStream::new(stream, FRAME_MAX) {
            Ok(connection) => return Some(connection),
            Err(error) => tracing::warn!(%error, what, "accepted connection unusable"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
