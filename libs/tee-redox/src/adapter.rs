//! The one interface between the Redox-only shim and a daemon's scheme adapter: the scheme
//! operations a teesys scheme serves, with a [`Caller`] instead of redox-scheme's `CallerCtx`,
//! and the hooks the event loop needs (time, readiness, start-up).

use tee_proto::lifecycle::DeclineReason;
use tee_proto::Generation;

use crate::caller::Caller;
use crate::error::SchemeError;
use crate::Millis;

/// What `fevent` reports for a handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ready {
    /// A message is queued: a `read` will not block.
    pub read: bool,
    /// A `write` is accepted now.
    pub write: bool,
}

/// How the daemon's own `Hello` was answered by its core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Startup {
    /// Not answered yet (teed probing, a client opening its session).
    Pending,
    /// Serving as this generation.
    Ready { generation: Generation },
    /// The core will not serve this boot; the scheme stays up and answers "TEE unavailable".
    Declined(DeclineReason),
    /// The core refused the `Hello` itself (a bug: the daemon built it).
    Refused,
}

impl Startup {
    /// Whether the daemon may signal readiness: its core answered, and the scheme answers
    /// every request from now on (a declined teed answers "TEE unavailable").
    pub fn settled(&self) -> bool {
        matches!(self, Startup::Ready { .. } | Startup::Declined(_))
    }
}

/// A teesys scheme as the Redox event loop drives it. Every operation names the handle by the
/// id the adapter returned from [`SchemeAdapter::open`], and is refused for any other process
/// than the one that opened it.
pub trait SchemeAdapter {
    /// The scheme's name (`/scheme/<name>`).
    fn name(&self) -> &'static str;

    /// Opens `path` (relative to the scheme root) for `caller`.
    fn open(&mut self, path: &str, caller: &Caller) -> Result<usize, SchemeError>;

    /// Reads the next whole message of handle `id` (or, for a `window`, its placement).
    fn read(&mut self, id: usize, buf: &mut [u8], caller: &Caller) -> Result<usize, SchemeError>;

    /// Writes one whole message to handle `id`; returns its length.
    fn write(&mut self, id: usize, buf: &[u8], caller: &Caller) -> Result<usize, SchemeError>;

    /// A request in the first `request_len` bytes of `payload`, answered in place (from the
    /// start of `payload`, which may be longer than the request) when the answer is there at
    /// once; `Ok(0)` when it comes later, to `read`.
    fn call(
        &mut self,
        id: usize,
        payload: &mut [u8],
        request_len: usize,
        caller: &Caller,
    ) -> Result<usize, SchemeError>;

    /// What `fevent` reports for handle `id`.
    fn ready(&self, id: usize, caller: &Caller) -> Result<Ready, SchemeError>;

    /// Where in this process a mapping of `size` bytes at `offset` of handle `id` starts.
    fn mmap_prep(
        &mut self,
        id: usize,
        offset: u64,
        size: usize,
        caller: &Caller,
    ) -> Result<usize, SchemeError>;

    /// Handle `id` was closed (its last descriptor went away).
    fn close(&mut self, id: usize);

    /// Handles that became readable since the last call, for `fevent` notifications.
    fn take_readable(&mut self) -> Vec<usize>;

    /// The clock reads `now`: whatever deadline has passed fires.
    fn advance(&mut self, now: Millis);

    /// When [`SchemeAdapter::advance`] must next be called, if anything waits.
    fn poll_timeout(&self) -> Option<Millis>;

    /// How the daemon's own `Hello` was answered.
    fn startup(&self) -> Startup;
}
