//! `Proposal`: a node's candidate track for a slot.

use std::collections::BTreeSet;

use libp2p_identity::PeerId;
use serde::{Deserialize, Serialize};

use crate::codec::peer_id_bytes;
use crate::hash::Hash32;
use crate::message::Body;
use crate::track::TrackRef;

/// What the proposer actually played in one slot: `(slot, track_hash or null)`.
pub type Play = (u64, Option<Hash32>);

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
    /// The proposer's actual tracks for slots k-8 .. k-5, ascending (null before it joined).
    pub plays: Vec<Play>,
    /// The rules hash the proposer runs.
    pub rules_hash: Hash32,
    /// The proposer's network time at creation, ms.
    pub created_ms: u64,
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
        Ok(())
    }
}

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
