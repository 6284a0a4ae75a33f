//! proptest strategies for arbitrary messages of every interface.

use heapless::Vec as HVec;
use proptest::collection::vec;
use proptest::prelude::*;
use tee_proto::bnxt::{BnxtError, BnxtRequest, BnxtResponse, COREDUMP_CHUNK_MAX};
use tee_proto::grants::{Grant, MAX_GRANTS};
use tee_proto::lifecycle::{
    BootInfo, BootKind, ClientWindows, DeclineReason, InitRequest, RamWindow, ServerEvent,
    ServerKind, ServerState, ServerStatus, ShutdownReason, ShutdownReport,
};
use tee_proto::teed::{Login, Param, ParamOut, TeedRequest, TeedResponse, MAX_PARAMS};
use tee_proto::tpm::{TpmError, TpmRequest, TpmResponse, TPM_BUFFER_MAX};
use tee_proto::{Header, WireError, PROTOCOL_VERSION};

fn bounded<T: Clone + std::fmt::Debug, const N: usize>(
    element: impl Strategy<Value = T>,
) -> impl Strategy<Value = HVec<T, N>> {
    vec(element, 0..=N).prop_map(|items| {
        let mut bounded = HVec::new();
        for item in items {
            // The range above keeps `items` within capacity.
            let _ = bounded.push(item);
        }
        bounded
    })
}

pub fn header() -> impl Strategy<Value = Header> {
    (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(from, to, id)| Header {
        version: PROTOCOL_VERSION,
        from_generation: from,
        to_generation: to,
        request_id: id,
    })
}

pub fn wire_error() -> impl Strategy<Value = WireError> {
    prop_oneof![
        any::<u32>().prop_map(|generation| WireError::ServerRestarted { generation }),
        Just(WireError::TeeUnavailable),
        Just(WireError::Retryable),
        Just(WireError::Denied),
        Just(WireError::NoDevice),
        Just(WireError::BadRequest),
        Just(WireError::Busy),
        Just(WireError::OutOfMemory),
        Just(WireError::NotFound),
        Just(WireError::ShuttingDown),
        (any::<u32>(), any::<u32>()).prop_map(|(code, origin)| WireError::Tee { code, origin }),
        Just(WireError::QuotaExceeded),
        Just(WireError::SecureWorldFault),
    ]
}

fn login() -> impl Strategy<Value = Login> {
    prop_oneof![
        Just(Login::Public),
        Just(Login::User),
        Just(Login::Group),
        Just(Login::Application),
    ]
}

fn param() -> impl Strategy<Value = Param> {
    let values = (any::<u64>(), any::<u64>(), any::<u64>());
    let memref = (any::<u32>(), any::<u32>(), any::<u32>());
    prop_oneof![
        Just(Param::None),
        values.prop_map(|(a, b, c)| Param::ValueIn { a, b, c }),
        Just(Param::ValueOut),
        values.prop_map(|(a, b, c)| Param::ValueInOut { a, b, c }),
        memref.prop_map(|(shm, offset, size)| Param::MemrefIn { shm, offset, size }),
        memref.prop_map(|(shm, offset, size)| Param::MemrefOut { shm, offset, size }),
        memref.prop_map(|(shm, offset, size)| Param::MemrefInOut { shm, offset, size }),
    ]
}

fn param_out() -> impl Strategy<Value = ParamOut> {
    prop_oneof![
        Just(ParamOut::None),
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(a, b, c)| ParamOut::Value {
            a,
            b,
            c
        }),
        any::<u32>().prop_map(|size| ParamOut::Memref { size }),
    ]
}

pub fn teed_request() -> impl Strategy<Value = TeedRequest> {
    prop_oneof![
        (any::<[u8; 16]>(), login()).prop_map(|(ta, login)| TeedRequest::OpenSession { ta, login }),
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            bounded::<_, MAX_PARAMS>(param())
        )
            .prop_map(|(session, func, cancel_id, params)| TeedRequest::Invoke {
                session,
                func,
                cancel_id,
                params
            }),
        any::<u32>().prop_map(|session| TeedRequest::CloseSession { session }),
        (any::<u32>(), any::<u32>())
            .prop_map(|(session, cancel_id)| TeedRequest::Cancel { session, cancel_id }),
        any::<u32>().prop_map(|size| TeedRequest::ShmAlloc { size }),
        any::<u32>().prop_map(|shm| TeedRequest::ShmFree { shm }),
    ]
}

pub fn teed_response() -> impl Strategy<Value = TeedResponse> {
    prop_oneof![
        any::<u32>().prop_map(|session| TeedResponse::SessionOpened { session }),
        (
            any::<u32>(),
            any::<u32>(),
            bounded::<_, MAX_PARAMS>(param_out())
        )
            .prop_map(|(ret, origin, params)| TeedResponse::Invoked {
                ret,
                origin,
                params
            }),
        Just(TeedResponse::SessionClosed),
        Just(TeedResponse::Cancelled),
        (any::<u32>(), any::<u64>(), any::<u32>())
            .prop_map(|(shm, pa, size)| TeedResponse::ShmAllocated { shm, pa, size }),
        Just(TeedResponse::ShmFreed),
        wire_error().prop_map(TeedResponse::Error),
    ]
}

fn boot_info() -> impl Strategy<Value = BootInfo> {
    let kind = prop_oneof![
        Just(BootKind::Cold),
        Just(BootKind::Kexec),
        Just(BootKind::CrashKernel),
        Just(BootKind::Reset),
    ];
    (any::<u64>(), kind, any::<bool>()).prop_map(|(boot_id, kind, crash_flag)| BootInfo {
        boot_id,
        kind,
        crash_flag,
    })
}

pub fn init_request() -> impl Strategy<Value = InitRequest> {
    let reason = prop_oneof![
        Just(ShutdownReason::Kexec),
        Just(ShutdownReason::Reboot),
        Just(ShutdownReason::Crash),
    ];
    prop_oneof![
        (
            any::<u32>(),
            any::<u32>(),
            boot_info(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(grant(), 0..=MAX_GRANTS),
        )
            .prop_map(
                |(generation, teed_generation, boot, base, len, journal_base, grants)| {
                    InitRequest::Hello {
                        generation,
                        teed_generation,
                        boot,
                        ram: RamWindow { base, len },
                        journal: RamWindow {
                            base: journal_base,
                            len,
                        },
                        windows: ClientWindows {
                            tpmd: RamWindow {
                                base,
                                len: journal_base,
                            },
                            bnxtd: RamWindow {
                                base: journal_base,
                                len: base,
                            },
                        },
                        grants: grants.into_iter().collect(),
                    }
                }
            ),
        reason.prop_map(|reason| InitRequest::Shutdown { reason }),
        Just(InitRequest::Status),
        any::<u32>().prop_map(|generation| InitRequest::ClientEndpoint {
            client: ServerKind::Bnxtd,
            generation
        }),
        any::<u32>().prop_map(|teed_generation| InitRequest::TeedEndpoint { teed_generation }),
    ]
}

fn server_status() -> impl Strategy<Value = ServerStatus> {
    let kind = prop_oneof![
        Just(ServerKind::Teed),
        Just(ServerKind::Tpmd),
        Just(ServerKind::Bnxtd),
    ];
    let state = prop_oneof![
        Just(ServerState::Starting),
        Just(ServerState::Serving),
        Just(ServerState::Declined),
        Just(ServerState::ShuttingDown),
        Just(ServerState::Stopped),
    ];
    (
        kind,
        any::<u32>(),
        state,
        any::<u32>(),
        any::<u32>(),
        any::<u64>(),
    )
        .prop_map(
            |(kind, generation, state, sessions, registrations, registered_bytes)| ServerStatus {
                kind,
                generation,
                state,
                sessions,
                registrations,
                registered_bytes,
            },
        )
}

pub fn server_event() -> impl Strategy<Value = ServerEvent> {
    let reason = prop_oneof![
        Just(DeclineReason::CrashKernel),
        Just(DeclineReason::IncompatibleSecureWorld),
        Just(DeclineReason::SecureWorldUnavailable),
        Just(DeclineReason::DeadlineExpired),
    ];
    prop_oneof![
        any::<u32>().prop_map(|generation| ServerEvent::Ready { generation }),
        reason.prop_map(|reason| ServerEvent::Declined { reason }),
        (any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(
            |(unregistered, sessions_closed, cache_buffers_freed, errors)| {
                ServerEvent::ShutdownAck(ShutdownReport {
                    unregistered,
                    sessions_closed,
                    cache_buffers_freed,
                    errors,
                })
            }
        ),
        server_status().prop_map(ServerEvent::Status),
        wire_error().prop_map(ServerEvent::Error),
    ]
}

pub fn tpm_request() -> impl Strategy<Value = TpmRequest> {
    bounded::<u8, TPM_BUFFER_MAX>(any::<u8>()).prop_map(|bytes| TpmRequest::Command { bytes })
}

fn tpm_error() -> impl Strategy<Value = TpmError> {
    prop_oneof![
        Just(TpmError::TeeUnavailable),
        Just(TpmError::Retryable),
        any::<u32>().prop_map(|generation| TpmError::ServerRestarted { generation }),
        Just(TpmError::BadRequest),
        any::<u32>().prop_map(|len| TpmError::CommandTooLarge { len }),
        any::<u32>().prop_map(|len| TpmError::CommandTooShort { len }),
        any::<u32>().prop_map(|declared| TpmError::BadResponse { declared }),
        (any::<u32>(), any::<u32>()).prop_map(|(code, origin)| TpmError::Tee { code, origin }),
        Just(TpmError::ShuttingDown),
    ]
}

pub fn tpm_response() -> impl Strategy<Value = TpmResponse> {
    prop_oneof![
        bounded::<u8, TPM_BUFFER_MAX>(any::<u8>())
            .prop_map(|bytes| TpmResponse::Response { bytes }),
        tpm_error().prop_map(TpmResponse::Error),
    ]
}

pub fn bnxt_request() -> impl Strategy<Value = BnxtRequest> {
    prop_oneof![
        Just(BnxtRequest::Load),
        Just(BnxtRequest::CoredumpLen),
        (any::<u32>(), any::<u32>())
            .prop_map(|(offset, size)| BnxtRequest::CopyCoredump { offset, size }),
    ]
}

fn bnxt_error() -> impl Strategy<Value = BnxtError> {
    prop_oneof![
        Just(BnxtError::NoDevice),
        Just(BnxtError::TeeUnavailable),
        Just(BnxtError::Retryable),
        any::<u32>().prop_map(|generation| BnxtError::ServerRestarted { generation }),
        Just(BnxtError::BadRequest),
        (any::<u32>(), any::<u32>()).prop_map(|(offset, len)| BnxtError::BadOffset { offset, len }),
        (any::<u32>(), any::<u32>()).prop_map(|(size, max)| BnxtError::BadSize { size, max }),
        Just(BnxtError::CorruptImage),
        (any::<u32>(), any::<u32>()).prop_map(|(code, origin)| BnxtError::Tee { code, origin }),
    ]
}

pub fn bnxt_response() -> impl Strategy<Value = BnxtResponse> {
    prop_oneof![
        Just(BnxtResponse::Loaded),
        any::<u32>().prop_map(|len| BnxtResponse::CoredumpLen { len }),
        (any::<u32>(), bounded::<u8, COREDUMP_CHUNK_MAX>(any::<u8>()))
            .prop_map(|(offset, data)| BnxtResponse::Coredump { offset, data }),
        bnxt_error().prop_map(BnxtResponse::Error),
    ]
}

/// Any grant kind.
pub fn grant() -> impl Strategy<Value = Grant> {
    proptest::sample::select(Grant::ALL.to_vec())
}
