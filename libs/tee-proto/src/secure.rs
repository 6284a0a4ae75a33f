//! init ↔ the hosted secure-world process: its control channel.
//!
//! * Hosted only. The channel is a capability, not a path: the launcher creates a connected
//!   seqpacket pair and hands one end to the secure world and the other to init, keeping
//!   neither, so no other process can reach it. It lets init look at the secure world, reset
//!   it (as a debugger or the SoC reset line would on hardware) and obtain the SMC conduit for
//!   each teed incarnation. No normal-world server ever holds it.
//! * The requester sends one [`SecureRequest`]; the secure world answers with one
//!   [`SecureResponse`] carrying the same `request_id`, one frame per packet.
//! * `MapWindow` (with the window's memory object attached) puts a client's window into the
//!   secure world's view of normal-world RAM, as a physical range; answered `WindowMapped`.
//! * `NewConduit` is answered `Conduit` with a fresh conduit (a connected stream socket) attached
//!   to the packet; the secure world closes the conduit it served before, so exactly one normal
//!   world, the one init chose, holds the SMC capability.
//! * `Stats` is a snapshot of what the secure world holds right now; `Reset` is a machine reset
//!   (threads, registrations, sessions and the RPC cache dropped; TAs restart; fTPM NV kept) and
//!   is answered `ResetDone` once the reset is complete.

use serde::{Deserialize, Serialize};

use crate::error::WireError;
use crate::frame::Generation;
use crate::interface::Interface;

/// init / teectl ↔ the secure world, for generic serving and screening
/// ([`crate::accept_request`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecureInterface {}

impl Interface for SecureInterface {
    const NAME: &'static str = "secure";
    type Request = SecureRequest;
    type Response = SecureResponse;

    fn server_restarted(generation: Generation) -> SecureResponse {
        SecureResponse::Error(WireError::ServerRestarted { generation })
    }

    fn bad_request() -> SecureResponse {
        SecureResponse::Error(WireError::BadRequest)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecureRequest {
    Stats,
    Reset,
    NewConduit,
    /// Normal-world RAM at `[base, base + len)` is the memory object attached (a client's
    /// window, which init created): the secure world sees it there from now on.
    MapWindow {
        base: u64,
        len: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecureResponse {
    Stats(SecureStats),
    ResetDone,
    /// The new conduit travels with this answer.
    Conduit,
    WindowMapped,
    Error(WireError),
}

/// What the secure world holds, as its own books show it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecureStats {
    /// Live shared-memory registrations.
    pub registrations: u32,
    /// Bytes covered by those registrations.
    pub registered_bytes: u64,
    /// Open TA sessions.
    pub sessions: u32,
    /// Core heap in use (baseline included).
    pub heap_used: u32,
    pub heap_capacity: u32,
    pub threads_free: u32,
    pub threads_active: u32,
    /// Threads suspended in an RPC; after a crash they may stay so for ever.
    pub threads_suspended: u32,
    pub cache_enabled: bool,
    /// RPC argument buffers kept by free threads for the RPC shm cache.
    pub cached_buffers: u32,
    /// SMCs served since the process started.
    pub smcs: u64,
    /// Machine resets since the process started.
    pub resets: u32,
}

impl SecureStats {
    /// Whether the normal world holds nothing in the secure world: no registration, no session,
    /// no cached RPC buffer and no thread inside a call.
    pub fn is_quiescent(&self) -> bool {
        self.registrations == 0
            && self.sessions == 0
            && self.cached_buffers == 0
            && self.threads_active == 0
            && self.threads_suspended == 0
    }
}
