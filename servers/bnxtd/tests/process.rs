//! bnxtd as a process, with a real teed and a real secure world behind it: started as init
//! starts them, serving a NIC-driver consumer over its listener.
//!
//! Needs the `teed` and `secure-world` binaries next to this crate's binaries: `cargo build
//! --workspace --bins` first (`cargo xtask test` does).
#![allow(clippy::unwrap_used)]

use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use secure_world::ta::bnxt::coredump_chunk;
use tee_proto::bnxt::{BnxtError, BnxtRequest, BnxtResponse};
use tee_proto::lifecycle::{
    BootInfo, BootKind, InitRequest, RamWindow, ServerEvent, ServerKind, ShutdownReason,
};
use tee_proto::{Frame, Header, FRAME_MAX};
use tee_rt::endpoint::Endpoint;
use tee_rt::framing::{read_frame, write_frame};
use tee_rt::harness::{
    open_descriptors, recv_frame_within, ScratchDir, SecureWorldProcess, ServerProcess,
};
use tee_rt::spawn::sibling_binary;

const RAM_SIZE: u64 = 64 << 20;
const WAIT: Duration = Duration::from_secs(20);
const TEED_GENERATION: u32 = 1;
const BNXTD_GENERATION: u32 = 1;

const BOOT: BootInfo = BootInfo {
    boot_id: 1,
    kind: BootKind::Cold,
    crash_flag: false,
};

/// Sends one lifecycle request and returns the answer.
fn ask(
    server: &ServerProcess,
    to: u32,
    id: u32,
    body: InitRequest,
    fds: &[BorrowedFd<'_>],
) -> ServerEvent {
    let lifecycle = server.lifecycle().unwrap();
    let header = Header::new(0, to, id);
    lifecycle.send_frame(&Frame { header, body }, fds).unwrap();
    let (frame, _) = recv_frame_within::<ServerEvent>(lifecycle, WAIT).unwrap();
    assert_eq!(frame.header.request_id, id);
    frame.body
}

/// The NIC driver's side of a consumer connection.
struct NicDriver {
    stream: UnixStream,
    next_id: u32,
}

impl NicDriver {
    fn connect(path: &Path) -> NicDriver {
        let stream = UnixStream::connect(path).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        NicDriver { stream, next_id: 0 }
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        write_frame(&mut self.stream, bytes).unwrap();
    }

    fn receive(&mut self) -> Frame<BnxtResponse> {
        let mut buf = Vec::new();
        read_frame(&mut self.stream, &mut buf, FRAME_MAX).unwrap();
        tee_proto::decode(&buf).unwrap()
    }

    fn request(&mut self, body: BnxtRequest) -> BnxtResponse {
        self.next_id += 1;
        let frame = Frame {
            header: Header::new(0, BNXTD_GENERATION, self.next_id),
            body,
        };
        let mut buf = [0u8; FRAME_MAX];
        let encoded = tee_proto::encode(&frame, &mut buf).unwrap().to_vec();
        self.send_raw(&encoded);
        let answer = self.receive();
        assert_eq!(answer.header.request_id, self.next_id);
        assert_eq!(answer.header.from_generation, BNXTD_GENERATION);
        answer.body
    }
}

/// Starts incarnation `generation` of teed on `world` and waits for its Ready.
fn start_teed(world: &SecureWorldProcess, generation: u32) -> ServerProcess {
    let teed = ServerProcess::spawn(&sibling_binary("teed").unwrap(), &[]).unwrap();
    let conduit = world.connect_conduit().unwrap();
    let ram = world.open_ram().unwrap();
    let hello = InitRequest::Hello {
        generation,
        teed_generation: generation,
        boot: BOOT,
        ram: world.frame_window(),
        journal: world.journal_window(),
    };
    let ready = ask(&teed, generation, 1, hello, &[conduit.as_fd(), ram.as_fd()]);
    assert_eq!(ready, ServerEvent::Ready { generation });
    teed
}

/// Connects bnxtd's incarnation to `teed` as init does; returns bnxtd's end.
fn connect_bnxtd(teed: &ServerProcess, teed_generation: u32) -> Endpoint {
    let (teed_side, bnxtd_side) = Endpoint::pair().unwrap();
    let client_endpoint = Frame {
        header: Header::new(0, teed_generation, 2),
        body: InitRequest::ClientEndpoint {
            client: ServerKind::Bnxtd,
            generation: BNXTD_GENERATION,
        },
    };
    teed.lifecycle()
        .unwrap()
        .send_frame(&client_endpoint, &[teed_side.as_fd()])
        .unwrap();
    bnxtd_side
}

/// Starts bnxtd with its capabilities and waits for its Ready; returns it and its socket path.
fn start_bnxtd(
    world: &SecureWorldProcess,
    scratch: &ScratchDir,
    teed_endpoint: Endpoint,
) -> (ServerProcess, std::path::PathBuf) {
    let socket_path = scratch.path().join("bnxt.sock");
    let listener = UnixListener::bind(&socket_path).unwrap();
    let ram = world.open_ram().unwrap();
    let bnxtd = ServerProcess::spawn(Path::new(env!("CARGO_BIN_EXE_bnxtd")), &[]).unwrap();
    let none = RamWindow { base: 0, len: 0 };
    let hello = InitRequest::Hello {
        generation: BNXTD_GENERATION,
        teed_generation: TEED_GENERATION,
        boot: BOOT,
        ram: none,
        journal: none,
    };
    let ready = ask(
        &bnxtd,
        BNXTD_GENERATION,
        1,
        hello,
        &[teed_endpoint.as_fd(), ram.as_fd(), listener.as_fd()],
    );
    assert_eq!(
        ready,
        ServerEvent::Ready {
            generation: BNXTD_GENERATION
        }
    );
    (bnxtd, socket_path)
}

fn expected_chunk(offset: u32, size: u32) -> Vec<u8> {
    let len = size.min((8 << 20) - offset) as usize;
    let mut expected = vec![0u8; len];
    coredump_chunk(u64::from(offset), &mut expected).unwrap();
    expected
}

#[test]
fn bnxtd_serves_fastboot_and_the_coredump_through_teed() {
    let world = SecureWorldProcess::start("bnxtd-e2e", RAM_SIZE).unwrap();
    let scratch = ScratchDir::new("bnxtd-e2e-sockets").unwrap();
    let teed = start_teed(&world, TEED_GENERATION);
    let (mut bnxtd, socket_path) =
        start_bnxtd(&world, &scratch, connect_bnxtd(&teed, TEED_GENERATION));

    let mut nic = NicDriver::connect(&socket_path);
    assert_eq!(nic.request(BnxtRequest::Load), BnxtResponse::Loaded);
    assert_eq!(
        nic.request(BnxtRequest::CoredumpLen),
        BnxtResponse::CoredumpLen { len: 8 << 20 }
    );
    // Chunks from the first window, from the second, and the short last one.
    for (offset, size) in [
        (0u32, 4096u32),
        (4096, 1000),
        (5 << 20, 4096),
        ((8 << 20) - 100, 4096),
    ] {
        let BnxtResponse::Coredump {
            offset: got_offset,
            data,
        } = nic.request(BnxtRequest::CopyCoredump { offset, size })
        else {
            panic!("no coredump chunk at {offset}");
        };
        assert_eq!(got_offset, offset);
        assert_eq!(
            data.as_slice(),
            expected_chunk(offset, size).as_slice(),
            "chunk at {offset}"
        );
    }
    assert!(matches!(
        nic.request(BnxtRequest::CopyCoredump {
            offset: 8 << 20,
            size: 1
        }),
        BnxtResponse::Error(BnxtError::BadOffset { .. })
    ));

    // A frame whose header decodes but whose body does not is answered; the connection lives.
    let mut buf = [0u8; 16];
    let mut bad = tee_proto::encode(
        &Frame {
            header: Header::new(0, BNXTD_GENERATION, 77),
            body: (),
        },
        &mut buf,
    )
    .unwrap()
    .to_vec();
    bad.push(0xEE);
    nic.send_raw(&bad);
    let answer = nic.receive();
    assert_eq!(answer.header.request_id, 77);
    assert_eq!(answer.body, BnxtResponse::Error(BnxtError::BadRequest));
    assert_eq!(nic.request(BnxtRequest::Load), BnxtResponse::Loaded);

    // bnxtd holds its lifecycle endpoint, its teed endpoint, the listener and the consumer
    // connection, and no file: the RAM descriptor was closed once mapped.
    let fds = open_descriptors(bnxtd.pid()).unwrap();
    let sockets = fds.iter().filter(|(_, t)| t.starts_with("socket:")).count();
    assert_eq!(sockets, 4, "bnxtd holds {fds:?}");
    assert!(
        fds.iter().all(|(n, t)| *n <= 2 || t.starts_with("socket:")),
        "bnxtd holds {fds:?}"
    );

    // Shutdown in Linux order: the client releases its buffer and session, then teed.
    let ServerEvent::ShutdownAck(report) = ask(
        &bnxtd,
        BNXTD_GENERATION,
        2,
        InitRequest::Shutdown {
            reason: ShutdownReason::Kexec,
        },
        &[],
    ) else {
        panic!("bnxtd did not ack");
    };
    assert_eq!(report.errors, 0, "{report:?}");
    assert_eq!(
        (report.unregistered, report.sessions_closed),
        (1, 1),
        "{report:?}"
    );
    assert_eq!(
        nic.request(BnxtRequest::Load),
        BnxtResponse::Error(BnxtError::NoDevice)
    );
    bnxtd.close_lifecycle();
    let status = bnxtd.child.wait_exit(WAIT).unwrap().expect("bnxtd exits");
    assert_eq!(status.code(), Some(0));

    let ServerEvent::ShutdownAck(report) = ask(
        &teed,
        TEED_GENERATION,
        3,
        InitRequest::Shutdown {
            reason: ShutdownReason::Kexec,
        },
        &[],
    ) else {
        panic!("teed did not ack");
    };
    assert_eq!(report.errors, 0, "{report:?}");
    assert_eq!(
        (report.unregistered, report.sessions_closed),
        (0, 0),
        "{report:?}"
    );
}

/// teed dies and its successor comes up: bnxtd gets the new endpoint with `TeedEndpoint`,
/// learns of the restart from the transport, re-opens its session and buffer, and the NIC
/// driver sees at most retryable errors, never a wrong answer.
#[test]
fn bnxtd_follows_a_teed_restart_to_its_new_endpoint() {
    let world = SecureWorldProcess::start("bnxtd-restart", RAM_SIZE).unwrap();
    let scratch = ScratchDir::new("bnxtd-restart-sockets").unwrap();
    let teed = start_teed(&world, TEED_GENERATION);
    let (bnxtd, socket_path) = start_bnxtd(&world, &scratch, connect_bnxtd(&teed, TEED_GENERATION));
    let mut nic = NicDriver::connect(&socket_path);
    assert_eq!(nic.request(BnxtRequest::Load), BnxtResponse::Loaded);

    drop(teed);
    let successor = TEED_GENERATION + 1;
    let teed = start_teed(&world, successor);
    let endpoint = connect_bnxtd(&teed, successor);
    let swap = Frame {
        header: Header::new(0, BNXTD_GENERATION, 2),
        body: InitRequest::TeedEndpoint {
            teed_generation: successor,
        },
    };
    bnxtd
        .lifecycle()
        .unwrap()
        .send_frame(&swap, &[endpoint.as_fd()])
        .unwrap();
    drop(endpoint);

    // The window at 6 MiB is not cached: it must come through the successor.
    let (offset, size) = (6 << 20, 4096);
    let mut answered = None;
    for _ in 0..20 {
        match nic.request(BnxtRequest::CopyCoredump { offset, size }) {
            BnxtResponse::Coredump { data, .. } => {
                answered = Some(data);
                break;
            }
            BnxtResponse::Error(error) if error.is_retryable() => {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => panic!("unexpected answer after the restart: {other:?}"),
        }
    }
    let data = answered.expect("bnxtd served again after the restart");
    assert_eq!(data.as_slice(), expected_chunk(offset, size).as_slice());
    let ServerEvent::Status(status) = ask(&teed, successor, 3, InitRequest::Status, &[]) else {
        panic!("no status from the successor");
    };
    assert_eq!(
        (status.sessions, status.registrations),
        (1, 1),
        "{status:?}"
    );
}

#[test]
fn bnxtd_refuses_a_hello_without_its_listener() {
    let mut bnxtd = ServerProcess::spawn(Path::new(env!("CARGO_BIN_EXE_bnxtd")), &[]).unwrap();
    let (_teed_side, bnxtd_side) = Endpoint::pair().unwrap();
    let none = RamWindow { base: 0, len: 0 };
    let hello = InitRequest::Hello {
        generation: BNXTD_GENERATION,
        teed_generation: TEED_GENERATION,
        boot: BOOT,
        ram: none,
        journal: none,
    };
    let answer = ask(&bnxtd, BNXTD_GENERATION, 1, hello, &[bnxtd_side.as_fd()]);
    assert_eq!(answer, ServerEvent::Error(tee_proto::WireError::BadRequest));
    let status = bnxtd.child.wait_exit(WAIT).unwrap().expect("bnxtd exits");
    assert_eq!(status.code(), Some(1));
}
