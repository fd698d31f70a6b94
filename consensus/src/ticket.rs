//! Tickets (PROTOCOL.md 4.1): every node's lottery number for a slot, fixed by its identity.

use std::cmp::Ordering;

use libp2p_identity::PeerId;
use sha2::{Digest, Sha256};

use crate::beacon::{ticket_beacon_slot, ticket_v2};
use crate::chain::{Chain, Tickets};
use crate::hash::Hash32;

/// Domain separator of the ticket hash.
pub const TICKET_DOMAIN: &[u8] = b"chorus/ticket/v1";

/// Everything a ticket may depend on: the network, the slot and the chain before it.
///
/// Version 1 uses the network id and the slot only; 1.1 (12.3) binds tickets to the randomness
/// beacon of the chain. Every caller passes this one context, so the rule changed without
/// touching them.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct SlotContext<'a> {
    /// The network id.
    pub network_id: Hash32,
    /// The target slot k.
    pub slot: u64,
    /// The chain the slot extends, when there is one (its beacon under fair tickets).
    pub chain: Option<&'a Chain>,
}

impl<'a> SlotContext<'a> {
    /// A context known only by network id and slot (conformance vectors, tests).
    pub fn detached(network_id: Hash32, slot: u64) -> SlotContext<'static> {
        SlotContext {
            network_id,
            slot,
            chain: None,
        }
    }

    /// The context of slot `slot` extending `chain`.
    pub fn on_chain(chain: &'a Chain, slot: u64) -> SlotContext<'a> {
        SlotContext {
            network_id: *chain.network_id(),
            slot,
            chain: Some(chain),
        }
    }
}

/// The ticket of `peer` for the context's slot: on a chain of fair tickets (12.3, every node's
/// chain), ticket v2 over `beacon(max(k - L - 1, L - 1))`; otherwise version 1's (4.1). A slot
/// whose beacon the chain does not reach yet gets `u64::MAX`, the worst ticket (never the case
/// for the slots a node judges: their beacon is final before their proposal window).
pub fn ticket(ctx: &SlotContext<'_>, peer: &PeerId) -> u64 {
    match ctx.chain {
        Some(chain) if chain.tickets() == Tickets::Fair => {
            let at = ticket_beacon_slot(ctx.slot, chain.lookahead());
            chain
                .beacon(at)
                .map_or(u64::MAX, |b| ticket_v2(&ctx.network_id, ctx.slot, &b, peer))
        }
        _ => ticket_v1(&ctx.network_id, ctx.slot, peer),
    }
}

/// The beacon the ticket of `slot` uses on this context's chain (None under open tickets, or
/// when the chain does not reach it): tickets of one slot can be cached under it.
pub fn ticket_beacon(ctx: &SlotContext<'_>) -> Option<Hash32> {
    let chain = ctx.chain.filter(|c| c.tickets() == Tickets::Fair)?;
    chain.beacon(ticket_beacon_slot(ctx.slot, chain.lookahead()))
}

/// `ticket(peer, k) = u64be(SHA-256("chorus/ticket/v1" || network_id || u64be(k) || peer_id bytes)[0..8])`.
pub fn ticket_v1(network_id: &Hash32, slot: u64, peer: &PeerId) -> u64 {
    let digest = Sha256::new()
        .chain_update(TICKET_DOMAIN)
        .chain_update(network_id.as_bytes())
        .chain_update(slot.to_be_bytes())
        .chain_update(peer.to_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Orders two `(ticket, peer)` pairs as selection does: lowest ticket first, then lowest
/// PeerId bytes.
pub fn rank_cmp(a: (u64, &PeerId), b: (u64, &PeerId)) -> Ordering {
    a.0.cmp(&b.0)
        .then_with(|| a.1.to_bytes().cmp(&b.1.to_bytes()))
}

/// The peer with the lowest `(ticket, peer_id bytes)` for the slot, with its ticket.
pub fn lowest<'p>(
    ctx: &SlotContext<'_>,
    peers: impl IntoIterator<Item = &'p PeerId>,
) -> Option<(u64, &'p PeerId)> {
    peers
        .into_iter()
        .map(|peer| (ticket(ctx, peer), peer))
        .min_by(|a, b| rank_cmp(*a, *b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_vector_case() {
        let network =
            Hash32::from_hex("cddffeac3f63f764ae8b3b612882794a273b2359e84e213b49825b514762d53c")
                .expect("hex");
        let peer = PeerId::from_bytes(
            &crate::hash::from_hex(
                "00240801122091d8cdc310411e7ec27378a661c935187c07e4d5636e9bc3c400b27244b8cd3a",
            )
            .expect("hex"),
        )
        .expect("peer id");
        assert_eq!(
            ticket(&SlotContext::detached(network, 6), &peer),
            13497798190762325405
        );
    }

    #[test]
    fn ties_break_on_peer_bytes() {
        let a = crate::genesis::tests::keypair(1).public().to_peer_id();
        let b = crate::genesis::tests::keypair(2).public().to_peer_id();
        let (lo, hi) = if a.to_bytes() < b.to_bytes() {
            (a, b)
        } else {
            (b, a)
        };
        assert_eq!(rank_cmp((5, &lo), (5, &hi)), Ordering::Less);
        assert_eq!(rank_cmp((4, &hi), (5, &lo)), Ordering::Less);
        let ctx = SlotContext::detached(Hash32::ZERO, 1);
        let best = lowest(&ctx, [&a, &b]).expect("two peers");
        assert_eq!(
            best.0,
            ticket(&ctx, best.1)
                .min(ticket(&ctx, &a))
                .min(ticket(&ctx, &b))
        );
        assert!(lowest(&ctx, []).is_none());
    }
}
