//! Test support for client cores built on [`crate::engine::Client`] (cargo feature `testing`).
//!
//! Three pieces, all on a virtual clock and without any IO:
//! * [`TestRam`]: normal-world RAM as a plain byte vector at [`RAM_BASE`];
//! * [`FakeTeed`]: a teed that opens sessions, hands out buffers and forwards `Invoke` to a
//!   [`FakeTa`] (the per-client part: the fake fTPM, the fake BNXT TA);
//! * [`Harness`]: the core under test wired to both, with helpers that drive init, teed and
//!   consumer frames into it and collect what it says.
//!
//! These helpers panic on anything a test did not expect: a failed test, not an input path.
//! The module needs only `alloc`, so the crate stays `no_std` with the feature on.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use optee_abi::mem::{MemError, PhysMem};
use tee_proto::lifecycle::{
    BootInfo, BootKind, InitRequest, RamWindow, ServerEvent, ShutdownReason, ShutdownReport,
};
use tee_proto::teed::{Param, ShmId, TeedRequest, TeedResponse};
use tee_proto::{Frame, Generation, Header, WireError};

use crate::config::{ClientConfig, ClientSeedBugs, Millis};
use crate::engine::{Client, ConsumerId, Effect, RequestOf, ResponseOf, TaService};

/// Where [`TestRam`] starts.
pub const RAM_BASE: u64 = 0x4000_0000;
/// The generation the fake teed starts with and the clients' `Hello` names.
pub const TEED_GENERATION: Generation = 7;
/// The virtual time a [`Harness`] starts at, in milliseconds.
pub const START_MS: Millis = 1_000;

/// No window: what a client's `Hello` carries for its RAM and journal.
const NO_WINDOW: RamWindow = RamWindow { base: 0, len: 0 };
/// The fake teed hands out buffers from here on, page-aligned.
const FIRST_SHM_PA: u64 = RAM_BASE + 0x1_0000;
const PAGE: u64 = 4096;

/// Normal-world RAM as a plain byte vector at [`RAM_BASE`].
pub struct TestRam {
    base: u64,
    bytes: Vec<u8>,
}

impl TestRam {
    /// `len` zeroed bytes from [`RAM_BASE`] on.
    pub fn new(len: usize) -> TestRam {
        TestRam {
            base: RAM_BASE,
            bytes: vec![0; len],
        }
    }

    fn range(&self, pa: u64, len: usize) -> Result<Range<usize>, MemError> {
        if !self.contains(pa, len as u64) {
            return Err(MemError {
                pa,
                len: len as u64,
            });
        }
        let start = (pa - self.base) as usize;
        Ok(start..start + len)
    }

    /// Writes `data` at `pa`; panics outside the RAM.
    pub fn write_bytes(&mut self, pa: u64, data: &[u8]) {
        if let Err(error) = self.write(pa, data) {
            panic!("test write outside the RAM: {error:?}");
        }
    }

    /// The `len` bytes at `pa`; panics outside the RAM.
    pub fn slice(&self, pa: u64, len: usize) -> &[u8] {
        match self.range(pa, len) {
            Ok(range) => &self.bytes[range],
            Err(error) => panic!("test read outside the RAM: {error:?}"),
        }
    }
}

impl PhysMem for TestRam {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let range = self.range(pa, buf.len())?;
        buf.copy_from_slice(&self.bytes[range]);
        Ok(())
    }

    fn write(&mut self, pa: u64, data: &[u8]) -> Result<(), MemError> {
        let range = self.range(pa, data.len())?;
        self.bytes[range].copy_from_slice(data);
        Ok(())
    }

    fn contains(&self, pa: u64, len: u64) -> bool {
        let end = self.base + self.bytes.len() as u64;
        pa >= self.base && pa.checked_add(len).is_some_and(|e| e <= end)
    }
}

/// The buffers a [`FakeTeed`] has handed out: shm id → (pa, size).
pub type ShmTable = BTreeMap<ShmId, (u64, u32)>;

/// The trusted application behind a [`FakeTeed`], and the client core it pairs with.
pub trait FakeTa: Default {
    /// The client front end this TA serves.
    type Service: TaService + Default;
    /// The generation the client under test is given in its `Hello`.
    const CLIENT_GENERATION: Generation;
    /// How much RAM the harness gives the client.
    const RAM_LEN: usize;

    /// Answers an `Invoke` on an open session; `shms` are the buffers teed handed out.
    fn invoke(
        &mut self,
        ram: &mut TestRam,
        shms: &ShmTable,
        func: u32,
        params: &[Param],
    ) -> TeedResponse;
}

/// How the fake teed treats what it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeedMode {
    /// Answers every request at once.
    Auto,
    /// Keeps requests for the test to answer (or not).
    Hold,
}

/// A teed with one fake TA behind it.
pub struct FakeTeed<T> {
    pub generation: Generation,
    pub mode: TeedMode,
    /// Every request received, in order.
    pub log: Vec<Frame<TeedRequest>>,
    /// Open sessions.
    pub sessions: BTreeMap<u32, ()>,
    pub shms: ShmTable,
    next_id: u32,
    next_pa: u64,
    /// Error answered to every OpenSession.
    pub open_error: Option<WireError>,
    /// Error answered to every ShmAlloc.
    pub alloc_error: Option<WireError>,
    /// The TA, for the test to script and inspect.
    pub ta: T,
}

impl<T: FakeTa> Default for FakeTeed<T> {
    fn default() -> Self {
        FakeTeed::new()
    }
}

impl<T: FakeTa> FakeTeed<T> {
    pub fn new() -> FakeTeed<T> {
        FakeTeed {
            generation: TEED_GENERATION,
            mode: TeedMode::Auto,
            log: Vec::new(),
            sessions: BTreeMap::new(),
            shms: BTreeMap::new(),
            next_id: 1,
            next_pa: FIRST_SHM_PA,
            open_error: None,
            alloc_error: None,
            ta: T::default(),
        }
    }

    /// teed dies and its successor reclaims everything its clients held.
    pub fn restart(&mut self) {
        self.generation += 1;
        self.sessions.clear();
        self.shms.clear();
    }

    /// The bodies of every request received, in order.
    pub fn requests(&self) -> Vec<TeedRequest> {
        self.log.iter().map(|f| f.body.clone()).collect()
    }

    /// What teed of the current generation answers to `frame`.
    pub fn answer(&mut self, ram: &mut TestRam, frame: &Frame<TeedRequest>) -> TeedResponse {
        if frame.header.is_stale_for(self.generation) {
            return TeedResponse::Error(WireError::ServerRestarted {
                generation: self.generation,
            });
        }
        match &frame.body {
            TeedRequest::OpenSession { .. } => {
                if let Some(error) = self.open_error {
                    return TeedResponse::Error(error);
                }
                let session = self.take_id();
                self.sessions.insert(session, ());
                TeedResponse::SessionOpened { session }
            }
            TeedRequest::ShmAlloc { size } => {
                if let Some(error) = self.alloc_error {
                    return TeedResponse::Error(error);
                }
                let shm = self.take_id();
                let pa = self.next_pa;
                self.next_pa += u64::from(*size).next_multiple_of(PAGE);
                self.shms.insert(shm, (pa, *size));
                TeedResponse::ShmAllocated {
                    shm,
                    pa,
                    size: *size,
                }
            }
            TeedRequest::ShmFree { shm } => match self.shms.remove(shm) {
                Some(_) => TeedResponse::ShmFreed,
                None => TeedResponse::Error(WireError::NotFound),
            },
            TeedRequest::CloseSession { session } => match self.sessions.remove(session) {
                Some(()) => TeedResponse::SessionClosed,
                None => TeedResponse::Error(WireError::NotFound),
            },
            TeedRequest::Cancel { .. } => TeedResponse::Cancelled,
            TeedRequest::Invoke {
                session,
                func,
                params,
                ..
            } => {
                if !self.sessions.contains_key(session) {
                    return TeedResponse::Error(WireError::NotFound);
                }
                self.ta.invoke(ram, &self.shms, *func, params)
            }
        }
    }

    /// Sessions and buffers share one id counter, as a real teed's handles never repeat.
    fn take_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

/// What the client answers init once started.
pub fn ready_event(generation: Generation) -> ServerEvent {
    ServerEvent::Ready { generation }
}

/// The default configuration of a client as it was before it had a shutdown hook.
pub fn no_shutdown_hook_config() -> ClientConfig {
    ClientConfig {
        seed_bugs: ClientSeedBugs {
            no_shutdown_hook: true,
        },
        ..ClientConfig::default()
    }
}

/// The core under test, its RAM, the fake teed and what the core said to init and consumers.
pub struct Harness<T: FakeTa> {
    pub core: Client<T::Service>,
    pub ram: TestRam,
    pub teed: FakeTeed<T>,
    pub now: Millis,
    pub to_init: Vec<Frame<ServerEvent>>,
    pub to_consumers: Vec<(ConsumerId, Frame<ResponseOf<T::Service>>)>,
    /// Requests a holding teed has not answered yet.
    pub held: VecDeque<Frame<TeedRequest>>,
    next_request_id: u32,
}

impl<T: FakeTa> Harness<T> {
    /// A core with `config` that has not had its `Hello` yet.
    pub fn new(config: ClientConfig) -> Harness<T> {
        Harness {
            core: Client::new(config),
            ram: TestRam::new(T::RAM_LEN),
            teed: FakeTeed::new(),
            now: START_MS,
            to_init: Vec::new(),
            to_consumers: Vec::new(),
            held: VecDeque::new(),
            next_request_id: 100,
        }
    }

    /// A harness whose core has started against an answering teed.
    pub fn serving() -> Harness<T> {
        let mut h = Harness::new(ClientConfig::default());
        h.hello(BootKind::Cold, false);
        let answered = h.to_init.last().map(|frame| &frame.body);
        assert_eq!(
            answered,
            Some(&ready_event(T::CLIENT_GENERATION)),
            "the core did not start"
        );
        h
    }

    /// A header for a frame to the core, with a fresh request id.
    fn header(&mut self) -> Header {
        self.next_request_id += 1;
        Header::new(0, T::CLIENT_GENERATION, self.next_request_id)
    }

    /// Delivers effects until none is left, answering teed requests per the teed's mode.
    pub fn pump(&mut self) {
        while let Some(effect) = self.core.poll() {
            match effect {
                Effect::ToTeed(frame) => {
                    self.teed.log.push(frame.clone());
                    match self.teed.mode {
                        TeedMode::Auto => {
                            let body = self.teed.answer(&mut self.ram, &frame);
                            self.deliver(&frame, body);
                        }
                        TeedMode::Hold => self.held.push_back(frame),
                    }
                }
                Effect::ToInit(frame) => self.to_init.push(frame),
                Effect::ToConsumer { consumer, frame } => self.to_consumers.push((consumer, frame)),
            }
        }
    }

    /// Answers `request` with `body` as teed of the fake's current generation.
    pub fn deliver(&mut self, request: &Frame<TeedRequest>, body: TeedResponse) {
        let frame = Frame {
            header: request.header.reply_to(self.teed.generation),
            body,
        };
        self.core.handle_teed(self.now, &mut self.ram, frame);
    }

    /// Lets the fake teed answer the oldest held request, then pumps.
    pub fn answer_held(&mut self) -> Frame<TeedRequest> {
        let request = self.take_held();
        let body = self.teed.answer(&mut self.ram, &request);
        self.deliver(&request, body);
        self.pump();
        request
    }

    /// Answers the oldest held request with `body`, then pumps.
    pub fn answer_held_with(&mut self, body: TeedResponse) -> Frame<TeedRequest> {
        let request = self.take_held();
        self.deliver(&request, body);
        self.pump();
        request
    }

    fn take_held(&mut self) -> Frame<TeedRequest> {
        self.held
            .pop_front()
            .expect("the test expected a held teed request")
    }

    /// init's `Hello` in a boot of `kind`, then pumps.
    pub fn hello(&mut self, kind: BootKind, crash_flag: bool) {
        self.init(InitRequest::Hello {
            generation: T::CLIENT_GENERATION,
            teed_generation: TEED_GENERATION,
            boot: BootInfo {
                boot_id: 1,
                kind,
                crash_flag,
            },
            ram: NO_WINDOW,
            journal: NO_WINDOW,
            windows: tee_proto::lifecycle::ClientWindows::NONE,
            grants: tee_proto::grants::GrantKinds::NONE,
        });
    }

    /// Any frame from init, then pumps.
    pub fn init(&mut self, body: InitRequest) {
        let header = self.header();
        self.core
            .handle_init(self.now, &mut self.ram, Frame { header, body });
        self.pump();
    }

    pub fn shutdown(&mut self, reason: ShutdownReason) {
        self.init(InitRequest::Shutdown { reason });
    }

    /// Sends a request from `consumer`, then pumps; returns the request id.
    pub fn request(&mut self, consumer: u64, body: RequestOf<T::Service>) -> u32 {
        let header = self.header();
        self.core.handle_consumer(
            self.now,
            &mut self.ram,
            ConsumerId(consumer),
            Frame { header, body },
        );
        self.pump();
        header.request_id
    }

    /// Sends a request from consumer 1 and returns its response (which must come at once).
    pub fn call(&mut self, body: RequestOf<T::Service>) -> ResponseOf<T::Service> {
        let id = self.request(1, body);
        self.response(id).clone()
    }

    /// Moves the clock by `ms` and fires deadlines.
    pub fn advance(&mut self, ms: Millis) {
        self.now += ms;
        self.core.handle_timeout(self.now, &mut self.ram);
        self.pump();
    }

    /// Jumps to each deadline the core names, until it names none or `limit` ms have passed.
    pub fn run_timers(&mut self, limit: Millis) {
        let end = self.now + limit;
        while let Some(due) = self.core.poll_timeout() {
            if due > end {
                break;
            }
            self.now = self.now.max(due);
            self.core.handle_timeout(self.now, &mut self.ram);
            self.pump();
        }
    }

    /// The response sent to the request with `request_id`.
    pub fn response(&self, request_id: u32) -> &ResponseOf<T::Service> {
        &self
            .to_consumers
            .iter()
            .find(|(_, f)| f.header.request_id == request_id)
            .expect("the test expected a response to this request")
            .1
            .body
    }

    /// What the core said to init last.
    pub fn last_to_init(&self) -> &ServerEvent {
        &self
            .to_init
            .last()
            .expect("the test expected the core to have told init something")
            .body
    }

    /// The report of the shutdown ack the core sent init last.
    pub fn shutdown_ack(&self) -> ShutdownReport {
        match self.last_to_init() {
            ServerEvent::ShutdownAck(report) => *report,
            other => panic!("the test expected a shutdown ack, the core said {other:?}"),
        }
    }

    /// The bodies of the teed requests from index `start` of the log on.
    pub fn teed_requests_since(&self, start: usize) -> Vec<TeedRequest> {
        self.teed.requests()[start..].to_vec()
    }
}
