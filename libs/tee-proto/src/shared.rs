//! The small types that both [`crate::frame`] and [`crate::error`] name, kept below both so
//! that neither imports the other. Private: they are re-exported from `frame` and the root.

use core::fmt;

/// The incarnation number of a server; 0 = unknown / first contact.
pub type Generation = u32;

/// Which part of a frame failed to decode. A receiver that got a good header and a bad body can
/// still address an error reply to the header's `request_id` (see [`crate::decode_header`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramePart {
    Header,
    Body,
}

impl fmt::Display for FramePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FramePart::Header => f.write_str("header"),
            FramePart::Body => f.write_str("body"),
        }
    }
}
