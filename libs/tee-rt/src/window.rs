//! A client's window of normal-world RAM: a sealed memory object that the client maps as its
//! only RAM, and that the secure world and teed place at its physical range
//! ([`crate::ram::RamFile::overlay`]). init creates one per client for the life of the stack.
//!
//! Sealed against shrinking and growing (and further sealing), so a client holding it can write
//! its own buffers, unmap it or try to truncate it, and nothing it does can make a page of
//! another process's mapping disappear: no SIGBUS in teed or the secure world.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};

/// Creates a zeroed, sealed window of `len` bytes named `name` (the name only shows in
/// /proc/PID/maps).
pub fn create_window(name: &str, len: u64) -> io::Result<OwnedFd> {
    let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
    let size = i64::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "window too large"))?;
    nix::unistd::ftruncate(fd.as_fd(), size)?;
    let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
    fcntl(fd.as_fd(), FcntlArg::F_ADD_SEALS(seals))?;
    Ok(fd)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ram::RamFile;
    use optee_abi::mem::PhysMem;

    #[test]
    fn a_window_cannot_be_resized_and_shows_through_an_overlay() {
        let window = create_window("test-window", 64 << 10).unwrap();
        let file = std::fs::File::from(window.try_clone().unwrap());
        assert!(file.set_len(4096).is_err(), "a sealed window shrank");
        assert!(file.set_len(1 << 20).is_err(), "a sealed window grew");

        // The holder's view: the window alone, at its base.
        let base = 0x4000_0000 + (1 << 20);
        let mut client = RamFile::from_fd_whole(window.try_clone().unwrap(), base).unwrap();
        client.write(base + 8, b"mine").unwrap();
        assert!(
            client.write(base - 4096, b"x").is_err(),
            "outside the window"
        );

        // The all-seeing view: RAM with the window in its place.
        let dir = std::env::temp_dir().join(format!("teesys-window-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ram = RamFile::open_at(dir.join("ram"), 0x4000_0000, 4 << 20).unwrap();
        ram.overlay(base, 64 << 10, &window).unwrap();
        let mut got = [0u8; 4];
        ram.read(base + 8, &mut got).unwrap();
        assert_eq!(&got, b"mine");
        ram.write(base + 16, b"back").unwrap();
        client.read(base + 16, &mut got).unwrap();
        assert_eq!(&got, b"back");
        // Misplaced overlays are refused.
        assert!(ram.overlay(base + 1, 4096, &window).is_err());
        assert!(ram.overlay(0x4000_0000 + (4 << 20), 4096, &window).is_err());
        assert!(ram.overlay(base, 128 << 10, &window).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
