//! Swarming: what peers still fetching a track hold of it, learned from their answers and from
//! want-have probes.

use std::time::Duration;

use chorus_consensus::Hash32;
use libp2p::PeerId;

use super::{Action, Phase, Planner};

/// How often a peer is asked again what it holds of a track still being fetched.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);
/// Want-have probes sent per refresh, over all tracks and peers.
pub const PROBES_PER_REFRESH: usize = 24;

impl Planner {
    /// `peer` holds the segments of the track of manifest `manifest` flagged in `bits`, and
    /// those it was known to hold before: a holding is forgotten only when the peer says it
    /// lacks the block (`forget_holdings`). An answer parked at the peer carries the bitmap
    /// of when it was read, before the blocks it waited for came, and must not hide what
    /// referrals told of the peer since. A bitmap longer than the manifest's segments is a lie
    /// and ignored.
    pub(super) fn heard_holding(&mut self, peer: PeerId, manifest: &Hash32, bits: Vec<u8>) {
        let Some(t) = self
            .tracks
            .values_mut()
            .find(|t| t.track.manifest_id == *manifest)
        else {
            return;
        };
        if t.index.is_empty() || bits.len() > t.index.len().div_ceil(8) {
            return;
        }
        let known = t.partial.entry(peer).or_default();
        known.resize(known.len().max(bits.len()), 0);
        for (k, b) in known.iter_mut().zip(bits) {
            *k |= b;
        }
    }

    /// `from` answered "later" for `later` and named `referrals`, the peers it sent them to:
    /// each is taken to hold those blocks (a wrong referral costs one "don't have").
    pub(super) fn heard_referrals(&mut self, from: PeerId, later: &[Hash32], referrals: &[PeerId]) {
        for id in later {
            let Some(b) = self.blocks.get(id) else {
                continue;
            };
            for hash in &b.waiting {
                let Some(t) = self.tracks.get_mut(hash) else {
                    continue;
                };
                let Some(i) = t.index.get(id).copied() else {
                    continue;
                };
                let len = t.index.len().div_ceil(8);
                for r in referrals.iter().filter(|r| **r != from) {
                    let bits = t.partial.entry(*r).or_insert_with(|| vec![0; len]);
                    if let Some(byte) = bits.get_mut(i / 8) {
                        *byte |= 1 << (i % 8);
                    }
                }
            }
        }
    }

    /// `peer` said it lacks `ids`: whatever it (or a referral) said before, it does not hold
    /// them.
    pub(super) fn forget_holdings(&mut self, peer: PeerId, ids: &[Hash32]) {
        for id in ids {
            let Some(b) = self.blocks.get(id) else {
                continue;
            };
            for hash in &b.waiting {
                if let Some(t) = self.tracks.get_mut(hash)
                    && let Some(i) = t.index.get(id).copied()
                    && let Some(byte) = t
                        .partial
                        .get_mut(&peer)
                        .and_then(|bits| bits.get_mut(i / 8))
                {
                    *byte &= !(1 << (i % 8));
                }
            }
        }
    }

    /// Sends want-have probes for tracks with blocks still to fetch, earliest deadline first,
    /// to connected peers not known to hold them in full, with nothing asked of them in
    /// flight, and not probed for [`PROBE_EVERY`]; one probe per peer at a time.
    pub(super) fn probe_holdings(&mut self, now: Duration) {
        let mut tracks: Vec<(u64, Hash32)> = self
            .tracks
            .iter()
            .filter(
                |(_, t)| matches!(&t.phase, Phase::Fetching { pending, .. } if !pending.is_empty()),
            )
            .map(|(h, t)| (t.start_ms, *h))
            .collect();
        tracks.sort();
        let mut budget = PROBES_PER_REFRESH;
        for (_, hash) in tracks {
            let Some(t) = self.tracks.get_mut(&hash) else {
                continue;
            };
            let peers: Vec<PeerId> = self
                .peers
                .connected
                .iter()
                .filter(|p| !self.peers.banned.contains_key(*p) && !t.holders.contains(*p))
                // A peer with a want list in flight tells its holdings in the answer.
                .filter(|p| !self.in_flight.contains_key(*p) && !self.probing.contains(*p))
                .filter(|p| {
                    t.probed
                        .get(*p)
                        .is_none_or(|at| now.saturating_sub(*at) >= PROBE_EVERY)
                })
                .copied()
                .collect();
            for peer in peers {
                if budget == 0 {
                    return;
                }
                budget -= 1;
                t.probed.insert(peer, now);
                self.probing.insert(peer);
                self.actions.push_back(Action::Want {
                    peer,
                    ids: Vec::new(),
                    track: Some(t.track.manifest_id),
                });
            }
        }
    }
}
