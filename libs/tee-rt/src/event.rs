//! A small `poll(2)` helper for the shells' event loops.
//!
//! A shell rebuilds a [`PollSet`] on every turn from the descriptors it holds right now (a
//! handful), waits with the core's next deadline as the timeout, and dispatches on the
//! [`Token`]s that came back. Rebuilding keeps registration free of lifetimes and stale entries.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// The caller's name for a registered descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Token(pub u64);

/// What to wait for on a descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest {
    pub readable: bool,
    pub writable: bool,
}

impl Interest {
    /// Data (or a connection, or the peer's close) to read.
    pub const READABLE: Interest = Interest {
        readable: true,
        writable: false,
    };
    /// Room to write, and everything `READABLE` waits for.
    pub const READ_WRITE: Interest = Interest {
        readable: true,
        writable: true,
    };
}

/// What `poll` reported for one descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    pub token: Token,
    pub readable: bool,
    pub writable: bool,
    /// The peer hung up; a read will say so (or drain what is left first).
    pub hangup: bool,
    /// An error condition or an invalid descriptor.
    pub error: bool,
}

impl Readiness {
    /// Whether a read should be attempted: data, a hang-up or an error all show on read.
    pub fn should_read(&self) -> bool {
        self.readable || self.hangup || self.error
    }
}

/// The descriptors to wait on for one turn of an event loop.
#[derive(Debug, Default)]
pub struct PollSet<'fd> {
    fds: Vec<PollFd<'fd>>,
    tokens: Vec<Token>,
}

impl<'fd> PollSet<'fd> {
    pub fn new() -> PollSet<'fd> {
        PollSet {
            fds: Vec::new(),
            tokens: Vec::new(),
        }
    }

    /// Adds `fd`, reported as `token`.
    pub fn register(&mut self, fd: BorrowedFd<'fd>, token: Token, interest: Interest) {
        let mut events = PollFlags::empty();
        if interest.readable {
            events |= PollFlags::POLLIN;
        }
        if interest.writable {
            events |= PollFlags::POLLOUT;
        }
        self.fds.push(PollFd::new(fd, events));
        self.tokens.push(token);
    }

    /// Number of registered descriptors.
    pub fn len(&self) -> usize {
        self.fds.len()
    }

    /// True when nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    /// Waits until a descriptor is ready or `timeout` passes (`None`: no timeout). Returns the
    /// ready descriptors, empty on timeout or on a signal interrupting the wait.
    pub fn wait(&mut self, timeout: Option<Duration>) -> io::Result<Vec<Readiness>> {
        let timeout = match timeout {
            None => PollTimeout::NONE,
            Some(duration) => poll_millis(duration),
        };
        match poll(&mut self.fds, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
        let ready = self
            .fds
            .iter()
            .zip(&self.tokens)
            .filter_map(|(fd, token)| {
                let revents = fd.revents().unwrap_or(PollFlags::empty());
                if revents.is_empty() {
                    return None;
                }
                Some(Readiness {
                    token: *token,
                    readable: revents.contains(PollFlags::POLLIN),
                    writable: revents.contains(PollFlags::POLLOUT),
                    hangup: revents.contains(PollFlags::POLLHUP),
                    error: revents.intersects(PollFlags::POLLERR | PollFlags::POLLNVAL),
                })
            })
            .collect();
        Ok(ready)
    }
}

/// Milliseconds for `poll`, rounded up so a loop never wakes just before its deadline and
/// spins, and capped at what `poll` accepts.
fn poll_millis(duration: Duration) -> PollTimeout {
    let mut millis = duration.as_millis();
    if Duration::from_millis(millis as u64) < duration {
        millis += 1;
    }
    let millis = i32::try_from(millis).unwrap_or(i32::MAX);
    PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::endpoint::Endpoint;
    use std::time::Instant;

    #[test]
    fn reports_only_the_ready_descriptor_by_its_token() {
        let (a, b) = Endpoint::pair().unwrap();
        let (c, d) = Endpoint::pair().unwrap();
        a.send(b"ping", &[]).unwrap();
        let mut set = PollSet::new();
        set.register(b.as_fd(), Token(1), Interest::READABLE);
        set.register(d.as_fd(), Token(2), Interest::READABLE);
        assert_eq!(set.len(), 2);
        let ready = set.wait(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].token, Token(1));
        assert!(ready[0].readable && ready[0].should_read());
        drop(c);
    }

    #[test]
    fn a_hang_up_is_reported_as_something_to_read() {
        let (a, b) = Endpoint::pair().unwrap();
        drop(a);
        let mut set = PollSet::new();
        set.register(b.as_fd(), Token(9), Interest::READABLE);
        let ready = set.wait(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(ready.len(), 1);
        assert!(ready[0].hangup && ready[0].should_read());
    }

    #[test]
    fn times_out_empty_and_not_early() {
        let (_a, b) = Endpoint::pair().unwrap();
        let mut set = PollSet::new();
        set.register(b.as_fd(), Token(0), Interest::READABLE);
        let started = Instant::now();
        let ready = set.wait(Some(Duration::from_micros(20_500))).unwrap();
        assert!(ready.is_empty());
        assert!(started.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn writable_interest_is_reported() {
        let (a, _b) = Endpoint::pair().unwrap();
        let mut set = PollSet::new();
        set.register(a.as_fd(), Token(4), Interest::READ_WRITE);
        let ready = set.wait(Some(Duration::ZERO)).unwrap();
        assert_eq!(ready.len(), 1);
        assert!(ready[0].writable && !ready[0].readable);
    }

    #[test]
    fn timeouts_round_up_and_saturate() {
        assert_eq!(
            poll_millis(Duration::from_micros(1)),
            PollTimeout::try_from(1i32).unwrap()
        );
        assert_eq!(poll_millis(Duration::ZERO), PollTimeout::ZERO);
        assert_eq!(poll_millis(Duration::from_secs(u64::MAX)), PollTimeout::MAX);
    }
}
