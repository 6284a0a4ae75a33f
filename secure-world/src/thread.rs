//! The fixed pool of secure threads and what a busy thread is doing.
//!
//! A thread is Free, Active (only while an SMC is being handled) or Suspended in an RPC to
//! the normal world. A suspended thread keeps its job: the message being served and the
//! explicit stage it will continue from when the normal world returns from the RPC. Nothing
//! times a suspended thread out: a normal world that never returns leaves it busy for ever.

use optee_abi::msg::{MsgArg, RawParam};

use crate::buffer::NwBuffer;
use crate::entry::Message;
use crate::heap::HeapBlock;
use crate::registry::RegId;
use crate::ta::{ClientIdentity, SessionId, ShmType, TaParams};

/// Why a thread is suspended: the RPC it is waiting on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuspendReason {
    /// A foreign interrupt: the normal world just resumes it.
    ForeignIntr,
    /// RPC ALLOC of the thread's RPC argument buffer.
    RpcAlloc,
    /// RPC CMD: an RPC command in the RPC argument buffer.
    RpcCmd,
    /// RPC FREE of a buffer.
    RpcFree,
}

/// A thread's state as introspection shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadState {
    Free,
    Active,
    Suspended(SuspendReason),
}

/// One thread as introspection shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadInfo {
    pub id: usize,
    pub state: ThreadState,
    /// The thread holds an RPC argument buffer (in use, or kept by the RPC shm cache).
    pub has_rpc_buffer: bool,
}

/// Every secure thread, in id order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadsView {
    pub threads: Vec<ThreadInfo>,
}

impl ThreadsView {
    fn count(&self, pred: impl Fn(ThreadState) -> bool) -> usize {
        self.threads.iter().filter(|t| pred(t.state)).count()
    }

    pub fn free(&self) -> usize {
        self.count(|s| s == ThreadState::Free)
    }

    pub fn active(&self) -> usize {
        self.count(|s| s == ThreadState::Active)
    }

    pub fn suspended(&self) -> usize {
        self.count(|s| matches!(s, ThreadState::Suspended(_)))
    }
}

/// The buffer the normal world gave a thread for its RPC commands (RPC ALLOC).
#[derive(Debug)]
pub(crate) struct RpcArgBuffer {
    pub pa: u64,
    pub cookie: u64,
    pub charge: HeapBlock,
}

/// A TA entry point ready to run once the TA instance is idle.
#[derive(Debug)]
pub(crate) enum TaEntry {
    Open {
        ta: usize,
        client: ClientIdentity,
        params: TaParams,
    },
    Invoke {
        ta: usize,
        session: SessionId,
        func: u32,
        params: TaParams,
    },
    Close {
        ta: usize,
        session: SessionId,
    },
}

impl TaEntry {
    pub fn ta(&self) -> usize {
        match self {
            TaEntry::Open { ta, .. } | TaEntry::Invoke { ta, .. } | TaEntry::Close { ta, .. } => {
                *ta
            }
        }
    }
}

/// The RPC a TA invocation is suspended in, deciding how its answer is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaWait {
    Time,
    Suspend,
    ShmAlloc(ShmType),
    ShmFree,
    /// An unusable SHM_ALLOC answer is being handed back with SHM_FREE, or an allocation was
    /// refused before any RPC; the TA then sees the allocation fail.
    DiscardShm,
}

/// Where a job continues.
#[derive(Debug)]
pub(crate) enum Stage {
    /// Nothing done yet.
    Start,
    /// A TA entry is prepared (params resolved, registrations referenced).
    Ready(TaEntry),
    /// The TA instance is busy with another thread: waiting (RPC NOTIFICATION WAIT).
    WaitTa(TaEntry),
    /// Inside the TA, which asked for an RPC.
    InTa {
        ta: usize,
        session: SessionId,
        params: TaParams,
        waiting: TaWait,
    },
    /// UNREGISTER_SHM waits for the registration's last user (RPC NOTIFICATION WAIT).
    WaitRelease { reg: RegId },
    /// Result written back; notifications and the final RPC FREE remain.
    Finish,
}

/// The answer to an RPC command, read back from the RPC argument buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RpcAnswer {
    pub ret: u32,
    /// num_params as the normal world left it.
    pub num_params: u32,
    pub params: Vec<RawParam>,
}

impl RpcAnswer {
    /// A failure produced on the secure side (no answer could be had).
    pub fn failed(ret: u32) -> RpcAnswer {
        RpcAnswer {
            ret,
            num_params: 0,
            params: Vec::new(),
        }
    }
}

/// A yielding call in progress on one thread.
#[derive(Debug)]
pub(crate) struct Job {
    /// Where the message lives in normal-world RAM (CALL_WITH_ARG, CALL_WITH_RPC_ARG).
    pub arg_pa: u64,
    /// Where the message lives inside a registered shm (CALL_WITH_REGD_ARG); when set, the
    /// result is written back here instead of at `arg_pa`.
    pub arg_buf: Option<NwBuffer>,
    /// The normal world's RPC argument struct, right after the message (CALL_WITH_RPC_ARG,
    /// CALL_WITH_REGD_ARG): RPC commands travel in it, never in an RPC ALLOC'd buffer, and
    /// RPC CMD names no cookie (thread_optee_smc.c get_rpc_arg with a supplied `rpc_arg`).
    pub rpc_arg: Option<NwBuffer>,
    pub arg: Message,
    /// Heap used to map the message for the duration of the call.
    pub arg_charge: Option<HeapBlock>,
    pub stage: Stage,
    /// Registrations this call references (RMEM params).
    pub refs: Vec<RegId>,
    /// Threads to wake (RPC NOTIFICATION SEND) before the call returns.
    pub wakeups: Vec<usize>,
    /// RPC command waiting for an RPC argument buffer, or for its answer.
    pub request: Option<MsgArg>,
    /// Answer to the last RPC command, for the stage to consume.
    pub answer: Option<RpcAnswer>,
    /// A foreign interrupt is still to be delivered before the work runs.
    pub interrupt: bool,
    /// The RPC FREE in flight hands back an unusable RPC ALLOC answer.
    pub discarding_alloc: bool,
    /// CANCEL reached this invocation.
    pub cancelled: bool,
}

impl Job {
    pub fn new(arg_pa: u64, arg: Message, arg_charge: HeapBlock, interrupt: bool) -> Job {
        Job {
            arg_pa,
            arg_buf: None,
            rpc_arg: None,
            arg,
            arg_charge: Some(arg_charge),
            stage: Stage::Start,
            refs: Vec::new(),
            wakeups: Vec::new(),
            request: None,
            answer: None,
            interrupt,
            discarding_alloc: false,
            cancelled: false,
        }
    }

    /// Session and cancel id this job serves, for CANCEL.
    pub fn invocation(&self) -> Option<(SessionId, u32)> {
        match &self.stage {
            Stage::Ready(TaEntry::Invoke { session, .. })
            | Stage::WaitTa(TaEntry::Invoke { session, .. })
            | Stage::InTa { session, .. } => Some((*session, self.arg.cancel_id)),
            _ => None,
        }
    }
}

/// One secure thread.
///
/// Upstream threads also keep a payload cache (`thread_rpc_shm_cache` in core/kernel/thread.c,
/// cleared by `call_entry_std` in thread_optee_smc.c): payload buffers from RPC SHM_ALLOC, one per
/// user (socket, REE FS, I2C, RPMB), reused and grown within one yielding call and handed back
/// with SHM_FREE before that call returns. It never outlives a call that returns, so a normal
/// world has nothing to drain for it at shutdown beyond letting its calls finish; only a thread
/// left suspended (a crash) keeps its entries, until it is resumed and returns. No TA of this
/// model uses those users, and every SHM_ALLOC a TA makes it frees before it completes, which is
/// the same contract at the interface.
#[derive(Debug)]
pub(crate) struct SecureThread {
    pub state: ThreadState,
    pub rpc_arg: Option<RpcArgBuffer>,
    pub job: Option<Job>,
}

impl SecureThread {
    pub fn new() -> SecureThread {
        SecureThread {
            state: ThreadState::Free,
            rpc_arg: None,
            job: None,
        }
    }
}
