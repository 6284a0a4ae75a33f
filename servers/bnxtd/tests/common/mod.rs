//! Test harness: a Vec-backed normal-world RAM, a tiny fake teed with a BNXT TA behind it, and
//! a driver that pumps the core's effects into them on a virtual clock.
#![allow(clippy::unwrap_used, dead_code)]

use std::collections::{BTreeMap, VecDeque};

use bnxtd::{Bnxtd, BnxtdConfig, ConsumerId, Effect};
use optee_abi::mem::{MemError, PhysMem};
use optee_abi::teec;
use tee_proto::bnxt::{BnxtRequest, BnxtResponse};
use tee_proto::lifecycle::{
    BootInfo, BootKind, InitRequest, RamWindow, ServerEvent, ShutdownReason,
};
use tee_proto::teed::{Param, TeedRequest, TeedResponse};
use tee_proto::{Frame, Header, WireError};

pub const RAM_BASE: u64 = 0x4000_0000;
pub const BNXTD_GENERATION: u32 = 4;
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

    pub fn write_bytes(&mut self, pa: u64, data: &[u8]) {
        self.write(pa, data).unwrap();
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

/// Byte `index` of the fake NIC's crash dump.
pub fn dump_byte(index: u64) -> u8 {
    (index.wrapping_mul(0x9e37_79b1) >> 13) as u8 ^ (index as u8)
}

pub fn dump_slice(offset: u32, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| dump_byte(u64::from(offset) + i))
        .collect()
}

/// How the fake teed treats what it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeedMode {
    /// Answers every request at once.
    Auto,
    /// Keeps requests for the test to answer (or not).
    Hold,
}

/// A teed with one fake BNXT TA behind it.
pub struct FakeTeed {
    pub generation: u32,
    pub mode: TeedMode,
    /// Every request received, in order.
    pub log: Vec<Frame<TeedRequest>>,
    /// (offset, size) of every COPY_COREDUMP the TA served.
    pub copies: Vec<(u64, u64)>,
    pub fastboots: u32,
    pub sessions: BTreeMap<u32, ()>,
    /// shm id → (pa, size)
    pub shms: BTreeMap<u32, (u64, u32)>,
    next_id: u32,
    next_pa: u64,
    /// The TA's ret for FASTBOOT.
    pub fastboot_ret: u32,
    /// The TA's ret for COPY_COREDUMP.
    pub copy_ret: u32,
}

impl FakeTeed {
    pub fn new() -> FakeTeed {
        FakeTeed {
            generation: TEED_GENERATION,
            mode: TeedMode::Auto,
            log: Vec::new(),
            copies: Vec::new(),
            fastboots: 0,
            sessions: BTreeMap::new(),
            shms: BTreeMap::new(),
            next_id: 1,
            next_pa: RAM_BASE + 0x1_0000,
            fastboot_ret: teec::SUCCESS,
            copy_ret: teec::SUCCESS,
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
                let session = self.next_id;
                self.next_id += 1;
                self.sessions.insert(session, ());
                TeedResponse::SessionOpened { session }
            }
            TeedRequest::ShmAlloc { size } => {
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
                session,
                func,
                params,
                ..
            } => {
                if !self.sessions.contains_key(session) {
                    return TeedResponse::Error(WireError::NotFound);
                }
                let ret = match func {
                    0 => self.fastboot(params),
                    3 => self.copy_coredump(ram, params),
                    _ => teec::ERROR_NOT_SUPPORTED,
                };
                TeedResponse::Invoked {
                    ret,
                    origin: teec::origin::TRUSTED_APP,
                    params: heapless::Vec::new(),
                }
            }
        }
    }

    fn fastboot(&mut self, params: &[Param]) -> u32 {
        assert_eq!(params, &[Param::None; 4], "FASTBOOT takes four NONE params");
        self.fastboots += 1;
        self.fastboot_ret
    }

    fn copy_coredump(&mut self, ram: &mut TestRam, params: &[Param]) -> u32 {
        let [Param::MemrefInOut {
            shm,
            offset: 0,
            size: capacity,
        }, Param::ValueIn {
            a: offset, b: size, ..
        }, Param::None, Param::None] = params
        else {
            panic!("not the tee_bnxt_fw layout: {params:?}");
        };
        if self.copy_ret != teec::SUCCESS {
            return self.copy_ret;
        }
        assert!(*size <= u64::from(*capacity));
        assert!(offset + size <= 8 << 20, "the copy stays inside the dump");
        let (pa, _) = self.shms[shm];
        ram.write(pa, &dump_slice(*offset as u32, *size as usize))
            .unwrap();
        self.copies.push((*offset, *size));
        teec::SUCCESS
    }
}

/// The core under test, its RAM, the fake teed and what the core said to init and consumers.
pub struct Harness {
    pub core: Bnxtd,
    pub ram: TestRam,
    pub teed: FakeTeed,
    pub now: u64,
    pub to_init: Vec<Frame<ServerEvent>>,
    pub to_consumers: Vec<(ConsumerId, Frame<BnxtResponse>)>,
    /// Requests a holding teed has not answered yet.
    pub held: VecDeque<Frame<TeedRequest>>,
    next_request_id: u32,
}

impl Harness {
    pub fn new(config: BnxtdConfig) -> Harness {
        Harness {
            core: Bnxtd::new(config),
            ram: TestRam::new(16 << 20),
            teed: FakeTeed::new(),
            now: 1_000,
            to_init: Vec::new(),
            to_consumers: Vec::new(),
            held: VecDeque::new(),
            next_request_id: 100,
        }
    }

    /// A harness whose bnxtd has started against an answering teed.
    pub fn serving() -> Harness {
        let mut h = Harness::new(BnxtdConfig::default());
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

    pub fn hello(&mut self, kind: BootKind, crash_flag: bool) {
        let header = self.header(BNXTD_GENERATION);
        let body = InitRequest::Hello {
            generation: BNXTD_GENERATION,
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

    pub fn shutdown(&mut self, reason: ShutdownReason) {
        let header = self.header(BNXTD_GENERATION);
        let body = InitRequest::Shutdown { reason };
        self.core
            .handle_init(self.now, &mut self.ram, Frame { header, body });
        self.pump();
    }

    /// Sends a request from NIC driver `consumer`; returns the request id.
    pub fn request(&mut self, consumer: u64, body: BnxtRequest) -> u32 {
        let header = self.header(BNXTD_GENERATION);
        self.core.handle_consumer(
            self.now,
            &mut self.ram,
            ConsumerId(consumer),
            Frame { header, body },
        );
        self.pump();
        header.request_id
    }

    /// Sends a request and returns its response (which must come at once).
    pub fn call(&mut self, body: BnxtRequest) -> BnxtResponse {
        let id = self.request(1, body);
        self.response(id).clone()
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
    pub fn response(&self, request_id: u32) -> &BnxtResponse {
        &self
            .to_consumers
            .iter()
            .find(|(_, f)| f.header.request_id == request_id)
            .expect("a response")
            .1
            .body
    }
}

pub fn ready() -> ServerEvent {
    ServerEvent::Ready {
        generation: BNXTD_GENERATION,
    }
}
