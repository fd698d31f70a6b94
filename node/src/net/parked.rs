//! "Coming soon": a want list for blocks this node lacks but is fetching itself right now is
//! held (parked) until they arrive, then answered with them, instead of "don't have" at once.
//!
//! Super-seeding refers a node to the peers that were sent a block, and on a slow link those
//! peers are often still receiving it when the referred node asks: a "don't have" then sends the
//! asker back to the track's seed, which serves it on the second ask, and the seed uploads a
//! copy per node after all. Parking makes the referred peer a relay in a pipeline: the block
//! goes on as soon as it is in. Bounded, so that neither a flood of want lists nor a withholder
//! upstream can hold much: at most [`PARKED_MAX`] want lists ([`PARKED_PER_PEER`] per peer), each
//! for at most [`PARK_FOR`] (then what has not come is answered "later"), each carrying at most
//! [`PARKED_BYTES_MAX`] of blocks; only blocks this node has a want list out for are waited on,
//! and a block is passed on only if it hashes to its id. Sans-IO: the event loop tells it what
//! it asks and what answers come, and sends the answers it hands back.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chorus_consensus::Hash32;
use libp2p::PeerId;

use crate::net::protocol::{Block, Have};

/// The longest a want list waits for blocks on their way.
pub const PARK_FOR: Duration = Duration::from_secs(2);
/// Want lists parked at once.
pub const PARKED_MAX: usize = 16;
/// Want lists parked at once for one peer.
pub const PARKED_PER_PEER: usize = 2;
/// Bytes of blocks one parked want list collects; blocks beyond are answered "later".
pub const PARKED_BYTES_MAX: usize = 512 * 1024;

/// A parked want list, and its answer so far.
#[derive(Debug)]
pub struct Wait<C> {
    /// Who asked.
    pub peer: PeerId,
    /// The track its want list named.
    pub track: Option<Hash32>,
    /// Where the answer goes.
    pub channel: C,
    /// The answer so far (blocks read from the store, then those that arrived).
    pub have: Have,
    awaiting: Vec<Hash32>,
    until: Instant,
    bytes: usize,
}

/// Parked want lists and the blocks this node is fetching (generic over the answer channel, so
/// that it can be tested without a swarm).
#[derive(Debug)]
pub struct Parked<C> {
    waits: Vec<Wait<C>>,
    /// Blocks with a want list of ours out, and how many.
    coming: HashMap<Hash32, usize>,
}

impl<C> Default for Parked<C> {
    fn default() -> Self {
        Parked {
            waits: Vec::new(),
            coming: HashMap::new(),
        }
    }
}

impl<C> Parked<C> {
    /// A want list of ours for `ids` went out.
    pub fn asking(&mut self, ids: &[Hash32]) {
        for id in ids {
            *self.coming.entry(*id).or_default() += 1;
        }
    }

    /// Our want list for `ids` was answered with `blocks` (none when it failed). Returns the
    /// parked want lists that are complete now: each block that hashes to its id goes to those
    /// awaiting it, and a block no want list of ours is out for any more is answered "don't
    /// have".
    pub fn settled(&mut self, ids: &[Hash32], blocks: &[Block]) -> Vec<Wait<C>> {
        for id in ids {
            if let Some(n) = self.coming.get_mut(id) {
                *n -= 1;
                if *n == 0 {
                    self.coming.remove(id);
                }
            }
        }
        for block in blocks {
            if !self.waits.iter().any(|w| w.awaiting.contains(&block.id))
                || Hash32::digest(&block.data) != block.id
            {
                continue;
            }
            for w in &mut self.waits {
                let Some(i) = w.awaiting.iter().position(|id| *id == block.id) else {
                    continue;
                };
                w.awaiting.swap_remove(i);
                if w.bytes + block.data.len() > PARKED_BYTES_MAX {
                    w.have.later.push(block.id);
                } else {
                    w.bytes += block.data.len();
                    w.have.blocks.push(block.clone());
                }
            }
        }
        for w in &mut self.waits {
            let coming = &self.coming;
            let (wait, gone): (Vec<Hash32>, Vec<Hash32>) =
                w.awaiting.iter().partition(|id| coming.contains_key(id));
            w.awaiting = wait;
            w.have.dont_have.extend(gone);
        }
        self.take(|w| w.awaiting.is_empty())
    }

    /// Parks `peer`'s want list if its answer `have` lacks blocks that are on their way here
    /// and there is room; otherwise hands it back, to be sent now.
    pub fn park(
        &mut self,
        now: Instant,
        peer: PeerId,
        track: Option<Hash32>,
        channel: C,
        mut have: Have,
    ) -> Result<(), (C, Have)> {
        let full = self.waits.len() >= PARKED_MAX
            || self.waits.iter().filter(|w| w.peer == peer).count() >= PARKED_PER_PEER;
        let coming = &self.coming;
        if full || !have.dont_have.iter().any(|id| coming.contains_key(id)) {
            return Err((channel, have));
        }
        let (awaiting, dont_have): (Vec<Hash32>, Vec<Hash32>) = have
            .dont_have
            .iter()
            .partition(|id| coming.contains_key(id));
        have.dont_have = dont_have;
        let bytes = have.blocks.iter().map(|b| b.data.len()).sum();
        self.waits.push(Wait {
            peer,
            track,
            channel,
            have,
            awaiting,
            until: now + PARK_FOR,
            bytes,
        });
        Ok(())
    }

    /// The want lists parked for [`PARK_FOR`] by `now`: what has not come is "later".
    pub fn expire(&mut self, now: Instant) -> Vec<Wait<C>> {
        let mut out = self.take(|w| w.until <= now);
        for w in &mut out {
            let late = std::mem::take(&mut w.awaiting);
            w.have.later.extend(late);
        }
        out
    }

    /// Want lists parked now.
    pub fn len(&self) -> usize {
        self.waits.len()
    }

    /// Whether none is parked.
    pub fn is_empty(&self) -> bool {
        self.waits.is_empty()
    }

    fn take(&mut self, done: impl Fn(&Wait<C>) -> bool) -> Vec<Wait<C>> {
        let (out, keep) = std::mem::take(&mut self.waits).into_iter().partition(done);
        self.waits = keep;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::net::test_peer as peer;

    fn block(seed: u8, len: usize) -> Block {
        let data = vec![seed; len];
        Block {
            id: Hash32::digest(&data),
            data,
        }
    }

    fn dont_have(ids: &[Hash32]) -> Have {
        Have {
            dont_have: ids.to_vec(),
            ..Have::default()
        }
    }

    #[test]
    fn a_want_for_a_block_on_its_way_is_answered_with_it_when_it_comes() {
        let mut p: Parked<u32> = Parked::default();
        let (x, y) = (block(1, 1000), block(2, 1000));
        let t0 = Instant::now();
        // Not fetching x: answered at once.
        assert!(p.park(t0, peer(1), None, 7, dont_have(&[x.id])).is_err());
        p.asking(&[x.id]);
        // Fetching x, not y: parked, y stays "don't have".
        assert!(
            p.park(t0, peer(1), None, 7, dont_have(&[x.id, y.id]))
                .is_ok()
        );
        assert_eq!(p.len(), 1);
        assert!(p.expire(t0 + PARK_FOR / 2).is_empty());
        let done = p.settled(&[x.id], std::slice::from_ref(&x));
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].channel, 7);
        assert_eq!(done[0].have.blocks, vec![x.clone()]);
        assert_eq!(done[0].have.dont_have, vec![y.id]);
        assert!(p.is_empty());
    }

    #[test]
    fn a_block_that_does_not_come_is_dont_have_and_a_slow_one_later() {
        let mut p: Parked<u32> = Parked::default();
        let (x, y) = (block(1, 1000), block(2, 1000));
        let t0 = Instant::now();
        p.asking(&[x.id]);
        p.asking(&[y.id]);
        p.park(t0, peer(1), None, 1, dont_have(&[x.id])).unwrap();
        p.park(t0, peer(2), None, 2, dont_have(&[y.id])).unwrap();
        // Our want list for x failed: nothing more is coming.
        let done = p.settled(&[x.id], &[]);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].have.dont_have, vec![x.id]);
        assert!(done[0].have.blocks.is_empty());
        // y is still on its way when the wait ends: "later".
        let late = p.expire(t0 + PARK_FOR);
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].channel, 2);
        assert_eq!(late[0].have.later, vec![y.id]);
    }

    #[test]
    fn a_block_that_does_not_hash_to_its_id_is_not_passed_on() {
        let mut p: Parked<u32> = Parked::default();
        let x = block(1, 1000);
        let t0 = Instant::now();
        p.asking(&[x.id]);
        p.park(t0, peer(1), None, 1, dont_have(&[x.id])).unwrap();
        let forged = Block {
            id: x.id,
            data: vec![9; 1000],
        };
        let done = p.settled(&[x.id], &[forged]);
        assert_eq!(done.len(), 1);
        assert!(done[0].have.blocks.is_empty());
        assert_eq!(done[0].have.dont_have, vec![x.id]);
    }

    #[test]
    fn parking_is_bounded_per_peer_in_all_and_in_bytes() {
        let mut p: Parked<usize> = Parked::default();
        let x = block(1, PARKED_BYTES_MAX - 10);
        let y = block(2, 100);
        let t0 = Instant::now();
        p.asking(&[x.id, y.id]);
        for i in 0..PARKED_PER_PEER {
            p.park(t0, peer(1), None, i, dont_have(&[x.id, y.id]))
                .unwrap();
        }
        assert!(
            p.park(t0, peer(1), None, 99, dont_have(&[x.id])).is_err(),
            "per peer"
        );
        let mut n = PARKED_PER_PEER;
        let mut k = 2;
        while n < PARKED_MAX {
            p.park(t0, peer(k), None, n, dont_have(&[x.id])).unwrap();
            n += 1;
            k += 1;
        }
        assert!(
            p.park(t0, peer(200), None, 99, dont_have(&[x.id])).is_err(),
            "in all"
        );
        // Both blocks come; the first fills the byte budget, the second waits for a later ask.
        let done = p.settled(&[x.id, y.id], &[x.clone(), y.clone()]);
        assert_eq!(done.len(), PARKED_MAX);
        let first = done.iter().find(|w| w.channel == 0).unwrap();
        assert_eq!(first.have.blocks, vec![x.clone()]);
        assert_eq!(first.have.later, vec![y.id]);
    }
}
