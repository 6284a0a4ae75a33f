//! init ↔ every server (teed, tpmd, bnxtd): start-up, status and shutdown.
//!
//! * init sends [`InitRequest`]s; the server answers each with one [`ServerEvent`] carrying the
//!   same `request_id`. init never blocks on a server: it waits for each answer with a deadline.
//! * Start-up: init starts teed first and sends `Hello` with teed's new generation (and the same
//!   number as `teed_generation`); teed answers `Ready` once it serves, or `Declined` (crash
//!   kernel, incompatible or unreachable secure world) without any further SMC. init holds a
//!   server that declined and never restarts it this boot. Then init starts the clients, whose
//!   `Hello` names teed's generation so that their first frames to teed are addressed correctly.
//! * Shutdown (kexec, reboot, crash): init sends `Shutdown` to the clients first; each frees and
//!   unregisters its shared memory and closes its session, then answers `ShutdownAck`. Only then
//!   does init send `Shutdown` to teed, which unregisters whatever is still registered, closes
//!   leftover sessions and drains the RPC shm cache before its `ShutdownAck`. An ack is sent
//!   only after every unregister it covers has completed. On a crash the deadline is short and
//!   the next boot carries the crash flag.
//! * `Status` may be sent at any time and is answered with `Status`.
//! * A server that cannot act on a request (stale generation, malformed body) answers `Error`.

use serde::{Deserialize, Serialize};

use crate::error::WireError;
use crate::frame::Generation;
use crate::grants::GrantKinds;

/// How the running normal-world boot began.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BootKind {
    /// Power-on: the secure world is fresh too.
    Cold,
    /// A kexec from a previous normal world: the secure world kept its state.
    Kexec,
    /// The crash kernel: secure threads may be suspended for ever; teed must decline.
    CrashKernel,
    /// A machine reset: the secure world restarted as well.
    Reset,
}

/// Facts about this boot that init hands every server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootInfo {
    /// Distinct for every normal-world boot.
    pub boot_id: u64,
    pub kind: BootKind,
    /// Set when the previous normal world crashed; teed declines while it is set.
    pub crash_flag: bool,
}

/// Physical frames a server may allocate from during this boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RamWindow {
    pub base: u64,
    pub len: u64,
}

impl RamWindow {
    /// Whether `[pa, pa + len)` lies inside the window (false on address overflow).
    pub fn contains(&self, pa: u64, len: u64) -> bool {
        let (Some(window_end), Some(range_end)) =
            (self.base.checked_add(self.len), pa.checked_add(len))
        else {
            return false;
        };
        pa >= self.base && range_end <= window_end
    }
}

/// Where each client's buffers live: a window of normal-world RAM that client alone maps (and
/// teed and the secure world, which see all of RAM). Empty windows: the client's buffers come
/// from teed's shared frames, as in the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientWindows {
    pub tpmd: RamWindow,
    pub bnxtd: RamWindow,
}

impl ClientWindows {
    /// No windows.
    pub const NONE: ClientWindows = ClientWindows {
        tpmd: RamWindow { base: 0, len: 0 },
        bnxtd: RamWindow { base: 0, len: 0 },
    };

    /// The window of client `kind`, when it has one.
    pub fn of(&self, kind: ServerKind) -> Option<RamWindow> {
        let window = match kind {
            ServerKind::Teed => return None,
            ServerKind::Tpmd => self.tpmd,
            ServerKind::Bnxtd => self.bnxtd,
        };
        (window.len > 0).then_some(window)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Ord, Hash, Eq, Serialize, Deserialize)]
pub enum ServerKind {
    Teed,
    Tpmd,
    Bnxtd,
}

/// One incarnation of a client server (tpmd or bnxtd), as teed tells its clients apart: a new
/// incarnation is a new client, whatever the old one left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClientId {
    pub kind: ServerKind,
    pub generation: Generation,
}

impl ClientId {
    /// The id of incarnation `generation` of `kind`; `None` for teed, which is no client.
    pub fn new(kind: ServerKind, generation: Generation) -> Option<ClientId> {
        match kind {
            ServerKind::Teed => None,
            ServerKind::Tpmd | ServerKind::Bnxtd => Some(ClientId { kind, generation }),
        }
    }
}

impl core::fmt::Display for ClientId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let name = match self.kind {
            ServerKind::Teed => "teed",
            ServerKind::Tpmd => "tpmd",
            ServerKind::Bnxtd => "bnxtd",
        };
        write!(f, "{name}#{}", self.generation)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShutdownReason {
    Kexec,
    Reboot,
    Crash,
}

/// What init tells a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InitRequest {
    /// First message to a new incarnation: its own generation, teed's current generation
    /// (equal to `generation` when sent to teed), the boot facts and its RAM window (teed: the
    /// frames it allocates from; a client: the window it maps, where teed puts its buffers).
    /// `journal` is the reserved region that survives kexec and crash entry (teed's lifecycle
    /// journal; `len` 0 for servers that keep none). `windows` tells teed each client's window.
    ///
    /// `grants` names, in order, the capabilities that travel with the frame ([`crate::grants`]);
    /// a core writes [`GrantKinds::NONE`] and the shell that attaches them fills it in.
    Hello {
        generation: Generation,
        teed_generation: Generation,
        boot: BootInfo,
        ram: RamWindow,
        journal: RamWindow,
        windows: ClientWindows,
        grants: GrantKinds,
    },
    /// To teed: the endpoint of a new client incarnation travels with this frame (hosted: as
    /// SCM_RIGHTS ancillary data). Cores ignore it; the shell connects the endpoint.
    ClientEndpoint {
        client: ServerKind,
        generation: Generation,
    },
    /// To a client: a new endpoint to teed travels with this frame (teed restarted). Cores ignore
    /// it; the shell swaps the endpoint, and the core learns of the restart from the transport.
    TeedEndpoint {
        teed_generation: Generation,
    },
    /// Release everything held in the secure world, then acknowledge.
    Shutdown {
        reason: ShutdownReason,
    },
    Status,
}

/// Why a server refused to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeclineReason {
    /// Running in the crash kernel, or the crash flag is set.
    CrashKernel,
    /// The secure world's API UID or revision is not one teed speaks.
    IncompatibleSecureWorld,
    /// The SMC conduit or teed is unreachable.
    SecureWorldUnavailable,
    /// Probing did not finish before its deadline (e.g. the cache drain stayed busy).
    DeadlineExpired,
}

/// What a server released during shutdown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShutdownReport {
    /// Shared-memory registrations removed from the secure world.
    pub unregistered: u32,
    pub sessions_closed: u32,
    /// RPC shm cache entries returned by the drain and freed.
    pub cache_buffers_freed: u32,
    /// Releases that failed; non-zero means something may be left in the secure world.
    pub errors: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerState {
    Starting,
    Serving,
    /// Up and answering, but the secure world is out of reach (teed lost its conduit): every
    /// request is answered "TEE unavailable" until the next boot.
    Unavailable,
    Declined,
    ShuttingDown,
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStatus {
    pub kind: ServerKind,
    pub generation: Generation,
    pub state: ServerState,
    pub sessions: u32,
    pub registrations: u32,
    pub registered_bytes: u64,
}

/// What a server tells init.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerEvent {
    /// Answers `Hello`: serving as `generation`.
    Ready {
        generation: Generation,
    },
    /// Answers `Hello`: will not serve this boot; init must hold, not restart, the server.
    Declined {
        reason: DeclineReason,
    },
    /// Answers `Shutdown` once every release it reports has completed.
    ShutdownAck(ShutdownReport),
    Status(ServerStatus),
    Error(WireError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_keep_kind_and_generation_apart_and_teed_is_no_client() {
        let tpmd = ClientId::new(ServerKind::Tpmd, 3);
        let bnxtd = ClientId::new(ServerKind::Bnxtd, 3);
        assert!(tpmd.is_some() && bnxtd.is_some());
        assert_ne!(tpmd, bnxtd);
        assert_ne!(tpmd, ClientId::new(ServerKind::Tpmd, 4));
        assert_eq!(ClientId::new(ServerKind::Teed, 1), None);
        // Every generation names a client: no packing runs out of room.
        assert!(ClientId::new(ServerKind::Tpmd, Generation::MAX).is_some());
    }
}
