//! A sparse normal-world RAM: only pages ever written take host memory.
//!
//! Used by the tests here and by the simulator: an 8 GiB machine costs a few megabytes.

use std::collections::BTreeMap;

use optee_abi::mem::{MemError, PhysMem, PAGE_SIZE, PAGE_SIZE_U64};

type Page = Box<[u8; PAGE_SIZE]>;

/// Normal-world RAM covering `[base, base + size)`; unwritten pages read as zero.
#[derive(Debug, Clone)]
pub struct SparseRam {
    base: u64,
    size: u64,
    pages: BTreeMap<u64, Page>,
}

impl SparseRam {
    /// An all-zero RAM window.
    pub fn new(base: u64, size: u64) -> SparseRam {
        SparseRam {
            base,
            size,
            pages: BTreeMap::new(),
        }
    }

    /// First physical address of the window.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Size of the window in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Pages that currently hold host memory.
    pub fn resident_pages(&self) -> usize {
        self.pages.len()
    }

    /// Forgets every page (all memory reads as zero again), as a power cycle would.
    pub fn clear(&mut self) {
        self.pages.clear();
    }

    fn check(&self, pa: u64, len: u64) -> Result<(), MemError> {
        if self.contains(pa, len) {
            Ok(())
        } else {
            Err(MemError { pa, len })
        }
    }
}

/// Splits `pa..pa+len` at page boundaries: (page number, offset in page, chunk length).
fn chunks(pa: u64, len: usize) -> impl Iterator<Item = (u64, usize, usize)> {
    let mut at = pa;
    let mut left = len;
    std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let offset = (at % PAGE_SIZE_U64) as usize;
        let here = left.min(PAGE_SIZE - offset);
        let item = (at / PAGE_SIZE_U64, offset, here);
        at += here as u64;
        left -= here;
        Some(item)
    })
}

impl PhysMem for SparseRam {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.check(pa, buf.len() as u64)?;
        let mut done = 0;
        for (page, offset, len) in chunks(pa, buf.len()) {
            let out = &mut buf[done..done + len];
            match self.pages.get(&page) {
                Some(bytes) => out.copy_from_slice(&bytes[offset..offset + len]),
                None => out.fill(0),
            }
            done += len;
        }
        Ok(())
    }

    fn write(&mut self, pa: u64, data: &[u8]) -> Result<(), MemError> {
        self.check(pa, data.len() as u64)?;
        let mut done = 0;
        for (page, offset, len) in chunks(pa, data.len()) {
            let bytes = self
                .pages
                .entry(page)
                .or_insert_with(|| Box::new([0u8; PAGE_SIZE]));
            bytes[offset..offset + len].copy_from_slice(&data[done..done + len]);
            done += len;
        }
        Ok(())
    }

    fn contains(&self, pa: u64, len: u64) -> bool {
        let Some(end) = pa.checked_add(len) else {
            return false;
        };
        pa >= self.base && end <= self.base.saturating_add(self.size)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn unwritten_reads_zero_and_writes_span_pages() {
        let mut ram = SparseRam::new(0x4000_0000, 4 * PAGE_SIZE_U64);
        let mut buf = [0xAAu8; 16];
        ram.read(0x4000_0000, &mut buf).unwrap();
        assert_eq!(buf, [0u8; 16]);
        let data: Vec<u8> = (0..100u8).collect();
        ram.write(0x4000_0000 + PAGE_SIZE_U64 - 50, &data).unwrap();
        assert_eq!(ram.resident_pages(), 2);
        let mut back = vec![0u8; 100];
        ram.read(0x4000_0000 + PAGE_SIZE_U64 - 50, &mut back)
            .unwrap();
        assert_eq!(back, data);
        ram.clear();
        ram.read(0x4000_0000 + PAGE_SIZE_U64 - 50, &mut back)
            .unwrap();
        assert!(back.iter().all(|&b| b == 0));
    }

    #[test]
    fn accesses_outside_the_window_fail() {
        let mut ram = SparseRam::new(0x4000_0000, 2 * PAGE_SIZE_U64);
        assert!(ram.contains(0x4000_0000, 2 * PAGE_SIZE_U64));
        assert!(!ram.contains(0x4000_0000, 2 * PAGE_SIZE_U64 + 1));
        assert!(!ram.contains(0x3FFF_FFFF, 1));
        assert!(!ram.contains(u64::MAX, 2));
        assert_eq!(
            ram.write(0x4000_1FFF, &[1, 2]),
            Err(MemError {
                pa: 0x4000_1FFF,
                len: 2
            })
        );
        let mut b = [0u8; 1];
        assert!(ram.read(0x3FFF_F000, &mut b).is_err());
        assert_eq!(ram.resident_pages(), 0);
    }
}
