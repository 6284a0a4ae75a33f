//! init's end of the control port: lines out with a bounded write, lines in without blocking.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use teesys_guest::ctl::{encode, GuestEvent, HostCommand, LineBuffer, CTL_PORT_NAME};

/// How long a line to the launcher may take to go out.
const WRITE_BOUND: Duration = Duration::from_secs(5);

pub struct CtlPort {
    port: File,
    lines: LineBuffer,
}

impl CtlPort {
    /// Finds the port by name and opens it, waiting (bounded) for the driver to create it.
    pub fn open(within: Duration) -> io::Result<CtlPort> {
        let give_up = Instant::now() + within;
        loop {
            match tee_rt::virtio_port::find_port(CTL_PORT_NAME) {
                Ok(path) => {
                    let port = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
                        .open(&path)?;
                    return Ok(CtlPort {
                        port,
                        lines: LineBuffer::default(),
                    });
                }
                Err(error) if Instant::now() >= give_up => return Err(error),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.port.as_fd()
    }

    /// Sends one event; a launcher that does not read within the bound loses it (logged).
    pub fn send(&mut self, event: &GuestEvent) {
        let line = match encode(event) {
            Ok(line) => line,
            Err(error) => {
                tracing::error!(%error, "event not encodable");
                return;
            }
        };
        if let Err(error) = self.write_all(line.as_bytes()) {
            tracing::error!(%error, ?event, "event to the launcher lost");
        }
    }

    fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        let give_up = Instant::now() + WRITE_BOUND;
        while !bytes.is_empty() {
            match self.port.write(bytes) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => bytes = &bytes[n..],
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    let left = give_up.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(io::Error::from(io::ErrorKind::TimedOut));
                    }
                    wait(self.port.as_fd(), PollFlags::POLLOUT, left)?;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// The commands that arrived, without blocking.
    pub fn receive(&mut self) -> Vec<HostCommand> {
        let mut commands = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match self.port.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    for line in self.lines.push(&buf[..n]) {
                        match line.map(|l| serde_json::from_str::<HostCommand>(&l)) {
                            Ok(Ok(command)) => commands.push(command),
                            Ok(Err(error)) => tracing::warn!(%error, "bad command line dropped"),
                            Err(error) => tracing::warn!(%error, "command line dropped"),
                        }
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    tracing::warn!(%error, "control port read failed");
                    break;
                }
            }
        }
        commands
    }

    /// Waits (bounded) for the launcher's `Go`; other commands that come meanwhile are
    /// answered as refused, since the world is on its way out. False when none came in time.
    pub fn await_go(&mut self, within: Duration) -> bool {
        let give_up = Instant::now() + within;
        loop {
            for command in self.receive() {
                match command {
                    HostCommand::Go => return true,
                    other => tracing::warn!(?other, "command during a transition ignored"),
                }
            }
            let left = give_up.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            if let Err(error) = wait(self.port.as_fd(), PollFlags::POLLIN, left) {
                tracing::warn!(%error, "control port wait failed");
                return false;
            }
        }
    }
}

fn wait(fd: BorrowedFd<'_>, events: PollFlags, within: Duration) -> io::Result<()> {
    let ms = u16::try_from(within.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(fd, events)];
    match poll(&mut fds, PollTimeout::from(ms)) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
        Err(errno) => Err(errno.into()),
    }
}
