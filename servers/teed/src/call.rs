//! The small words teed's machines share about SMCs: which fast call an SMC was, what an
//! outstanding SMC was for, and how a yielding call ended. A leaf: it knows none of the machines.

use optee_abi::msg::MsgArg;
use optee_abi::smc::ret;
use optee_abi::teec;
use tee_proto::WireError;

use crate::types::CallId;

/// The fast calls teed makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FastCall {
    Uid,
    Revision,
    OsRevision,
    Capabilities,
    ThreadCount,
    DrainUnmapped,
    DrainMapped,
    EnableCache,
    /// ENABLE_ASYNC_NOTIF (`crate::abi`).
    EnableNotif,
}

/// The fast calls of the modern interface (`crate::abi`), answered outside the probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AbiFast {
    /// GET_ASYNC_NOTIF_VALUE.
    NotifValue,
}

/// What an outstanding SMC was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pending {
    Call(CallId),
    Fast(FastCall),
    Abi(AbiFast),
}

/// How a yielding call ended.
#[allow(clippy::large_enum_variant)] // short-lived, never stored: boxing would only add an allocation
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The secure world returned OK; the message as it wrote it back.
    Done(MsgArg),
    /// The SMC itself failed with this return code.
    Smc(u32),
    /// No secure thread became free before the call's deadline.
    Deadline,
    /// The message could not be read back.
    Unreadable,
    /// Inside the secure world past its deadline or RPC budget: what it did there is unknown.
    Abandoned,
}

impl Outcome {
    /// True when the secure world ran the command and its `ret` is `TEEC_SUCCESS`.
    pub(crate) fn succeeded(&self) -> bool {
        matches!(self, Outcome::Done(arg) if arg.ret == teec::SUCCESS)
    }

    /// The wire error a client sees for a call that did not complete.
    pub(crate) fn wire_error(&self) -> WireError {
        match self {
            Outcome::Done(arg) => WireError::Tee {
                code: arg.ret,
                origin: arg.ret_origin,
            },
            Outcome::Smc(code) if *code == ret::ENOMEM => WireError::OutOfMemory,
            Outcome::Smc(_) | Outcome::Unreadable => WireError::Tee {
                code: teec::ERROR_COMMUNICATION,
                origin: teec::origin::COMMS,
            },
            Outcome::Deadline => WireError::Busy,
            Outcome::Abandoned => WireError::SecureWorldFault,
        }
    }
}
