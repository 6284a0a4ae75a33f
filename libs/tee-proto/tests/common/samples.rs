//! Every variant of every message, with typical and worst-case (largest encoding) values.
//!
//! The `*_variant` functions match exhaustively, without a wildcard: a new variant stops the
//! tests from compiling until it gets samples here.

use heapless::Vec as HVec;
use tee_proto::bnxt::{BnxtError, BnxtRequest, BnxtResponse, COREDUMP_CHUNK_MAX};
use tee_proto::grants::Grant;
use tee_proto::lifecycle::{
    BootInfo, BootKind, ClientWindows, DeclineReason, InitRequest, RamWindow, ServerEvent,
    ServerKind, ServerState, ServerStatus, ShutdownReason, ShutdownReport,
};
use tee_proto::teed::{Login, Param, ParamOut, TeedRequest, TeedResponse, MAX_PARAMS};
use tee_proto::tpm::{TpmError, TpmRequest, TpmResponse, TPM_BUFFER_MAX};
use tee_proto::WireError;

const M32: u32 = u32::MAX;
const M64: u64 = u64::MAX;

pub fn full_bytes<const N: usize>() -> HVec<u8, N> {
    let mut bytes = HVec::new();
    for index in 0..N {
        bytes.push((index % 251) as u8).unwrap();
    }
    bytes
}

pub fn wire_errors() -> Vec<WireError> {
    vec![
        WireError::ServerRestarted { generation: 7 },
        WireError::ServerRestarted { generation: M32 },
        WireError::TeeUnavailable,
        WireError::Retryable,
        WireError::Denied,
        WireError::NoDevice,
        WireError::BadRequest,
        WireError::Busy,
        WireError::OutOfMemory,
        WireError::NotFound,
        WireError::ShuttingDown,
        WireError::Tee {
            code: 0xFFFF_000D,
            origin: 4,
        },
        WireError::Tee {
            code: M32,
            origin: M32,
        },
        WireError::QuotaExceeded,
        WireError::SecureWorldFault,
    ]
}

pub fn wire_error_variant(error: &WireError) -> usize {
    match error {
        WireError::ServerRestarted { .. } => 0,
        WireError::TeeUnavailable => 1,
        WireError::Retryable => 2,
        WireError::Denied => 3,
        WireError::NoDevice => 4,
        WireError::BadRequest => 5,
        WireError::Busy => 6,
        WireError::OutOfMemory => 7,
        WireError::NotFound => 8,
        WireError::ShuttingDown => 9,
        WireError::Tee { .. } => 10,
        WireError::QuotaExceeded => 11,
        WireError::SecureWorldFault => 12,
    }
}
pub const WIRE_ERROR_VARIANTS: usize = 13;

pub fn params() -> Vec<Param> {
    vec![
        Param::None,
        Param::ValueIn { a: 1, b: 2, c: 3 },
        Param::ValueIn {
            a: M64,
            b: M64,
            c: M64,
        },
        Param::ValueOut,
        Param::ValueInOut {
            a: M64,
            b: 0,
            c: M64,
        },
        Param::MemrefIn {
            shm: 1,
            offset: 0,
            size: 4096,
        },
        Param::MemrefOut {
            shm: M32,
            offset: M32,
            size: M32,
        },
        Param::MemrefInOut {
            shm: 2,
            offset: 4096,
            size: 4096,
        },
    ]
}

pub fn param_variant(param: &Param) -> usize {
    match param {
        Param::None => 0,
        Param::ValueIn { .. } => 1,
        Param::ValueOut => 2,
        Param::ValueInOut { .. } => 3,
        Param::MemrefIn { .. } => 4,
        Param::MemrefOut { .. } => 5,
        Param::MemrefInOut { .. } => 6,
    }
}
pub const PARAM_VARIANTS: usize = 7;

pub fn teed_requests() -> Vec<TeedRequest> {
    let mut requests = vec![
        TeedRequest::OpenSession {
            ta: [0xbc; 16],
            login: Login::Public,
        },
        TeedRequest::OpenSession {
            ta: [0xff; 16],
            login: Login::User,
        },
        TeedRequest::OpenSession {
            ta: [0; 16],
            login: Login::Group,
        },
        TeedRequest::OpenSession {
            ta: [1; 16],
            login: Login::Application,
        },
        TeedRequest::Invoke {
            session: 1,
            func: 0,
            cancel_id: 0,
            params: HVec::new(),
        },
        TeedRequest::CloseSession { session: 3 },
        TeedRequest::Cancel {
            session: M32,
            cancel_id: M32,
        },
        TeedRequest::ShmAlloc { size: 8192 },
        TeedRequest::ShmAlloc { size: M32 },
        TeedRequest::ShmFree { shm: M32 },
    ];
    // Every parameter kind, and the largest ones filling all four slots.
    for chunk in params().chunks(MAX_PARAMS) {
        requests.push(TeedRequest::Invoke {
            session: 2,
            func: 3,
            cancel_id: 4,
            params: HVec::from_slice(chunk).unwrap(),
        });
    }
    let largest = Param::ValueInOut {
        a: M64,
        b: M64,
        c: M64,
    };
    requests.push(TeedRequest::Invoke {
        session: M32,
        func: M32,
        cancel_id: M32,
        params: HVec::from_slice(&[largest; MAX_PARAMS]).unwrap(),
    });
    requests
}

pub fn teed_request_variant(request: &TeedRequest) -> usize {
    match request {
        TeedRequest::OpenSession { .. } => 0,
        TeedRequest::Invoke { .. } => 1,
        TeedRequest::CloseSession { .. } => 2,
        TeedRequest::Cancel { .. } => 3,
        TeedRequest::ShmAlloc { .. } => 4,
        TeedRequest::ShmFree { .. } => 5,
    }
}
pub const TEED_REQUEST_VARIANTS: usize = 6;

pub fn teed_responses() -> Vec<TeedResponse> {
    let largest_out = ParamOut::Value {
        a: M64,
        b: M64,
        c: M64,
    };
    let mut responses = vec![
        TeedResponse::SessionOpened { session: 1 },
        TeedResponse::Invoked {
            ret: 0,
            origin: 4,
            params: HVec::from_slice(&[
                ParamOut::None,
                ParamOut::Value { a: 1, b: 2, c: 3 },
                ParamOut::Memref { size: 4096 },
                ParamOut::Memref { size: M32 },
            ])
            .unwrap(),
        },
        TeedResponse::Invoked {
            ret: M32,
            origin: M32,
            params: HVec::from_slice(&[largest_out; MAX_PARAMS]).unwrap(),
        },
        TeedResponse::SessionClosed,
        TeedResponse::Cancelled,
        TeedResponse::ShmAllocated {
            shm: 5,
            pa: 0x4000_0000,
            size: 4 << 20,
        },
        TeedResponse::ShmAllocated {
            shm: M32,
            pa: M64,
            size: M32,
        },
        TeedResponse::ShmFreed,
    ];
    responses.extend(wire_errors().into_iter().map(TeedResponse::Error));
    responses
}

pub fn teed_response_variant(response: &TeedResponse) -> usize {
    match response {
        TeedResponse::SessionOpened { .. } => 0,
        TeedResponse::Invoked { .. } => 1,
        TeedResponse::SessionClosed => 2,
        TeedResponse::Cancelled => 3,
        TeedResponse::ShmAllocated { .. } => 4,
        TeedResponse::ShmFreed => 5,
        TeedResponse::Error(_) => 6,
    }
}
pub const TEED_RESPONSE_VARIANTS: usize = 7;

pub fn init_requests() -> Vec<InitRequest> {
    let mut requests = Vec::new();
    for (kind, crash_flag) in [
        (BootKind::Cold, false),
        (BootKind::Kexec, false),
        (BootKind::CrashKernel, true),
        (BootKind::Reset, false),
    ] {
        requests.push(InitRequest::Hello {
            generation: 1,
            teed_generation: 1,
            boot: BootInfo {
                boot_id: 42,
                kind,
                crash_flag,
            },
            ram: RamWindow {
                base: 0x4000_0000,
                len: 8 << 30,
            },
            journal: RamWindow {
                base: 0x3_0000_0000,
                len: 64 << 10,
            },
            windows: ClientWindows {
                tpmd: RamWindow {
                    base: 0x2_3eef_0000,
                    len: 64 << 10,
                },
                bnxtd: RamWindow {
                    base: 0x2_3ef0_0000,
                    len: 16 << 20,
                },
            },
            grants: [Grant::SmcConduit, Grant::Ram].into_iter().collect(),
        });
    }
    requests.push(InitRequest::Hello {
        generation: M32,
        teed_generation: M32,
        boot: BootInfo {
            boot_id: M64,
            kind: BootKind::CrashKernel,
            crash_flag: true,
        },
        ram: RamWindow {
            base: M64,
            len: M64,
        },
        journal: RamWindow {
            base: M64,
            len: M64,
        },
        windows: ClientWindows {
            tpmd: RamWindow {
                base: M64,
                len: M64,
            },
            bnxtd: RamWindow {
                base: M64,
                len: M64,
            },
        },
        // The most a Hello names: every kind once.
        grants: Grant::ALL.into_iter().collect(),
    });
    for reason in [
        ShutdownReason::Kexec,
        ShutdownReason::Reboot,
        ShutdownReason::Crash,
    ] {
        requests.push(InitRequest::Shutdown { reason });
    }
    requests.push(InitRequest::Status);
    for client in [ServerKind::Tpmd, ServerKind::Bnxtd] {
        requests.push(InitRequest::ClientEndpoint {
            client,
            generation: M32,
        });
    }
    requests.push(InitRequest::TeedEndpoint {
        teed_generation: M32,
    });
    requests
}

pub fn init_request_variant(request: &InitRequest) -> usize {
    match request {
        InitRequest::Hello { .. } => 0,
        InitRequest::Shutdown { .. } => 1,
        InitRequest::Status => 2,
        InitRequest::ClientEndpoint { .. } => 3,
        InitRequest::TeedEndpoint { .. } => 4,
    }
}
pub const INIT_REQUEST_VARIANTS: usize = 5;

pub fn server_events() -> Vec<ServerEvent> {
    let mut events = vec![
        ServerEvent::Ready { generation: 1 },
        ServerEvent::Ready { generation: M32 },
    ];
    for reason in [
        DeclineReason::CrashKernel,
        DeclineReason::IncompatibleSecureWorld,
        DeclineReason::SecureWorldUnavailable,
        DeclineReason::DeadlineExpired,
    ] {
        events.push(ServerEvent::Declined { reason });
    }
    events.push(ServerEvent::ShutdownAck(ShutdownReport {
        unregistered: 2,
        sessions_closed: 1,
        cache_buffers_freed: 3,
        errors: 0,
    }));
    events.push(ServerEvent::ShutdownAck(ShutdownReport {
        unregistered: M32,
        sessions_closed: M32,
        cache_buffers_freed: M32,
        errors: M32,
    }));
    let kinds = [ServerKind::Teed, ServerKind::Tpmd, ServerKind::Bnxtd];
    let states = [
        ServerState::Starting,
        ServerState::Serving,
        ServerState::Declined,
        ServerState::ShuttingDown,
        ServerState::Stopped,
    ];
    for (index, state) in states.into_iter().enumerate() {
        events.push(ServerEvent::Status(ServerStatus {
            kind: kinds[index % kinds.len()],
            generation: index as u32,
            state,
            sessions: 1,
            registrations: 2,
            registered_bytes: 8192,
        }));
    }
    events.push(ServerEvent::Status(ServerStatus {
        kind: ServerKind::Bnxtd,
        generation: M32,
        state: ServerState::ShuttingDown,
        sessions: M32,
        registrations: M32,
        registered_bytes: M64,
    }));
    events.extend(wire_errors().into_iter().map(ServerEvent::Error));
    events
}

pub fn server_event_variant(event: &ServerEvent) -> usize {
    match event {
        ServerEvent::Ready { .. } => 0,
        ServerEvent::Declined { .. } => 1,
        ServerEvent::ShutdownAck(_) => 2,
        ServerEvent::Status(_) => 3,
        ServerEvent::Error(_) => 4,
    }
}
pub const SERVER_EVENT_VARIANTS: usize = 5;

pub fn tpm_errors() -> Vec<TpmError> {
    vec![
        TpmError::TeeUnavailable,
        TpmError::Retryable,
        TpmError::ServerRestarted { generation: M32 },
        TpmError::BadRequest,
        TpmError::CommandTooLarge { len: M32 },
        TpmError::CommandTooShort { len: 3 },
        TpmError::BadResponse { declared: M32 },
        TpmError::Tee {
            code: M32,
            origin: M32,
        },
        TpmError::ShuttingDown,
    ]
}

pub fn tpm_error_variant(error: &TpmError) -> usize {
    match error {
        TpmError::TeeUnavailable => 0,
        TpmError::Retryable => 1,
        TpmError::ServerRestarted { .. } => 2,
        TpmError::BadRequest => 3,
        TpmError::CommandTooLarge { .. } => 4,
        TpmError::CommandTooShort { .. } => 5,
        TpmError::BadResponse { .. } => 6,
        TpmError::Tee { .. } => 7,
        TpmError::ShuttingDown => 8,
    }
}
pub const TPM_ERROR_VARIANTS: usize = 9;

/// TPM2_Startup(CLEAR).
pub const STARTUP_CLEAR: [u8; 12] = [
    0x80, 0x01, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x01, 0x44, 0x00, 0x00,
];

pub fn tpm_requests() -> Vec<TpmRequest> {
    vec![
        TpmRequest::Command {
            bytes: HVec::from_slice(&STARTUP_CLEAR).unwrap(),
        },
        TpmRequest::Command { bytes: HVec::new() },
        TpmRequest::Command {
            bytes: full_bytes::<TPM_BUFFER_MAX>(),
        },
    ]
}

pub fn tpm_request_variant(request: &TpmRequest) -> usize {
    match request {
        TpmRequest::Command { .. } => 0,
    }
}
pub const TPM_REQUEST_VARIANTS: usize = 1;

pub fn tpm_responses() -> Vec<TpmResponse> {
    let mut responses = vec![
        TpmResponse::Response {
            bytes: HVec::from_slice(&tee_proto::tpm::tpm_error_response(0)).unwrap(),
        },
        TpmResponse::Response {
            bytes: full_bytes::<TPM_BUFFER_MAX>(),
        },
    ];
    responses.extend(tpm_errors().into_iter().map(TpmResponse::Error));
    responses
}

pub fn tpm_response_variant(response: &TpmResponse) -> usize {
    match response {
        TpmResponse::Response { .. } => 0,
        TpmResponse::Error(_) => 1,
    }
}
pub const TPM_RESPONSE_VARIANTS: usize = 2;

pub fn bnxt_requests() -> Vec<BnxtRequest> {
    vec![
        BnxtRequest::Load,
        BnxtRequest::CoredumpLen,
        BnxtRequest::CopyCoredump {
            offset: 0,
            size: 4096,
        },
        BnxtRequest::CopyCoredump {
            offset: M32,
            size: M32,
        },
    ]
}

pub fn bnxt_request_variant(request: &BnxtRequest) -> usize {
    match request {
        BnxtRequest::Load => 0,
        BnxtRequest::CoredumpLen => 1,
        BnxtRequest::CopyCoredump { .. } => 2,
    }
}
pub const BNXT_REQUEST_VARIANTS: usize = 3;

pub fn bnxt_errors() -> Vec<BnxtError> {
    vec![
        BnxtError::NoDevice,
        BnxtError::TeeUnavailable,
        BnxtError::Retryable,
        BnxtError::ServerRestarted { generation: M32 },
        BnxtError::BadRequest,
        BnxtError::BadOffset {
            offset: M32,
            len: M32,
        },
        BnxtError::BadSize {
            size: M32,
            max: M32,
        },
        BnxtError::CorruptImage,
        BnxtError::Tee {
            code: M32,
            origin: M32,
        },
    ]
}

pub fn bnxt_error_variant(error: &BnxtError) -> usize {
    match error {
        BnxtError::NoDevice => 0,
        BnxtError::TeeUnavailable => 1,
        BnxtError::Retryable => 2,
        BnxtError::ServerRestarted { .. } => 3,
        BnxtError::BadRequest => 4,
        BnxtError::BadOffset { .. } => 5,
        BnxtError::BadSize { .. } => 6,
        BnxtError::CorruptImage => 7,
        BnxtError::Tee { .. } => 8,
    }
}
pub const BNXT_ERROR_VARIANTS: usize = 9;

pub fn bnxt_responses() -> Vec<BnxtResponse> {
    let mut responses = vec![
        BnxtResponse::Loaded,
        BnxtResponse::CoredumpLen { len: 8 << 20 },
        BnxtResponse::CoredumpLen { len: M32 },
        BnxtResponse::Coredump {
            offset: 4096,
            data: HVec::from_slice(&[0xab; 17]).unwrap(),
        },
        BnxtResponse::Coredump {
            offset: M32,
            data: full_bytes::<COREDUMP_CHUNK_MAX>(),
        },
    ];
    responses.extend(bnxt_errors().into_iter().map(BnxtResponse::Error));
    responses
}

pub fn bnxt_response_variant(response: &BnxtResponse) -> usize {
    match response {
        BnxtResponse::Loaded => 0,
        BnxtResponse::CoredumpLen { .. } => 1,
        BnxtResponse::Coredump { .. } => 2,
        BnxtResponse::Error(_) => 3,
    }
}
pub const BNXT_RESPONSE_VARIANTS: usize = 4;

/// Asserts that `samples` contain every one of `count` variants as numbered by `variant`.
pub fn assert_covers<T>(samples: &[T], variant: impl Fn(&T) -> usize, count: usize, what: &str) {
    let mut seen = vec![false; count];
    for sample in samples {
        seen[variant(sample)] = true;
    }
    let missing: Vec<usize> = (0..count).filter(|&index| !seen[index]).collect();
    assert!(
        missing.is_empty(),
        "{what}: no sample of variants {missing:?}"
    );
}
