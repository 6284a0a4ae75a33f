//! The slice of the crash dump that currently sits in bnxtd's shared buffer.
//!
//! Consumers read the dump in chunks of at most 4 KiB; the TA copies up to 4 MiB per call. A
//! window is normally one of the dump's 4 MiB-aligned halves, so a reader going through the
//! dump costs two TA calls. A chunk that straddles an aligned boundary gets a window starting
//! at the chunk itself instead, which still covers every later chunk of a sequential reader
//! for the next 4 MiB.

use tee_proto::bnxt::COREDUMP_WINDOW_MAX;

/// `len` dump bytes starting at dump offset `start`, held at the start of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: u32,
    pub len: u32,
}

impl Window {
    /// The window to fetch for the chunk `[offset, offset + size)` of a dump of `dump_len`
    /// bytes. The chunk must lie inside the dump and be at most a window long.
    pub fn covering(offset: u32, size: u32, dump_len: u32) -> Window {
        let aligned = offset - offset % COREDUMP_WINDOW_MAX;
        let chunk_end = u64::from(offset) + u64::from(size);
        let aligned_end = u64::from(aligned) + u64::from(COREDUMP_WINDOW_MAX);
        let start = if chunk_end <= aligned_end {
            aligned
        } else {
            offset
        };
        Window {
            start,
            len: COREDUMP_WINDOW_MAX.min(dump_len.saturating_sub(start)),
        }
    }

    /// Whether the chunk `[offset, offset + size)` lies inside the window.
    pub fn contains(&self, offset: u32, size: u32) -> bool {
        let end = u64::from(offset) + u64::from(size);
        offset >= self.start && end <= u64::from(self.start) + u64::from(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u32 = 1 << 20;
    const DUMP: u32 = 8 * MIB;

    #[test]
    fn chunks_inside_a_half_get_that_aligned_half() {
        assert_eq!(
            Window::covering(0, 4096, DUMP),
            Window {
                start: 0,
                len: 4 * MIB
            }
        );
        assert_eq!(
            Window::covering(4 * MIB - 4096, 4096, DUMP),
            Window {
                start: 0,
                len: 4 * MIB
            }
        );
        assert_eq!(
            Window::covering(4 * MIB, 1, DUMP),
            Window {
                start: 4 * MIB,
                len: 4 * MIB
            }
        );
    }

    #[test]
    fn a_straddling_chunk_gets_a_window_starting_at_it() {
        let window = Window::covering(4 * MIB - 100, 4096, DUMP);
        assert_eq!(
            window,
            Window {
                start: 4 * MIB - 100,
                len: 4 * MIB
            }
        );
        assert!(window.contains(4 * MIB - 100, 4096));
    }

    #[test]
    fn the_window_never_runs_past_the_dump() {
        let window = Window::covering(6 * MIB + 4000, 4096, 6 * MIB + 5000);
        assert_eq!(window.start, 4 * MIB);
        assert_eq!(window.len, 2 * MIB + 5000);
    }

    #[test]
    fn contains_is_exact_at_both_edges() {
        let window = Window {
            start: 4 * MIB,
            len: 4 * MIB,
        };
        assert!(window.contains(4 * MIB, 4096));
        assert!(window.contains(8 * MIB - 4096, 4096));
        assert!(!window.contains(4 * MIB - 1, 4096));
        assert!(!window.contains(8 * MIB - 4095, 4096));
    }
}
