//! bnxtd's core: the Broadcom NIC firmware client (Linux `tee_bnxt_fw`) as a sans-IO state
//! machine.
//!
//! bnxtd holds one session to the BNXT TA and one registered 4 MiB buffer. It fast-boots the
//! NIC firmware on request and serves the NIC's 8 MiB crash dump in small chunks out of a 4 MiB
//! window it fetches from the TA into its buffer. Its lifecycle (start-up, crash boot, teed
//! restarts, shutdown in Linux order, as 914ab19e471d added) is the shared client [`engine`];
//! [`bnxt`] and [`window`] are the NIC-specific part.
#![no_std]

extern crate alloc;

pub mod bnxt;
pub mod window;

pub use crate::bnxt::{BnxtService, COREDUMP_LEN};
pub use tee_client::{engine, ClientConfig, ClientSeedBugs, ConsumerId, Deadlines, Millis};

/// The bnxtd core.
pub type Bnxtd = engine::Client<BnxtService>;
/// bnxtd's configuration.
pub type BnxtdConfig = ClientConfig;
/// What [`Bnxtd::poll`] asks the shell to do.
pub type Effect = engine::Effect<tee_proto::bnxt::BnxtResponse>;
