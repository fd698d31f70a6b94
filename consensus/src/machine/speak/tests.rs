use std::collections::BTreeMap;

use libp2p_identity::PeerId;

use super::super::test_builder::{TestBuilder, TestNet};
use super::*;
use crate::genesis::tests::signed_genesis;
use crate::message::Message;
use crate::testing::keypair;
use crate::ticket::{SlotContext, ticket};

const LEN: u64 = 9;

/// The PeerIds of the first `n` TestBuilder nodes.
fn peers(n: usize) -> Vec<PeerId> {
    (0..n)
        .map(|i| {
            keypair(u8::try_from(10 + i).expect("few"))
                .public()
                .to_peer_id()
        })
        .collect()
}

/// Node indices of the first `n` nodes, lowest `(ticket, peer_id bytes)` for `slot` first.
fn by_ticket(n: usize, slot: u64) -> Vec<usize> {
    let ctx = SlotContext::detached(signed_genesis().network_id(), slot);
    let peers = peers(n);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|i| (ticket(&ctx, &peers[*i]), peers[*i].to_bytes()));
    order
}

/// `(kind, slot) -> authors` of the Tallies and Decisions published.
fn speakers(net: &TestNet) -> BTreeMap<(&'static str, u64), Vec<usize>> {
    let mut out: BTreeMap<(&'static str, u64), Vec<usize>> = BTreeMap::new();
    let network_id = *net.nodes[0].chain().network_id();
    for (i, envelope) in &net.published {
        let key = match envelope.clone().open(&network_id).map(|v| v.message) {
            Ok(Message::Tally(t)) => ("tally", t.slot),
            Ok(Message::Decision(d)) => ("decision", d.slot),
            _ => continue,
        };
        out.entry(key).or_default().push(*i);
    }
    out
}

fn assert_agree_on_lowest(net: &TestNet, lowest: impl Fn(u64) -> usize) {
    let all = peers(net.nodes.len());
    for slot in 5..LEN {
        net.assert_agree(slot);
        let decided = net.nodes[0].chain().decided(slot).expect("decided");
        let ctx = SlotContext::detached(*net.nodes[0].chain().network_id(), slot);
        assert_eq!(
            decided.ticket,
            Some(ticket(&ctx, &all[lowest(slot)])),
            "slot {slot}"
        );
    }
}

#[test]
fn twelve_nodes_publish_a_few_tallies_and_decisions_per_slot() {
    let mut net = TestBuilder::new(12).build();
    net.run_until_len(LEN);
    assert_agree_on_lowest(&net, |slot| by_ticket(12, slot)[0]);
    let spoken = speakers(&net);
    for slot in 5..LEN {
        let lowest: Vec<usize> = by_ticket(12, slot)[..SPEAKERS as usize].to_vec();
        for kind in ["tally", "decision"] {
            let mut authors = spoken.get(&(kind, slot)).cloned().unwrap_or_default();
            authors.sort();
            let mut expected = lowest.clone();
            expected.sort();
            // Exactly the three lowest tickets speak; the nine others stay silent.
            assert_eq!(authors, expected, "{kind} of slot {slot}");
        }
    }
    assert!(net.violations.is_empty(), "{:?}", net.violations);
}

/// The lowest ticket's proposal reaches only the highest-ranked node (no speaker), and its
/// author's own Tally and Decision are lost: the speakers announce worse proposals, so that node
/// has news, speaks, and its proposal wins everywhere.
#[test]
fn a_node_holding_a_better_proposal_than_all_announced_speaks_and_it_wins() {
    const N: usize = 7;
    let mut net = TestBuilder::new(N)
        .drop_if(|from, to, m| {
            let order = by_ticket(N, m.slot().unwrap_or(0));
            let (lowest, last) = (order[0], order[N - 1]);
            match m {
                Message::Proposal(_) => from == lowest && to != last,
                Message::Tally(_) | Message::Decision(_) => from == lowest,
                Message::Status(_) | Message::Enroll(_) => false,
            }
        })
        .build();
    net.run_until_len(LEN);
    assert_agree_on_lowest(&net, |slot| by_ticket(N, slot)[0]);
    let spoken = speakers(&net);
    for slot in 5..LEN {
        let last = by_ticket(N, slot)[N - 1];
        let tallies = &spoken[&("tally", slot)];
        assert!(tallies.contains(&last), "slot {slot}: {tallies:?}");
        assert!(
            tallies.len() <= SPEAKERS as usize + 1,
            "slot {slot}: {tallies:?}"
        );
    }
}

/// A fifth of all Proposals, Tallies and Decisions are lost (a fixed pseudo-random choice per
/// sender, receiver, kind and slot): every node still reaches the same chain, won by the lowest
/// ticket.
#[test]
fn with_loss_the_nodes_still_agree() {
    const N: usize = 10;
    let mut net = TestBuilder::new(N)
        .drop_if(|from, to, m| {
            let kind: u8 = match m {
                Message::Proposal(_) => 0,
                Message::Tally(_) => 1,
                Message::Decision(_) => 2,
                Message::Status(_) | Message::Enroll(_) => return false,
            };
            let slot = m.slot().unwrap_or(0);
            let h = Hash32::digest_parts(&[
                b"loss",
                &[
                    u8::try_from(from).expect("few"),
                    u8::try_from(to).expect("few"),
                    kind,
                ],
                &slot.to_be_bytes(),
            ]);
            h.0[0].is_multiple_of(5)
        })
        .build();
    net.run_until_len(LEN);
    assert_agree_on_lowest(&net, |slot| by_ticket(N, slot)[0]);
    let spoken = speakers(&net);
    for slot in 5..LEN {
        for kind in ["tally", "decision"] {
            let n = spoken.get(&(kind, slot)).map_or(0, Vec::len);
            assert!(
                n <= SPEAKERS as usize + 2,
                "{kind} of slot {slot}: {n} of {N} spoke"
            );
        }
    }
}
