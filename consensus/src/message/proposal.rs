//! `Proposal`: a node's candidate track for a slot.

use std::collections::BTreeSet;
use std::fmt;

use libp2p_identity::PeerId;
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::peer_id_bytes;
use crate::envelope::Envelope;
use crate::hash::Hash32;
use crate::message::Body;
use crate::track::TrackRef;

/// One entry of `plays`: `(slot, track_hash | "unavailable" | null)`, a two-element array.
/// None (null) is a slot before the proposer joined, or one in which it played nothing
/// without having asked every provider for the winner.
pub type Play = (u64, Option<Played>);

/// What the proposer did in one slot it was a member for (PROTOCOL.md 5 and 12.2).
///
/// On the wire (the second element of a `plays` pair) a track is its 32-byte hash as a CBOR
/// byte string, exactly as in version 1, and the mark is the CBOR text `"unavailable"`; a slot
/// before the proposer joined is null (`None` in [`Play`]). A body of version 1 therefore
/// decodes unchanged; any other text is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Played {
    /// It played this track: the winner, a substitute or anything else.
    Track(Hash32),
    /// It could not fetch the winner by its slot, having asked every provider it knew
    /// (12.2). Counts as in consensus for eligibility, and never as a divergence.
    Unavailable,
}

impl Played {
    /// The CBOR text of [`Played::Unavailable`].
    pub const UNAVAILABLE: &'static str = "unavailable";

    /// The track played, if any.
    pub fn track(&self) -> Option<&Hash32> {
        match self {
            Played::Track(t) => Some(t),
            Played::Unavailable => None,
        }
    }
}

impl From<Hash32> for Played {
    fn from(track: Hash32) -> Played {
        Played::Track(track)
    }
}

impl Serialize for Played {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Played::Track(t) => t.serialize(serializer),
            Played::Unavailable => serializer.serialize_str(Played::UNAVAILABLE),
        }
    }
}

impl<'de> Deserialize<'de> for Played {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A byte string or a text: only a self-describing format (CBOR) can tell which.
        deserializer.deserialize_any(PlayedVisitor)
    }
}

struct PlayedVisitor;

impl<'de> Visitor<'de> for PlayedVisitor {
    type Value = Played;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a track hash (a byte string of 32 bytes) or the text {:?}",
            Played::UNAVAILABLE
        )
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Played, E> {
        let array: [u8; 32] = v
            .try_into()
            .map_err(|_| E::invalid_length(v.len(), &self))?;
        Ok(Played::Track(Hash32(array)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Played, A::Error> {
        // As `Hash32` does: some encoders write a hash as an array of integers.
        Hash32::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Played::Track)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Played, E> {
        if v == Played::UNAVAILABLE {
            Ok(Played::Unavailable)
        } else {
            Err(E::invalid_value(de::Unexpected::Str(v), &self))
        }
    }
}

/// `proposal` body (PROTOCOL.md 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// The network.
    pub network_id: Hash32,
    /// The target slot k.
    pub slot: u64,
    /// The proposer.
    #[serde(with = "peer_id_bytes")]
    pub from: PeerId,
    /// The proposed track.
    pub track: TrackRef,
    /// SHA-256 of the proposer's library ([`library_hash`]).
    pub library_hash: Hash32,
    /// Index of the track in the sorted library ([`track_index`]).
    pub track_index: u64,
    /// What the proposer played in slots k-8 .. k-5, ascending: a track, the mark
    /// `unavailable` (12.2), or null (before it joined).
    pub plays: Vec<Play>,
    /// The rules hash the proposer runs.
    pub rules_hash: Hash32,
    /// The proposer's network time at creation, ms.
    pub created_ms: u64,
    /// 12.3: `v(k - e)` of the proposer's hash chain (enrolled at e); null under version 1's
    /// open tickets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reveal: Option<Hash32>,
    /// 12.3: Enroll envelopes of peers not yet enrolled (at most `rules.enroll_per_slot`),
    /// enrolled at slot k when this proposal wins it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enrolls: Vec<Envelope>,
}

impl Body for Proposal {
    const KIND: &'static str = "proposal";

    fn from(&self) -> &PeerId {
        &self.from
    }

    fn check(&self) -> Result<(), String> {
        if self.plays.len() > 4 {
            return Err(format!(
                "plays lists {} slots, at most 4 (k-8 .. k-5)",
                self.plays.len()
            ));
        }
        if self.enrolls.len() > ENROLLS_MAX {
            return Err(format!(
                "enrolls carries {} envelopes, at most {ENROLLS_MAX}",
                self.enrolls.len()
            ));
        }
        Ok(())
    }
}

/// Most Enroll envelopes a proposal may carry whatever the rules say (the rules' own bound,
/// `enroll_per_slot`, is checked against the chain).
pub const ENROLLS_MAX: usize = 16;

/// `library_hash`: SHA-256 of the library's distinct track hashes, sorted ascending, concatenated.
pub fn library_hash<'a>(tracks: impl IntoIterator<Item = &'a Hash32>) -> Hash32 {
    let sorted: BTreeSet<&Hash32> = tracks.into_iter().collect();
    let parts: Vec<&[u8]> = sorted.iter().map(|h| h.as_bytes().as_slice()).collect();
    Hash32::digest_parts(&parts)
}

/// `track_index`: the position of `track` among the library's distinct track hashes sorted
/// ascending; None if the library lacks it.
pub fn track_index<'a>(
    tracks: impl IntoIterator<Item = &'a Hash32>,
    track: &Hash32,
) -> Option<u64> {
    let sorted: BTreeSet<&Hash32> = tracks.into_iter().collect();
    let index = sorted.iter().position(|h| *h == track)?;
    u64::try_from(index).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_hash_ignores_order_and_duplicates() {
        let a = Hash32::digest(b"a");
        let b = Hash32::digest(b"b");
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        let expected = Hash32::digest_parts(&[lo.as_bytes(), hi.as_bytes()]);
        assert_eq!(library_hash(&[hi, lo, hi]), expected);
        assert_eq!(library_hash(&[lo, hi]), expected);
        assert_eq!(track_index(&[hi, lo], &hi), Some(1));
        assert_eq!(track_index(&[hi, lo], &lo), Some(0));
        assert_eq!(track_index(&[hi], &lo), None);
    }
}
