//! Super-seeding: how many copies of each block this node uploads before it sends requesters
//! elsewhere. Every node fetches every winner, so without a limit a new track's proposer
//! uploads one copy per node (a home uplink feeding the whole network). Here the first
//! [`COPIES`] peers that ask for a block get it; a later one hears "later" with the peers that
//! got it and those referred before it (referrals), which it asks instead (a peer still
//! fetching the block holds the want list until the block is in, `parked.rs`), and which refer
//! onwards in turn: the track spreads as a tree. A peer that asks again for a block it was
//! refused before is served, so a block nobody else can serve still arrives one round trip
//! later. (Refusing a second ask for 1 s, to give the referrals time, was tried on the
//! testbed's ten nodes and made the proposer's upload no smaller.) Sans-IO: the event loop asks
//! [`Uploads::split`] before reading the store and tells [`Uploads::sent`] what went out.

use std::collections::{HashMap, VecDeque};

use chorus_consensus::Hash32;
use libp2p::PeerId;

/// Peers served each block before others are referred to them.
pub const COPIES: usize = 2;
/// Blocks remembered (the oldest are forgotten, and served freely again).
pub const BLOCKS_REMEMBERED: usize = 8192;
/// Referrals in one answer.
pub const REFERRALS_MAX: usize = 8;

#[derive(Debug, Default)]
struct BlockUploads {
    /// Peers that were sent it (the first [`COPIES`]).
    sent_to: Vec<PeerId>,
    /// Peers told "later" for it.
    refused: Vec<PeerId>,
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
}

/// The upload record of recent blocks.
#[derive(Debug, Default)]
pub struct Uploads {
    blocks: HashMap<Hash32, BlockUploads>,
    /// Insertion order, for forgetting.
    order: VecDeque<Hash32>,
}

impl Uploads {
    /// Splits `peer`'s want list: blocks sent (or being sent) to fewer than [`COPIES`] other
    /// peers, or that `peer` was refused before, are served; the others are "later", with
    /// referrals. A block to be served counts as sent to `peer` at once, so that a burst of
    /// want lists arriving together (every node starts fetching a winner at the same moment)
    /// does not get a copy each before the first read from the store is done; the event loop
    /// calls [`Uploads::withdrawn`] for the blocks the store did not have.
    pub fn split(&mut self, peer: PeerId, ids: &[Hash32]) -> Split {
        let mut split = Split::default();
        for id in ids {
            let b = self.entry(*id);
            let others: Vec<PeerId> = b.sent_to.iter().filter(|p| **p != peer).copied().collect();
            if others.len() < COPIES || b.refused.contains(&peer) || b.sent_to.contains(&peer) {
                b.refused.retain(|p| *p != peer);
                if b.sent_to.len() < COPIES && !b.sent_to.contains(&peer) {
                    b.sent_to.push(peer);
                }
                split.serve.push(*id);
                continue;
            }
            // Referred: first the peers it was sent to, then those referred before (most
            // recent first), who are fetching it from them and pass it on as it comes (a
            // requester may reach only some of them directly).
            let earlier: Vec<PeerId> = b.refused.iter().rev().copied().collect();
            b.refused.push(peer);
            // Refusals are bounded by the peers that ask; forget the oldest past a few dozen.
            if b.refused.len() > 64 {
                b.refused.remove(0);
            }
            split.later.push(*id);
            for p in others.into_iter().chain(earlier) {
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

    /// `ids` were sent to `peer`.
    pub fn sent(&mut self, peer: PeerId, ids: impl IntoIterator<Item = Hash32>) {
        for id in ids {
            let b = self.entry(id);
            if b.sent_to.len() < COPIES && !b.sent_to.contains(&peer) {
                b.sent_to.push(peer);
            }
        }
    }

    /// `ids`, split to be served to `peer`, were not sent after all (the store lacks them):
    /// `peer` does not hold them from us, and others may take its place.
    pub fn withdrawn(&mut self, peer: PeerId, ids: impl IntoIterator<Item = Hash32>) {
        for id in ids {
            if let Some(b) = self.blocks.get_mut(&id) {
                b.sent_to.retain(|p| *p != peer);
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
    fn the_first_copies_are_served_then_requesters_are_referred() {
        let mut u = Uploads::default();
        let x = Hash32::digest(b"x");
        let (a, b, c, d) = (peer(1), peer(2), peer(3), peer(4));
        // A burst: the two first are served before any answer has gone out.
        for p in [a, b] {
            assert_eq!(u.split(p, &[x]).serve, vec![x]);
        }
        let split = u.split(c, &[x]);
        assert_eq!(split.later, vec![x]);
        assert!(split.serve.is_empty());
        assert_eq!(split.referrals, vec![a, b]);
        // Refused once: served when it comes back (nobody else could serve it).
        assert_eq!(u.split(c, &[x]).serve, vec![x]);
        u.sent(c, [x]);
        // Another newcomer is referred to the first two, then to those referred before.
        assert_eq!(u.split(d, &[x]).referrals, vec![a, b]);
        assert_eq!(u.split(peer(5), &[x]).referrals, vec![a, b, d]);
        // A peer that was sent it may ask again (it lost it).
        assert_eq!(u.split(a, &[x]).serve, vec![x]);
    }

    #[test]
    fn a_copy_the_store_did_not_have_frees_its_place() {
        let mut u = Uploads::default();
        let x = Hash32::digest(b"x");
        let (a, b, c) = (peer(1), peer(2), peer(3));
        assert_eq!(u.split(a, &[x]).serve, vec![x]);
        assert_eq!(u.split(b, &[x]).serve, vec![x]);
        // a's read found nothing: c takes its place instead of being referred to a.
        u.withdrawn(a, [x]);
        assert_eq!(u.split(c, &[x]).serve, vec![x]);
        assert_eq!(u.split(peer(4), &[x]).referrals, vec![b, c]);
    }

    #[test]
    fn blocks_are_judged_one_by_one() {
        let mut u = Uploads::default();
        let (x, y) = (Hash32::digest(b"x"), Hash32::digest(b"y"));
        let (a, b, c) = (peer(1), peer(2), peer(3));
        u.sent(a, [x]);
        u.sent(b, [x]);
        let split = u.split(c, &[x, y]);
        assert_eq!(split.serve, vec![y]);
        assert_eq!(split.later, vec![x]);
    }

    #[test]
    fn the_record_is_bounded() {
        let mut u = Uploads::default();
        let (a, b, c) = (peer(1), peer(2), peer(3));
        let first = Hash32::digest(b"first");
        u.sent(a, [first]);
        u.sent(b, [first]);
        for i in 0..BLOCKS_REMEMBERED as u32 {
            u.sent(a, [Hash32::digest(&i.to_be_bytes())]);
        }
        assert!(u.blocks.len() <= BLOCKS_REMEMBERED);
        // Forgotten: served freely again.
        assert_eq!(u.split(c, &[first]).serve, vec![first]);
    }
}
