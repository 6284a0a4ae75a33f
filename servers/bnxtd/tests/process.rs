//! bnxtd as a process, with a real teed and a real secure world behind it: started as init
//! starts them, serving a NIC-driver consumer over its listener.
//!
//! Needs the `teed` and `secure-world` binaries next to this crate's binaries: `cargo build
//! --workspace --bins` first (`cargo xtask test` does).
#![allow(clippy::unwrap_used)]

use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tee_proto::bnxt::{BnxtError, BnxtRequest, BnxtResponse};
use tee_proto::grants::ClientGrants;
use tee_proto::lifecycle::{InitRequest, ServerEvent, ServerKind, ShutdownReason, ShutdownReport};
use tee_proto::{Frame, Header};
use tee_rt::endpoint::Endpoint;
use tee_test_support::bnxt_image::coredump_chunk;
use tee_test_support::hosted::{
    client_hello, connect_client, descriptor_census, start_client, FrameClient, ScratchDir,
    SecureWorldProcess, ServerProcess, COLD_BOOT,
};

const RAM_SIZE: u64 = 64 << 20;
const WAIT: Duration = Duration::from_secs(20);
const TEED_GENERATION: u32 = 1;
const BNXTD_GENERATION: u32 = 1;

/// The NIC driver's side of a consumer connection.
struct NicDriver(FrameClient<BnxtRequest, BnxtResponse>);

impl NicDriver {
    fn connect(path: &Path) -> NicDriver {
        NicDriver(FrameClient::connect(path, BNXTD_GENERATION, WAIT).unwrap())
    }

    fn request(&mut self, body: BnxtRequest) -> BnxtResponse {
        let answer = self.0.request(body).unwrap();
        assert_eq!(answer.header.from_generation, BNXTD_GENERATION);
        answer.body
    }
}

/// Starts incarnation `generation` of teed on `world` and waits for its Ready.
fn start_teed(world: &SecureWorldProcess, generation: u32) -> ServerProcess {
    tee_test_support::hosted::start_teed(world, generation, COLD_BOOT, WAIT).unwrap()
}

/// Connects bnxtd's incarnation to `teed` as init does; returns bnxtd's end.
fn connect_bnxtd(teed: &ServerProcess, teed_generation: u32) -> Endpoint {
    connect_client(
        teed,
        teed_generation,
        2,
        ServerKind::Bnxtd,
        BNXTD_GENERATION,
    )
    .unwrap()
}

fn bnxtd_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_bnxtd"))
}

/// Starts bnxtd with its capabilities and waits for its Ready; returns it and its socket path.
fn start_bnxtd(
    world: &SecureWorldProcess,
    scratch: &ScratchDir,
    teed_endpoint: Endpoint,
) -> (ServerProcess, PathBuf) {
    let socket_path = scratch.path().join("bnxt.sock");
    let listener = UnixListener::bind(&socket_path).unwrap();
    let ram = world.open_ram().unwrap();
    let bnxtd = start_client(
        bnxtd_binary(),
        BNXTD_GENERATION,
        TEED_GENERATION,
        COLD_BOOT,
        ClientGrants {
            teed: teed_endpoint.as_fd(),
            window: ram.as_fd(),
            consumers: listener.as_fd(),
            swtpm: None,
        },
        WAIT,
    )
    .unwrap();
    (bnxtd, socket_path)
}

/// Shuts `server` down for kexec without errors; returns the report.
fn shut_down_for_kexec(server: &ServerProcess, generation: u32, id: u32) -> ShutdownReport {
    let report = server
        .shutdown(generation, id, ShutdownReason::Kexec, WAIT)
        .unwrap();
    assert_eq!(report.errors, 0, "{report:?}");
    report
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
    nic.0.send_raw(&bad).unwrap();
    let answer = nic.0.receive().unwrap();
    assert_eq!(answer.header.request_id, 77);
    assert_eq!(answer.body, BnxtResponse::Error(BnxtError::BadRequest));
    assert_eq!(nic.request(BnxtRequest::Load), BnxtResponse::Loaded);

    // bnxtd holds its lifecycle endpoint, its teed endpoint, the listener and the consumer
    // connection, and no file: the RAM descriptor was closed once mapped.
    let census = descriptor_census(bnxtd.pid()).unwrap();
    assert_eq!(census.sockets, 4, "bnxtd holds {census:?}");
    assert!(census.others.is_empty(), "bnxtd holds {census:?}");

    // Shutdown in Linux order: the client releases its buffer and session, then teed.
    let report = shut_down_for_kexec(&bnxtd, BNXTD_GENERATION, 2);
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
    assert_eq!(bnxtd.exit_code_within(WAIT).unwrap(), Some(0));

    let report = shut_down_for_kexec(&teed, TEED_GENERATION, 3);
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
    let swap = InitRequest::TeedEndpoint {
        teed_generation: successor,
    };
    bnxtd
        .send_to(BNXTD_GENERATION, 2, swap, &[endpoint.as_fd()])
        .unwrap();
    drop(endpoint);

    // The window at 6 MiB is not cached: it must come through the successor. Until bnxtd has
    // moved to it, a request may be answered "retry" (the call in flight to the old teed was
    // lost, or the old session is unknown to the new one); each retry waits on bnxtd's answer,
    // and the whole move is bounded by one deadline.
    let (offset, size) = (6 << 20, 4096);
    let deadline = Instant::now() + WAIT;
    let mut retries = 0u32;
    let data = loop {
        match nic.request(BnxtRequest::CopyCoredump { offset, size }) {
            BnxtResponse::Coredump { data, .. } => break data,
            BnxtResponse::Error(error) if error.is_retryable() => {
                retries += 1;
                assert!(
                    Instant::now() < deadline,
                    "bnxtd did not serve again within {WAIT:?} of the restart ({retries} retries)"
                );
            }
            other => panic!("unexpected answer after the restart: {other:?}"),
        }
    };
    assert_eq!(data.as_slice(), expected_chunk(offset, size).as_slice());
    let ServerEvent::Status(status) = teed
        .ask(successor, 3, InitRequest::Status, &[], WAIT)
        .unwrap()
    else {
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
    let mut bnxtd = ServerProcess::spawn(bnxtd_binary(), &[]).unwrap();
    let (_teed_side, bnxtd_side) = Endpoint::pair().unwrap();
    let answer = bnxtd
        .ask(
            BNXTD_GENERATION,
            1,
            client_hello(BNXTD_GENERATION, TEED_GENERATION, COLD_BOOT),
            &[bnxtd_side.as_fd()],
            WAIT,
        )
        .unwrap();
    assert_eq!(answer, ServerEvent::Error(tee_proto::WireError::BadRequest));
    assert_eq!(bnxtd.exit_code_within(WAIT).unwrap(), Some(1));
}
