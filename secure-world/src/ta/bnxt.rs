//! The Broadcom BNXT firmware pseudo TA (core/pta/bcm/bnxt.c upstream; Linux tee_bnxt_fw).
//!
//! FASTBOOT loads the NIC firmware; COPY_COREDUMP copies a slice of the NIC's crash dump into
//! the client's registered buffer. The dump here is a deterministic 8 MiB image so that tests
//! elsewhere can check what they received with [`coredump_chunk`] or [`coredump_checksum`].

use optee_abi::teec;
use optee_abi::uuid::{self, Uuid};
use tracing::debug;

use super::{ClientIdentity, ParamType, SessionId, TaContext, TaFlags, TaStep, TrustedApp};

/// Command: boot the NIC firmware (4 NONE params).
pub const FASTBOOT: u32 = 0;
/// Command: p0 MEMREF_INOUT destination, p1 VALUE_INPUT a = offset, b = size.
pub const COPY_COREDUMP: u32 = 3;
/// Length of the NIC crash dump (ethtool's dump is 8 MiB).
pub const COREDUMP_LEN: u64 = 8 << 20;

/// Seed of the dump image; any fixed value would do.
const IMAGE_SEED: u64 = 0x6272_636d_2019_0716;

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

/// FNV-1a (64-bit) of `bytes`: the checksum tests compare.
pub fn checksum(bytes: &[u8]) -> u64 {
    checksum_update(0xcbf2_9ce4_8422_2325, bytes)
}

fn checksum_update(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// [`checksum`] of the image slice `offset..offset+len`; `None` when it leaves the image.
pub fn coredump_checksum(offset: u64, len: u64) -> Option<u64> {
    let end = offset.checked_add(len)?;
    if end > COREDUMP_LEN {
        return None;
    }
    let mut hash = 0xcbf2_9ce4_8422_2325;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut at = offset;
    while at < end {
        let here = (end - at).min(chunk.len() as u64) as usize;
        coredump_chunk(at, &mut chunk[..here])?;
        hash = checksum_update(hash, &chunk[..here]);
        at += here as u64;
    }
    Some(hash)
}

/// The BNXT pseudo TA.
#[derive(Debug, Default)]
pub struct BnxtTa {
    /// FASTBOOTs since the instance was loaded (volatile).
    fastboots: u64,
}

impl BnxtTa {
    pub fn new() -> BnxtTa {
        BnxtTa::default()
    }

    /// FASTBOOT commands served since load or reset.
    pub fn fastboots(&self) -> u64 {
        self.fastboots
    }

    fn copy_coredump(ctx: &mut TaContext<'_>) -> u32 {
        let expected = [
            ParamType::MemrefInout,
            ParamType::ValueInput,
            ParamType::None,
            ParamType::None,
        ];
        if ctx.param_types() != expected {
            return teec::ERROR_BAD_PARAMETERS;
        }
        let Ok((offset, size, _)) = ctx.value(1) else {
            return teec::ERROR_BAD_PARAMETERS;
        };
        let Ok(capacity) = ctx.memref_size(0) else {
            return teec::ERROR_BAD_PARAMETERS;
        };
        let in_image = offset
            .checked_add(size)
            .is_some_and(|end| end <= COREDUMP_LEN);
        if !in_image || size > capacity {
            return teec::ERROR_BAD_PARAMETERS;
        }
        let mut chunk = vec![0u8; 64 * 1024];
        let mut done = 0u64;
        while done < size {
            let here = (size - done).min(chunk.len() as u64) as usize;
            if coredump_chunk(offset + done, &mut chunk[..here]).is_none()
                || ctx.write_memref(0, done, &chunk[..here]).is_err()
            {
                return teec::ERROR_BAD_PARAMETERS;
            }
            done += here as u64;
        }
        teec::SUCCESS
    }
}

impl TrustedApp for BnxtTa {
    fn uuid(&self) -> Uuid {
        uuid::BNXT_TA
    }

    /// PTA_DEFAULT_FLAGS | TA_FLAG_DEVICE_ENUM, as upstream registers it: many sessions may
    /// be open at once, which is why leaked bnxt sessions never block the next boot.
    fn flags(&self) -> TaFlags {
        TaFlags::PTA_DEFAULT.union(TaFlags::DEVICE_ENUM)
    }

    fn name(&self) -> &'static str {
        "pta_bnxt"
    }

    fn open_session(&mut self, _: SessionId, _: &ClientIdentity, _: &mut TaContext<'_>) -> u32 {
        teec::SUCCESS
    }

    fn invoke(&mut self, session: SessionId, func: u32, ctx: &mut TaContext<'_>) -> TaStep {
        // The Linux client always sends four params; the model holds clients to that.
        if ctx.params_passed() != 4 {
            return TaStep::Complete(teec::ERROR_BAD_PARAMETERS);
        }
        let result = match func {
            FASTBOOT => {
                if ctx.param_types().iter().all(|t| *t == ParamType::None) {
                    self.fastboots += 1;
                    teec::SUCCESS
                } else {
                    teec::ERROR_BAD_PARAMETERS
                }
            }
            COPY_COREDUMP => Self::copy_coredump(ctx),
            _ => teec::ERROR_NOT_SUPPORTED,
        };
        debug!(
            session,
            func,
            result = teec::result_name(result),
            "bnxt invoke"
        );
        TaStep::Complete(result)
    }

    fn close_session(&mut self, _: SessionId) {}

    fn unload(&mut self) {
        self.fastboots = 0;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
