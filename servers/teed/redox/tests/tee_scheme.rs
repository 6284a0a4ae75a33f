//! teed's `tee` scheme on the host, over the OP-TEE model: every path, every operation, the
//! caller checks, buffers and errno. Redox delivers these calls through redox-scheme's
//! `SchemeSync` (redox-scheme 0.12 `src/scheme.rs`); here the test is the kernel.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use optee_abi::uuid::FTPM_TA;
use syscall::error as errno;
use tee_proto::lifecycle::{DeclineReason, InitRequest, ServerEvent, ServerState, ShutdownReason};
use tee_proto::teed::{Login, TeedRequest, TeedResponse};
use tee_proto::{Frame, WireError, FRAME_MAX};
use tee_redox::lifecycle::HELLO_REQUEST_ID;
use tee_redox::{SchemeAdapter, SchemeError, Startup};

fn open_session() -> TeedRequest {
    TeedRequest::OpenSession {
        ta: *FTPM_TA.as_bytes(),
        login: Login::Public,
    }
}

/// Writes `body` on `handle` as `caller` and reads the one answer.
fn ask(
    tee: &mut impl SchemeAdapter,
    handle: usize,
    caller: &tee_redox::Caller,
    request_id: u32,
    body: TeedRequest,
) -> TeedResponse {
    let bytes = encode(request_id, TEED_GENERATION, body);
    assert_eq!(tee.write(handle, &bytes, caller), Ok(bytes.len()));
    let frame: Frame<TeedResponse> = read_frame(tee, handle, caller);
    assert_eq!(frame.header.request_id, request_id);
    frame.body
}

/// INIT_NOTIFY readiness waits for this: the probe (Linux smc_abi.c optee_probe order) ran
/// through the capabilities and the core answered the daemon's own Hello.
#[test]
fn the_probe_through_capabilities_settles_start_up_ready() {
    let machine = Machine::new();
    let tee = machine.teed(true);
    assert_eq!(
        tee.startup(),
        Startup::Ready {
            generation: TEED_GENERATION
        }
    );
    assert!(tee.core().is_serving());
    assert_eq!(tee.conduit().refused(), 0);
}

/// Redox today: no `smc` scheme, so no capability; the probe declines without hanging, the
/// scheme still answers, and clients hear "TEE unavailable" (the hosted crash-boot answer).
#[test]
fn without_the_smc_scheme_the_probe_declines_and_clients_hear_tee_unavailable() {
    let machine = Machine::new();
    let mut tee = machine.teed(false);
    assert_eq!(
        tee.startup(),
        Startup::Declined(DeclineReason::SecureWorldUnavailable)
    );
    assert!(tee.startup().settled());
    assert!(tee.conduit().refused() > 0);
    let handle = tee.open("client/3", &TPMD_CALLER).unwrap();
    let answer = ask(&mut tee, handle, &TPMD_CALLER, 1, open_session());
    assert_eq!(answer, TeedResponse::Error(WireError::TeeUnavailable));
}

/// redox-scheme `CallerCtx` (uid and gid at openat) decides who is tpmd and who bnxtd; one
/// handle per incarnation, as hosted init hands teed one endpoint per client generation.
#[test]
fn the_client_path_admits_client_daemons_only_by_uid_and_gid() {
    let machine = Machine::new();
    let mut tee = machine.teed(true);
    for caller in [ROOT, STRANGER, TPM_USER] {
        assert_eq!(tee.open("client/3", &caller), Err(SchemeError::Denied));
    }
    let tpmd = tee.open("client/3", &TPMD_CALLER).unwrap();
    assert_eq!(tee.open("/client/3/", &TPMD_CALLER), Err(SchemeError::Busy));
    assert_eq!(SchemeError::Busy.errno(), errno::EBUSY);
    // bnxtd's incarnation 3 is another client; tpmd's next incarnation too.
    assert!(tee.open("client/3", &BNXTD_CALLER).is_ok());
    assert!(tee.open("client/4", &TPMD_CALLER).is_ok());
    for bad in [
        "client/0",
        "client/x",
        "client/",
        "client/+5",
        "client/99999999999",
    ] {
        assert_eq!(
            tee.open(bad, &TPMD_CALLER),
            Err(SchemeError::NoSuchPath),
            "{bad}"
        );
    }
    tee.close(tpmd);
    assert!(
        tee.open("client/3", &TPMD_CALLER).is_ok(),
        "free again once closed"
    );
}

/// A client's session and buffer reach the OP-TEE model; closing the handle is the client's
/// death, and teed reclaims both at once (what Linux's teedev release does for a dying
/// process's context, tee_core.c).
#[test]
fn a_clients_session_and_buffer_reach_the_model_and_go_with_its_handle() {
    let machine = Machine::new();
    let mut tee = machine.teed(true);
    let handle = tee.open("client/3", &TPMD_CALLER).unwrap();
    let session = match ask(&mut tee, handle, &TPMD_CALLER, 1, open_session()) {
        TeedResponse::SessionOpened { session } => session,
        other => panic!("{other:?}"),
    };
    let TeedResponse::ShmAllocated { pa, size, .. } = ask(
        &mut tee,
        handle,
        &TPMD_CALLER,
        2,
        TeedRequest::ShmAlloc { size: 8192 },
    ) else {
        panic!("no buffer");
    };
    assert_eq!(size, 8192);
    assert!(
        LAYOUT.windows.tpmd.contains(pa, 8192),
        "tpmd's buffer lies in its window"
    );
    assert_eq!((machine.sessions(), machine.registrations()), (1, 1));
    assert!(session != 0);
    tee.close(handle);
    assert_eq!((machine.sessions(), machine.registrations()), (0, 0));
}

/// Redox's `call` (redox-scheme `SchemeSync::call`): the request in the payload, the answer
/// written over it; `metadata[0]` names the request's length so the payload can be longer.
#[test]
fn call_answers_in_place_and_read_gets_what_call_could_not_hold() {
    let machine = Machine::new();
    let mut tee = machine.teed(true);
    let handle = tee.open("client/3", &TPMD_CALLER).unwrap();
    let request = encode(5, TEED_GENERATION, open_session());
    let mut payload = request.clone();
    payload.resize(FRAME_MAX, 0xaa);
    let len = tee
        .call(handle, &mut payload, request.len(), &TPMD_CALLER)
        .unwrap();
    let frame: Frame<TeedResponse> = tee_proto::decode(&payload[..len]).unwrap();
    assert_eq!(frame.header.request_id, 5);
    assert!(matches!(frame.body, TeedResponse::SessionOpened { .. }));
    assert!(
        !tee.ready(handle, &TPMD_CALLER).unwrap().read,
        "taken by call"
    );

    // The answer (a 5-byte physical address among it) is longer than the request and the
    // payload is exactly the request: refused, and the answer waits for a read.
    let mut exact = encode(6, TEED_GENERATION, TeedRequest::ShmAlloc { size: 4096 });
    let exact_len = exact.len();
    let short = tee.call(handle, &mut exact, exact_len, &TPMD_CALLER);
    assert!(
        matches!(short, Err(SchemeError::BufferTooSmall { .. })),
        "{short:?}"
    );
    let frame: Frame<TeedResponse> = read_frame(&mut tee, handle, &TPMD_CALLER);
    assert_eq!(frame.header.request_id, 6);
    assert!(matches!(frame.body, TeedResponse::ShmAllocated { .. }));

    // A request length past the payload, or a header cut short, names no request.
    let mut payload = request.clone();
    assert!(matches!(
        tee.call(handle, &mut payload, request.len() + 1, &TPMD_CALLER),
        Err(SchemeError::TooLarge { .. })
    ));
    assert_eq!(
        tee.call(handle, &mut [4u8], 1, &TPMD_CALLER),
        Err(SchemeError::Malformed)
    );
    // A header with a body cut short is answered in place: bad request.
    let mut cut = request[..request.len() - 1].to_vec();
    cut.resize(64, 0);
    let len = tee
        .call(handle, &mut cut, request.len() - 1, &TPMD_CALLER)
        .unwrap();
    let frame: Frame<TeedResponse> = tee_proto::decode(&cut[..len]).unwrap();
    assert_eq!(frame.body, TeedResponse::Error(WireError::BadRequest));
    assert_eq!(machine.sessions(), 1);
}

/// tee-proto `interface.rs` `accept_request`: stale frames answered "restarted", undecodable
/// ones refused; whole frames per read (unix(7) SOCK_SEQPACKET, as hosted).
#[test]
fn reads_refuse_short_buffers_and_writes_refuse_oversized_malformed_and_stale_frames() {
    let machine = Machine::new();
    let mut tee = machine.teed(true);
    let handle = tee.open("client/3", &TPMD_CALLER).unwrap();
    let mut buf = vec![0u8; FRAME_MAX];
    assert_eq!(
        tee.read(handle, &mut buf, &TPMD_CALLER),
        Err(SchemeError::WouldBlock)
    );
    assert_eq!(SchemeError::WouldBlock.errno(), errno::EAGAIN);
    let request = encode(1, TEED_GENERATION, open_session());
    tee.write(handle, &request, &TPMD_CALLER).unwrap();
    assert_eq!(tee.take_readable(), vec![handle]);
    let short = tee.read(handle, &mut buf[..2], &TPMD_CALLER);
    assert!(matches!(
        short,
        Err(SchemeError::BufferTooSmall { got: 2, .. })
    ));
    assert_eq!(short.unwrap_err().errno(), errno::EINVAL);
    assert!(
        tee.ready(handle, &TPMD_CALLER).unwrap().read,
        "the answer stays queued"
    );
    assert!(tee.read(handle, &mut buf, &TPMD_CALLER).is_ok());

    let oversized = vec![0u8; FRAME_MAX + 1];
    let refused = tee.write(handle, &oversized, &TPMD_CALLER);
    assert_eq!(
        refused,
        Err(SchemeError::TooLarge {
            len: FRAME_MAX + 1,
            max: FRAME_MAX
        })
    );
    assert_eq!(refused.unwrap_err().errno(), errno::EMSGSIZE);
    let garbage = tee.write(handle, &[0xff; 7], &TPMD_CALLER);
    assert_eq!(garbage, Err(SchemeError::Malformed));
    assert_eq!(garbage.unwrap_err().errno(), errno::EBADMSG);
    // A frame for an earlier teed is answered "restarted" without reaching the core.
    let stale = encode(9, TEED_GENERATION + 1, open_session());
    tee.write(handle, &stale, &TPMD_CALLER).unwrap();
    let frame: Frame<TeedResponse> = read_frame(&mut tee, handle, &TPMD_CALLER);
    assert_eq!(
        frame.body,
        TeedResponse::Error(WireError::ServerRestarted {
            generation: TEED_GENERATION
        })
    );
    assert_eq!(
        machine.sessions(),
        1,
        "only the first open reached the model"
    );
}

/// redox-scheme fills uid and gid only for openat (`SchemeSync::call`'s note); later requests
/// are checked against the pid that opened the handle.
#[test]
fn handles_serve_only_the_process_that_opened_them() {
    let machine = Machine::new();
    let mut tee = machine.teed(true);
    let handle = tee.open("client/3", &TPMD_CALLER).unwrap();
    let window = tee.open("window", &TPMD_CALLER).unwrap();
    let other = tee_redox::Caller {
        pid: TPMD_CALLER.pid + 1,
        ..TPMD_CALLER
    };
    let request = encode(1, TEED_GENERATION, open_session());
    let mut buf = vec![0u8; FRAME_MAX];
    let mut payload = request.clone();
    assert_eq!(
        tee.write(handle, &request, &other),
        Err(SchemeError::NotOwner)
    );
    assert_eq!(
        tee.read(handle, &mut buf, &other),
        Err(SchemeError::NotOwner)
    );
    assert_eq!(
        tee.call(handle, &mut payload, request.len(), &other),
        Err(SchemeError::NotOwner)
    );
    assert_eq!(tee.ready(handle, &other), Err(SchemeError::NotOwner));
    assert_eq!(
        tee.mmap_prep(window, 0, 4096, &other),
        Err(SchemeError::NotOwner)
    );
    assert_eq!(SchemeError::NotOwner.errno(), errno::EPERM);
    assert_eq!(machine.sessions(), 0);
    tee.close(handle);
    assert_eq!(
        tee.write(handle, &request, &TPMD_CALLER),
        Err(SchemeError::BadHandle)
    );
    assert_eq!(SchemeError::BadHandle.errno(), errno::EBADF);
}

/// redox-scheme `SchemeSync::mmap_prep`: the client maps its own window and nothing else, as
/// hosted init's sealed windows (tee-rt `window.rs`) give it.
#[test]
fn the_window_path_places_and_maps_only_the_callers_own_window() {
    let machine = Machine::new();
    let mut tee = machine.teed(true);
    let (ram, _) = machine.teed_ram();
    assert_eq!(tee.open("window", &ROOT), Err(SchemeError::Denied));
    assert_eq!(tee.open("window", &STRANGER), Err(SchemeError::Denied));
    for (caller, window) in [
        (TPMD_CALLER, LAYOUT.windows.tpmd),
        (BNXTD_CALLER, LAYOUT.windows.bnxtd),
    ] {
        let handle = tee.open("window", &caller).unwrap();
        let mut placement = [0u8; 32];
        assert_eq!(tee.read(handle, &mut placement, &caller), Ok(16));
        assert_eq!(placement[..8], window.base.to_le_bytes());
        assert_eq!(placement[8..16], window.len.to_le_bytes());
        assert!(matches!(
            tee.read(handle, &mut placement[..15], &caller),
            Err(SchemeError::BufferTooSmall { need: 16, got: 15 })
        ));
        let len = window.len as usize;
        // The whole window, and a page inside it, map where teed has those bytes: the
        // client's mapping shares them.
        let whole = tee.mmap_prep(handle, 0, len, &caller).unwrap();
        assert_eq!(Some(whole), ram.address_of(window.base, window.len));
        assert_eq!(tee.mmap_prep(handle, 4096, 4096, &caller), Ok(whole + 4096));
        for (offset, size) in [
            (0, len + 1),
            (1, 4096),
            (window.len, 4096),
            (0, 0),
            (u64::MAX - 10, 4096),
        ] {
            assert_eq!(
                tee.mmap_prep(handle, offset, size, &caller),
                Err(SchemeError::OutOfRange),
                "{offset:#x}+{size:#x}"
            );
        }
        assert_eq!(
            tee.write(handle, &[0; 16], &caller),
            Err(SchemeError::NotSupported)
        );
        assert_eq!(
            tee.call(handle, &mut [0; 16], 16, &caller),
            Err(SchemeError::NotSupported)
        );
        assert_eq!(SchemeError::NotSupported.errno(), errno::EOPNOTSUPP);
        let ready = tee.ready(handle, &caller).unwrap();
        assert!(ready.read && !ready.write);
        tee.close(handle);
    }
}

/// tee-proto `lifecycle.rs` Status and Shutdown, and teed's shutdown unregistering what is left
/// (Linux f25889f93184, optee_shutdown).
#[test]
fn control_is_root_only_and_serves_status_and_shutdown() {
    let machine = Machine::new();
    let mut tee = machine.teed(true);
    for caller in [TPMD_CALLER, STRANGER] {
        assert_eq!(tee.open("control", &caller), Err(SchemeError::Denied));
    }
    assert_eq!(SchemeError::Denied.errno(), errno::EACCES);
    let control = tee.open("control", &ROOT).unwrap();
    assert_eq!(tee.open("control", &ROOT), Err(SchemeError::Busy));
    // Status, answered in place by call.
    let mut payload = encode(1, 0, InitRequest::Status);
    let request_len = payload.len();
    payload.resize(FRAME_MAX, 0);
    let len = tee.call(control, &mut payload, request_len, &ROOT).unwrap();
    let frame: Frame<ServerEvent> = tee_proto::decode(&payload[..len]).unwrap();
    let ServerEvent::Status(status) = frame.body else {
        panic!("{:?}", frame.body);
    };
    assert_eq!(status.state, ServerState::Serving);
    assert_eq!(status.generation, TEED_GENERATION);
    // A forged Hello never reaches the core.
    let hello = encode(HELLO_REQUEST_ID, 0, InitRequest::Status);
    tee.write(control, &hello, &ROOT).unwrap();
    let refused: Frame<ServerEvent> = read_frame(&mut tee, control, &ROOT);
    assert_eq!(refused.body, ServerEvent::Error(WireError::BadRequest));
    // A client holding a buffer, then the shutdown before a reboot: teed unregisters it.
    let client = tee.open("client/3", &TPMD_CALLER).unwrap();
    ask(
        &mut tee,
        client,
        &TPMD_CALLER,
        1,
        TeedRequest::ShmAlloc { size: 4096 },
    );
    assert_eq!(machine.registrations(), 1);
    let shutdown = encode(
        2,
        TEED_GENERATION,
        InitRequest::Shutdown {
            reason: ShutdownReason::Reboot,
        },
    );
    tee.write(control, &shutdown, &ROOT).unwrap();
    for _ in 0..100 {
        if tee.ready(control, &ROOT).unwrap().read {
            break;
        }
        let at = tee.poll_timeout().expect("the shutdown waits on something");
        tee.advance(at);
    }
    let ack: Frame<ServerEvent> = read_frame(&mut tee, control, &ROOT);
    let ServerEvent::ShutdownAck(report) = ack.body else {
        panic!("{:?}", ack.body);
    };
    assert_eq!((report.unregistered, report.errors), (1, 0));
    assert_eq!(machine.registrations(), 0);
    assert!(tee.core().is_stopped());
    // Closing the control handle frees the path.
    tee.close(control);
    assert!(tee.open("control", &ROOT).is_ok());
}

/// redox_syscall `src/error.rs`: ENOENT for a path the scheme does not serve, EOPNOTSUPP and
/// EBADF as redox-scheme's own defaults answer.
#[test]
fn unknown_paths_and_operations_are_refused_with_their_errno() {
    let machine = Machine::new();
    let mut tee = machine.teed(true);
    for path in ["", "/", "smc", "client", "windows", "control/1", "../tee"] {
        let refused = tee.open(path, &ROOT);
        assert!(
            matches!(refused, Err(SchemeError::NoSuchPath | SchemeError::Denied)),
            "{path}: {refused:?}"
        );
    }
    assert_eq!(tee.open("smc", &ROOT).unwrap_err().errno(), errno::ENOENT);
    let client = tee.open("client/3", &TPMD_CALLER).unwrap();
    assert_eq!(
        tee.mmap_prep(client, 0, 4096, &TPMD_CALLER),
        Err(SchemeError::NotSupported)
    );
    let mut buf = [0u8; 8];
    assert_eq!(
        tee.read(999, &mut buf, &TPMD_CALLER),
        Err(SchemeError::BadHandle)
    );
    tee.close(999);
}
