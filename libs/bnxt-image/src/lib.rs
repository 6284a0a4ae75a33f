//! The BNXT NIC's crash dump as both worlds agree on it.
//!
//! The secure world's BNXT pseudo TA serves a deterministic 8 MiB image through COPY_COREDUMP
//! (core/pta/bcm/bnxt.c upstream copies the NIC's real dump); whoever receives the dump (bnxtd's
//! tests, teectl, the simulator) checks it against the same image here. This crate is the one
//! fact both sides share, so neither has to link the other.
#![no_std]

/// Length of the NIC crash dump (ethtool's dump is 8 MiB).
pub const COREDUMP_LEN: u64 = 8 << 20;

/// Seed of the dump image; any fixed value would do.
const IMAGE_SEED: u64 = 0x6272_636d_2019_0716;

/// FNV-1a 64-bit offset basis: the checksum of no bytes.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// SplitMix64 finaliser: a cheap, well-mixed function of the word index.
const fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Byte `index` of the dump image (any index; only `< COREDUMP_LEN` is ever copied).
pub const fn coredump_byte(index: u64) -> u8 {
    mix(IMAGE_SEED ^ (index / 8)).to_le_bytes()[(index % 8) as usize]
}

/// Fills `out` with the image bytes starting at `offset`; `None` when the range leaves the
/// 8 MiB image.
pub fn coredump_chunk(offset: u64, out: &mut [u8]) -> Option<()> {
    let end = offset.checked_add(out.len() as u64)?;
    if end > COREDUMP_LEN {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = coredump_byte(offset + i as u64);
    }
    Some(())
}

/// FNV-1a (64-bit) of `bytes`: the checksum the consumers compare.
pub fn checksum(bytes: &[u8]) -> u64 {
    checksum_update(FNV_OFFSET, bytes)
}

fn checksum_update(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// [`checksum`] of the image slice `offset..offset+len`; `None` when it leaves the image.
pub fn coredump_checksum(offset: u64, len: u64) -> Option<u64> {
    let end = offset.checked_add(len)?;
    if end > COREDUMP_LEN {
        return None;
    }
    let mut hash = FNV_OFFSET;
    let mut chunk = [0u8; 4096];
    let mut at = offset;
    while at < end {
        let here = (end - at).min(chunk.len() as u64) as usize;
        coredump_chunk(at, &mut chunk[..here])?;
        hash = checksum_update(hash, &chunk[..here]);
        at += here as u64;
    }
    Some(hash)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    extern crate std;
    use super::*;
    use std::vec;

    #[test]
    fn image_is_deterministic_and_not_trivial() {
        let mut a = [0u8; 64];
        let mut b = [0u8; 64];
        coredump_chunk(1000, &mut a).unwrap();
        coredump_chunk(1000, &mut b).unwrap();
        assert_eq!(a, b);
        assert_eq!(a[5], coredump_byte(1005));
        // Not constant, not a plain counter.
        assert!(a.iter().any(|&x| x != a[0]));
        assert!(a.windows(2).any(|w| w[1] != w[0].wrapping_add(1)));
        assert!(coredump_chunk(COREDUMP_LEN - 63, &mut a).is_none());
        assert!(coredump_chunk(COREDUMP_LEN - 64, &mut a).is_some());
    }

    #[test]
    fn checksum_of_slice_matches_bytes() {
        let mut bytes = vec![0u8; 200_000];
        coredump_chunk(12_345, &mut bytes).unwrap();
        assert_eq!(coredump_checksum(12_345, 200_000), Some(checksum(&bytes)));
        assert_ne!(coredump_checksum(12_346, 200_000), Some(checksum(&bytes)));
        assert_eq!(coredump_checksum(COREDUMP_LEN, 1), None);
        assert_eq!(checksum(b""), 0xcbf2_9ce4_8422_2325);
    }
}
