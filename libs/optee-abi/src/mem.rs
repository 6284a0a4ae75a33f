//! Normal-world physical memory as the secure world and teed see it.
//!
//! Every address in the OP-TEE ABI is a normal-world physical address. This trait is the only
//! way the cores touch that memory, so the same core runs over a sparse in-memory RAM (the
//! simulator), a shared RAM file (hosted) or real guest RAM (QEMU).

/// Size of a normal-world page; OP-TEE's `OPTEE_MSG_NONCONTIG_PAGE_SIZE`.
pub const PAGE_SIZE: usize = 4096;
/// `PAGE_SIZE` as a physical-address quantity.
pub const PAGE_SIZE_U64: u64 = PAGE_SIZE as u64;

/// An access outside the normal-world RAM window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("physical range {pa:#x}+{len:#x} is not normal-world RAM")]
pub struct MemError {
    /// First physical address of the failed access.
    pub pa: u64,
    /// Length of the failed access in bytes.
    pub len: u64,
}

/// Reads and writes of normal-world physical memory.
pub trait PhysMem {
    /// Copies `buf.len()` bytes starting at `pa` into `buf`.
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), MemError>;
    /// Copies `data` to physical memory starting at `pa`.
    fn write(&mut self, pa: u64, data: &[u8]) -> Result<(), MemError>;
    /// True when `pa..pa+len` lies entirely inside normal-world RAM.
    fn contains(&self, pa: u64, len: u64) -> bool;

    /// Zeroes `len` bytes from `pa`. Backends with a cheaper way (dropping sparse pages) override it.
    fn zero(&mut self, pa: u64, len: u64) -> Result<(), MemError> {
        const CHUNK: [u8; PAGE_SIZE] = [0; PAGE_SIZE];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(PAGE_SIZE_U64);
            self.write(pa + done, &CHUNK[..n as usize])?;
            done += n;
        }
        Ok(())
    }

    /// Reads a little-endian u64 at `pa`.
    fn read_u64(&self, pa: u64) -> Result<u64, MemError> {
        let mut b = [0u8; 8];
        self.read(pa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Writes a little-endian u64 at `pa`.
    fn write_u64(&mut self, pa: u64, value: u64) -> Result<(), MemError> {
        self.write(pa, &value.to_le_bytes())
    }
}

impl<M: PhysMem + ?Sized> PhysMem for &mut M {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        (**self).read(pa, buf)
    }
    fn write(&mut self, pa: u64, data: &[u8]) -> Result<(), MemError> {
        (**self).write(pa, data)
    }
    fn contains(&self, pa: u64, len: u64) -> bool {
        (**self).contains(pa, len)
    }
    fn zero(&mut self, pa: u64, len: u64) -> Result<(), MemError> {
        (**self).zero(pa, len)
    }
}
