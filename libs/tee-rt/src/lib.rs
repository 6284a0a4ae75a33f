//! The hosted platform layer shared by teesys processes.
//!
//! Everything here is plumbing between processes on one Linux host: the SMC conduit (eight
//! registers each way), the normal-world RAM file that the secure-world process and the
//! normal-world servers map together, length-prefixed frames for tee-proto messages, the
//! seqpacket endpoints that carry lifecycle and teed frames with their capabilities, spawning
//! servers, the shells' event loop, clock and logging.
//! No server logic lives here; the cores stay sans-IO and these pieces drive them.

pub mod clock;
pub mod conduit;
pub mod endpoint;
pub mod event;
pub mod framing;
pub mod logging;
pub mod physmem;
pub mod ram;
pub mod secure_link;
pub mod serve;
pub mod server;
pub mod spawn;
pub mod stream;
pub mod virtio_port;
pub mod window;

pub use clock::{Clock, Millis};
pub use conduit::{serve_conduit, ConduitError, SmcConduit, UnixConduit, CONDUIT_FRAME_BYTES};
pub use endpoint::{Endpoint, EndpointError};
pub use framing::{read_frame, write_frame, FrameError};
pub use ram::{RamError, RamFile, DEFAULT_RAM_BASE, DEFAULT_RAM_BYTES};
pub use server::Exit;
pub use spawn::{lifecycle_from_env, sibling_binary, spawn_server, SpawnError, LIFECYCLE_FD_ENV};
