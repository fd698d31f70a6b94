use super::test_builder::TestBuilder;
use super::*;
use crate::message::Message;
use crate::testing::keypair;

const LEN: u64 = 11;

#[test]
fn three_nodes_agree_on_every_slot() {
    let mut net = TestBuilder::new(3).build();
    net.run_until_len(LEN);
    for slot in 5..LEN {
        let hashes = net.hashes_at(slot);
        assert!(
            hashes.iter().all(|h| *h == hashes[0]),
            "slot {slot}: {hashes:?}"
        );
        let decided = net.nodes[0].chain().decided(slot).expect("decided").clone();
        assert!(
            decided.proposal_id.is_some(),
            "slot {slot} has proposals, no replay"
        );
        // The winner is the lowest ticket among the three (all eligible, all proposing).
        let ctx = SlotContext::on_chain(net.nodes[0].chain(), slot);
        let peers: Vec<PeerId> = net.nodes.iter().map(|n| *n.peer_id()).collect();
        let (low, _) = crate::ticket::lowest(&ctx, &peers).expect("three peers");
        assert_eq!(decided.ticket, Some(low), "slot {slot}");
    }
    assert!(net.violations.is_empty(), "{:?}", net.violations);
}

#[test]
fn without_libraries_the_network_replays() {
    let mut net = TestBuilder::new(2)
        .library(0, vec![])
        .library(1, vec![])
        .build();
    net.run_until_len(LEN);
    let genesis: Vec<Hash32> = (0..5)
        .map(|j| net.nodes[0].chain().winner(j).expect("genesis").track_hash)
        .collect();
    for slot in 5..LEN {
        let hashes = net.hashes_at(slot);
        assert!(hashes.iter().all(|h| *h == hashes[0]), "slot {slot}");
        let decided = net.nodes[0].chain().decided(slot).expect("decided");
        assert_eq!(decided.proposal_id, None);
        assert!(genesis.contains(&decided.track.track_hash));
    }
}

#[test]
fn a_node_that_misses_every_proposal_fetches_them() {
    let mut net = TestBuilder::new(3)
        .library(2, vec![])
        .drop_if(|_, to, m| to == 2 && matches!(m, Message::Proposal(_)))
        .build();
    net.run_until_len(LEN);
    for slot in 5..LEN {
        let hashes = net.hashes_at(slot);
        assert!(
            hashes.iter().all(|h| *h == hashes[0]),
            "slot {slot}: {hashes:?}"
        );
        assert!(
            net.nodes[2]
                .chain()
                .decided(slot)
                .expect("decided")
                .proposal_id
                .is_some()
        );
    }
}

#[test]
fn an_equivocating_proposer_is_dropped_and_recorded() {
    let mut net = TestBuilder::new(2).library(1, vec![]).build();
    let cheat = keypair(99);
    let chain = net.nodes[0].chain().clone();
    let mut first = crate::testing::proposal(&chain, 5, 99);
    first.from = cheat.public().to_peer_id();
    let mut second = first.clone();
    second.created_ms = 1;
    let now = net.now;
    for p in [&first, &second] {
        let envelope = Envelope::seal(p, &cheat).expect("cheat signs its own");
        for node in &mut net.nodes {
            assert_eq!(
                node.handle_message(now, *node.peer_id(), envelope.clone()),
                Validation::Accept
            );
        }
    }
    net.run_until_len(6);
    for node in &net.nodes {
        let decided = node.chain().decided(5).expect("decided");
        assert_eq!(decided.equivocators, vec![cheat.public().to_peer_id()]);
        assert_ne!(decided.track.track_hash, first.track.track_hash);
    }
    assert_eq!(net.hashes_at(5)[0], net.hashes_at(5)[1]);
}

#[test]
fn invalid_and_foreign_messages_get_their_verdicts() {
    let mut net = TestBuilder::new(1).build();
    let node = &mut net.nodes[0];
    let chain = node.chain().clone();
    let source = keypair(50).public().to_peer_id();
    let mut bad = crate::testing::proposal(&chain, 5, 50);
    bad.track.duration_ms = 1;
    let envelope = Envelope::seal(&bad, &keypair(50)).expect("signs");
    assert_eq!(node.handle_message(0, source, envelope), Validation::Reject);
    assert!(matches!(node.poll_action(), Some(Action::Violation { .. })));
    let far = crate::testing::proposal(&crate::testing::chain_to(20), 30, 50);
    let envelope = Envelope::seal(&far, &keypair(50)).expect("signs");
    assert_eq!(node.handle_message(0, source, envelope), Validation::Ignore);
    let mut garbage =
        Envelope::seal(&crate::testing::proposal(&chain, 5, 50), &keypair(50)).expect("signs");
    garbage.sig[0] ^= 1;
    assert_eq!(node.handle_message(0, source, garbage), Validation::Reject);
}

#[test]
fn a_joiner_from_a_synced_chain_agrees_on_the_next_slots() {
    let mut net = TestBuilder::new(3).build();
    net.run_until_len(9);
    // Join after the decision point of slot 9: its proposals, tallies and decisions are gone.
    let chain = net.nodes[0].chain().clone();
    let decision_point = crate::schedule::selection_window(&chain, 9)
        .expect("known")
        .end_ms;
    net.run_until(decision_point + 1_000);
    assert_eq!(net.nodes[0].chain().len(), 9, "slot 9 is not final yet");
    let joiner = net.join(net.nodes[0].chain().clone());
    net.run_until_len(14);
    for slot in 9..14 {
        let hashes = net.hashes_at(slot);
        assert!(
            hashes.iter().all(|h| *h == hashes[0]),
            "slot {slot}: {hashes:?}"
        );
        assert!(
            net.nodes[joiner]
                .chain()
                .decided(slot)
                .expect("decided")
                .proposal_id
                .is_some(),
            "slot {slot} is no replay decided alone"
        );
    }
    // Slot 9 came from a peer's chain; slot 10 onwards it decided with the others.
    let fetched: Vec<u64> = net
        .events_of(joiner)
        .filter_map(|a| match a {
            Action::FetchChain { from_slot, .. } => Some(*from_slot),
            _ => None,
        })
        .collect();
    assert_eq!(fetched, [9]);
    // It never held a chain of its own that the fork rule had to repair.
    assert!(
        net.events
            .iter()
            .all(|(_, _, a)| !matches!(a, Action::Adopted { .. } | Action::Fork(_))),
        "no fork"
    );
    // It proposes again: its own proposal is among those the others hold for a later slot.
    let me = net.peer(joiner);
    let proposed = net.published.iter().any(|(i, e)| {
        *i == joiner
            && matches!(
                e.clone().open(chain.network_id()).map(|v| v.message),
                Ok(Message::Proposal(p)) if p.from == me
            )
    });
    assert!(
        proposed,
        "the joiner proposes from its next eligible window"
    );
    assert!(net.violations.is_empty(), "{:?}", net.violations);
}
