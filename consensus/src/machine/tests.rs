use super::test_builder::TestBuilder;
use super::*;
use crate::message::{Decision, Message, Tally};
use crate::testing::keypair;

const LEN: u64 = 11;

#[test]
fn three_nodes_agree_on_every_slot() {
    let mut net = TestBuilder::new(3).build();
    net.run_until_len(LEN);
    for slot in 5..LEN {
        net.assert_agree(slot);
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
        net.assert_agree(slot);
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
        net.assert_agree(slot);
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
        net.assert_agree(slot);
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

/// Every input of `handle_message` has the same effect through `open_gossip` +
/// `handle_verified`, and through `handle_shared`: verdicts, then every action up to three
/// slots later.
#[test]
fn handle_verified_gives_the_same_actions_as_handle_message() {
    let genesis = crate::genesis::tests::signed_genesis();
    let network_id = genesis.network_id();
    let make = || {
        let mut node = Consensus::new(keypair(10), Chain::new(&genesis));
        node.set_library(super::test_builder::library_of(0));
        node
    };
    let (mut plain, mut verified, mut shared) = (make(), make(), make());
    let chain = plain.chain().clone();
    let source = keypair(50).public().to_peer_id();
    let good = crate::testing::proposal(&chain, 5, 50);
    let mut bad = crate::testing::proposal(&chain, 5, 51);
    bad.track.duration_ms = 1;
    let announced = crate::testing::proposal(&chain, 6, 52);
    let tally = Tally {
        network_id,
        slot: 6,
        from: keypair(53).public().to_peer_id(),
        best: vec![(0, crate::testing::id_of(&announced))],
    };
    let decision = Decision {
        network_id,
        slot: 5,
        from: keypair(54).public().to_peer_id(),
        winner: good.track.track_hash,
        proposal_id: Some(crate::testing::id_of(&good)),
        ticket: Some(crate::ticket::ticket(
            &SlotContext::on_chain(&chain, 5),
            &good.from,
        )),
        equivocators: vec![],
        rules_hash: *chain.rules_hash(),
    };
    let mut foreign = crate::testing::proposal(&chain, 5, 55);
    foreign.network_id = Hash32::digest(b"another network");
    let other_network = foreign.network_id;
    let envelopes = [
        (
            Envelope::seal(&good, &keypair(50)).expect("signs"),
            network_id,
        ),
        (
            Envelope::seal(&bad, &keypair(51)).expect("signs"),
            network_id,
        ),
        (
            Envelope::seal(&tally, &keypair(53)).expect("signs"),
            network_id,
        ),
        (
            Envelope::seal(&decision, &keypair(54)).expect("signs"),
            network_id,
        ),
        (
            Envelope::seal(&foreign, &keypair(55)).expect("signs"),
            other_network,
        ),
        (plain.status_envelope_of(&keypair(56), 0), network_id),
    ];
    let now = chain.start(0).expect("genesis") + 100;
    let drain =
        |node: &mut Consensus| std::iter::from_fn(|| node.poll_action()).collect::<Vec<_>>();
    let mut verdicts = Vec::new();
    for (envelope, network) in envelopes {
        // The driver opened it for the network it believed in (here: the foreign one too).
        let opened =
            crate::envelope::open_gossip(&envelope.to_cbor(), &network).expect("a valid envelope");
        let c = shared.handle_shared(now, source, &super::Shared::from(opened.clone()));
        let a = plain.handle_message(now, source, envelope);
        let b = verified.handle_verified(now, source, opened);
        assert_eq!((a, a), (b, c));
        verdicts.push(a);
        let actions = drain(&mut plain);
        assert_eq!(actions, drain(&mut verified));
        assert_eq!(actions, drain(&mut shared));
    }
    use Validation::{Accept, Reject};
    assert_eq!(verdicts, [Accept, Reject, Accept, Accept, Reject, Accept]);
    let end = chain.start(3).expect("genesis");
    let mut t = now;
    while t < end {
        plain.handle_timeout(t);
        verified.handle_timeout(t);
        shared.handle_timeout(t);
        let actions = drain(&mut plain);
        assert_eq!(actions, drain(&mut verified), "at {t}");
        assert_eq!(actions, drain(&mut shared), "at {t}");
        assert_eq!(plain.poll_timeout(), shared.poll_timeout(), "at {t}");
        t = plain.poll_timeout().unwrap_or(end).max(t + 1);
    }
    assert_eq!(plain.chain(), verified.chain());
    assert_eq!(plain.chain(), shared.chain());
    assert!(plain.peers().iter().eq(shared.peers().iter()));
}

impl Consensus {
    /// A Status of another node `key` at `now`, sealed (a test helper).
    fn status_envelope_of(&self, key: &libp2p_identity::Keypair, now: u64) -> Envelope {
        let mut status = self.status(now);
        status.from = key.public().to_peer_id();
        Envelope::seal(&status, key).expect("signs its own")
    }
}
