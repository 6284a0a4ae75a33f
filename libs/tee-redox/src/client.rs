//! The scheme adapter of a client daemon (tpmd, bnxtd), generic over the trusted application it
//! fronts and over how its consumers' bytes become requests ([`ConsumerCodec`]).
//!
//! Paths: the consumer path ([`ConsumerCodec::PATH`]: write one request, read its answer) and
//! `control` (the lifecycle, root only). The core is `tee_client::engine::Client`, unchanged: the
//! adapter hands it consumer requests and teed's replies, and carries out its effects — answers
//! into the consumer's handle, frames for teed into a queue the main writes to teed's scheme,
//! lifecycle events to the control handle. Answers need a round trip to teed, so `call` is not
//! offered on the consumer path; a consumer reads (blocking, or after `fevent`).

use std::marker::PhantomData;

use optee_abi::mem::PhysMem;
use tee_client::engine::{Client, Effect, ResponseOf, TaService};
use tee_client::{ClientConfig, ConsumerId};
use tee_proto::lifecycle::{ClientWindows, RamWindow, ServerKind};
use tee_proto::teed::TeedResponse;
use tee_proto::{accept_request, Frame, Generation, Incoming, Interface, FRAME_MAX};

use crate::adapter::{Ready, SchemeAdapter, Startup};
use crate::boot;
use crate::caller::Caller;
use crate::error::SchemeError;
use crate::handles::Handles;
use crate::lifecycle::{self, Lifecycle, Screened, CONTROL_PATH};
use crate::outbox::Outbox;
use crate::Millis;

/// What a consumer write turned into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<I: Interface> {
    /// A request for the core.
    Request(Frame<I::Request>),
    /// Answered at once (stale generation, undecodable body).
    Answer(Frame<I::Response>),
    /// Refused with an errno.
    Reject(SchemeError),
}

/// How a consumer path speaks: its name, who may open it, and its bytes both ways.
pub trait ConsumerCodec<I: Interface> {
    /// The path consumers open.
    const PATH: &'static str;
    /// The largest write accepted.
    const MAX_WRITE: usize;

    /// Whether `caller` may open the path.
    fn may_open(caller: &Caller) -> bool;

    /// One write as a request. `request_id` is the handle's own counter, for codecs whose bytes
    /// carry no header; `generation` is the daemon's, for screening stale frames.
    fn decode(bytes: &[u8], request_id: u32, generation: Generation) -> Decoded<I>;

    /// One answer as the bytes a read returns.
    fn encode(frame: &Frame<I::Response>) -> Result<Vec<u8>, SchemeError>;
}

/// tee-proto frames both ways: the codec of consumers that speak the interface natively.
pub fn decode_frame<I: Interface>(bytes: &[u8], generation: Generation) -> Decoded<I> {
    match accept_request::<I>(bytes, generation) {
        Incoming::Request(frame) => Decoded::Request(frame),
        Incoming::Answer(answer) => Decoded::Answer(answer),
        Incoming::Drop(error) => {
            tracing::debug!(%error, "undecodable consumer frame refused");
            Decoded::Reject(SchemeError::Malformed)
        }
    }
}

/// Encodes a frame for a reader.
pub fn encode_frame<T: serde::Serialize>(frame: &Frame<T>) -> Result<Vec<u8>, SchemeError> {
    let mut buf = vec![0u8; FRAME_MAX];
    tee_proto::encode(frame, &mut buf)
        .map(<[u8]>::to_vec)
        .map_err(|error| {
            tracing::error!(%error, "answer does not encode");
            SchemeError::Malformed
        })
}

/// What a handle of a client scheme is.
#[derive(Debug)]
enum ClientPath {
    Consumer { outbox: Outbox, next_request: u32 },
    Control,
}

/// A client daemon's scheme over its core.
pub struct ClientScheme<S: TaService, C, M> {
    name: &'static str,
    core: Client<S>,
    mem: M,
    window: RamWindow,
    handles: Handles<ClientPath>,
    lifecycle: Lifecycle,
    to_teed: Vec<Vec<u8>>,
    readable: Vec<usize>,
    now: Millis,
    codec: PhantomData<C>,
}

impl<S, C, M> ClientScheme<S, C, M>
where
    S: TaService + Default,
    C: ConsumerCodec<S::Interface>,
    M: PhysMem,
{
    /// A scheme named `name` over a fresh core, with `mem` the client's window at `window`.
    pub fn new(name: &'static str, config: ClientConfig, mem: M, window: RamWindow) -> Self {
        ClientScheme {
            name,
            core: Client::new(config),
            mem,
            window,
            handles: Handles::default(),
            lifecycle: Lifecycle::default(),
            to_teed: Vec::new(),
            readable: Vec::new(),
            now: 0,
            codec: PhantomData,
        }
    }
}

impl<S, C, M> ClientScheme<S, C, M>
where
    S: TaService,
    C: ConsumerCodec<S::Interface>,
    M: PhysMem,
{
    /// Sends the core its own `Hello` as incarnation `generation`; teed's generation is learnt
    /// from its replies.
    pub fn start(&mut self, now: Millis, generation: Generation) {
        self.now = now;
        let none = RamWindow { base: 0, len: 0 };
        let hello = boot::hello(generation, 0, self.window, none, ClientWindows::NONE);
        self.core.handle_init(now, &mut self.mem, hello);
        self.carry_out();
    }

    /// Frames for teed, in order: the main writes each to its handle on teed's scheme.
    pub fn take_to_teed(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.to_teed)
    }

    /// A frame read from teed's scheme.
    pub fn on_teed(&mut self, bytes: &[u8]) {
        match tee_proto::decode::<TeedResponse>(bytes) {
            Ok(frame) => {
                self.core.handle_teed(self.now, &mut self.mem, frame);
                self.carry_out();
            }
            Err(error) => tracing::warn!(%error, "malformed frame from teed dropped"),
        }
    }

    /// The handle on teed's scheme failed: what waits for teed fails now ("retry").
    pub fn teed_gone(&mut self) {
        self.core.teed_unreachable(self.now, &mut self.mem);
        self.carry_out();
    }

    /// The core (for status and tests).
    pub fn core(&self) -> &Client<S> {
        &self.core
    }

    /// The client's kind.
    pub fn kind(&self) -> ServerKind {
        S::KIND
    }

    fn carry_out(&mut self) {
        while let Some(effect) = self.core.poll() {
            match effect {
                Effect::ToTeed(frame) => {
                    if let Ok(bytes) = encode_frame(&frame) {
                        self.to_teed.push(bytes);
                    }
                }
                Effect::ToInit(frame) => {
                    if let Some(id) = self.lifecycle.on_event(frame) {
                        self.readable.push(id);
                    }
                }
                Effect::ToConsumer { consumer, frame } => self.answer_consumer(consumer, &frame),
            }
        }
    }

    fn answer_consumer(&mut self, consumer: ConsumerId, frame: &Frame<ResponseOf<S>>) {
        let Ok(id) = usize::try_from(consumer.0) else {
            return;
        };
        let Some(ClientPath::Consumer { outbox, .. }) = self.handles.by_id_mut(id) else {
            tracing::debug!(consumer = consumer.0, "answer for a closed handle dropped");
            return;
        };
        let pushed =
            C::encode(frame).and_then(|bytes| outbox.push(Some(frame.header.request_id), bytes));
        match pushed {
            Ok(()) => self.readable.push(id),
            Err(error) => tracing::warn!(consumer = consumer.0, %error, "answer dropped"),
        }
    }

    fn write_consumer(
        &mut self,
        id: usize,
        buf: &[u8],
        caller: &Caller,
    ) -> Result<usize, SchemeError> {
        if buf.len() > C::MAX_WRITE {
            return Err(SchemeError::TooLarge {
                len: buf.len(),
                max: C::MAX_WRITE,
            });
        }
        let generation = self.core.generation();
        let ClientPath::Consumer {
            outbox,
            next_request,
        } = self.handles.get_mut(id, caller)?
        else {
            return Err(SchemeError::NotSupported);
        };
        let request_id = *next_request;
        *next_request = next_request.wrapping_add(1);
        match C::decode(buf, request_id, generation) {
            Decoded::Request(frame) => {
                self.core
                    .handle_consumer(self.now, &mut self.mem, ConsumerId(id as u64), frame);
                self.carry_out();
            }
            Decoded::Answer(answer) => {
                let bytes = C::encode(&answer)?;
                outbox.push(Some(answer.header.request_id), bytes)?;
                self.readable.push(id);
            }
            Decoded::Reject(error) => return Err(error),
        }
        Ok(buf.len())
    }

    fn write_control(&mut self, buf: &[u8]) -> Result<usize, SchemeError> {
        match self.lifecycle.screen(buf, self.core.generation())? {
            Screened::Forward(frame) => {
                self.core.handle_init(self.now, &mut self.mem, frame);
                self.carry_out();
            }
            Screened::Answer(answer) => {
                if let Some(id) = self.lifecycle.answer(&answer) {
                    self.readable.push(id);
                }
            }
        }
        Ok(buf.len())
    }
}

/// Whether `path` (without slashes at either end) names the consumer path.
fn trimmed(path: &str) -> &str {
    path.trim_matches('/')
}

impl<S, C, M> SchemeAdapter for ClientScheme<S, C, M>
where
    S: TaService,
    C: ConsumerCodec<S::Interface>,
    M: PhysMem,
{
    fn name(&self) -> &'static str {
        self.name
    }

    fn open(&mut self, path: &str, caller: &Caller) -> Result<usize, SchemeError> {
        match trimmed(path) {
            path if path == C::PATH => {
                if !C::may_open(caller) {
                    return Err(SchemeError::Denied);
                }
                let consumer = ClientPath::Consumer {
                    outbox: Outbox::default(),
                    next_request: 1,
                };
                Ok(self.handles.insert(caller, consumer))
            }
            CONTROL_PATH => {
                self.lifecycle.may_open(caller)?;
                let id = self.handles.insert(caller, ClientPath::Control);
                self.lifecycle.opened(id);
                Ok(id)
            }
            _ => Err(SchemeError::NoSuchPath),
        }
    }

    fn read(&mut self, id: usize, buf: &mut [u8], caller: &Caller) -> Result<usize, SchemeError> {
        match self.handles.get_mut(id, caller)? {
            ClientPath::Consumer { outbox, .. } => outbox.pop_into(buf),
            ClientPath::Control => self.lifecycle.read(buf),
        }
    }

    fn write(&mut self, id: usize, buf: &[u8], caller: &Caller) -> Result<usize, SchemeError> {
        match self.handles.get(id, caller)? {
            ClientPath::Consumer { .. } => self.write_consumer(id, buf, caller),
            ClientPath::Control => self.write_control(buf),
        }
    }

    fn call(
        &mut self,
        id: usize,
        payload: &mut [u8],
        request_len: usize,
        caller: &Caller,
    ) -> Result<usize, SchemeError> {
        match self.handles.get(id, caller)? {
            ClientPath::Consumer { .. } => Err(SchemeError::NotSupported),
            ClientPath::Control => {
                let request = lifecycle::call_request(payload, request_len)?;
                let request_id = lifecycle::request_id(&request).ok_or(SchemeError::Malformed)?;
                self.write_control(&request)?;
                Ok(self
                    .lifecycle
                    .take_answer(request_id, payload)?
                    .unwrap_or(0))
            }
        }
    }

    fn ready(&self, id: usize, caller: &Caller) -> Result<Ready, SchemeError> {
        let read = match self.handles.get(id, caller)? {
            ClientPath::Consumer { outbox, .. } => !outbox.is_empty(),
            ClientPath::Control => self.lifecycle.readable(),
        };
        Ok(Ready { read, write: true })
    }

    fn mmap_prep(
        &mut self,
        id: usize,
        _offset: u64,
        _size: usize,
        caller: &Caller,
    ) -> Result<usize, SchemeError> {
        self.handles.get(id, caller)?;
        Err(SchemeError::NotSupported)
    }

    fn close(&mut self, id: usize) {
        match self.handles.remove(id) {
            Some(ClientPath::Consumer { .. }) => self.core.consumer_gone(ConsumerId(id as u64)),
            Some(ClientPath::Control) => self.lifecycle.closed(id),
            None => {}
        }
    }

    fn take_readable(&mut self) -> Vec<usize> {
        let mut readable = std::mem::take(&mut self.readable);
        readable.sort_unstable();
        readable.dedup();
        readable
    }

    fn advance(&mut self, now: Millis) {
        self.now = now;
        if self.core.poll_timeout().is_some_and(|at| at <= now) {
            self.core.handle_timeout(now, &mut self.mem);
            self.carry_out();
        }
    }

    fn poll_timeout(&self) -> Option<Millis> {
        self.core.poll_timeout()
    }

    fn startup(&self) -> Startup {
        self.lifecycle.startup()
    }
}
