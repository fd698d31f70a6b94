//! Fixtures shared by the unit tests: keys, chains and proposals.

use libp2p_identity::PeerId;

use crate::chain::{Chain, Outcome};
use crate::codec;
use crate::genesis::tests::signed_genesis;
use crate::hash::Hash32;
use crate::message::Proposal;
use crate::track::tests::track;

pub(crate) use crate::genesis::tests::keypair;

/// The PeerId of `keypair(seed)`.
pub(crate) fn peer(seed: u8) -> PeerId {
    keypair(seed).public().to_peer_id()
}

/// The test genesis's chain with slots `L ..= last` decided (100 s tracks, real proposals).
pub(crate) fn chain_to(last: u64) -> Chain {
    let mut chain = Chain::new(&signed_genesis());
    while chain.len() <= last {
        let slot = chain.len();
        chain.push(Outcome {
            track: track(&format!("d{slot}"), 100_000),
            proposal: Some((Hash32::digest(format!("p{slot}").as_bytes()), slot)),
            equivocators: vec![],
        });
    }
    chain
}

/// An admissible proposal for `slot` by `keypair(seed)`: it played every winner of k-8 .. k-5.
pub(crate) fn proposal(chain: &Chain, slot: u64, seed: u8) -> Proposal {
    let plays = (slot.saturating_sub(8)..=slot - 5)
        .map(|j| (j, chain.winner(j).map(|t| t.track_hash.into())))
        .collect();
    Proposal {
        network_id: *chain.network_id(),
        slot,
        from: peer(seed),
        track: track(&format!("proposed by {seed} for {slot}"), 120_000),
        library_hash: Hash32::digest(&[seed]),
        track_index: 0,
        plays,
        rules_hash: *chain.rules_hash(),
        created_ms: 0,
    }
}

/// The message id of a proposal encoded by this crate.
pub(crate) fn id_of(proposal: &Proposal) -> Hash32 {
    Hash32::digest(&codec::to_cbor(proposal))
}
