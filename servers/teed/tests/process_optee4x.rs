//! teed as a process against a secure-world process started with `--optee 4.x`: the SMC gate lets
//! the modern calls through (CALL_WITH_RPC_ARG, CALL_WITH_REGD_ARG, the notification fast
//! calls), teed registers its argument pages and serves with them, and its shutdown leaves the
//! secure world holding nothing (Linux's smc_abi.c optee_shutdown would leave the pages).
//!
//! Needs the `secure-world` binary next to this crate's binaries: `cargo build -p
//! secure-world-host` first (`cargo xtask test` builds every binary).
#![allow(clippy::unwrap_used)]

use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use optee_abi::uuid;
use tee_proto::lifecycle::{InitRequest, ServerEvent, ServerKind, ShutdownReason};
use tee_proto::teed::{Login, TeedRequest, TeedResponse};
use tee_proto::{Frame, Header};
use tee_rt::endpoint::Endpoint;
use tee_test_support::hosted::{recv_frame_within, SecureWorldProcess, ServerProcess, COLD_BOOT};

const RAM_SIZE: u64 = 64 << 20;
const WAIT: Duration = Duration::from_secs(15);
const TEED: u32 = 1;
const BNXTD: u32 = 1;

fn ask(client: &Endpoint, id: u32, body: TeedRequest) -> TeedResponse {
    let header = Header::new(BNXTD, TEED, id);
    client.send_frame(&Frame { header, body }, &[]).unwrap();
    let (frame, _) = recv_frame_within::<TeedResponse>(client, WAIT).unwrap();
    frame.body
}

#[test]
fn teed_serves_an_optee_4x_world_through_registered_argument_pages_and_leaves_nothing() {
    let world =
        SecureWorldProcess::start_with_args("teed-4x", RAM_SIZE, &["--optee", "4.x"]).unwrap();
    let teed_binary = Path::new(env!("CARGO_BIN_EXE_teed"));
    let teed = ServerProcess::spawn(teed_binary, &[("RUST_LOG", "info")]).unwrap();
    let conduit = world.connect_conduit().unwrap();
    let ram = world.open_ram().unwrap();
    let hello = world.teed_hello(TEED, COLD_BOOT);
    let (ready, _) = teed
        .exchange(TEED, 1, hello, &[conduit.as_fd(), ram.as_fd()], WAIT)
        .unwrap();
    drop((conduit, ram));
    assert_eq!(ready.body, ServerEvent::Ready { generation: TEED });
    // The argument pages are the one registration of a teed with no client yet.
    assert_eq!(world.stats().unwrap().registrations, 1);

    let (teed_side, client) = Endpoint::pair().unwrap();
    let endpoint = InitRequest::ClientEndpoint {
        client: ServerKind::Bnxtd,
        generation: BNXTD,
    };
    teed.send_to(TEED, 2, endpoint, &[teed_side.as_fd()])
        .unwrap();
    drop(teed_side);
    let opened = ask(
        &client,
        1,
        TeedRequest::OpenSession {
            ta: *uuid::BNXT_TA.as_bytes(),
            login: Login::Public,
        },
    );
    assert!(
        matches!(opened, TeedResponse::SessionOpened { .. }),
        "{opened:?}"
    );
    let allocated = ask(&client, 2, TeedRequest::ShmAlloc { size: 64 << 10 });
    assert!(
        matches!(allocated, TeedResponse::ShmAllocated { .. }),
        "{allocated:?}"
    );
    let stats = world.stats().unwrap();
    assert_eq!((stats.registrations, stats.sessions), (2, 1));

    // The session and buffer are left to the sweep; then the pages go too.
    let report = teed.shutdown(TEED, 3, ShutdownReason::Kexec, WAIT).unwrap();
    assert_eq!(report.errors, 0, "{report:?}");
    let stats = world.stats().unwrap();
    assert_eq!(
        (stats.registrations, stats.sessions, stats.cached_buffers),
        (0, 0, 0)
    );
}
