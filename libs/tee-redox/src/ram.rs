//! Normal-world RAM as a Redox daemon reaches it: a few windows of physical memory mapped into
//! the process (teed: its frames, the journal and the clients' windows, mapped from the kernel's
//! `memory` scheme; a client: its own window, mapped through teed), addressed by physical
//! address as the cores expect ([`PhysMem`]).
//!
//! The secure world reads and writes this memory while an SMC runs, so it is reached through
//! raw pointers, never held as Rust references across calls.

use std::ptr::NonNull;

use optee_abi::mem::{MemError, PhysMem};

/// One mapped window.
#[derive(Debug)]
struct Region {
    pa: u64,
    ptr: NonNull<u8>,
    len: usize,
    /// Heap memory standing in for a mapping (tests, tools); freed with the region.
    _owned: Option<Box<[u8]>>,
}

impl Region {
    fn end(&self) -> u64 {
        self.pa + self.len as u64
    }

    /// The offset of `[pa, pa + len)` in this region, if it lies inside.
    fn offset(&self, pa: u64, len: u64) -> Option<usize> {
        let end = pa.checked_add(len)?;
        (pa >= self.pa && end <= self.end()).then(|| (pa - self.pa) as usize)
    }
}

/// A window that cannot be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RegionError {
    #[error("window {pa:#x}+{len:#x} is empty or wraps")]
    Invalid { pa: u64, len: usize },
    #[error("window {pa:#x}+{len:#x} overlaps one already mapped")]
    Overlap { pa: u64, len: usize },
}

/// Physical memory as a set of disjoint mapped windows.
#[derive(Debug, Default)]
pub struct RegionRam {
    regions: Vec<Region>,
}

impl RegionRam {
    pub fn new() -> RegionRam {
        RegionRam::default()
    }

    fn check(&self, pa: u64, len: usize) -> Result<(), RegionError> {
        let end = u64::try_from(len)
            .ok()
            .and_then(|len| pa.checked_add(len))
            .filter(|_| len > 0)
            .ok_or(RegionError::Invalid { pa, len })?;
        if self.regions.iter().any(|r| pa < r.end() && r.pa < end) {
            return Err(RegionError::Overlap { pa, len });
        }
        Ok(())
    }

    /// Adds the mapping of `len` bytes at `ptr` as physical `[pa, pa + len)`.
    ///
    /// # Safety
    /// `ptr..ptr + len` must stay mapped, readable and writable for as long as this value lives,
    /// and nothing else in the process may hold a Rust reference into it.
    pub unsafe fn map(&mut self, pa: u64, ptr: NonNull<u8>, len: usize) -> Result<(), RegionError> {
        self.check(pa, len)?;
        self.regions.push(Region {
            pa,
            ptr,
            len,
            _owned: None,
        });
        Ok(())
    }

    /// Adds zeroed heap memory as physical `[pa, pa + len)` (for tests and tools that have no
    /// physical memory to map).
    pub fn add_heap(&mut self, pa: u64, len: usize) -> Result<(), RegionError> {
        self.check(pa, len)?;
        let mut owned = vec![0u8; len].into_boxed_slice();
        let ptr = NonNull::new(owned.as_mut_ptr()).ok_or(RegionError::Invalid { pa, len })?;
        self.regions.push(Region {
            pa,
            ptr,
            len,
            _owned: Some(owned),
        });
        Ok(())
    }

    /// Where `[pa, pa + len)` is in this process, if one window holds all of it.
    pub fn address_of(&self, pa: u64, len: u64) -> Option<usize> {
        self.regions
            .iter()
            .find_map(|r| r.offset(pa, len).map(|off| r.ptr.as_ptr() as usize + off))
    }

    fn locate(&self, pa: u64, len: usize) -> Result<*mut u8, MemError> {
        let error = MemError {
            pa,
            len: len as u64,
        };
        self.regions
            .iter()
            .find_map(|r| r.offset(pa, len as u64).map(|off| (r, off)))
            // SAFETY: `off + len <= r.len`, so the pointer stays inside the mapping.
            .map(|(r, off)| unsafe { r.ptr.as_ptr().add(off) })
            .ok_or(error)
    }
}

impl PhysMem for RegionRam {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let src = self.locate(pa, buf.len())?;
        // SAFETY: `src..src + buf.len()` lies in one mapping (`locate`), which `map`'s caller
        // keeps valid; `buf` is ours and cannot overlap it (no references into mappings exist).
        unsafe { std::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    fn write(&mut self, pa: u64, data: &[u8]) -> Result<(), MemError> {
        let dst = self.locate(pa, data.len())?;
        // SAFETY: as in `read`, with the roles swapped.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
        Ok(())
    }

    fn contains(&self, pa: u64, len: u64) -> bool {
        self.regions.iter().any(|r| r.offset(pa, len).is_some())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// optee_abi `PhysMem`, as OP-TEE checks page lists against non-secure RAM
    /// (core/tee/entry_std.c): an access outside every window is refused.
    #[test]
    fn reads_and_writes_inside_one_window_only() {
        let mut ram = RegionRam::new();
        ram.add_heap(0x4000_0000, 0x2000).unwrap();
        ram.add_heap(0x5000_0000, 0x1000).unwrap();
        ram.write(0x4000_1ffc, &[1, 2, 3, 4]).unwrap();
        let mut four = [0u8; 4];
        ram.read(0x4000_1ffc, &mut four).unwrap();
        assert_eq!(four, [1, 2, 3, 4]);
        // Past the window's end, between windows, and wrapping are refused.
        assert!(ram.write(0x4000_1ffd, &[0; 4]).is_err());
        assert!(ram.read(0x4800_0000, &mut four).is_err());
        assert!(!ram.contains(u64::MAX - 1, 4));
        assert!(ram.contains(0x5000_0000, 0x1000));
        assert!(!ram.contains(0x5000_0000, 0x1001));
    }

    /// Redox kernel `src/scheme/memory.rs` maps each window on its own; two may not alias.
    #[test]
    fn windows_may_not_overlap_or_be_empty() {
        let mut ram = RegionRam::new();
        ram.add_heap(0x1000, 0x2000).unwrap();
        assert_eq!(
            ram.add_heap(0x2000, 0x2000),
            Err(RegionError::Overlap {
                pa: 0x2000,
                len: 0x2000
            })
        );
        assert!(ram.add_heap(0x3000, 0).is_err());
        assert!(ram.add_heap(u64::MAX - 0xfff, 0x2000).is_err());
        ram.add_heap(0x3000, 0x1000).unwrap();
    }

    /// redox-scheme `SchemeSync::mmap_prep` answers an address in the scheme's own space.
    #[test]
    fn names_where_a_physical_range_is_mapped() {
        let mut ram = RegionRam::new();
        ram.add_heap(0x8000, 0x2000).unwrap();
        let base = ram.address_of(0x8000, 1).unwrap();
        assert_eq!(ram.address_of(0x9000, 0x1000), Some(base + 0x1000));
        assert_eq!(ram.address_of(0x9000, 0x1001), None);
    }
}
