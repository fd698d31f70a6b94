//! Handing out requests: manifests first, then want lists in deadline order.

use std::collections::BTreeMap;

use chorus_consensus::Hash32;
use libp2p::PeerId;

use super::super::{BATCH, PER_PEER};
use super::{Action, MANIFEST_PARALLEL, Phase, Planner};

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

    /// Want lists: walks the queue in deadline order, giving each block to the provider with
    /// the fewest requests in flight (then the shortest list so far) that has room and has not
    /// said it lacks the block; at most one new list per peer per call.
    pub(super) fn schedule_wants(&mut self) {
        let sources: BTreeMap<Hash32, Vec<PeerId>> = self
            .tracks
            .iter()
            .map(|(h, t)| (*h, self.peers.block_sources(t)))
            .collect();
        let mut lists: BTreeMap<PeerId, Vec<Hash32>> = BTreeMap::new();
        let mut taken = Vec::new();
        for (due, id) in &self.queue {
            let Some(b) = self.blocks.get(id) else {
                continue;
            };
            let load = |p: &PeerId| {
                let busy = self.in_flight.get(p).copied().unwrap_or(0);
                (busy, lists.get(p).map_or(0, Vec::len))
            };
            let choice = b
                .waiting
                .iter()
                .filter_map(|track| sources.get(track))
                .flatten()
                .filter(|p| !b.dont_have.contains(*p))
                .filter(|p| {
                    let (busy, open) = load(p);
                    busy < PER_PEER && open < BATCH
                })
                .min_by_key(|p| load(p))
                .copied();
            if let Some(peer) = choice {
                lists.entry(peer).or_default().push(*id);
                taken.push((*due, *id, peer));
            }
        }
        for (due, id, peer) in taken {
            self.queue.remove(&(due, id));
            if let Some(b) = self.blocks.get_mut(&id) {
                b.in_flight = Some(peer);
            }
        }
        for (peer, ids) in lists {
            *self.in_flight.entry(peer).or_default() += 1;
            self.actions.push_back(Action::Want { peer, ids });
        }
    }
}
