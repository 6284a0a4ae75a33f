//! UUIDs in OP-TEE's octet order (RFC 4122: time_low, time_mid, time_hi big-endian, then the
//! eight clock-sequence and node octets), and their two-u64 form in OPEN_SESSION's META param.

use core::fmt;

use crate::AbiError;

/// A TA or client UUID as its 16 wire octets.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Uuid([u8; 16]);

impl Uuid {
    /// From the 16 octets in wire order.
    pub const fn from_bytes(bytes: [u8; 16]) -> Uuid {
        Uuid(bytes)
    }

    /// From the C struct fields (`TEE_UUID`).
    pub const fn from_fields(time_low: u32, time_mid: u16, time_hi: u16, node: [u8; 8]) -> Uuid {
        let l = time_low.to_be_bytes();
        let m = time_mid.to_be_bytes();
        let h = time_hi.to_be_bytes();
        Uuid([
            l[0], l[1], l[2], l[3], m[0], m[1], h[0], h[1], node[0], node[1], node[2], node[3],
            node[4], node[5], node[6], node[7],
        ])
    }

    /// The 16 wire octets.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The (a, b) value pair that carries this UUID in a VALUE param: the octets copied as they
    /// lie in memory, so each word is the little-endian reading of eight octets.
    pub fn to_value_pair(&self) -> (u64, u64) {
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        a.copy_from_slice(&self.0[..8]);
        b.copy_from_slice(&self.0[8..]);
        (u64::from_le_bytes(a), u64::from_le_bytes(b))
    }

    /// The inverse of [`Uuid::to_value_pair`].
    pub fn from_value_pair(a: u64, b: u64) -> Uuid {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&a.to_le_bytes());
        bytes[8..].copy_from_slice(&b.to_le_bytes());
        Uuid(bytes)
    }

    /// Parses the 8-4-4-4-12 hexadecimal form.
    pub fn parse(text: &str) -> Result<Uuid, AbiError> {
        let raw = text.as_bytes();
        if raw.len() != 36 {
            return Err(AbiError::BadUuid);
        }
        let mut out = [0u8; 16];
        let mut nibbles = 0usize;
        for (i, &c) in raw.iter().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                if c != b'-' {
                    return Err(AbiError::BadUuid);
                }
                continue;
            }
            let v = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return Err(AbiError::BadUuid),
            };
            out[nibbles / 2] |= if nibbles % 2 == 0 { v << 4 } else { v };
            nibbles += 1;
        }
        Ok(Uuid(out))
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uuid({self})")
    }
}

/// The fTPM TA (`tpm_ftpm_tee`).
pub const FTPM_TA: Uuid = Uuid::from_fields(
    0xbc50_d971,
    0xd4c9,
    0x42c4,
    [0x82, 0xcb, 0x34, 0x3f, 0xb7, 0xf3, 0x78, 0x96],
);
/// The Broadcom BNXT firmware TA (`tee_bnxt_fw`).
pub const BNXT_TA: Uuid = Uuid::from_fields(
    0x6272_636d,
    0x2019,
    0x0716,
    [0x42, 0x43, 0x4d, 0x5f, 0x53, 0x43, 0x48, 0x49],
);
/// The device-enumeration pseudo TA.
pub const DEVICE_PTA: Uuid = Uuid::from_fields(
    0x7011_a688,
    0xddde,
    0x4053,
    [0xa5, 0xa9, 0x7b, 0x3c, 0x4d, 0xdf, 0x13, 0xb8],
);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    extern crate std;
    use std::string::ToString;

    #[test]
    fn display_and_parse_round_trip() {
        assert_eq!(FTPM_TA.to_string(), "bc50d971-d4c9-42c4-82cb-343fb7f37896");
        assert_eq!(BNXT_TA.to_string(), "6272636d-2019-0716-4243-4d5f53434849");
        assert_eq!(
            DEVICE_PTA.to_string(),
            "7011a688-ddde-4053-a5a9-7b3c4ddf13b8"
        );
        assert_eq!(
            Uuid::parse("bc50d971-d4c9-42c4-82cb-343fb7f37896").unwrap(),
            FTPM_TA
        );
        assert_eq!(
            Uuid::parse("BC50D971-D4C9-42C4-82CB-343FB7F37896").unwrap(),
            FTPM_TA
        );
        assert_eq!(
            Uuid::parse("bc50d971_d4c9-42c4-82cb-343fb7f37896"),
            Err(AbiError::BadUuid)
        );
        assert_eq!(
            Uuid::parse("bc50d971-d4c9-42c4-82cb-343fb7f3789"),
            Err(AbiError::BadUuid)
        );
        assert_eq!(
            Uuid::parse("zc50d971-d4c9-42c4-82cb-343fb7f37896"),
            Err(AbiError::BadUuid)
        );
    }

    #[test]
    fn wire_order_is_big_endian_fields() {
        assert_eq!(&FTPM_TA.as_bytes()[..4], &[0xbc, 0x50, 0xd9, 0x71]);
        assert_eq!(&FTPM_TA.as_bytes()[4..8], &[0xd4, 0xc9, 0x42, 0xc4]);
    }

    #[test]
    fn value_pair_is_memory_copy() {
        let (a, b) = FTPM_TA.to_value_pair();
        assert_eq!(a.to_le_bytes()[0], 0xbc);
        assert_eq!(b.to_le_bytes()[7], 0x96);
        assert_eq!(Uuid::from_value_pair(a, b), FTPM_TA);
    }
}
