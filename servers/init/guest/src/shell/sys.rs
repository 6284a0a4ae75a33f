//! The kernel calls of PID 1: mounts, the clock, kexec loading, and the ways out (kexec,
//! panic, reset, power-off).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use nix::mount::{mount, MsFlags};

/// The kernel image for the next kexec: copied out of the staging region at boot.
pub const KERNEL: &str = "/tmp/Image";
/// The initramfs this kernel booted with, kept by `retain_initrd` (init/initramfs.c).
pub const RETAINED_INITRD: &str = "/sys/firmware/initrd";
/// Static kexec-tools, built from Debian's source package.
pub const KEXEC_TOOLS: &str = "/sbin/kexec";

/// Mounts what init and the servers need: proc, sysfs, devtmpfs, a tmpfs for sockets.
pub fn mount_basics() -> io::Result<()> {
    let none: Option<&str> = None;
    for (source, target, fstype) in [
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("devtmpfs", "/dev", "devtmpfs"),
        ("tmpfs", "/run", "tmpfs"),
        ("tmpfs", "/tmp", "tmpfs"),
    ] {
        std::fs::create_dir_all(target)?;
        match mount(Some(source), target, Some(fstype), MsFlags::empty(), none) {
            Ok(()) | Err(nix::errno::Errno::EBUSY) => {}
            Err(errno) => {
                return Err(io::Error::new(
                    io::Error::from(errno).kind(),
                    format!("mount {fstype} on {target}: {errno}"),
                ))
            }
        }
    }
    Ok(())
}

/// Milliseconds since this kernel booted (CLOCK_BOOTTIME).
pub fn uptime_ms() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|ts| {
            u64::try_from(ts.tv_sec()).unwrap_or(0) * 1000
                + u64::try_from(ts.tv_nsec()).unwrap_or(0) / 1_000_000
        })
        .unwrap_or(0)
}

/// kexec_file_load's number (include/uapi/asm-generic/unistd.h on arm64; the libc crate's
/// musl tables lack it), and x86_64's for host builds.
#[cfg(target_arch = "aarch64")]
const SYS_KEXEC_FILE_LOAD: nix::libc::c_long = 294;
#[cfg(not(target_arch = "aarch64"))]
const SYS_KEXEC_FILE_LOAD: nix::libc::c_long = 320;

/// Copies the kernel Image the launcher staged past `mem=` (QEMU's loader device) to
/// [`KERNEL`], for kexec-tools, which reads a file. Under TCG this is cheaper than carrying the
/// Image in the initramfs, which every boot unpacks.
pub fn stage_kernel(image: tee_proto::lifecycle::RamWindow) -> io::Result<()> {
    use optee_abi::mem::PhysMem;
    let page = 4096;
    let len = image.len.div_ceil(page) * page;
    let mem = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/mem")?;
    let window = tee_rt::ram::RamFile::from_phys_grant(mem.into(), image.base, len)
        .map_err(|e| io::Error::other(e.to_string()))?;
    let mut out = std::io::BufWriter::new(File::create(KERNEL)?);
    let mut chunk = vec![0u8; 1 << 20];
    let mut at = 0u64;
    while at < image.len {
        let n = usize::try_from((image.len - at).min(chunk.len() as u64)).unwrap_or(0);
        window
            .read(image.base + at, &mut chunk[..n])
            .map_err(|e| io::Error::other(e.to_string()))?;
        std::io::Write::write_all(&mut out, &chunk[..n])?;
        at += n as u64;
    }
    std::io::Write::flush(&mut out)?;
    Ok(())
}

/// KEXEC_FILE_ON_CRASH (include/uapi/linux/kexec.h).
const KEXEC_FILE_ON_CRASH: u64 = 2;

/// How a load was started.
pub enum Load {
    /// kexec_file_load did it synchronously.
    Done(io::Result<()>),
    /// The kernel has no kexec_file_load (ENOSYS, as Debian's arm64 kernels): kexec-tools runs.
    Tools(Child),
}

/// Loads the kernel this boot kexecs into (`crash`: the crash kernel, for a panic) with
/// `cmdline`: kexec_file_load first; on ENOSYS kexec-tools' kexec_load in a child process
/// (always `-i`: without it the purgatory checksums every segment with the MMU off, ~27 s
/// under TCG).
pub fn start_load(crash: bool, cmdline: &str) -> io::Result<Load> {
    match kexec_file_load(crash, cmdline) {
        Err(error) if error.raw_os_error() == Some(nix::libc::ENOSYS) => {}
        other => return Ok(Load::Done(other)),
    }
    let mut command = Command::new(KEXEC_TOOLS);
    command.arg("-i").arg(if crash { "-p" } else { "-l" });
    if !crash {
        // kexec-tools would pass this kernel's tree on as it is (teesys_guest::fdt).
        command.arg(format!("--dtb={}", next_dtb()?));
    }
    command
        .arg(KERNEL)
        .arg(format!("--initrd={RETAINED_INITRD}"))
        .arg(format!("--append={cmdline}"))
        .stdin(Stdio::null());
    Ok(Load::Tools(command.spawn()?))
}

/// This kernel's device tree without the crash-kernel-only properties, for `kexec -l`.
fn next_dtb() -> io::Result<&'static str> {
    const NEXT_DTB: &str = "/tmp/next.dtb";
    let running = std::fs::read("/sys/firmware/fdt")?;
    let (tree, removed) =
        teesys_guest::fdt::without_chosen_props(&running, &teesys_guest::fdt::CRASH_ONLY)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if removed > 0 {
        tracing::info!(
            removed,
            "crash-kernel properties left out of the next device tree"
        );
    }
    std::fs::write(NEXT_DTB, tree)?;
    Ok(NEXT_DTB)
}

fn kexec_file_load(crash: bool, cmdline: &str) -> io::Result<()> {
    let kernel = File::open(KERNEL)?;
    let initrd = File::open(RETAINED_INITRD)?;
    let cmdline = CString::new(cmdline)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in the command line"))?;
    let flags = if crash { KEXEC_FILE_ON_CRASH } else { 0 };
    // SAFETY: the descriptors are open for the call, the command line is a NUL-terminated
    // string whose length (with its NUL, as the syscall wants) is passed; the kernel copies
    // everything before returning.
    let result = unsafe {
        nix::libc::syscall(
            SYS_KEXEC_FILE_LOAD,
            kernel.as_raw_fd(),
            initrd.as_raw_fd(),
            cmdline.as_bytes_with_nul().len(),
            cmdline.as_ptr(),
            flags,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether a crash kernel is loaded (kernel/ksysfs.c).
pub fn crash_kernel_loaded() -> bool {
    std::fs::read_to_string("/sys/kernel/kexec_crash_loaded").is_ok_and(|s| s.trim() == "1")
}

/// Boots the loaded kernel: LINUX_REBOOT_CMD_KEXEC. Returns only on failure.
pub fn kexec_now() -> io::Error {
    match nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_KEXEC) {
        Ok(never) => match never {},
        Err(errno) => errno.into(),
    }
}

/// A real panic (sysrq c, drivers/tty/sysrq.c): the crash kernel takes over, no userspace runs.
pub fn panic_now() -> io::Error {
    match std::fs::write("/proc/sysrq-trigger", b"c") {
        Ok(()) => io::Error::other("sysrq c returned"),
        Err(error) => error,
    }
}

/// A machine reset (PSCI SYSTEM_RESET; QEMU reports it and the launcher resets the secure
/// world). Returns only on failure.
pub fn reset_now() -> io::Error {
    match nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT) {
        Ok(never) => match never {},
        Err(errno) => errno.into(),
    }
}

/// Powers the machine off. Returns only on failure.
pub fn power_off_now() -> io::Error {
    match nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF) {
        Ok(never) => match never {},
        Err(errno) => errno.into(),
    }
}

/// Whether this is the crash kernel: `/proc/vmcore` exists only there (fs/proc/vmcore.c).
pub fn is_crash_kernel() -> bool {
    Path::new("/proc/vmcore").exists()
}
