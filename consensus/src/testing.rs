//! Fixtures shared by the unit tests: keys, chains and proposals.

use libp2p_identity::PeerId;

use crate::chain::{Chain, Outcome};
use crate::codec;
use crate::envelope::Envelope;
use crate::genesis::tests::signed_genesis;
use crate::hash::Hash32;
use crate::message::Proposal;
use crate::ticket::{SlotContext, ticket};
use crate::track::TrackRef;
use crate::track::tests::track;

pub(crate) use crate::genesis::tests::keypair;

/// The PeerId of `keypair(seed)`.
pub(crate) fn peer(seed: u8) -> PeerId {
    keypair(seed).public().to_peer_id()
}

/// The test genesis's chain under version 1's open tickets (no enrollment: any key may
/// propose), for tests of what 12.3 does not change.
pub(crate) fn open_chain() -> Chain {
    Chain::new(&signed_genesis()).with_tickets(crate::chain::Tickets::Open)
}

/// The proposer of the slots of [`chain_to`].
pub(crate) const CHAIN_PROPOSER: u8 = 99;

/// The test genesis's chain with slots `L ..= last` decided (100 s tracks `d<slot>`, each won
/// by a real proposal of `keypair(CHAIN_PROPOSER)`, so that the records verify).
pub(crate) fn chain_to(last: u64) -> Chain {
    let mut chain = open_chain();
    while chain.len() <= last {
        let slot = chain.len();
        let outcome = won(&chain, track(&format!("d{slot}"), 100_000), CHAIN_PROPOSER);
        chain.push(outcome);
    }
    chain
}

/// The outcome of slot `chain.len()` won by a proposal of `track` signed by `keypair(seed)`,
/// with its real id, ticket and envelope: a record that passes `Chain::push_synced`.
pub(crate) fn won(chain: &Chain, track: TrackRef, seed: u8) -> Outcome {
    let slot = chain.len();
    let mut p = proposal(chain, slot, seed);
    p.track = track;
    let envelope = Envelope::seal(&p, &keypair(seed)).expect("the keypair signs its own body");
    let ticket = ticket(&SlotContext::on_chain(chain, slot), &p.from);
    Outcome {
        track: p.track,
        proposal: Some((envelope.id(), ticket)),
        envelope: Some(envelope),
        equivocators: vec![],
    }
}

/// The outcome of slot `chain.len()` when nothing wins it: the replay choice (PROTOCOL.md 4.3).
pub(crate) fn replay(chain: &Chain) -> Outcome {
    Outcome {
        track: chain
            .replay_track()
            .expect("a genesis chain always has a replay candidate")
            .clone(),
        proposal: None,
        envelope: None,
        equivocators: vec![],
    }
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
        reveal: None,
        enrolls: Vec::new(),
    }
}

/// The message id of a proposal encoded by this crate.
pub(crate) fn id_of(proposal: &Proposal) -> Hash32 {
    Hash32::digest(&codec::to_cbor(proposal))
}
