//! The bounded core heap of OP-TEE OS (`CFG_CORE_HEAP_SIZE`), as a byte counter.
//!
//! Only the amount matters at the normal-world interface: a registration that does not fit
//! fails with `TEE_ERROR_BAD_PARAMETERS`. Fragmentation is not modelled.
//!
//! # Calibration of the boot-time baseline
//!
//! The seed machine (8 GiB, nothing ever unregistered across kexec) fails the 4 MiB bnxt
//! registration on the 4th kexec and never before. Per boot the clients register 8 KiB
//! (tpmd, 2 pages) and 4 MiB (bnxtd, 1024 pages). With the charges of this module
//! (16-byte header per allocation, sizes rounded up to 16):
//!
//! * registration of n pages: header 80 + 8·n → 2 pages: 112 B, 1024 pages: 8 288 B;
//! * temporary page array during REGISTER_SHM: 8·n → 1024 pages: 8 208 B (freed after);
//! * mapping of the message argument during any yielding call: 80 B.
//!
//! One boot leaks 8 288 + 112 = 8 400 B. The bnxt registration of boot k (k leaked sets,
//! this boot's 112 B tpmd registration already made) needs, at its peak,
//! `baseline + 8 400·k + 112 + 80 + 8 208 + 8 288 ≤ 65 536`, that is
//! `baseline ≤ 48 848 − 8 400·k`:
//!
//! * k = 3 must succeed → baseline ≤ 23 648;
//! * k = 4 must fail → baseline > 15 248.
//!
//! [`HEAP_BASELINE_BYTES`] = 19 456 (19 KiB) sits in the middle: boot 3 succeeds with
//! 4 192 B to spare, boot 4 misses by 4 208 B, so a leaked session or a cached RPC buffer per
//! boot (a few hundred bytes) does not move the failure.

use thiserror::Error;

/// `CFG_CORE_HEAP_SIZE ?= 65536` (mk/config.mk).
pub const CORE_HEAP_BYTES: usize = 64 * 1024;

/// Heap OP-TEE itself holds after boot. **Calibrated, not an upstream figure**: OP-TEE's
/// boot-time heap use (sessions, TA contexts, tee_mm, crypto) cannot be derived from its source
/// (REFERENCE §8). Any value from 15 249 to 23 648 B keeps the seed's failure on the 4th kexec
/// with the default 64 KiB heap; see the module documentation for the arithmetic. The
/// secure-world binary (`--heap-baseline-bytes`) and the simulator (`SimConfig::secure`) can set
/// it, and the heap size, otherwise.
pub const HEAP_BASELINE_BYTES: usize = 19 * 1024;

/// Bookkeeping bytes in front of every allocation (a bget-style header on a 64-bit core).
pub const ALLOC_OVERHEAD: usize = 16;

/// Allocation granule: requests are rounded up to a multiple of this.
pub const ALLOC_QUANTUM: usize = 16;

/// What the heap charges for a request of `bytes`, or `None` when that overflows.
pub const fn charge_for(bytes: usize) -> Option<usize> {
    let Some(padded) = bytes.checked_add(ALLOC_QUANTUM - 1) else {
        return None;
    };
    (padded / ALLOC_QUANTUM * ALLOC_QUANTUM).checked_add(ALLOC_OVERHEAD)
}

/// A failed allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HeapError {
    /// the heap has fewer free bytes than the allocation needs
    #[error("out of core heap: need {needed} bytes, {available} free")]
    Exhausted { needed: usize, available: usize },
    /// the requested size overflows
    #[error("allocation size overflows")]
    Overflow,
}

/// Proof of an allocation: give it back with [`Heap::free`]. Dropping it leaks the bytes,
/// as forgetting a `free` does in OP-TEE.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "dropping a heap block leaks its bytes"]
pub struct HeapBlock {
    charged: usize,
}

impl HeapBlock {
    /// Bytes this block takes from the heap, overhead included.
    pub fn charged(&self) -> usize {
        self.charged
    }
}

/// The core heap: `capacity` bytes of which `baseline` are OP-TEE's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heap {
    pub capacity: usize,
    pub used: usize,
    pub baseline: usize,
    /// The most ever in use since boot or the last [`Heap::reset_peak`]: how close the heap came
    /// to refusing (a registration's temporary page array counts while it lives).
    pub peak: usize,
}

impl Heap {
    /// A freshly booted heap: only the baseline is in use.
    pub fn new(capacity: usize, baseline: usize) -> Heap {
        let baseline = baseline.min(capacity);
        Heap {
            capacity,
            used: baseline,
            baseline,
            peak: baseline,
        }
    }

    /// Free bytes.
    pub fn available(&self) -> usize {
        self.capacity - self.used
    }

    /// Allocates `bytes` (plus overhead).
    pub fn alloc(&mut self, bytes: usize) -> Result<HeapBlock, HeapError> {
        let needed = charge_for(bytes).ok_or(HeapError::Overflow)?;
        if needed > self.available() {
            return Err(HeapError::Exhausted {
                needed,
                available: self.available(),
            });
        }
        self.used += needed;
        self.peak = self.peak.max(self.used);
        Ok(HeapBlock { charged: needed })
    }

    /// Returns a block to the heap.
    pub fn free(&mut self, block: HeapBlock) {
        self.used = self.used.saturating_sub(block.charged).max(self.baseline);
    }

    /// Back to the boot state (machine reset): every block is forgotten.
    pub fn reset(&mut self) {
        self.used = self.baseline;
        self.peak = self.baseline;
    }

    /// Starts measuring the peak again from what is in use now.
    pub fn reset_peak(&mut self) {
        self.peak = self.used;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn charges_round_up_and_add_header() {
        assert_eq!(charge_for(0), Some(16));
        assert_eq!(charge_for(1), Some(32));
        assert_eq!(charge_for(96), Some(112));
        assert_eq!(charge_for(80 + 8 * 1024), Some(8288));
        assert_eq!(charge_for(usize::MAX), None);
    }

    #[test]
    fn alloc_fails_when_full_and_recovers_after_free() {
        let mut heap = Heap::new(1024, 512);
        let a = heap.alloc(400).unwrap();
        assert_eq!(heap.used, 512 + 416);
        assert_eq!(
            heap.alloc(100),
            Err(HeapError::Exhausted {
                needed: 128,
                available: 96
            })
        );
        heap.free(a);
        assert_eq!(heap.used, 512);
        assert!(heap.alloc(100).is_ok());
        assert_eq!(heap.alloc(usize::MAX), Err(HeapError::Overflow));
    }
}
