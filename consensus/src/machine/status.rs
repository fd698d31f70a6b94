//! This node's own Status (PROTOCOL.md 2 and 5): what it plays, whether it is diverged, when
//! it publishes; the substitute it plays for a blacklisted winner; and the summary of the
//! peer table for the log.

use std::fmt;
use std::sync::Arc;

use libp2p_identity::PeerId;

use super::peers::PeerState;
use super::{Action, Consensus, Topic};
use crate::envelope::Envelope;
use crate::hash::Hash32;
use crate::message::{Played, Playing, Status};
use crate::track::TrackRef;

/// Per peer heard from, the status period grows by this much (PROTOCOL.md 5), ms.
const STATUS_MS_PER_PEER: u64 = 250;
/// Slots of play history kept behind the slot playing (proposals report k-8 .. k-5).
const PLAYED_KEPT: u64 = 16;
/// Domain of the choice of a substitute track.
const SUBSTITUTE_DOMAIN: &[u8] = b"chorus/substitute/v1";

/// The peer table in one line: `status slot=9 in_sync=3/4 diverged=[...] excluded=[]`.
///
/// Counts include this node; `diverged` and `excluded` list peers (and this node when it
/// diverges), by PeerId.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSummary {
    /// The slot playing, if any.
    pub slot: Option<u64>,
    /// Nodes in sync (this node included when it is).
    pub in_sync: usize,
    /// Nodes known: this node and every peer that sent a Status.
    pub total: usize,
    /// Diverged nodes.
    pub diverged: Vec<PeerId>,
    /// Excluded peers.
    pub excluded: Vec<PeerId>,
}

impl fmt::Display for StatusSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |peers: &[PeerId]| {
            peers
                .iter()
                .map(PeerId::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        match self.slot {
            Some(slot) => write!(f, "status slot={slot}")?,
            None => write!(f, "status slot=-")?,
        }
        write!(
            f,
            " in_sync={}/{} diverged=[{}] excluded=[{}]",
            self.in_sync,
            self.total,
            list(&self.diverged),
            list(&self.excluded)
        )
    }
}

impl Consensus {
    /// The status period: `max(rules.status_interval_ms, 250 ms * peers heard from)`.
    pub fn status_period(&self) -> u64 {
        let peers = u64::try_from(self.peers.heard()).unwrap_or(u64::MAX);
        self.chain
            .rules()
            .status_interval_ms
            .max(STATUS_MS_PER_PEER.saturating_mul(peers))
    }

    /// Whether this node plays something other than the winner in `slot` (a substitute for a
    /// blacklisted winner, nothing, or what the player reported). False while the winner is
    /// unknown. A winner reported unavailable ([`Consensus::report_unavailable`]) counts as
    /// diverged here, for the Status and the log, although the `plays` mark keeps the node
    /// eligible (PROTOCOL.md 12.2).
    pub fn diverged_in(&self, slot: u64) -> bool {
        self.chain
            .winner(slot)
            .is_some_and(|w| self.play(slot).1 != Some(Played::Track(w.track_hash)))
    }

    /// Query: what this node's proposals report for `slot`: the track it played, the mark
    /// `unavailable`, or None (nothing, or a slot before it joined).
    pub fn played_in(&self, slot: u64) -> Option<Played> {
        self.play(slot).1
    }

    /// Query: the peer table summarised for the log at network time `now`.
    pub fn status_summary(&self, now: u64) -> StatusSummary {
        let slot = self.chain.slot_at(now);
        let me_diverged = slot.is_some_and(|s| self.diverged_in(s));
        let mut summary = StatusSummary {
            slot,
            in_sync: usize::from(!me_diverged),
            total: 1,
            diverged: Vec::new(),
            excluded: Vec::new(),
        };
        if me_diverged {
            summary.diverged.push(self.me);
        }
        for (peer, info) in self.peers.iter() {
            match info.state {
                PeerState::Unknown => continue,
                PeerState::InSync => summary.in_sync += 1,
                PeerState::Diverged => summary.diverged.push(*peer),
                PeerState::Excluded => summary.excluded.push(*peer),
            }
            summary.total += 1;
        }
        summary
    }

    /// This node's Status at `now`.
    pub fn status(&self, now: u64) -> Status {
        let slot = self.chain.slot_at(now);
        let playing = slot.and_then(|s| {
            let track_hash = *self.play(s).1?.track()?;
            let start = self.chain.start(s)?;
            Some(Playing {
                slot: s,
                track_hash,
                position_ms: now.saturating_sub(start),
            })
        });
        let next = match slot {
            Some(s) => s + 1,
            None if self.chain.start(0).is_some_and(|s| now < s) => 0,
            None => self.chain.len(),
        };
        let queue = (next..self.chain.len())
            .filter_map(|j| self.chain.winner(j).map(|t| t.track_hash))
            .take(crate::limits::STATUS_QUEUE_MAX)
            .collect();
        Status {
            network_id: *self.chain.network_id(),
            from: self.me,
            sent_ms: now,
            playing,
            consensus_track: slot.and_then(|s| self.chain.winner(s).map(|t| t.track_hash)),
            diverged: slot.is_some_and(|s| self.diverged_in(s)),
            head: self.chain.head(),
            queue,
            version: self.version.clone(),
        }
    }

    /// When the own Status is next due, or the divergence may change (a slot starts).
    pub(super) fn next_status_check(&self) -> Option<u64> {
        let Some(last) = self.last_now else {
            // Not started: the driver should call `handle_timeout` at once.
            return Some(0);
        };
        if self.recheck {
            return Some(last);
        }
        let next_slot = match self.slot_bounds {
            Some((lo, hi, next)) if (lo..hi).contains(&last) => next,
            _ => self.next_slot_start(last),
        };
        debug_assert_eq!(
            next_slot,
            self.next_slot_start(last),
            "bound_slot after inputs"
        );
        [self.next_status_ms, self.fork_due_ms, next_slot]
            .into_iter()
            .flatten()
            .min()
    }

    /// When the slot after the one playing at `last` starts (the first slot before the
    /// genesis start), if the chain tells.
    fn next_slot_start(&self, last: u64) -> Option<u64> {
        match self.chain.slot_at(last) {
            Some(s) => self.chain.start(s + 1),
            None => self.chain.start(0).filter(|s| *s > last),
        }
    }

    /// Keeps `slot_bounds` valid for `last_now` and the chain.
    pub(super) fn bound_slot(&mut self) {
        let Some(last) = self.last_now else {
            self.slot_bounds = None;
            return;
        };
        if self
            .slot_bounds
            .is_some_and(|(lo, hi, _)| (lo..hi).contains(&last))
        {
            return;
        }
        let bounds = match self.chain.slot_at(last) {
            Some(s) => self
                .chain
                .start(s)
                .zip(self.chain.start(s + 1))
                .map(|(lo, hi)| (lo, hi, Some(hi))),
            None => match self.chain.start(0) {
                Some(first) if last < first => Some((0, first, Some(first))),
                // Past the known schedule: none until the chain grows.
                _ => Some((last, u64::MAX, None)),
            },
        };
        self.slot_bounds = bounds;
    }

    /// Evaluates forks when due (see [`Consensus::fork_tick`]), then publishes the Status when
    /// it is due or when `diverged` changed.
    pub(super) fn status_tick(&mut self, now: u64) {
        let diverged = self.chain.slot_at(now).is_some_and(|s| self.diverged_in(s));
        let due = self.next_status_ms.is_none_or(|t| t <= now);
        self.fork_tick(now, due);
        if !due && diverged == self.last_diverged {
            return;
        }
        if due {
            self.next_status_ms = Some(now.saturating_add(self.status_period()));
            self.enroll_tick(now);
        }
        self.last_diverged = diverged;
        let envelope = Envelope::seal(&self.status(now), &self.keypair)
            .expect("invariant: the body is from our own key");
        self.actions.push_back(Action::Publish {
            topic: Topic::Status,
            envelope,
        });
    }

    /// Starts bringing into the cache what [`Consensus::handle_shared`] will touch for `shared`
    /// (the sender's peer-table row, for a Status), and returns at once: a caller with many
    /// machines to feed calls it a few messages ahead, so that their cache misses overlap
    /// instead of following each other. Changes nothing.
    pub fn prefetch(&self, shared: &super::Shared) {
        if let Some(status) = &shared.status {
            self.peers.prefetch(&status.from);
        }
    }

    /// The step before [`Consensus::prefetch`], a few messages earlier: starts bringing into
    /// the cache where the sender's peer-table row is. Changes nothing.
    pub fn prefetch_index(&self, shared: &super::Shared) {
        if let Some(status) = &shared.status {
            self.peers.prefetch_index(&status.from);
        }
    }

    /// The first step of [`Consensus::prefetch`], a few messages earlier still: starts
    /// bringing into the cache the part of this machine that locates its peer-table rows (the
    /// machine itself is not read). Changes nothing.
    pub fn prefetch_table(&self) {
        self.peers.prefetch_header();
    }

    /// Records a peer's Status in the peer table.
    pub(super) fn on_status(&mut self, now: u64, status: &Arc<Status>) {
        if status.from == self.me {
            return;
        }
        let slot = status
            .playing
            .as_ref()
            .map(|p| p.slot)
            .or_else(|| self.chain.slot_at(now));
        let exclusion_ms = self.chain.rules().exclusion_ms;
        self.peers.follow_chain(&self.chain);
        if let Some(change) = self.peers.on_status(now, slot, status, exclusion_ms) {
            self.actions.push_back(Action::PeerChanged(change));
        }
        if self.peers.take_turned() {
            self.want_fork_evaluation(now.saturating_add(super::fork::FORK_TURN_DELAY_MS));
        }
    }

    /// For every decided slot not yet played whose winner is blacklisted, tells the driver to
    /// play a substitute (PROTOCOL.md 5): the node reports itself diverged for that slot only.
    pub(super) fn substitute_blacklisted(&mut self, now: u64) {
        let from = match self.chain.slot_at(now) {
            Some(s) => s,
            None if self.chain.start(0).is_some_and(|s| now < s) => 0,
            None => self.chain.len(),
        };
        self.played.retain(|j, _| *j + PLAYED_KEPT >= from);
        self.substituted.retain(|j| *j >= from);
        for slot in from..self.chain.len() {
            let blacklisted = self
                .chain
                .winner(slot)
                .is_some_and(|w| self.blacklist.contains(&w.track_hash));
            if !blacklisted || self.substituted.contains(&slot) || self.played.contains_key(&slot) {
                continue;
            }
            let track = self.pick_substitute(slot);
            self.played
                .insert(slot, track.as_ref().map(|t| Played::Track(t.track_hash)));
            self.substituted.insert(slot);
            self.actions
                .push_back(Action::PlaySubstitute { slot, track });
        }
    }

    /// Query: a track of the own library, not blacklisted, to play instead of `slot`'s winner
    /// (blacklisted, or not fetched in time): preferably one that lasts the whole slot; chosen
    /// by a hash of this node and the slot. `None` with nothing to play.
    pub fn pick_substitute(&self, slot: u64) -> Option<TrackRef> {
        let length = self.chain.winner(slot).map_or(0, |w| w.duration_ms);
        let usable: Vec<&TrackRef> = self
            .library
            .values()
            .filter(|t| !self.blacklist.contains(&t.track_hash))
            .collect();
        let long: Vec<&TrackRef> = usable
            .iter()
            .copied()
            .filter(|t| t.duration_ms >= length)
            .collect();
        let pool = if long.is_empty() { usable } else { long };
        let n = u64::try_from(pool.len()).ok().filter(|n| *n > 0)?;
        let seed =
            Hash32::digest_parts(&[SUBSTITUTE_DOMAIN, &self.me.to_bytes(), &slot.to_be_bytes()]);
        let mut first = [0u8; 8];
        first.copy_from_slice(&seed.0[..8]);
        let index = usize::try_from(u64::from_be_bytes(first) % n).ok()?;
        pool.get(index).map(|t| (*t).clone())
    }
}

#[cfg(test)]
mod tests;
