//! One simulated node: its identity, library, clock, role and whether it runs.

use std::collections::BTreeSet;

use chorus_consensus::beacon::HashChain;
use chorus_consensus::{Chain, Consensus, TrackRef};
use libp2p_identity::{Keypair, PeerId};

use crate::adversary::AdversaryKind;

/// Whether a node runs, and what it keeps while it does not.
pub(super) enum NodeState {
    /// Its machine runs.
    Live(Box<Consensus>),
    /// Crashed; the chain as persisted at the crash, until it restarts.
    Down { persisted: Chain },
    /// Fetching the chain from a peer before it starts (a joiner or a restarted node).
    Syncing { chain: Chain, attempt: u32 },
    /// Gone for good.
    Left,
    /// Running, its machine lent to a helper thread for a batch of deliveries (see
    /// `parallel`); nothing else happens meanwhile.
    Lent,
}

/// One node.
pub(super) struct Node {
    /// Its identity (kept to restart it and, for adversaries, to sign what it forges).
    pub(super) key: Keypair,
    /// `key`'s PeerId.
    pub(super) peer: PeerId,
    /// Its library.
    pub(super) library: Vec<TrackRef>,
    /// None for an honest node.
    pub(super) adversary: Option<AdversaryKind>,
    /// Running or not.
    pub(super) state: NodeState,
    /// Its place in the mesh (hop counts and partition side); a joiner takes an existing
    /// node's place.
    pub(super) mesh_pos: usize,
    /// Added to the true time to give this node's clock.
    pub(super) skew_ms: i64,
    /// The true time of the timer event in the queue, if any.
    pub(super) timer: Option<u64>,
    /// Bumped at every crash, restart and start: events of an earlier life are void.
    pub(super) inc: u32,
    /// The slot playing when its machine last started; None for a node running from genesis.
    pub(super) live_since: Option<u64>,
    /// For a withholding adversary: the nodes its gossip never reaches.
    pub(super) victims: BTreeSet<usize>,
    /// Protocol 1.1: its hash chain (PROTOCOL.md 12.3), kept across restarts as the seed in a
    /// node's data directory is; None under protocol 1.
    pub(super) hash_chain: Option<HashChain>,
}

impl Node {
    /// The machine, if it runs.
    pub(super) fn machine(&self) -> Option<&Consensus> {
        match &self.state {
            NodeState::Live(m) => Some(m),
            _ => None,
        }
    }

    /// The machine, if it runs.
    pub(super) fn machine_mut(&mut self) -> Option<&mut Consensus> {
        match &mut self.state {
            NodeState::Live(m) => Some(m),
            _ => None,
        }
    }

    /// Runs and is honest.
    pub(super) fn live_honest(&self) -> bool {
        self.adversary.is_none() && matches!(self.state, NodeState::Live(_))
    }
}
