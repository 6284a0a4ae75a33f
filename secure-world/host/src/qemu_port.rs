//! The secure world behind a QEMU guest: the launcher creates a connected socket pair, gives
//! QEMU one end as the chardev of the guest's `optee.smc` virtio-serial port and this process
//! the other (`TEESYS_QEMU_CONDUIT_FD`). No path leads to it, so only the guest's port, and in
//! the guest only teed (which holds the port open), reaches the secure world.
//!
//! The conduit lives as long as QEMU: it survives the guest's kexecs, kdumps and resets (a
//! reset of the machine is asked for on the control channel, like the hosted one). QEMU's RAM
//! file is this process's RAM file, so page lists name real guest physical addresses.

use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::socket::{getsockopt, sockopt, SockType};
use tee_rt::conduit::serve_conduit;

use crate::{lock, SharedMachine};

/// Environment variable naming the inherited conduit to QEMU's chardev.
pub const QEMU_CONDUIT_FD_ENV: &str = "TEESYS_QEMU_CONDUIT_FD";

/// Why the inherited QEMU conduit cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum QemuPortError {
    #[error("{QEMU_CONDUIT_FD_ENV}={0:?} is not a descriptor number above 2")]
    NotANumber(String),
    #[error("{QEMU_CONDUIT_FD_ENV}: descriptor {0} is not open")]
    NotOpen(RawFd),
    #[error("{QEMU_CONDUIT_FD_ENV}: descriptor {0} is not a stream socket")]
    NotStream(RawFd),
    #[error("QEMU conduit: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves the QEMU conduit on its own thread when the launcher handed one down; false when
/// it did not (the hosted stack).
pub fn serve_inherited(machine: &SharedMachine) -> Result<bool, QemuPortError> {
    let Ok(value) = std::env::var(QEMU_CONDUIT_FD_ENV) else {
        return Ok(false);
    };
    let stream = take(&value)?;
    let machine = Arc::clone(machine);
    thread::Builder::new()
        .name("qemu-conduit".into())
        .spawn(move || {
            let served = serve_conduit(stream, |regs| {
                let mut guard = lock(&machine);
                let machine = &mut *guard;
                machine.smcs += 1;
                machine.world.smc(&mut machine.ram, regs)
            });
            match served {
                Ok(()) => tracing::info!("QEMU closed the conduit"),
                Err(error) => tracing::warn!(%error, "QEMU conduit ended"),
            }
        })?;
    tracing::info!("serving the QEMU guest's SMC port");
    Ok(true)
}

/// Takes ownership of the inherited descriptor named by `value`, close-on-exec from here on.
fn take(value: &str) -> Result<UnixStream, QemuPortError> {
    let fd: RawFd = match value.trim().parse() {
        Ok(fd) if fd > 2 => fd,
        _ => return Err(QemuPortError::NotANumber(value.to_owned())),
    };
    if std::fs::symlink_metadata(format!("/proc/self/fd/{fd}")).is_err() {
        return Err(QemuPortError::NotOpen(fd));
    }
    // SAFETY: the number is open (checked above) and the launcher's contract makes it ours
    // alone; this runs once, at start-up, before any other descriptor is opened on a thread.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    match getsockopt(&owned, sockopt::SockType) {
        Ok(SockType::Stream) => {}
        _ => return Err(QemuPortError::NotStream(fd)),
    }
    fcntl(owned.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(std::io::Error::from)?;
    Ok(UnixStream::from(owned))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_an_open_stream_socket_is_taken() {
        assert!(matches!(take("2"), Err(QemuPortError::NotANumber(_))));
        assert!(matches!(take("x"), Err(QemuPortError::NotANumber(_))));
        assert!(matches!(take("999999"), Err(QemuPortError::NotOpen(_))));
        let (datagram, _keep) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let number = std::os::fd::IntoRawFd::into_raw_fd(datagram);
        assert!(matches!(
            take(&number.to_string()),
            Err(QemuPortError::NotStream(_))
        ));
    }
}
