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

/// What teed believes of the secure world before it calls it hostile. Each value names where it
/// comes from; a real OP-TEE stays far inside every one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// RPC round trips one yielding call may make. OP-TEE's own RPCs per call are a handful
    /// (ALLOC, CMD, FREE around each RPC command); FOREIGN_INTR comes back once per normal-world
    /// interrupt, and the call deadline (5 s) at a 1 kHz tick allows about 5,000 of those.
    /// Twice that.
    pub max_rpcs_per_call: u32,
    /// Largest GET_THREAD_COUNT believed. It returns CFG_NUM_THREADS (entry_fast.c), 2 by
    /// default (mk/config.mk) and at most 16 on the upstream platforms that raise it (REFERENCE
    /// §8, notes/optee-os.md §1). Twice that.
    pub max_threads: u32,
    /// Largest RPC ALLOC teed answers. OP-TEE asks it only for its RPC argument
    /// (OPTEE_MSG_GET_ARG_SIZE(THREAD_RPC_MAX_NUM_PARAMS) = 160 bytes, thread_optee_smc.c
    /// thread_rpc_alloc_arg) and takes the answer only up to one page (rpc_shm_mobj_alloc).
    pub max_rpc_buffer_bytes: u64,
    /// Largest RPC SHM_ALLOC teed answers. OP-TEE maps every such buffer into its dynamic shm
    /// virtual range, SHM_VASPACE_SIZE = 32 MiB (core/mm/core_mmu.c, 3.14 to current), so it
    /// can use none larger; its own payloads are far smaller (a kernel payload is at most a
    /// page in 3.14, thread_rpc_alloc_kernel_payload). One page is answered contiguously, more
    /// with a NONCONTIG page list, as Linux does (smc_abi.c handle_rpc_func_cmd_shm_alloc).
    pub max_rpc_payload_bytes: u64,
    /// Driver-private buffers the secure world may hold at once: one cached RPC argument per
    /// thread and one payload in flight per thread, for [`Bounds::max_threads`] threads.
    pub max_private_buffers: usize,
    /// Cookies one DISABLE_SHM_CACHE drain may return: the cache keeps one RPC argument per
    /// thread (thread_rpc_alloc_arg with CFG_PREALLOC_RPC_CACHE), so at most one per thread.
    pub max_cache_drain: u32,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            max_rpcs_per_call: 10_000,
            max_threads: 32,
            max_rpc_buffer_bytes: 4096,
            max_rpc_payload_bytes: 32 << 20,
            max_private_buffers: 64,
            max_cache_drain: 32,
        }
    }
}

/// What one client may hold at once. The two clients' quotas together fit the secure heap;
/// see [`Policy::default`] for the arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Registered (or registering) buffers.
    pub buffers: u32,
    /// Bytes of those buffers.
    pub bytes: u64,
    /// Open (or opening, or closing) sessions.
    pub sessions: u32,
    /// Journal entries (one per buffer and per session), when there is a journal.
    pub journal_slots: u32,
    /// Calls in flight, each holding a message-argument slot. Releases (ShmFree,
    /// CloseSession) are not counted: they are bounded by what the client holds.
    pub calls: u32,
}

impl Quota {
    /// No limit: Linux's behaviour, for the seed scenarios that fill the secure heap.
    pub const UNLIMITED: Quota = Quota {
        buffers: u32::MAX,
        bytes: u64::MAX,
        sessions: u32::MAX,
        journal_slots: u32::MAX,
        calls: u32::MAX,
    };
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

/// Which TAs each client may open sessions to, and how much each client may hold (the policy
/// sysroot writes down).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub allowed: Vec<(ServerKind, Uuid)>,
    /// Per-client quotas by kind; a kind not listed gets [`TPMD_QUOTA`], the smaller.
    pub quotas: Vec<(ServerKind, Quota)>,
}

/// tpmd needs one 8 KiB buffer (two TPM_BUFFER_MAX halves) and one fTPM session, one request
/// at a time; twice each, and 64 KiB, leave room for a re-acquisition and a late release.
pub const TPMD_QUOTA: Quota = Quota {
    buffers: 2,
    bytes: 64 << 10,
    sessions: 2,
    journal_slots: 4,
    calls: 4,
};

/// bnxtd needs one 4 MiB buffer (COREDUMP_WINDOW_MAX) and one session to the BNXT TA; twice
/// each, as for tpmd.
pub const BNXTD_QUOTA: Quota = Quota {
    buffers: 2,
    bytes: 8 << 20,
    sessions: 2,
    journal_slots: 4,
    calls: 4,
};

impl Default for Policy {
    /// Both clients at their quotas fit OP-TEE's 64 KiB core heap (secure-world/src/heap.rs:
    /// 16-byte header, 16-byte rounding; registration 80 + 8 B per page; session 256 B;
    /// argument mapping 64 B; REGISTER_SHM's temporary page array 8 B per page):
    /// registrations 2·111 + 8·17 (tpmd) + 2·111 + 8·2049 (bnxtd) = 16,972 B; four sessions
    /// 4·272 = 1,088 B; two threads in flight at once: the page array of one 8 MiB
    /// registration 16,400 B, four memref mappings 320 B, two argument mappings 160 B, two
    /// cached RPC arguments 160 B. Total 35,100 B, under the 41,888 B left by the highest
    /// calibrated boot baseline (23,648 B, REFERENCE §8). Calls: 2·4 of the 16 message slots,
    /// the rest for teed's own sweeps and reclaims. Journal: 2·4 of 128 + 64 entries.
    fn default() -> Self {
        Policy {
            allowed: alloc::vec![
                (ServerKind::Tpmd, uuid::FTPM_TA),
                (ServerKind::Bnxtd, uuid::BNXT_TA),
            ],
            quotas: alloc::vec![
                (ServerKind::Tpmd, TPMD_QUOTA),
                (ServerKind::Bnxtd, BNXTD_QUOTA),
            ],
        }
    }
}

impl Policy {
    /// The quota of a client of `kind`.
    pub fn quota(&self, kind: ServerKind) -> Quota {
        self.quotas
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(TPMD_QUOTA, |(_, q)| *q)
    }

    /// Lifts every quota (Linux has none), for scenarios that fill the secure heap.
    pub fn unlimited(&mut self) {
        for (_, quota) in self.quotas.iter_mut() {
            *quota = Quota::UNLIMITED;
        }
    }

    /// Whether a client of `kind` may open a session to `ta`.
    pub fn allows(&self, kind: ServerKind, ta: &Uuid) -> bool {
        self.allowed.iter().any(|(k, u)| *k == kind && u == ta)
    }
}

/// Everything teed is configured with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TeedConfig {
    pub deadlines: Deadlines,
    pub bounds: Bounds,
    pub hardening: Hardening,
    pub policy: Policy,
    /// Largest shm a client may allocate: bnxtd's 4 MiB buffer, with room to spare.
    pub max_shm_bytes: u32,
    /// Use what a modern secure world offers (SEC_CAP_RPC_ARG: registered argument pages and
    /// CALL_WITH_REGD_ARG; SEC_CAP_ASYNC_NOTIF: notifications), as Linux >= 5.19 does. Off,
    /// teed is the Linux 5.14 driver, which predates both (5.19, 5.17) and makes plain
    /// CALL_WITH_ARG calls with RPC ALLOC'd, cached RPC buffers whatever the secure world is:
    /// the seed scenarios of the RPC cache need that against OP-TEE 4.x.
    pub modern_abi: bool,
    /// Linux mainline (>= 5.19) as it is, a named switch for scenarios: with a secure world
    /// offering SEC_CAP_RPC_ARG it packs its argument structs as call.c optee_get_msg_arg does
    /// (4096 / (OPTEE_MSG_GET_ARG_SIZE(6) + OPTEE_MSG_GET_ARG_SIZE(rpc_param_count)) to a
    /// registered page) and its shutdown does only `if (!optee->rpc_param_count)
    /// optee_disable_shm_cache(optee)` (smc_abi.c optee_shutdown): the pre-registered
    /// argument page (optee_shm_arg_cache, freed only on remove) and started notifications stay
    /// behind across kexec. Meant with [`Hardening::LINUX`]; no binary has a flag for it.
    #[doc(hidden)]
    pub mainline_shutdown: bool,
    #[doc(hidden)]
    pub seed_bugs: SeedBugs,
}

impl TeedConfig {
    /// The defaults, with [`TeedConfig::max_shm_bytes`] filled in.
    pub fn new() -> TeedConfig {
        TeedConfig {
            max_shm_bytes: 8 << 20,
            modern_abi: true,
            ..TeedConfig::default()
        }
    }
}
