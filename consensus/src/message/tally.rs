//! `Tally`: a node's lowest tickets for a slot, published at the start of selection.

use libp2p_identity::PeerId;
use serde::{Deserialize, Serialize};

use crate::codec::peer_id_bytes;
use crate::hash::Hash32;
use crate::limits::TALLY_BEST_MAX;
use crate::message::Body;

/// `tally` body (PROTOCOL.md 2 and 4.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// The network.
    pub network_id: Hash32,
    /// The target slot.
    pub slot: u64,
    /// The author.
    #[serde(with = "peer_id_bytes")]
    pub from: PeerId,
    /// Up to three `(ticket, proposal_id)` pairs, lowest ticket first.
    pub best: Vec<(u64, Hash32)>,
}

impl Body for Tally {
    const KIND: &'static str = "tally";

    fn from(&self) -> &PeerId {
        &self.from
    }

    fn check(&self) -> Result<(), String> {
        if self.best.len() > TALLY_BEST_MAX {
            return Err(format!(
                "best lists {} proposals, at most {TALLY_BEST_MAX}",
                self.best.len()
            ));
        }
        if self.best.windows(2).any(|w| w[0].0 > w[1].0) {
            return Err("best is not sorted by ticket, lowest first".to_owned());
        }
        Ok(())
    }
}
