//! What the state machine asks its driver to do.

use libp2p_identity::PeerId;

use crate::chain::DecidedSlot;
use crate::envelope::Envelope;
use crate::hash::Hash32;

/// The gossipsub topic a message goes to (`chorus/<network_id hex>/<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// `chorus/<network_id>/consensus`: Proposal, Tally, Decision.
    Consensus,
    /// `chorus/<network_id>/status`: Status.
    Status,
}

impl Topic {
    /// The topic's full name for a network.
    pub fn name(&self, network_id: &Hash32) -> String {
        let suffix = match self {
            Topic::Consensus => "consensus",
            Topic::Status => "status",
        };
        format!("chorus/{network_id}/{suffix}")
    }
}

/// One thing for the driver to do, in the order returned by `poll_action`.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Publish `envelope` (its CBOR) on `topic`.
    Publish {
        /// The topic.
        topic: Topic,
        /// The signed message.
        envelope: Envelope,
    },
    /// Ask `peer` for these proposals (`/chorus/sync/1 Proposals{slot, ids}`) and hand the
    /// answer to `handle_fetched`.
    FetchProposals {
        /// Who announced them (the author of a Tally or Decision).
        peer: PeerId,
        /// The slot.
        slot: u64,
        /// The proposal ids wanted.
        ids: Vec<Hash32>,
    },
    /// A slot became final and was appended to the chain: persist it, fetch its track.
    Decided(DecidedSlot),
    /// A peer sent an invalid message (counted in the local peer table).
    Violation {
        /// The author, when the message named a valid one; otherwise the propagation source.
        peer: PeerId,
        /// What was wrong.
        reason: String,
    },
}
