use std::collections::BTreeSet;

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
        .chain_fetches_of(joiner)
        .into_iter()
        .map(|(_, from)| from)
        .collect();
    assert_eq!(fetched, [9]);
    // Every slot past its synced chain is reported final, the one taken from a peer's too.
    let finals: Vec<u64> = net
        .events_of(joiner)
        .filter_map(|a| match a {
            Action::Final(r) => Some(r.slot),
            _ => None,
        })
        .collect();
    assert_eq!(finals[..5], [9, 10, 11, 12, 13], "{finals:?}");
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

/// `body` sealed by `keypair(seed)`, its author.
fn sealed<B: Body>(body: &B, seed: u8) -> Envelope {
    Envelope::seal(body, &keypair(seed)).expect("the author signs its own body")
}

/// One gossip message of each kind for slots 5 and 6 of `chain`, with the network each is
/// opened for: a good proposal, an inadmissible one, a Tally announcing an unknown proposal, a
/// Decision backed by the good one, a proposal of another network, and `status`.
fn one_of_each(chain: &Chain, status: Envelope) -> Vec<(Envelope, Hash32)> {
    let network_id = *chain.network_id();
    let good = crate::testing::proposal(chain, 5, 50);
    let mut bad = crate::testing::proposal(chain, 5, 51);
    bad.track.duration_ms = 1;
    let announced = crate::testing::proposal(chain, 6, 52);
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
            &SlotContext::on_chain(chain, 5),
            &good.from,
        )),
        equivocators: vec![],
        rules_hash: *chain.rules_hash(),
    };
    let mut foreign = crate::testing::proposal(chain, 5, 55);
    foreign.network_id = Hash32::digest(b"another network");
    let other_network = foreign.network_id;
    vec![
        (sealed(&good, 50), network_id),
        (sealed(&bad, 51), network_id),
        (sealed(&tally, 53), network_id),
        (sealed(&decision, 54), network_id),
        (sealed(&foreign, 55), other_network),
        (status, network_id),
    ]
}

/// Every input of `handle_message` has the same effect through `open_gossip` +
/// `handle_verified`, and through `handle_shared`: verdicts, then every action up to three
/// slots later.
#[test]
fn handle_verified_gives_the_same_actions_as_handle_message() {
    let genesis = crate::genesis::tests::signed_genesis();
    let make = || {
        let mut node = Consensus::new(
            keypair(10),
            Chain::new(&genesis).with_tickets(crate::chain::Tickets::Open),
        );
        node.set_library(super::test_builder::library_of(0));
        node
    };
    let (mut plain, mut verified, mut shared) = (make(), make(), make());
    let chain = plain.chain().clone();
    let source = keypair(50).public().to_peer_id();
    let envelopes = one_of_each(&chain, plain.status_envelope_of(&keypair(56), 0));
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

#[test]
fn answer_chain_serves_from_the_slot_asked_for_within_the_bound() {
    let max = crate::limits::CHAIN_RESPONSE_SLOTS as u64;
    let genesis = crate::genesis::tests::signed_genesis();
    let fresh = Consensus::new(
        keypair(10),
        Chain::new(&genesis).with_tickets(crate::chain::Tickets::Open),
    );
    assert!(fresh.answer_chain(0).is_empty(), "nothing decided yet");
    let lookahead = fresh.chain().lookahead();
    let last = lookahead + max + 20;
    let node = Consensus::new(keypair(10), crate::testing::chain_to(last));
    let slots = |from| -> Vec<u64> { node.answer_chain(from).iter().map(|d| d.slot).collect() };
    // From a genesis slot: the first decided slot on, bounded.
    let first_batch: Vec<u64> = (lookahead..lookahead + max).collect();
    for from in [0, lookahead - 1, lookahead] {
        assert_eq!(slots(from), first_batch, "from {from}");
    }
    assert_eq!(slots(lookahead + 1).len() as u64, max);
    // Near the end: up to the head.
    assert_eq!(slots(100), (100..=last).collect::<Vec<_>>());
    assert_eq!(slots(last), [last]);
    // Past the end: nothing.
    assert!(slots(last + 1).is_empty());
    assert!(slots(u64::MAX).is_empty());
    // The chain's own records, winning envelopes included (12.1): a joiner takes the answer.
    assert_eq!(
        node.answer_chain(100).first(),
        node.chain().decided(100),
        "the records themselves"
    );
    let mut joiner = Chain::new(&genesis).with_tickets(crate::chain::Tickets::Open);
    let taken = joiner.extend_synced(node.answer_chain(0), u64::MAX);
    assert_eq!(taken, Ok(max as usize));
    let head = joiner.head();
    assert_eq!(head.slot, lookahead + max - 1);
    assert_eq!(Some(head.chain_hash), node.chain().chain_hash(head.slot));
}

#[test]
fn answer_proposals_serves_held_proposals_among_the_first_ids() {
    let genesis = crate::genesis::tests::signed_genesis();
    let mut node = Consensus::new(
        keypair(10),
        Chain::new(&genesis).with_tickets(crate::chain::Tickets::Open),
    );
    let chain = node.chain().clone();
    let now = chain.start(0).expect("genesis") + 100;
    let held: Vec<Envelope> = [50, 51, 52]
        .into_iter()
        .map(|seed| sealed(&crate::testing::proposal(&chain, 5, seed), seed))
        .collect();
    for envelope in &held {
        let source = keypair(50).public().to_peer_id();
        assert_eq!(
            node.handle_message(now, source, envelope.clone()),
            Validation::Accept
        );
    }
    let ids = |envelopes: &[Envelope]| -> BTreeSet<Hash32> {
        envelopes.iter().map(Envelope::id).collect()
    };
    let all = ids(&held);
    assert_eq!(
        ids(&node.answer_proposals(5, &[])),
        all,
        "no ids: every one held"
    );
    let b = held[1].id();
    let unknown = Hash32::digest(b"a proposal nobody holds");
    assert_eq!(node.answer_proposals(5, &[unknown, b]), [held[1].clone()]);
    // Only the first PROPOSAL_IDS_MAX ids are looked at.
    let max = crate::limits::PROPOSAL_IDS_MAX;
    let mut asked: Vec<Hash32> = (0..max - 1)
        .map(|i| Hash32::digest(&i.to_be_bytes()))
        .collect();
    asked.push(b);
    assert_eq!(node.answer_proposals(5, &asked), [held[1].clone()]);
    asked.insert(0, unknown);
    assert!(
        node.answer_proposals(5, &asked).is_empty(),
        "{b} is past the bound"
    );
    // Other slots hold none.
    assert!(node.answer_proposals(6, &[]).is_empty());
    assert!(node.answer_proposals(4, &[b]).is_empty());
    assert!(node.answer_proposals(u64::MAX, &[]).is_empty());
}

#[test]
fn final_reports_name_the_winning_proposer() {
    let mut net = TestBuilder::new(3).build();
    net.run_until_len(LEN);
    let reports: Vec<FinalReport> = net
        .events_of(0)
        .filter_map(|a| match a {
            Action::Final(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(reports.len() as u64, LEN - 5);
    let chain = net.nodes[0].chain();
    for r in &reports {
        let decided = chain.decided(r.slot).expect("decided");
        let envelope = decided.proposal.clone().expect("no replay");
        let Ok(Message::Proposal(won)) = envelope.open(chain.network_id()).map(|v| v.message)
        else {
            panic!("slot {} carries its winning proposal", r.slot);
        };
        assert_eq!(r.proposer, Some(won.from), "slot {}", r.slot);
        assert_eq!(chain.proposer(r.slot), r.proposer, "slot {}", r.slot);
        // Its author reported proposing that track for that slot.
        let author = (0..3)
            .find(|i| net.peer(*i) == won.from)
            .expect("one of the nodes");
        assert!(
            net.events_of(author).any(|a| matches!(a,
                Action::Proposed { slot, track } if *slot == r.slot && *track == decided.track)),
            "slot {}",
            r.slot
        );
    }
    // A replay has no proposer.
    let mut net = TestBuilder::new(1).library(0, vec![]).build();
    net.run_until_len(7);
    assert!(net.events_of(0).all(|a| match a {
        Action::Final(r) => r.proposal_id.is_none() && r.proposer.is_none(),
        Action::Proposed { .. } => false,
        _ => true,
    }));
}

#[test]
fn each_own_proposal_is_reported_right_before_its_publish() {
    let genesis = crate::genesis::tests::signed_genesis();
    let mut node = Consensus::new(
        keypair(10),
        Chain::new(&genesis).with_tickets(crate::chain::Tickets::Open),
    );
    node.set_library(super::test_builder::library_of(0));
    let mut actions = Vec::new();
    let mut t = genesis.genesis().start_ms - 1_000;
    while node.chain().len() < LEN {
        node.handle_timeout(t);
        actions.extend(std::iter::from_fn(|| node.poll_action()));
        t = node
            .poll_timeout()
            .expect("a lone node keeps deciding")
            .max(t + 1);
    }
    let network_id = *node.chain().network_id();
    let proposal_of = |a: &Action| match a {
        Action::Publish { envelope, .. } => match envelope.clone().open(&network_id) {
            Ok(Verified {
                message: Message::Proposal(p),
                ..
            }) => Some(p),
            _ => None,
        },
        _ => None,
    };
    let published = actions.iter().filter_map(proposal_of).count();
    let mut reported = 0;
    for (k, action) in actions.iter().enumerate() {
        let Action::Proposed { slot, track } = action else {
            continue;
        };
        reported += 1;
        let next = actions.get(k + 1).and_then(proposal_of);
        let next = next.expect("the proposal's Publish follows");
        assert_eq!(
            (next.slot, &next.track, next.from),
            (*slot, track, *node.peer_id())
        );
    }
    assert_eq!(reported, published);
    assert!(
        reported as u64 >= LEN - 5,
        "it proposed for every slot it decided"
    );
}

/// Where a Leaning stands among a node's actions: its place, its time, and what it says.
struct Leaned {
    at: usize,
    now: u64,
    slot: u64,
    track: TrackRef,
    proposer: PeerId,
    start_ms: u64,
}

/// The [`Action::Leaning`]s among `actions` (each with its time).
fn leanings<'a>(actions: impl IntoIterator<Item = (u64, &'a Action)>) -> Vec<Leaned> {
    actions
        .into_iter()
        .enumerate()
        .filter_map(|(at, (now, a))| match a {
            Action::Leaning {
                slot,
                track,
                proposer,
                start_ms,
            } => Some(Leaned {
                at,
                now,
                slot: *slot,
                track: track.clone(),
                proposer: *proposer,
                start_ms: *start_ms,
            }),
            _ => None,
        })
        .collect()
}

#[test]
fn each_node_leans_at_its_decision_point_toward_its_lowest_ticket_proposal() {
    // Node 2 proposes nothing and gets every proposal only by fetching it.
    let mut net = TestBuilder::new(3)
        .library(2, vec![])
        .drop_if(|_, to, m| to == 2 && matches!(m, Message::Proposal(_)))
        .build();
    net.run_until_len(LEN);
    let peers: Vec<PeerId> = (0..2).map(|i| net.peer(i)).collect();
    for i in 0..3 {
        let chain = net.nodes[i].chain();
        let actions: Vec<(u64, &Action)> = net
            .events
            .iter()
            .filter(|(n, _, _)| *n == i)
            .map(|(_, now, a)| (*now, a))
            .collect();
        let leaned = leanings(actions.iter().copied());
        for slot in 5..LEN {
            let here: Vec<&Leaned> = leaned.iter().filter(|l| l.slot == slot).collect();
            assert_eq!(here.len(), 1, "node {i} slot {slot}: once");
            let l = here[0];
            // The lowest ticket among the two proposers, which finality confirms.
            let ctx = SlotContext::on_chain(chain, slot);
            let (_, low) = crate::ticket::lowest(&ctx, &peers).expect("two proposers");
            assert_eq!(l.proposer, *low, "node {i} slot {slot}");
            let decided = chain.decided(slot).expect("decided");
            assert_eq!(l.track, decided.track, "node {i} slot {slot}");
            assert_eq!(Some(l.start_ms), chain.start(slot), "node {i} slot {slot}");
            // At the decision point, so before the slot is final.
            let window = crate::schedule::selection_window(chain, slot).expect("slot >= L");
            assert_eq!(l.now, window.end_ms, "node {i} slot {slot}");
            let final_at = actions
                .iter()
                .position(|(_, a)| matches!(a, Action::Final(r) if r.slot == slot))
                .expect("final");
            assert!(l.at < final_at, "node {i} slot {slot}: before finality");
        }
        let later = leaned.iter().filter(|l| l.slot >= LEN).count();
        assert!(later <= 2, "node {i}: only the slots in flight after {LEN}");
    }
}

#[test]
fn a_lone_node_leans_toward_its_own_proposals_before_decided_and_never_toward_a_replay() {
    let genesis = crate::genesis::tests::signed_genesis();
    let mut node = Consensus::new(
        keypair(10),
        Chain::new(&genesis).with_tickets(crate::chain::Tickets::Open),
    );
    node.set_library(super::test_builder::library_of(0));
    let mut actions: Vec<(u64, Action)> = Vec::new();
    let mut t = genesis.genesis().start_ms - 1_000;
    let end = 2 * LEN;
    while node.chain().len() < end {
        if node.chain().len() == LEN {
            // From here on it has nothing to propose: the network replays.
            node.set_library(Vec::new());
        }
        node.handle_timeout(t);
        actions.extend(std::iter::from_fn(|| node.poll_action()).map(|a| (t, a)));
        t = node
            .poll_timeout()
            .expect("a lone node keeps deciding")
            .max(t + 1);
    }
    let chain = node.chain();
    let leaned = leanings(actions.iter().map(|(now, a)| (*now, a)));
    let (mut proposed, mut replayed) = (0, 0);
    for slot in 5..end {
        let decided = chain.decided(slot).expect("decided");
        let here: Vec<&Leaned> = leaned.iter().filter(|l| l.slot == slot).collect();
        if decided.proposal_id.is_none() {
            replayed += 1;
            assert!(here.is_empty(), "slot {slot} is a replay");
            continue;
        }
        proposed += 1;
        assert_eq!(here.len(), 1, "slot {slot}: once");
        let l = here[0];
        assert_eq!(
            (&l.track, l.proposer, Some(l.start_ms)),
            (&decided.track, *node.peer_id(), chain.start(slot)),
            "slot {slot}"
        );
        let decided_at = actions
            .iter()
            .position(|(_, a)| matches!(a, Action::Decided(d) if d.slot == slot))
            .expect("decided");
        assert!(l.at < decided_at, "slot {slot}: before its Decided");
        assert!(
            l.now < finality_ms(chain, slot).expect("slot >= L"),
            "slot {slot}"
        );
    }
    assert!(proposed >= 5 && replayed >= 5, "{proposed} and {replayed}");
}

impl Consensus {
    /// A Status of another node `key` at `now`, sealed (a test helper).
    fn status_envelope_of(&self, key: &libp2p_identity::Keypair, now: u64) -> Envelope {
        let mut status = self.status(now);
        status.from = key.public().to_peer_id();
        Envelope::seal(&status, key).expect("signs its own")
    }
}

/// The tracks a lone node proposes, in order, while it decides `LEN` slots; `setup` prepares
/// it first.
fn proposed_tracks(setup: impl FnOnce(&mut Consensus, &[TrackRef])) -> Vec<Hash32> {
    proposed_tracks_of(super::test_builder::library_of(0), setup, |_| {})
}

/// As [`proposed_tracks`], with `library`, and `each` called before every timeout.
fn proposed_tracks_of(
    library: Vec<TrackRef>,
    setup: impl FnOnce(&mut Consensus, &[TrackRef]),
    mut each: impl FnMut(&mut Consensus),
) -> Vec<Hash32> {
    let genesis = crate::genesis::tests::signed_genesis();
    let mut node = Consensus::new(
        keypair(10),
        Chain::new(&genesis).with_tickets(crate::chain::Tickets::Open),
    );
    node.set_library(library.clone());
    setup(&mut node, &library);
    let mut proposed = Vec::new();
    let mut t = genesis.genesis().start_ms - 1_000;
    while node.chain().len() < LEN {
        each(&mut node);
        node.handle_timeout(t);
        while let Some(action) = node.poll_action() {
            if let Action::Proposed { track, .. } = action {
                proposed.push(track.track_hash);
            }
        }
        t = node
            .poll_timeout()
            .expect("a lone node keeps deciding")
            .max(t + 1);
    }
    proposed
}

#[test]
fn the_djs_queue_is_proposed_in_order_then_the_automatic_pick_takes_over() {
    let hashes: Vec<Hash32> = super::test_builder::library_of(0)
        .iter()
        .map(|t| t.track_hash)
        .collect();
    let automatic = proposed_tracks(|_, _| {});
    // A queue in another order than the automatic pick's first three.
    let mut queue = vec![hashes[2], hashes[0], hashes[1]];
    if automatic[..3] == queue[..] {
        queue.swap(0, 1);
    }
    let with_queue = proposed_tracks(|node, _| node.set_queue(queue.clone()));
    assert_eq!(with_queue[..3], queue[..], "the queue, in order");
    assert!(with_queue.len() > 3, "then proposals go on: {with_queue:?}");
    // A queued track that is blacklisted, or not in the library, is passed over (and stays).
    let stranger = Hash32::digest(b"not in the library");
    let with_blacklist = proposed_tracks(|node, _| {
        node.set_blacklist([queue[0]].into());
        node.set_queue(vec![stranger, queue[0], queue[1]]);
    });
    assert_eq!(with_blacklist[0], queue[1]);
    assert!(!with_blacklist.contains(&queue[0]));
}

#[test]
fn a_queue_read_again_before_its_track_is_decided_does_not_propose_it_twice() {
    // The driver hands consensus the queue file whenever it changes; a DJ who queues X once
    // and edits the file again before X's slot is decided hands X back. Every own proposal
    // stays in flight for several slots (the lookahead), so without care X went out for
    // consecutive slots, and the automatic pick could choose a track already in flight.
    let library: Vec<TrackRef> = (0..12)
        .map(|j| crate::track::tests::track(&format!("big library track {j}"), 90_000))
        .collect();
    let x = library[7].track_hash;
    let proposed = proposed_tracks_of(library, |_, _| {}, |node| node.set_queue(vec![x]));
    assert!(proposed.len() >= 5, "{proposed:?}");
    assert_eq!(proposed[0], x, "the queue first");
    assert_eq!(
        proposed.iter().filter(|h| **h == x).count(),
        1,
        "{proposed:?}"
    );
    let distinct: BTreeSet<&Hash32> = proposed.iter().collect();
    assert_eq!(
        distinct.len(),
        proposed.len(),
        "a track twice: {proposed:?}"
    );
}

#[test]
fn peers_proposing_from_identical_libraries_show_the_same_library_hash() {
    use super::test_builder::library_of;
    // Nodes 0 and 1 run clones of one library; node 2 has its own.
    let mut net = TestBuilder::new(3).library(1, library_of(0)).build();
    net.run_until_len(LEN);
    let hash_seen_by = |observer: usize, of: usize| {
        let peer = net.peer(of);
        net.nodes[observer]
            .peers()
            .get(&peer)
            .and_then(|p| p.library_hash)
    };
    let own = |i: usize| Some(net.nodes[i].library_hash());
    assert_eq!(own(0), own(1));
    assert_ne!(own(0), own(2));
    assert_eq!(hash_seen_by(2, 0), own(0));
    assert_eq!(hash_seen_by(2, 1), own(0));
    assert_eq!(hash_seen_by(0, 2), own(2));
}

/// A node that joins after the first proposals of a slot were published, but before that slot's
/// selection began, holds only the proposals published since: it must not decide that slot from
/// its own view. Here the Tallies and Decisions of that slot never reach it either, so deciding
/// alone would make the later of the others' proposals its winner.
#[test]
fn a_joiner_that_missed_a_slots_first_proposals_follows_that_slot() {
    const JOINER: usize = 3;
    let mut net = TestBuilder::new(3).build();
    net.run_until_len(9);
    // Slot `k`'s proposal window is in slot k - 5; its selection begins at start(k - 4).
    let chain = net.nodes[0].chain().clone();
    let k = net.next_proposal_slot();
    let ctx = SlotContext::on_chain(&chain, k);
    let times = net.proposal_times(k, 3);
    let (first, lowest) = times[0];
    assert!(
        first + 200 < times[1].0,
        "the test needs the first proposal well ahead"
    );
    let selection = crate::schedule::selection_window(&chain, k).expect("known");
    // Joins once the lowest ticket's proposal went out (and arrived), before the others.
    net.run_until(first + 100);
    assert!(net.now < selection.start_ms);
    let mut joiner_net = net;
    let synced = joiner_net.nodes[0].chain().clone();
    joiner_net.set_drop(move |_, to, m| {
        to == JOINER && matches!(m, Message::Tally(_) | Message::Decision(_)) && m.slot() == Some(k)
    });
    let joiner = joiner_net.join(synced);
    assert_eq!(joiner, JOINER);
    // It proposes nothing itself (a late proposal of its own could win the slot anyway).
    joiner_net.nodes[JOINER].set_library(Vec::new());
    joiner_net.run_until_len(k + 1);
    joiner_net.assert_agree(k);
    let winner = joiner_net.nodes[0]
        .chain()
        .decided(k)
        .expect("final")
        .proposal_id;
    assert!(winner.is_some(), "slot {k} has a winning proposal");
    let low = crate::ticket::ticket(&ctx, &joiner_net.peer(lowest));
    assert_eq!(
        joiner_net.nodes[0]
            .chain()
            .decided(k)
            .expect("final")
            .ticket,
        Some(low),
        "the lowest ticket, published before the joiner was online, wins"
    );
    // The joiner took slot `k` from its peers, never deciding it alone.
    assert!(
        joiner_net
            .events_of(JOINER)
            .all(|a| !matches!(a, Action::Fork(_) | Action::Adopted { .. })),
        "the joiner never held a chain of its own"
    );
}

/// Seen in the network test: a late joiner connected to the bootstrap node only asked the
/// authors of the slot's Decisions for the chain, none of which it could reach (a dial
/// failure each, 5 s apart), gave up and made a replay final where the others had a winner.
/// A follower asks the peers it is directly connected to first.
#[test]
fn a_follower_asks_its_connected_peers_for_the_chain_first() {
    const JOINER: usize = 3;
    // The joiner can fetch no proposal, so it needs the chain for the slot it follows; the
    // authors it is not connected to never answer a chain request.
    let mut net = TestBuilder::new(3)
        .lose_fetches(usize::MAX)
        .mute_chain(&[1, 2])
        .build();
    net.run_until_len(9);
    let chain = net.nodes[0].chain().clone();
    let k = net.next_proposal_slot();
    net.run_until(
        crate::schedule::proposal_window(&chain, k)
            .expect("known")
            .end_ms,
    );
    let synced = net.nodes[0].chain().clone();
    // Node 0's Decisions do not reach it: the authors it hears are 1 and 2.
    net.set_drop(move |from, to, m| {
        from == 0 && to == JOINER && matches!(m, Message::Decision(_)) && m.slot() == Some(k)
    });
    let joiner = net.join(synced);
    assert_eq!(joiner, JOINER);
    net.nodes[JOINER].set_library(Vec::new());
    net.nodes[JOINER].count_direct_support_only();
    let bootstrap = net.peer(0);
    net.nodes[JOINER].peer_connected(bootstrap);
    net.run_until_len(k + 1);
    let asked: Vec<PeerId> = net
        .chain_fetches_of(JOINER)
        .into_iter()
        .map(|(peer, _)| peer)
        .collect();
    assert_eq!(
        asked.first(),
        Some(&bootstrap),
        "the first chain request goes to the connected peer: {asked:?}"
    );
    net.assert_agree(k);
}
