//! Build-time configuration of the modelled OP-TEE OS, with the upstream source of every default.

use crate::heap::CORE_HEAP_BYTES;

/// OP-TEE OS revision reported by GET_OS_REVISION.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OsRevision {
    pub major: u32,
    pub minor: u32,
    /// Build id (a2); upstream reports a git hash fragment, 0 when unknown.
    pub build_id: u32,
}

/// The reserved (static) shm area of a build with CFG_CORE_RESERVED_SHM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReservedShm {
    /// First physical address.
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
}

/// How the model is built. Every field has a default taken from OP-TEE OS or the seed machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Secure threads: CFG_NUM_THREADS ?= 2 in mk/config.mk; neither the QEMU vexpress flavours
    /// nor plat-bcm (the seed's NS3) override it.
    pub threads: usize,
    /// Core heap: CFG_CORE_HEAP_SIZE ?= 65536 in mk/config.mk, not overridden by QEMU or NS3.
    pub core_heap_bytes: usize,
    /// Core heap already in use by OP-TEE itself once booted; calibrated against the seed's
    /// failure, see [`crate::heap::HEAP_BASELINE_BYTES`].
    pub heap_baseline_bytes: usize,
    /// First physical address of normal-world RAM (QEMU virt: 0x4000_0000).
    pub ram_base: u64,
    /// Size of normal-world RAM: the seed machine has 8 GiB.
    pub ram_size: u64,
    /// Reserved shm: CFG_CORE_RESERVED_SHM ?= y in 3.14's mk/config.mk. With it the model
    /// reports HAVE_RESERVED_SHM and answers GET_SHM_CONFIG; `None` is a build without it, where
    /// GET_SHM_CONFIG is an unknown function (core/arch/arm/tee/entry_fast.c). 2 MiB as on QEMU
    /// (plat-vexpress conf.mk, SHMEM size 0x00200000), placed just below `ram_base` so that it
    /// never overlaps the RAM dynamic registrations use. Reported but not backed: clients use
    /// dynamic shm.
    pub reserved_shm: Option<ReservedShm>,
    /// Reported OS revision: 3.14, the release current when the Linux 5.14 series landed.
    pub os_revision: OsRevision,
    /// Every n-th yielding call is interrupted once by a foreign interrupt (RPC FOREIGN_INTR)
    /// before it runs; `None` (the default) never interrupts.
    pub foreign_intr_every: Option<u32>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            threads: 2,
            core_heap_bytes: CORE_HEAP_BYTES,
            heap_baseline_bytes: crate::heap::HEAP_BASELINE_BYTES,
            ram_base: 0x4000_0000,
            ram_size: 8 << 30,
            reserved_shm: Some(ReservedShm {
                base: 0x4000_0000 - (2 << 20),
                size: 2 << 20,
            }),
            os_revision: OsRevision {
                major: 3,
                minor: 14,
                build_id: 0,
            },
            foreign_intr_every: None,
        }
    }
}
