//! The message bodies of PROTOCOL.md 2 and what a verified message looks like.
//!
//! Each body is a CBOR map with text keys (the field names below); 32-byte hashes and PeerIds
//! are byte strings, optional values are null, pairs are two-element arrays. Unknown keys are
//! ignored when decoding.

mod decision;
mod enroll;
mod proposal;
mod status;
mod tally;

pub use decision::Decision;
pub use enroll::{ENROLL_LEN_MAX, Enroll};
pub use proposal::{ENROLLS_MAX, Play, Played, Proposal, library_hash, track_index};
pub use status::{Head, Playing, Status};
pub use tally::Tally;

use libp2p_identity::PeerId;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::envelope::Envelope;
use crate::hash::Hash32;

/// A body that travels in an [`Envelope`].
pub trait Body: Serialize + DeserializeOwned {
    /// The envelope's `kind` for this body.
    const KIND: &'static str;

    /// The author, who must be the signer.
    fn from(&self) -> &PeerId;

    /// Structural rules beyond the types (list lengths, orderings); the reason on failure.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A decoded gossip message body.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A proposal for a slot.
    Proposal(Proposal),
    /// A node's best proposals for a slot.
    Tally(Tally),
    /// A node's decision for a slot.
    Decision(Decision),
    /// A node's periodic status.
    Status(Status),
    /// A node's enrollment (PROTOCOL.md 12.3).
    Enroll(Enroll),
}

impl Message {
    /// The author.
    pub fn from(&self) -> &PeerId {
        match self {
            Message::Proposal(m) => &m.from,
            Message::Tally(m) => &m.from,
            Message::Decision(m) => &m.from,
            Message::Status(m) => &m.from,
            Message::Enroll(m) => &m.from,
        }
    }

    /// The network the message belongs to.
    pub fn network_id(&self) -> &Hash32 {
        match self {
            Message::Proposal(m) => &m.network_id,
            Message::Tally(m) => &m.network_id,
            Message::Decision(m) => &m.network_id,
            Message::Status(m) => &m.network_id,
            Message::Enroll(m) => &m.network_id,
        }
    }

    /// The slot the message is about (None for Status and Enroll).
    pub fn slot(&self) -> Option<u64> {
        match self {
            Message::Proposal(m) => Some(m.slot),
            Message::Tally(m) => Some(m.slot),
            Message::Decision(m) => Some(m.slot),
            Message::Status(_) | Message::Enroll(_) => None,
        }
    }
}

/// A message whose envelope passed every check of PROTOCOL.md 2.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The message id, `SHA-256(body)`.
    pub id: Hash32,
    /// The decoded body.
    pub message: Message,
    /// The envelope as received (kept to serve `Proposals{slot, ids}` requests).
    pub envelope: Envelope,
}

impl Verified {
    /// The author (also the signer).
    pub fn from(&self) -> &PeerId {
        self.message.from()
    }
}
