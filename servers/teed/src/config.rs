//! teed's configuration: deadlines, the TA allow-list, the hardening beyond Linux, and the
//! test-only switches that restore the seed's bugs.

use alloc::vec::Vec;

use optee_abi::uuid::{self, Uuid};
use tee_proto::lifecycle::ServerKind;

/// Milliseconds on the shell's monotonic clock; the core never reads a clock itself.
pub type Millis = u64;

/// Every wait teed may enter, bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// The whole probe, from Hello to Ready. Linux's probe could wait for ever here (the kdump hang).
    pub probe_ms: Millis,
    /// One client call, from request to reply, including ETHREAD_LIMIT waits.
    pub call_ms: Millis,
    /// The shutdown, from the Shutdown request to the ack.
    pub shutdown_ms: Millis,
    /// Pause before retrying a call that met ETHREAD_LIMIT or a cache switch that met EBUSY when
    /// no other call's completion wakes it first.
    pub retry_ms: Millis,
    /// Longest a secure thread waits in NOTIFICATION WAIT before it is resumed to check again.
    pub notification_ms: Millis,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            probe_ms: 2_000,
            call_ms: 5_000,
            shutdown_ms: 2_000,
            retry_ms: 5,
            notification_ms: 1_000,
        }
    }
}

/// What teed does beyond the Linux 5.14 driver. All on by default; the seed scenarios turn them
/// off to show the Linux behaviour alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hardening {
    /// Keep the lifecycle journal and reclaim what it lists at probe.
    pub journal: bool,
    /// At probe, resume secure threads an earlier normal world left suspended in an RPC.
    pub resume_orphans: bool,
    /// At shutdown, unregister every registration and close every session still open.
    pub sweep_on_shutdown: bool,
    /// When a client's endpoint closes, reclaim its registrations and sessions at once.
    pub reclaim_on_disconnect: bool,
}

impl Default for Hardening {
    fn default() -> Self {
        Hardening {
            journal: true,
            resume_orphans: true,
            sweep_on_shutdown: true,
            reclaim_on_disconnect: true,
        }
    }
}

impl Hardening {
    /// Only what Linux 5.14 does.
    pub const LINUX: Hardening = Hardening {
        journal: false,
        resume_orphans: false,
        sweep_on_shutdown: false,
        reclaim_on_disconnect: false,
    };
}

/// Test-only switches, one per fix of the series, each restoring the behaviour before it.
/// They are not reachable from any production binary's flags; only the simulator sets them.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeedBugs {
    /// ec185dd3ab25: a failed registration does not free its pages.
    pub leak_pages_on_register_failure: bool,
    /// adf752af454e: probe runs in the crash kernel instead of declining.
    pub probe_in_crash_kernel: bool,
    /// f25889f93184: shutdown does not drain the RPC shm cache.
    pub no_shutdown_cache_drain: bool,
    /// b5c10dd04b74: probe does not discard stale cache entries before enabling the cache.
    pub no_probe_cache_drain: bool,
    /// dc7019b7d0e1: no kernel-buffer allocation: every registered client buffer is dma-buf
    /// backed, so its release is deferred until the client next "returns to user mode".
    pub no_kernel_buf: bool,
    /// 376e4199e327: driver-private RPC buffers are registered with the secure world like
    /// client buffers, and the stale-cache discard at probe leaves those registrations behind.
    pub register_private_buffers: bool,
    /// dfb703ad2a8d: tpmd's buffer is dma-buf backed (deferred release).
    pub tpmd_dma_buf: bool,
    /// 914ab19e471d: bnxtd's buffer is dma-buf backed (deferred release).
    pub bnxtd_dma_buf: bool,
}

impl SeedBugs {
    /// Whether a registered buffer of a client of this kind is released lazily.
    pub fn deferred_release_for(&self, kind: ServerKind) -> bool {
        self.no_kernel_buf
            || (kind == ServerKind::Tpmd && self.tpmd_dma_buf)
            || (kind == ServerKind::Bnxtd && self.bnxtd_dma_buf)
    }
}

/// Which TAs each client may open sessions to (the policy sysroot writes down).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub allowed: Vec<(ServerKind, Uuid)>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allowed: alloc::vec![
                (ServerKind::Tpmd, uuid::FTPM_TA),
                (ServerKind::Bnxtd, uuid::BNXT_TA),
            ],
        }
    }
}

impl Policy {
    /// Whether a client of `kind` may open a session to `ta`.
    pub fn allows(&self, kind: ServerKind, ta: &Uuid) -> bool {
        self.allowed.iter().any(|(k, u)| *k == kind && u == ta)
    }
}

/// Everything teed is configured with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TeedConfig {
    pub deadlines: Deadlines,
    pub hardening: Hardening,
    pub policy: Policy,
    /// Largest shm a client may allocate: bnxtd's 4 MiB buffer, with room to spare.
    pub max_shm_bytes: u32,
    #[doc(hidden)]
    pub seed_bugs: SeedBugs,
}

impl TeedConfig {
    /// The defaults, with [`TeedConfig::max_shm_bytes`] filled in.
    pub fn new() -> TeedConfig {
        TeedConfig {
            max_shm_bytes: 8 << 20,
            ..TeedConfig::default()
        }
    }
}
