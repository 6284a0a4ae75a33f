//! Byte payloads (`heapless::Vec<u8, N>`) as one byte string rather than a sequence of
//! single-byte elements. postcard writes both alike — a varint length, then the bytes — so the
//! wire format is unchanged; only the cost differs: one copy instead of one serializer call per
//! byte (a 4 KiB coredump chunk or TPM response).

use core::fmt;
use core::marker::PhantomData;

use heapless::Vec;
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserializer, Serializer};

pub fn serialize<S: Serializer, const N: usize>(
    bytes: &Vec<u8, N>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_bytes(bytes)
}

pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
    deserializer: D,
) -> Result<Vec<u8, N>, D::Error> {
    deserializer.deserialize_bytes(BytesVisitor::<N>(PhantomData))
}

struct BytesVisitor<const N: usize>(PhantomData<[u8; N]>);

impl<'de, const N: usize> Visitor<'de> for BytesVisitor<N> {
    type Value = Vec<u8, N>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at most {N} bytes")
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Self::Value, E> {
        Vec::from_slice(bytes).map_err(|_| E::invalid_length(bytes.len(), &self))
    }

    /// Formats that write bytes as a sequence.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(byte) = seq.next_element::<u8>()? {
            out.push(byte)
                .map_err(|_| de::Error::invalid_length(N + 1, &self))?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct AsBytes {
        #[serde(with = "super")]
        data: Vec<u8, 8>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct AsSeq {
        data: Vec<u8, 8>,
    }

    #[test]
    fn the_wire_format_is_the_sequence_s_and_overlong_input_is_refused() {
        let bytes = AsBytes {
            data: Vec::from_slice(&[1, 2, 3, 0xff]).unwrap_or_default(),
        };
        let seq = AsSeq {
            data: bytes.data.clone(),
        };
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        let a = postcard::to_slice(&bytes, &mut a).map(|s| s.to_vec());
        let b = postcard::to_slice(&seq, &mut b).map(|s| s.to_vec());
        assert!(a.is_ok());
        assert_eq!(a, b);
        let wire = a.unwrap_or_default();
        assert_eq!(postcard::from_bytes::<AsBytes>(&wire).ok(), Some(bytes));
        // Nine bytes announced for a vector of eight.
        let long = [9u8, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(postcard::from_bytes::<AsBytes>(&long).is_err());
    }
}
