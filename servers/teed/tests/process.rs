//! teed as a process: started as init starts it, wired to a real secure-world process through
//! the conduit and the RAM file, serving a client endpoint.
//!
//! Needs the `secure-world` binary next to this crate's binaries: `cargo build --workspace
//! --bins` first (`cargo xtask test` does).
#![allow(clippy::unwrap_used)]

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::Duration;

use optee_abi::mem::PhysMem;
use optee_abi::uuid;
use tee_proto::lifecycle::{InitRequest, ServerEvent, ServerKind, ServerState, ShutdownReason};
use tee_proto::teed::{Login, Param, TeedRequest, TeedResponse};
use tee_proto::{Frame, Header, WireError};
use tee_rt::endpoint::Endpoint;
use tee_rt::server::EXIT_INIT_GONE;
use tee_test_support::bnxt_image::coredump_chunk;
use tee_test_support::hosted::{
    descriptor_census, recv_frame_within, SecureWorldProcess, ServerProcess, COLD_BOOT,
};
use tee_test_support::secure_world::ta::bnxt::COPY_COREDUMP;
use tee_test_support::secure_world::ta::ftpm::SUBMIT_COMMAND as FTPM_SUBMIT_COMMAND;

/// TPM2_Startup(SU_CLEAR).
const TPM_STARTUP_CLEAR: [u8; 12] = [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x44, 0, 0];

const RAM_SIZE: u64 = 64 << 20;
const WAIT: Duration = Duration::from_secs(15);
const TEED_GENERATION: u32 = 1;
const BNXTD_GENERATION: u32 = 1;

fn hello(world: &SecureWorldProcess) -> InitRequest {
    world.teed_hello(TEED_GENERATION, COLD_BOOT)
}

/// init's side of one teed: sends lifecycle requests and waits for their answers.
struct Init<'a> {
    teed: &'a ServerProcess,
    next_id: u32,
}

impl Init<'_> {
    fn new(teed: &ServerProcess) -> Init<'_> {
        Init { teed, next_id: 0 }
    }

    fn request(&mut self, body: InitRequest, fds: &[BorrowedFd<'_>]) -> ServerEvent {
        self.next_id += 1;
        let (frame, attachments) = self
            .teed
            .exchange(TEED_GENERATION, self.next_id, body, fds, WAIT)
            .unwrap();
        assert!(attachments.is_empty());
        frame.body
    }

    fn send(&mut self, body: InitRequest, fds: &[BorrowedFd<'_>]) {
        self.next_id += 1;
        self.teed
            .send_to(TEED_GENERATION, self.next_id, body, fds)
            .unwrap();
    }

    /// teed's `Hello` with the world's conduit and RAM.
    fn hello_with_world(&mut self, world: &SecureWorldProcess) -> ServerEvent {
        let conduit = world.connect_conduit().unwrap();
        let ram = world.open_ram().unwrap();
        // init keeps no copy of the capabilities it handed over: both drop on return.
        self.request(hello(world), &[conduit.as_fd(), ram.as_fd()])
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

/// A secure world named after `tag` and a teed process that has not had its `Hello` yet.
fn start(tag: &str) -> (SecureWorldProcess, ServerProcess) {
    let world = SecureWorldProcess::start(tag, RAM_SIZE).unwrap();
    let teed = ServerProcess::spawn(teed_binary(), &[("RUST_LOG", "info")]).unwrap();
    (world, teed)
}

fn teed_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_teed"))
}

#[test]
fn teed_serves_a_bnxt_client_end_to_end_and_shuts_down_clean() {
    let (world, mut teed) = start("teed-e2e");
    let mut init = Init::new(&teed);

    let ready = init.hello_with_world(&world);
    assert_eq!(
        ready,
        ServerEvent::Ready {
            generation: TEED_GENERATION
        }
    );

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
    let census = descriptor_census(teed.pid()).unwrap();
    assert_eq!(census.sockets, 3, "teed holds {census:?}");
    assert!(census.others.is_empty(), "teed holds {census:?}");

    // Malformed and stale frames get typed answers; teed carries on.
    // A good header (this protocol version, generations 0, request 0) before a bad body.
    let version = tee_proto::PROTOCOL_VERSION as u8;
    client
        .endpoint
        .send(&[version, 0, 0, 0, 0xEE], &[])
        .unwrap();
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
    assert_eq!(teed.exit_code_within(WAIT).unwrap(), Some(0));
}

#[test]
fn teed_refuses_a_hello_without_its_capabilities() {
    let (world, mut teed) = start("teed-nocaps");
    let mut init = Init::new(&teed);
    let ram = world.open_ram().unwrap();
    // Only the RAM: no conduit.
    let answer = init.request(hello(&world), &[ram.as_fd()]);
    assert_eq!(answer, ServerEvent::Error(WireError::BadRequest));
    assert_eq!(teed.exit_code_within(WAIT).unwrap(), Some(1));
}

#[test]
fn teed_exits_when_init_goes_away() {
    let (world, mut teed) = start("teed-orphan");
    let ready = Init::new(&teed).hello_with_world(&world);
    assert!(matches!(ready, ServerEvent::Ready { .. }), "{ready:?}");
    teed.close_lifecycle();
    assert_eq!(
        teed.exit_code_within(WAIT).unwrap(),
        Some(i32::from(EXIT_INIT_GONE))
    );
}

/// Connects a client endpoint of `kind` to teed, as init does.
fn connect(init: &mut Init<'_>, kind: ServerKind) -> FakeClient {
    let (teed_side, client_side) = Endpoint::pair().unwrap();
    init.send(
        InitRequest::ClientEndpoint {
            client: kind,
            generation: 1,
        },
        &[teed_side.as_fd()],
    );
    FakeClient {
        endpoint: client_side,
        next_id: 0,
    }
}

/// Owner isolation through the real process: tpmd's endpoint cannot open the BNXT TA, use
/// bnxtd's session, free bnxtd's buffer or point a memref into it (even through its own
/// session) — each a typed `Denied`, bnxtd's buffer untouched.
#[test]
fn a_client_cannot_reach_another_clients_session_or_buffer() {
    let (world, teed) = start("teed-isolation");
    let mut init = Init::new(&teed);
    assert_eq!(
        init.hello_with_world(&world),
        ServerEvent::Ready {
            generation: TEED_GENERATION
        }
    );
    let mut bnxtd = connect(&mut init, ServerKind::Bnxtd);
    let mut tpmd = connect(&mut init, ServerKind::Tpmd);
    let TeedResponse::SessionOpened { session } = bnxtd.request(TeedRequest::OpenSession {
        ta: *uuid::BNXT_TA.as_bytes(),
        login: Login::Public,
    }) else {
        panic!("bnxtd's session not opened");
    };
    let TeedResponse::ShmAllocated {
        shm, pa: victim_pa, ..
    } = bnxtd.request(TeedRequest::ShmAlloc { size: 8192 })
    else {
        panic!("bnxtd's buffer not allocated");
    };
    let denied = TeedResponse::Error(WireError::Denied);
    let open_bnxt = TeedRequest::OpenSession {
        ta: *uuid::BNXT_TA.as_bytes(),
        login: Login::Public,
    };
    assert_eq!(tpmd.request(open_bnxt), denied);
    let mut steal = heapless::Vec::new();
    steal
        .push(Param::MemrefIn {
            shm,
            offset: 0,
            size: 16,
        })
        .unwrap();
    let invoke = TeedRequest::Invoke {
        session,
        func: 0,
        cancel_id: 0,
        params: steal,
    };
    assert_eq!(tpmd.request(invoke), denied);

    // The buffer-owner check on its own: through tpmd's *own* fTPM session (the session check
    // passes), a memref naming bnxtd's buffer is refused, and bnxtd's buffer keeps its bytes.
    let TeedResponse::SessionOpened {
        session: own_session,
    } = tpmd.request(TeedRequest::OpenSession {
        ta: *uuid::FTPM_TA.as_bytes(),
        login: Login::Public,
    })
    else {
        panic!("tpmd's own session not opened");
    };
    let TeedResponse::ShmAllocated {
        shm: own,
        pa: own_pa,
        ..
    } = tpmd.request(TeedRequest::ShmAlloc { size: 8192 })
    else {
        panic!("tpmd's buffer not allocated");
    };
    let mut ram = world.map_ram().unwrap();
    let pattern: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 3) as u8).collect();
    ram.write(victim_pa, &pattern).unwrap();
    ram.write(own_pa, &TPM_STARTUP_CLEAR).unwrap();
    let submit = |response: Param| {
        let mut params = heapless::Vec::new();
        params
            .push(Param::MemrefIn {
                shm: own,
                offset: 0,
                size: TPM_STARTUP_CLEAR.len() as u32,
            })
            .unwrap();
        params.push(response).unwrap();
        TeedRequest::Invoke {
            session: own_session,
            func: FTPM_SUBMIT_COMMAND,
            cancel_id: 0,
            params,
        }
    };
    let into_victim = Param::MemrefInOut {
        shm,
        offset: 0,
        size: 4096,
    };
    assert_eq!(tpmd.request(submit(into_victim)), denied);
    let mut now = vec![0u8; pattern.len()];
    ram.read(victim_pa, &mut now).unwrap();
    assert!(now == pattern, "bnxtd's buffer is untouched");
    // The control: the same call with tpmd's own buffer for the response reaches the TA.
    let into_own = Param::MemrefInOut {
        shm: own,
        offset: 4096,
        size: 4096,
    };
    let answer = tpmd.request(submit(into_own));
    let TeedResponse::Invoked { ret, .. } = answer else {
        panic!("the control call failed: {answer:?}");
    };
    assert_eq!(ret, optee_abi::teec::SUCCESS);
    let mut response = [0u8; 2];
    ram.read(own_pa + 4096, &mut response).unwrap();
    assert_eq!(
        response,
        [0x80, 0x01],
        "a TPM response in tpmd's own buffer"
    );
    ram.read(victim_pa, &mut now).unwrap();
    assert!(now == pattern, "bnxtd's buffer is still untouched");

    assert_eq!(tpmd.request(TeedRequest::ShmFree { shm }), denied);
    assert_eq!(tpmd.request(TeedRequest::CloseSession { session }), denied);
    // bnxtd still owns both.
    assert_eq!(
        bnxtd.request(TeedRequest::ShmFree { shm }),
        TeedResponse::ShmFreed
    );
    assert_eq!(
        bnxtd.request(TeedRequest::CloseSession { session }),
        TeedResponse::SessionClosed
    );
}
