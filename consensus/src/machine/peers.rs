//! The peer table of PROTOCOL.md 5: what each peer reports in its Status messages, and whether
//! it is in sync, diverged or excluded.

mod recent;
mod rows;

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use libp2p_identity::PeerId;

use crate::chain::Chain;
use crate::hash::Hash32;
use crate::message::{Head, Status};
pub(crate) use recent::{Check, Heads, SlotFlags};
use rows::Rows;

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
///
/// Fields in the order written (`repr(C)`), the recent heads last: a Status received reads
/// and writes everything before the ring of heads, which [`Row`] keeps in a few cache lines.
#[derive(Debug, Clone, PartialEq)]
#[repr(C)]
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
    /// Its last Status (shared: a simulator hands one Status to a thousand tables).
    pub status: Option<Arc<Status>>,
    /// Recent slots it played, with whether it reported `diverged` in them.
    pub(crate) slots: SlotFlags<SLOTS_KEPT>,
    /// Recent heads it reported: slot -> the last Status reporting its head at that slot.
    pub(crate) heads: Heads<HEADS_KEPT>,
    /// The `library_hash` of its latest admitted proposal: peers with the same one propose
    /// from identical libraries (one DJ running clones).
    pub library_hash: Option<Hash32>,
}

/// Why a peer is in its state; formatted only when the state changes (a thousand peers'
/// Status messages mostly change nothing).
#[derive(Debug, Clone, Copy)]
enum Reason {
    DivergedSlots,
    DivergedFor(u64),
    DivergedIn(Option<u64>),
    Rejoined,
    InSyncIn(Option<u64>),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::DivergedSlots => write!(f, "diverged {DIVERGED_SLOTS_MAX} slots"),
            Reason::DivergedFor(ms) => write!(f, "diverged for {} s", ms / 1000),
            Reason::DivergedIn(Some(s)) => write!(f, "diverged in slot {s}"),
            Reason::DivergedIn(None) => f.write_str("diverged"),
            Reason::Rejoined => f.write_str("rejoined"),
            Reason::InSyncIn(Some(s)) => write!(f, "in sync in slot {s}"),
            Reason::InSyncIn(None) => f.write_str("in sync"),
        }
    }
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
            slots: SlotFlags::default(),
            heads: Heads::default(),
            library_hash: None,
        }
    }

    /// The chain hash it reported for `slot`, if one of its recent heads is at that slot.
    pub fn head_hash(&self, slot: u64) -> Option<Hash32> {
        self.heads.hash_at(slot)
    }

    /// The slot of its latest head.
    pub fn head_slot(&self) -> Option<u64> {
        self.status.as_ref().map(|s| s.head.slot)
    }

    fn diverged_in(&self, slots: std::ops::RangeInclusive<u64>) -> bool {
        slots.into_iter().all(|j| self.slots.get(j) == Some(true))
    }

    /// The state its records give at `now` with `slot` its latest slot, and why.
    fn judge(&self, now: u64, slot: Option<u64>, exclusion_ms: u64) -> (PeerState, Reason) {
        let diverged = self.diverged_since_ms.is_some();
        if let Some(s) = slot {
            let n = DIVERGED_SLOTS_MAX;
            if diverged && s + 1 >= n && self.diverged_in(s + 1 - n..=s) {
                return (PeerState::Excluded, Reason::DivergedSlots);
            }
            // Still banned: in sync now, but the three slots before were all diverged
            // (eligibility of PROTOCOL.md 5: it may not propose in this slot).
            if !diverged && s >= n && self.diverged_in(s - n..=s - 1) {
                return (PeerState::Excluded, Reason::DivergedSlots);
            }
        }
        if let Some(since) = self.diverged_since_ms {
            if now.saturating_sub(since) >= exclusion_ms {
                return (PeerState::Excluded, Reason::DivergedFor(exclusion_ms));
            }
            return (
                PeerState::Diverged,
                Reason::DivergedIn(self.diverged_since_slot),
            );
        }
        let reason = match self.state {
            PeerState::Excluded => Reason::Rejoined,
            _ => Reason::InSyncIn(slot),
        };
        (PeerState::InSync, reason)
    }
}

/// A PeerId's lookup key: the last 8 bytes of its multihash (for an ed25519 identity, 8 bytes
/// of the public key), read big-endian. The table also orders its rows by it first, then by
/// the whole PeerId: the order stays a pure function of the PeerIds.
fn prefix(peer: &PeerId) -> u64 {
    let digest = peer.as_ref().digest();
    let take = digest.len().min(8);
    let mut bytes = [0u8; 8];
    bytes[8 - take..].copy_from_slice(&digest[digest.len() - take..]);
    u64::from_be_bytes(bytes)
}

/// A row and what locates it.
///
/// Fields in the order written, on cache-line boundaries: what a Status received reads and
/// writes (the lookup's key and PeerId, then the row up to the ring of heads) lies in the first
/// [`ROW_HOT`] bytes, the few cache lines [`PeerTable::prefetch`] asks for.
#[derive(Debug, Clone)]
#[repr(C, align(64))]
struct Row {
    /// `prefix(&peer)`.
    key: u64,
    peer: PeerId,
    /// Its entry in the deadline index, if any: `diverged_since_ms` when indexed.
    indexed: Option<u64>,
    info: PeerInfo,
}

/// The bytes at the start of a [`Row`] that a Status received reads, the ring of heads aside.
const ROW_HOT: usize = std::mem::offset_of!(Row, info)
    + std::mem::offset_of!(PeerInfo, heads)
    + Heads::<HEADS_KEPT>::RING_AT;

/// The peer table: one [`PeerInfo`] per peer heard from, by PeerId.
///
/// Rows are stored where a hash of their PeerId points ([`rows`](self::rows)): the table is
/// looked up on every Status received, and ordered maps keyed by PeerIds (64-byte multihash
/// arrays) dominated simulations of 1000 nodes. Iteration follows `order` (by key, then
/// PeerId), never the storage.
#[derive(Debug, Clone, Default)]
pub struct PeerTable {
    rows: Rows,
    /// `(key, position)` by key, then PeerId: the table's order. Keys first, in a compact
    /// vector, so that placing a new peer rarely reads a row.
    order: Vec<(u64, usize)>,
    /// Rows with a Status.
    heard: usize,
    /// The diverged peers by `diverged_since_ms`: the machine asks for the next exclusion
    /// deadline after every input, and scanning a thousand peers each time dominated large
    /// simulations. Kept in step by [`PeerTable::reindex`].
    diverged: BTreeSet<(u64, PeerId)>,
    /// The kept heads of every row by [`Check`], and the own chain they were compared with:
    /// see [`PeerTable::forks_possible`].
    audit: Audit,
    /// A peer's newest head went from agreeing with the own chain (or unknown) to differing
    /// since [`PeerTable::take_turned`] was last called: a fork may have become visible.
    turned: bool,
}

/// What [`PeerTable::forks_possible`] keeps.
///
/// Fork evaluation (PROTOCOL.md 9) reads a head of every peer heard from, at each own Status:
/// in a network of 1000 that was a large share of a simulation, and nearly always found every
/// peer on the own chain. Each kept head carries a [`Check`] against the own chain, given when
/// it is recorded (from the last two chain hashes kept here) and revised when the own chain
/// changes; while no head differs and none is unchecked, no evaluation can find another chain.
#[derive(Debug, Clone, Default)]
struct Audit {
    /// Heads whose check is `Differs`.
    differs: usize,
    /// Heads whose check is `Unchecked`.
    unchecked: usize,
    /// The length of the own chain the checks refer to (0: none yet, every head unchecked).
    len: u64,
    /// Its chain hashes at `len - 1` and `len - 2`, where known.
    tail: [Option<(u64, Hash32)>; 2],
    /// The own chain changed other than by growing: every check must be given again.
    stale: bool,
}

impl Audit {
    /// The check of `head` against the chain this audit refers to, from what it keeps.
    fn check(&self, head: &Head) -> Check {
        if head.slot >= self.len {
            return Check::Unchecked;
        }
        match self
            .tail
            .iter()
            .flatten()
            .find(|(slot, _)| *slot == head.slot)
        {
            Some((_, hash)) if *hash == head.chain_hash => Check::Agrees,
            Some(_) => Check::Differs,
            None => Check::Unchecked,
        }
    }

    /// Counts `check` in (`add`) or out.
    fn count(&mut self, check: Check, add: bool) {
        let n = match check {
            Check::Agrees => return,
            Check::Differs => &mut self.differs,
            Check::Unchecked => &mut self.unchecked,
        };
        if add {
            *n += 1;
        } else {
            *n -= 1;
        }
    }

    /// Refers to `chain` from now on; notes whether it only grew since.
    fn follow(&mut self, chain: &Chain) {
        let len = chain.len();
        if len == self.len {
            // Same length: the same chain unless its last hash changed.
            if self.tail[0].is_some_and(|(slot, hash)| chain.chain_hash(slot) != Some(hash)) {
                self.stale = true;
            } else {
                return;
            }
        }
        let grew = len > self.len
            && self.tail[0].is_none_or(|(slot, hash)| chain.chain_hash(slot) == Some(hash));
        if !grew && self.len > 0 {
            self.stale = true;
        }
        self.len = len;
        let at = |back: u64| {
            let slot = len.checked_sub(back)?;
            chain.chain_hash(slot).map(|hash| (slot, hash))
        };
        self.tail = [at(1), at(2)];
    }
}

/// The check of `head` against `chain`.
fn check_against(chain: &Chain, head: &Head) -> Check {
    if head.slot >= chain.len() {
        Check::Unchecked
    } else if chain.chain_hash(head.slot) == Some(head.chain_hash) {
        Check::Agrees
    } else {
        Check::Differs
    }
}

impl PeerTable {
    /// Every peer, in the table's (deterministic) order.
    pub fn iter(&self) -> impl Iterator<Item = (&PeerId, &PeerInfo)> {
        self.order
            .iter()
            .filter_map(|&(_, pos)| self.rows.get(pos))
            .map(|row| (&row.peer, &row.info))
    }

    /// One peer's row.
    pub fn get(&self, peer: &PeerId) -> Option<&PeerInfo> {
        let pos = self.rows.find(prefix(peer), peer)?;
        self.rows.get(pos).map(|row| &row.info)
    }

    /// How many peers are known.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no peer is known.
    pub fn is_empty(&self) -> bool {
        self.rows.len() == 0
    }

    /// How many peers sent at least one Status.
    pub fn heard(&self) -> usize {
        self.heard
    }

    /// Peers whose last Status arrived at or after `since_ms`.
    pub fn heard_since(&self, since_ms: u64) -> impl Iterator<Item = (&PeerId, &PeerInfo)> {
        self.iter()
            .filter(move |(_, p)| p.last_heard_ms.is_some_and(|t| t >= since_ms))
    }

    /// The peers whose last Status arrived at or after `since_ms`, in no particular order (but
    /// the same for the same table): for computations whose result does not depend on the
    /// order. Rows are then read in memory order, much faster than in the table's order when
    /// the machine looks at every peer (fork evaluation, speakers) in a network of 1000.
    pub(crate) fn heard_since_unordered(
        &self,
        since_ms: u64,
    ) -> impl Iterator<Item = (&PeerId, &PeerInfo)> {
        self.rows
            .iter()
            .map(|(_, row)| (&row.peer, &row.info))
            .filter(move |(_, p)| p.last_heard_ms.is_some_and(|t| t >= since_ms))
    }

    /// Sorts every row into `order` afresh (after rows moved).
    fn rebuild_order(&mut self) {
        let mut order: Vec<(u64, &PeerId, usize)> = self
            .rows
            .iter()
            .map(|(pos, row)| (row.key, &row.peer, pos))
            .collect();
        order.sort_unstable();
        self.order = order.into_iter().map(|(key, _, pos)| (key, pos)).collect();
    }

    /// Removes the row at `pos` and what refers to it.
    fn remove(&mut self, pos: usize) {
        let Some(row) = self.rows.remove(pos) else {
            return;
        };
        if let Some(since) = row.indexed {
            self.diverged.remove(&(since, row.peer));
        }
        if row.info.last_heard_ms.is_some() {
            self.heard -= 1;
        }
        for check in row.info.heads.checks() {
            self.audit.count(check, false);
        }
        self.rebuild_order();
    }

    /// Notes the own chain (after it may have changed), so that heads recorded from now on are
    /// checked against it. Cheap when it did not change.
    pub(crate) fn follow_chain(&mut self, chain: &Chain) {
        if chain.len() != self.audit.len {
            self.audit.follow(chain);
        }
    }

    /// Whether a fork evaluation could find a chain other than `chain` (the own chain) among
    /// the heads kept: false only if every kept head agrees with `chain` at its slot, so that
    /// every peer's head at any slot is the own chain's or unknown.
    pub(crate) fn forks_possible(&mut self, chain: &Chain) -> bool {
        self.audit.follow(chain);
        let all = std::mem::take(&mut self.audit.stale);
        if all || self.audit.unchecked > 0 {
            let mut moved = [0; 4];
            for row in self.rows.iter_mut() {
                let m = row.info.heads.recheck(
                    |c| all || c == Check::Unchecked,
                    |head| check_against(chain, head),
                );
                for (sum, n) in moved.iter_mut().zip(m) {
                    *sum += n;
                }
            }
            self.audit.unchecked = self.audit.unchecked + moved[2] - moved[0];
            self.audit.differs = self.audit.differs + moved[3] - moved[1];
        }
        #[cfg(debug_assertions)]
        self.verify_checks(chain);
        self.audit.differs > 0 || self.audit.unchecked > 0
    }

    /// Every kept head's check is right for `chain`, and the counts add up.
    #[cfg(debug_assertions)]
    fn verify_checks(&self, chain: &Chain) {
        let (mut differs, mut unchecked) = (0, 0);
        for (_, row) in self.rows.iter() {
            for ((_, status), check) in row.info.heads.iter().zip(row.info.heads.checks()) {
                assert_eq!(check, check_against(chain, &status.head), "head check");
                differs += usize::from(check == Check::Differs);
                unchecked += usize::from(check == Check::Unchecked);
            }
        }
        assert_eq!(
            (differs, unchecked),
            (self.audit.differs, self.audit.unchecked),
            "head check counts"
        );
    }

    /// Puts the row at `pos` into the deadline index, or takes it out, as the row now says.
    fn reindex(&mut self, pos: usize) {
        let Some(row) = self.rows.get_mut(pos) else {
            return;
        };
        let want = match (row.info.state, row.info.diverged_since_ms) {
            (PeerState::Diverged, Some(since)) => Some(since),
            _ => None,
        };
        if row.indexed == want {
            return;
        }
        let peer = row.peer;
        if let Some(old) = std::mem::replace(&mut row.indexed, want) {
            self.diverged.remove(&(old, peer));
        }
        if let Some(since) = want {
            self.diverged.insert((since, peer));
        }
    }

    /// The position of `peer`'s row, added if new (evicting the peer heard from least recently
    /// when full).
    fn entry(&mut self, peer: PeerId) -> usize {
        let key = prefix(&peer);
        if let Some(pos) = self.rows.find(key, &peer) {
            return pos;
        }
        if self.rows.len() >= PEERS_MAX {
            // Least recently heard first (never heard counts as oldest); ties: smallest PeerId.
            let oldest = self
                .rows
                .iter()
                .min_by_key(|(_, r)| (r.info.last_heard_ms, r.peer.to_bytes()))
                .map(|(pos, _)| pos);
            if let Some(oldest) = oldest {
                self.remove(oldest);
            }
        }
        let pos = self.rows.insert(Row {
            key,
            peer,
            info: PeerInfo::new(),
            indexed: None,
        });
        let rows = &self.rows;
        let at = self
            .order
            .partition_point(|&(k, p)| (k, rows.get(p).map(|r| &r.peer)) < (key, Some(&peer)));
        self.order.insert(at, (key, pos));
        pos
    }

    /// `peer`'s admitted proposal came from the library of `library_hash`; noted for peers of
    /// the table only (a proposal adds no row).
    pub(crate) fn note_library(&mut self, peer: &PeerId, library_hash: Hash32) {
        if let Some(pos) = self.rows.find(prefix(peer), peer)
            && let Some(row) = self.rows.get_mut(pos)
        {
            row.info.library_hash = Some(library_hash);
        }
    }

    /// Counts a violation of `peer`.
    pub(crate) fn violation(&mut self, peer: PeerId) {
        let pos = self.entry(peer);
        if let Some(row) = self.rows.get_mut(pos) {
            row.info.violations += 1;
        }
    }

    /// Starts bringing into the cache where `peer`'s row is (see [`Rows::prefetch_index`]).
    pub(crate) fn prefetch_index(&self, peer: &PeerId) {
        self.rows.prefetch_index(prefix(peer));
    }

    /// Starts bringing `peer`'s row into the cache (see [`Rows::prefetch`]).
    pub(crate) fn prefetch(&self, peer: &PeerId) {
        self.rows.prefetch(prefix(peer), ROW_HOT);
    }

    /// Starts bringing into the cache where the rows are (see [`Rows::prefetch_header`]).
    pub(crate) fn prefetch_header(&self) {
        self.rows.prefetch_header();
    }

    /// Whether a peer's newest head turned to another chain than the own since the last call
    /// (see [`PeerTable::on_status`]); clears it.
    pub(crate) fn take_turned(&mut self) -> bool {
        std::mem::take(&mut self.turned)
    }

    /// Records a Status of `status.from`, received at `now`, about `slot` (the slot it plays,
    /// or the slot this node plays when it plays nothing). Returns the change of its state.
    pub(crate) fn on_status(
        &mut self,
        now: u64,
        slot: Option<u64>,
        status: &Arc<Status>,
        exclusion_ms: u64,
    ) -> Option<PeerChange> {
        let peer = status.from;
        let pos = self.entry(peer);
        let check = self.audit.check(&status.head);
        let row = self.rows.get_mut(pos)?;
        let info = &mut row.info;
        if check == Check::Differs && info.heads.checks().last() != Some(Check::Differs) {
            self.turned = true;
        }
        if let Some(s) = slot {
            info.slots.insert(s, status.diverged);
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
        let inserted = info.heads.insert(status, check);
        if inserted.kept {
            self.audit.count(check, true);
        }
        if let Some(dropped) = inserted.dropped {
            self.audit.count(dropped, false);
        }
        if info.last_heard_ms.replace(now).is_none() {
            self.heard += 1;
        }
        info.status = Some(Arc::clone(status));
        let (to, reason) = info.judge(now, slot, exclusion_ms);
        let changed = change(peer, info, to, reason);
        self.reindex(pos);
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
            let Some(pos) = self.rows.find(prefix(&peer), &peer) else {
                continue;
            };
            if let Some(row) = self.rows.get_mut(pos) {
                let reason = Reason::DivergedFor(exclusion_ms);
                changes.extend(change(peer, &mut row.info, PeerState::Excluded, reason));
            }
            self.reindex(pos);
        }
        changes
    }
}

fn change(peer: PeerId, info: &mut PeerInfo, to: PeerState, reason: Reason) -> Option<PeerChange> {
    let from = info.state;
    if from == to {
        return None;
    }
    info.state = to;
    Some(PeerChange {
        peer,
        from,
        to,
        reason: reason.to_string(),
    })
}

#[cfg(test)]
mod tests;
