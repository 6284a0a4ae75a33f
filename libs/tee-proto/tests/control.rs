//! The hosted operator protocols (`control`: teectl ↔ init, `secure`: init ↔ the secure-world
//! process): every variant round-trips, the worst cases fit a frame, screening answers stale
//! and malformed frames, decoding is total, and the verdict helpers say what they promise.
#![allow(clippy::unwrap_used)]

mod common;

use common::{encode_to_vec, roundtrip, worst_header};
use proptest::prelude::*;
use tee_proto::control::{
    ControlInterface, ControlRequest, ControlResponse, Holdings, OpKind, OpOutcome, OpReport,
    ServerLine, ServerLineState, ShutdownLine, ShutdownSummary, ShutdownVerdict, StackPhase,
    StackStatus, TransitionKind,
};
use tee_proto::lifecycle::{
    BootInfo, BootKind, DeclineReason, ServerKind, ShutdownReason, ShutdownReport,
};
use tee_proto::secure::{SecureInterface, SecureRequest, SecureResponse, SecureStats};
use tee_proto::{accept_request, decode, Header, Incoming, WireError, FRAME_MAX};

const KINDS: [ServerKind; 3] = [ServerKind::Teed, ServerKind::Tpmd, ServerKind::Bnxtd];

fn secure_stats(big: bool) -> SecureStats {
    let n32 = if big { u32::MAX } else { 2 };
    let n64 = if big { u64::MAX } else { 4 << 20 };
    SecureStats {
        registrations: n32,
        registered_bytes: n64,
        sessions: n32,
        heap_used: n32,
        heap_capacity: n32,
        threads_free: n32,
        threads_active: n32,
        threads_suspended: n32,
        cache_enabled: big,
        cached_buffers: n32,
        smcs: n64,
        resets: n32,
    }
}

fn line(kind: ServerKind, state: ServerLineState, big: bool) -> ServerLine {
    let n32 = if big { u32::MAX } else { 1 };
    ServerLine {
        kind,
        generation: n32,
        state,
        pid: Some(n32),
        restarts: n32,
        operator_restarts: n32,
        holds: Some(Holdings {
            sessions: n32,
            registrations: n32,
            registered_bytes: if big { u64::MAX } else { 8192 },
            tee_unavailable: big,
        }),
    }
}

fn status(phase: StackPhase, big: bool) -> StackStatus {
    StackStatus {
        phase,
        boot: Some(BootInfo {
            boot_id: if big { u64::MAX } else { 3 },
            kind: BootKind::CrashKernel,
            crash_flag: true,
        }),
        crash_flag: big,
        servers: [
            line(
                ServerKind::Teed,
                ServerLineState::Held(DeclineReason::DeadlineExpired),
                big,
            ),
            line(ServerKind::Tpmd, ServerLineState::RestartPending, big),
            line(ServerKind::Bnxtd, ServerLineState::Quiesced, big),
        ],
        secure: Some(secure_stats(big)),
        uptime_ms: if big { u64::MAX } else { 1234 },
        conduit_inode: Some(if big { u64::MAX } else { 77 }),
    }
}

fn report_of(errors: u32) -> ShutdownReport {
    ShutdownReport {
        unregistered: 1,
        sessions_closed: 1,
        cache_buffers_freed: 2,
        errors,
    }
}

fn summary(verdicts: [ShutdownVerdict; 3], big: bool) -> ShutdownSummary {
    let took = Some(if big { u64::MAX } else { 12 });
    ShutdownSummary {
        reason: ShutdownReason::Crash,
        transition: TransitionKind::EnterCrashKernel,
        ipc: true,
        escalated_to_crash: big,
        took_ms: took,
        servers: [0, 1, 2].map(|i| ShutdownLine {
            kind: KINDS[i],
            verdict: verdicts[i],
            took_ms: took,
        }),
    }
}

fn every_phase() -> Vec<StackPhase> {
    vec![
        StackPhase::Idle,
        StackPhase::Booting,
        StackPhase::Running,
        StackPhase::ShuttingDown,
        StackPhase::Down(TransitionKind::Kexec),
        StackPhase::Down(TransitionKind::Reset),
        StackPhase::Down(TransitionKind::EnterCrashKernel),
    ]
}

fn every_line_state() -> Vec<ServerLineState> {
    vec![
        ServerLineState::NotStarted,
        ServerLineState::Starting,
        ServerLineState::Ready,
        ServerLineState::Held(DeclineReason::CrashKernel),
        ServerLineState::RestartPending,
        ServerLineState::GivenUp,
        ServerLineState::ShuttingDown,
        ServerLineState::Quiesced,
        ServerLineState::Stopped,
    ]
}

fn every_verdict() -> Vec<ShutdownVerdict> {
    vec![
        ShutdownVerdict::Acked(report_of(0)),
        ShutdownVerdict::Refused(WireError::Busy),
        ShutdownVerdict::Exited,
        ShutdownVerdict::DeadlineExpired,
        ShutdownVerdict::Abandoned,
        ShutdownVerdict::SkippedNotRunning,
        ShutdownVerdict::SkippedDeclined,
        ShutdownVerdict::SkippedNoIpc,
        ShutdownVerdict::Pending,
    ]
}

fn every_op() -> Vec<OpKind> {
    let mut ops = vec![
        OpKind::Kexec,
        OpKind::Reboot,
        OpKind::Crash { hard: false },
        OpKind::Crash { hard: true },
        OpKind::Down,
    ];
    for kind in KINDS {
        ops.push(OpKind::Restart(kind));
        ops.push(OpKind::Kill(kind));
    }
    ops
}

fn every_request() -> Vec<ControlRequest> {
    let mut requests = vec![
        ControlRequest::Status,
        ControlRequest::Kexec,
        ControlRequest::Reboot,
        ControlRequest::Crash { hard: false },
        ControlRequest::Crash { hard: true },
        ControlRequest::Down,
    ];
    for kind in KINDS {
        requests.push(ControlRequest::Restart(kind));
        requests.push(ControlRequest::Kill(kind));
    }
    requests
}

fn every_response() -> Vec<ControlResponse> {
    let mut responses = Vec::new();
    for phase in every_phase() {
        responses.push(ControlResponse::Status(status(phase, false)));
    }
    for state in every_line_state() {
        let mut status = status(StackPhase::Running, false);
        status.servers[1].state = state;
        status.servers[2].pid = None;
        status.servers[2].holds = None;
        status.secure = None;
        status.boot = None;
        status.conduit_inode = None;
        responses.push(ControlResponse::Status(status));
    }
    for (i, op) in every_op().into_iter().enumerate() {
        let verdicts = every_verdict();
        let pick = |k: usize| verdicts[(i + k) % verdicts.len()];
        responses.push(ControlResponse::Done(OpReport {
            op,
            outcome: if i % 2 == 0 {
                OpOutcome::Completed
            } else {
                OpOutcome::TimedOut
            },
            took_ms: i as u64,
            shutdown: (i % 3 != 0).then(|| summary([pick(0), pick(1), pick(2)], false)),
            left_at_transition: status(StackPhase::Running, i % 2 == 0).secure,
            after: status(StackPhase::Running, false),
        }));
    }
    responses.push(ControlResponse::Error(WireError::Busy));
    responses.push(ControlResponse::Error(WireError::Tee {
        code: u32::MAX,
        origin: u32::MAX,
    }));
    responses
}

fn worst_response() -> ControlResponse {
    let verdict = ShutdownVerdict::Acked(ShutdownReport {
        unregistered: u32::MAX,
        sessions_closed: u32::MAX,
        cache_buffers_freed: u32::MAX,
        errors: u32::MAX,
    });
    ControlResponse::Done(OpReport {
        op: OpKind::Crash { hard: true },
        outcome: OpOutcome::TimedOut,
        took_ms: u64::MAX,
        shutdown: Some(summary([verdict; 3], true)),
        left_at_transition: status(StackPhase::Running, true).secure,
        after: status(StackPhase::Down(TransitionKind::EnterCrashKernel), true),
    })
}

#[test]
fn every_control_message_round_trips() {
    for request in every_request() {
        roundtrip(Header::new(0, 1, 7), request);
        roundtrip(worst_header(), request);
    }
    for response in every_response() {
        roundtrip(Header::new(1, 0, 7), response);
        roundtrip(worst_header(), response);
    }
}

#[test]
fn every_secure_message_round_trips() {
    for request in [SecureRequest::Stats, SecureRequest::Reset] {
        roundtrip(worst_header(), request);
    }
    for response in [
        SecureResponse::Stats(secure_stats(false)),
        SecureResponse::Stats(secure_stats(true)),
        SecureResponse::ResetDone,
        SecureResponse::Error(WireError::BadRequest),
    ] {
        roundtrip(Header::new(0, 0, 1), response);
        roundtrip(worst_header(), response);
    }
}

#[test]
fn worst_cases_fit_one_frame_with_room_to_spare() {
    let control = roundtrip(worst_header(), worst_response());
    let secure = roundtrip(worst_header(), SecureResponse::Stats(secure_stats(true)));
    // Far below the data-carrying frames: the operator protocols never approach the limit.
    assert!(control < FRAME_MAX / 4, "control report is {control} bytes");
    assert!(secure < 128, "secure stats are {secure} bytes");
}

#[test]
fn stale_and_malformed_control_frames_are_answered() {
    let stale = encode_to_vec(Header::new(0, 4, 9), &ControlRequest::Kexec);
    match accept_request::<ControlInterface>(&stale, 5) {
        Incoming::Answer(frame) => {
            assert_eq!(frame.header.request_id, 9);
            assert_eq!(
                frame.body,
                ControlResponse::Error(WireError::ServerRestarted { generation: 5 })
            );
        }
        other => panic!("expected an answer, got {other:?}"),
    }
    // A good header followed by a body tag no request has.
    let mut malformed = encode_to_vec(Header::new(0, 0, 3), &ControlRequest::Status);
    let last = malformed.len() - 1;
    malformed[last] = 0x7f;
    match accept_request::<SecureInterface>(&malformed, 1) {
        Incoming::Answer(frame) => {
            assert_eq!(frame.body, SecureResponse::Error(WireError::BadRequest))
        }
        other => panic!("expected an answer, got {other:?}"),
    }
    let fine = encode_to_vec(Header::new(0, 0, 3), &SecureRequest::Reset);
    assert!(matches!(
        accept_request::<SecureInterface>(&fine, 1),
        Incoming::Request(frame) if frame.body == SecureRequest::Reset
    ));
}

#[test]
fn summary_is_clean_only_when_every_asked_server_acked_without_errors() {
    use ShutdownVerdict::*;
    let skipped = [SkippedNotRunning, SkippedDeclined, SkippedNoIpc];
    assert!(summary([Acked(report_of(0)), skipped[0], skipped[1]], false).is_clean());
    assert!(summary([skipped[2]; 3], false).is_clean());
    for bad in [
        Acked(report_of(1)),
        Refused(WireError::Busy),
        Exited,
        DeadlineExpired,
        Abandoned,
        Pending,
    ] {
        let verdicts = [Acked(report_of(0)), bad, Acked(report_of(0))];
        assert!(
            !summary(verdicts, false).is_clean(),
            "{bad:?} counted clean"
        );
    }
}

#[test]
fn quiescent_means_nothing_held_and_no_thread_inside_a_call() {
    let idle = SecureStats {
        heap_used: 4096,
        heap_capacity: 65536,
        threads_free: 2,
        cache_enabled: true,
        smcs: 10,
        ..SecureStats::default()
    };
    assert!(idle.is_quiescent());
    for held in [
        SecureStats {
            registrations: 1,
            ..idle
        },
        SecureStats {
            sessions: 1,
            ..idle
        },
        SecureStats {
            cached_buffers: 1,
            ..idle
        },
        SecureStats {
            threads_suspended: 1,
            ..idle
        },
        SecureStats {
            threads_active: 1,
            ..idle
        },
    ] {
        assert!(!held.is_quiescent(), "{held:?} counted quiescent");
    }
}

#[test]
fn status_lines_are_found_by_kind() {
    let status = status(StackPhase::Running, false);
    for kind in KINDS {
        assert_eq!(status.server(kind).kind, kind);
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode::<ControlRequest>(&bytes);
        let _ = decode::<ControlResponse>(&bytes);
        let _ = decode::<SecureRequest>(&bytes);
        let _ = decode::<SecureResponse>(&bytes);
    }

    #[test]
    fn truncated_reports_never_decode(cut in 0usize..1000) {
        let bytes = encode_to_vec(worst_header(), &worst_response());
        let cut = cut % bytes.len();
        prop_assert!(decode::<ControlResponse>(&bytes[..cut]).is_err());
    }
}
