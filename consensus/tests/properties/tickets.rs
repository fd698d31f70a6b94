//! Tickets (PROTOCOL.md 4.1): the winner is the lowest `(ticket, peer_id bytes)`, whatever the
//! order proposals arrive in and whichever losing proposals a node misses.

use std::cmp::Ordering;

use chorus_consensus::ticket::{lowest, rank_cmp};
use chorus_consensus::{SlotContext, ticket};
use libp2p_identity::PeerId;
use proptest::prelude::*;

use crate::strategies::{config, hash, peer};

/// One to twelve distinct proposers.
fn peers() -> impl Strategy<Value = Vec<PeerId>> {
    prop::collection::btree_set(any::<[u8; 32]>(), 1..12)
        .prop_map(|seeds| seeds.into_iter().map(peer).collect())
}

proptest! {
    #![proptest_config(config(64))]

    /// The winner is the minimum of `(ticket, peer_id bytes)`, in any order of arrival; removing
    /// any losing proposal leaves it the winner.
    #[test]
    fn the_winner_depends_on_no_order_and_no_loser(
        (peers, shuffled) in peers().prop_flat_map(|p| (Just(p.clone()), Just(p).prop_shuffle())),
        network_id in hash(),
        slot in any::<u64>(),
    ) {
        let ctx = SlotContext::detached(network_id, slot);
        let (best, winner) = lowest(&ctx, &peers).expect("at least one peer");
        let brute = peers
            .iter()
            .map(|p| (ticket(&ctx, p), p.to_bytes()))
            .min()
            .expect("at least one peer");
        prop_assert_eq!((best, winner.to_bytes()), brute);
        prop_assert_eq!(lowest(&ctx, &shuffled), Some((best, winner)));
        for gone in peers.iter().filter(|p| *p != winner) {
            let rest: Vec<&PeerId> = peers.iter().filter(|p| *p != gone).collect();
            prop_assert_eq!(lowest(&ctx, rest), Some((best, winner)));
        }
    }

    /// `rank_cmp` is a total order on distinct peers: antisymmetric, never a tie, and it
    /// agrees with comparing `(ticket, peer_id bytes)`.
    #[test]
    fn rank_cmp_is_a_strict_total_order(peers in peers(), network_id in hash(), slot in any::<u64>()) {
        let ctx = SlotContext::detached(network_id, slot);
        for a in &peers {
            for b in &peers {
                let (ta, tb) = (ticket(&ctx, a), ticket(&ctx, b));
                let order = rank_cmp((ta, a), (tb, b));
                prop_assert_eq!(order, rank_cmp((tb, b), (ta, a)).reverse());
                prop_assert_eq!(order == Ordering::Equal, a == b);
                prop_assert_eq!(order, (ta, a.to_bytes()).cmp(&(tb, b.to_bytes())));
            }
        }
    }

    /// Tickets are a function of network, slot and peer only.
    #[test]
    fn tickets_are_deterministic(seed in any::<[u8; 32]>(), network_id in hash(), slot in any::<u64>()) {
        let p = peer(seed);
        let ctx = SlotContext::detached(network_id, slot);
        prop_assert_eq!(ticket(&ctx, &p), ticket(&SlotContext::detached(network_id, slot), &peer(seed)));
    }
}
