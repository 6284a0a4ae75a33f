//! The consumer side of a client shell: its listeners and the connections accepted on them.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;

use crate::ConsumerId;
use nix::sys::socket::{getsockopt, sockopt};
use tee_proto::FRAME_MAX;

use tee_rt::event::{Interest, PollSet, Token};
use tee_rt::stream::{FramedStream, StreamError};

/// Most consumer connections served at once; later ones are closed at accept.
pub const MAX_CONSUMERS: usize = 64;

/// Tokens at and above this name listeners (by index).
const LISTENER_TOKENS: u64 = 1 << 16;
/// Tokens at and above this name consumer connections (by id).
const CONSUMER_TOKENS: u64 = 1 << 32;

/// What a consumer listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// Native tee-proto frames of the server's consumer interface, length-prefixed.
    Native,
}

/// A listener init handed over.
#[derive(Debug)]
pub struct Listener {
    pub kind: ListenerKind,
    socket: UnixListener,
}

impl Listener {
    /// Wraps a listening socket attachment (made non-blocking); anything else is refused.
    pub fn from_fd(kind: ListenerKind, fd: OwnedFd) -> io::Result<Listener> {
        if !getsockopt(&fd, sockopt::AcceptConn).map_err(io::Error::from)? {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "consumer attachment is not a listening socket",
            ));
        }
        let socket = UnixListener::from(fd);
        socket.set_nonblocking(true)?;
        Ok(Listener { kind, socket })
    }
}

/// What a ready descriptor of the consumer side was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerToken {
    Listener(usize),
    Connection(ConsumerId),
}

/// The listeners and live connections.
#[derive(Debug, Default)]
pub struct Consumers {
    listeners: Vec<Listener>,
    connections: BTreeMap<ConsumerId, FramedStream>,
    next_id: u64,
}

impl Consumers {
    pub fn new(listeners: Vec<Listener>) -> Consumers {
        Consumers {
            listeners,
            connections: BTreeMap::new(),
            next_id: 1,
        }
    }

    /// Registers every listener and connection (connections with unsent answers for writing).
    pub fn register<'a>(&'a self, set: &mut PollSet<'a>) {
        for (index, listener) in self.listeners.iter().enumerate() {
            set.register(
                listener.socket.as_fd(),
                Token(LISTENER_TOKENS + index as u64),
                Interest::READABLE,
            );
        }
        for (id, connection) in &self.connections {
            let interest = if connection.wants_write() {
                Interest::READ_WRITE
            } else {
                Interest::READABLE
            };
            set.register(connection.as_fd(), Token(CONSUMER_TOKENS + id.0), interest);
        }
    }

    /// Which consumer-side descriptor `token` names, if any.
    pub fn classify(token: Token) -> Option<ConsumerToken> {
        if token.0 >= CONSUMER_TOKENS {
            Some(ConsumerToken::Connection(ConsumerId(
                token.0 - CONSUMER_TOKENS,
            )))
        } else if token.0 >= LISTENER_TOKENS {
            usize::try_from(token.0 - LISTENER_TOKENS)
                .ok()
                .map(ConsumerToken::Listener)
        } else {
            None
        }
    }

    /// Accepts every pending connection on listener `index`.
    pub fn accept(&mut self, index: usize) {
        let Some(listener) = self.listeners.get(index) else {
            return;
        };
        loop {
            match listener.socket.accept() {
                Ok((stream, _)) => {
                    if self.connections.len() >= MAX_CONSUMERS {
                        tracing::warn!(limit = MAX_CONSUMERS, "consumer refused: too many");
                        continue;
                    }
                    let id = ConsumerId(self.next_id);
                    self.next_id += 1;
                    match FramedStream::new(stream, FRAME_MAX) {
                        Ok(connection) => {
                            tracing::debug!(consumer = id.0, kind = ?listener.kind, "consumer connected");
                            self.connections.insert(id, connection);
                        }
                        Err(error) => tracing::warn!(%error, "consumer connection unusable"),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    return;
                }
            }
        }
    }

    pub fn connection(&mut self, id: ConsumerId) -> Option<&mut FramedStream> {
        self.connections.get_mut(&id)
    }

    /// Drops a connection; true if it existed.
    pub fn remove(&mut self, id: ConsumerId) -> bool {
        self.connections.remove(&id).is_some()
    }

    /// Queues an encoded answer for `id` and tries to send it. A connection that fails is
    /// dropped and reported as `Err` so the core can forget the consumer.
    pub fn answer(&mut self, id: ConsumerId, payload: &[u8]) -> Result<(), StreamError> {
        let Some(connection) = self.connections.get_mut(&id) else {
            tracing::debug!(consumer = id.0, "answer for a consumer that left dropped");
            return Ok(());
        };
        let sent = connection.queue(payload).and_then(|()| connection.flush());
        if sent.is_err() {
            self.connections.remove(&id);
        }
        sent
    }
}
