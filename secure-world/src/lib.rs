//! A behavioural model of OP-TEE OS at the normal-world interface.
//!
//! [`SecureWorld`] answers SMCs exactly as OP-TEE does where teed can observe it: the fast
//! calls, a fixed pool of secure threads with ETHREAD_LIMIT, RPCs (ALLOC, FREE, CMD, foreign
//! interrupts), the per-thread RPC shm cache, REGISTER_SHM page lists checked against
//! normal-world RAM, a bounded core heap charged per registration and session, and TA
//! sessions with single-instance / multi-session rules. The model is sans-IO and
//! deterministic: normal-world RAM is passed to every call, and the only source of variation
//! is the boot nonce.
//!
//! Two profiles ([`Profile`]): OP-TEE 3.14 (the default) and 4.x, which adds CALL_WITH_RPC_ARG /
//! CALL_WITH_REGD_ARG with RPC commands in the normal world's RPC struct and
//! asynchronous notifications ([`notif`]).
//!
//! Its state outlives the normal world (kexec and the crash kernel keep it); only
//! [`SecureWorld::reset`], a machine reset, clears it.
//!
//! # Modelling choices
//!
//! * Waiting (UNREGISTER_SHM of a buffer still in use, or any call into a TA another thread is
//!   suspended in) is what OP-TEE does: the waiting thread sends RPC CMD NOTIFICATION WAIT
//!   with its own thread id as the value, and the thread that releases the resource sends
//!   NOTIFICATION SEND for that id before its call returns. A waiter woken early re-checks
//!   and waits again, so a normal world that answers WAIT at once only spins.
//! * The message argument must be page-aligned in normal-world RAM: the reserved shm area is
//!   reported (HAVE_RESERVED_SHM, GET_SHM_CONFIG) but not backed. Contiguous temporary memrefs
//!   are accepted anywhere in RAM for the same reason.
//! * TA calls are serialised per TA object (one invocation inside a TA at a time); CANCEL
//!   flags the session's invocations in progress, as upstream cancels per session.
//! * Heap figures are in [`heap`] (per allocation, registration, calibrated baseline),
//!   [`SESSION_BYTES`] and [`MOBJ_BYTES`].
//! * [`ram::SparseRam`] is the RAM the simulator shares with the model; the minimal normal world
//!   that drives the model in tests lives in the dev-only `tee-test-support` crate.

mod buffer;
pub mod config;
mod engine;
mod entry;
mod fast;
#[doc(hidden)]
pub mod fuzzing;
pub mod heap;
pub mod notif;
pub mod ram;
pub mod registry;
mod rpc_arg;
pub mod ta;
mod ta_entry;
pub mod thread;
mod world;

pub use buffer::NwBuffer;
pub use config::{Config, OsRevision, Profile, ReservedShm, UnknownProfile};
pub use engine::RPC_ARG_SIZE;
pub use fast::SEC_CAPS;
pub use heap::{Heap, HeapError};
pub use notif::{NotifError, NotifInfo};
/// Re-exported for the tests and tools that named them here before they moved to `optee-abi`.
pub use optee_abi::msg::rpc_cmd::{NOTIFICATION_SEND, NOTIFICATION_WAIT};
pub use registry::{RegisterError, RegistrationInfo, UnregisterError};
pub use thread::{SuspendReason, ThreadInfo, ThreadState, ThreadsView};
pub use world::{SecureWorld, SessionInfo, Stats, MOBJ_BYTES, SESSION_BYTES};
