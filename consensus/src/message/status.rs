//! `Status`: a node's periodic report of what it plays and which chain it holds.

use libp2p_identity::PeerId;
use serde::{Deserialize, Serialize};

use crate::codec::peer_id_bytes;
use crate::hash::Hash32;
use crate::limits::{STATUS_QUEUE_MAX, STATUS_VERSION_MAX_BYTES};
use crate::message::Body;

/// What a node is playing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Playing {
    /// The slot playing.
    pub slot: u64,
    /// The track actually playing (a substitute when diverged).
    pub track_hash: Hash32,
    /// Position in the track, ms.
    pub position_ms: u64,
}

/// The last decided slot of a node's chain and its chain hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// The slot.
    pub slot: u64,
    /// `chain_hash(slot)`.
    pub chain_hash: Hash32,
}

/// `status` body (PROTOCOL.md 2 and 5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The network.
    pub network_id: Hash32,
    /// The author.
    #[serde(with = "peer_id_bytes")]
    pub from: PeerId,
    /// The author's network time when sending, ms.
    pub sent_ms: u64,
    /// What it plays; null when it plays nothing.
    pub playing: Option<Playing>,
    /// The winner of the slot playing, per its chain; null when unknown.
    pub consensus_track: Option<Hash32>,
    /// Whether it plays something other than the winner.
    pub diverged: bool,
    /// Its chain's head.
    pub head: Head,
    /// Winners of the slots after the one playing, in order.
    pub queue: Vec<Hash32>,
    /// The software's version string, e.g. `chorus/0.1.0`.
    pub version: String,
}

impl Body for Status {
    const KIND: &'static str = "status";

    fn from(&self) -> &PeerId {
        &self.from
    }

    /// PROTOCOL.md 12.5: fields of bounded meaning are bounded in size, so that a peer table
    /// row costs the same whoever wrote it.
    fn check(&self) -> Result<(), String> {
        if self.version.len() > STATUS_VERSION_MAX_BYTES {
            return Err(format!(
                "version is {} bytes, more than {STATUS_VERSION_MAX_BYTES}",
                self.version.len()
            ));
        }
        if self.queue.len() > STATUS_QUEUE_MAX {
            return Err(format!(
                "queue has {} entries, more than {STATUS_QUEUE_MAX}",
                self.queue.len()
            ));
        }
        Ok(())
    }
}
