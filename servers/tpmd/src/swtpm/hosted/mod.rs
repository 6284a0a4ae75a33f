//! The swtpm front-end on real sockets, for tpmd's hosted shell: the listeners init hands over
//! (`swtpm.sock`, `swtpm.sock.ctrl`), optionally a loopback TCP pair (port P data, P+1
//! control), and every connection accepted on them.
//!
//! The shell's event loop drives it: [`SwtpmFrontEnd::register`] its descriptors each turn,
//! [`SwtpmFrontEnd::on_ready`] for the tokens it [`owns`](SwtpmFrontEnd::owns), then
//! [`SwtpmFrontEnd::take_inbound`] gives the TPM commands to pass to the core (one
//! [`ConsumerId`] per data connection, so tpmd answers each connection in order) and the
//! consumers that left. The core's answers for the consumers it
//! [`owns_consumer`](SwtpmFrontEnd::owns_consumer) go to [`SwtpmFrontEnd::answer`].
//! Token and consumer-id ranges are disjoint from the native consumer side's.

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
use tee_rt::event::{Interest, PollSet, Readiness, Token};
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

/// Most data connections served at once; later ones are closed at accept.
pub const MAX_DATA_CONNECTIONS: usize = 64;
/// Most control connections served at once.
pub const MAX_CONTROL_CONNECTIONS: usize = 16;

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
#[derive(Debug, Default)]
pub struct SwtpmFrontEnd {
    listeners: Vec<(Channel, AnyListener)>,
    data: BTreeMap<ConsumerId, DataChannel>,
    control: BTreeMap<u64, ControlChannel>,
    next_data: u64,
    next_control: u64,
    inbound: Inbound,
}

impl SwtpmFrontEnd {
    /// A front-end without listeners.
    pub fn new() -> SwtpmFrontEnd {
        SwtpmFrontEnd {
            next_data: SWTPM_CONSUMERS,
            ..SwtpmFrontEnd::default()
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

    /// Handles a ready descriptor of the front-end.
    pub fn on_ready(&mut self, readiness: &Readiness) {
        let value = readiness.token.0 & !SWTPM_TOKENS;
        if value & DATA_CONNECTION_BIT != 0 {
            self.on_data_ready(ConsumerId(value & !DATA_CONNECTION_BIT), readiness);
        } else if value & CONTROL_CONNECTION_BIT != 0 {
            self.on_control_ready(value & !CONTROL_CONNECTION_BIT, readiness);
        } else if let Ok(index) = usize::try_from(value) {
            self.accept(index);
        }
    }

    /// tpmd's answer for a data connection.
    pub fn answer(&mut self, consumer: ConsumerId, frame: &Frame<TpmResponse>) {
        let Some(channel) = self.data.get_mut(&consumer) else {
            debug!(
                consumer = consumer.0,
                "swtpm answer for a closed connection dropped"
            );
            return;
        };
        let ticket = Ticket(frame.header.request_id);
        let liveness = channel.on_answer(ticket, &frame.body);
        self.settle_data(consumer, liveness);
    }

    /// What accumulated for the core since the last call.
    pub fn take_inbound(&mut self) -> Inbound {
        core::mem::take(&mut self.inbound)
    }

    /// Live connections (data, control).
    pub fn connections(&self) -> (usize, usize) {
        (self.data.len(), self.control.len())
    }

    fn accept(&mut self, index: usize) {
        let Some((channel, listener)) = self.listeners.get(index) else {
            return;
        };
        loop {
            let socket = match listener.accept() {
                Ok(Some(socket)) => socket,
                Ok(None) => return,
                Err(error) => {
                    warn!(%error, "swtpm accept failed");
                    return;
                }
            };
            match channel {
                Channel::Data if self.data.len() >= MAX_DATA_CONNECTIONS => {
                    warn!(
                        limit = MAX_DATA_CONNECTIONS,
                        "swtpm data connection refused: too many"
                    );
                }
                Channel::Data => {
                    let id = ConsumerId(self.next_data);
                    self.next_data += 1;
                    debug!(consumer = id.0, "swtpm data connection");
                    self.data.insert(id, DataChannel::new(socket));
                }
                Channel::Control if self.control.len() >= MAX_CONTROL_CONNECTIONS => {
                    warn!(
                        limit = MAX_CONTROL_CONNECTIONS,
                        "swtpm control connection refused"
                    );
                }
                Channel::Control => {
                    let number = self.next_control;
                    self.next_control += 1;
                    self.control.insert(number, ControlChannel::new(socket));
                }
            }
        }
    }

    fn on_data_ready(&mut self, consumer: ConsumerId, readiness: &Readiness) {
        let Some(channel) = self.data.get_mut(&consumer) else {
            return;
        };
        let mut liveness = Ok(Liveness::Open);
        if readiness.writable {
            liveness = channel.on_writable();
        }
        if liveness.is_ok() && readiness.should_read() && channel.wants_read() {
            let mut commands = Vec::new();
            liveness = channel.on_readable(&mut commands);
            for (ticket, body) in commands {
                // Generation 0 both ways: a swtpm client never addresses an older tpmd.
                let header = Header::new(0, 0, ticket.0);
                self.inbound
                    .requests
                    .push((consumer, Frame { header, body }));
            }
        }
        self.settle_data(consumer, liveness);
    }

    fn on_control_ready(&mut self, number: u64, readiness: &Readiness) {
        let Some(channel) = self.control.get_mut(&number) else {
            return;
        };
        let mut liveness = Ok(Liveness::Open);
        if readiness.writable {
            liveness = channel.on_writable();
        }
        if liveness.is_ok() && readiness.should_read() && channel.wants_read() {
            liveness = channel.on_readable();
        }
        match liveness {
            Ok(Liveness::Open) => {}
            Ok(Liveness::Finished) => {
                self.control.remove(&number);
            }
            Err(error) => {
                debug!(%error, "swtpm control connection dropped");
                self.control.remove(&number);
            }
        }
    }

    /// Drops a data connection that finished or failed, and tells the core.
    fn settle_data(&mut self, consumer: ConsumerId, liveness: io::Result<Liveness>) {
        match liveness {
            Ok(Liveness::Open) => return,
            Ok(Liveness::Finished) => {}
            Err(error) => debug!(consumer = consumer.0, %error, "swtpm data connection dropped"),
        }
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

    fn on_ready(&mut self, readiness: &Readiness) {
        SwtpmFrontEnd::on_ready(self, readiness);
    }

    fn owns_consumer(&self, consumer: ConsumerId) -> bool {
        SwtpmFrontEnd::owns_consumer(consumer)
    }

    fn answer(&mut self, consumer: ConsumerId, frame: &Frame<TpmResponse>) {
        SwtpmFrontEnd::answer(self, consumer, frame);
    }

    fn take_inbound(&mut self) -> FrontEndInbound<TpmRequest> {
        let Inbound { requests, gone } = SwtpmFrontEnd::take_inbound(self);
        FrontEndInbound { requests, gone }
    }
}
