//! The one loop of the host: `poll(2)` over the control socket, idle control connections and
//! lifecycle endpoints, with the supervisor's next deadline as the timeout.

use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

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
    ControlConn(usize),
    Lifecycle(usize),
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
            if self.down.finished && self.op.is_none() && self.replies.is_empty() {
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
        let now = self.now();
        let reap = if self.procs.iter().flatten().any(|p| p.hung_up) {
            REAP_SOON_MS
        } else {
            REAP_INTERVAL_MS
        };
        [self.sup.poll_timeout(), self.control_deadline()]
            .into_iter()
            .flatten()
            .map(|at| at.saturating_sub(now))
            .fold(reap, u64::min)
    }

    fn wait(&self, timeout_ms: u64) -> Result<Vec<Token>, HostError> {
        let mut tokens = vec![Token::ControlListener];
        let mut fds = vec![PollFd::new(self.control.as_fd(), PollFlags::POLLIN)];
        for (index, conn) in self.idle_conns.iter().enumerate() {
            tokens.push(Token::ControlConn(index));
            fds.push(PollFd::new(conn.as_fd(), PollFlags::POLLIN));
        }
        for (index, process) in self.procs.iter().enumerate() {
            if let Some(process) = process.as_ref().filter(|p| !p.hung_up) {
                tokens.push(Token::Lifecycle(index));
                fds.push(PollFd::new(process.lifecycle_fd(), PollFlags::POLLIN));
            }
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
            .filter(|(_, fd)| fd.revents().is_some_and(|events| !events.is_empty()))
            .map(|(token, _)| token)
            .collect())
    }

    fn dispatch(&mut self, ready: &[Token]) {
        // Ready connections leave the idle list first (highest index first keeps the others'
        // indices valid); each goes back after its answer.
        let mut conn_indices: Vec<usize> = ready
            .iter()
            .filter_map(|token| match token {
                Token::ControlConn(index) => Some(*index),
                _ => None,
            })
            .collect();
        conn_indices.sort_unstable_by(|a, b| b.cmp(a));
        let conns: Vec<_> = conn_indices
            .into_iter()
            .map(|index| self.idle_conns.swap_remove(index))
            .collect();
        for token in ready {
            match token {
                Token::ControlListener => self.accept_control(),
                Token::Lifecycle(index) => self.receive_lifecycle(*index),
                Token::ControlConn(_) => {}
            }
        }
        for conn in conns {
            self.serve_control(conn);
            self.drain_effects();
        }
    }
}
