//! What the state machine asks its driver to do.

use libp2p_identity::PeerId;

use super::finality::FinalReport;
use super::fork::ForkReport;
use super::peers::PeerChange;
use crate::chain::DecidedSlot;
use crate::envelope::Envelope;
use crate::hash::Hash32;
use crate::track::TrackRef;

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
// `Decided` carries a whole decided slot (TrackRef and, since 12.1, the winning proposal's
// envelope): a few actions per slot, moved once each, so boxing it would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Publish `envelope` (its CBOR) on `topic`.
    Publish {
        /// The topic.
        topic: Topic,
        /// The signed message.
        envelope: Envelope,
    },
    /// This node proposed `track` for `slot` (log `proposed slot=.. track=..`). The proposal's
    /// [`Action::Publish`] follows at once.
    Proposed {
        /// The slot.
        slot: u64,
        /// The track proposed.
        track: TrackRef,
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
    /// This node made its decision for `slot` at the decision point (PROTOCOL.md 4.3), and
    /// the decision names an admissible proposal it holds: `track` is the likely winner, so its
    /// fetch may start now, for the rest of slot `slot-4`, before finality (`start(slot-3)`,
    /// 4.4) makes it certain. Sent at most once per slot, before the slot's [`Action::Decided`], and only when
    /// `start(slot)` is known; never for a replay decision (a replay's winner is a track every
    /// node fetched before). Finality may still choose another winner (a lower ticket that
    /// arrived late, an equivocation found): the slot's [`Action::Decided`] is what counts.
    Leaning {
        /// The slot.
        slot: u64,
        /// The track of the proposal decided for.
        track: TrackRef,
        /// That proposal's author, a peer known to hold the track.
        proposer: PeerId,
        /// `start(slot)`, network time ms: when the track's first segment is due.
        start_ms: u64,
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
    /// 12.3: the chain enrolled this node's commit at `slot` (log `enrolled`); it may propose
    /// from `eligible_from` on.
    Enrolled {
        /// The slot e.
        slot: u64,
        /// `e + rules.enroll_delay`.
        eligible_from: u64,
        /// Peers enrolled on the chain.
        roster: usize,
    },
    /// 12.3: a proposal's reveal is not the next value of its author's committed chain (log
    /// `reveal_invalid`); the proposal is inadmissible and a [`Action::Violation`] follows.
    RevealInvalid {
        /// The proposer.
        peer: PeerId,
        /// The slot proposed for.
        slot: u64,
        /// What was wrong.
        reason: String,
    },
    /// Finality of a slot, right after its [`Action::Decided`]: the choice and every decision
    /// that disagreed (log `final slot=.. winner=.. conflicts=N`).
    Final(FinalReport),
    /// A decided slot's winner is blacklisted (PROTOCOL.md 5): play `track` from the own
    /// library instead (None: silence) for the slot's length, faded out at its end. The node
    /// reports itself diverged for that slot and is back in consensus at the next.
    PlaySubstitute {
        /// The slot.
        slot: u64,
        /// The substitute, if the library has one.
        track: Option<TrackRef>,
    },
    /// A peer's state in the peer table changed (log `peer .. excluded: diverged 3 slots`).
    PeerChanged(PeerChange),
    /// A fork evaluation found a peer on another chain (log both support counts and the
    /// choice).
    Fork(ForkReport),
    /// Ask `peer` for `/chorus/sync/1 Chain{from_slot}` and pass the answer to
    /// `Consensus::handle_chain` (fork adoption, or slots this node only follows).
    FetchChain {
        /// The peer to ask.
        peer: PeerId,
        /// The first slot wanted.
        from_slot: u64,
    },
    /// The chain was replaced from `from_slot` on by another chain (PROTOCOL.md 9): drop the
    /// persisted slots from there, persist `slots`, recompute the schedule and rejoin playback
    /// at the current position like a late joiner.
    Adopted {
        /// The first replaced slot (the fork point).
        from_slot: u64,
        /// The new decided slots from `from_slot` on.
        slots: Vec<DecidedSlot>,
    },
}
