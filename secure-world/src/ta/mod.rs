//! Trusted applications: the trait every TA implements, the view of its params, and the RPCs
//! a TA may ask of the normal world.
//!
//! A TA runs to completion inside one yielding call unless it needs the normal world: then
//! `invoke` returns [`TaStep::Rpc`], the secure thread suspends in an RPC, and `resume` is
//! called with the answer when the normal world returns. TA objects live as long as the
//! [`crate::SecureWorld`], so state kept in them (such as TPM NV) outlives normal-world
//! reboots; [`TrustedApp::unload`] drops only volatile state.

pub mod bnxt;
pub mod device_pta;
pub mod ftpm;
pub(crate) mod params;

use optee_abi::teec;
use optee_abi::uuid::Uuid;

pub use params::{ParamError, ParamType, TaContext, TaParams};

use crate::buffer::NwBuffer;
use crate::heap::HeapBlock;

/// A session id as the normal world sees it.
pub type SessionId = u32;

/// TA property flags (`TA_FLAG_*` of user_ta_header.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaFlags(u32);

impl TaFlags {
    /// One instance shared by every session.
    pub const SINGLE_INSTANCE: TaFlags = TaFlags(1 << 2);
    /// The single instance accepts more than one session at a time.
    pub const MULTI_SESSION: TaFlags = TaFlags(1 << 3);
    /// The instance stays loaded after its last session closes.
    pub const INSTANCE_KEEP_ALIVE: TaFlags = TaFlags(1 << 4);
    /// Listed by the device-enumeration PTA.
    pub const DEVICE_ENUM: TaFlags = TaFlags(1 << 9);
    /// Flags every pseudo TA carries (PTA_DEFAULT_FLAGS).
    pub const PTA_DEFAULT: TaFlags =
        TaFlags(Self::SINGLE_INSTANCE.0 | Self::MULTI_SESSION.0 | Self::INSTANCE_KEEP_ALIVE.0);

    /// No flags.
    pub const fn empty() -> TaFlags {
        TaFlags(0)
    }

    /// Both sets of flags.
    pub const fn union(self, other: TaFlags) -> TaFlags {
        TaFlags(self.0 | other.0)
    }

    /// True when every flag of `other` is set.
    pub const fn contains(self, other: TaFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }
}

/// Who opened a session (OPEN_SESSION's second META param).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIdentity {
    pub uuid: Uuid,
    /// `teec::login::*`.
    pub login: u32,
}

/// What a TA entry point did.
#[derive(Debug)]
pub enum TaStep {
    /// Finished with this TEE result code (`teec::SUCCESS` or an error).
    Complete(u32),
    /// Needs the normal world first; `resume` gets the answer.
    Rpc(TaRpc),
}

/// Whom RPC shm is for (`OPTEE_RPC_SHM_TYPE_*`, optee_rpc_cmd.h): value a of SHM_ALLOC and
/// SHM_FREE, and how OP-TEE asks for it (core/arch/arm/kernel/thread_optee_smc.c).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShmType {
    /// A payload for a TA (thread_rpc_alloc_payload): any size; the normal world answers more
    /// than a page with a page list.
    Application,
    /// Memory for OP-TEE itself (thread_rpc_alloc_kernel_payload): 3.14 never asks for more
    /// than a page, it fails such a request before any RPC.
    Kernel,
}

impl ShmType {
    /// The value SHM_ALLOC and SHM_FREE carry in value a.
    pub const fn value(self) -> u64 {
        match self {
            ShmType::Application => optee_abi::msg::rpc_cmd::SHM_TYPE_APPL,
            ShmType::Kernel => optee_abi::msg::rpc_cmd::SHM_TYPE_KERNEL,
        }
    }
}

/// RPC commands a TA may ask of the normal world (optee_rpc_cmd.h).
#[derive(Debug)]
pub enum TaRpc {
    /// GET_TIME: the normal world's wall-clock time.
    GetTime,
    /// SUSPEND: let the normal world sleep for this long before resuming.
    Suspend { millis: u32 },
    /// SHM_ALLOC of `size` bytes of shm of type `kind`.
    ShmAlloc { size: u64, kind: ShmType },
    /// SHM_FREE of a buffer obtained with `ShmAlloc`.
    ShmFree { shm: RpcShm },
}

/// The normal world's answer to a [`TaRpc`].
#[derive(Debug)]
pub enum RpcReply {
    /// Answer to GET_TIME.
    Time { seconds: u64, nanos: u64 },
    /// Answer to SHM_ALLOC.
    Shm(RpcShm),
    /// SUSPEND or SHM_FREE done.
    Done,
    /// The RPC failed with this TEE result code.
    Failed(u32),
}

/// Shared memory the normal world allocated for a TA through RPC SHM_ALLOC. Give it back with
/// [`TaRpc::ShmFree`]; dropping it leaks its bookkeeping on the core heap.
#[derive(Debug)]
pub struct RpcShm {
    cookie: u64,
    buffer: NwBuffer,
    kind: ShmType,
    pub(crate) charge: HeapBlock,
}

impl RpcShm {
    pub(crate) fn new(cookie: u64, buffer: NwBuffer, kind: ShmType, charge: HeapBlock) -> RpcShm {
        RpcShm {
            cookie,
            buffer,
            kind,
            charge,
        }
    }

    /// The type it was allocated as; SHM_FREE names the same.
    pub fn kind(&self) -> ShmType {
        self.kind
    }

    /// The normal world's cookie for this buffer.
    pub fn cookie(&self) -> u64 {
        self.cookie
    }

    /// The buffer's bytes in normal-world memory.
    pub fn buffer(&self) -> &NwBuffer {
        &self.buffer
    }
}

/// A trusted application (user TA or pseudo TA) as the core sees it.
pub trait TrustedApp: Send {
    /// The TA's UUID, as OPEN_SESSION names it.
    fn uuid(&self) -> Uuid;

    /// Property flags.
    fn flags(&self) -> TaFlags;

    /// A short name for logs.
    fn name(&self) -> &'static str;

    /// A session is being opened; a non-SUCCESS result refuses it.
    fn open_session(
        &mut self,
        session: SessionId,
        client: &ClientIdentity,
        ctx: &mut TaContext<'_>,
    ) -> u32;

    /// Runs command `func` of an open session.
    fn invoke(&mut self, session: SessionId, func: u32, ctx: &mut TaContext<'_>) -> TaStep;

    /// Continues an invocation that returned [`TaStep::Rpc`]. Only TAs that ask for RPCs are
    /// ever resumed, so the default reports a state error.
    fn resume(&mut self, session: SessionId, reply: RpcReply, ctx: &mut TaContext<'_>) -> TaStep {
        let _ = (session, reply, ctx);
        TaStep::Complete(teec::ERROR_BAD_STATE)
    }

    /// The session is closed.
    fn close_session(&mut self, session: SessionId);

    /// The instance goes away (last session closed without INSTANCE_KEEP_ALIVE, or a machine
    /// reset): drop volatile state, keep persistent state. Stateless TAs need nothing.
    fn unload(&mut self) {}
}
