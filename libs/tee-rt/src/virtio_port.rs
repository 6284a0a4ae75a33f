//! The SMC conduit in the QEMU guest: a virtio-serial port that QEMU connects to the secure
//! world on the host. Same wire format as every conduit (64 bytes each way).
//!
//! The port is found by its name (`/sys/class/virtio-ports/*/name`, drivers/char/virtio_console.c
//! show_port_name): the `vportNpM` number changes between boots. init resolves the name and
//! grants teed an `O_PATH` descriptor of the node, which opens nothing; teed opens the port
//! itself. virtio_console admits one opener at a time (port_fops_open answers EBUSY while the
//! port is open), so while teed holds it nobody else in the guest can reach the secure world.
//!
//! [`GrantedConduit`] is what teed's shell holds: the hosted socket or the guest port, chosen
//! by what the granted descriptor is, not by a build switch.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{getsockopt, sockopt, SockType};

use crate::conduit::{decode_regs, encode_regs, ConduitError, SmcConduit, UnixConduit};
use crate::conduit::{CONDUIT_FRAME_BYTES, CONDUIT_REGS};

/// The name QEMU gives the secure world's port (`-device virtserialport,name=...`).
pub const SMC_PORT_NAME: &str = "optee.smc";

/// How long a freshly opened port is listened to for bytes a previous teed left unread (the
/// answer to an SMC it sent just before it died, which QEMU delivers once the port is open
/// again). The secure world answers at once, so anything stale arrives within milliseconds.
const STALE_QUIET: Duration = Duration::from_millis(30);

/// Finds the `/dev` node of the virtio port named `name`, looking in `sys_class` (normally
/// `/sys/class/virtio-ports`) and `dev` (normally `/dev`).
pub fn find_port_in(sys_class: &Path, dev: &Path, name: &str) -> io::Result<PathBuf> {
    let entries = std::fs::read_dir(sys_class).map_err(|error| {
        io::Error::new(
            error.kind(),
            format!("{}: {error} (no virtio console?)", sys_class.display()),
        )
    })?;
    for entry in entries.flatten() {
        let Ok(found) = std::fs::read_to_string(entry.path().join("name")) else {
            continue;
        };
        if found.trim_end() == name {
            return Ok(dev.join(entry.file_name()));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("no virtio port named {name} in {}", sys_class.display()),
    ))
}

/// [`find_port_in`] on the running system.
pub fn find_port(name: &str) -> io::Result<PathBuf> {
    find_port_in(
        Path::new("/sys/class/virtio-ports"),
        Path::new("/dev"),
        name,
    )
}

/// The conduit over an open virtio port (a character device): every read and write bounded.
#[derive(Debug)]
pub struct PortConduit {
    port: File,
    timeout: Duration,
}

impl PortConduit {
    /// Wraps an open port; reads and writes give up after `timeout`.
    pub fn new(port: File, timeout: Duration) -> PortConduit {
        PortConduit { port, timeout }
    }

    /// Reads and discards what arrives until the port has been quiet for [`STALE_QUIET`] (at
    /// most one second): bytes a dead predecessor's SMC left, which would put every later
    /// answer out of step. Returns how many were discarded.
    pub fn discard_stale(&mut self) -> io::Result<usize> {
        let give_up = Instant::now() + Duration::from_secs(1);
        let mut discarded = 0;
        let mut buf = [0u8; CONDUIT_FRAME_BYTES];
        while Instant::now() < give_up {
            if !wait_for(self.port.as_fd(), PollFlags::POLLIN, STALE_QUIET)? {
                break;
            }
            match self.port.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => discarded += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        if discarded > 0 {
            tracing::warn!(discarded, "stale bytes on the SMC port discarded");
        }
        Ok(discarded)
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.port.as_fd()
    }

    fn write_frame(&mut self, frame: &[u8; CONDUIT_FRAME_BYTES]) -> Result<(), ConduitError> {
        let deadline = Instant::now() + self.timeout;
        let mut sent = 0;
        while sent < frame.len() {
            if !wait_for(self.port.as_fd(), PollFlags::POLLOUT, left(deadline))? {
                return Err(timed_out("write").into());
            }
            match self.port.write(&frame[sent..]) {
                Ok(0) => return Err(ConduitError::Closed),
                Ok(n) => sent += n,
                Err(error) if retryable(&error) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    fn read_frame(&mut self) -> Result<[u8; CONDUIT_FRAME_BYTES], ConduitError> {
        let deadline = Instant::now() + self.timeout;
        let mut frame = [0u8; CONDUIT_FRAME_BYTES];
        let mut received = 0;
        while received < frame.len() {
            if !wait_for(self.port.as_fd(), PollFlags::POLLIN, left(deadline))? {
                return Err(timed_out("read").into());
            }
            match self.port.read(&mut frame[received..]) {
                Ok(0) if received == 0 => return Err(ConduitError::Closed),
                Ok(0) => return Err(ConduitError::ShortFrame { received }),
                Ok(n) => received += n,
                Err(error) if retryable(&error) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(frame)
    }
}

impl SmcConduit for PortConduit {
    fn call(&mut self, regs: [u64; CONDUIT_REGS]) -> Result<[u64; CONDUIT_REGS], ConduitError> {
        tracing::trace!(a0 = regs[0], "smc out (port)");
        self.write_frame(&encode_regs(&regs))?;
        let answer = decode_regs(&self.read_frame()?);
        tracing::trace!(a0 = answer[0], "smc back (port)");
        Ok(answer)
    }
}

/// The conduit teed was granted: a stream socket (hosted) or a virtio port (QEMU guest).
#[derive(Debug)]
pub enum GrantedConduit {
    Socket(UnixConduit),
    Port(PortConduit),
}

impl GrantedConduit {
    /// Takes the conduit grant: a connected stream socket, or a virtio port's node (`O_PATH`,
    /// opened here, or already open). Anything else is refused. Every read and write on it
    /// gives up after `timeout`.
    pub fn from_grant(fd: OwnedFd, timeout: Duration) -> io::Result<GrantedConduit> {
        if let Ok(kind) = getsockopt(&fd, sockopt::SockType) {
            if kind != SockType::Stream {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("expected a stream socket, got {kind:?}"),
                ));
            }
            let stream = UnixStream::from(fd);
            stream.set_read_timeout(Some(timeout))?;
            stream.set_write_timeout(Some(timeout))?;
            return Ok(GrantedConduit::Socket(UnixConduit::from_stream(stream)));
        }
        let node = File::from(fd.try_clone()?).metadata()?;
        if !node.file_type().is_char_device() || crate::physmem::is_dev_mem(&fd) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the conduit is neither a stream socket nor a virtio port",
            ));
        }
        let port = crate::physmem::open_granted(fd)?;
        let mut conduit = PortConduit::new(port, timeout);
        conduit.discard_stale()?;
        tracing::info!("SMC conduit: virtio port opened");
        Ok(GrantedConduit::Port(conduit))
    }

    /// The descriptor to watch between SMCs for a secure world that went away.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            GrantedConduit::Socket(socket) => socket.as_fd(),
            GrantedConduit::Port(port) => port.as_fd(),
        }
    }
}

impl SmcConduit for GrantedConduit {
    fn call(&mut self, regs: [u64; CONDUIT_REGS]) -> Result<[u64; CONDUIT_REGS], ConduitError> {
        match self {
            GrantedConduit::Socket(socket) => socket.call(regs),
            GrantedConduit::Port(port) => port.call(regs),
        }
    }
}

/// Waits until `fd` shows `events` (or a hang-up or error, which the next read or write
/// reports); false when `within` passed first.
fn wait_for(fd: BorrowedFd<'_>, events: PollFlags, within: Duration) -> io::Result<bool> {
    let ms = u16::try_from(within.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(fd, events)];
    loop {
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(errno) => return Err(errno.into()),
        }
    }
}

fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

fn retryable(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
    )
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("SMC port {what} timed out"),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("teesys-port-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// drivers/char/virtio_console.c: the port's `name` attribute in sysfs, its node vportNpM.
    #[test]
    fn the_port_is_found_by_name_whatever_its_number() {
        let sys = scratch("sys");
        for (node, name) in [("vport0p1", "teesys.ctl"), ("vport1p2", "optee.smc")] {
            std::fs::create_dir_all(sys.join(node)).unwrap();
            std::fs::write(sys.join(node).join("name"), format!("{name}\n")).unwrap();
        }
        let found = find_port_in(&sys, Path::new("/dev"), SMC_PORT_NAME).unwrap();
        assert_eq!(found, Path::new("/dev/vport1p2"));
        let missing = find_port_in(&sys, Path::new("/dev"), "nope").unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        std::fs::remove_dir_all(&sys).unwrap();
    }

    #[test]
    fn a_stream_socket_grant_is_a_socket_conduit_and_a_plain_file_is_refused() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let mut conduit =
            GrantedConduit::from_grant(OwnedFd::from(ours), Duration::from_secs(5)).unwrap();
        assert!(matches!(conduit, GrantedConduit::Socket(_)));
        let server = std::thread::spawn(move || {
            let mut frame = [0u8; CONDUIT_FRAME_BYTES];
            theirs.read_exact(&mut frame).unwrap();
            let mut regs = decode_regs(&frame);
            regs[0] += 1;
            theirs.write_all(&encode_regs(&regs)).unwrap();
        });
        assert_eq!(conduit.call([41, 0, 0, 0, 0, 0, 0, 7]).unwrap()[0], 42);
        server.join().unwrap();

        let dir = scratch("plain");
        std::fs::write(dir.join("f"), b"").unwrap();
        let file = File::open(dir.join("f")).unwrap();
        let refused = GrantedConduit::from_grant(OwnedFd::from(file), Duration::from_secs(1));
        assert_eq!(refused.unwrap_err().kind(), io::ErrorKind::InvalidInput);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A character device that never answers (a pty's master: silent until written to) times
    /// out within the bound instead of hanging.
    #[test]
    fn a_silent_port_times_out() {
        let master = nix::pty::posix_openpt(nix::fcntl::OFlag::O_RDWR).unwrap();
        let fd: OwnedFd = master.into();
        let mut port = PortConduit::new(File::from(fd), Duration::from_millis(100));
        assert_eq!(port.discard_stale().unwrap(), 0);
        match port.read_frame() {
            Err(ConduitError::Io(error)) => assert_eq!(error.kind(), io::ErrorKind::TimedOut),
            other => panic!("expected a timeout, got {other:?}"),
        }
    }
}
