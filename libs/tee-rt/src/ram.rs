//! Normal-world RAM as a shared, sparse file.
//!
//! Hosted, the secure-world process and every normal-world process map the same file, so a
//! page that teed registers is the page the secure-world model reads. The file is sparse: its
//! size is set with `set_len`, never by writing zeros, so an 8 GiB RAM costs only what is touched.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use memmap2::{MmapOptions, MmapRaw};
use optee_abi::mem::{MemError, PhysMem};

/// Default normal-world RAM size: 8 GiB, the seed's kind of machine.
pub const DEFAULT_RAM_BYTES: u64 = 8 << 30;
/// Default physical base of normal-world RAM, as on QEMU `virt`.
pub const DEFAULT_RAM_BASE: u64 = 0x4000_0000;

/// Failures to set up the RAM file.
#[derive(Debug, thiserror::Error)]
pub enum RamError {
    /// Creating, sizing or mapping the file failed.
    #[error("ram file {}: {action} failed", path.display())]
    Io {
        /// The RAM file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// A RAM of zero bytes cannot hold anything.
    #[error("ram size must not be zero")]
    ZeroSize,
    /// `base + size` does not fit the physical address space.
    #[error("ram window {base:#x}+{size:#x} overflows the physical address space")]
    WindowOverflow {
        /// Requested physical base.
        base: u64,
        /// Requested size in bytes.
        size: u64,
    },
    /// A RAM file handed over as a descriptor could not be inspected or mapped.
    #[error("ram descriptor: {action} failed")]
    FdIo {
        /// What was being done.
        action: &'static str,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// A RAM file handed over as a descriptor is shorter than the RAM it should hold; touching
    /// the missing tail would fault the process.
    #[error("ram file holds {len:#x} bytes, less than the {size:#x} requested")]
    FileTooShort {
        /// The file's length.
        len: u64,
        /// The requested RAM size.
        size: u64,
    },
    /// The size does not fit this process's address space.
    #[error("ram size {size:#x} does not fit this address space")]
    TooLarge {
        /// Requested size in bytes.
        size: u64,
    },
}

/// A shared mapping of the normal-world RAM file, addressed by physical address.
///
/// Other processes may write the same pages at any time (that is the point), so the mapping is
/// only ever touched through raw copies, never through Rust references into it.
#[derive(Debug)]
pub struct RamFile {
    map: MmapRaw,
    base: u64,
    size: u64,
    /// Mapped from `/dev/mem` (the QEMU guest's carve-out): Device memory, copied aligned.
    device: bool,
}

impl RamFile {
    /// Creates or opens the RAM file at `path` with the default physical base.
    pub fn open(path: impl AsRef<Path>, size: u64) -> Result<Self, RamError> {
        Self::open_at(path, DEFAULT_RAM_BASE, size)
    }

    /// Creates or opens the RAM file at `path`, mapping `size` bytes at physical `base`.
    ///
    /// An existing shorter file is extended (sparsely); a longer one is left as it is, since
    /// shrinking it would fault the other processes that map it.
    pub fn open_at(path: impl AsRef<Path>, base: u64, size: u64) -> Result<Self, RamError> {
        let path = path.as_ref();
        let map_len = check_window(base, size)?;
        let io_error = |action, source| RamError::Io {
            path: path.to_path_buf(),
            action,
            source,
        };

        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io_error("open", e))?;
        let current_len = file.metadata().map_err(|e| io_error("stat", e))?.len();
        if current_len < size {
            file.set_len(size).map_err(|e| io_error("set_len", e))?;
        }
        let map = MmapOptions::new()
            .len(map_len)
            .map_raw(&file)
            .map_err(|e| io_error("mmap", e))?;
        tracing::debug!(path = %path.display(), base, size, "ram file mapped");
        Ok(Self {
            map,
            base,
            size,
            device: false,
        })
    }

    /// Maps `size` bytes of a RAM file handed over as a descriptor (opened read-write), at
    /// physical `base`. The file is never resized here: it must already hold `size` bytes. The
    /// descriptor is closed once mapped; the mapping stays valid without it.
    ///
    /// In the QEMU guest the descriptor is `/dev/mem` (see [`crate::physmem`]): then exactly
    /// `[base, base + size)` of physical memory is mapped, and the device is closed again.
    pub fn from_fd(fd: OwnedFd, base: u64, size: u64) -> Result<Self, RamError> {
        if crate::physmem::is_dev_mem(&fd) {
            return Self::from_phys_grant(fd, base, size);
        }
        let file = File::from(fd);
        let len = file_len(&file)?;
        if len < size {
            return Err(RamError::FileTooShort { len, size });
        }
        Self::map_file(&file, base, size)
    }

    /// Maps the whole of a RAM file handed over as a descriptor, at physical `base`.
    pub fn from_fd_whole(fd: OwnedFd, base: u64) -> Result<Self, RamError> {
        let file = File::from(fd);
        let len = file_len(&file)?;
        Self::map_file(&file, base, len)
    }

    /// Maps physical `[base, base + size)` through a `/dev/mem` grant (opened here if it is an
    /// `O_PATH` descriptor), then closes the device: the mapping is all this process keeps.
    /// The process is marked to give up root once started ([`crate::physmem::drop_privilege`]).
    pub fn from_phys_grant(fd: OwnedFd, base: u64, size: u64) -> Result<Self, RamError> {
        let map_len = check_window(base, size)?;
        let fd_error = |action| move |source| RamError::FdIo { action, source };
        if base % optee_abi::mem::PAGE_SIZE_U64 != 0 || size % optee_abi::mem::PAGE_SIZE_U64 != 0 {
            return Err(RamError::WindowOverflow { base, size });
        }
        let file = crate::physmem::open_granted(fd).map_err(fd_error("open /dev/mem"))?;
        crate::physmem::mark_phys_grant_used();
        let map = MmapOptions::new()
            .offset(base)
            .len(map_len)
            .map_raw(&file)
            .map_err(fd_error("mmap /dev/mem"))?;
        drop(file);
        tracing::info!(
            base = format_args!("{base:#x}"),
            size,
            "physical window mapped; /dev/mem closed"
        );
        Ok(Self {
            map,
            base,
            size,
            device: true,
        })
    }

    fn map_file(file: &File, base: u64, size: u64) -> Result<Self, RamError> {
        let map_len = check_window(base, size)?;
        let map = MmapOptions::new()
            .len(map_len)
            .map_raw(file)
            .map_err(|source| RamError::FdIo {
                action: "mmap",
                source,
            })?;
        tracing::debug!(base, size, "ram descriptor mapped");
        Ok(Self {
            map,
            base,
            size,
            device: false,
        })
    }

    /// Puts the memory object `window` (a client's window, see [`crate::window`]) at physical
    /// `[base, base + len)` of this mapping, in place of the RAM file's own pages there: what
    /// the secure world and teed see of a client's window is the window itself. The range must
    /// be page-aligned, inside this RAM, and `window` must hold `len` bytes (a sealed window
    /// cannot shrink, so the mapping can never fault).
    pub fn overlay(&mut self, base: u64, len: u64, window: &OwnedFd) -> Result<(), RamError> {
        const PAGE: u64 = optee_abi::mem::PAGE_SIZE_U64;
        let offset = self
            .offset_of(base, len)
            .filter(|_| len > 0 && base % PAGE == 0 && len % PAGE == 0)
            .ok_or(RamError::WindowOverflow { base, size: len })?;
        let file_len = file_len(&File::from(window.try_clone().map_err(|source| {
            RamError::FdIo {
                action: "dup",
                source,
            }
        })?))?;
        if file_len < len {
            return Err(RamError::FileTooShort {
                len: file_len,
                size: len,
            });
        }
        let length = std::num::NonZeroUsize::new(len as usize).ok_or(RamError::ZeroSize)?;
        // SAFETY: the target range lies inside this live mapping (checked above), so MAP_FIXED
        // only replaces pages this RamFile owns; nothing holds a Rust reference into them (all
        // access is by raw copies), and the mapping's drop unmaps the whole range, overlay
        // included.
        let address = unsafe { self.map.as_mut_ptr().add(offset) };
        let placed = unsafe {
            nix::sys::mman::mmap(
                std::num::NonZeroUsize::new(address as usize),
                length,
                nix::sys::mman::ProtFlags::PROT_READ | nix::sys::mman::ProtFlags::PROT_WRITE,
                nix::sys::mman::MapFlags::MAP_SHARED | nix::sys::mman::MapFlags::MAP_FIXED,
                window,
                0,
            )
        };
        placed.map_err(|errno| RamError::FdIo {
            action: "mmap window",
            source: errno.into(),
        })?;
        tracing::debug!(base, len, "window overlaid");
        Ok(())
    }

    /// First physical address of the RAM.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Size of the RAM in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Offset into the mapping of `pa..pa+len`, if the whole range is RAM.
    fn offset_of(&self, pa: u64, len: u64) -> Option<usize> {
        let offset = pa.checked_sub(self.base)?;
        let end = offset.checked_add(len)?;
        if offset >= self.size || end > self.size {
            return None;
        }
        usize::try_from(offset).ok()
    }

    fn checked_offset(&self, pa: u64, len: usize) -> Result<usize, MemError> {
        let len = len as u64;
        self.offset_of(pa, len).ok_or(MemError { pa, len })
    }
}

/// Checks a RAM window and returns its length as a mapping length.
fn check_window(base: u64, size: u64) -> Result<usize, RamError> {
    if size == 0 {
        return Err(RamError::ZeroSize);
    }
    if base.checked_add(size).is_none() {
        return Err(RamError::WindowOverflow { base, size });
    }
    usize::try_from(size).map_err(|_| RamError::TooLarge { size })
}

impl PhysMem for RamFile {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let offset = self.checked_offset(pa, buf.len())?;
        if self.device {
            // SAFETY: as below; Device memory is only ever read aligned (physmem).
            unsafe { crate::physmem::device_copy_out(self.map.as_ptr().add(offset), buf) };
            return Ok(());
        }
        // SAFETY: `checked_offset` proved `offset + buf.len() <= size`, the mapped length, so the
        // source lies inside the live mapping; `buf` is a distinct Rust allocation. Concurrent
        // writers in other processes can only change the bytes read, not their validity as u8.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.map.as_ptr().add(offset),
                buf.as_mut_ptr(),
                buf.len(),
            );
        }
        Ok(())
    }

    fn write(&mut self, pa: u64, data: &[u8]) -> Result<(), MemError> {
        let offset = self.checked_offset(pa, data.len())?;
        if self.device {
            // SAFETY: as below; Device memory is only ever written aligned (physmem).
            unsafe { crate::physmem::device_copy_in(data, self.map.as_mut_ptr().add(offset)) };
            return Ok(());
        }
        // SAFETY: as in `read`: the destination range is inside the writable shared mapping
        // (opened read-write), and `data` cannot overlap it because no reference into the
        // mapping is ever handed out.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.map.as_mut_ptr().add(offset),
                data.len(),
            );
        }
        Ok(())
    }

    fn contains(&self, pa: u64, len: u64) -> bool {
        self.offset_of(pa, len).is_some()
    }
}

/// The length of a RAM file handed over as a descriptor.
fn file_len(file: &File) -> Result<u64, RamError> {
    Ok(file
        .metadata()
        .map_err(|source| RamError::FdIo {
            action: "stat",
            source,
        })?
        .len())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
