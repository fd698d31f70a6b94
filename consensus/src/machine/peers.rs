//! The peer table of PROTOCOL.md 5: what each peer reports in its Status messages, and whether
//! it is in sync, diverged or excluded.

use std::collections::BTreeMap;
use std::fmt;

use libp2p_identity::PeerId;

use crate::hash::Hash32;
use crate::message::Status;

/// Most peers kept; past it the one heard from least recently is dropped (PROTOCOL.md 10).
pub const PEERS_MAX: usize = 1024;
/// Per peer, how many recent slots' divergence flags are kept.
const SLOTS_KEPT: usize = 8;
/// Per peer, how many recent heads are kept (fork detection compares them with the chain).
pub(crate) const HEADS_KEPT: usize = 32;
/// Consecutive diverged slots that exclude a peer (PROTOCOL.md 5, eligibility).
const DIVERGED_SLOTS_MAX: u64 = 3;

/// Where a peer stands in this node's peer table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PeerState {
    /// Known (e.g. from a violation) but no Status received yet.
    Unknown,
    /// It plays the winner of the slot it plays.
    InSync,
    /// It reports `diverged` for the slot it plays.
    Diverged,
    /// Diverged in three consecutive slots (and not yet eligible again), or continuously for
    /// `rules.exclusion_ms`.
    Excluded,
}

impl fmt::Display for PeerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PeerState::Unknown => "unknown",
            PeerState::InSync => "in sync",
            PeerState::Diverged => "diverged",
            PeerState::Excluded => "excluded",
        })
    }
}

/// A change of a peer's state, for the log ("peer ... excluded: diverged 3 slots").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerChange {
    /// The peer.
    pub peer: PeerId,
    /// Its state before.
    pub from: PeerState,
    /// Its state now.
    pub to: PeerState,
    /// Why, in words.
    pub reason: String,
}

/// One row of the peer table.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerInfo {
    /// Its state.
    pub state: PeerState,
    /// When (this node's network time) the current run of divergence was first reported.
    pub diverged_since_ms: Option<u64>,
    /// The first slot of the current run of divergence.
    pub diverged_since_slot: Option<u64>,
    /// Invalid messages it sent (PROTOCOL.md 3 and 10).
    pub violations: u64,
    /// When its last Status arrived (this node's network time).
    pub last_heard_ms: Option<u64>,
    /// Its last Status.
    pub status: Option<Status>,
    /// Recent slots it played, with whether it reported `diverged` in them.
    pub(crate) slots: BTreeMap<u64, bool>,
    /// Recent heads it reported: slot -> chain hash.
    pub(crate) heads: BTreeMap<u64, Hash32>,
}

impl PeerInfo {
    fn new() -> PeerInfo {
        PeerInfo {
            state: PeerState::Unknown,
            diverged_since_ms: None,
            diverged_since_slot: None,
            violations: 0,
            last_heard_ms: None,
            status: None,
            slots: BTreeMap::new(),
            heads: BTreeMap::new(),
        }
    }

    /// The chain hash it reported for `slot`, if one of its recent heads is at that slot.
    pub fn head_hash(&self, slot: u64) -> Option<Hash32> {
        self.heads.get(&slot).copied()
    }

    /// The slot of its latest head.
    pub fn head_slot(&self) -> Option<u64> {
        self.status.as_ref().map(|s| s.head.slot)
    }

    fn diverged_in(&self, slots: std::ops::RangeInclusive<u64>) -> bool {
        slots.into_iter().all(|j| self.slots.get(&j) == Some(&true))
    }

    /// The state its records give at `now` with `slot` its latest slot, and why.
    fn judge(&self, now: u64, slot: Option<u64>, exclusion_ms: u64) -> (PeerState, String) {
        let diverged = self.diverged_since_ms.is_some();
        if let Some(s) = slot {
            let n = DIVERGED_SLOTS_MAX;
            if diverged && s + 1 >= n && self.diverged_in(s + 1 - n..=s) {
                return (PeerState::Excluded, format!("diverged {n} slots"));
            }
            // Still banned: in sync now, but the three slots before were all diverged
            // (eligibility of PROTOCOL.md 5: it may not propose in this slot).
            if !diverged && s >= n && self.diverged_in(s - n..=s - 1) {
                return (PeerState::Excluded, format!("diverged {n} slots"));
            }
        }
        if let Some(since) = self.diverged_since_ms {
            if now.saturating_sub(since) >= exclusion_ms {
                return (
                    PeerState::Excluded,
                    format!("diverged for {} s", exclusion_ms / 1000),
                );
            }
            let at = self
                .diverged_since_slot
                .map_or(String::new(), |s| format!(" in slot {s}"));
            return (PeerState::Diverged, format!("diverged{at}"));
        }
        let reason = match (self.state, slot) {
            (PeerState::Excluded, _) => "rejoined".to_owned(),
            (_, Some(s)) => format!("in sync in slot {s}"),
            (_, None) => "in sync".to_owned(),
        };
        (PeerState::InSync, reason)
    }
}

/// The peer table: one [`PeerInfo`] per peer heard from, by PeerId.
#[derive(Debug, Clone, Default)]
pub struct PeerTable {
    peers: BTreeMap<Key, PeerInfo>,
    /// The diverged peers by `diverged_since_ms`: the machine asks for the next exclusion
    /// deadline after every input, and scanning a thousand peers each time dominated large
    /// simulations. Kept in step by [`PeerTable::reindex`].
    diverged: std::collections::BTreeSet<(u64, PeerId)>,
    /// Each indexed peer's key in `diverged`.
    diverged_key: BTreeMap<PeerId, u64>,
}

/// A table key: a PeerId ordered by the last 8 bytes of its multihash first (for an ed25519
/// identity, 8 bytes of the public key). The table is looked up on every Status received, and
/// comparing whole PeerIds (64-byte multihash arrays) dominated simulations of 1000 nodes. The
/// order stays a pure function of the PeerIds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key(u64, PeerId);

impl Key {
    fn of(peer: &PeerId) -> Key {
        let digest = peer.as_ref().digest();
        let take = digest.len().min(8);
        let mut prefix = [0u8; 8];
        prefix[8 - take..].copy_from_slice(&digest[digest.len() - take..]);
        Key(u64::from_be_bytes(prefix), *peer)
    }
}

impl PeerTable {
    /// Every peer, in the table's (deterministic) order.
    pub fn iter(&self) -> impl Iterator<Item = (&PeerId, &PeerInfo)> {
        self.peers.iter().map(|(k, v)| (&k.1, v))
    }

    /// One peer's row.
    pub fn get(&self, peer: &PeerId) -> Option<&PeerInfo> {
        self.peers.get(&Key::of(peer))
    }

    /// How many peers are known.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no peer is known.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// How many peers sent at least one Status.
    pub fn heard(&self) -> usize {
        self.peers
            .values()
            .filter(|p| p.last_heard_ms.is_some())
            .count()
    }

    /// Peers whose last Status arrived at or after `since_ms`.
    pub fn heard_since(&self, since_ms: u64) -> impl Iterator<Item = (&PeerId, &PeerInfo)> {
        self.iter()
            .filter(move |(_, p)| p.last_heard_ms.is_some_and(|t| t >= since_ms))
    }

    /// Puts `peer` into the deadline index, or takes it out, as its row now says.
    fn reindex(&mut self, peer: PeerId) {
        if let Some(old) = self.diverged_key.remove(&peer) {
            self.diverged.remove(&(old, peer));
        }
        if let Some(info) = self.peers.get(&Key::of(&peer))
            && info.state == PeerState::Diverged
            && let Some(since) = info.diverged_since_ms
        {
            self.diverged.insert((since, peer));
            self.diverged_key.insert(peer, since);
        }
    }

    fn entry(&mut self, peer: PeerId) -> &mut PeerInfo {
        let key = Key::of(&peer);
        if !self.peers.contains_key(&key) && self.peers.len() >= PEERS_MAX {
            // Least recently heard first (never heard counts as oldest); ties: smallest PeerId.
            let oldest = self
                .peers
                .iter()
                .min_by_key(|(k, p)| (p.last_heard_ms, k.1.to_bytes()))
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                self.peers.remove(&oldest);
                self.reindex(oldest.1);
            }
        }
        self.peers.entry(key).or_insert_with(PeerInfo::new)
    }

    /// Counts a violation of `peer`.
    pub(crate) fn violation(&mut self, peer: PeerId) {
        self.entry(peer).violations += 1;
    }

    /// Records a Status of `status.from`, received at `now`, about `slot` (the slot it plays,
    /// or the slot this node plays when it plays nothing). Returns the change of its state.
    pub(crate) fn on_status(
        &mut self,
        now: u64,
        slot: Option<u64>,
        status: Status,
        exclusion_ms: u64,
    ) -> Option<PeerChange> {
        let peer = status.from;
        let info = self.entry(peer);
        if let Some(s) = slot {
            info.slots.insert(s, status.diverged);
            while info.slots.len() > SLOTS_KEPT {
                info.slots.pop_first();
            }
        }
        if status.diverged {
            info.diverged_since_ms.get_or_insert(now);
            if let Some(s) = slot {
                info.diverged_since_slot.get_or_insert(s);
            }
        } else {
            info.diverged_since_ms = None;
            info.diverged_since_slot = None;
        }
        info.heads.insert(status.head.slot, status.head.chain_hash);
        while info.heads.len() > HEADS_KEPT {
            info.heads.pop_first();
        }
        info.last_heard_ms = Some(now);
        info.status = Some(status);
        let (to, reason) = info.judge(now, slot, exclusion_ms);
        let changed = change(peer, info, to, reason);
        self.reindex(peer);
        changed
    }

    /// When the next peer becomes excluded by time alone, if any is diverged.
    pub(crate) fn next_deadline(&self, exclusion_ms: u64) -> Option<u64> {
        self.diverged
            .first()
            .map(|(since, _)| since.saturating_add(exclusion_ms))
    }

    /// Excludes the peers diverged continuously for `exclusion_ms` at `now`, even between their
    /// Status messages.
    pub(crate) fn on_time(&mut self, now: u64, exclusion_ms: u64) -> Vec<PeerChange> {
        // Only the diverged peers whose deadline has passed: the index is sorted by
        // `diverged_since_ms`, so they are at its front.
        let due: Vec<PeerId> = self
            .diverged
            .iter()
            .take_while(|(since, _)| now.saturating_sub(*since) >= exclusion_ms)
            .map(|(_, peer)| *peer)
            .collect();
        let mut changes = Vec::new();
        for peer in due {
            if let Some(info) = self.peers.get_mut(&Key::of(&peer)) {
                let reason = format!("diverged for {} s", exclusion_ms / 1000);
                changes.extend(change(peer, info, PeerState::Excluded, reason));
            }
            self.reindex(peer);
        }
        changes
    }
}

fn change(peer: PeerId, info: &mut PeerInfo, to: PeerState, reason: String) -> Option<PeerChange> {
    let from = info.state;
    if from == to {
        return None;
    }
    info.state = to;
    Some(PeerChange {
        peer,
        from,
        to,
        reason,
    })
}

#[cfg(test)]
mod tests;
