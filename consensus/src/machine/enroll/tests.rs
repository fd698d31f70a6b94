//! Protocol 1.1's enrollment in running machines (PROTOCOL.md 12.3): nodes enroll through a
//! winning proposal, compute the same roster and beacon, refuse a forged reveal, re-enroll
//! after losing their seed; a joiner recomputes both from the chain's records.

use proptest::prelude::*;
use proptest::test_runner::Config;

use crate::admissibility::{Inadmissible, check_reveal};
use crate::chain::Chain;
use crate::envelope::{Envelope, Validation};
use crate::hash::Hash32;
use crate::machine::Action;
use crate::machine::test_builder::{TestBuilder, TestNet, fair_genesis, hash_chain_of, node_key};
use crate::message::{Played, Proposal, library_hash};
use crate::track::tests::track;

/// Every node holds the same roster and the same beacons up to `last`.
fn assert_same_roster_and_beacon(net: &TestNet, last: u64) {
    let first = net.nodes[0].chain();
    for (i, node) in net.nodes.iter().enumerate() {
        assert_eq!(node.chain().roster(), first.roster(), "node {i}'s roster");
        for slot in first.lookahead() - 1..=last {
            assert_eq!(
                node.chain().beacon(slot),
                first.beacon(slot),
                "node {i}'s beacon({slot})"
            );
        }
    }
}

/// The slot at which node `i` reported its own enrollment last, if it did.
fn enrolled_at(net: &TestNet, i: usize) -> Option<u64> {
    net.events_of(i)
        .filter_map(|a| match a {
            Action::Enrolled { slot, .. } => Some(*slot),
            _ => None,
        })
        .last()
}

#[test]
fn four_nodes_enroll_within_the_delay_plus_two_and_agree_on_every_slot() {
    let mut net = TestBuilder::new(4).fair().build();
    let delay = net.nodes[0].chain().rules().enroll_delay;
    net.run_until_len(40);
    for slot in 5..40 {
        net.assert_agree(slot);
    }
    assert_same_roster_and_beacon(&net, 39);
    let chain = net.nodes[0].chain();
    assert_eq!(chain.roster().len(), 4, "every node is enrolled");
    // The creator is enrolled in the genesis: no `Enrolled` (that is for a new enrollment).
    assert_eq!(enrolled_at(&net, 0), None);
    assert_eq!(net.nodes[0].enrollment().enrolled_at, Some(0));
    for i in 1..4 {
        let e = enrolled_at(&net, i).expect("each node reports its enrollment");
        assert!(e <= delay + 2, "node {i} enrolled at {e}");
        let view = net.nodes[i].enrollment();
        assert_eq!(view.enrolled_at, Some(e));
        assert_eq!(view.eligible_from, Some(e + delay));
        assert!(!view.reenrolling);
    }
    // Before the others are eligible only the creator can win (or the slot is a replay); after,
    // the others win too.
    let proposer = |slot| chain.proposer(slot);
    for slot in 5..delay + 8 {
        assert!(
            proposer(slot).is_none_or(|p| p == net.peer(0)),
            "slot {slot} won by a node not yet eligible"
        );
    }
    let others = (delay + 10..40)
        .filter(|s| proposer(*s).is_some_and(|p| p != net.peer(0)))
        .count();
    assert!(others > 0, "enrolled nodes win slots once eligible");
    // Every win revealed the next value of its author's chain: the roster's latest values.
    for (peer, enrolled) in chain.roster() {
        let i = (0..4).find(|i| net.peer(*i) == *peer).expect("a node");
        let expected = hash_chain_of(i, 0).value(enrolled.latest.0);
        assert_eq!(Some(enrolled.latest.1), expected, "node {i}'s latest value");
    }
}

/// Node `i`'s proposal for `slot` of `net`, with the plays of a node in consensus and `reveal`.
fn proposal_of(net: &TestNet, i: usize, slot: u64, reveal: Hash32) -> Envelope {
    let chain = net.nodes[0].chain();
    let t = track(&format!("forged {slot}"), 100_000);
    let proposal = Proposal {
        network_id: *chain.network_id(),
        slot,
        from: net.peer(i),
        library_hash: library_hash([&t.track_hash]),
        track_index: 0,
        track: t,
        plays: (slot - 8..=slot - 5)
            .map(|j| (j, chain.winner(j).map(|w| Played::Track(w.track_hash))))
            .collect(),
        rules_hash: *chain.rules_hash(),
        created_ms: net.now,
        reveal: Some(reveal),
        enrolls: Vec::new(),
    };
    Envelope::seal(&proposal, &node_key(i)).expect("its own key")
}

fn opened(envelope: &Envelope) -> Proposal {
    envelope
        .open_as(crate::limits::GOSSIP_MAX_BYTES)
        .expect("valid")
}

#[test]
fn a_forged_reveal_is_inadmissible_and_a_violation_and_the_true_one_passes() {
    let mut net = TestBuilder::new(3).fair().build();
    net.run_until_len(24);
    let slot = net.nodes[0].chain().len() + 2;
    let e = net.nodes[0]
        .chain()
        .enrollment(&net.peer(1))
        .expect("node 1 is enrolled")
        .slot;
    let forged = proposal_of(&net, 1, slot, Hash32::digest(b"forged"));
    let (now, peer1) = (net.now, net.peer(1));
    let verdict = net.nodes[0].handle_message(now, peer1, forged.clone());
    assert_eq!(verdict, Validation::Reject);
    let mut reported = Vec::new();
    while let Some(action) = net.nodes[0].poll_action() {
        reported.push(action);
    }
    assert!(
        reported.iter().any(|a| matches!(a,
            Action::RevealInvalid { peer, slot: s, .. } if *peer == peer1 && *s == slot)),
        "{reported:?}"
    );
    assert!(reported.iter().any(|a| matches!(a,
        Action::Violation { reason, .. } if reason.starts_with("reveal_invalid"))));
    // The same check, pure: the forged value fails, the true one passes.
    let chain = net.nodes[0].chain();
    assert!(matches!(
        check_reveal(chain, slot, &opened(&forged), None),
        Err(Inadmissible::Reveal(_))
    ));
    let value = hash_chain_of(1, 0)
        .value(slot - e)
        .expect("within the chain");
    let honest = proposal_of(&net, 1, slot, value);
    assert_eq!(
        check_reveal(chain, slot, &opened(&honest), None),
        Ok((slot - e, value))
    );
    // A value of the chain, but not the one for this slot, fails too.
    let early = hash_chain_of(1, 0).value(slot - e - 1).expect("within");
    let early = proposal_of(&net, 1, slot, early);
    assert!(check_reveal(chain, slot, &opened(&early), None).is_err());
}

/// A node may verify an author's proposal for k + 1 (and cache its value) before it fetches
/// the one for k: the earlier, true reveal still passes (found in the simulator under loss).
#[test]
fn a_cached_later_reveal_does_not_refuse_an_earlier_true_one() {
    let mut net = TestBuilder::new(3).fair().build();
    net.run_until_len(24);
    let chain = net.nodes[0].chain();
    let enrolled = *chain.enrollment(&net.peer(1)).expect("node 1 is enrolled");
    let slot = chain.len() + 1;
    let chain_of_1 = hash_chain_of(1, 0);
    let value = |k: u64| {
        chain_of_1
            .value(k - enrolled.slot)
            .expect("within the chain")
    };
    let later = (enrolled.commit, slot + 1 - enrolled.slot, value(slot + 1));
    let earlier = proposal_of(&net, 1, slot, value(slot));
    assert_eq!(
        check_reveal(chain, slot, &opened(&earlier), Some(later)),
        Ok((slot - enrolled.slot, value(slot)))
    );
    let forged = proposal_of(&net, 1, slot, Hash32::digest(b"forged"));
    assert!(check_reveal(chain, slot, &opened(&forged), Some(later)).is_err());
}

#[test]
fn a_node_that_lost_its_seed_re_enrolls_and_proposes_again() {
    let mut net = TestBuilder::new(3).fair().build();
    net.run_until_len(20);
    let first = net.nodes[2].enrollment().enrolled_at.expect("enrolled");
    // Its data directory lost the seed: it restarts with a new one.
    let now = net.now;
    net.nodes[2].set_hash_chain(hash_chain_of(2, 1), now);
    let view = net.nodes[2].enrollment();
    assert!(view.reenrolling, "{view:?}");
    assert_eq!(view.enrolled_at, None);
    net.run_until_len(60);
    let again = net.nodes[2].enrollment();
    let e = again.enrolled_at.expect("re-enrolled");
    assert!(e > first && !again.reenrolling, "{again:?}");
    assert_eq!(enrolled_at(&net, 2), Some(e));
    let chain = net.nodes[0].chain();
    assert_eq!(
        chain.enrollment(&net.peer(2)).map(|x| x.commit),
        Some(hash_chain_of(2, 1).commit())
    );
    let delay = chain.rules().enroll_delay;
    let proposed_after = net
        .events_of(2)
        .any(|a| matches!(a, Action::Proposed { slot, .. } if *slot >= e + delay));
    assert!(proposed_after, "it proposes again once eligible");
    for slot in 5..60 {
        net.assert_agree(slot);
    }
    assert!(net.violations.is_empty(), "{:?}", net.violations);
    // Its Enroll went out more than once, each time as new bytes (gossip drops a duplicate).
    let enrolls: Vec<Hash32> = net
        .published
        .iter()
        .filter(|(i, e)| *i == 2 && e.kind == "enroll")
        .map(|(_, e)| e.id())
        .collect();
    let distinct: std::collections::BTreeSet<&Hash32> = enrolls.iter().collect();
    assert!(enrolls.len() >= 2, "{enrolls:?}");
    assert_eq!(distinct.len(), enrolls.len());
}

#[test]
fn a_joiner_recomputes_the_roster_and_beacon_from_the_records() {
    let mut net = TestBuilder::new(3).fair().build();
    net.run_until_len(30);
    let answer = net.nodes[1].answer_chain(0);
    let mut synced = Chain::new(&fair_genesis());
    synced
        .extend_synced(answer, net.now)
        .expect("an honest chain verifies");
    let source = net.nodes[1].chain();
    assert_eq!(synced.roster(), source.roster());
    assert_eq!(synced.beacon(29), source.beacon(29));
    // A record whose reveal was changed (and re-signed by its author) is refused whole.
    let mut forged = net.nodes[1].answer_chain(0);
    let at = forged
        .iter()
        .position(|d| d.proposal.is_some() && d.slot > 20)
        .expect("a won slot");
    let mut p = opened(forged[at].proposal.as_ref().expect("won"));
    p.reveal = Some(Hash32::digest(b"other"));
    let signer = (0..3).find(|i| net.peer(*i) == p.from).expect("a node");
    let resealed = Envelope::seal(&p, &node_key(signer)).expect("own key");
    forged[at].proposal_id = Some(resealed.id());
    forged[at].proposal = Some(resealed);
    let slot = forged[at].slot;
    let mut copy = Chain::new(&fair_genesis());
    let err = copy.extend_synced(forged, net.now).expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains(&format!("slot {slot}")) || text.contains("reveal"),
        "{text}"
    );
    assert_eq!(copy.len(), 5, "nothing appended");
    let joined = net.join(synced);
    net.run_until_len(40);
    assert_same_roster_and_beacon(&net, 39);
    assert!(net.nodes[joined].enrollment().enrolled_at.is_some());
}

proptest! {
    #![proptest_config(Config { cases: 12, ..Config::default() })]

    /// With gossip lost at random (each message to each node, up to 15 %), every node still
    /// ends with the same chain (forks heal, PROTOCOL.md 9: the run goes on four slots past
    /// the ones compared), and so the same roster and beacon.
    #[test]
    fn every_node_computes_the_same_roster_and_beacon(seed in any::<u64>(), loss in 0u64..15) {
        let mut net = TestBuilder::new(4)
            .fair()
            .drop_if(move |from, to, m| {
                let h = Hash32::digest_parts(&[
                    &seed.to_be_bytes(),
                    &[u8::try_from(from).unwrap_or(0), u8::try_from(to).unwrap_or(0)],
                    format!("{m:?}").as_bytes(),
                ]);
                u64::from(h.0[0]) * 100 < loss * 256
            })
            .build();
        net.run_until_len(34);
        for slot in 5..30 {
            net.assert_agree(slot);
        }
        assert_same_roster_and_beacon(&net, 29);
    }
}
