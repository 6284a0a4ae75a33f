//! Non-blocking Unix or TCP sockets with an outbound buffer, so that a client that stops
//! reading can never block tpmd.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::vec::Vec;

/// Most bytes taken from one connection per readiness, so one busy client cannot starve the
/// others.
pub const READ_BUDGET: usize = 64 * 1024;

/// Most unsent bytes kept for one connection; a client that lets more pile up is dropped.
pub const BACKLOG_LIMIT: usize = 256 * 1024;

/// A listening socket of either family.
#[derive(Debug)]
pub enum AnyListener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl AnyListener {
    /// Wraps a listening Unix socket init handed over (made non-blocking).
    pub fn unix_from_fd(fd: OwnedFd) -> io::Result<AnyListener> {
        let listener = UnixListener::from(fd);
        listener.set_nonblocking(true)?;
        Ok(AnyListener::Unix(listener))
    }

    /// A TCP listener (made non-blocking).
    pub fn tcp(listener: TcpListener) -> io::Result<AnyListener> {
        listener.set_nonblocking(true)?;
        Ok(AnyListener::Tcp(listener))
    }

    /// The next pending connection (non-blocking; TCP with Nagle off), `Ok(None)` if none.
    pub fn accept(&self) -> io::Result<Option<Buffered>> {
        let stream = match self {
            AnyListener::Unix(listener) => listener.accept().map(|(s, _)| AnyStream::Unix(s)),
            AnyListener::Tcp(listener) => listener.accept().and_then(|(s, _)| {
                // A TPM answer is one write; without this the client's delayed ACK stalls it.
                s.set_nodelay(true)?;
                Ok(AnyStream::Tcp(s))
            }),
        };
        match stream {
            Ok(stream) => {
                stream.set_nonblocking(true)?;
                Ok(Some(Buffered::new(stream)))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            AnyListener::Unix(listener) => listener.as_fd(),
            AnyListener::Tcp(listener) => listener.as_fd(),
        }
    }
}

#[derive(Debug)]
enum AnyStream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl AnyStream {
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            AnyStream::Unix(stream) => stream.set_nonblocking(on),
            AnyStream::Tcp(stream) => stream.set_nonblocking(on),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            AnyStream::Unix(stream) => stream.read(buf),
            AnyStream::Tcp(stream) => stream.read(buf),
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            AnyStream::Unix(stream) => stream.write(buf),
            AnyStream::Tcp(stream) => stream.write(buf),
        }
    }

    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            AnyStream::Unix(stream) => stream.as_fd(),
            AnyStream::Tcp(stream) => stream.as_fd(),
        }
    }
}

/// What one read turn brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Nothing more to read right now.
    Drained,
    /// The peer closed its sending side.
    Closed,
    /// The read budget ran out; more may be waiting.
    Budget,
}

/// A connected, non-blocking stream with an outbound buffer.
#[derive(Debug)]
pub struct Buffered {
    stream: AnyStream,
    outbound: Vec<u8>,
    /// Bytes of `outbound` already written.
    written: usize,
}

impl Buffered {
    fn new(stream: AnyStream) -> Buffered {
        Buffered {
            stream,
            outbound: Vec::new(),
            written: 0,
        }
    }

    /// Reads what the socket has, chunk by chunk, handing each chunk to `sink` (chunk
    /// boundaries matter to the control channel). `sink` returns false to stop reading.
    pub fn read_chunks(&mut self, mut sink: impl FnMut(&[u8]) -> bool) -> io::Result<ReadOutcome> {
        let mut chunk = [0u8; 8192];
        let mut total = 0;
        while total < READ_BUDGET {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(ReadOutcome::Closed),
                Ok(n) => {
                    total += n;
                    if !sink(chunk.get(..n).unwrap_or_default()) {
                        return Ok(ReadOutcome::Budget);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadOutcome::Drained),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(ReadOutcome::Budget)
    }

    /// Queues `bytes` and writes as much as the socket takes.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let pending = self.pending() + bytes.len();
        if pending > BACKLOG_LIMIT {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "client does not read its answers",
            ));
        }
        // Compact before growing, so a long-lived connection does not keep sent bytes.
        self.outbound.drain(..self.written);
        self.written = 0;
        self.outbound.extend_from_slice(bytes);
        self.flush()
    }

    /// Writes queued bytes until done or the socket is full.
    pub fn flush(&mut self) -> io::Result<()> {
        while let Some(rest) = self.outbound.get(self.written..).filter(|r| !r.is_empty()) {
            match self.stream.write(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
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
    pub fn unsent(&self) -> usize {
        self.pending()
    }

    fn pending(&self) -> usize {
        self.outbound.len().saturating_sub(self.written)
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}
