//! A first-fit allocator of physically contiguous page runs in the RAM window init hands out.
//!
//! It is deterministic and starts afresh on every boot, so a rebooted normal world hands out the
//! same frames again, as Linux does after kexec: a stale registration then names pages that are
//! in use again.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use optee_abi::mem::PAGE_SIZE_U64;

/// A run of pages: its first physical address and its page count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub pa: u64,
    pub pages: u64,
}

impl Run {
    /// Bytes the run spans.
    pub fn bytes(&self) -> u64 {
        self.pages * PAGE_SIZE_U64
    }

    /// The address of each page of the run, for a page list.
    pub(crate) fn page_addrs(&self) -> Vec<u64> {
        (0..self.pages)
            .map(|i| self.pa + i * PAGE_SIZE_U64)
            .collect()
    }
}

/// Free runs keyed by their first page number.
#[derive(Debug, Clone)]
pub struct FrameAllocator {
    free: BTreeMap<u64, u64>,
    base: u64,
    total_pages: u64,
    used_pages: u64,
}

impl FrameAllocator {
    /// An allocator over `[base, base + len)`, both rounded inward to whole pages.
    pub fn new(base: u64, len: u64) -> FrameAllocator {
        let first = base.div_ceil(PAGE_SIZE_U64);
        let end = (base + len) / PAGE_SIZE_U64;
        let total_pages = end.saturating_sub(first);
        let mut free = BTreeMap::new();
        if total_pages > 0 {
            free.insert(first, total_pages);
        }
        FrameAllocator {
            free,
            base: first * PAGE_SIZE_U64,
            total_pages,
            used_pages: 0,
        }
    }

    /// Whether `run` lies within this allocator's range.
    pub fn covers(&self, run: Run) -> bool {
        let end = self.base + self.total_pages * PAGE_SIZE_U64;
        run.pa >= self.base && run.pa.saturating_add(run.bytes()) <= end
    }

    /// Allocates `pages` contiguous pages, lowest address first.
    pub fn alloc(&mut self, pages: u64) -> Option<Run> {
        if pages == 0 {
            return None;
        }
        let (&start, &len) = self.free.iter().find(|(_, &len)| len >= pages)?;
        self.free.remove(&start);
        if len > pages {
            self.free.insert(start + pages, len - pages);
        }
        self.used_pages += pages;
        Some(Run {
            pa: start * PAGE_SIZE_U64,
            pages,
        })
    }

    /// Returns a run, merging it with free neighbours. A run that is not wholly allocated is
    /// refused (returns false) rather than corrupting the free list.
    pub fn free(&mut self, run: Run) -> bool {
        let start = run.pa / PAGE_SIZE_U64;
        let end = start + run.pages;
        if run.pa % PAGE_SIZE_U64 != 0 || run.pages == 0 || run.pa < self.base {
            return false;
        }
        // Overlap with a free run before or after means a double free.
        if let Some((&s, &l)) = self.free.range(..end).next_back() {
            if s + l > start {
                return false;
            }
        }
        self.used_pages = self.used_pages.saturating_sub(run.pages);
        let mut new_start = start;
        let mut new_len = run.pages;
        if let Some((&s, &l)) = self.free.range(..start).next_back() {
            if s + l == start {
                self.free.remove(&s);
                new_start = s;
                new_len += l;
            }
        }
        if let Some(&l) = self.free.get(&end) {
            self.free.remove(&end);
            new_len += l;
        }
        self.free.insert(new_start, new_len);
        true
    }

    /// Pages currently allocated.
    pub fn used_pages(&self) -> u64 {
        self.used_pages
    }

    /// Pages in the window.
    pub fn total_pages(&self) -> u64 {
        self.total_pages
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn allocates_lowest_first_and_merges() {
        let mut f = FrameAllocator::new(0x4000_0000, 16 * 4096);
        let a = f.alloc(2).unwrap();
        let b = f.alloc(3).unwrap();
        assert_eq!(a.pa, 0x4000_0000);
        assert_eq!(b.pa, 0x4000_2000);
        assert_eq!(f.used_pages(), 5);
        assert!(f.free(a));
        assert!(!f.free(a), "double free refused");
        assert!(f.free(b));
        assert_eq!(f.used_pages(), 0);
        assert_eq!(
            f.alloc(16).unwrap().pa,
            0x4000_0000,
            "merged back into one run"
        );
        assert!(f.alloc(1).is_none());
    }

    #[test]
    fn a_fresh_allocator_repeats_the_same_frames() {
        let mut first = FrameAllocator::new(0x4000_0000, 1 << 30);
        let mut second = FrameAllocator::new(0x4000_0000, 1 << 30);
        assert_eq!(first.alloc(1024), second.alloc(1024));
    }
}
