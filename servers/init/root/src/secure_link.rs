//! init's requests to the secure world over its control channel (statistics, machine reset)
//! as asynchronous requests with deadlines: sent without blocking, answered through the host's
//! poll, and failed when their deadline passes, so a slow or silent secure world costs init a
//! missing figure, never a stalled loop.
//!
//! The channel is `tee_rt::secure_link`'s: an inherited endpoint, one for the life of the stack.
//! A request past its deadline fails alone; its answer, should it still come, is dropped by
//! its request id. The two calls init must see answered before it goes on (a window placed at
//! start-up, a conduit for teed) wait, bounded, through [`SecureLink::link`].

use std::collections::VecDeque;
use std::os::fd::BorrowedFd;

use tee_proto::secure::{SecureRequest, SecureResponse};
use tee_rt::endpoint::Endpoint;
use tee_rt::secure_link::LinkError;

/// The secure world's answer to one request, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SecureAnswer {
    Answered(SecureResponse),
    /// No answer by the deadline, or the channel failed.
    Failed,
}

#[derive(Debug, Clone, Copy)]
struct Waiting {
    id: u32,
    deadline: u64,
}

#[derive(Debug)]
pub(crate) struct SecureLink {
    link: tee_rt::secure_link::SecureLink,
    waiting: VecDeque<Waiting>,
}

impl SecureLink {
    pub fn new(endpoint: Endpoint) -> SecureLink {
        SecureLink {
            link: tee_rt::secure_link::SecureLink::new(endpoint),
            waiting: VecDeque::new(),
        }
    }

    /// The channel for the bounded, waiting calls.
    pub fn link(&mut self) -> &mut tee_rt::secure_link::SecureLink {
        &mut self.link
    }

    /// Sends `request`, to be answered within `within_ms`; its answer comes back from
    /// [`SecureLink::on_ready`] or [`SecureLink::expire`] under the returned id.
    pub fn send(
        &mut self,
        now: u64,
        request: SecureRequest,
        within_ms: u64,
    ) -> Result<u32, LinkError> {
        let id = self.link.send(request, None)?;
        self.waiting.push_back(Waiting {
            id,
            deadline: now.saturating_add(within_ms),
        });
        Ok(id)
    }

    /// The channel to poll while requests wait (never for writing: a packet goes whole).
    pub fn poll_entry(&self) -> Option<(BorrowedFd<'_>, bool)> {
        (!self.waiting.is_empty()).then(|| (self.link.as_fd(), false))
    }

    /// The answers that arrived for requests still waiting.
    pub fn on_ready(&mut self) -> Vec<(u32, SecureAnswer)> {
        let mut answers = Vec::new();
        loop {
            match self.link.try_recv() {
                Ok(Some(answer)) => {
                    let before = self.waiting.len();
                    self.waiting.retain(|waiting| waiting.id != answer.id);
                    if self.waiting.len() < before {
                        answers.push((answer.id, SecureAnswer::Answered(answer.response)));
                    } else {
                        tracing::debug!(id = answer.id, "late secure-world answer dropped");
                    }
                }
                Ok(None) => return answers,
                Err(error) => {
                    tracing::warn!(%error, "secure world control channel failed");
                    answers.extend(self.fail_all());
                    return answers;
                }
            }
        }
    }

    /// Fails the requests whose deadline passed at `now`.
    pub fn expire(&mut self, now: u64) -> Vec<(u32, SecureAnswer)> {
        let mut failed = Vec::new();
        self.waiting.retain(|waiting| {
            if waiting.deadline <= now {
                tracing::warn!(request = waiting.id, "secure world did not answer in time");
                failed.push((waiting.id, SecureAnswer::Failed));
                false
            } else {
                true
            }
        });
        failed
    }

    pub fn next_deadline(&self) -> Option<u64> {
        self.waiting.iter().map(|waiting| waiting.deadline).min()
    }

    /// Gives up on every waiting request (a reset restarts the secure world's side anyway).
    pub fn reconnect(&mut self) -> Vec<(u32, SecureAnswer)> {
        self.fail_all()
    }

    fn fail_all(&mut self) -> Vec<(u32, SecureAnswer)> {
        self.waiting
            .drain(..)
            .map(|waiting| (waiting.id, SecureAnswer::Failed))
            .collect()
    }
}
