//! Why a decided slot could not be appended to the chain.

use crate::admissibility::Inadmissible;
use crate::envelope::EnvelopeError;
use crate::hash::Hash32;

/// Why a slot could not be appended to the chain. Every variant about a received slot names
/// it ([`ChainError::slot`]) and the check of PROTOCOL.md 12.1 it failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChainError {
    /// The slot is not the next one.
    #[error("slot {got} does not follow the chain's head; slot {expected} is next")]
    NotNext {
        /// The next slot.
        expected: u64,
        /// The slot offered.
        got: u64,
    },
    /// A synced slot's chain hash does not match its contents.
    #[error("slot {slot} claims chain hash {claimed} but its contents hash to {computed}")]
    HashMismatch {
        /// The slot.
        slot: u64,
        /// The hash it carried.
        claimed: Hash32,
        /// The hash computed.
        computed: Hash32,
    },
    /// A synced slot has a proposal id without a ticket, or the reverse.
    #[error("slot {0} has only one of proposal_id and ticket")]
    HalfReplay(u64),
    /// A slot won by a proposal does not carry the proposal's envelope: a record of protocol
    /// 1.0 (whose network a 1.1 node refuses anyway), or one stripped by its sender.
    #[error(
        "slot {0} names its winning proposal but does not carry its envelope (a chain record of \
         protocol 1.0?)"
    )]
    MissingProposal(u64),
    /// A replay (null proposal id) carries a proposal envelope.
    #[error("slot {0} is a replay but carries a proposal envelope")]
    ReplayWithProposal(u64),
    /// `proposal_id` is not `SHA-256(body)` of the envelope carried.
    #[error("slot {slot}: proposal_id {claimed} is not the id of the envelope carried, {computed}")]
    ProposalId {
        /// The slot.
        slot: u64,
        /// The record's `proposal_id`.
        claimed: Hash32,
        /// `SHA-256(body)` of its envelope.
        computed: Hash32,
    },
    /// The envelope does not verify as a proposal: size, kind, signature, body, or the signer
    /// is not the body's `from`.
    #[error("slot {slot}: the winning proposal's envelope does not verify: {source}")]
    Envelope {
        /// The slot.
        slot: u64,
        /// The check it failed.
        source: EnvelopeError,
    },
    /// The signed proposal breaks admissibility rule 1 or 2 for this slot and chain (another
    /// network or slot, other rules, a duration or segment count out of bounds).
    #[error("slot {slot}: the winning proposal is not admissible: {source}")]
    Inadmissible {
        /// The slot.
        slot: u64,
        /// The rule it breaks.
        source: Inadmissible,
    },
    /// The record's TrackRef is not the one the proposer signed (`body.track`).
    #[error("slot {slot}: the record's track differs from the signed proposal's in {field}")]
    TrackMismatch {
        /// The slot.
        slot: u64,
        /// The first field that differs (`track_hash`, `manifest_id`, `duration_ms`, ...).
        field: &'static str,
    },
    /// The record's ticket is not the proposer's ticket for the slot (PROTOCOL.md 4.1).
    #[error("slot {slot}: ticket {claimed} is not the proposer's ticket for the slot, {computed}")]
    Ticket {
        /// The slot.
        slot: u64,
        /// The record's ticket.
        claimed: u64,
        /// `ticket(from, slot)`.
        computed: u64,
    },
    /// A replay's TrackRef is not the TrackRef of an earlier winner of the chain.
    #[error("slot {slot}: the replayed track {track_hash} is not that of an earlier winner")]
    ReplayTrack {
        /// The slot.
        slot: u64,
        /// The record's track hash.
        track_hash: Hash32,
    },
    /// A replay replays an earlier winner, but not the replay choice of PROTOCOL.md 4.3.
    #[error("slot {slot} replays {got}, but the replay choice is {expected}")]
    ReplayChoice {
        /// The slot.
        slot: u64,
        /// The replay choice (its latest TrackRef's hash).
        expected: Hash32,
        /// The record's track hash.
        got: Hash32,
    },
    /// A `Chain{from_slot}` answer holds more slots than an answer may.
    #[error("the answer holds {got} slots; a Chain answer holds at most {max}")]
    TooMany {
        /// Slots in the answer.
        got: usize,
        /// [`crate::limits::CHAIN_RESPONSE_SLOTS`].
        max: usize,
    },
    /// A slot that cannot be final yet: even the start of the slot L before it lies in the
    /// future ([`crate::chain::Chain::final_by`]).
    #[error(
        "slot {slot} cannot be final yet: the slot L before it starts at {earliest_ms}, and it \
         is {now_ms}"
    )]
    Ahead {
        /// The slot.
        slot: u64,
        /// `start(slot - L)`.
        earliest_ms: u64,
        /// The network time it was received at.
        now_ms: u64,
    },
}

impl ChainError {
    /// The slot refused, if the error is about one.
    pub fn slot(&self) -> Option<u64> {
        match self {
            ChainError::NotNext { got, .. } => Some(*got),
            ChainError::HalfReplay(slot)
            | ChainError::MissingProposal(slot)
            | ChainError::ReplayWithProposal(slot)
            | ChainError::HashMismatch { slot, .. }
            | ChainError::ProposalId { slot, .. }
            | ChainError::Envelope { slot, .. }
            | ChainError::Inadmissible { slot, .. }
            | ChainError::TrackMismatch { slot, .. }
            | ChainError::Ticket { slot, .. }
            | ChainError::ReplayTrack { slot, .. }
            | ChainError::ReplayChoice { slot, .. }
            | ChainError::Ahead { slot, .. } => Some(*slot),
            ChainError::TooMany { .. } => None,
        }
    }
}
