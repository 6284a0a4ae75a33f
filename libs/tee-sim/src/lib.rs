//! The deterministic simulator: every core of teesys and the secure-world model in one thread.
//!
//! All nondeterminism comes from one seed, so any failure replays from the seed it prints.

pub mod coverage;
#[doc(hidden)]
pub mod fuzzing;
pub mod harness;
pub mod hostile;
pub mod layout;
pub mod ram;
pub mod sim;

pub use coverage::{Coverage, Fault, InFlight};
pub use harness::{Script, Stalled, TeedHarness, Twist, BNXTD, TPMD};
pub use ram::SharedRam;
pub use sim::{Aiming, Sim, SimConfig, SimFailure, SimStats};
