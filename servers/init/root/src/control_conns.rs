//! init's control connections, read and written without blocking: bytes accumulate per
//! connection across poll turns, a request is taken only once its frame is whole, and the
//! slot policy of `tee_rt::stream` bounds how many there are and how long each may idle or
//! take to deliver a frame (one deadline per whole frame, from its first byte). A peer
//! trickling bytes therefore costs init a read per byte and nothing else.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixListener;

use serde::Serialize;
use tee_proto::Frame;
use tee_rt::stream::slots::{Activity, Admission, SlotLimits, Slots};
use tee_rt::stream::{accept_framed, FramedStream};

/// Most teectl connections at once: an operator runs a few; past it the stalest idle one is
/// evicted for a newcomer, and a newcomer is closed only when every one waits on init.
pub(crate) const MAX_CONTROL_CONNECTIONS: usize = 32;

/// A connection with no request for this long is closed; teectl connects per command and
/// its loops (`kexec --cycles`) send the next request at once.
pub(crate) const CONTROL_IDLE_MS: u64 = 60_000;

/// A request frame must arrive whole, and an answer be taken, within this long from its
/// first byte: teectl writes a frame at once, so only a stalled or hostile peer needs longer.
pub(crate) const CONTROL_FRAME_MS: u64 = 2_000;

const LIMITS: SlotLimits = SlotLimits {
    capacity: MAX_CONTROL_CONNECTIONS,
    idle_ms: CONTROL_IDLE_MS,
    frame_ms: CONTROL_FRAME_MS,
};

/// init's name for one control connection.
pub(crate) type ConnId = u64;

/// What reading a connection gave.
#[derive(Debug)]
pub(crate) enum Read {
    /// Nothing whole yet (or the connection is waiting for its answer).
    Nothing,
    /// A whole request frame; the connection waits for its answer until [`ControlConns::reply`].
    Frame(Vec<u8>),
    /// The connection ended or failed and was dropped.
    Gone,
}

#[derive(Debug)]
pub(crate) struct ControlConns {
    conns: BTreeMap<ConnId, FramedStream>,
    slots: Slots<ConnId>,
    /// Connections whose request is being answered: not read until the answer goes out.
    busy: BTreeSet<ConnId>,
    /// Answered connections that may hold their next request already.
    resumable: BTreeSet<ConnId>,
    next: ConnId,
}

impl ControlConns {
    pub fn new() -> ControlConns {
        ControlConns {
            conns: BTreeMap::new(),
            slots: Slots::new(LIMITS),
            busy: BTreeSet::new(),
            resumable: BTreeSet::new(),
            next: 1,
        }
    }

    /// Accepts every pending connection on the (non-blocking) control listener.
    pub fn accept(&mut self, now: u64, listener: &UnixListener) {
        while let Some(conn) = accept_framed(listener, "control") {
            let id = self.next;
            match self.slots.admit(now, id) {
                Admission::Admitted => {}
                Admission::Evicted(victim) => {
                    tracing::warn!(conn = victim, "stalest control connection evicted");
                    self.drop_conn(victim);
                }
                Admission::Refused => {
                    tracing::warn!("control connection refused: every one waits on init");
                    continue;
                }
            }
            self.next += 1;
            self.conns.insert(id, conn);
        }
    }

    /// The descriptors to poll, with whether each wants reading and writing.
    pub fn poll_entries(&self) -> impl Iterator<Item = (ConnId, BorrowedFd<'_>, bool, bool)> {
        self.conns.iter().filter_map(|(id, conn)| {
            let read = !self.busy.contains(id) && !conn.is_peer_closed();
            let write = conn.wants_write();
            (read || write).then(|| (*id, conn.as_fd(), read, write))
        })
    }

    /// Reads what connection `id` has; a whole frame comes back once.
    pub fn receive(&mut self, now: u64, id: ConnId) -> Read {
        if self.busy.contains(&id) {
            return Read::Nothing;
        }
        let Some(conn) = self.conns.get_mut(&id) else {
            return Read::Gone;
        };
        let frame = conn.fill().and_then(|_| conn.next_frame());
        match frame {
            Ok(Some(frame)) => {
                self.busy.insert(id);
                self.observe(now, id, true);
                Read::Frame(frame)
            }
            Ok(None) if conn.is_peer_closed() => {
                if conn.partial_bytes() > 0 {
                    tracing::warn!(conn = id, "control connection closed inside a frame");
                }
                self.remove(id);
                Read::Gone
            }
            Ok(None) => {
                self.observe(now, id, false);
                Read::Nothing
            }
            Err(error) => {
                tracing::warn!(conn = id, %error, "control connection dropped");
                self.remove(id);
                Read::Gone
            }
        }
    }

    /// Queues the answer to `id`'s request and writes what the socket takes; the connection
    /// may then send its next request.
    pub fn reply<T: Serialize>(&mut self, now: u64, id: ConnId, frame: &Frame<T>) {
        let Some(conn) = self.conns.get_mut(&id) else {
            tracing::debug!(
                conn = id,
                "reply for a control connection that left dropped"
            );
            return;
        };
        self.busy.remove(&id);
        if conn.partial_bytes() > 0 {
            self.resumable.insert(id);
        }
        match conn.queue_frame(frame).and_then(|()| conn.flush()) {
            Ok(()) => self.observe(now, id, true),
            Err(error) => {
                tracing::warn!(conn = id, %error, "control reply not delivered");
                self.remove(id);
            }
        }
    }

    /// The answer a request gets no reply to (undecodable): the connection is dropped.
    pub fn remove(&mut self, id: ConnId) {
        self.slots.remove(id);
        self.drop_conn(id);
    }

    /// Writes what waits for `id`.
    pub fn flush(&mut self, now: u64, id: ConnId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let before = conn.unsent_bytes();
        match conn.flush() {
            Ok(()) => {
                let progressed = conn.unsent_bytes() < before;
                self.observe(now, id, progressed);
            }
            Err(error) => {
                tracing::warn!(conn = id, %error, "control reply not delivered");
                self.remove(id);
            }
        }
    }

    /// A connection answered while it held more bytes: its next request may be whole
    /// already, with nothing left to wake the poll.
    pub fn take_resumable(&mut self) -> Option<ConnId> {
        self.resumable.pop_first()
    }

    /// Whether a connection is to be read again without waiting.
    pub fn has_resumable(&self) -> bool {
        !self.resumable.is_empty()
    }

    /// Whether answers wait to be written.
    pub fn wants_write(&self) -> bool {
        self.conns.values().any(FramedStream::wants_write)
    }

    pub fn next_deadline(&self) -> Option<u64> {
        self.slots.next_deadline()
    }

    /// Drops every connection past its deadline.
    pub fn expire(&mut self, now: u64) {
        for id in self.slots.expired(now) {
            tracing::warn!(conn = id, "control connection idle or stalled: dropped");
            self.remove(id);
        }
    }

    fn observe(&mut self, now: u64, id: ConnId, progressed: bool) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        let activity = Activity {
            progressed,
            partial: conn.partial_bytes() > 0,
            owed: usize::from(self.busy.contains(&id)),
            unsent: conn.wants_write(),
        };
        self.slots.observe(now, id, activity);
    }

    fn drop_conn(&mut self, id: ConnId) {
        self.busy.remove(&id);
        self.resumable.remove(&id);
        self.conns.remove(&id);
    }
}
