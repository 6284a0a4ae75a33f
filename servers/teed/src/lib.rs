//! teed's core: the OP-TEE driver as a sans-IO state machine.
//!
//! It owns the SMC conduit (as effects: it asks for SMCs and is handed their results), the
//! registry of shared memory registered with the secure world, the sessions of its clients and the
//! lifecycle journal. Platform shells (hosted, QEMU guest, Redox, seL4) feed it messages, SMC
//! results and timeouts, and carry out what [`Teed::poll`] returns.
//!
//! Inside, [`Teed`] composes a registry (what this incarnation holds, and the journal), a call
//! engine (every SMC and yielding call, and the effect queue), and the probe and shutdown
//! machines, which act only through those two. Every ended call is routed by its purpose from
//! one function in `dispatch.rs`.
#![no_std]

extern crate alloc;

mod abi;
mod call;
pub mod client;
pub mod config;
mod core;
mod dispatch;
mod engine;
pub mod frames;
pub mod journal;
mod leftovers;
mod probe;
mod quota;
mod registry;
mod release;
mod shutdown;
pub mod types;

pub use crate::abi::{mainline_arg_slots, AbiCall, AbiStats, Caps};
pub use crate::config::{
    Bounds, Deadlines, Hardening, Millis, Policy, Quota, SeedBugs, TeedConfig, BNXTD_QUOTA,
    TPMD_QUOTA,
};
pub use crate::core::Teed;
pub use crate::types::{ClientId, Effect, SmcToken, TeedStats};
