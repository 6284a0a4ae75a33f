//! The wires between the cores: one FIFO per directed channel, as Unix sockets are, with the
//! order *between* channels chosen by the seed.

use std::collections::{BTreeMap, VecDeque};

use optee_abi::smc::Regs;
use tee_proto::bnxt::{BnxtRequest, BnxtResponse};
use tee_proto::lifecycle::{InitRequest, ServerEvent, ServerKind};
use tee_proto::teed::{TeedRequest, TeedResponse};
use tee_proto::tpm::{TpmRequest, TpmResponse};
use tee_proto::Frame;
use teed::{ClientId, SmcToken};

use super::grants::HelloHandles;

/// A directed channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Channel {
    InitTo(ServerKind),
    ToInit(ServerKind),
    ClientToTeed(ClientId),
    TeedToClient(ClientId),
    /// SMCs teed asked for, in the order it asked (one conduit).
    SmcCall,
    /// Registers the secure world returned, not yet seen by teed.
    SmcReturn,
    ConsumerToTpmd,
    TpmdToConsumer,
    NicToBnxtd,
    BnxtdToNic,
}

/// A message in flight.
#[derive(Debug, Clone)]
pub enum Message {
    /// A frame from init, with the handles a `Hello` grants.
    Init(Frame<InitRequest>, HelloHandles),
    Event(Frame<ServerEvent>),
    TeedRequest(Frame<TeedRequest>),
    TeedResponse(Frame<TeedResponse>),
    Smc(SmcToken, Regs),
    TpmRequest(u64, Frame<TpmRequest>),
    TpmResponse(u64, Frame<TpmResponse>),
    BnxtRequest(u64, Frame<BnxtRequest>),
    BnxtResponse(u64, Frame<BnxtResponse>),
}

/// Every channel's queue.
#[derive(Debug, Default)]
pub struct Net {
    queues: BTreeMap<Channel, VecDeque<Message>>,
}

impl Net {
    pub fn push(&mut self, channel: Channel, message: Message) {
        self.queues.entry(channel).or_default().push_back(message);
    }

    /// Channels with something to deliver, in a stable order.
    pub fn ready(&self) -> Vec<Channel> {
        self.queues
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(c, _)| *c)
            .collect()
    }

    pub fn pop(&mut self, channel: Channel) -> Option<Message> {
        self.queues.get_mut(&channel)?.pop_front()
    }

    /// Drops every channel `keep` refuses (an endpoint closed).
    pub fn retain(&mut self, keep: impl Fn(&Channel) -> bool) {
        self.queues.retain(|c, _| keep(c));
    }

    /// Something waits on `channel`.
    pub fn has(&self, channel: Channel) -> bool {
        self.queues.get(&channel).is_some_and(|q| !q.is_empty())
    }

    pub fn is_empty(&self) -> bool {
        self.queues.values().all(|q| q.is_empty())
    }
}
