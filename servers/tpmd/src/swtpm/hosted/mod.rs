//! The swtpm front-end on real sockets, for tpmd's hosted shell: the listeners init hands over
//! (`swtpm.sock`, `swtpm.sock.ctrl`), optionally a loopback TCP pair (port P data, P+1
//! control), and every connection accepted on them.
//!
//! The shell's event loop drives it: [`SwtpmFrontEnd::register`] its descriptors each turn,
//! [`SwtpmFrontEnd::on_ready_at`] for the tokens it [`owns`](SwtpmFrontEnd::owns), then
//! [`SwtpmFrontEnd::take_inbound`] gives the TPM commands to pass to the core (one
//! [`ConsumerId`] per data connection, so tpmd answers each connection in order) and the
//! consumers that left. The core's answers for the consumers it
//! [`owns_consumer`](SwtpmFrontEnd::owns_consumer) go to [`SwtpmFrontEnd::answer_at`], and
//! [`SwtpmFrontEnd::on_timeout`] is due at [`SwtpmFrontEnd::poll_timeout`]. Token and
//! consumer-id ranges are disjoint from the native consumer side's.
//!
//! Peers are served fairly (`tee_rt::stream`'s policy): each channel has a fixed number of
//! slots; a connection idle or stalled inside a frame past its deadline loses its slot; when
//! the slots run out the stalest connection that waits on nothing is evicted for the newcomer;
//! and each data connection has one command in tpmd's core at a time, the rest waiting their
//! turn here, so a client that floods delays another by at most one command per turn.
//!
//! The `_at` methods take the shell's clock; [`SwtpmFrontEnd::on_ready`] and
//! [`SwtpmFrontEnd::answer`] read the front-end's own, for drivers without one (tests). A
//! driver uses one of the two, never both.

mod accept;
mod channel;
mod socket;

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::os::fd::OwnedFd;
use std::vec::Vec;

use tee_client::hosted::front_end::FrontEndInbound;
use tee_client::ConsumerId;
use tee_proto::tpm::{TpmRequest, TpmResponse};
use tee_proto::{Frame, Header, TpmInterface};
use tee_rt::clock::{Clock, Millis};
use tee_rt::event::{Interest, PollSet, Readiness, Token};
use tee_rt::stream::slots::{Activity, SlotLimits, Slots};
use tee_rt::stream::turns::Turns;
use tracing::{debug, warn};

pub use self::channel::MAX_AWAITING;
use self::channel::{ControlChannel, DataChannel, Liveness};
pub use self::socket::{AnyListener, BACKLOG_LIMIT, READ_BUDGET};
use crate::swtpm::Ticket;

/// Tokens with this bit set name swtpm descriptors.
pub const SWTPM_TOKENS: u64 = 1 << 63;
const DATA_CONNECTION_BIT: u64 = 1 << 62;
const CONTROL_CONNECTION_BIT: u64 = 1 << 61;
/// Consumer ids of swtpm data connections start here, far above the native side's counter.
pub const SWTPM_CONSUMERS: u64 = 1 << 48;

/// Most data connections served at once. Each costs a descriptor and a poll entry; tcti-swtpm
/// opens one per command and closes it, so a few are live at a time. When they run out the
/// stalest is evicted, and a newcomer is closed only when every slot waits on tpmd.
pub const MAX_DATA_CONNECTIONS: usize = 64;
/// Most control connections served at once (each request is answered at once, so a control
/// connection only ever waits on its peer).
pub const MAX_CONTROL_CONNECTIONS: usize = 16;
/// A data connection with nothing started and nothing owed loses its slot after this long:
/// long-lived clients (tss-esapi) pause between commands, but a minute of nothing is gone.
pub const DATA_IDLE_MS: Millis = 60_000;
/// A control connection with nothing started loses its slot after this long: swtpm clients
/// open one for a request or two and close it.
pub const CONTROL_IDLE_MS: Millis = 10_000;
/// A command or control request must arrive whole, and an answer be taken, within this long
/// from its first byte: clients write a command at once (at most 4 KiB), so only a stalled or
/// hostile peer needs longer.
pub const FRAME_MS: Millis = 2_000;

const DATA_LIMITS: SlotLimits = SlotLimits {
    capacity: MAX_DATA_CONNECTIONS,
    idle_ms: DATA_IDLE_MS,
    frame_ms: FRAME_MS,
};
const CONTROL_LIMITS: SlotLimits = SlotLimits {
    capacity: MAX_CONTROL_CONNECTIONS,
    idle_ms: CONTROL_IDLE_MS,
    frame_ms: FRAME_MS,
};

/// Which channel a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Data,
    Control,
}

/// What the front-end has for the core.
#[derive(Debug, Default)]
pub struct Inbound {
    /// TPM commands to pass to the core's `handle_consumer`, in arrival order.
    pub requests: Vec<(ConsumerId, Frame<TpmRequest>)>,
    /// Data connections that ended; the core's `consumer_gone` should forget them.
    pub gone: Vec<ConsumerId>,
}

/// The swtpm listeners and connections of one tpmd.
#[derive(Debug)]
pub struct SwtpmFrontEnd {
    listeners: Vec<(Channel, AnyListener)>,
    data: BTreeMap<ConsumerId, DataChannel>,
    control: BTreeMap<u64, ControlChannel>,
    data_slots: Slots<ConsumerId>,
    control_slots: Slots<u64>,
    /// Commands waiting for their connection's turn in tpmd's core.
    turns: Turns<ConsumerId, Frame<TpmRequest>>,
    next_data: u64,
    next_control: u64,
    inbound: Inbound,
    /// The clock of [`SwtpmFrontEnd::on_ready`] and [`SwtpmFrontEnd::answer`].
    clock: Clock,
}

impl Default for SwtpmFrontEnd {
    fn default() -> SwtpmFrontEnd {
        SwtpmFrontEnd::new()
    }
}

impl SwtpmFrontEnd {
    /// A front-end without listeners.
    pub fn new() -> SwtpmFrontEnd {
        SwtpmFrontEnd {
            listeners: Vec::new(),
            data: BTreeMap::new(),
            control: BTreeMap::new(),
            data_slots: Slots::new(DATA_LIMITS),
            control_slots: Slots::new(CONTROL_LIMITS),
            turns: Turns::new(MAX_AWAITING),
            next_data: SWTPM_CONSUMERS,
            next_control: 0,
            inbound: Inbound::default(),
            clock: Clock::new(),
        }
    }

    /// A front-end on the data and control listeners init handed over.
    pub fn from_unix_fds(data: OwnedFd, control: OwnedFd) -> io::Result<SwtpmFrontEnd> {
        let mut front_end = SwtpmFrontEnd::new();
        front_end.add_listener(Channel::Data, AnyListener::unix_from_fd(data)?);
        front_end.add_listener(Channel::Control, AnyListener::unix_from_fd(control)?);
        Ok(front_end)
    }

    /// Also listens on 127.0.0.1: `port` for data and `port + 1` for control, as the swtpm
    /// TCTI expects. Port 0 for data picks a free port; the data port is returned.
    pub fn bind_tcp_loopback(&mut self, port: u16) -> io::Result<u16> {
        let data = TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
        let data_port = data.local_addr()?.port();
        let control_port = data_port.checked_add(1).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "no port after data port")
        })?;
        let control = TcpListener::bind((Ipv4Addr::LOCALHOST, control_port))?;
        self.add_listener(Channel::Data, AnyListener::tcp(data)?);
        self.add_listener(Channel::Control, AnyListener::tcp(control)?);
        Ok(data_port)
    }

    pub fn add_listener(&mut self, channel: Channel, listener: AnyListener) {
        self.listeners.push((channel, listener));
    }

    /// Registers every listener and connection for this turn of the event loop.
    pub fn register<'a>(&'a self, set: &mut PollSet<'a>) {
        for (index, (_, listener)) in self.listeners.iter().enumerate() {
            set.register(
                listener.as_fd(),
                Token(SWTPM_TOKENS | index as u64),
                Interest::READABLE,
            );
        }
        for (id, channel) in &self.data {
            if let Some(interest) = interest(channel.wants_read(), channel.wants_write()) {
                let token = Token(SWTPM_TOKENS | DATA_CONNECTION_BIT | id.0);
                set.register(channel.socket().as_fd(), token, interest);
            }
        }
        for (number, channel) in &self.control {
            if let Some(interest) = interest(channel.wants_read(), channel.wants_write()) {
                let token = Token(SWTPM_TOKENS | CONTROL_CONNECTION_BIT | number);
                set.register(channel.socket().as_fd(), token, interest);
            }
        }
    }

    /// Whether `token` names one of the front-end's descriptors.
    pub fn owns(token: Token) -> bool {
        token.0 & SWTPM_TOKENS != 0
    }

    /// Whether answers for `consumer` belong to the front-end.
    pub fn owns_consumer(consumer: ConsumerId) -> bool {
        consumer.0 >= SWTPM_CONSUMERS
    }

    /// Handles a ready descriptor of the front-end, on the front-end's own clock.
    pub fn on_ready(&mut self, readiness: &Readiness) {
        self.on_ready_at(self.clock.now(), readiness);
    }

    /// Handles a ready descriptor of the front-end at `now`.
    pub fn on_ready_at(&mut self, now: Millis, readiness: &Readiness) {
        let value = readiness.token.0 & !SWTPM_TOKENS;
        if value & DATA_CONNECTION_BIT != 0 {
            self.on_data_ready(now, ConsumerId(value & !DATA_CONNECTION_BIT), readiness);
        } else if value & CONTROL_CONNECTION_BIT != 0 {
            self.on_control_ready(now, value & !CONTROL_CONNECTION_BIT, readiness);
        } else if let Ok(index) = usize::try_from(value) {
            self.accept(now, index);
        }
    }

    /// tpmd's answer for a data connection, on the front-end's own clock.
    pub fn answer(&mut self, consumer: ConsumerId, frame: &Frame<TpmResponse>) {
        self.answer_at(self.clock.now(), consumer, frame);
    }

    /// tpmd's answer for a data connection at `now`: it ends the connection's turn, and its
    /// next command, if one waits, goes to the core.
    pub fn answer_at(&mut self, now: Millis, consumer: ConsumerId, frame: &Frame<TpmResponse>) {
        let Some(channel) = self.data.get_mut(&consumer) else {
            debug!(
                consumer = consumer.0,
                "swtpm answer for a closed connection dropped"
            );
            return;
        };
        let ticket = Ticket(frame.header.request_id);
        let unsent = channel.socket().unsent();
        let mut commands = Vec::new();
        let liveness = channel.on_answer(ticket, &frame.body, &mut commands);
        let progressed = channel.socket().unsent() < unsent || !channel.wants_write();
        if let Some(next) = self.turns.answered(consumer) {
            self.inbound.requests.push((consumer, next));
        }
        self.submit(consumer, commands);
        self.settle_data(now, consumer, liveness, progressed);
    }

    /// The earliest deadline of any connection.
    pub fn poll_timeout(&self) -> Option<Millis> {
        [
            self.data_slots.next_deadline(),
            self.control_slots.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Drops every connection past its deadline at `now` (data connections are reported as
    /// gone through [`SwtpmFrontEnd::take_inbound`]).
    pub fn on_timeout(&mut self, now: Millis) {
        for consumer in self.data_slots.expired(now) {
            warn!(
                consumer = consumer.0,
                "swtpm data connection idle or stalled: dropped"
            );
            self.drop_data(consumer);
        }
        for number in self.control_slots.expired(now) {
            warn!(number, "swtpm control connection idle or stalled: dropped");
            self.control_slots.remove(number);
            self.control.remove(&number);
        }
    }

    /// What accumulated for the core since the last call.
    pub fn take_inbound(&mut self) -> Inbound {
        core::mem::take(&mut self.inbound)
    }

    /// Live connections (data, control).
    pub fn connections(&self) -> (usize, usize) {
        (self.data.len(), self.control.len())
    }

    fn on_data_ready(&mut self, now: Millis, consumer: ConsumerId, readiness: &Readiness) {
        let Some(channel) = self.data.get_mut(&consumer) else {
            return;
        };
        let unsent = channel.socket().unsent();
        let mut liveness = Ok(Liveness::Open);
        if readiness.writable {
            liveness = channel.on_writable();
        }
        let mut commands = Vec::new();
        if liveness.is_ok() && readiness.should_read() && channel.wants_read() {
            liveness = channel.on_readable(&mut commands);
        }
        let progressed = !commands.is_empty() || channel.socket().unsent() < unsent;
        self.submit(consumer, commands);
        self.settle_data(now, consumer, liveness, progressed);
    }

    /// Commands of a data connection: the one whose turn it is goes to the core, the rest
    /// wait. Generation 0 both ways: a swtpm client never addresses an older tpmd.
    fn submit(&mut self, consumer: ConsumerId, commands: Vec<(Ticket, TpmRequest)>) {
        for (ticket, body) in commands {
            let frame = Frame {
                header: Header::new(0, 0, ticket.0),
                body,
            };
            match self.turns.push(consumer, frame) {
                Ok(Some(frame)) => self.inbound.requests.push((consumer, frame)),
                Ok(None) => {}
                Err((full, _)) => {
                    // The channel takes no more commands than the queue holds.
                    warn!(consumer = consumer.0, %full, "swtpm connection over its queue: dropped");
                    self.drop_data(consumer);
                    return;
                }
            }
        }
    }

    fn on_control_ready(&mut self, now: Millis, number: u64, readiness: &Readiness) {
        let Some(channel) = self.control.get_mut(&number) else {
            return;
        };
        let unsent = channel.socket().unsent();
        let was_partial = channel.has_partial();
        let mut liveness = Ok(Liveness::Open);
        if readiness.writable {
            liveness = channel.on_writable();
        }
        if liveness.is_ok() && readiness.should_read() && channel.wants_read() {
            liveness = channel.on_readable();
        }
        match liveness {
            Ok(Liveness::Open) => {
                // A request answered shows as answer bytes queued or sent.
                let progressed =
                    channel.socket().unsent() != unsent || (was_partial && !channel.has_partial());
                let activity = Activity {
                    progressed,
                    partial: channel.has_partial(),
                    owed: 0,
                    unsent: channel.wants_write(),
                };
                self.control_slots.observe(now, number, activity);
            }
            Ok(Liveness::Finished) => {
                self.control_slots.remove(number);
                self.control.remove(&number);
            }
            Err(error) => {
                debug!(%error, "swtpm control connection dropped");
                self.control_slots.remove(number);
                self.control.remove(&number);
            }
        }
    }

    /// Tells the slot policy what a data connection is doing, or drops one that finished or
    /// failed and tells the core.
    fn settle_data(
        &mut self,
        now: Millis,
        consumer: ConsumerId,
        liveness: io::Result<Liveness>,
        progressed: bool,
    ) {
        match liveness {
            Ok(Liveness::Open) => {
                if let Some(channel) = self.data.get(&consumer) {
                    let activity = Activity {
                        progressed,
                        partial: channel.has_partial(),
                        owed: channel.awaiting(),
                        unsent: channel.wants_write(),
                    };
                    self.data_slots.observe(now, consumer, activity);
                }
                return;
            }
            Ok(Liveness::Finished) => {}
            Err(error) => debug!(consumer = consumer.0, %error, "swtpm data connection dropped"),
        }
        self.drop_data(consumer);
    }

    /// Closes a data connection and tells the core it is gone.
    fn drop_data(&mut self, consumer: ConsumerId) {
        self.data_slots.remove(consumer);
        self.turns.remove(consumer);
        if self.data.remove(&consumer).is_some() {
            self.inbound.gone.push(consumer);
        }
    }
}

fn interest(readable: bool, writable: bool) -> Option<Interest> {
    (readable || writable).then_some(Interest { readable, writable })
}

/// The front-end as tpmd's hosted shell drives it.
impl tee_client::hosted::front_end::FrontEnd<TpmInterface> for SwtpmFrontEnd {
    fn register<'a>(&'a self, set: &mut PollSet<'a>) {
        SwtpmFrontEnd::register(self, set);
    }

    fn owns(&self, token: Token) -> bool {
        SwtpmFrontEnd::owns(token)
    }

    fn on_ready(&mut self, now: Millis, readiness: &Readiness) {
        SwtpmFrontEnd::on_ready_at(self, now, readiness);
    }

    fn owns_consumer(&self, consumer: ConsumerId) -> bool {
        SwtpmFrontEnd::owns_consumer(consumer)
    }

    fn answer(&mut self, now: Millis, consumer: ConsumerId, frame: &Frame<TpmResponse>) {
        SwtpmFrontEnd::answer_at(self, now, consumer, frame);
    }

    fn poll_timeout(&self) -> Option<Millis> {
        SwtpmFrontEnd::poll_timeout(self)
    }

    fn on_timeout(&mut self, now: Millis) {
        SwtpmFrontEnd::on_timeout(self, now);
    }

    fn take_inbound(&mut self) -> FrontEndInbound<TpmRequest> {
        let Inbound { requests, gone } = SwtpmFrontEnd::take_inbound(self);
        FrontEndInbound { requests, gone }
    }
}
