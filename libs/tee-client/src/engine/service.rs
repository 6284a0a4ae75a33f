//! The seam between the generic client engine and one trusted application's front end.
//!
//! The engine owns everything a TEE client shares (generations, the session, the registered
//! buffer, deadlines, start-up, restart recovery, shutdown); a [`TaService`] only turns one
//! consumer request into a TA call and the TA's answer into a consumer response.

use heapless::Vec;
use optee_abi::mem::{MemError, PhysMem};
use optee_abi::teec;
use optee_abi::uuid::Uuid;
use tee_proto::lifecycle::{ServerKind, ShutdownReason};
use tee_proto::teed::{Param, ParamOut, ShmId, MAX_PARAMS};
use tee_proto::{Interface, WireError};

/// What a consumer of service `S` sends.
pub type RequestOf<S> = <<S as TaService>::Interface as Interface>::Request;
/// What a consumer of service `S` receives.
pub type ResponseOf<S> = <<S as TaService>::Interface as Interface>::Response;

/// The client's registered buffer, as teed allocated it: `size` bytes at physical `pa`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShmBuffer {
    pub id: ShmId,
    pub pa: u64,
    pub size: u32,
}

/// One command for the TA: its function number and up to four parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaCall {
    pub func: u32,
    pub params: Vec<Param, MAX_PARAMS>,
}

impl TaCall {
    /// A call with exactly these four parameters (the Linux clients always pass four).
    pub fn new(func: u32, params: [Param; MAX_PARAMS]) -> TaCall {
        TaCall {
            func,
            params: Vec::from_array(params),
        }
    }
}

/// The TA's answer to a [`TaCall`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaReply<'a> {
    /// TEE Client API result code.
    pub ret: u32,
    pub origin: u32,
    pub params: &'a [ParamOut],
}

/// How a service starts a queued job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin<R> {
    /// Send this call to the TA; its answer goes to [`TaService::complete`].
    Call(TaCall),
    /// Answered without the TA (from a cache, or a local failure).
    Done(R),
}

/// Why the engine could not get a TA answer for a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// teed declined this boot (crash kernel) or the secure world is gone for it.
    #[error("TEE unavailable this boot")]
    TeeUnavailable,
    /// Lost to a teed restart or a missed deadline; sending the request again is safe.
    #[error("request lost to a restart or a missed deadline")]
    Lost,
    /// A shutdown is in progress.
    #[error("shutting down")]
    ShuttingDown,
    /// The server has shut down for this boot.
    #[error("stopped for this boot")]
    Stopped,
    /// teed refused the call.
    #[error("teed refused the call: {0}")]
    Teed(WireError),
    /// teed answered with a reply that does not fit the request.
    #[error("unexpected reply from teed")]
    UnexpectedReply,
    /// The shared buffer could not be read or written.
    #[error(transparent)]
    Mem(#[from] MemError),
}

/// What a consumer should be told about a [`ClientError`], before each service phrases it in
/// its own error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    TeeUnavailable,
    /// Safe to send again.
    Retry,
    /// Shutting down or shut down for this boot.
    Gone,
    /// A TEE Client API result code and origin.
    Tee {
        code: u32,
        origin: u32,
    },
}

impl ClientError {
    /// The one mapping from engine and teed errors to what a consumer can act on.
    pub fn failure(self) -> Failure {
        let comms = |code| Failure::Tee {
            code,
            origin: teec::origin::COMMS,
        };
        match self {
            ClientError::TeeUnavailable => Failure::TeeUnavailable,
            ClientError::Lost => Failure::Retry,
            ClientError::ShuttingDown | ClientError::Stopped => Failure::Gone,
            ClientError::UnexpectedReply | ClientError::Mem(_) => comms(teec::ERROR_COMMUNICATION),
            ClientError::Teed(wire) => match wire {
                WireError::ServerRestarted { .. } | WireError::Retryable | WireError::Busy => {
                    Failure::Retry
                }
                WireError::TeeUnavailable => Failure::TeeUnavailable,
                WireError::ShuttingDown | WireError::NoDevice => Failure::Gone,
                WireError::OutOfMemory => comms(teec::ERROR_OUT_OF_MEMORY),
                WireError::Denied => comms(teec::ERROR_ACCESS_DENIED),
                WireError::BadRequest => comms(teec::ERROR_BAD_PARAMETERS),
                WireError::NotFound => comms(teec::ERROR_ITEM_NOT_FOUND),
                WireError::Tee { code, origin } => Failure::Tee { code, origin },
                WireError::QuotaExceeded => comms(teec::ERROR_OUT_OF_MEMORY),
                WireError::SecureWorldFault => comms(teec::ERROR_COMMUNICATION),
            },
        }
    }
}

/// One trusted application's front end, driven by [`crate::engine::Client`].
pub trait TaService {
    /// The consumer-facing protocol.
    type Interface: Interface;
    /// A validated consumer request waiting for its turn.
    type Job;

    const KIND: ServerKind;
    /// The TA the client opens its one session to.
    const TA: Uuid;
    /// Size of the one registered buffer.
    const SHM_SIZE: u32;

    /// Checks a request; `Err` is answered at once and nothing reaches the TA.
    fn accept(&mut self, request: RequestOf<Self>) -> Result<Self::Job, ResponseOf<Self>>;

    /// Starts a job whose turn has come.
    fn begin(
        &mut self,
        job: &Self::Job,
        mem: &mut dyn PhysMem,
        shm: ShmBuffer,
    ) -> Begin<ResponseOf<Self>>;

    /// Turns the TA's answer to the job's call into the consumer's response.
    fn complete(
        &mut self,
        job: &Self::Job,
        mem: &mut dyn PhysMem,
        shm: ShmBuffer,
        reply: TaReply<'_>,
    ) -> ResponseOf<Self>;

    /// The response for a job that got no TA answer.
    fn fail(&self, error: ClientError) -> ResponseOf<Self>;

    /// A call to make before the buffer and session are released at shutdown (its answer is
    /// only logged).
    fn before_release(
        &mut self,
        _reason: ShutdownReason,
        _mem: &mut dyn PhysMem,
        _shm: ShmBuffer,
    ) -> Option<TaCall> {
        None
    }

    /// The registered buffer is gone (teed restarted) or replaced: forget its contents.
    fn buffer_lost(&mut self) {}
}
