//! The bookkeeping types of teed's core: effects, calls, registrations, sessions.

use alloc::vec::Vec;

use optee_abi::smc::Regs;
use optee_abi::uuid::Uuid;
use tee_proto::lifecycle::{ServerEvent, ServerKind};
use tee_proto::teed::{ShmId, TeedResponse};
use tee_proto::{Frame, Header};

use crate::config::Millis;
use crate::frames::Run;

pub use tee_proto::lifecycle::ClientId;

/// Names one SMC the core asked for; the shell hands it back with the returned registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SmcToken(pub u64);

/// What the core wants done. Drain with [`crate::Teed::poll`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Enter the secure world with these registers; answer with `handle_smc_return`.
    Smc { token: SmcToken, regs: Regs },
    /// Send a reply to a client.
    Reply {
        client: ClientId,
        frame: Frame<TeedResponse>,
    },
    /// Send an event to init.
    ToInit(Frame<ServerEvent>),
}

/// Where a call's answer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyTo {
    pub client: ClientId,
    pub header: Header,
}

/// A yielding call's identity.
pub type CallId = u64;

/// Why a yielding call was made, and so what its completion does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// REGISTER_SHM of a client buffer.
    Register {
        shm: ShmId,
        list: Run,
        reply: Option<ReplyTo>,
    },
    /// UNREGISTER_SHM of a client buffer.
    Unregister { shm: ShmId, reply: Option<ReplyTo> },
    /// OPEN_SESSION for a client.
    OpenSession {
        reply: ReplyTo,
        ta: Uuid,
        journal_slot: Option<usize>,
    },
    /// INVOKE_COMMAND for a client.
    Invoke { reply: ReplyTo, kinds: Vec<OutKind> },
    /// CLOSE_SESSION, for a client or teed's own sweep.
    CloseSession {
        session: u32,
        reply: Option<ReplyTo>,
    },
    /// CANCEL for a client.
    Cancel { reply: ReplyTo },
    /// Probe: unregister what the journal lists.
    ReclaimRegistration { journal_slot: usize },
    /// Probe: close what the journal lists.
    ReclaimSession { journal_slot: usize },
    /// Probe: a resumed orphan thread, answered with failures until it returns.
    Orphan { thread: u32 },
    /// Seed bug 376e4199e327: register a driver-private RPC buffer, then resume `parent`.
    RegisterPrivate {
        parent: CallId,
        cookie: u64,
        list: Run,
    },
    /// Seed bug 376e4199e327: unregister a driver-private RPC buffer, then resume `parent`.
    UnregisterPrivate { parent: CallId, cookie: u64 },
    /// A call of the modern interface (argument pages, notifications).
    Abi(crate::abi::state::AbiCall),
}

impl Purpose {
    /// The client waiting for this call's end, if any.
    pub fn reply_to(&self) -> Option<ReplyTo> {
        match self {
            Purpose::Register { reply, .. }
            | Purpose::Unregister { reply, .. }
            | Purpose::CloseSession { reply, .. } => *reply,
            Purpose::OpenSession { reply, .. }
            | Purpose::Invoke { reply, .. }
            | Purpose::Cancel { reply } => Some(*reply),
            Purpose::ReclaimRegistration { .. }
            | Purpose::ReclaimSession { .. }
            | Purpose::Orphan { .. }
            | Purpose::RegisterPrivate { .. }
            | Purpose::UnregisterPrivate { .. }
            | Purpose::Abi(_) => None,
        }
    }
}

/// How to report an invoke param back to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutKind {
    Nothing,
    Value,
    Memref,
}

/// Where a yielding call stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallStatus {
    /// The secure world had no free thread; resend `next` at `retry_at` or when another call
    /// finishes, whichever comes first, until the call's deadline.
    WaitingThread { retry_at: Millis },
    /// An SMC is out.
    InFlight(SmcToken),
    /// Waiting for a timer (ETHREAD_LIMIT retry or an RPC SUSPEND) before sending `next`.
    Sleeping { until: Millis },
    /// Waiting for a nested call (seed bug 376e4199e327 only).
    WaitingChild,
    /// An RPC teed has not answered yet: the call ran out of deadline or RPC budget with it.
    HeldRpc(Regs),
}

/// One yielding call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub purpose: Purpose,
    /// The message-argument slot; orphans have none.
    pub arg_slot: Option<usize>,
    /// Registers to send next.
    pub next: Regs,
    pub status: CallStatus,
    /// The call's overall deadline, whatever it waits for (a thread, an answer, a timer).
    pub deadline: Millis,
    /// RPC round trips so far, against the budget.
    pub rpcs: u32,
    /// The client was already answered (the call outlived its deadline or budget and goes on
    /// detached): its end only settles the books.
    pub answered: bool,
    /// Set once the secure world has taken the call (any answer but ETHREAD_LIMIT).
    pub entered: bool,
    /// Answer RPCs with failures (orphans from an earlier boot or incarnation).
    pub orphan_mode: bool,
}

/// The state of a client's registered buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShmState {
    Registering,
    Registered,
    /// Freed by the client, but (seed bug: dma-buf release) not yet unregistered.
    ReleasePending,
    Unregistering,
}

/// A client's registered buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shm {
    pub owner: ClientId,
    pub owner_kind: ServerKind,
    pub cookie: u64,
    pub run: Run,
    pub size: u32,
    pub state: ShmState,
    pub journal_slot: Option<usize>,
}

/// An open session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub owner: ClientId,
    pub ta: Uuid,
    pub journal_slot: Option<usize>,
    pub closing: bool,
}

/// A driver-private buffer handed to the secure world by RPC ALLOC or SHM_ALLOC. It belongs to
/// teed, never to a client (the aceeafefff73 lesson).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrivateBuf {
    pub run: Run,
    /// The page list an SHM_ALLOC of more than a page was answered with; freed with the run.
    pub list: Option<Run>,
    /// Seed bug 376e4199e327: registered like a client buffer.
    pub registered: bool,
}

/// A connected client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub kind: ServerKind,
    pub connected: bool,
    /// Seed bug (dma-buf release): frees that run only when the client next calls in.
    pub deferred: Vec<ShmId>,
}

/// Counters the tests, the simulator and teectl read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TeedStats {
    pub smcs: u64,
    pub yielding_calls: u64,
    pub rpcs: u64,
    pub thread_limit_waits: u64,
    pub stale_rpc_cookies: u64,
    pub orphans_resumed: u64,
    pub reclaimed_registrations: u64,
    pub reclaimed_sessions: u64,
    pub cache_cookies_discarded: u64,
    pub cache_buffers_freed: u64,
    pub deadline_expiries: u64,
    pub shutdown_errors: u64,
    /// REGISTER_SHM answers other than success, and the last such `ret`.
    pub register_refusals: u64,
    pub last_register_ret: u32,
    /// Calls given up for their deadline or RPC budget while inside the secure world.
    pub abandoned_calls: u64,
    /// RPCs with a function teed does not know.
    pub unknown_rpcs: u64,
    /// RPC ALLOC or SHM_ALLOC requests refused as oversized or over the buffer bound.
    pub refused_rpc_buffers: u64,
    /// Requests refused for a client's quota.
    pub quota_refusals: u64,
}
