//! The one error type of the ABI layer.

use crate::mem::MemError;

/// Why a byte string or a memory structure is not valid OP-TEE ABI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AbiError {
    /// fewer bytes than the structure needs
    #[error("truncated: need {needed} bytes, have {have}")]
    Truncated { needed: usize, have: usize },
    /// more params than this side accepts
    #[error("{count} params exceed the maximum of {max}")]
    TooManyParams { count: u32, max: usize },
    /// a param attribute whose type is not defined
    #[error("unknown param attribute {0:#x}")]
    BadAttr(u64),
    /// an output buffer too small for the encoding
    #[error("output buffer of {have} bytes, need {needed}")]
    BufferTooSmall { needed: usize, have: usize },
    /// a page-list pointer or entry that is not page-aligned
    #[error("address {pa:#x} is not page-aligned")]
    Misaligned { pa: u64 },
    /// a page-list pointer or entry outside normal-world RAM
    #[error("address {pa:#x} is outside normal-world RAM")]
    OutsideRam { pa: u64 },
    /// a page list that describes no pages
    #[error("empty page list")]
    EmptyPageList,
    /// the page-list buffer offset is not below the page size
    #[error("buffer offset {0:#x} is not inside the first page")]
    BadOffset(u64),
    /// a buffer whose offset plus size does not fit in 64 bits
    #[error("buffer of {size:#x} bytes at offset {offset:#x} spans past the address space")]
    SpanOverflow { offset: u64, size: u64 },
    /// the number of list pages supplied does not match the data pages
    #[error("{have} list pages supplied for a list that needs {needed}")]
    ListPageCount { needed: usize, have: usize },
    /// a string that is not a UUID
    #[error("malformed UUID")]
    BadUuid,
    /// a memory access failed
    #[error(transparent)]
    Mem(#[from] MemError),
}
