//! Test harness: a Vec-backed normal-world RAM, a tiny fake teed with an fTPM behind it, and a
//! driver that pumps the core's effects into them on a virtual clock.
#![allow(clippy::unwrap_used, dead_code)]

use std::collections::{BTreeMap, VecDeque};

use optee_abi::mem::{MemError, PhysMem};
use tee_proto::lifecycle::{
    BootInfo, BootKind, InitRequest, RamWindow, ServerEvent, ShutdownReason,
};
use tee_proto::teed::{Param, ParamOut, TeedRequest, TeedResponse};
use tee_proto::tpm::{TpmRequest, TpmResponse};
use tee_proto::{Frame, Header, WireError};
use tpmd::{ConsumerId, Effect, Tpmd, TpmdConfig};

pub const RAM_BASE: u64 = 0x4000_0000;
pub const TPMD_GENERATION: u32 = 3;
pub const TEED_GENERATION: u32 = 7;

/// Normal-world RAM as a plain byte vector.
pub struct TestRam {
    base: u64,
    bytes: Vec<u8>,
}

impl TestRam {
    pub fn new(len: usize) -> TestRam {
        TestRam {
            base: RAM_BASE,
            bytes: vec![0; len],
        }
    }

    fn range(&self, pa: u64, len: usize) -> Result<std::ops::Range<usize>, MemError> {
        if !self.contains(pa, len as u64) {
            return Err(MemError {
                pa,
                len: len as u64,
            });
        }
        let start = (pa - self.base) as usize;
        Ok(start..start + len)
    }

    pub fn slice(&self, pa: u64, len: usize) -> &[u8] {
        let range = self.range(pa, len).unwrap();
        &self.bytes[range]
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

/// A TPM command with the given command code and `extra` parameter bytes.
pub fn tpm_command(code: u32, extra: &[u8]) -> Vec<u8> {
    let len = 10 + extra.len() as u32;
    let mut bytes = vec![0x80, 0x01];
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes.extend_from_slice(&code.to_be_bytes());
    bytes.extend_from_slice(extra);
    bytes
}

/// The fake TA's answer to a command: a response that names the command code it answers.
pub fn expected_response(command: &[u8]) -> Vec<u8> {
    let mut response = vec![0x80, 0x01, 0, 0, 0, 14, 0, 0, 0, 0];
    response.extend_from_slice(&command[6..10]);
    response
}

/// How the fake teed treats what it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeedMode {
    /// Answers every request at once.
    Auto,
    /// Keeps requests for the test to answer (or not).
    Hold,
}

/// A teed with one fake fTPM session behind it.
pub struct FakeTeed {
    pub generation: u32,
    pub mode: TeedMode,
    /// Every request received, in order.
    pub log: Vec<Frame<TeedRequest>>,
    /// Command bytes the fake TA received, in order.
    pub commands: Vec<Vec<u8>>,
    pub sessions: BTreeMap<u32, ()>,
    /// shm id → (pa, size)
    pub shms: BTreeMap<u32, (u64, u32)>,
    next_id: u32,
    next_pa: u64,
    /// Forces the TA's ret and origin.
    pub invoke_result: Option<(u32, u32)>,
    /// Bytes the TA writes at the response offset instead of a well-formed response.
    pub raw_response: Option<Vec<u8>>,
    /// Error answered to every OpenSession.
    pub open_error: Option<WireError>,
    /// Error answered to every ShmAlloc.
    pub alloc_error: Option<WireError>,
}

impl FakeTeed {
    pub fn new() -> FakeTeed {
        FakeTeed {
            generation: TEED_GENERATION,
            mode: TeedMode::Auto,
            log: Vec::new(),
            commands: Vec::new(),
            sessions: BTreeMap::new(),
            shms: BTreeMap::new(),
            next_id: 1,
            next_pa: RAM_BASE + 0x1_0000,
            invoke_result: None,
            raw_response: None,
            open_error: None,
            alloc_error: None,
        }
    }

    /// teed dies and its successor reclaims everything its clients held.
    pub fn restart(&mut self) {
        self.generation += 1;
        self.sessions.clear();
        self.shms.clear();
    }

    pub fn requests(&self) -> Vec<TeedRequest> {
        self.log.iter().map(|f| f.body.clone()).collect()
    }

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
                let session = self.next_id;
                self.next_id += 1;
                self.sessions.insert(session, ());
                TeedResponse::SessionOpened { session }
            }
            TeedRequest::ShmAlloc { size } => {
                if let Some(error) = self.alloc_error {
                    return TeedResponse::Error(error);
                }
                let shm = self.next_id;
                self.next_id += 1;
                let pa = self.next_pa;
                self.next_pa += u64::from(*size).next_multiple_of(4096);
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
                session, params, ..
            } => self.invoke(ram, *session, params),
        }
    }

    fn invoke(&mut self, ram: &mut TestRam, session: u32, params: &[Param]) -> TeedResponse {
        if !self.sessions.contains_key(&session) {
            return TeedResponse::Error(WireError::NotFound);
        }
        let [Param::MemrefIn {
            shm,
            offset: 0,
            size,
        }, Param::MemrefInOut {
            shm: out_shm,
            offset: 4096,
            size: 4096,
        }, Param::None, Param::None] = params
        else {
            panic!("not the tpm_ftpm_tee layout: {params:?}");
        };
        assert_eq!(shm, out_shm);
        let (pa, _) = self.shms[shm];
        let command = ram.slice(pa, *size as usize).to_vec();
        self.commands.push(command.clone());
        if let Some((ret, origin)) = self.invoke_result {
            return TeedResponse::Invoked {
                ret,
                origin,
                params: heapless::Vec::new(),
            };
        }
        let response = self
            .raw_response
            .clone()
            .unwrap_or_else(|| expected_response(&command));
        ram.write(pa + 4096, &response).unwrap();
        TeedResponse::Invoked {
            ret: 0,
            origin: 4,
            params: heapless::Vec::from_slice(&[
                ParamOut::None,
                ParamOut::Memref {
                    size: response.len() as u32,
                },
                ParamOut::None,
                ParamOut::None,
            ])
            .unwrap(),
        }
    }
}

/// The core under test, its RAM, the fake teed and what the core said to init and consumers.
pub struct Harness {
    pub core: Tpmd,
    pub ram: TestRam,
    pub teed: FakeTeed,
    pub now: u64,
    pub to_init: Vec<Frame<ServerEvent>>,
    pub to_consumers: Vec<(ConsumerId, Frame<TpmResponse>)>,
    /// Requests a holding teed has not answered yet.
    pub held: VecDeque<Frame<TeedRequest>>,
    next_request_id: u32,
}

impl Harness {
    pub fn new(config: TpmdConfig) -> Harness {
        Harness {
            core: Tpmd::new(config),
            ram: TestRam::new(1 << 20),
            teed: FakeTeed::new(),
            now: 1_000,
            to_init: Vec::new(),
            to_consumers: Vec::new(),
            held: VecDeque::new(),
            next_request_id: 100,
        }
    }

    /// A harness whose tpmd has started against an answering teed.
    pub fn serving() -> Harness {
        let mut h = Harness::new(TpmdConfig::default());
        h.hello(BootKind::Cold, false);
        assert_eq!(h.to_init.last().unwrap().body, ready());
        h
    }

    fn header(&mut self, to_generation: u32) -> Header {
        self.next_request_id += 1;
        Header::new(0, to_generation, self.next_request_id)
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
        let request = self.held.pop_front().expect("a held request");
        let body = self.teed.answer(&mut self.ram, &request);
        self.deliver(&request, body);
        self.pump();
        request
    }

    /// Answers the oldest held request with `body`, then pumps.
    pub fn answer_held_with(&mut self, body: TeedResponse) -> Frame<TeedRequest> {
        let request = self.held.pop_front().expect("a held request");
        self.deliver(&request, body);
        self.pump();
        request
    }

    pub fn hello(&mut self, kind: BootKind, crash_flag: bool) {
        let header = self.header(TPMD_GENERATION);
        let body = InitRequest::Hello {
            generation: TPMD_GENERATION,
            teed_generation: TEED_GENERATION,
            boot: BootInfo {
                boot_id: 1,
                kind,
                crash_flag,
            },
            ram: RamWindow { base: 0, len: 0 },
            journal: RamWindow { base: 0, len: 0 },
        };
        self.core
            .handle_init(self.now, &mut self.ram, Frame { header, body });
        self.pump();
    }

    pub fn init(&mut self, body: InitRequest) {
        let header = self.header(TPMD_GENERATION);
        self.core
            .handle_init(self.now, &mut self.ram, Frame { header, body });
        self.pump();
    }

    pub fn shutdown(&mut self, reason: ShutdownReason) {
        self.init(InitRequest::Shutdown { reason });
    }

    /// Sends a TPM command from `consumer`; returns the request id.
    pub fn command(&mut self, consumer: u64, bytes: &[u8]) -> u32 {
        let header = self.header(TPMD_GENERATION);
        let body = TpmRequest::Command {
            bytes: heapless::Vec::from_slice(bytes).unwrap(),
        };
        self.core.handle_consumer(
            self.now,
            &mut self.ram,
            ConsumerId(consumer),
            Frame { header, body },
        );
        self.pump();
        header.request_id
    }

    /// Moves the clock by `ms` and fires deadlines.
    pub fn advance(&mut self, ms: u64) {
        self.now += ms;
        self.core.handle_timeout(self.now, &mut self.ram);
        self.pump();
    }

    /// Jumps to each deadline the core names, until it names none or `limit` ms have passed.
    pub fn run_timers(&mut self, limit: u64) {
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
    pub fn response(&self, request_id: u32) -> &TpmResponse {
        &self
            .to_consumers
            .iter()
            .find(|(_, f)| f.header.request_id == request_id)
            .expect("a response")
            .1
            .body
    }

    pub fn teed_requests_since(&self, start: usize) -> Vec<TeedRequest> {
        self.teed.requests()[start..].to_vec()
    }
}

pub fn ready() -> ServerEvent {
    ServerEvent::Ready {
        generation: TPMD_GENERATION,
    }
}
