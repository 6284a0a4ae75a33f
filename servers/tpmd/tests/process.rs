//! tpmd as a process: with a real teed and the secure world's fTPM (libtpms) behind it, and in a
//! crash boot where it must never reach for the TEE. Started as init starts it; a TPM consumer
//! speaks native frames on its listener.
//!
//! Needs the `teed` and `secure-world` binaries next to this crate's binaries: `cargo build
//! --workspace --bins` first (`cargo xtask test` does).
#![allow(clippy::unwrap_used)]

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::Duration;

use tee_proto::grants::ClientGrants;
use tee_proto::lifecycle::{
    BootInfo, BootKind, ServerEvent, ServerKind, ShutdownReason, ShutdownReport,
};
use tee_proto::tpm::{TpmError, TpmRequest, TpmResponse};
use tee_proto::{Frame, Header};
use tee_rt::endpoint::Endpoint;
use tee_rt::server::EXIT_INIT_GONE;
use tee_test_support::hosted::{
    client_hello, connect_client, start_client, start_teed, FrameClient, ScratchDir,
    SecureWorldProcess, ServerProcess, COLD_BOOT,
};

const RAM_SIZE: u64 = 64 << 20;
const WAIT: Duration = Duration::from_secs(20);
const TEED_GENERATION: u32 = 1;
const TPMD_GENERATION: u32 = 1;

/// TPM2_Startup(SU_CLEAR).
const STARTUP_CLEAR: [u8; 12] = [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x44, 0, 0];
/// TPM2_GetRandom(16).
const GET_RANDOM_16: [u8; 12] = [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7B, 0, 16];

const CRASH_BOOT: BootInfo = BootInfo {
    boot_id: 1,
    kind: BootKind::CrashKernel,
    crash_flag: true,
};

/// A TPM consumer on tpmd's native listener.
type TpmConsumer = FrameClient<TpmRequest, TpmResponse>;

fn connect_consumer(path: &Path) -> TpmConsumer {
    FrameClient::connect(path, TPMD_GENERATION, WAIT).unwrap()
}

fn command(bytes: &[u8]) -> TpmRequest {
    TpmRequest::Command {
        bytes: heapless::Vec::from_slice(bytes).unwrap(),
    }
}

fn run(consumer: &mut TpmConsumer, bytes: &[u8]) -> TpmResponse {
    consumer.request(command(bytes)).unwrap().body
}

/// Spawns tpmd, grants it its teed endpoint, the RAM and its listener with its `Hello` in
/// `boot`, and waits for its `Ready`.
fn start_tpmd(
    boot: BootInfo,
    teed: BorrowedFd<'_>,
    ram: BorrowedFd<'_>,
    listener: BorrowedFd<'_>,
) -> ServerProcess {
    let program = Path::new(env!("CARGO_BIN_EXE_tpmd"));
    let grants = ClientGrants {
        teed,
        window: ram,
        consumers: listener,
        swtpm: None,
    };
    start_client(
        program,
        TPMD_GENERATION,
        TEED_GENERATION,
        boot,
        grants,
        WAIT,
    )
    .unwrap()
}

/// A zeroed RAM file of `len` bytes in `scratch`, opened read-write (no secure world needed).
fn scratch_ram(scratch: &ScratchDir, len: u64) -> File {
    let path = scratch.path().join("ram");
    File::create(&path).unwrap().set_len(len).unwrap();
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap()
}

/// Shuts tpmd down for `reason` without errors, closes init's side and expects a clean exit.
fn shut_down_clean(mut tpmd: ServerProcess, reason: ShutdownReason) -> ShutdownReport {
    let report = tpmd.shutdown(TPMD_GENERATION, 2, reason, WAIT).unwrap();
    assert_eq!(report.errors, 0, "{report:?}");
    tpmd.close_lifecycle();
    assert_eq!(tpmd.exit_code_within(WAIT).unwrap(), Some(0));
    report
}

fn response_code(response: &[u8]) -> u32 {
    u32::from_be_bytes(response[6..10].try_into().unwrap())
}

#[test]
fn tpmd_runs_tpm_commands_on_the_secure_worlds_ftpm() {
    let world = SecureWorldProcess::start("tpmd-e2e", RAM_SIZE).unwrap();
    let scratch = ScratchDir::new("tpmd-e2e-sockets").unwrap();
    let teed = start_teed(&world, TEED_GENERATION, COLD_BOOT, WAIT).unwrap();
    let tpmd_side =
        connect_client(&teed, TEED_GENERATION, 2, ServerKind::Tpmd, TPMD_GENERATION).unwrap();

    let socket_path = scratch.path().join("tpm.sock");
    let listener = UnixListener::bind(&socket_path).unwrap();
    let ram = world.open_ram().unwrap();
    let tpmd = start_tpmd(COLD_BOOT, tpmd_side.as_fd(), ram.as_fd(), listener.as_fd());
    drop((tpmd_side, listener, ram));

    let mut consumer = connect_consumer(&socket_path);
    let TpmResponse::Response { bytes } = run(&mut consumer, &STARTUP_CLEAR) else {
        panic!("no TPM response to Startup");
    };
    // The fTPM TA started the TPM when it was created (fTPM.c TA_CreateEntryPoint).
    assert_eq!(
        response_code(&bytes),
        0x100,
        "Startup answered {bytes:02x?}: not TPM_RC_INITIALIZE"
    );
    let TpmResponse::Response { bytes: first } = run(&mut consumer, &GET_RANDOM_16) else {
        panic!("no TPM response to GetRandom");
    };
    assert_eq!(response_code(&first), 0);
    assert_eq!(first.len(), 10 + 2 + 16);
    assert_eq!(&first[10..12], &[0, 16]);
    let TpmResponse::Response { bytes: second } = run(&mut consumer, &GET_RANDOM_16) else {
        panic!("no TPM response to GetRandom");
    };
    assert_ne!(first[12..], second[12..], "two random draws differ");

    // Malformed commands are refused by tpmd before they reach the TPM.
    assert_eq!(
        run(&mut consumer, &[0x80, 0x01, 0, 0]),
        TpmResponse::Error(TpmError::CommandTooShort { len: 4 })
    );

    let report = shut_down_clean(tpmd, ShutdownReason::Reboot);
    assert_eq!(
        (report.unregistered, report.sessions_closed),
        (1, 1),
        "{report:?}"
    );

    let report = teed
        .shutdown(TEED_GENERATION, 3, ShutdownReason::Reboot, WAIT)
        .unwrap();
    assert_eq!(report.errors, 0, "{report:?}");
}

/// In a crash boot tpmd serves without a TEE: it never writes to its teed endpoint, answers
/// consumers "TEE unavailable", and still acknowledges the shutdown.
#[test]
fn tpmd_in_a_crash_boot_answers_tee_unavailable_without_touching_teed() {
    let scratch = ScratchDir::new("tpmd-crash").unwrap();
    let ram = scratch_ram(&scratch, RAM_SIZE);
    let (teed_side, tpmd_side) = Endpoint::pair().unwrap();
    teed_side.set_nonblocking(true).unwrap();
    let socket_path = scratch.path().join("tpm.sock");
    let listener = UnixListener::bind(&socket_path).unwrap();

    let tpmd = start_tpmd(CRASH_BOOT, tpmd_side.as_fd(), ram.as_fd(), listener.as_fd());
    drop((tpmd_side, listener, ram));

    let mut consumer = connect_consumer(&socket_path);
    assert_eq!(
        run(&mut consumer, &GET_RANDOM_16),
        TpmResponse::Error(TpmError::TeeUnavailable)
    );
    // A frame for an earlier tpmd is told of the restart.
    let stale = Frame {
        header: Header::new(0, TPMD_GENERATION + 1, 50),
        body: command(&GET_RANDOM_16),
    };
    consumer.send_frame(&stale).unwrap();
    let answer = consumer.receive().unwrap();
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

    shut_down_clean(tpmd, ShutdownReason::Crash);
}

#[test]
fn tpmd_exits_when_init_goes_away() {
    let scratch = ScratchDir::new("tpmd-orphan").unwrap();
    let ram = scratch_ram(&scratch, 1 << 20);
    let (_teed_side, tpmd_side) = Endpoint::pair().unwrap();
    let listener = UnixListener::bind(scratch.path().join("tpm.sock")).unwrap();
    let mut tpmd = ServerProcess::spawn(Path::new(env!("CARGO_BIN_EXE_tpmd")), &[]).unwrap();
    let hello = client_hello(TPMD_GENERATION, TEED_GENERATION, CRASH_BOOT);
    let ready = tpmd
        .ask(
            TPMD_GENERATION,
            1,
            hello,
            &[tpmd_side.as_fd(), ram.as_fd(), listener.as_fd()],
            WAIT,
        )
        .unwrap();
    assert!(matches!(ready, ServerEvent::Ready { .. }), "{ready:?}");
    tpmd.close_lifecycle();
    assert_eq!(
        tpmd.exit_code_within(WAIT).unwrap(),
        Some(i32::from(EXIT_INIT_GONE))
    );
}
