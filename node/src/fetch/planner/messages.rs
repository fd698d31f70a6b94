//! The planner's inputs (besides time and peers) and outputs.

use std::collections::HashSet;

use chorus_consensus::{Hash32, TrackRef};
use libp2p::PeerId;

use super::super::FetchEvent;
#[cfg(doc)]
use super::Planner;

/// A track to hold by a deadline (a [`FetchCommand::Want`](crate::fetch::FetchCommand::Want)).
#[derive(Debug, Clone)]
pub struct Want {
    /// The slot it plays in.
    pub slot: u64,
    /// The track.
    pub track: TrackRef,
    /// `start(slot)`, network time ms: the deadline of its first segment.
    pub start_ms: u64,
    /// `rules.segment_ms`.
    pub segment_ms: u64,
    /// A peer known to hold it (the winning proposal's author).
    pub hint: Option<PeerId>,
}

/// A track's segments, as the shell found them in its store.
#[derive(Debug, Clone, Default)]
pub struct Contents {
    /// Segment ids in playing order (as the manifest lists them).
    pub segments: Vec<Hash32>,
    /// Those already in the store.
    pub held: HashSet<Hash32>,
}

/// What the store holds of a track ([`Planner::handle_held`]).
#[derive(Debug, Clone)]
pub enum Local {
    /// Its manifest is not in the store.
    Absent,
    /// Its manifest is in the store and agrees with the TrackRef.
    Held(Contents),
    /// Its manifest is in the store and contradicts the TrackRef.
    Refused,
}

/// The answer to an [`Action::RequestManifest`] ([`Planner::handle_manifest`]).
#[derive(Debug, Clone)]
pub enum ManifestOutcome {
    /// The bytes hash to the manifest id, agree with the TrackRef and were stored.
    Valid(Contents),
    /// The bytes were right but could not be stored.
    NotStored,
    /// The bytes hash to the manifest id but contradict the TrackRef: nobody can serve better.
    Refused,
    /// The bytes do not hash to the manifest id.
    Corrupt,
    /// The peer does not have it.
    Missing,
    /// The request failed (timeout, closed connection, unexpected answer).
    Failed,
}

/// The verified answer to a want list.
#[derive(Debug, Clone, Default)]
pub struct Delivery {
    /// Blocks hashed, found right and stored, with their length in bytes.
    pub stored: Vec<(Hash32, u64)>,
    /// Blocks whose bytes hash to something else.
    pub corrupt: Vec<Hash32>,
    /// Blocks the peer does not have.
    pub dont_have: Vec<Hash32>,
    /// Blocks the peer has but left out of this answer.
    pub later: Vec<Hash32>,
    /// The manifest id the want list named and the peer's holdings of that track (bit `i`
    /// for segment `i`), when it answered them.
    pub holding: Option<(Hash32, Vec<u8>)>,
    /// Peers the answering peer sent the blocks in `later` to (super-seeding): ask them.
    pub referrals: Vec<PeerId>,
}

/// The answer to an [`Action::Want`] ([`Planner::handle_blocks`]).
#[derive(Debug, Clone)]
pub enum BlocksOutcome {
    /// The peer answered; ids neither stored nor listed are asked again of anyone.
    Answered(Delivery),
    /// The request failed (timeout, closed connection, a store that could not be written).
    Failed,
}

/// What the planner asks the shell to do.
#[derive(Debug)]
pub enum Action {
    /// Look up the track's manifest in the store, check it against the TrackRef (with
    /// `segment_ms`), and answer with [`Planner::handle_held`].
    ReadStore {
        /// The track.
        track: TrackRef,
        /// The slot it was wanted for (for the log).
        slot: u64,
        /// `rules.segment_ms`.
        segment_ms: u64,
    },
    /// Ask the DHT for providers of `manifest_id`; answer with [`Planner::handle_providers`].
    AskProviders {
        /// The track's `track_hash`.
        track: Hash32,
        /// The key to look up.
        manifest_id: Hash32,
    },
    /// Ask `peer` for the track's manifest, verify and store it; answer with
    /// [`Planner::handle_manifest`].
    RequestManifest {
        /// The peer.
        peer: PeerId,
        /// The track.
        track: TrackRef,
        /// The slot it was wanted for (for the log).
        slot: u64,
        /// `rules.segment_ms`.
        segment_ms: u64,
    },
    /// Send `peer` a want list, hash and store what comes back; answer with
    /// [`Planner::handle_blocks`].
    Want {
        /// The peer.
        peer: PeerId,
        /// Block ids, most urgent first; none for a want-have probe.
        ids: Vec<Hash32>,
        /// The manifest id of the track the ids belong to: the answer says which of its
        /// segments the peer holds.
        track: Option<Hash32>,
    },
    /// Announce a provider record for `manifest_id` (cross-seeding).
    Provide {
        /// The finished track's manifest id.
        manifest_id: Hash32,
    },
    /// Tell the driver.
    Report(FetchEvent),
}
