//! `chorus-consensus`: the Chorus protocol (PROTOCOL.md sections 1 to 5, 9, 10 and 11) as a pure,
//! deterministic state machine. It owns message types and their signed envelopes, the schedule,
//! tickets, admissibility, decisions and the chain, divergence and Status, the peer table, forks
//! and chain sync (see docs/consensus.md).
//!
//! No sockets, no tokio, no clock reads, no randomness of its own: time and inputs come in,
//! actions go out. The node drives it over libp2p; the simulator drives thousands of copies.
//!
//! # Layout
//!
//! - [`hash`]: `Hash32`, the SHA-256 digest of every id, and hex.
//! - [`codec`]: CBOR encoding and decoding, serde helpers for PeerIds.
//! - [`limits`]: the limits of PROTOCOL.md 10 and the bounds of sync and exchange requests,
//!   declared here only.
//! - [`rules`]: the network's `Rules`, their defaults, bytes and hash.
//! - [`track`]: the `TrackRef` of a track.
//! - [`envelope`]: the signed `Envelope` and its verification.
//! - [`message`]: the bodies `Proposal`, `Tally`, `Decision`, `Status`.
//! - [`genesis`]: creating, signing and verifying the genesis; the network id.
//! - [`chain`]: the chain of decided slots, chain hashes and `start(k)`.
//! - [`schedule`]: the phase windows of a slot (section 1).
//! - [`ticket`](mod@ticket): tickets and their order (section 4.1).
//! - [`select`](mod@select): replay selection (section 4.3).
//! - [`eligibility`]: may a proposer propose for a slot (section 5).
//! - [`admissibility`]: the verdict on a proposal (section 3).
//! - [`machine`]: the sans-IO state machine `Consensus` (proposals, tallies, decisions, finality,
//!   Status and the peer table, forks and chain sync).
//! - [`conformance`]: runs the vector files of PROTOCOL.md against this crate.
#![deny(missing_docs)]

pub mod admissibility;
pub mod beacon;
pub mod chain;
pub mod codec;
pub mod conformance;
pub mod eligibility;
pub mod envelope;
pub mod genesis;
pub mod hash;
pub mod limits;
pub mod machine;
pub mod message;
pub mod rules;
pub mod schedule;
pub mod select;
pub mod ticket;
pub mod track;

#[cfg(test)]
mod testing;

pub use admissibility::{Inadmissible, check_admissible};
pub use chain::{Chain, ChainError, DecidedSlot, Enrollment, Outcome, Tickets};
pub use eligibility::{Ineligible, check_eligible};
pub use envelope::{Envelope, EnvelopeError, SignError, Validation, open_gossip};
pub use genesis::{Genesis, GenesisEnroll, GenesisError, SignedGenesis};
pub use hash::Hash32;
pub use machine::{
    Action, ChainSync, Conflict, ConflictReason, Consensus, EnrollmentView, FORK_TURN_DELAY_MS,
    FinalReport, ForkChoice, ForkReport, PeerChange, PeerInfo, PeerState, PeerTable, StatusSummary,
    Support, SyncError, Topic,
};
pub use message::{Body, Decision, Enroll, Message, Proposal, Status, Tally, Verified};
pub use rules::{Rules, RulesError};
pub use schedule::Window;
pub use select::{Selection, select};
pub use ticket::{SlotContext, ticket};
pub use track::TrackRef;
