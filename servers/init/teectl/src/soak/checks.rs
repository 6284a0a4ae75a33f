//! What a correct answer is, for every kind of consumer traffic the live chaos soak sends:
//! pure functions, so each rule is tested without a stack.

use serde::Serialize;

/// An answer that is wrong: not an error the protocol allows, but a lie.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error(
        "NV counter lost an acknowledged increment: read {value}, \
         at least {expected} expected ({acknowledged} acknowledged since {base})"
    )]
    CounterBehind {
        value: u64,
        expected: u64,
        acknowledged: u64,
        base: u64,
    },
    #[error(
        "NV counter ahead of every increment sent: read {value}, \
         at most {limit} possible ({attempted} sent since {base})"
    )]
    CounterAhead {
        value: u64,
        limit: u64,
        attempted: u64,
        base: u64,
    },
    #[error("NV counter went backwards: read {value} after {previous}")]
    CounterBackwards { value: u64, previous: u64 },
    #[error("GetRandom({asked}) returned {got} bytes")]
    RandomLength { asked: u16, got: usize },
    #[error("GetRandom({asked}) returned the previous answer again")]
    RandomRepeated { asked: u16 },
    #[error("PCR digest of {len} bytes, 32 expected")]
    PcrDigestLength { len: usize },
    #[error("PCR value unchanged by an acknowledged extend in the same TPM lifetime")]
    PcrUnchanged,
    #[error("coredump is {len} bytes, {expected} expected")]
    DumpLength { len: u64, expected: u64 },
    #[error("coredump chunk answered for offset {got}, asked {asked}")]
    ChunkOffset { asked: u32, got: u32 },
    #[error("coredump chunk at {offset}: {got} bytes, {expected} expected")]
    ChunkLength {
        offset: u32,
        got: usize,
        expected: usize,
    },
    #[error("coredump chunk at {offset} differs from the image at byte {at}")]
    ChunkBytes { offset: u32, at: u64 },
    #[error("TPM answered {what} with response code {rc:#x}")]
    TpmCode { what: &'static str, rc: u32 },
    #[error("malformed answer to {0}")]
    Malformed(&'static str),
}

/// The books of the NV counter: what the TPM acknowledged against what it holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NvBook {
    /// The counter's value when the books opened (after the warm-up's increment).
    pub base: u64,
    /// Increments since `base` that the TPM answered with TPM_RC_SUCCESS.
    pub acknowledged: u64,
    /// Increments sent since `base`, answered or not: the counter may be ahead of
    /// `acknowledged` by those whose answer was lost to a restart, never beyond this.
    pub attempted: u64,
    /// The highest value read so far.
    pub last_read: u64,
    /// Reads of the counter checked against the books.
    pub reads_checked: u64,
}

impl NvBook {
    pub fn open(base: u64) -> NvBook {
        NvBook {
            base,
            last_read: base,
            ..NvBook::default()
        }
    }

    /// Call before sending an increment.
    pub fn sending(&mut self) {
        self.attempted += 1;
    }

    /// Call when the TPM answered an increment with success.
    pub fn acknowledge(&mut self) {
        self.acknowledged += 1;
    }

    /// Checks one read of the counter: `base + acknowledged <= value <= base + attempted`,
    /// and never below an earlier read.
    pub fn check_read(&mut self, value: u64) -> Result<(), Violation> {
        self.reads_checked += 1;
        let expected = self.base.saturating_add(self.acknowledged);
        if value < expected {
            return Err(Violation::CounterBehind {
                value,
                expected,
                acknowledged: self.acknowledged,
                base: self.base,
            });
        }
        let limit = self.base.saturating_add(self.attempted);
        if value > limit {
            return Err(Violation::CounterAhead {
                value,
                limit,
                attempted: self.attempted,
                base: self.base,
            });
        }
        if value < self.last_read {
            return Err(Violation::CounterBackwards {
                value,
                previous: self.last_read,
            });
        }
        self.last_read = value;
        Ok(())
    }
}

/// GetRandom(`asked`) must return exactly `asked` bytes (the soak never asks more than a
/// SHA-256 digest, the TPM's per-call limit), and 16 or more bytes never repeat the previous
/// answer of the same size.
pub fn check_random(asked: u16, got: &[u8], previous: Option<&[u8]>) -> Result<(), Violation> {
    if got.len() != usize::from(asked) {
        return Err(Violation::RandomLength {
            asked,
            got: got.len(),
        });
    }
    if asked >= 16 && previous == Some(got) {
        return Err(Violation::RandomRepeated { asked });
    }
    Ok(())
}

/// A SHA-256 PCR read before an acknowledged extend and after it, with no TPM reset between
/// (the caller guarantees it): both 32 bytes, and different (a hash chain never returns).
pub fn check_pcr_extend(before: &[u8], after: &[u8]) -> Result<(), Violation> {
    for digest in [before, after] {
        if digest.len() != 32 {
            return Err(Violation::PcrDigestLength { len: digest.len() });
        }
    }
    if before == after {
        return Err(Violation::PcrUnchanged);
    }
    Ok(())
}

/// The dump's length as bnxtd announces it.
pub fn check_dump_len(len: u32) -> Result<(), Violation> {
    if u64::from(len) != bnxt_image::COREDUMP_LEN {
        return Err(Violation::DumpLength {
            len: u64::from(len),
            expected: bnxt_image::COREDUMP_LEN,
        });
    }
    Ok(())
}

/// One coredump chunk asked at `offset` for `size` bytes: bnxtd names the same offset, gives
/// `size` bytes (fewer only where the dump ends), and they are the image's.
pub fn check_chunk(offset: u32, size: u32, got_offset: u32, data: &[u8]) -> Result<(), Violation> {
    if got_offset != offset {
        return Err(Violation::ChunkOffset {
            asked: offset,
            got: got_offset,
        });
    }
    let remaining = bnxt_image::COREDUMP_LEN.saturating_sub(u64::from(offset));
    let expected = usize::try_from(u64::from(size).min(remaining)).unwrap_or(usize::MAX);
    if data.len() != expected || data.is_empty() {
        return Err(Violation::ChunkLength {
            offset,
            got: data.len(),
            expected,
        });
    }
    let mut image = vec![0u8; data.len()];
    bnxt_image::coredump_chunk(u64::from(offset), &mut image).ok_or(Violation::ChunkLength {
        offset,
        got: data.len(),
        expected,
    })?;
    if let Some(at) = data.iter().zip(&image).position(|(a, b)| a != b) {
        return Err(Violation::ChunkBytes {
            offset,
            at: u64::from(offset) + at as u64,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nv_check_catches_a_lost_increment() {
        let mut book = NvBook::open(100);
        for _ in 0..5 {
            book.sending();
            book.acknowledge();
        }
        assert_eq!(book.check_read(105), Ok(()));
        // One more acknowledged increment, but the counter still reads 105: it was lost.
        book.sending();
        book.acknowledge();
        assert_eq!(
            book.check_read(105),
            Err(Violation::CounterBehind {
                value: 105,
                expected: 106,
                acknowledged: 6,
                base: 100
            })
        );
    }

    #[test]
    fn the_nv_check_allows_increments_whose_answer_was_lost_but_no_more() {
        let mut book = NvBook::open(0);
        book.sending();
        book.acknowledge();
        // Two sent, answers lost: the counter may be 1, 2 or 3.
        book.sending();
        book.sending();
        assert_eq!(book.check_read(3), Ok(()));
        assert!(matches!(
            book.check_read(4),
            Err(Violation::CounterAhead { limit: 3, .. })
        ));
        assert_eq!(
            book.check_read(2),
            Err(Violation::CounterBackwards {
                value: 2,
                previous: 3
            })
        );
        assert_eq!(book.reads_checked, 3);
    }

    #[test]
    fn random_answers_have_the_asked_length_and_do_not_repeat() {
        assert_eq!(check_random(4, &[1, 2, 3, 4], None), Ok(()));
        assert!(check_random(4, &[1, 2, 3], None).is_err());
        let a = [7u8; 16];
        assert_eq!(check_random(16, &a, Some(&[8u8; 16])), Ok(()));
        assert_eq!(
            check_random(16, &a, Some(&a)),
            Err(Violation::RandomRepeated { asked: 16 })
        );
        // Short answers may repeat by chance.
        assert_eq!(check_random(1, &[5], Some(&[5])), Ok(()));
    }

    #[test]
    fn an_extend_must_change_the_pcr() {
        assert_eq!(check_pcr_extend(&[0; 32], &[1; 32]), Ok(()));
        assert_eq!(
            check_pcr_extend(&[3; 32], &[3; 32]),
            Err(Violation::PcrUnchanged)
        );
        assert!(check_pcr_extend(&[0; 20], &[1; 32]).is_err());
    }

    #[test]
    fn chunks_must_be_the_image_at_their_offset() {
        let mut good = vec![0u8; 100];
        bnxt_image::coredump_chunk(4096, &mut good).unwrap_or_default();
        assert_eq!(check_chunk(4096, 100, 4096, &good), Ok(()));
        assert!(matches!(
            check_chunk(4096, 100, 0, &good),
            Err(Violation::ChunkOffset { .. })
        ));
        assert!(matches!(
            check_chunk(4096, 101, 4096, &good),
            Err(Violation::ChunkLength { .. })
        ));
        let mut bad = good.clone();
        bad[10] ^= 1;
        assert_eq!(
            check_chunk(4096, 100, 4096, &bad),
            Err(Violation::ChunkBytes {
                offset: 4096,
                at: 4106
            })
        );
        // Clipped where the dump ends.
        let end = u32::try_from(bnxt_image::COREDUMP_LEN - 10).unwrap_or(0);
        let mut tail = vec![0u8; 10];
        bnxt_image::coredump_chunk(u64::from(end), &mut tail).unwrap_or_default();
        assert_eq!(check_chunk(end, 4096, end, &tail), Ok(()));
        assert_eq!(check_dump_len(8 << 20), Ok(()));
        assert!(check_dump_len(4096).is_err());
    }
}
