//! The consumer side of a client shell: its listeners and the connections accepted on them,
//! with the fairness policy of `tee_rt::stream` (slots with deadlines and eviction of the
//! stalest; one request per consumer in the core at a time, a bounded queue behind it).

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::vec::Vec;

use crate::config::Millis;
use crate::ConsumerId;
use nix::sys::socket::{getsockopt, sockopt};

use tee_rt::event::{Interest, PollSet, Token};
use tee_rt::stream::slots::{Activity, Admission, SlotLimits, Slots};
use tee_rt::stream::turns::Turns;
use tee_rt::stream::{accept_framed, FramedStream, StreamError};

/// Most consumer connections served at once. Each costs a descriptor and a poll entry; a
/// server has a handful of real consumers, so when the slots run out the stalest one is
/// evicted, and only when every slot waits on the server is a newcomer closed at accept.
pub const MAX_CONSUMERS: usize = 64;

/// A consumer with nothing sent and nothing owed loses its slot after this long: a consumer
/// that comes back reconnects, and an idle one must not keep a slot from one that is waiting.
pub const CONSUMER_IDLE_MS: Millis = 60_000;

/// A frame must arrive whole, and an answer be taken, within this long from its first byte:
/// consumers write a frame at once, so only a stalled or hostile peer needs longer.
pub const CONSUMER_FRAME_MS: Millis = 2_000;

/// Requests a consumer may have waiting behind the one in the core; past it its socket is
/// not read (the core serves one request per consumer per turn, so more buys nothing).
pub const MAX_QUEUED_PER_CONSUMER: usize = 4;

const LIMITS: SlotLimits = SlotLimits {
    capacity: MAX_CONSUMERS,
    idle_ms: CONSUMER_IDLE_MS,
    frame_ms: CONSUMER_FRAME_MS,
};

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
#[derive(Debug)]
pub struct Consumers {
    listeners: Vec<Listener>,
    connections: BTreeMap<ConsumerId, FramedStream>,
    slots: Slots<ConsumerId>,
    /// Whole request frames, undecoded, waiting for their consumer's turn in the core.
    turns: Turns<ConsumerId, Vec<u8>>,
    next_id: u64,
}

impl Default for Consumers {
    fn default() -> Consumers {
        Consumers::new(Vec::new())
    }
}

/// What reading a consumer brought.
#[derive(Debug, Default)]
pub struct Received {
    /// Frames that may go to the core now (at most one: the consumer's turn).
    pub to_core: Vec<Vec<u8>>,
    /// The connection is done: closed by the peer, or failed (with why).
    pub ended: Option<Option<StreamError>>,
}

impl Consumers {
    pub fn new(listeners: Vec<Listener>) -> Consumers {
        Consumers {
            listeners,
            connections: BTreeMap::new(),
            slots: Slots::new(LIMITS),
            turns: Turns::new(MAX_QUEUED_PER_CONSUMER),
            next_id: 1,
        }
    }

    /// Registers every listener and connection: for reading while its queue has room, for
    /// writing while answers wait.
    pub fn register<'a>(&'a self, set: &mut PollSet<'a>) {
        for (index, listener) in self.listeners.iter().enumerate() {
            set.register(
                listener.socket.as_fd(),
                Token(LISTENER_TOKENS + index as u64),
                Interest::READABLE,
            );
        }
        for (id, connection) in &self.connections {
            let interest = Interest {
                readable: self.turns.has_room(*id) && !connection.is_peer_closed(),
                writable: connection.wants_write(),
            };
            if interest.readable || interest.writable {
                set.register(connection.as_fd(), Token(CONSUMER_TOKENS + id.0), interest);
            }
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

    /// Accepts every pending connection on listener `index`; returns the consumers evicted
    /// to make room, which the core must forget.
    pub fn accept(&mut self, now: Millis, index: usize) -> Vec<ConsumerId> {
        let mut evicted = Vec::new();
        let Some(kind) = self.listeners.get(index).map(|listener| listener.kind) else {
            return evicted;
        };
        while let Some(connection) = self
            .listeners
            .get(index)
            .and_then(|listener| accept_framed(&listener.socket, "consumer"))
        {
            let id = ConsumerId(self.next_id);
            match self.slots.admit(now, id) {
                Admission::Admitted => {}
                Admission::Evicted(victim) => {
                    tracing::warn!(
                        consumer = victim.0,
                        limit = MAX_CONSUMERS,
                        "stalest consumer evicted for a new one"
                    );
                    self.drop_connection(victim);
                    evicted.push(victim);
                }
                Admission::Refused => {
                    tracing::warn!(limit = MAX_CONSUMERS, "consumer refused: every slot busy");
                    continue;
                }
            }
            self.next_id += 1;
            tracing::debug!(consumer = id.0, ?kind, "consumer connected");
            self.connections.insert(id, connection);
        }
        evicted
    }

    /// Reads what consumer `id` sent; the frames that may go to the core now come back.
    pub fn receive(&mut self, now: Millis, id: ConsumerId) -> Received {
        let mut received = Received::default();
        let Some(connection) = self.connections.get_mut(&id) else {
            return received;
        };
        let mut progressed = false;
        let mut failed = None;
        if self.turns.has_room(id) {
            failed = connection.fill().err();
        }
        while failed.is_none() && self.turns.has_room(id) {
            match connection.next_frame() {
                Ok(Some(frame)) => {
                    progressed = true;
                    match self.turns.push(id, frame) {
                        Ok(Some(now_due)) => received.to_core.push(now_due),
                        Ok(None) => {}
                        // has_room said there is room.
                        Err((full, _)) => tracing::warn!(consumer = id.0, %full, "frame held"),
                    }
                }
                Ok(None) => break,
                Err(error) => failed = Some(error),
            }
        }
        if let Some(error) = failed {
            received.ended = Some(Some(error));
        } else if connection.is_peer_closed() {
            received.ended = Some(None);
        } else {
            self.observe(now, id, progressed);
        }
        received
    }

    /// A request of `id` that gets no answer (undecodable) ended its turn: its next waiting
    /// frame, if any, may go to the core now.
    pub fn pass(&mut self, now: Millis, id: ConsumerId) -> Option<Vec<u8>> {
        let next = self.turns.answered(id);
        self.observe(now, id, false);
        next
    }

    /// Writes what waits for `id`; `Err` means the connection was dropped.
    pub fn flush(&mut self, now: Millis, id: ConsumerId) -> Result<(), StreamError> {
        let Some(connection) = self.connections.get_mut(&id) else {
            return Ok(());
        };
        let before = connection.unsent_bytes();
        match connection.flush() {
            Ok(()) => {
                let progressed = connection.unsent_bytes() < before;
                self.observe(now, id, progressed);
                Ok(())
            }
            Err(error) => {
                self.remove(id);
                Err(error)
            }
        }
    }

    /// Tells the slot policy what `id` is doing now.
    pub fn observe(&mut self, now: Millis, id: ConsumerId, progressed: bool) {
        let Some(connection) = self.connections.get(&id) else {
            return;
        };
        let activity = Activity {
            progressed,
            partial: connection.partial_bytes() > 0,
            owed: self.turns.pending(id),
            unsent: connection.wants_write(),
        };
        self.slots.observe(now, id, activity);
    }

    /// The earliest consumer deadline.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.slots.next_deadline()
    }

    /// Drops every consumer whose deadline passed; returns them for the core to forget.
    pub fn expire(&mut self, now: Millis) -> Vec<ConsumerId> {
        let expired = self.slots.expired(now);
        for id in &expired {
            tracing::warn!(
                consumer = id.0,
                "consumer idle or stalled past its deadline: dropped"
            );
            self.remove(*id);
        }
        expired
    }

    /// Live connections.
    pub fn len(&self) -> usize {
        self.connections.len()
    }

    pub fn is_empty(&self) -> bool {
        self.connections.is_empty()
    }

    /// Drops a connection and what it had waiting; true if it existed.
    pub fn remove(&mut self, id: ConsumerId) -> bool {
        self.slots.remove(id);
        self.drop_connection(id)
    }

    fn drop_connection(&mut self, id: ConsumerId) -> bool {
        self.turns.remove(id);
        self.connections.remove(&id).is_some()
    }

    /// Queues an encoded answer for `id` and tries to send it; the answer ends the
    /// consumer's turn, and its next waiting frame, if any, comes back to go to the core now.
    /// A connection that fails is dropped and reported as `Err` so the core can forget it.
    pub fn answer(
        &mut self,
        now: Millis,
        id: ConsumerId,
        payload: &[u8],
    ) -> Result<Option<Vec<u8>>, StreamError> {
        let Some(connection) = self.connections.get_mut(&id) else {
            tracing::debug!(consumer = id.0, "answer for a consumer that left dropped");
            return Ok(None);
        };
        if let Err(error) = connection.queue(payload).and_then(|()| connection.flush()) {
            self.remove(id);
            return Err(error);
        }
        let next = self.turns.answered(id);
        self.observe(now, id, true);
        Ok(next)
    }
}
