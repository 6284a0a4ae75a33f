//! The lifecycle every teed client shares (tpmd, bnxtd): generations, the one outstanding
//! request to teed with its deadline, start-up with backoff, the crash boot, teed restarts and
//! the shutdown sequence in Linux order. A client server plugs its TA-specific part in as a
//! [`engine::TaService`].
#![cfg_attr(not(feature = "hosted"), no_std)]

extern crate alloc;

pub mod config;
pub mod engine;
/// The hosted process shell of a client server (tpmd, bnxtd), on `tee-rt`.
#[cfg(feature = "hosted")]
pub mod hosted;
#[cfg(feature = "testing")]
pub mod testing;

pub use crate::config::{ClientConfig, ClientSeedBugs, Deadlines, Millis};
pub use crate::engine::ConsumerId;
