//! The hosted platform layer shared by teesys processes.
//!
//! Everything here is plumbing between processes on one Linux host: the SMC conduit (eight
//! registers each way), the normal-world RAM file that the secure-world process and the
//! normal-world servers map together, and length-prefixed frames for tee-proto messages.
//! No server logic lives here; the cores stay sans-IO and these pieces drive them.

pub mod conduit;
pub mod framing;
pub mod ram;

pub use conduit::{serve_conduit, ConduitError, SmcConduit, UnixConduit, CONDUIT_FRAME_BYTES};
pub use framing::{read_frame, write_frame, FrameError};
pub use ram::{RamError, RamFile, DEFAULT_RAM_BASE, DEFAULT_RAM_BYTES};
