//! Client (tpmd, bnxtd) ↔ teed: sessions to trusted applications and registered shared memory.
//!
//! * The client sends [`TeedRequest`]s; teed answers each with exactly one [`TeedResponse`]
//!   carrying the same `request_id`. Several requests may be in flight (one per secure thread),
//!   so replies can come out of order, and a `Cancel` may overtake the `Invoke` it names.
//! * Typical life of a client: `OpenSession` to its own TA (teed's allow-list answers `Denied`
//!   for any other TA), `ShmAlloc` its private buffer, then `Invoke`s whose memrefs point into
//!   that buffer; on shutdown `ShmFree` (teed unregisters it from the secure world before
//!   answering `ShmFreed`: release is synchronous, never deferred), then `CloseSession`.
//! * Shared memory contents never travel in frames: `ShmAllocated` gives the physical address,
//!   and the client reads and writes the bytes in normal-world RAM. A memref names an [`ShmId`]
//!   of the same client plus an offset and size inside it; another client's id is `Denied`.
//! * Errors are [`TeedResponse::Error`]. `ServerRestarted` means every session and shm id the
//!   client held is gone (the new teed reclaimed them): re-open, re-allocate, retry. After init's
//!   `Shutdown`, teed answers `ShuttingDown`; in a boot where teed declined, `TeeUnavailable`.
//! * A trusted application's own result is not an IPC error: `Invoked` carries it in `ret` and
//!   `origin`. A session that cannot be opened is `Error(Tee { code, origin })`.

use heapless::Vec;
use serde::{Deserialize, Serialize};

use crate::error::WireError;

/// A session to a trusted application, named by teed; unique within one teed generation.
pub type SessionId = u32;
/// A registered shared-memory buffer, named by teed; unique within one teed generation.
pub type ShmId = u32;

/// Most parameters an `Invoke` carries (the GlobalPlatform client API's four).
pub const MAX_PARAMS: usize = 4;

/// How the client identifies itself to the trusted application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Login {
    Public,
    User,
    Group,
    Application,
}

impl Login {
    /// The TEE Client API login method value (as carried in OPEN_SESSION).
    pub const fn teec_value(self) -> u32 {
        match self {
            Login::Public => 0,
            Login::User => 1,
            Login::Group => 2,
            Login::Application => 4,
        }
    }
}

/// One `Invoke` parameter, as the client describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Param {
    None,
    ValueIn {
        a: u64,
        b: u64,
        c: u64,
    },
    ValueOut,
    ValueInOut {
        a: u64,
        b: u64,
        c: u64,
    },
    /// `size` bytes at `offset` inside the client's buffer `shm`, read by the TA.
    MemrefIn {
        shm: ShmId,
        offset: u32,
        size: u32,
    },
    /// Written by the TA.
    MemrefOut {
        shm: ShmId,
        offset: u32,
        size: u32,
    },
    /// Read and written by the TA.
    MemrefInOut {
        shm: ShmId,
        offset: u32,
        size: u32,
    },
}

/// One parameter as the TA left it, at the same position as the request's parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParamOut {
    /// An input-only or absent parameter.
    None,
    /// A value output or in-out parameter.
    Value { a: u64, b: u64, c: u64 },
    /// A memref output or in-out parameter: the bytes the TA produced, or, with a short-buffer
    /// result, the size it needs.
    Memref { size: u32 },
}

/// What a client asks of teed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TeedRequest {
    /// Open a session to the TA with this UUID (16 octets in RFC 4122 order).
    OpenSession {
        ta: [u8; 16],
        login: Login,
    },
    /// Run command `func` of the session's TA. `cancel_id` is the client's handle for `Cancel`.
    Invoke {
        session: SessionId,
        func: u32,
        cancel_id: u32,
        params: Vec<Param, MAX_PARAMS>,
    },
    CloseSession {
        session: SessionId,
    },
    /// Ask the secure world to cancel the pending `Invoke` with this `cancel_id`.
    Cancel {
        session: SessionId,
        cancel_id: u32,
    },
    /// Allocate a buffer of `size` bytes in normal-world RAM and register it with the secure world.
    ShmAlloc {
        size: u32,
    },
    /// Unregister the buffer, then free it.
    ShmFree {
        shm: ShmId,
    },
}

/// teed's answer to one [`TeedRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TeedResponse {
    SessionOpened {
        session: SessionId,
    },
    /// The TA's result (`ret`, `origin`: TEE Client API codes) and output parameters.
    Invoked {
        ret: u32,
        origin: u32,
        params: Vec<ParamOut, MAX_PARAMS>,
    },
    SessionClosed,
    Cancelled,
    /// The buffer is registered; its bytes are at physical address `pa`.
    ShmAllocated {
        shm: ShmId,
        pa: u64,
        size: u32,
    },
    /// The buffer is unregistered from the secure world and freed.
    ShmFreed,
    Error(WireError),
}
