//! Super-seeding: how many copies of each block this node uploads before it sends requesters
//! elsewhere. Every node fetches every winner, so without a limit a new track's proposer
//! uploads one copy per node (a home uplink feeding the whole network). Here the first
//! [`COPIES`] peers that ask for a block get it; a later one hears "later" with the peers that
//! got it and those referred before it (referrals), which it asks instead (a peer still
//! fetching the block holds the want list until the block is in, `parked.rs`), and which refer
//! onwards in turn: the track spreads as a tree. A peer that asks again for a block it was
//! refused gets the spare copy, the block's last of [`COPIES_MAX`]; past that, a peer is served
//! again only when its block is due soon: its track's slot starts within [`URGENT`] (the driver
//! tells the deadlines of the winners it wants, [`Uploads::due`]), or, for a track with no known
//! deadline, when the peer has been asking for [`PATIENCE`] since its first refusal. Either way
//! the swarm could not bring it the block in time (its referrals withheld it, are out of its
//! reach or are slow). So the copies of a block stay at [`COPIES_MAX`] unless the swarm fails a
//! peer, and then a block nobody else can serve still arrives before it is played. The
//! patience alone, 8 s, was exceeded by honest fetches on the testbed's ten nodes, where a
//! winner takes 4 to 16 s to reach every node over lossy links while its slot starts 25 s
//! after the Decision: 3.14 and 5.57 copies in two runs. (Refusing a second ask for 1 s, to
//! give the referrals time, was tried there and made the proposer's upload no smaller;
//! serving every second ask let it reach 3.2 copies.) Sans-IO: the event loop asks
//! [`Uploads::split`] before reading the store and tells [`Uploads::sent`] what went out.
//!
//! The bound protects a block's seed (the proposer's home uplink) only: a block this node
//! fetched from a peer ([`Uploads::fetched`]) is served to every peer that asks, so that the
//! first peers to hold a new track pass it on at once instead of referring requesters further
//! down a tree. (On the testbed's ten nodes: median propagation 5.9 s against 7.2 s in the same
//! day's run with the bound on every node.)
//!
//! A seed sends its block to a public peer first ([`Uploads::set_hubs`]): private peers wait
//! for that copy to get ahead, referred to the hub, whose uplink is not a home's. (On the
//! testbed's ten nodes: median 4.4 s against 7.2 s the same day.)

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use chorus_consensus::Hash32;
use libp2p::PeerId;

/// Peers served each block before others are referred to them.
pub const COPIES: usize = 2;
/// Copies of a block uploaded at most while the swarm serves the peers it was referred to.
pub const COPIES_MAX: usize = 3;
/// How long a refused peer keeps asking, for a block of a track with no known deadline, before
/// it is served beyond [`COPIES_MAX`].
pub const PATIENCE: Duration = Duration::from_secs(8);
/// A block of a track whose slot starts within this is served to every peer that asks.
pub const URGENT: Duration = Duration::from_secs(10);
/// Deadlines remembered (the earliest are forgotten first).
const DEADLINES_REMEMBERED: usize = 64;
/// Blocks remembered (the oldest are forgotten, and served freely again).
pub const BLOCKS_REMEMBERED: usize = 8192;
/// Referrals in one answer.
pub const REFERRALS_MAX: usize = 8;
/// Peers remembered per block, as served and as refused.
const PEERS_REMEMBERED: usize = 64;
/// How long a hub's copy of a seeded block has the seed's uplink to itself before private
/// peers are served again ([`Uploads::set_hubs`]): about a track's time over a home uplink.
pub const HUB_LEAD: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
struct BlockUploads {
    /// Copies sent (or being sent), spare and last-resort ones included.
    copies: usize,
    /// Peers that were sent it (or are being sent it), in order.
    sent_to: Vec<PeerId>,
    /// Those of `sent_to` whose copy is still being read from the store.
    pending: Vec<PeerId>,
    /// Peers told "later" for it, with the time of their first refusal.
    refused: Vec<(PeerId, Instant)>,
    /// This node fetched it from a peer: it is not its seed, and serves it to every peer.
    fetched: bool,
    /// When a hub ([`Uploads::set_hubs`]) was first sent it.
    hub_served: Option<Instant>,
}

impl BlockUploads {
    fn refused_since(&self, peer: PeerId) -> Option<Instant> {
        self.refused
            .iter()
            .find(|(p, _)| *p == peer)
            .map(|(_, t)| *t)
    }

    /// One more copy, to `peer`, sent (`pending` false) or being read.
    fn serve(&mut self, peer: PeerId, pending: bool) {
        self.copies += 1;
        self.refused.retain(|(p, _)| *p != peer);
        if pending && !self.pending.contains(&peer) {
            self.pending.push(peer);
        }
        if !self.sent_to.contains(&peer) {
            self.sent_to.push(peer);
            if self.sent_to.len() > PEERS_REMEMBERED {
                self.sent_to.remove(0);
            }
        }
    }
}

/// What to do with a want list.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Split {
    /// Ids to read from the store and send (if held).
    pub serve: Vec<Hash32>,
    /// Ids to answer "later" for, at once.
    pub later: Vec<Hash32>,
    /// Peers that were sent the ids in `later`.
    pub referrals: Vec<PeerId>,
    /// Ids of `serve` past [`COPIES_MAX`]: their track's slot starts within [`URGENT`], or
    /// `peer` asked for them for [`PATIENCE`].
    pub beyond: Vec<Hash32>,
}

/// The upload record of recent blocks.
#[derive(Debug, Default)]
pub struct Uploads {
    blocks: HashMap<Hash32, BlockUploads>,
    /// Insertion order, for forgetting.
    order: VecDeque<Hash32>,
    /// When the slot of each wanted track (by manifest id) starts.
    deadlines: HashMap<Hash32, Instant>,
    /// The hubs the next [`Uploads::split`] holds private requesters back for.
    hubs: Vec<PeerId>,
}

impl Uploads {
    /// The slot of the track with manifest `manifest` starts at `at` (the earlier of two
    /// slots counts). Only the latest [`DEADLINES_REMEMBERED`] slots are kept: the earliest
    /// deadline is forgotten first.
    pub fn due(&mut self, manifest: Hash32, at: Instant) {
        let d = self.deadlines.entry(manifest).or_insert(at);
        *d = (*d).min(at);
        if self.deadlines.len() > DEADLINES_REMEMBERED
            && let Some(oldest) = self
                .deadlines
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(m, _)| *m)
        {
            self.deadlines.remove(&oldest);
        }
    }

    /// The hubs for the next [`Uploads::split`]: public peers this node reaches directly (DHT
    /// servers: their uplinks are not a home's). The event loop sets them for each want list,
    /// none for a requester on its LAN or when no crowd of private peers waits
    /// (`net/event_loop/nat.rs`, `hubs_for`). A block this node seeds goes to one of them
    /// first: while none has been sent it, a private peer's first ask is answered "later" and
    /// referred to them, so that the seed's uplink carries the first copy alone, to the peer
    /// best placed to pass it on (on the testbed's ten nodes: a public node with an unlimited
    /// uplink against eight homes of 5 Mbit/s). Once a hub has been sent it, private peers
    /// wait [`HUB_LEAD`] more, so that the hub's copy has the uplink to itself, and then the
    /// copies go as before. A
    /// private peer that asks again before any hub was sent it gets the spare copy as before,
    /// so a hub that does not ask costs the others a refresh, and one that withholds costs
    /// them [`HUB_LEAD`], not the block; a block whose slot is near is served at once.
    pub fn set_hubs(&mut self, hubs: Vec<PeerId>) {
        self.hubs = hubs;
    }

    /// Splits `peer`'s want list for `track` (a manifest id) at `now`: a block is served while
    /// it has had fewer than [`COPIES`] copies, or [`COPIES_MAX`] when `peer` was refused it
    /// before, or whatever its copies once the track's slot starts within [`URGENT`] (without
    /// a known deadline: when `peer` was first refused it [`PATIENCE`] ago); the others are
    /// "later", with referrals. A block to be served counts as sent to `peer` at once, so
    /// that a burst of want lists arriving together (every node starts fetching a winner at
    /// the same moment) does not get a copy each before the first read from the store is done;
    /// the event loop calls [`Uploads::withdrawn`] for the blocks the store did not have.
    pub fn split(
        &mut self,
        peer: PeerId,
        track: Option<Hash32>,
        ids: &[Hash32],
        now: Instant,
    ) -> Split {
        let due = track.and_then(|t| self.deadlines.get(&t)).copied();
        let hubs = self.hubs.clone();
        let mut split = Split::default();
        for id in ids {
            let b = self.entry(*id);
            let refused = b.refused_since(peer);
            let failed = match due {
                Some(due) => now + URGENT >= due,
                None => refused.is_some_and(|t| now.saturating_duration_since(t) >= PATIENCE),
            };
            // A private peer asking for a seeded block waits for the hubs: on its first ask
            // while none has been sent it, and on any ask for [`HUB_LEAD`] after one was.
            let is_hub = hubs.contains(&peer);
            let held_for_hub = !b.fetched
                && !is_hub
                && !hubs.is_empty()
                && match b.hub_served {
                    None => refused.is_none(),
                    Some(at) => now.saturating_duration_since(at) < HUB_LEAD,
                };
            let waiting_hubs: Vec<PeerId> = if held_for_hub {
                hubs.clone()
            } else {
                Vec::new()
            };
            let serve = !held_for_hub
                && (b.fetched || b.copies < COPIES || (refused.is_some() && b.copies < COPIES_MAX))
                || failed;
            if serve && is_hub && b.hub_served.is_none() && !b.fetched {
                b.hub_served = Some(now);
            }
            if serve {
                if b.copies >= COPIES_MAX && !b.fetched {
                    split.beyond.push(*id);
                }
                b.serve(peer, true);
                split.serve.push(*id);
                continue;
            }
            // Referred: first the peers it was sent to, then those referred before (most
            // recent first), who are fetching it from them and pass it on as it comes (a
            // requester may reach only some of them directly).
            let earlier: Vec<PeerId> = b.refused.iter().rev().map(|(p, _)| *p).collect();
            let sent_to = b.sent_to.clone();
            if refused.is_none() {
                b.refused.push((peer, now));
                if b.refused.len() > PEERS_REMEMBERED {
                    b.refused.remove(0);
                }
            }
            split.later.push(*id);
            for p in waiting_hubs.into_iter().chain(sent_to).chain(earlier) {
                if p != peer
                    && !split.referrals.contains(&p)
                    && split.referrals.len() < REFERRALS_MAX
                {
                    split.referrals.push(p);
                }
            }
        }
        split
    }

    /// `ids` came from a peer (hashed to their ids), or this node is asking a peer for them:
    /// either way it is not their seed, and serves them to every peer that asks (one it lacks
    /// still is read from the store: the want list is parked there or told "don't have",
    /// never held back for the hubs and referred as if this node had seeded it).
    pub fn fetched(&mut self, ids: impl IntoIterator<Item = Hash32>) {
        for id in ids {
            self.entry(id).fetched = true;
        }
    }

    /// `ids` were sent to `peer` (a parked want list's blocks count here; those of a split
    /// were counted by it).
    pub fn sent(&mut self, peer: PeerId, ids: impl IntoIterator<Item = Hash32>) {
        for id in ids {
            let b = self.entry(id);
            if let Some(i) = b.pending.iter().position(|p| *p == peer) {
                b.pending.remove(i);
            } else if !b.sent_to.contains(&peer) {
                b.serve(peer, false);
            }
        }
    }

    /// `ids`, split to be served to `peer`, were not sent after all (the store lacks them):
    /// `peer` does not hold them from us, and others may take its place. Ids not being read
    /// for `peer` are ignored.
    pub fn withdrawn(&mut self, peer: PeerId, ids: impl IntoIterator<Item = Hash32>) {
        for id in ids {
            if let Some(b) = self.blocks.get_mut(&id)
                && let Some(i) = b.pending.iter().position(|p| *p == peer)
            {
                b.pending.remove(i);
                b.sent_to.retain(|p| *p != peer);
                b.copies = b.copies.saturating_sub(1);
            }
        }
    }

    /// The record of block `id`, made (and the oldest forgotten) if new.
    fn entry(&mut self, id: Hash32) -> &mut BlockUploads {
        if !self.blocks.contains_key(&id) {
            if self.order.len() >= BLOCKS_REMEMBERED
                && let Some(old) = self.order.pop_front()
            {
                self.blocks.remove(&old);
            }
            self.order.push_back(id);
        }
        self.blocks.entry(id).or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::net::test_peer as peer;

    #[test]
    fn a_seeded_block_goes_to_a_public_peer_first_and_private_ones_are_referred_to_it() {
        let mut u = Uploads::default();
        let now = Instant::now();
        let x = Hash32::digest(b"x");
        let (hub, a, b) = (peer(1), peer(2), peer(3));
        u.set_hubs(vec![hub]);
        // A home asks first: "later", referred to the hub, which has not asked yet.
        let split = u.split(a, None, &[x], now);
        assert!(split.serve.is_empty());
        assert_eq!((split.later, split.referrals), (vec![x], vec![hub]));
        // The hub asks: served.
        assert_eq!(u.split(hub, None, &[x], now).serve, vec![x]);
        // Its copy has the uplink to itself for HUB_LEAD: homes are referred to it (and to
        // the home referred before).
        let split = u.split(b, None, &[x], now + HUB_LEAD / 2);
        assert_eq!((split.later, split.referrals), (vec![x], vec![hub, a]));
        // Then the copies go as before: a home is served the second copy...
        assert_eq!(u.split(b, None, &[x], now + HUB_LEAD).serve, vec![x]);
        // ...and another, asking again, the spare one.
        assert_eq!(u.split(a, None, &[x], now + HUB_LEAD).serve, vec![x]);
        // A hub that never asks holds a home back for its first ask only.
        let w = Hash32::digest(b"w");
        assert!(u.split(a, None, &[w], now).serve.is_empty());
        assert_eq!(u.split(a, None, &[w], now).serve, vec![w]);
        // A block this node fetched is served to all at once, hub or not.
        let y = Hash32::digest(b"y");
        u.fetched([y]);
        assert_eq!(u.split(peer(4), None, &[y], now).serve, vec![y]);
        // Without hubs nothing waits.
        let z = Hash32::digest(b"z");
        u.set_hubs(Vec::new());
        assert_eq!(u.split(peer(5), None, &[z], now).serve, vec![z]);
    }

    #[test]
    fn the_first_copies_are_served_then_requesters_are_referred() {
        let mut u = Uploads::default();
        let now = Instant::now();
        let x = Hash32::digest(b"x");
        let (a, b, c, d) = (peer(1), peer(2), peer(3), peer(4));
        // A burst: the two first are served before any answer has gone out.
        for p in [a, b] {
            assert_eq!(u.split(p, None, &[x], now).serve, vec![x]);
        }
        let split = u.split(c, None, &[x], now);
        assert_eq!(split.later, vec![x]);
        assert!(split.serve.is_empty());
        assert_eq!(split.referrals, vec![a, b]);
        // Refused once: the spare copy when it comes back (nobody else could serve it).
        assert_eq!(u.split(c, None, &[x], now).serve, vec![x]);
        u.sent(c, [x]);
        // Another newcomer is referred to those served, then to those referred before.
        assert_eq!(u.split(d, None, &[x], now).referrals, vec![a, b, c]);
        assert_eq!(
            u.split(peer(5), None, &[x], now).referrals,
            vec![a, b, c, d]
        );
    }

    #[test]
    fn past_the_spare_copy_only_a_peer_the_swarm_failed_is_served() {
        let mut u = Uploads::default();
        let start = Instant::now();
        let x = Hash32::digest(b"x");
        // Thirty peers ask, and ask again at once: three copies go out.
        let mut served = 0;
        for round in 0..3 {
            for i in 0..30 {
                let split = u.split(
                    peer(i),
                    None,
                    &[x],
                    start + Duration::from_millis(round * 100),
                );
                served += split.serve.len();
                u.sent(peer(i), split.serve);
            }
        }
        assert_eq!(served, COPIES_MAX);
        // Still asking just before its patience is spent: still referred.
        let late = peer(29);
        let almost = start + PATIENCE - Duration::from_millis(1);
        assert!(u.split(late, None, &[x], almost).serve.is_empty());
        // Asking since its first refusal for PATIENCE: served, whatever the copies.
        let split = u.split(late, None, &[x], start + PATIENCE);
        assert_eq!(split.serve, vec![x]);
        assert_eq!(split.beyond, vec![x]);
        // A peer that was sent it and asks again (it lost it) waits its turn the same way.
        let first = peer(0);
        let split = u.split(first, None, &[x], start + PATIENCE);
        assert!(split.serve.is_empty());
        assert!(!split.referrals.contains(&first));
        let later = start + PATIENCE + PATIENCE;
        assert_eq!(u.split(first, None, &[x], later).serve, vec![x]);
    }

    #[test]
    fn with_a_known_deadline_the_bound_holds_until_the_slot_is_near() {
        let mut u = Uploads::default();
        let start = Instant::now();
        let (x, track) = (Hash32::digest(b"x"), Some(Hash32::digest(b"manifest")));
        let slot = start + Duration::from_secs(30);
        u.due(Hash32::digest(b"manifest"), slot);
        let mut served = 0;
        for i in 0..30 {
            let split = u.split(peer(i), track, &[x], start);
            served += split.serve.len();
            u.sent(peer(i), split.serve);
        }
        for i in 0..30 {
            let split = u.split(peer(i), track, &[x], start + Duration::from_millis(100));
            served += split.serve.len();
            u.sent(peer(i), split.serve);
        }
        assert_eq!(served, COPIES_MAX);
        // Asking for longer than the patience, with the slot still far: referred (the swarm
        // has time; on the testbed honest fetches took up to 16 s).
        let late = peer(29);
        let asked_long = start + PATIENCE + Duration::from_secs(5);
        assert!(u.split(late, track, &[x], asked_long).serve.is_empty());
        // Once the slot starts within URGENT: served, and a peer never refused as well.
        let near = slot - URGENT;
        let split = u.split(late, track, &[x], near);
        assert_eq!((split.serve.clone(), split.beyond), (vec![x], vec![x]));
        assert_eq!(u.split(peer(40), track, &[x], near).serve, vec![x]);
        // A want list naming another track (no deadline known) keeps the patience.
        let other = Some(Hash32::digest(b"other"));
        assert!(
            u.split(peer(28), other, &[x], start + Duration::from_secs(1))
                .serve
                .is_empty()
        );
    }

    #[test]
    fn deadlines_are_bounded_and_the_earlier_of_two_slots_counts() {
        let mut u = Uploads::default();
        let start = Instant::now();
        let m = Hash32::digest(b"m");
        u.due(m, start + Duration::from_secs(60));
        u.due(m, start + Duration::from_secs(30));
        u.due(m, start + Duration::from_secs(90));
        assert_eq!(u.deadlines[&m], start + Duration::from_secs(30));
        for i in 0..(2 * DEADLINES_REMEMBERED) as u64 {
            u.due(
                Hash32::digest(&i.to_be_bytes()),
                start + Duration::from_secs(100 + i),
            );
        }
        assert_eq!(u.deadlines.len(), DEADLINES_REMEMBERED);
        // The earliest went first.
        assert!(!u.deadlines.contains_key(&m));
    }

    #[test]
    fn blocks_this_node_fetched_are_served_to_every_peer() {
        let mut u = Uploads::default();
        let now = Instant::now();
        let (own, got) = (Hash32::digest(b"own"), Hash32::digest(b"got"));
        u.fetched([got]);
        let mut served = (0, 0);
        for i in 0..10 {
            let split = u.split(peer(i), None, &[own, got], now);
            served.0 += usize::from(split.serve.contains(&own));
            served.1 += usize::from(split.serve.contains(&got));
            assert!(split.beyond.is_empty());
            u.sent(peer(i), split.serve);
        }
        // Its own block (it is the seed) within the bound; the fetched one to all ten.
        assert_eq!(served, (COPIES, 10));
    }

    #[test]
    fn a_refusal_to_a_peer_served_before_withdraws_nothing() {
        let mut u = Uploads::default();
        let now = Instant::now();
        let x = Hash32::digest(b"x");
        for i in 0..3 {
            assert_eq!(
                u.split(peer(i), None, &[x], now).serve.len(),
                usize::from(i < 2)
            );
            u.sent(peer(i), [x]);
        }
        // peer(0) asks again and is refused; the event loop withdraws what it answered
        // "later": the copy peer(0) got earlier still counts.
        let split = u.split(peer(0), None, &[x], now);
        assert_eq!(split.later, vec![x]);
        u.withdrawn(peer(0), split.later);
        assert!(u.split(peer(9), None, &[x], now).serve.is_empty());
    }

    #[test]
    fn a_copy_the_store_did_not_have_frees_its_place() {
        let mut u = Uploads::default();
        let now = Instant::now();
        let x = Hash32::digest(b"x");
        let (a, b, c) = (peer(1), peer(2), peer(3));
        assert_eq!(u.split(a, None, &[x], now).serve, vec![x]);
        assert_eq!(u.split(b, None, &[x], now).serve, vec![x]);
        // a's read found nothing: c takes its place instead of being referred to a.
        u.withdrawn(a, [x]);
        assert_eq!(u.split(c, None, &[x], now).serve, vec![x]);
        assert_eq!(u.split(peer(4), None, &[x], now).referrals, vec![b, c]);
    }

    #[test]
    fn blocks_are_judged_one_by_one() {
        let mut u = Uploads::default();
        let now = Instant::now();
        let (x, y) = (Hash32::digest(b"x"), Hash32::digest(b"y"));
        let (a, b, c) = (peer(1), peer(2), peer(3));
        u.sent(a, [x]);
        u.sent(b, [x]);
        let split = u.split(c, None, &[x, y], now);
        assert_eq!(split.serve, vec![y]);
        assert_eq!(split.later, vec![x]);
    }

    #[test]
    fn the_record_is_bounded() {
        let mut u = Uploads::default();
        let now = Instant::now();
        let (a, b, c) = (peer(1), peer(2), peer(3));
        let first = Hash32::digest(b"first");
        u.sent(a, [first]);
        u.sent(b, [first]);
        for i in 0..BLOCKS_REMEMBERED as u32 {
            u.sent(a, [Hash32::digest(&i.to_be_bytes())]);
        }
        assert!(u.blocks.len() <= BLOCKS_REMEMBERED);
        // Forgotten: served freely again.
        assert_eq!(u.split(c, None, &[first], now).serve, vec![first]);
    }
}
