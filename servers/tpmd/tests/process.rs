//! tpmd as a process: with a real teed and the secure world's fTPM (libtpms) behind it, and in a
//! crash boot where it must never reach for the TEE. Started as init starts it; a TPM consumer
//! speaks native frames on its listener.
//!
//! Needs the `teed` and `secure-world` binaries next to this crate's binaries: `cargo build
//! --workspace --bins` first (`cargo xtask test` does).
#![allow(clippy::unwrap_used)]

use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use tee_proto::lifecycle::{
    BootInfo, BootKind, InitRequest, RamWindow, ServerEvent, ServerKind, ShutdownReason,
};
use tee_proto::tpm::{TpmError, TpmRequest, TpmResponse};
use tee_proto::{Frame, Header, FRAME_MAX};
use tee_rt::endpoint::Endpoint;
use tee_rt::framing::{read_frame, write_frame};
use tee_rt::harness::{recv_frame_within, ScratchDir, SecureWorldProcess, ServerProcess};
use tee_rt::server::EXIT_INIT_GONE;
use tee_rt::spawn::sibling_binary;

const RAM_SIZE: u64 = 64 << 20;
const WAIT: Duration = Duration::from_secs(20);
const TEED_GENERATION: u32 = 1;
const TPMD_GENERATION: u32 = 1;
const NO_WINDOW: RamWindow = RamWindow { base: 0, len: 0 };

/// TPM2_Startup(SU_CLEAR).
const STARTUP_CLEAR: [u8; 12] = [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x44, 0, 0];
/// TPM2_GetRandom(16).
const GET_RANDOM_16: [u8; 12] = [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7B, 0, 16];

fn boot(kind: BootKind, crash_flag: bool) -> BootInfo {
    BootInfo {
        boot_id: 1,
        kind,
        crash_flag,
    }
}

fn tpmd_hello(boot: BootInfo) -> InitRequest {
    InitRequest::Hello {
        generation: TPMD_GENERATION,
        teed_generation: TEED_GENERATION,
        boot,
        ram: NO_WINDOW,
        journal: NO_WINDOW,
    }
}

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

/// A TPM consumer on tpmd's native listener.
struct TpmConsumer {
    stream: UnixStream,
    next_id: u32,
}

impl TpmConsumer {
    fn connect(path: &Path) -> TpmConsumer {
        let stream = UnixStream::connect(path).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        TpmConsumer { stream, next_id: 0 }
    }

    fn command(&mut self, bytes: &[u8]) -> TpmResponse {
        self.next_id += 1;
        let frame = Frame {
            header: Header::new(0, TPMD_GENERATION, self.next_id),
            body: TpmRequest::Command {
                bytes: heapless::Vec::from_slice(bytes).unwrap(),
            },
        };
        let mut buf = [0u8; FRAME_MAX];
        write_frame(
            &mut self.stream,
            tee_proto::encode(&frame, &mut buf).unwrap(),
        )
        .unwrap();
        let mut answer = Vec::new();
        read_frame(&mut self.stream, &mut answer, FRAME_MAX).unwrap();
        let answer: Frame<TpmResponse> = tee_proto::decode(&answer).unwrap();
        assert_eq!(answer.header.request_id, self.next_id);
        answer.body
    }
}

fn response_code(response: &[u8]) -> u32 {
    u32::from_be_bytes(response[6..10].try_into().unwrap())
}

#[test]
fn tpmd_runs_tpm_commands_on_the_secure_worlds_ftpm() {
    let world = SecureWorldProcess::start("tpmd-e2e", RAM_SIZE).unwrap();
    let scratch = ScratchDir::new("tpmd-e2e-sockets").unwrap();
    let teed = ServerProcess::spawn(&sibling_binary("teed").unwrap(), &[]).unwrap();
    let conduit = world.connect_conduit().unwrap();
    let ram = world.open_ram().unwrap();
    let teed_hello = InitRequest::Hello {
        generation: TEED_GENERATION,
        teed_generation: TEED_GENERATION,
        boot: boot(BootKind::Cold, false),
        ram: world.frame_window(),
        journal: world.journal_window(),
    };
    let ready = ask(
        &teed,
        TEED_GENERATION,
        1,
        teed_hello,
        &[conduit.as_fd(), ram.as_fd()],
    );
    assert_eq!(
        ready,
        ServerEvent::Ready {
            generation: TEED_GENERATION
        }
    );

    let (teed_side, tpmd_side) = Endpoint::pair().unwrap();
    let client_endpoint = Frame {
        header: Header::new(0, TEED_GENERATION, 2),
        body: InitRequest::ClientEndpoint {
            client: ServerKind::Tpmd,
            generation: TPMD_GENERATION,
        },
    };
    teed.lifecycle()
        .unwrap()
        .send_frame(&client_endpoint, &[teed_side.as_fd()])
        .unwrap();
    drop(teed_side);

    let socket_path = scratch.path().join("tpm.sock");
    let listener = UnixListener::bind(&socket_path).unwrap();
    let mut tpmd = ServerProcess::spawn(Path::new(env!("CARGO_BIN_EXE_tpmd")), &[]).unwrap();
    let ready = ask(
        &tpmd,
        TPMD_GENERATION,
        1,
        tpmd_hello(boot(BootKind::Cold, false)),
        &[tpmd_side.as_fd(), ram.as_fd(), listener.as_fd()],
    );
    assert_eq!(
        ready,
        ServerEvent::Ready {
            generation: TPMD_GENERATION
        }
    );
    drop((tpmd_side, listener, conduit, ram));

    let mut consumer = TpmConsumer::connect(&socket_path);
    let TpmResponse::Response { bytes } = consumer.command(&STARTUP_CLEAR) else {
        panic!("no TPM response to Startup");
    };
    assert_eq!(response_code(&bytes), 0, "Startup answered {bytes:02x?}");
    let TpmResponse::Response { bytes: first } = consumer.command(&GET_RANDOM_16) else {
        panic!("no TPM response to GetRandom");
    };
    assert_eq!(response_code(&first), 0);
    assert_eq!(first.len(), 10 + 2 + 16);
    assert_eq!(&first[10..12], &[0, 16]);
    let TpmResponse::Response { bytes: second } = consumer.command(&GET_RANDOM_16) else {
        panic!("no TPM response to GetRandom");
    };
    assert_ne!(first[12..], second[12..], "two random draws differ");

    // Malformed commands are refused by tpmd before they reach the TPM.
    assert_eq!(
        consumer.command(&[0x80, 0x01, 0, 0]),
        TpmResponse::Error(TpmError::CommandTooShort { len: 4 })
    );

    let ServerEvent::ShutdownAck(report) = ask(
        &tpmd,
        TPMD_GENERATION,
        2,
        InitRequest::Shutdown {
            reason: ShutdownReason::Reboot,
        },
        &[],
    ) else {
        panic!("tpmd did not ack");
    };
    assert_eq!(report.errors, 0, "{report:?}");
    assert_eq!(
        (report.unregistered, report.sessions_closed),
        (1, 1),
        "{report:?}"
    );
    tpmd.close_lifecycle();
    let status = tpmd.child.wait_exit(WAIT).unwrap().expect("tpmd exits");
    assert_eq!(status.code(), Some(0));

    let ServerEvent::ShutdownAck(report) = ask(
        &teed,
        TEED_GENERATION,
        3,
        InitRequest::Shutdown {
            reason: ShutdownReason::Reboot,
        },
        &[],
    ) else {
        panic!("teed did not ack");
    };
    assert_eq!(report.errors, 0, "{report:?}");
}

/// In a crash boot tpmd serves without a TEE: it never writes to its teed endpoint, answers
/// consumers "TEE unavailable", and still acknowledges the shutdown.
#[test]
fn tpmd_in_a_crash_boot_answers_tee_unavailable_without_touching_teed() {
    let scratch = ScratchDir::new("tpmd-crash").unwrap();
    let world_ram = scratch.path().join("ram");
    std::fs::File::create(&world_ram)
        .unwrap()
        .set_len(RAM_SIZE)
        .unwrap();
    let ram = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&world_ram)
        .unwrap();
    let (teed_side, tpmd_side) = Endpoint::pair().unwrap();
    teed_side.set_nonblocking(true).unwrap();
    let socket_path = scratch.path().join("tpm.sock");
    let listener = UnixListener::bind(&socket_path).unwrap();

    let mut tpmd = ServerProcess::spawn(Path::new(env!("CARGO_BIN_EXE_tpmd")), &[]).unwrap();
    let ready = ask(
        &tpmd,
        TPMD_GENERATION,
        1,
        tpmd_hello(boot(BootKind::CrashKernel, true)),
        &[tpmd_side.as_fd(), ram.as_fd(), listener.as_fd()],
    );
    assert_eq!(
        ready,
        ServerEvent::Ready {
            generation: TPMD_GENERATION
        }
    );
    drop((tpmd_side, listener, ram));

    let mut consumer = TpmConsumer::connect(&socket_path);
    assert_eq!(
        consumer.command(&GET_RANDOM_16),
        TpmResponse::Error(TpmError::TeeUnavailable)
    );
    // A frame for an earlier tpmd is told of the restart.
    let stale = Frame {
        header: Header::new(0, TPMD_GENERATION + 1, 50),
        body: TpmRequest::Command {
            bytes: heapless::Vec::from_slice(&GET_RANDOM_16).unwrap(),
        },
    };
    let mut buf = [0u8; FRAME_MAX];
    write_frame(
        &mut consumer.stream,
        tee_proto::encode(&stale, &mut buf).unwrap(),
    )
    .unwrap();
    let mut answer = Vec::new();
    read_frame(&mut consumer.stream, &mut answer, FRAME_MAX).unwrap();
    let answer: Frame<TpmResponse> = tee_proto::decode(&answer).unwrap();
    assert_eq!(answer.header.request_id, 50);
    assert_eq!(
        answer.body,
        TpmResponse::Error(TpmError::ServerRestarted {
            generation: TPMD_GENERATION
        })
    );

    let mut packet = [0u8; 64];
    assert!(
        teed_side.recv(&mut packet).unwrap_err().is_would_block(),
        "tpmd wrote to teed in a crash boot"
    );

    let ServerEvent::ShutdownAck(report) = ask(
        &tpmd,
        TPMD_GENERATION,
        2,
        InitRequest::Shutdown {
            reason: ShutdownReason::Crash,
        },
        &[],
    ) else {
        panic!("tpmd did not ack");
    };
    assert_eq!(report.errors, 0, "{report:?}");
    tpmd.close_lifecycle();
    let status = tpmd.child.wait_exit(WAIT).unwrap().expect("tpmd exits");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn tpmd_exits_when_init_goes_away() {
    let scratch = ScratchDir::new("tpmd-orphan").unwrap();
    let ram_path = scratch.path().join("ram");
    std::fs::File::create(&ram_path)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let ram = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&ram_path)
        .unwrap();
    let (_teed_side, tpmd_side) = Endpoint::pair().unwrap();
    let listener = UnixListener::bind(scratch.path().join("tpm.sock")).unwrap();
    let mut tpmd = ServerProcess::spawn(Path::new(env!("CARGO_BIN_EXE_tpmd")), &[]).unwrap();
    let ready = ask(
        &tpmd,
        TPMD_GENERATION,
        1,
        tpmd_hello(boot(BootKind::CrashKernel, true)),
        &[tpmd_side.as_fd(), ram.as_fd(), listener.as_fd()],
    );
    assert!(matches!(ready, ServerEvent::Ready { .. }), "{ready:?}");
    tpmd.close_lifecycle();
    let status = tpmd.child.wait_exit(WAIT).unwrap().expect("tpmd exits");
    assert_eq!(status.code(), Some(i32::from(EXIT_INIT_GONE)));
}
