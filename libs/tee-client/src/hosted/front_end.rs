//! Consumer front-ends besides native frames (tpmd's swtpm socket protocol). A front-end owns
//! the listener attachments after the native one and every connection accepted on them; the
//! shell polls its descriptors, hands it the ready ones, passes the requests it decoded to the
//! core and routes the core's answers back to it.

use std::os::fd::OwnedFd;
use std::vec::Vec;

use crate::config::Millis;
use crate::ConsumerId;
use tee_proto::grants::SwtpmGrants;
use tee_proto::{Frame, Interface};

use tee_rt::event::{PollSet, Readiness, Token};

/// Requests for the core and consumers that left, as a front-end collected them.
#[derive(Debug)]
pub struct FrontEndInbound<Request> {
    pub requests: Vec<(ConsumerId, Frame<Request>)>,
    pub gone: Vec<ConsumerId>,
}

/// A consumer front-end driven by the client shell. Its tokens and consumer ids must not
/// collide with the native side's (tokens below 2^63, consumer ids counted from 1).
pub trait FrontEnd<I: Interface> {
    /// Registers the front-end's descriptors for this turn.
    fn register<'a>(&'a self, set: &mut PollSet<'a>);
    /// Whether `token` is one of the front-end's.
    fn owns(&self, token: Token) -> bool;
    /// One of its descriptors is ready, at `now` (the shell's clock).
    fn on_ready(&mut self, now: Millis, readiness: &Readiness);
    /// Whether answers for `consumer` go to the front-end.
    fn owns_consumer(&self, consumer: ConsumerId) -> bool;
    /// The core's answer for one of its consumers.
    fn answer(&mut self, now: Millis, consumer: ConsumerId, frame: &Frame<I::Response>);
    /// What accumulated for the core since the last call.
    fn take_inbound(&mut self) -> FrontEndInbound<I::Request>;
    /// The front-end's earliest deadline (a connection idle or stalled too long).
    fn poll_timeout(&self) -> Option<Millis> {
        None
    }
    /// Time has reached `now`: drop the connections past their deadline (reported as gone
    /// through [`FrontEnd::take_inbound`]).
    fn on_timeout(&mut self, _now: Millis) {}
}

/// No front-end: swtpm listeners, if granted, are closed.
#[derive(Debug, Default)]
pub struct NoFrontEnd;

impl NoFrontEnd {
    /// Builds the front-end from the swtpm grants: closes them.
    pub fn from_grants(swtpm: Option<SwtpmGrants<OwnedFd>>) -> std::io::Result<NoFrontEnd> {
        if swtpm.is_some() {
            tracing::warn!("swtpm listeners granted to a server without that front-end closed");
        }
        Ok(NoFrontEnd)
    }
}

impl<I: Interface> FrontEnd<I> for NoFrontEnd {
    fn register<'a>(&'a self, _set: &mut PollSet<'a>) {}

    fn owns(&self, _token: Token) -> bool {
        false
    }

    fn on_ready(&mut self, _now: Millis, _readiness: &Readiness) {}

    fn owns_consumer(&self, _consumer: ConsumerId) -> bool {
        false
    }

    fn answer(&mut self, _now: Millis, _consumer: ConsumerId, _frame: &Frame<I::Response>) {}

    fn take_inbound(&mut self) -> FrontEndInbound<I::Request> {
        FrontEndInbound {
            requests: Vec::new(),
            gone: Vec::new(),
        }
    }
}
