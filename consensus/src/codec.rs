//! CBOR encoding and decoding shared by every message, and serde helpers for PeerIds.
//!
//! Bodies are CBOR maps with text keys (serde's derive); unknown keys are ignored on decode.
//! Decoding never panics: the input is bounded by the caller (PROTOCOL.md 10), ciborium limits
//! nesting, and trailing bytes after the one item are an error.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why bytes could not be decoded as the expected CBOR value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not valid CBOR for this type (the message says which field or item).
    #[error("malformed CBOR: {0}")]
    Cbor(String),
    /// One valid item was followed by more bytes.
    #[error("{0} unexpected bytes after the CBOR item")]
    TrailingBytes(usize),
}

/// Encodes `value` as CBOR.
pub fn to_cbor<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out)
        .expect("invariant: CBOR encoding of protocol types into a Vec cannot fail");
    out
}

/// Decodes exactly one CBOR item of type `T` from `bytes`.
pub fn from_cbor<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let mut rest = bytes;
    let value = ciborium::from_reader(&mut rest).map_err(|e| DecodeError::Cbor(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    Ok(value)
}

/// Serde helper: a `PeerId` as a CBOR byte string of its multihash bytes.
pub mod peer_id_bytes {
    use libp2p_identity::PeerId;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Serializes `peer` as bytes.
    pub fn serialize<S: Serializer>(peer: &PeerId, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&peer.to_bytes())
    }

    /// Deserializes a `PeerId` from bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<PeerId, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(deserializer)?;
        PeerId::from_bytes(&bytes).map_err(|e| D::Error::custom(format!("invalid peer id: {e}")))
    }
}

/// Serde helper: a list of `PeerId`s as an array of byte strings.
pub mod peer_id_list {
    use libp2p_identity::PeerId;
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Serializes `peers` as an array of byte strings.
    pub fn serialize<S: Serializer>(peers: &[PeerId], serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(peers.len()))?;
        for peer in peers {
            seq.serialize_element(serde_bytes::Bytes::new(&peer.to_bytes()))?;
        }
        seq.end()
    }

    /// Deserializes an array of byte strings into `PeerId`s.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<PeerId>, D::Error> {
        let raw = Vec::<serde_bytes::ByteBuf>::deserialize(deserializer)?;
        raw.iter()
            .map(|bytes| {
                PeerId::from_bytes(bytes)
                    .map_err(|e| D::Error::custom(format!("invalid peer id: {e}")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = to_cbor(&7u64);
        assert_eq!(from_cbor::<u64>(&bytes), Ok(7));
        bytes.push(0);
        assert_eq!(from_cbor::<u64>(&bytes), Err(DecodeError::TrailingBytes(1)));
        assert!(matches!(from_cbor::<u64>(&[]), Err(DecodeError::Cbor(_))));
    }
}
