//! What the planner remembers of each track, each pending block and each peer.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chorus_consensus::{Hash32, TrackRef};
use libp2p::PeerId;

use super::Want;

/// Where a track's fetch stands.
#[derive(Debug)]
pub(super) enum Phase {
    /// The shell is looking for its manifest in the store.
    Reading,
    /// Its manifest is asked of the DHT's providers and of peers.
    Seeking,
    /// Its manifest is held; blocks are fetched.
    Fetching {
        /// Segment ids in playing order.
        segments: Vec<Hash32>,
        /// Those not in the store yet.
        pending: BTreeSet<Hash32>,
    },
    /// Its manifest broke the rules or contradicted the TrackRef: never asked for again.
    Refused,
}

/// One wanted track.
#[derive(Debug)]
pub(super) struct TrackFetch {
    pub(super) track: TrackRef,
    /// The slot it was first wanted for (reported with `Unavailable`).
    pub(super) slot: u64,
    /// The earliest deadline it was wanted by.
    pub(super) start_ms: u64,
    pub(super) segment_ms: u64,
    pub(super) phase: Phase,
    /// Peers asked for its manifest this round.
    pub(super) manifest_tried: BTreeSet<PeerId>,
    pub(super) manifest_in_flight: usize,
    /// Peers known to hold it: the hint, DHT providers, peers that sent the manifest.
    pub(super) holders: Vec<PeerId>,
    /// When its last round (DHT query, manifests asked again) began.
    pub(super) last_round: Option<Duration>,
    pub(super) dht_in_flight: bool,
    /// The DHT answered a providers query for it at least once.
    pub(super) dht_answered: bool,
    /// Peers asked for its manifest or a block that delivered nothing (no manifest, don't
    /// have, a failure, a corrupt block), since it was first wanted: never cleared (12.2).
    pub(super) lacking: BTreeSet<PeerId>,
    /// `FetchEvent::Unavailable` was reported for it.
    pub(super) unavailable_sent: bool,
    pub(super) started: Duration,
    pub(super) fetched: usize,
    pub(super) bytes: u64,
    /// Each segment's position in the manifest, once it is held.
    pub(super) index: BTreeMap<Hash32, usize>,
    /// What peers told of their holdings of it (bit `i` for segment `i`): peers still
    /// fetching it serve the segments they have (swarming).
    pub(super) partial: BTreeMap<PeerId, Vec<u8>>,
    /// When each peer was last sent a want-have probe for it.
    pub(super) probed: BTreeMap<PeerId, Duration>,
}

impl TrackFetch {
    pub(super) fn new(now: Duration, want: Want) -> TrackFetch {
        TrackFetch {
            track: want.track,
            slot: want.slot,
            start_ms: want.start_ms,
            segment_ms: want.segment_ms,
            phase: Phase::Reading,
            manifest_tried: BTreeSet::new(),
            manifest_in_flight: 0,
            holders: want.hint.into_iter().collect(),
            last_round: None,
            dht_in_flight: false,
            dht_answered: false,
            lacking: BTreeSet::new(),
            unavailable_sent: false,
            started: now,
            fetched: 0,
            bytes: 0,
            index: BTreeMap::new(),
            partial: BTreeMap::new(),
            probed: BTreeMap::new(),
        }
    }

    pub(super) fn add_holder(&mut self, peer: PeerId) {
        if !self.holders.contains(&peer) {
            self.holders.push(peer);
        }
    }

    /// Whether `peer` said it holds block `id` of this track.
    pub(super) fn partial_holds(&self, peer: &PeerId, id: &Hash32) -> bool {
        match (self.partial.get(peer), self.index.get(id)) {
            (Some(bits), Some(i)) => crate::net::protocol::holds(bits, *i),
            _ => false,
        }
    }

    /// When block `id` of it is due (its first place in the manifest), once the manifest is
    /// held.
    pub(super) fn due_of(&self, id: &Hash32) -> Option<u64> {
        let Phase::Fetching { segments, .. } = &self.phase else {
            return None;
        };
        let i = segments.iter().position(|s| s == id)?;
        Some(
            self.start_ms
                .saturating_add(self.segment_ms.saturating_mul(i as u64)),
        )
    }

    /// Block `id` of it, `len` bytes, is now in the store.
    pub(super) fn got(&mut self, id: &Hash32, len: u64) {
        if let Phase::Fetching { pending, .. } = &mut self.phase
            && pending.remove(id)
        {
            self.fetched += 1;
            self.bytes += len;
        }
    }
}

/// One block not in the store yet.
#[derive(Debug)]
pub(super) struct BlockState {
    /// The tracks that list it (two tracks may share a block, a silent one say).
    pub(super) waiting: BTreeSet<Hash32>,
    /// Its earliest deadline over those tracks.
    pub(super) due_ms: u64,
    /// Peers that said they lack it (or hold it back) since the last refresh.
    pub(super) dont_have: BTreeSet<PeerId>,
    pub(super) in_flight: Option<PeerId>,
    /// The first refresh that found it in flight to that peer.
    pub(super) seen_in_flight: Option<Duration>,
    /// It has been in flight for [`HEDGE_AFTER`](super::HEDGE_AFTER): ask a second holder.
    pub(super) hedge_due: bool,
    /// The second holder asked (the first answer with it wins).
    pub(super) hedge: Option<PeerId>,
}

impl BlockState {
    pub(super) fn new() -> BlockState {
        BlockState {
            waiting: BTreeSet::new(),
            due_ms: u64::MAX,
            dont_have: BTreeSet::new(),
            in_flight: None,
            seen_in_flight: None,
            hedge_due: false,
            hedge: None,
        }
    }
}

/// The peers the planner knows of, whatever the track.
#[derive(Debug, Default)]
pub(super) struct Peers {
    pub(super) connected: BTreeSet<PeerId>,
    /// Peers reached only through a relay: never asked (blocks and manifests go over direct
    /// connections), so never found lacking either.
    pub(super) relayed: BTreeSet<PeerId>,
    /// Peers that served a corrupt block or manifest, until when.
    pub(super) banned: BTreeMap<PeerId, Duration>,
    /// Peers reached directly over the local network: asked first for the blocks they hold.
    pub(super) lan: BTreeSet<PeerId>,
    /// Public peers reached directly, whose uplinks are not a home's: asked next.
    pub(super) hubs: BTreeSet<PeerId>,
}

impl Peers {
    /// Peers to ask for a track: those known to hold it first, then every connected peer,
    /// less the banned and those reached only through a relay (a holder not connected at all
    /// is dialed by the request).
    pub(super) fn candidates(&self, track: &TrackFetch) -> Vec<PeerId> {
        let mut peers: Vec<PeerId> = track
            .holders
            .iter()
            .filter(|p| !self.relayed.contains(*p))
            .copied()
            .collect();
        for p in &self.connected {
            if !peers.contains(p) {
                peers.push(*p);
            }
        }
        peers.retain(|p| !self.banned.contains_key(p));
        peers
    }

    /// How `peer` ranks as a provider of a block, least first: one on the LAN that holds it,
    /// a hub that holds it, any other that holds it, then one not known to hold it.
    pub(super) fn tier(&self, peer: &PeerId, holds: bool) -> u8 {
        match (holds, self.lan.contains(peer), self.hubs.contains(peer)) {
            (false, _, _) => 3,
            (true, true, _) => 0,
            (true, false, true) => 1,
            (true, false, false) => 2,
        }
    }

    /// Whether `peer` may be asked: connected and not banned.
    pub(super) fn usable(&self, peer: &PeerId) -> bool {
        self.connected.contains(peer) && !self.banned.contains_key(peer)
    }

    /// Peers to ask for blocks: the known holders when any is usable (connected, not banned,
    /// and has not lacked anything of the track), else every candidate.
    pub(super) fn block_sources(&self, track: &TrackFetch) -> Vec<PeerId> {
        let holders: Vec<PeerId> = track
            .holders
            .iter()
            .filter(|p| !self.banned.contains_key(*p) && self.connected.contains(*p))
            .filter(|p| !track.lacking.contains(*p))
            .copied()
            .collect();
        if holders.is_empty() {
            self.candidates(track)
        } else {
            holders
        }
    }
}
