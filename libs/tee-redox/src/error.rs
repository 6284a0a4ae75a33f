//! What an adapter answers when it cannot do what a request asks, and the errno each becomes.
//!
//! Only failures of the scheme operation itself are errno: a request that reached a core and
//! failed there is answered in the interface's own terms (a `WireError` in a frame, a TPM
//! response code), as on every other platform.

use syscall::error as errno;

/// A scheme operation refused by an adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SchemeError {
    /// The path names nothing this scheme serves.
    #[error("no such path in this scheme")]
    NoSuchPath,
    /// The caller's identity may not open this path (see `policy`).
    #[error("the caller may not open this path")]
    Denied,
    /// The handle is not open.
    #[error("no such handle")]
    BadHandle,
    /// The handle was opened by another process: handles are not transferable.
    #[error("the handle belongs to another process")]
    NotOwner,
    /// This path does not support the operation.
    #[error("not supported on this path")]
    NotSupported,
    /// Nothing to read yet; the loop parks a blocking read until there is.
    #[error("nothing to read yet")]
    WouldBlock,
    /// The buffer is shorter than the next message, which stays queued.
    #[error("a {got}-byte buffer cannot hold the {need}-byte message")]
    BufferTooSmall { need: usize, got: usize },
    /// A write larger than any message of the path.
    #[error("a {len}-byte message exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    /// The bytes are not a message of the path's protocol.
    #[error("the message does not decode")]
    Malformed,
    /// The path admits one handle at a time (or one per client incarnation), and it is open.
    #[error("already open")]
    Busy,
    /// An offset or size outside what the handle maps, or not page-aligned.
    #[error("outside the mapping")]
    OutOfRange,
    /// The peer's queue is full: it is not reading its answers.
    #[error("the handle's queue is full")]
    QueueFull,
}

impl SchemeError {
    /// The errno the kernel hands the caller.
    pub fn errno(self) -> i32 {
        match self {
            SchemeError::NoSuchPath => errno::ENOENT,
            SchemeError::Denied => errno::EACCES,
            SchemeError::BadHandle => errno::EBADF,
            SchemeError::NotOwner => errno::EPERM,
            SchemeError::NotSupported => errno::EOPNOTSUPP,
            SchemeError::WouldBlock => errno::EAGAIN,
            SchemeError::BufferTooSmall { .. } | SchemeError::OutOfRange => errno::EINVAL,
            SchemeError::TooLarge { .. } => errno::EMSGSIZE,
            SchemeError::Malformed => errno::EBADMSG,
            SchemeError::Busy => errno::EBUSY,
            SchemeError::QueueFull => errno::ENOBUFS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values as Redox's syscall crate defines them (redox_syscall 0.9.5 `src/error.rs`); a
    /// changed mapping shows here.
    #[test]
    fn each_error_has_its_errno() {
        let table = [
            (SchemeError::NoSuchPath, 2),
            (SchemeError::Denied, 13),
            (SchemeError::BadHandle, 9),
            (SchemeError::NotOwner, 1),
            (SchemeError::NotSupported, 95),
            (SchemeError::WouldBlock, 11),
            (SchemeError::BufferTooSmall { need: 2, got: 1 }, 22),
            (SchemeError::OutOfRange, 22),
            (SchemeError::TooLarge { len: 2, max: 1 }, 90),
            (SchemeError::Malformed, 74),
            (SchemeError::Busy, 16),
            (SchemeError::QueueFull, 105),
        ];
        for (error, expected) in table {
            assert_eq!(error.errno(), expected, "{error}");
        }
    }
}
