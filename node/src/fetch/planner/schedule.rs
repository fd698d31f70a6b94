//! Handing out requests: manifests first, then want lists in deadline order.

use std::collections::BTreeMap;

use chorus_consensus::Hash32;
use libp2p::PeerId;

use super::super::{BATCH, PER_PEER};
use super::state::BlockState;
use super::{Action, MANIFEST_PARALLEL, Phase, Planner};

/// How a provider ranks for a block, least first: a peer said to hold the block (on the LAN,
/// then a hub, then any other: `Peers::tier`) before one only taken to have the track, then
/// fewer lists in flight, then a shorter list.
type Rank = (u8, (usize, usize));

impl Planner {
    /// Manifest requests: up to [`MANIFEST_PARALLEL`] per track at once, to peers not asked
    /// this round, the likely holders first.
    pub(super) fn schedule_manifests(&mut self) {
        for t in self.tracks.values_mut() {
            if !matches!(t.phase, Phase::Seeking) || t.manifest_in_flight >= MANIFEST_PARALLEL {
                continue;
            }
            let picks: Vec<PeerId> = self
                .peers
                .candidates(t)
                .into_iter()
                .filter(|p| !t.manifest_tried.contains(p))
                .take(MANIFEST_PARALLEL - t.manifest_in_flight)
                .collect();
            for peer in picks {
                t.manifest_in_flight += 1;
                t.manifest_tried.insert(peer);
                self.actions.push_back(Action::RequestManifest {
                    peer,
                    track: t.track.clone(),
                    slot: t.slot,
                    segment_ms: t.segment_ms,
                });
            }
        }
    }

    /// Want lists: walks the queue in deadline order, giving each block to a provider that has
    /// room and has not said it lacks the block: a peer said to hold the block (by its own
    /// bitmap or a referral; swarming) before the track's other sources, on the LAN first,
    /// then a hub (a public peer: on the testbed's ten nodes it holds a new track long before
    /// the homes, and serves faster than a home's uplink), then the fewest requests in
    /// flight, then the shortest list so far; at most one new list per peer per call.
    pub(super) fn schedule_wants(&mut self) {
        let sources: BTreeMap<Hash32, Vec<PeerId>> = self
            .tracks
            .iter()
            .map(|(h, t)| (*h, self.peers.block_sources(t)))
            .collect();
        let mut lists: BTreeMap<PeerId, Vec<Hash32>> = BTreeMap::new();
        let mut manifests: BTreeMap<PeerId, Hash32> = BTreeMap::new();
        let mut taken = Vec::new();
        for (due, id) in &self.queue {
            let Some(b) = self.blocks.get(id) else {
                continue;
            };
            if let Some((peer, manifest)) = self.best_provider(id, b, Some(&sources), &lists) {
                lists.entry(peer).or_default().push(*id);
                manifests.entry(peer).or_insert(manifest);
                taken.push((*due, *id, peer));
            }
        }
        // End game: a block in flight for `HEDGE_AFTER` is asked of a second peer said to hold
        // it too, the best ranked with room, never one only taken to have the track.
        let mut hedges = Vec::new();
        for (id, b) in self.blocks.iter().filter(|(_, b)| b.hedge_due) {
            if let Some((peer, manifest)) = self.best_provider(id, b, None, &lists) {
                lists.entry(peer).or_default().push(*id);
                manifests.entry(peer).or_insert(manifest);
                hedges.push((*id, peer));
            }
        }
        for (id, peer) in hedges {
            if let Some(b) = self.blocks.get_mut(&id) {
                b.hedge = Some(peer);
                b.hedge_due = false;
            }
        }
        for (due, id, peer) in taken {
            self.queue.remove(&(due, id));
            if let Some(b) = self.blocks.get_mut(&id) {
                b.in_flight = Some(peer);
                b.seen_in_flight = None;
            }
        }
        for (peer, ids) in lists {
            *self.in_flight.entry(peer).or_default() += 1;
            let track = manifests.get(&peer).copied();
            self.actions.push_back(Action::Want { peer, ids, track });
        }
    }

    /// The best provider with room for block `id` (state `b`), given the lists handed out so
    /// far, and the manifest id of the track it is asked for: among the peers said to hold it
    /// and the track's `sources` when given, less those that said they lack it and those it
    /// is in flight to; ranked as [`Rank`] says.
    fn best_provider(
        &self,
        id: &Hash32,
        b: &BlockState,
        sources: Option<&BTreeMap<Hash32, Vec<PeerId>>>,
        lists: &BTreeMap<PeerId, Vec<Hash32>>,
    ) -> Option<(PeerId, Hash32)> {
        let mut best: Option<(Rank, PeerId, Hash32)> = None;
        for hash in &b.waiting {
            let Some(t) = self.tracks.get(hash) else {
                continue;
            };
            let seeds = sources
                .and_then(|s| s.get(hash))
                .into_iter()
                .flatten()
                .copied();
            let swarm = t
                .partial
                .keys()
                .filter(|p| t.partial_holds(p, id) && self.peers.usable(p))
                .copied();
            for p in seeds.chain(swarm) {
                let busy = self.in_flight.get(&p).copied().unwrap_or(0);
                let open = lists.get(&p).map_or(0, Vec::len);
                if b.dont_have.contains(&p)
                    || b.in_flight == Some(p)
                    || b.hedge == Some(p)
                    || busy >= PER_PEER
                    || open >= BATCH
                {
                    continue;
                }
                let key = (self.peers.tier(&p, t.partial_holds(&p, id)), (busy, open));
                if best.as_ref().is_none_or(|(k, _, _)| key < *k) {
                    best = Some((key, p, t.track.manifest_id));
                }
            }
        }
        best.map(|(_, peer, manifest)| (peer, manifest))
    }
}
