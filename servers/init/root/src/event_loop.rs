//! The one loop of the host: `poll(2)` over the control socket and its connections, the
//! lifecycle endpoints and the secure world's control connection, with the earliest deadline
//! (the supervisor's, a reply's, a connection's, a secure-world request's) as the timeout.

use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::control_conns::ConnId;
use crate::shell::Host;
use crate::HostError;

/// Exits are also looked for at least this often (an exit normally shows at once as a hang-up
/// of the lifecycle endpoint).
const REAP_INTERVAL_MS: u64 = 100;

/// While a hung-up server has not been reaped yet, look again this soon.
const REAP_SOON_MS: u64 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    ControlListener,
    ControlConn(ConnId),
    Lifecycle(usize),
    Secure,
}

#[derive(Debug, Clone, Copy)]
struct Ready {
    token: Token,
    readable: bool,
    writable: bool,
}

impl Host {
    /// Boots the normal world and serves until an operator `Down` has been answered.
    pub fn run(mut self) -> Result<(), HostError> {
        tracing::info!(state_dir = %self.paths.dir().display(), "init up");
        self.cold_boot();
        loop {
            self.drain_effects();
            self.progress_op();
            self.progress_replies();
            if self.down.finished
                && self.op.is_none()
                && self.replies.is_empty()
                && !self.conns.wants_write()
            {
                break;
            }
            let timeout = self.wait_ms();
            let ready = match self.wait(timeout) {
                Ok(ready) => ready,
                Err(error) => {
                    self.tear_down();
                    return Err(error);
                }
            };
            self.dispatch(&ready);
            self.reap_exited();
            let now = self.now();
            self.conns.expire(now);
            let failed = self.secure.expire(now);
            self.on_secure_answers(failed);
            if self.sup.poll_timeout().is_some_and(|at| at <= now) {
                self.sup.handle_timeout(now);
            }
        }
        tracing::info!("init down");
        self.tear_down();
        Ok(())
    }

    /// How long the next poll may sleep.
    fn wait_ms(&self) -> u64 {
        if self.conns.has_resumable() {
            return 0;
        }
        let now = self.now();
        let reap = if self.procs.iter().flatten().any(|p| p.hung_up) {
            REAP_SOON_MS
        } else {
            REAP_INTERVAL_MS
        };
        [
            self.sup.poll_timeout(),
            self.control_deadline(),
            self.conns.next_deadline(),
            self.secure.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .map(|at| at.saturating_sub(now))
        .fold(reap, u64::min)
    }

    fn wait(&self, timeout_ms: u64) -> Result<Vec<Ready>, HostError> {
        let flags = |read: bool, write: bool| {
            let mut flags = PollFlags::empty();
            flags.set(PollFlags::POLLIN, read);
            flags.set(PollFlags::POLLOUT, write);
            flags
        };
        let mut tokens = vec![Token::ControlListener];
        let mut fds = vec![PollFd::new(self.control.as_fd(), PollFlags::POLLIN)];
        for (id, fd, read, write) in self.conns.poll_entries() {
            tokens.push(Token::ControlConn(id));
            fds.push(PollFd::new(fd, flags(read, write)));
        }
        for (index, process) in self.procs.iter().enumerate() {
            if let Some(process) = process.as_ref().filter(|p| !p.hung_up) {
                tokens.push(Token::Lifecycle(index));
                fds.push(PollFd::new(process.lifecycle_fd(), PollFlags::POLLIN));
            }
        }
        if let Some((fd, write)) = self.secure.poll_entry() {
            tokens.push(Token::Secure);
            fds.push(PollFd::new(fd, flags(true, write)));
        }
        let timeout = PollTimeout::from(u16::try_from(timeout_ms).unwrap_or(u16::MAX));
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => return Ok(Vec::new()),
            Err(errno) => return Err(HostError::Poll(errno.into())),
        }
        Ok(tokens
            .into_iter()
            .zip(&fds)
            .filter_map(|(token, fd)| {
                let events = fd.revents().filter(|events| !events.is_empty())?;
                // A hang-up or an error shows on read.
                let readable = events.intersects(
                    PollFlags::POLLIN
                        | PollFlags::POLLHUP
                        | PollFlags::POLLERR
                        | PollFlags::POLLNVAL,
                );
                Some(Ready {
                    token,
                    readable,
                    writable: events.contains(PollFlags::POLLOUT),
                })
            })
            .collect())
    }

    fn dispatch(&mut self, ready: &[Ready]) {
        for ready in ready {
            match ready.token {
                Token::ControlListener => self.accept_control(),
                Token::Lifecycle(index) => self.receive_lifecycle(index),
                Token::Secure => {
                    let answers = self.secure.on_ready();
                    self.on_secure_answers(answers);
                }
                Token::ControlConn(_) => {}
            }
        }
        for ready in ready {
            let Token::ControlConn(id) = ready.token else {
                continue;
            };
            if ready.writable {
                let now = self.now();
                self.conns.flush(now, id);
            }
            if ready.readable {
                self.serve_control(id);
                self.drain_effects();
            }
        }
        while let Some(id) = self.conns.take_resumable() {
            self.serve_control(id);
            self.drain_effects();
        }
    }
}
