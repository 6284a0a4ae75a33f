//! Normal-world buffers as the secure world sees them: a byte range over physical pages.

use std::sync::Arc;

use optee_abi::mem::{MemError, PhysMem, PAGE_SIZE_U64};

/// Where a buffer's bytes lie in normal-world memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Backing {
    /// A null memref (MEMREF_NULL): no memory at all.
    Null,
    /// Physically contiguous from `pa`.
    Contig { pa: u64 },
    /// Scattered pages; the buffer starts `start` bytes into `pages[0]`.
    Pages { pages: Arc<[u64]>, start: u64 },
}

/// A byte range of normal-world memory: `size` bytes over its backing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NwBuffer {
    pub(crate) backing: Backing,
    size: u64,
}

impl NwBuffer {
    pub(crate) fn new(backing: Backing, size: u64) -> NwBuffer {
        NwBuffer { backing, size }
    }

    /// Length in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// True for a null memref, which has a size but no memory.
    pub fn is_null(&self) -> bool {
        self.backing == Backing::Null
    }

    /// Copies `buf.len()` bytes from `offset` of this buffer.
    pub fn read(&self, mem: &dyn PhysMem, offset: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let mut done = 0usize;
        self.for_each_piece(offset, buf.len(), |pa, len| {
            mem.read(pa, &mut buf[done..done + len])?;
            done += len;
            Ok(())
        })
    }

    /// Copies `data` to `offset` of this buffer.
    pub fn write(&self, mem: &mut dyn PhysMem, offset: u64, data: &[u8]) -> Result<(), MemError> {
        let mut done = 0usize;
        self.for_each_piece(offset, data.len(), |pa, len| {
            mem.write(pa, &data[done..done + len])?;
            done += len;
            Ok(())
        })
    }

    /// Calls `piece(pa, len)` for each physically contiguous part of `offset..offset+len`.
    fn for_each_piece(
        &self,
        offset: u64,
        len: usize,
        mut piece: impl FnMut(u64, usize) -> Result<(), MemError>,
    ) -> Result<(), MemError> {
        let outside = MemError {
            pa: offset,
            len: len as u64,
        };
        let end = offset.checked_add(len as u64).ok_or(outside)?;
        if end > self.size {
            return Err(outside);
        }
        match &self.backing {
            Backing::Null => {
                if len == 0 {
                    Ok(())
                } else {
                    Err(outside)
                }
            }
            Backing::Contig { pa } => {
                let start = pa.checked_add(offset).ok_or(outside)?;
                piece(start, len)
            }
            Backing::Pages { pages, start } => {
                let mut pos = start + offset;
                let mut left = len;
                while left > 0 {
                    let index = usize::try_from(pos / PAGE_SIZE_U64).map_err(|_| outside)?;
                    let page = *pages.get(index).ok_or(outside)?;
                    let in_page = pos % PAGE_SIZE_U64;
                    let here = left.min((PAGE_SIZE_U64 - in_page) as usize);
                    piece(page + in_page, here)?;
                    pos += here as u64;
                    left -= here;
                }
                Ok(())
            }
        }
    }

    /// The sub-range `offset..offset+size`, or `None` when it does not fit.
    pub(crate) fn slice(&self, offset: u64, size: u64) -> Option<NwBuffer> {
        let end = offset.checked_add(size)?;
        if end > self.size {
            return None;
        }
        let backing = match &self.backing {
            Backing::Null => Backing::Null,
            Backing::Contig { pa } => Backing::Contig {
                pa: pa.checked_add(offset)?,
            },
            Backing::Pages { pages, start } => Backing::Pages {
                pages: Arc::clone(pages),
                start: start.checked_add(offset)?,
            },
        };
        Some(NwBuffer { backing, size })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ram::SparseRam;

    #[test]
    fn scattered_pages_read_back_in_buffer_order() {
        let mut ram = SparseRam::new(0x4000_0000, 16 * PAGE_SIZE_U64);
        // Pages deliberately out of physical order.
        let pages: Arc<[u64]> = Arc::from(vec![0x4000_5000u64, 0x4000_1000, 0x4000_9000]);
        let buf = NwBuffer::new(Backing::Pages { pages, start: 100 }, 3 * 4096 - 100);
        let data: Vec<u8> = (0..9000u32).map(|i| (i % 251) as u8).collect();
        buf.write(&mut ram, 10, &data).unwrap();
        let mut first = [0u8; 4];
        ram.read(0x4000_5000 + 110, &mut first).unwrap();
        assert_eq!(first, [0, 1, 2, 3]);
        // data[3986] lands at byte 4096 of the page run: the start of the second page.
        let mut second = [0u8; 1];
        ram.read(0x4000_1000, &mut second).unwrap();
        assert_eq!(second[0], data[4096 - 110]);
        let mut back = vec![0u8; 9000];
        buf.read(&ram, 10, &mut back).unwrap();
        assert_eq!(back, data);
        assert!(buf.read(&ram, buf.size() - 1, &mut [0u8; 2]).is_err());
        let sub = buf.slice(10, 8).unwrap();
        let mut eight = [0u8; 8];
        sub.read(&ram, 0, &mut eight).unwrap();
        assert_eq!(eight, [0, 1, 2, 3, 4, 5, 6, 7]);
        assert!(buf.slice(buf.size(), 1).is_none());
    }

    #[test]
    fn null_buffer_has_size_but_no_bytes() {
        let mut ram = SparseRam::new(0x4000_0000, PAGE_SIZE_U64);
        let buf = NwBuffer::new(Backing::Null, 64);
        assert!(buf.is_null());
        assert!(buf.write(&mut ram, 0, &[1]).is_err());
        assert!(buf.write(&mut ram, 0, &[]).is_ok());
    }
}
