//! `Enroll`: a node's commitment to the hash chain whose values its proposals reveal
//! (PROTOCOL.md 12.3). Published on the status topic; a winning proposal carries it onto the
//! chain, which enrolls its author at that slot.

use libp2p_identity::PeerId;
use serde::{Deserialize, Serialize};

use crate::codec::peer_id_bytes;
use crate::hash::Hash32;
use crate::message::Body;

/// The longest hash chain an Enroll may commit to: a verifier walks at most this many hashes
/// for one reveal, and a node builds its chain once at this cost (2^24, about eight times the
/// default length of 2^20).
pub const ENROLL_LEN_MAX: u64 = 1 << 24;

/// `enroll` body (PROTOCOL.md 12.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enroll {
    /// The network.
    pub network_id: Hash32,
    /// The node enrolling.
    #[serde(with = "peer_id_bytes")]
    pub from: PeerId,
    /// `commit = H^len(s)`, `v(0)` of its chain.
    pub commit: Hash32,
    /// The chain's length: its proposals can reveal `v(1) .. v(len)`.
    pub len: u64,
    /// The author's network time when it wrote it, ms. Of two Enrolls of one peer, only a later
    /// one re-enrolls it (an old Enroll replayed by someone else changes nothing).
    pub created_ms: u64,
}

impl Body for Enroll {
    const KIND: &'static str = "enroll";

    fn from(&self) -> &PeerId {
        &self.from
    }

    fn check(&self) -> Result<(), String> {
        if !(1..=ENROLL_LEN_MAX).contains(&self.len) {
            return Err(format!("len is {}, outside 1..={ENROLL_LEN_MAX}", self.len));
        }
        Ok(())
    }
}
