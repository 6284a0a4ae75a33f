//! The simulated machine's memory map: the seed's 8 GiB machine on QEMU virt's base address.

use tee_proto::lifecycle::RamWindow;

/// First physical address of normal-world RAM (QEMU virt).
pub const RAM_BASE: u64 = 0x4000_0000;
/// Normal-world RAM: the seed's machine has 8 GiB.
pub const RAM_SIZE: u64 = 8 << 30;
/// The carve-out at the top of RAM that survives kexec and crash entry (the guest's `mem=`).
pub const CARVE_OUT: u64 = 1 << 20;

/// Frames teed may allocate from.
pub const fn shm_window() -> RamWindow {
    RamWindow {
        base: RAM_BASE,
        len: RAM_SIZE - CARVE_OUT,
    }
}

/// teed's lifecycle journal, inside the carve-out.
pub const fn journal_window() -> RamWindow {
    RamWindow {
        base: RAM_BASE + RAM_SIZE - CARVE_OUT,
        len: 128 << 10,
    }
}
