//! Hostile peers against the slot state, proposal fetches and finality: forged Decisions that
//! would evict honest ones, lies about held proposals, floods of unknown proposal ids, and
//! extreme numbers (docs/consensus.md, "Hostile decisions and requests").

use libp2p_identity::Keypair;

use super::slot::{DECISIONS_PER_SLOT, SlotState};
use super::test_builder::{TestBuilder, TestNet};
use super::*;
use crate::message::{Decision, Tally};
use crate::schedule::selection_window;

/// A fresh identity, as an attacker makes them by the thousand.
fn fresh_key(i: u32) -> Keypair {
    let mut secret = [0x5a; 32];
    secret[..4].copy_from_slice(&i.to_be_bytes());
    Keypair::ed25519_from_bytes(secret).expect("32 bytes")
}

/// A proposal id that nobody holds.
fn fake_id(i: u32) -> Hash32 {
    Hash32::digest(format!("no such proposal {i}").as_bytes())
}

fn decision_by(
    chain: &Chain,
    key: &Keypair,
    slot: u64,
    claim: Option<(Hash32, u64)>,
    winner: Hash32,
) -> Decision {
    Decision {
        network_id: *chain.network_id(),
        slot,
        from: key.public().to_peer_id(),
        winner,
        proposal_id: claim.map(|(id, _)| id),
        ticket: claim.map(|(_, t)| t),
        equivocators: vec![],
        rules_hash: *chain.rules_hash(),
    }
}

/// Hands node `to` one signed Decision of each key `fresh_key(i)` for `i` in `keys`, claiming
/// `claim(i)`; returns the actions it emitted (requests to the attacker's keys, which the
/// test network cannot answer anyway).
fn flood(
    net: &mut TestNet,
    to: usize,
    slot: u64,
    keys: std::ops::Range<u32>,
    claim: impl Fn(u32) -> (Hash32, u64),
) -> Vec<Action> {
    let chain = net.nodes[to].chain().clone();
    let now = net.now;
    for i in keys {
        let key = fresh_key(i);
        let winner = Hash32::digest(format!("forged winner {i}").as_bytes());
        let d = decision_by(&chain, &key, slot, Some(claim(i)), winner);
        let envelope = Envelope::seal(&d, &key).expect("signs its own");
        let source = key.public().to_peer_id();
        assert_eq!(
            net.nodes[to].handle_message(now, source, envelope),
            Validation::Accept
        );
    }
    std::iter::from_fn(|| net.nodes[to].poll_action()).collect()
}

/// `(time, peer, ids)` of each `FetchProposals` for `slot` that node `i` sent, in order.
fn fetches_of(net: &TestNet, i: usize, slot: u64) -> Vec<(u64, PeerId, Vec<Hash32>)> {
    net.events
        .iter()
        .filter_map(|(n, t, a)| match a {
            Action::FetchProposals { peer, slot: s, ids } if *n == i && *s == slot => {
                Some((*t, *peer, ids.clone()))
            }
            _ => None,
        })
        .collect()
}

fn fetches_in(actions: &[Action], at: u64, slot: u64) -> Vec<(u64, PeerId, Vec<Hash32>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::FetchProposals { peer, slot: s, ids } if *s == slot => {
                Some((at, *peer, ids.clone()))
            }
            _ => None,
        })
        .collect()
}

/// The lowest-ticket proposal node `i` holds for `slot`: `(id, ticket, track hash)`.
fn best_held(net: &TestNet, i: usize, slot: u64) -> (Hash32, u64, Hash32) {
    let state = net.nodes[i].slots.get(&slot).expect("slot in flight");
    let chain = net.nodes[i].chain();
    let (id, held) = state
        .ranked(chain, slot)
        .first()
        .copied()
        .expect("a proposal");
    (id, held.ticket, held.proposal.track.track_hash)
}

/// Node `i`'s actions now, and those of a timeout it asks for at once (lies found where the
/// machine cannot report them in place are reported at the next timeout, due at once).
fn actions_now(net: &mut TestNet, i: usize) -> Vec<Action> {
    let now = net.now;
    let mut actions: Vec<Action> = std::iter::from_fn(|| net.nodes[i].poll_action()).collect();
    if net.nodes[i].poll_timeout().is_some_and(|t| t <= now) {
        net.nodes[i].handle_timeout(now);
        actions.extend(std::iter::from_fn(|| net.nodes[i].poll_action()));
    }
    actions
}

/// Attack 1: hundreds of fresh keys each sign a Decision claiming ticket 0 for a proposal that
/// does not exist. The node that missed the winning proposal (and every Tally) learns it only
/// from the honest Decisions: they must survive the flood, so that it fetches the proposal and
/// agrees at finality.
#[test]
fn forged_decisions_do_not_evict_honest_ones() {
    let mut net = TestBuilder::new(3)
        .library(2, vec![])
        .drop_if(|_, to, m| to == 2 && matches!(m, Message::Proposal(_) | Message::Tally(_)))
        .build();
    net.run_until_len(9);
    let slot = 9;
    let window = selection_window(net.nodes[2].chain(), slot).expect("known");
    assert!(net.now < window.end_ms, "before the decision point");
    // The honest speakers have been in sync on this chain for a while.
    for peer in [net.peer(0), net.peer(1)] {
        assert!(net.nodes[2].vouched(net.now, &peer));
    }
    let n = u32::try_from(DECISIONS_PER_SLOT).expect("small") + 44;
    flood(&mut net, 2, slot, 0..n, |i| (fake_id(i), 0));
    net.run_until_len(slot + 1);
    net.assert_agree(slot);
    let decided = net.nodes[2].chain().decided(slot).expect("final");
    assert!(decided.proposal_id.is_some(), "no replay decided alone");
}

/// Attack 1, the lie: a Decision naming a proposal the node holds, with another ticket or
/// another winner, is not kept and is a violation of its author; also when the proposal
/// arrives only after the Decision.
#[test]
fn a_decision_that_misstates_a_held_proposal_is_a_violation() {
    let mut net = TestBuilder::new(3).build();
    net.run_until_len(9);
    let slot = 9;
    let (id, ticket, track) = best_held(&net, 0, slot);
    let chain = net.nodes[0].chain().clone();
    let (low, wrong) = (fresh_key(1), fresh_key(2));
    let lies = [
        decision_by(&chain, &low, slot, Some((id, ticket / 2)), track),
        decision_by(
            &chain,
            &wrong,
            slot,
            Some((id, ticket)),
            Hash32::digest(b"not it"),
        ),
    ];
    let now = net.now;
    for (d, key) in lies.iter().zip([&low, &wrong]) {
        let envelope = Envelope::seal(d, key).expect("signs its own");
        net.nodes[0].handle_message(now, d.from, envelope);
    }
    let actions = actions_now(&mut net, 0);
    let reported: Vec<PeerId> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Violation { peer, .. } => Some(*peer),
            _ => None,
        })
        .collect();
    assert_eq!(reported, [lies[0].from, lies[1].from]);
    // A Tally that misstates the ticket of a held proposal lies too.
    let teller = fresh_key(4);
    let tally = Tally {
        network_id: *chain.network_id(),
        slot,
        from: teller.public().to_peer_id(),
        best: vec![(ticket.wrapping_add(1), id)],
    };
    let envelope = Envelope::seal(&tally, &teller).expect("signs its own");
    net.nodes[0].handle_message(now, tally.from, envelope);
    let actions = actions_now(&mut net, 0);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Violation { peer, .. } if *peer == tally.from)),
        "{actions:?}"
    );
    let state = net.nodes[0].slots.get(&slot).expect("in flight");
    assert!(!state.decisions.contains_key(&lies[0].from));
    assert!(!state.decisions.contains_key(&lies[1].from));
    for d in &lies {
        let row = net.nodes[0].peers().get(&d.from).expect("counted");
        assert_eq!(row.violations, 1);
    }
    // The honest network is not disturbed.
    net.run_until_len(slot + 2);
    net.assert_agree(slot);
    net.assert_agree(slot + 1);
}

/// Attack 1, the lie told first: a Decision that misstates the ticket of a proposal the node
/// receives only after it is dropped as well, and a violation of its author.
#[test]
fn a_decision_that_misstates_a_later_proposal_is_a_violation() {
    let mut net = TestBuilder::new(3).build();
    net.run_until_len(9);
    let slot = 9;
    let chain = net.nodes[0].chain().clone();
    let now = net.now;
    // An outsider's proposal for the next slot.
    let next = slot + 1;
    let proposal = crate::testing::proposal(&chain, next, 77);
    let proposal_id = crate::testing::id_of(&proposal);
    let real = crate::ticket::ticket(&SlotContext::on_chain(&chain, next), &proposal.from);
    let liar = fresh_key(3);
    let d = decision_by(
        &chain,
        &liar,
        next,
        Some((proposal_id, real.wrapping_add(1))),
        proposal.track.track_hash,
    );
    let envelope = Envelope::seal(&d, &liar).expect("signs its own");
    net.nodes[0].handle_message(now, d.from, envelope);
    let envelope = Envelope::seal(&proposal, &crate::testing::keypair(77)).expect("signs");
    net.nodes[0].handle_message(now, proposal.from, envelope);
    let actions = actions_now(&mut net, 0);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Violation { peer, .. } if *peer == d.from)),
        "{actions:?}"
    );
    let state = net.nodes[0].slots.get(&next).expect("in flight");
    assert!(!state.decisions.contains_key(&d.from));
    // The honest network is not disturbed.
    net.run_until_len(slot + 2);
    net.assert_agree(slot);
    net.assert_agree(next);
}

/// Attack 1, many keys for one fake id: they count as a few, so that an honest Decision whose
/// proposal has not arrived yet is kept, even from a peer the table does not vouch for.
#[test]
fn one_fake_id_claimed_by_many_keys_counts_little() {
    let chain = crate::testing::chain_to(4);
    let mut state = SlotState::default();
    let fake = fake_id(0);
    let n = u32::try_from(DECISIONS_PER_SLOT).expect("small") + 44;
    for i in 0..n {
        let d = decision_by(&chain, &fresh_key(i), 5, Some((fake, 0)), Hash32::ZERO);
        state.add_decision(d);
    }
    let honest = fresh_key(n);
    let d = decision_by(
        &chain,
        &honest,
        5,
        Some((fake_id(1), 1 << 60)),
        Hash32::digest(b"the real winner"),
    );
    state.add_decision(d.clone());
    assert!(state.decisions.len() <= DECISIONS_PER_SLOT);
    assert_eq!(state.decisions.get(&d.from), Some(&d));
}

/// Attack 1, many keys backing one real proposal: they are consistent (no lie), but beyond
/// [`DECISIONS_PER_CLAIM`](super::slot::DECISIONS_PER_CLAIM) they count for nothing, so they
/// cannot push out an honest Decision whose proposal has not arrived yet.
#[test]
fn many_keys_backing_one_held_proposal_count_little() {
    let chain = crate::testing::chain_to(4);
    let mut state = SlotState::default();
    let proposal = crate::testing::proposal(&chain, 5, 40);
    let envelope = Envelope::seal(&proposal, &crate::testing::keypair(40)).expect("signs");
    let id = envelope.id();
    let ticket = crate::ticket::ticket(&SlotContext::on_chain(&chain, 5), &proposal.from);
    let winner = proposal.track.track_hash;
    state.hold(
        id,
        super::slot::Held {
            proposal,
            envelope,
            ticket,
        },
    );
    let honest = decision_by(
        &chain,
        &fresh_key(9_999),
        5,
        Some((fake_id(7), ticket.saturating_add(1))),
        Hash32::digest(b"a proposal on its way"),
    );
    state.add_decision(honest.clone());
    let n = u32::try_from(DECISIONS_PER_SLOT).expect("small") + 44;
    for i in 0..n {
        state.add_decision(decision_by(
            &chain,
            &fresh_key(i),
            5,
            Some((id, ticket)),
            winner,
        ));
    }
    assert!(state.decisions.len() <= DECISIONS_PER_SLOT);
    assert_eq!(state.decisions.get(&honest.from), Some(&honest));
    assert!(state.lies.is_empty(), "consistent claims are no lies");
}

/// Attack 2: hundreds of Decisions naming unknown ids with a low ticket. The node asks for a
/// few ids at a time (`backup_proposals + 2`), never twice at once of one announcer, and
/// forgets the rest; the honest network still agrees.
#[test]
fn fake_proposal_ids_are_asked_for_a_few_at_a_time() {
    let mut net = TestBuilder::new(3).build();
    net.run_until_len(9);
    let slot = 9;
    let start = net.now;
    let limit = usize::try_from(net.nodes[0].chain().rules().backup_proposals + 2).expect("small");
    let actions = flood(&mut net, 0, slot, 0..300, |i| (fake_id(i), 0));
    let mut asked = fetches_in(&actions, start, slot);
    net.run_until_len(slot + 1);
    asked.extend(fetches_of(&net, 0, slot));
    assert!(!asked.is_empty(), "the lowest claims are asked for");
    // Nobody answers the attacker's ids: each request is out for FETCH_TIMEOUT_MS.
    for (t, _, _) in &asked {
        let out: usize = asked
            .iter()
            .filter(|(s, _, _)| s <= t && *t < s + FETCH_TIMEOUT_MS)
            .map(|(_, _, ids)| ids.len())
            .sum();
        assert!(out <= limit, "{out} ids out at {t}, limit {limit}");
    }
    for (i, (t, peer, _)) in asked.iter().enumerate() {
        for (u, other, _) in &asked[i + 1..] {
            assert!(
                peer != other || u.abs_diff(*t) >= FETCH_TIMEOUT_MS,
                "two requests to one announcer at once"
            );
        }
    }
    let distinct: std::collections::BTreeSet<Hash32> =
        asked.iter().flat_map(|(_, _, ids)| ids.clone()).collect();
    let bound = limit + super::fetch::FETCH_WAITING_MAX;
    assert!(distinct.len() <= bound, "{} ids asked for", distinct.len());
    net.assert_agree(slot);
}

/// Attack 2, the verdict on ids nobody delivers: once every try failed the id is dropped and
/// its announcers are suspects for the slot, whose unbacked Decisions go first.
#[test]
fn an_id_nobody_delivers_makes_its_announcers_suspects() {
    let mut net = TestBuilder::new(3).build();
    net.run_until_len(9);
    let slot = 9;
    flood(&mut net, 0, slot, 0..3, |i| (fake_id(i), 0));
    let end = net.now + u64::from(FETCH_TRIES_MAX + 1) * FETCH_TIMEOUT_MS;
    net.run_until(end);
    assert_eq!(net.nodes[0].chain().len(), slot, "not final yet");
    let state = net.nodes[0].slots.get(&slot).expect("in flight");
    for i in 0..3 {
        let peer = fresh_key(i).public().to_peer_id();
        assert!(state.suspects.contains(&peer), "announcer {i}");
        let request = state.requests.get(&fake_id(i)).expect("remembered");
        assert!(request.due_ms.is_none(), "given up");
    }
}

/// Attack 3: extreme numbers in every field a peer controls never overflow (debug builds
/// panic on overflow) and change nothing for the honest network.
#[test]
fn extreme_numbers_from_peers_do_not_overflow() {
    let mut net = TestBuilder::new(3).build();
    net.run_until_len(9);
    let chain = net.nodes[0].chain().clone();
    let now = net.now;
    let key = fresh_key(9);
    let from = key.public().to_peer_id();
    for slot in [9, 10, 11, u64::MAX - 1, u64::MAX] {
        let tally = Tally {
            network_id: *chain.network_id(),
            slot,
            from,
            best: vec![(0, fake_id(1)), (u64::MAX, fake_id(2))],
        };
        for d in [
            decision_by(
                &chain,
                &key,
                slot,
                Some((fake_id(3), u64::MAX)),
                Hash32::ZERO,
            ),
            decision_by(&chain, &key, slot, None, Hash32::ZERO),
        ] {
            let envelope = Envelope::seal(&d, &key).expect("signs");
            net.nodes[0].handle_message(now, from, envelope);
        }
        let envelope = Envelope::seal(&tally, &key).expect("signs");
        net.nodes[0].handle_message(now, from, envelope);
        let mut p = crate::testing::proposal(&chain, slot.min(12), 9);
        p.from = from;
        p.slot = slot;
        p.created_ms = u64::MAX;
        p.track.duration_ms = u64::MAX;
        p.track.segment_count = u64::MAX;
        p.plays = vec![(u64::MAX, None)];
        let envelope = Envelope::seal(&p, &key).expect("signs");
        net.nodes[0].handle_message(now, from, envelope.clone());
        net.nodes[0].handle_fetched(now, vec![envelope]);
    }
    net.run_until_len(12);
    for slot in 9..12 {
        net.assert_agree(slot);
    }
}

/// Seen in CI as a late joiner that disagreed on a slot it only followed: it held some of the
/// slot's proposals but not the winning one, which it could not fetch, and a Decision naming a
/// proposal it did hold made that one final. Here the Decision comes from a fresh identity
/// that names a real proposal with its true ticket (no lie to catch), the second best. While
/// a Decision names a proposal it lacks with a lower ticket, a node that follows the slot takes
/// the chain from its peers instead of finalizing what it holds.
#[test]
fn a_follower_that_lacks_a_better_named_proposal_takes_the_chain_not_its_own_view() {
    const JOINER: usize = 3;
    // Every FetchProposals is lost: the joiner can never fetch the proposal it missed.
    let mut net = TestBuilder::new(3).lose_fetches(usize::MAX).build();
    net.run_until_len(9);
    let chain = net.nodes[0].chain().clone();
    let k = net.next_proposal_slot();
    let times: Vec<u64> = net
        .proposal_times(k, 3)
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert!(
        times[0] + 200 < times[1],
        "the test needs the first proposal well ahead"
    );
    let selection = selection_window(&chain, k).expect("known");
    // Joins once the lowest ticket's proposal went out, before the others: it gets those by
    // gossip, and learns of the lowest only from Tallies and Decisions.
    net.run_until(times[0] + 100);
    let synced = net.nodes[0].chain().clone();
    let joiner = net.join(synced);
    assert_eq!(joiner, JOINER);
    net.nodes[JOINER].set_library(Vec::new());
    net.run_until(selection.start_ms);
    let (second, ticket, track) = best_held(&net, JOINER, k);
    let d = decision_by(&chain, &fresh_key(1), k, Some((second, ticket)), track);
    let key = fresh_key(1);
    let envelope = Envelope::seal(&d, &key).expect("signs its own");
    let now = net.now;
    net.nodes[JOINER].handle_message(now, key.public().to_peer_id(), envelope);
    net.run_until_len(k + 1);
    let winner = net.nodes[0].chain().decided(k).expect("final").proposal_id;
    assert_ne!(
        winner,
        Some(second),
        "the lowest ticket wins among the founders"
    );
    net.assert_agree(k);
}
