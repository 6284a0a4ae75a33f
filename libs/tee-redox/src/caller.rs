//! Who made a scheme request: the pid, uid and gid Redox's kernel reports with it (redox-scheme
//! `CallerCtx`). The adapters take this type instead, because a `CallerCtx` cannot be built
//! outside redox-scheme (its `id` field is private), and so could not be built in tests.
//!
//! The kernel fills uid and gid only for `openat` (redox-scheme 0.12 `SchemeSync::call` says so
//! for `call`); that is why every adapter checks identity when a path is opened, and from then
//! on only that the handle is used by the process that opened it.

/// The caller of one scheme request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub pid: usize,
    pub uid: u32,
    pub gid: u32,
}

impl Caller {
    /// Whether the caller is root (uid 0), which alone may open `control` paths.
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }
}
