//! teed as a process: started as init starts it, wired to a real secure-world process through
//! the conduit and the RAM file, serving a client endpoint.
//!
//! Needs the `secure-world` binary next to this crate's binaries: `cargo build --workspace
//! --bins` first (`cargo xtask test` does).
#![allow(clippy::unwrap_used)]

use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use optee_abi::mem::PhysMem;
use optee_abi::uuid;
use secure_world::ta::bnxt::{coredump_chunk, COPY_COREDUMP};
use tee_proto::lifecycle::{
    BootInfo, BootKind, InitRequest, ServerEvent, ServerKind, ServerState, ShutdownReason,
};
use tee_proto::teed::{Login, Param, TeedRequest, TeedResponse};
use tee_proto::{Frame, Header, WireError};
use tee_rt::endpoint::Endpoint;
use tee_rt::harness::{open_descriptors, recv_frame_within, SecureWorldProcess, ServerProcess};
use tee_rt::server::EXIT_INIT_GONE;

const RAM_SIZE: u64 = 64 << 20;
const WAIT: Duration = Duration::from_secs(15);
const TEED_GENERATION: u32 = 1;
const BNXTD_GENERATION: u32 = 1;
const INIT_GENERATION: u32 = 0;

fn teed_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_teed"))
}

fn hello(world: &SecureWorldProcess) -> InitRequest {
    InitRequest::Hello {
        generation: TEED_GENERATION,
        teed_generation: TEED_GENERATION,
        boot: BootInfo {
            boot_id: 1,
            kind: BootKind::Cold,
            crash_flag: false,
        },
        ram: world.frame_window(),
        journal: world.journal_window(),
    }
}

/// init's side of one teed: sends lifecycle requests and waits for their answers.
struct Init<'a> {
    teed: &'a ServerProcess,
    next_id: u32,
}

impl Init<'_> {
    fn request(&mut self, body: InitRequest, fds: &[std::os::fd::BorrowedFd<'_>]) -> ServerEvent {
        let id = self.send(body, fds);
        let (frame, attachments) =
            recv_frame_within::<ServerEvent>(self.teed.lifecycle().unwrap(), WAIT).unwrap();
        assert!(attachments.is_empty());
        assert_eq!(frame.header.request_id, id);
        frame.body
    }

    fn send(&mut self, body: InitRequest, fds: &[std::os::fd::BorrowedFd<'_>]) -> u32 {
        self.next_id += 1;
        let header = Header::new(INIT_GENERATION, TEED_GENERATION, self.next_id);
        self.teed
            .lifecycle()
            .unwrap()
            .send_frame(&Frame { header, body }, fds)
            .unwrap();
        self.next_id
    }
}

/// A client's side of its teed endpoint.
struct FakeClient {
    endpoint: Endpoint,
    next_id: u32,
}

impl FakeClient {
    fn request(&mut self, body: TeedRequest) -> TeedResponse {
        self.next_id += 1;
        let header = Header::new(BNXTD_GENERATION, TEED_GENERATION, self.next_id);
        self.endpoint
            .send_frame(&Frame { header, body }, &[])
            .unwrap();
        let (frame, _) = recv_frame_within::<TeedResponse>(&self.endpoint, WAIT).unwrap();
        assert_eq!(frame.header.request_id, self.next_id);
        assert_eq!(frame.header.from_generation, TEED_GENERATION);
        frame.body
    }
}

fn start_teed() -> ServerProcess {
    ServerProcess::spawn(teed_binary(), &[("RUST_LOG", "info")]).unwrap()
}

#[test]
fn teed_serves_a_bnxt_client_end_to_end_and_shuts_down_clean() {
    let world = SecureWorldProcess::start("teed-e2e", RAM_SIZE).unwrap();
    let mut teed = start_teed();
    let mut init = Init {
        teed: &teed,
        next_id: 0,
    };

    let conduit = world.connect_conduit().unwrap();
    let ram = world.open_ram().unwrap();
    let ready = init.request(hello(&world), &[conduit.as_fd(), ram.as_fd()]);
    assert_eq!(
        ready,
        ServerEvent::Ready {
            generation: TEED_GENERATION
        }
    );
    // init keeps no copy of the capabilities it handed over.
    drop((conduit, ram));

    let (teed_side, client_side) = Endpoint::pair().unwrap();
    init.send(
        InitRequest::ClientEndpoint {
            client: ServerKind::Bnxtd,
            generation: BNXTD_GENERATION,
        },
        &[teed_side.as_fd()],
    );
    drop(teed_side);
    let mut client = FakeClient {
        endpoint: client_side,
        next_id: 0,
    };

    let TeedResponse::SessionOpened { session } = client.request(TeedRequest::OpenSession {
        ta: *uuid::BNXT_TA.as_bytes(),
        login: Login::Public,
    }) else {
        panic!("session not opened");
    };
    let shm_size = 4 << 20;
    let TeedResponse::ShmAllocated { shm, pa, size } =
        client.request(TeedRequest::ShmAlloc { size: shm_size })
    else {
        panic!("no shared memory");
    };
    assert_eq!(size, shm_size);

    // A 256 KiB window of the dump from 1 MiB on, copied by the TA into the registered pages.
    let (dump_offset, window) = (1u32 << 20, 256u32 << 10);
    let mut params = heapless::Vec::new();
    params
        .push(Param::MemrefInOut {
            shm,
            offset: 0,
            size: window,
        })
        .unwrap();
    params
        .push(Param::ValueIn {
            a: u64::from(dump_offset),
            b: u64::from(window),
            c: 0,
        })
        .unwrap();
    params.push(Param::None).unwrap();
    params.push(Param::None).unwrap();
    let answer = client.request(TeedRequest::Invoke {
        session,
        func: COPY_COREDUMP,
        cancel_id: 1,
        params,
    });
    let TeedResponse::Invoked { ret, .. } = answer else {
        panic!("invoke failed: {answer:?}");
    };
    assert_eq!(ret, optee_abi::teec::SUCCESS);
    let ram_view = world.map_ram().unwrap();
    let mut copied = vec![0u8; window as usize];
    ram_view.read(pa, &mut copied).unwrap();
    let mut expected = vec![0u8; window as usize];
    coredump_chunk(u64::from(dump_offset), &mut expected).unwrap();
    assert!(copied == expected, "the registered pages hold the dump");

    // Capabilities: teed holds the lifecycle endpoint, the conduit and the client endpoint, and
    // no file (the RAM descriptor was closed once mapped).
    let fds = open_descriptors(teed.pid()).unwrap();
    let sockets = fds.iter().filter(|(_, t)| t.starts_with("socket:")).count();
    assert_eq!(sockets, 3, "teed holds {fds:?}");
    assert!(
        fds.iter().all(|(n, t)| *n <= 2 || t.starts_with("socket:")),
        "teed holds {fds:?}"
    );

    // Malformed and stale frames get typed answers; teed carries on.
    client.endpoint.send(&[1, 0, 0, 0, 0xEE], &[]).unwrap();
    let (bad, _) = recv_frame_within::<TeedResponse>(&client.endpoint, WAIT).unwrap();
    assert_eq!(bad.body, TeedResponse::Error(WireError::BadRequest));
    let stale = Frame {
        header: Header::new(BNXTD_GENERATION, TEED_GENERATION + 7, 99),
        body: TeedRequest::ShmAlloc { size: 4096 },
    };
    client.endpoint.send_frame(&stale, &[]).unwrap();
    let (restarted, _) = recv_frame_within::<TeedResponse>(&client.endpoint, WAIT).unwrap();
    assert_eq!(restarted.header.request_id, 99);
    assert_eq!(
        restarted.body,
        TeedResponse::Error(WireError::ServerRestarted {
            generation: TEED_GENERATION
        })
    );

    assert_eq!(
        client.request(TeedRequest::ShmFree { shm }),
        TeedResponse::ShmFreed
    );
    let ServerEvent::Status(status) = init.request(InitRequest::Status, &[]) else {
        panic!("no status");
    };
    assert_eq!(status.state, ServerState::Serving);
    assert_eq!((status.sessions, status.registrations), (1, 0));

    // The session is left open: teed's shutdown sweep closes it.
    let ServerEvent::ShutdownAck(report) = init.request(
        InitRequest::Shutdown {
            reason: ShutdownReason::Kexec,
        },
        &[],
    ) else {
        panic!("no shutdown ack");
    };
    assert_eq!(report.errors, 0, "{report:?}");
    assert_eq!(report.sessions_closed, 1, "{report:?}");

    teed.close_lifecycle();
    let status = teed.child.wait_exit(WAIT).unwrap().expect("teed exits");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn teed_refuses_a_hello_without_its_capabilities() {
    let world = SecureWorldProcess::start("teed-nocaps", RAM_SIZE).unwrap();
    let mut teed = start_teed();
    let mut init = Init {
        teed: &teed,
        next_id: 0,
    };
    let ram = world.open_ram().unwrap();
    // Only the RAM: no conduit.
    let answer = init.request(hello(&world), &[ram.as_fd()]);
    assert_eq!(answer, ServerEvent::Error(WireError::BadRequest));
    let status = teed.child.wait_exit(WAIT).unwrap().expect("teed exits");
    assert_eq!(status.code(), Some(1));
}

#[test]
fn teed_exits_when_init_goes_away() {
    let world = SecureWorldProcess::start("teed-orphan", RAM_SIZE).unwrap();
    let mut teed = start_teed();
    let mut init = Init {
        teed: &teed,
        next_id: 0,
    };
    let conduit = world.connect_conduit().unwrap();
    let ram = world.open_ram().unwrap();
    let ready = init.request(hello(&world), &[conduit.as_fd(), ram.as_fd()]);
    assert!(matches!(ready, ServerEvent::Ready { .. }), "{ready:?}");
    teed.close_lifecycle();
    let status = teed.child.wait_exit(WAIT).unwrap().expect("teed exits");
    assert_eq!(status.code(), Some(i32::from(EXIT_INIT_GONE)));
}
