//! teesys's root task in the QEMU aarch64 guest: PID 1 of a real arm64 Linux kernel.
//!
//! The supervisor core (`teesys_init::Supervisor`) decides exactly as it does hosted: boot
//! order, generations, restarts, the shutdown IPC. What differs is the platform, and it lives in
//! the thin shell of the `teesys-guest-init` binary:
//! * grants are `O_PATH` descriptors: teed gets the `optee.smc` virtio port's node (it opens
//!   the port itself) and `/dev/mem`, each client `/dev/mem`, and each maps only the window of
//!   the carve-out its `Hello` names, then drops root (`tee_rt::physmem`);
//! * a transition is real: `kexec` (kexec_file_load, or kexec-tools' kexec_load on ENOSYS)
//!   and `reboot(LINUX_REBOOT_CMD_KEXEC)`; a crash is a panic (`sysrq c`) into the crash
//!   kernel loaded at boot with `kexec -p`; a reboot is a machine reset;
//! * the launcher on the host drives the scenario over the `teesys.ctl` port ([`ctl`]).
//!
//! This library holds the pure parts, tested on the host: what a boot is ([`boot`]), the
//! carve-out's layout ([`layout`]), the control protocol ([`ctl`]) and the device tree a
//! normal kexec passes on ([`fdt`]).

pub mod boot;
pub mod ctl;
pub mod fdt;
pub mod layout;
