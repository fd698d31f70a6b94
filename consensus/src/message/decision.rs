//! `Decision`: a node's choice for a slot at its decision point.

use libp2p_identity::PeerId;
use serde::{Deserialize, Serialize};

use crate::codec::{peer_id_bytes, peer_id_list};
use crate::hash::Hash32;
use crate::message::Body;

/// `decision` body (PROTOCOL.md 2 and 4.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The network.
    pub network_id: Hash32,
    /// The decided slot.
    pub slot: u64,
    /// The author.
    #[serde(with = "peer_id_bytes")]
    pub from: PeerId,
    /// The winning track's hash.
    pub winner: Hash32,
    /// The winning proposal's id; null for a replay.
    pub proposal_id: Option<Hash32>,
    /// The winning proposal's ticket; null for a replay.
    pub ticket: Option<u64>,
    /// Proposers seen sending two distinct bodies for this slot.
    #[serde(with = "peer_id_list")]
    pub equivocators: Vec<PeerId>,
    /// The rules hash the author runs.
    pub rules_hash: Hash32,
}

impl Decision {
    /// Whether this decision is a replay (no proposal backs it).
    pub fn is_replay(&self) -> bool {
        self.proposal_id.is_none()
    }
}

impl Body for Decision {
    const KIND: &'static str = "decision";

    fn from(&self) -> &PeerId {
        &self.from
    }

    fn check(&self) -> Result<(), String> {
        if self.proposal_id.is_some() != self.ticket.is_some() {
            return Err("proposal_id and ticket must both be null (replay) or both set".to_owned());
        }
        Ok(())
    }
}
