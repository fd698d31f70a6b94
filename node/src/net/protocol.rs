//! The request-response protocols of PROTOCOL.md 2 and 6, as CBOR messages. Their limits are
//! the protocol's, declared in `chorus_consensus::limits`.
//!
//! Byte fields go through `serde_bytes` so that cbor4ii writes them as byte strings (a 1 MiB
//! block would otherwise become a 2 MB array of integers).

use chorus_consensus::{DecidedSlot, Hash32};
use serde::{Deserialize, Serialize};

/// `/chorus/sync/1`.
pub const SYNC_PROTOCOL: &str = "/chorus/sync/1";
/// `/chorus/time/1`.
pub const TIME_PROTOCOL: &str = "/chorus/time/1";
/// The want-list block exchange (PROTOCOL.md 6).
pub const BLOCKS_PROTOCOL: &str = "/chorus/blocks/1";
/// Kademlia, on a protocol name of our own so that the node never joins IPFS's public DHT.
pub const KAD_PROTOCOL: &str = "/chorus/kad/1";
/// Identify's protocol version string.
pub const IDENTIFY_VERSION: &str = "/chorus/1";

/// A `/chorus/sync/1` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SyncRequest {
    /// The genesis envelope.
    Genesis,
    /// Up to [`chorus_consensus::limits::CHAIN_RESPONSE_SLOTS`] decided slots from `from_slot` on.
    Chain {
        /// The first slot wanted.
        from_slot: u64,
    },
    /// Proposal envelopes held for `slot` among `ids` (all when empty).
    Proposals {
        /// The slot.
        slot: u64,
        /// The proposal ids.
        ids: Vec<Hash32>,
    },
    /// A manifest's bytes.
    Manifest {
        /// Its id.
        manifest_id: Hash32,
    },
}

/// A `/chorus/sync/1` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SyncResponse {
    /// The genesis envelope's CBOR.
    Genesis(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Decided slots in order.
    Chain(Vec<DecidedSlot>),
    /// Proposal envelopes, each as its CBOR.
    Proposals(Vec<serde_bytes::ByteBuf>),
    /// The manifest, if held.
    Manifest(Option<serde_bytes::ByteBuf>),
    /// The request could not be answered (unknown network, not held).
    Unavailable(String),
}

/// `/chorus/time/1` request: the client's send time. All four stamps of an exchange are local
/// clocks (system clock at start-up plus monotonic time, no network offset) in microseconds
/// since the Unix epoch: milliseconds would cap agreement at about 1 ms.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Ping {
    /// Client send time, µs.
    pub t0: u64,
}

/// `/chorus/time/1` answer (PROTOCOL.md 7).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Pong {
    /// The client's send time, echoed.
    pub t0: u64,
    /// Server receive time, µs.
    pub t1: u64,
    /// Server send time, µs.
    pub t2: u64,
}

/// A want list: up to [`chorus_consensus::limits::WANTED_IDS_MAX`] block ids. With `track`
/// (a manifest id) the answer also says which segments of that track the peer holds
/// ([`Have::holding`]); a list with no ids and a track is a want-have probe (Bitswap 1.2's
/// want-have), how the blocks of a new track spread from every peer that has some.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Want {
    /// The ids, most urgent first.
    pub ids: Vec<Hash32>,
    /// The manifest id of the track the ids belong to, if the asker wants the peer's holdings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<Hash32>,
}

/// One block of an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// The id the sender claims (the receiver hashes the bytes itself).
    pub id: Hash32,
    /// The bytes.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// The answer to a want list.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Have {
    /// Blocks the peer has.
    pub blocks: Vec<Block>,
    /// Ids the peer does not have.
    pub dont_have: Vec<Hash32>,
    /// Ids the peer has but left out to keep the answer small: ask again.
    pub later: Vec<Hash32>,
    /// For a want list with a track whose manifest the peer holds: bit `i` (least significant
    /// bit first) is set when it holds segment `i` of the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_bytes")]
    pub holding: Option<Vec<u8>>,
    /// Peers this one sent the blocks listed in `later` to: ask them (super-seeding,
    /// [`crate::net::uploads`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub referrals: Vec<libp2p::PeerId>,
}

/// `Option<Vec<u8>>` as CBOR bytes.
mod opt_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(serde_bytes::Bytes::new(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(Option::<serde_bytes::ByteBuf>::deserialize(d)?.map(serde_bytes::ByteBuf::into_vec))
    }
}

/// Whether bit `i` of a holdings bitmap ([`Have::holding`]) is set.
pub fn holds(bits: &[u8], i: usize) -> bool {
    bits.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

/// The holdings bitmap of `held` (one flag per segment, in order).
pub fn holding_bits(held: impl IntoIterator<Item = bool>) -> Vec<u8> {
    let mut bits = Vec::new();
    for (i, h) in held.into_iter().enumerate() {
        if i % 8 == 0 {
            bits.push(0u8);
        }
        if h && let Some(b) = bits.last_mut() {
            *b |= 1 << (i % 8);
        }
    }
    bits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cbor<T: Serialize>(v: &T) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(v, &mut out).unwrap();
        out
    }

    #[test]
    fn holdings_bits_are_least_significant_first() {
        let bits = holding_bits([true, false, false, true, false, false, false, false, true]);
        assert_eq!(bits, vec![0b0000_1001, 0b0000_0001]);
        assert!(holds(&bits, 0) && holds(&bits, 3) && holds(&bits, 8));
        assert!(!holds(&bits, 1) && !holds(&bits, 9) && !holds(&bits, 1000));
    }

    #[test]
    fn want_and_have_without_a_track_are_the_old_encoding() {
        #[derive(Serialize)]
        struct OldWant {
            ids: Vec<Hash32>,
        }
        let ids = vec![Hash32::digest(b"a")];
        let old = cbor(&OldWant { ids: ids.clone() });
        assert_eq!(
            cbor(&Want {
                ids: ids.clone(),
                track: None
            }),
            old
        );
        let back: Want = ciborium::from_reader(&old[..]).unwrap();
        assert_eq!((back.ids, back.track), (ids, None));
        let have: Have = ciborium::from_reader(&cbor(&Have::default())[..]).unwrap();
        assert!(have.holding.is_none());
    }

    #[test]
    fn holdings_travel_as_cbor_bytes() {
        let have = Have {
            holding: Some(vec![0xa5, 0x01]),
            ..Have::default()
        };
        let bytes = cbor(&have);
        // A byte string (major type 2) of length 2, not an array of integers.
        assert!(bytes.windows(3).any(|w| w == [0x42, 0xa5, 0x01]));
        let back: Have = ciborium::from_reader(&bytes[..]).unwrap();
        assert_eq!(back.holding, Some(vec![0xa5, 0x01]));
    }
}
