//! Physical memory through `/dev/mem`: how servers in the QEMU guest reach the carve-out that
//! holds the registered buffers and teed's journal (a `mem=` range the guest kernel does not
//! manage, so it survives kexec and kdump and the host's secure world sees it in the RAM file).
//!
//! A server is granted `/dev/mem` by init as an `O_PATH` descriptor, which names the device
//! without opening it. The server opens it through that descriptor, maps exactly the window
//! its `Hello` names, closes it, and then gives up the privilege to open it again (see
//! [`drop_privilege`]): from then on its mapping is all it can reach, as a Redox daemon keeps
//! its mappings after it drops to the null namespace.
//!
//! The carve-out is not System RAM, so arm64 maps it as Device memory (arch/arm64/mm/mmu.c,
//! phys_mem_access_prot): no unaligned access and no `dc zva`. Copies in and out of such a
//! mapping therefore go through [`device_copy_in`] and [`device_copy_out`], aligned and
//! volatile, never through `memcpy`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::sync::atomic::{AtomicBool, Ordering};

use tee_proto::lifecycle::ServerKind;

/// Major and minor number of `/dev/mem` (drivers/char/mem.c: major 1, minor 1).
const DEV_MEM: (u64, u64) = (1, 1);

/// Set once this process opened `/dev/mem` through a grant: it must give up root once started.
static PHYS_GRANT_USED: AtomicBool = AtomicBool::new(false);

/// First of the unprivileged ids the guest's servers run as, one per server kind, so no server
/// may trace or signal another (same-uid processes could).
pub const GUEST_SERVER_UID_BASE: u32 = 61_000;

/// Whether `fd` is the `/dev/mem` character device (opened or `O_PATH`).
pub fn is_dev_mem(fd: &impl AsFd) -> bool {
    let Ok(meta) = File::from(match fd.as_fd().try_clone_to_owned() {
        Ok(owned) => owned,
        Err(_) => return false,
    })
    .metadata() else {
        return false;
    };
    let rdev = meta.rdev();
    meta.file_type().is_char_device() && (major(rdev), minor(rdev)) == DEV_MEM
}

fn major(rdev: u64) -> u64 {
    ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0xfff)
}

fn minor(rdev: u64) -> u64 {
    ((rdev >> 12) & 0xffff_ff00) | (rdev & 0xff)
}

/// Opens the device a granted descriptor names: an `O_PATH` descriptor is reopened read-write
/// through `/proc/self/fd` (this is the privileged step); an already open one is used as is.
pub fn open_granted(fd: OwnedFd) -> io::Result<File> {
    let flags = nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_GETFL)?;
    let o_path = flags & libc_o_path() != 0;
    if !o_path {
        return Ok(File::from(fd));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_CLOEXEC | nix::libc::O_NOCTTY)
        .open(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
    drop(fd);
    Ok(file)
}

fn libc_o_path() -> i32 {
    nix::libc::O_PATH
}

/// Notes that this process opened `/dev/mem`: [`drop_privilege`] will act.
pub(crate) fn mark_phys_grant_used() {
    PHYS_GRANT_USED.store(true, Ordering::SeqCst);
}

/// After a server started: if it opened `/dev/mem` through a grant, it gives up root for good
/// (supplementary groups, then gid, then uid, all three of each), so it can never open the
/// device, or anything else root-only, again. A hosted server never opened it and keeps its
/// ids. Failing to drop is fatal to the caller: a server that cannot give up the device must
/// not serve.
pub fn drop_privilege(kind: ServerKind) -> io::Result<bool> {
    if !PHYS_GRANT_USED.load(Ordering::SeqCst) {
        return Ok(false);
    }
    let id = GUEST_SERVER_UID_BASE + kind_index(kind);
    let gid = nix::unistd::Gid::from_raw(id);
    let uid = nix::unistd::Uid::from_raw(id);
    nix::unistd::setgroups(&[])?;
    nix::unistd::setresgid(gid, gid, gid)?;
    nix::unistd::setresuid(uid, uid, uid)?;
    // Root can only come back through a set-uid binary, and a server never execs.
    if nix::unistd::geteuid().is_root() {
        return Err(io::Error::other("still root after setresuid"));
    }
    tracing::info!(
        uid = id,
        "privilege dropped: /dev/mem cannot be opened again"
    );
    Ok(true)
}

fn kind_index(kind: ServerKind) -> u32 {
    match kind {
        ServerKind::Teed => 0,
        ServerKind::Tpmd => 1,
        ServerKind::Bnxtd => 2,
    }
}

/// Copies `dst.len()` bytes out of a Device-memory mapping at `src`: bytes up to 8-byte
/// alignment, then aligned u64 loads, then bytes. Never a `memcpy`, which may issue unaligned
/// or zeroing instructions that fault on Device memory.
///
/// # Safety
/// `src..src + dst.len()` must lie inside a live mapping readable by this process.
pub unsafe fn device_copy_out(src: *const u8, dst: &mut [u8]) {
    let mut i = 0;
    let len = dst.len();
    while i < len && (src as usize + i) % 8 != 0 {
        // SAFETY: inside the mapping, by the caller's contract.
        dst[i] = unsafe { std::ptr::read_volatile(src.add(i)) };
        i += 1;
    }
    while i + 8 <= len {
        // SAFETY: inside the mapping and 8-byte aligned (the loop above aligned `src + i`).
        let word = unsafe { std::ptr::read_volatile(src.add(i).cast::<u64>()) };
        dst[i..i + 8].copy_from_slice(&word.to_ne_bytes());
        i += 8;
    }
    while i < len {
        // SAFETY: inside the mapping, by the caller's contract.
        dst[i] = unsafe { std::ptr::read_volatile(src.add(i)) };
        i += 1;
    }
}

/// Copies `src` into a Device-memory mapping at `dst`, as [`device_copy_out`] reads.
///
/// # Safety
/// `dst..dst + src.len()` must lie inside a live mapping writable by this process.
pub unsafe fn device_copy_in(src: &[u8], dst: *mut u8) {
    let mut i = 0;
    let len = src.len();
    while i < len && (dst as usize + i) % 8 != 0 {
        // SAFETY: inside the mapping, by the caller's contract.
        unsafe { std::ptr::write_volatile(dst.add(i), src[i]) };
        i += 1;
    }
    while i + 8 <= len {
        let mut word = [0u8; 8];
        word.copy_from_slice(&src[i..i + 8]);
        // SAFETY: inside the mapping and 8-byte aligned.
        unsafe { std::ptr::write_volatile(dst.add(i).cast::<u64>(), u64::from_ne_bytes(word)) };
        i += 8;
    }
    while i < len {
        // SAFETY: inside the mapping, by the caller's contract.
        unsafe { std::ptr::write_volatile(dst.add(i), src[i]) };
        i += 1;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// arch/arm64/mm/mmu.c phys_mem_access_prot maps the carve-out as Device memory: the copies
    /// stay aligned whatever the buffer's alignment.
    #[test]
    fn device_copies_round_trip_at_every_alignment() {
        let mut backing = vec![0u64; 64];
        let base = backing.as_mut_ptr().cast::<u8>();
        for offset in 0..9 {
            for len in [0, 1, 7, 8, 9, 15, 16, 17, 100] {
                let data: Vec<u8> = (0..len).map(|i| (i * 7 + offset) as u8).collect();
                // SAFETY: offset + len <= 109 < 512 bytes of `backing`.
                unsafe { device_copy_in(&data, base.add(offset)) };
                let mut back = vec![0u8; len];
                unsafe { device_copy_out(base.add(offset), &mut back) };
                assert_eq!(back, data, "offset {offset} len {len}");
            }
        }
    }

    /// drivers/char/mem.c: /dev/mem is char device 1:1; nothing else counts as one.
    #[test]
    fn a_regular_file_is_not_dev_mem_and_hosted_servers_keep_their_ids() {
        let file = tempfile_in_proc();
        assert!(!is_dev_mem(&file));
        // Nothing opened /dev/mem in this test process: nothing to drop.
        assert!(!drop_privilege(ServerKind::Teed).unwrap());
    }

    #[test]
    fn an_o_path_grant_is_reopened_read_write_and_an_open_one_passes_as_is() {
        let dir = std::env::temp_dir().join(format!("teesys-physmem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("device");
        std::fs::write(&path, b"x").unwrap();
        let o_path = nix::fcntl::open(
            &path,
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        let mut reopened = open_granted(o_path).unwrap();
        use std::io::{Read, Seek, Write};
        reopened.write_all(b"yz").unwrap();
        reopened.rewind().unwrap();
        let mut text = String::new();
        reopened.read_to_string(&mut text).unwrap();
        assert_eq!(text, "yz");
        let open = File::open(&path).unwrap();
        let passed = open_granted(OwnedFd::from(open)).unwrap();
        assert!(passed.metadata().unwrap().is_file());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_in_proc() -> File {
        File::open("/proc/self/status").unwrap()
    }
}
