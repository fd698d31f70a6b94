use super::super::test_builder::{TestBuilder, TestNet, node_key};
use super::*;
use crate::genesis::tests::signed_genesis;
use crate::schedule::selection_window;

/// Network time at which the partitions of these tests heal: slots 5 to 8 are decided apart.
fn heal_ms() -> u64 {
    signed_genesis().genesis().start_ms + 400_000
}

fn fork_reports(net: &TestNet, i: usize) -> Vec<ForkReport> {
    net.events_of(i)
        .filter_map(|a| match a {
            Action::Fork(r) => Some(*r),
            _ => None,
        })
        .collect()
}

fn adopted(net: &TestNet, i: usize) -> Vec<u64> {
    net.events_of(i)
        .filter_map(|a| match a {
            Action::Adopted { from_slot, .. } => Some(*from_slot),
            _ => None,
        })
        .collect()
}

/// The chain hash at `slot` that every node holds at the end of a test (node 0's).
fn winner_now(net: &TestNet, slot: u64) -> Option<Hash32> {
    net.nodes[0].chain().chain_hash(slot)
}

fn assert_all_agree(net: &TestNet, slots: std::ops::Range<u64>) {
    for slot in slots {
        net.assert_agree(slot);
    }
}

#[test]
fn a_two_against_three_partition_heals_to_the_majority_chain() {
    let mut net = TestBuilder::new(5).partition(&[0, 1], heal_ms()).build();
    net.run_until(heal_ms() - 1);
    let minority = net.nodes[0].chain().clone();
    let majority = net.nodes[2].chain().clone();
    assert!(minority.len() >= 9 && majority.len() >= 9);
    assert_ne!(
        minority.chain_hash(5),
        majority.chain_hash(5),
        "the sides forked"
    );
    assert_eq!(net.hashes_at(5)[1], minority.chain_hash(5));
    assert_eq!(net.hashes_at(5)[3], majority.chain_hash(5));
    assert!(fork_reports(&net, 0).is_empty(), "no fork seen while apart");

    net.run_until_len(15);
    assert_all_agree(&net, 5..15);
    assert_eq!(net.nodes[0].chain().decided(5), majority.decided(5));
    assert_eq!(net.nodes[0].chain().decided(8), majority.decided(8));
    for i in [0, 1] {
        let reports = fork_reports(&net, i);
        let choices: Vec<ForkChoice> = reports.iter().map(|r| r.choice).collect();
        assert!(choices.len() >= 2, "node {i}: {reports:?}");
        // The other chain won two consecutive evaluations, then was adopted.
        assert_eq!(choices[0], ForkChoice::Wait, "node {i}");
        assert!(matches!(choices[1], ForkChoice::Adopt { .. }), "node {i}");
        for r in &reports[..2] {
            assert_eq!((r.own.supporters, r.other.supporters), (2, 3), "node {i}");
        }
        // Later a partner that has not adopted yet is a minority of one: kept. (Its head may
        // be past the slots decided apart: compare with the majority chain as it is now.)
        for r in &reports[2..] {
            assert_eq!(r.choice, ForkChoice::Keep, "node {i}: {r:?}");
            assert_eq!(
                Some(r.own.chain_hash),
                net.nodes[2].chain().chain_hash(r.slot)
            );
        }
        assert_eq!(adopted(&net, i), [5], "node {i}");
        // The two evaluations are half a status period apart or more, and the adoption comes
        // half a period after the Statuses from across the repair are heard (within a period
        // of it), not at the second own Status after that.
        let times = |pick: fn(&Action) -> bool| -> Vec<u64> {
            net.events
                .iter()
                .filter(|(n, _, a)| *n == i && pick(a))
                .map(|(_, t, _)| *t)
                .collect()
        };
        let forks = times(|a| matches!(a, Action::Fork(_)));
        let adoption = times(|a| matches!(a, Action::Adopted { .. }))[0];
        let period = net.nodes[i].status_period();
        assert!(
            forks[1] - forks[0] >= net.nodes[i].fork_gap(),
            "node {i}: {forks:?}"
        );
        eprintln!(
            "node {i}: fork seen {} ms and adopted {} ms after the repair",
            forks[0] - heal_ms(),
            adoption - heal_ms()
        );
        assert!(
            adoption - heal_ms() <= period + FORK_TURN_DELAY_MS + net.nodes[i].fork_gap() + 1_000,
            "node {i}: adopted {} ms after the repair",
            adoption - heal_ms()
        );
    }
    for i in 2..5 {
        let reports = fork_reports(&net, i);
        assert!(!reports.is_empty(), "node {i} saw the fork");
        for r in &reports {
            assert_eq!(r.choice, ForkChoice::Keep, "node {i}");
            assert_eq!((r.own.supporters, r.other.supporters), (3, 2), "node {i}");
        }
        assert!(adopted(&net, i).is_empty(), "node {i}");
        assert_eq!(net.nodes[i].chain().decided(8), majority.decided(8));
    }
    assert!(net.violations.is_empty(), "{:?}", net.violations);
}

#[test]
fn a_tie_resolves_to_the_smaller_chain_hash_at_the_first_difference() {
    let mut net = TestBuilder::new(4).partition(&[0, 1], heal_ms()).build();
    net.run_until(heal_ms() - 1);
    let sides = [net.nodes[0].chain().clone(), net.nodes[2].chain().clone()];
    // The sides decided slot 5 apart already: it is the first slot where they differ.
    assert_eq!(sides[0].chain_hash(4), sides[1].chain_hash(4));
    assert_ne!(
        sides[0].chain_hash(5),
        sides[1].chain_hash(5),
        "the sides forked"
    );
    let smaller = usize::from(sides[1].chain_hash(5) < sides[0].chain_hash(5));
    let winner = sides[smaller].clone();
    net.run_until_len(15);
    assert_all_agree(&net, 5..15);
    assert_eq!(net.nodes[0].chain().decided(5), winner.decided(5));
    let adopters: Vec<usize> = (0..4).filter(|i| !adopted(&net, *i).is_empty()).collect();
    let losers = if smaller == 0 { [2, 3] } else { [0, 1] };
    assert_eq!(adopters, losers, "the side larger at slot 5 adopts");
    for i in 0..4 {
        let reports = fork_reports(&net, i);
        // Every evaluation that fetched or waited saw the tie; a later one may see a partner
        // that has not adopted yet as a minority, and keeps.
        for r in &reports {
            if r.choice == ForkChoice::Keep && r.own.supporters > r.other.supporters {
                assert_eq!(Some(r.own.chain_hash), winner_now(&net, r.slot), "node {i}");
            } else {
                assert_eq!((r.own.supporters, r.other.supporters), (2, 2), "node {i}");
            }
        }
        // Heads do not show the first difference: each side fetched the other chain to compare.
        assert!(
            reports
                .iter()
                .any(|r| matches!(r.choice, ForkChoice::Compare { .. })),
            "node {i}: {reports:?}"
        );
        // The side that won compared at slot 5 and kept its chain.
        let kept_at_5: Vec<&ForkReport> = reports
            .iter()
            .filter(|r| r.slot == 5 && r.choice == ForkChoice::Keep)
            .collect();
        if losers.contains(&i) {
            assert!(kept_at_5.is_empty(), "node {i}: {reports:?}");
        } else {
            assert!(!kept_at_5.is_empty(), "node {i}: {reports:?}");
            assert!(
                kept_at_5
                    .iter()
                    .all(|r| r.own.chain_hash < r.other.chain_hash)
            );
        }
    }
}

#[test]
fn a_follow_fetch_nobody_answers_is_bounded_and_repaired_by_the_fork_rule() {
    let mut net = TestBuilder::new(3)
        .lose_chain_fetches(FOLLOW_TRIES_MAX as usize)
        .build();
    net.run_until_len(9);
    let chain = net.nodes[0].chain().clone();
    let decision_point = selection_window(&chain, 9).expect("known").end_ms;
    net.run_until(decision_point + 1_000);
    // Joins after slot 9's decisions: it holds nothing for slot 9 and must follow it.
    let joiner = net.join(net.nodes[0].chain().clone());
    let finality = crate::schedule::finality_ms(&chain, 9).expect("known");
    net.run_until(finality + u64::from(FOLLOW_TRIES_MAX) * SYNC_TIMEOUT_MS + 1_000);
    let asked: Vec<(u64, u64)> = net
        .events
        .iter()
        .filter_map(|(n, t, a)| match a {
            Action::FetchChain { from_slot, .. } if *n == joiner => Some((*t, *from_slot)),
            _ => None,
        })
        .collect();
    assert_eq!(asked.len(), FOLLOW_TRIES_MAX as usize, "{asked:?}");
    assert!(asked.iter().all(|(_, from)| *from == 9));
    // Nobody answered: slot 9 became final from what it holds, a replay decided alone.
    let final_9 = net
        .events
        .iter()
        .find_map(|(n, t, a)| match a {
            Action::Final(r) if *n == joiner && r.slot == 9 => Some((*t, r.proposal_id)),
            _ => None,
        })
        .expect("slot 9 became final");
    assert_eq!(
        final_9.0,
        finality + u64::from(FOLLOW_TRIES_MAX) * SYNC_TIMEOUT_MS
    );
    assert_eq!(final_9.1, None);
    // Its chain differs from the others' at slot 9: the fork rule repairs it.
    net.run_until_len(14);
    assert_all_agree(&net, 5..14);
    assert_eq!(adopted(&net, joiner), [9]);
    assert!((0..3).all(|i| adopted(&net, i).is_empty()));
}

/// Nodes 0 and 1 cut off from 2, 3 and 4 until [`heal_ms`], run until just before the heal;
/// of the majority only the supporter with the largest PeerId (the one a fork fetch asks last)
/// answers `FetchChain`. Returns the net, that supporter and the two mute ones.
fn partition_with_mute_supporters() -> (TestNet, usize, Vec<usize>) {
    let majority = [2, 3, 4];
    let bytes = |i: usize| node_key(i).public().to_peer_id().to_bytes();
    let answering = majority
        .into_iter()
        .max_by_key(|i| bytes(*i))
        .expect("three nodes");
    let mute: Vec<usize> = majority.into_iter().filter(|i| *i != answering).collect();
    let mut net = TestBuilder::new(5)
        .partition(&[0, 1], heal_ms())
        .mute_chain(&mute)
        .build();
    net.run_until(heal_ms() - 1);
    (net, answering, mute)
}

/// The supporters a fork fetch asks are chosen by head, then PeerId: the same one at every
/// evaluation. A supporter that never answers (a withholder; in the simulator, seed 32 of the
/// adversaries' scan) must not hold a node on the losing chain for good: the retries go to the
/// other chain's other supporters. Here the two the minority would ask first never answer.
#[test]
fn a_fork_fetch_nobody_answers_goes_on_to_the_other_supporters() {
    let (mut net, answering, _) = partition_with_mute_supporters();
    let majority_chain = net.nodes[2].chain().clone();
    assert_ne!(
        net.nodes[0].chain().chain_hash(5),
        majority_chain.chain_hash(5)
    );
    net.run_until_len(16);
    assert_all_agree(&net, 5..16);
    assert_eq!(net.nodes[0].chain().decided(5), majority_chain.decided(5));
    for i in [0, 1] {
        assert_eq!(adopted(&net, i), [5], "node {i}");
        let asked: Vec<PeerId> = net
            .events
            .iter()
            .filter_map(|(n, _, a)| match a {
                Action::FetchChain { peer, .. } if *n == i => Some(*peer),
                _ => None,
            })
            .collect();
        // Each supporter at most once: the retries went on to the next one.
        assert_eq!(asked.last(), Some(&net.peer(answering)), "node {i}");
        let distinct: BTreeSet<PeerId> = asked.iter().copied().collect();
        assert_eq!(distinct.len(), asked.len(), "node {i}: {asked:?}");
    }
}

#[test]
fn a_fork_fetch_asks_the_stalled_supporters_last() {
    // The same partition, and the node was told the two mute supporters stalled (its own
    // requests to them went unanswered): the first ask goes to the one that answers, which
    // the order without the hint asks last, and no retry is needed.
    let (mut net, answering, mute) = partition_with_mute_supporters();
    let stalled: Vec<PeerId> = mute.iter().map(|i| net.peer(*i)).collect();
    for i in [0, 1] {
        net.nodes[i].set_stalled(stalled.iter().copied());
    }
    net.run_until_len(16);
    assert_all_agree(&net, 5..16);
    for i in [0, 1] {
        assert_eq!(adopted(&net, i), [5], "node {i}");
        // The fork fetches: those up to the adoption (follow fetches may come after it).
        let asked: Vec<PeerId> = net
            .events
            .iter()
            .filter(|(n, _, _)| *n == i)
            .take_while(|(_, _, a)| !matches!(a, Action::Adopted { .. }))
            .filter_map(|(_, _, a)| match a {
                Action::FetchChain { peer, .. } => Some(*peer),
                _ => None,
            })
            .collect();
        assert_eq!(asked, [net.peer(answering)], "node {i}");
    }
}

#[test]
fn unsolicited_or_broken_chains_are_refused() {
    let mut net = TestBuilder::new(1).build();
    let peer = net.peer(0);
    let other = crate::testing::chain_to(7);
    let now = other.start(8).expect("known");
    let slots = other.decided_slots().to_vec();
    let node = &mut net.nodes[0];
    assert_eq!(
        node.handle_chain(now, peer, slots.clone()),
        Err(SyncError::Unsolicited)
    );
    node.ask_chain(now, Purpose::Adopt, peer, 5);
    assert_eq!(node.handle_chain(now, peer, vec![]), Err(SyncError::Empty));
    assert!(matches!(
        node.handle_chain(now, peer, slots[1..].to_vec()),
        Err(SyncError::NotConnected { first: 6, .. })
    ));
    let mut broken = slots.clone();
    broken[1].chain_hash = Hash32::ZERO;
    assert!(matches!(
        node.handle_chain(now, peer, broken),
        Err(SyncError::Invalid(ChainError::HashMismatch { slot: 6, .. }))
    ));
    // A chain that extends the own one is appended, each slot reported as decided.
    assert_eq!(
        node.handle_chain(now, peer, slots),
        Ok(ChainSync::Extended(3))
    );
    assert_eq!(node.chain(), &other);
}

/// Two nodes decide apart and then see a 1-against-1 tie, in a run where the order of the two
/// chains' hashes at the comparison slot (the lowest head) is the opposite of their order at
/// slot 5, where they first differ: the exact rule of PROTOCOL.md 9 follows slot 5. Which runs
/// are like that depends on the network id; the libraries are varied until one is.
#[test]
fn a_tie_is_broken_at_the_first_difference_not_at_the_heads() {
    let build = |variant: usize| {
        let mut builder = TestBuilder::new(2).partition(&[0], heal_ms());
        for i in 0..2 {
            let tracks = (0..3)
                .map(|j| {
                    crate::track::tests::track(
                        &format!("variant {variant} node {i} track {j}"),
                        90_000 + 10_000 * j,
                    )
                })
                .collect();
            builder = builder.library(i, tracks);
        }
        let mut net = builder.build();
        net.run_until(heal_ms() - 1);
        net
    };
    let (mut net, small, large) = (0..32)
        .find_map(|variant| {
            let net = build(variant);
            let (a, b) = (net.nodes[0].chain(), net.nodes[1].chain());
            let c = a.len().min(b.len()) - 1;
            let (small, large) = if a.chain_hash(5) < b.chain_hash(5) {
                (0, 1)
            } else {
                (1, 0)
            };
            let heads_other_way = a.chain_hash(5) != b.chain_hash(5)
                && (a.chain_hash(c) < b.chain_hash(c)) == (large == 0);
            heads_other_way.then_some((net, small, large))
        })
        .expect("a run whose heads order the chains the other way");
    let kept = net.nodes[small].chain().clone();
    net.run_until_len(15);
    assert_all_agree(&net, 5..15);
    assert_eq!(net.nodes[large].chain().decided(5), kept.decided(5));
    assert!(adopted(&net, small).is_empty());
    assert_eq!(adopted(&net, large), [5]);
}

/// PROTOCOL.md 12.4: N + 2 fresh identities behind one connection report another head. Counted
/// by signers (version 1's rule, node 1 here) they outnumber the honest nodes and the other
/// chain wins; counted per direct connection (node 0) they are one attacker who is not even a
/// direct peer, and nothing changes.
#[test]
fn sybil_statuses_over_one_connection_do_not_win_a_fork() {
    use crate::envelope::Envelope;
    use crate::genesis::tests::keypair;
    use crate::message::{Head, Status};

    let mut net = TestBuilder::new(3).build();
    net.run_until_len(10);
    net.nodes[0].count_direct_support_only();
    for i in [1, 2] {
        let peer = net.peer(i);
        net.nodes[0].peer_connected(peer);
    }
    let attacker = keypair(200).public().to_peer_id();
    let sybils: Vec<_> = (0..5u8).map(|i| keypair(100 + i)).collect();
    let fake = Hash32::digest(b"the attacker's chain");
    let network_id = *net.nodes[0].chain().network_id();
    let until = net.now + 40_000;
    let mut next_flood = net.now;
    while net.now < until {
        if net.now >= next_flood {
            let head_slot = net.nodes[0].chain().head().slot;
            for kp in &sybils {
                let status = Status {
                    network_id,
                    from: kp.public().to_peer_id(),
                    sent_ms: net.now,
                    playing: None,
                    consensus_track: None,
                    diverged: false,
                    head: Head {
                        slot: head_slot,
                        chain_hash: fake,
                    },
                    queue: vec![],
                    version: "sybil".to_owned(),
                };
                let envelope = Envelope::seal(&status, kp).expect("signs");
                for i in [0, 1] {
                    let now = net.now;
                    net.nodes[i].handle_message(now, attacker, envelope.clone());
                }
            }
            next_flood = net.now + 1_000;
        }
        assert!(net.step(), "the network runs");
    }
    let other_won = |i: usize| {
        fork_reports(&net, i)
            .iter()
            .any(|r| r.other.chain_hash == fake && r.choice != ForkChoice::Keep)
    };
    assert!(other_won(1), "the attack works on signer counting");
    assert!(
        !other_won(0),
        "direct connections only: {:?}",
        fork_reports(&net, 0)
    );
    assert!(adopted(&net, 0).is_empty());
    assert_all_agree(&net, 5..10);
}

/// Drains `node`'s actions.
fn drain(node: &mut Consensus) -> Vec<Action> {
    std::iter::from_fn(|| node.poll_action()).collect()
}

/// A node on the test genesis that asked `peer` for the chain from slot 5, as a joiner does.
fn joiner_asking(now: u64, peer: PeerId) -> Consensus {
    let mut joiner = Consensus::new(crate::testing::keypair(60), crate::testing::open_chain());
    joiner.ask_chain(now, Purpose::Follow, peer, 5);
    drain(&mut joiner);
    joiner
}

fn violations_of(node: &Consensus, peer: &PeerId) -> u64 {
    node.peers().get(peer).map_or(0, |p| p.violations)
}

/// The attack of PROTOCOL.md 12.1 (poisoned chains): an answer that changes a winner's
/// `duration_ms` (the schedule) and `manifest_id` (the audio) keeps every chain hash. Before
/// 12.1 the joiner took it (`Extended(5)`, the honest head); now it is refused whole and its
/// sender counted.
#[test]
fn a_poisoned_chain_answer_is_refused_and_its_sender_counted() {
    let mut net = TestBuilder::new(3).build();
    net.run_until_len(10);
    let honest = net.nodes[0].chain().clone();
    let peer = net.peer(1);
    let now = net.now;
    for field in ["duration_ms", "manifest_id"] {
        let mut poisoned = honest.decided_slots().to_vec();
        let i = poisoned
            .iter()
            .position(|d| d.proposal_id.is_some())
            .expect("a slot won by a proposal");
        let slot = poisoned[i].slot;
        if field == "duration_ms" {
            poisoned[i].track.duration_ms += 60_000;
            poisoned[i].track.segment_count += 10;
        } else {
            poisoned[i].track.manifest_id = Hash32::digest(b"another track's audio");
        }
        assert_eq!(
            poisoned[i].chain_hash,
            honest.chain_hash(slot).expect("known"),
            "every hash kept"
        );
        let mut joiner = joiner_asking(now, peer);
        let before = joiner.chain().clone();
        assert_eq!(
            joiner.handle_chain(now, peer, poisoned),
            Err(SyncError::Invalid(ChainError::TrackMismatch {
                slot,
                field
            }))
        );
        assert_eq!(joiner.chain(), &before, "nothing taken");
        assert_eq!(violations_of(&joiner, &peer), 1);
        let actions = drain(&mut joiner);
        assert!(
            actions.iter().any(|a| matches!(
                a,
                Action::Violation { peer: p, reason } if *p == peer && reason.contains("track differs")
            )),
            "{actions:?}"
        );
        assert!(!actions.iter().any(|a| matches!(a, Action::Decided(_))));
        // The request stays open: an honest peer's answer is then taken.
        let other = net.peer(2);
        assert_eq!(
            joiner.handle_chain(now, other, honest.decided_slots().to_vec()),
            Ok(ChainSync::Extended(honest.decided_slots().len()))
        );
        assert_eq!(violations_of(&joiner, &other), 0);
    }
}

/// A joiner's chain built from a verified answer is the honest chain: the same records
/// (envelopes included), head and schedule.
#[test]
fn a_joiners_chain_from_a_verified_answer_equals_the_honest_chain() {
    let mut net = TestBuilder::new(3).build();
    net.run_until_len(12);
    let honest = net.nodes[1].chain().clone();
    assert!(
        honest
            .decided_slots()
            .iter()
            .all(|d| d.proposal.is_some() == d.proposal_id.is_some())
    );
    let peer = net.peer(1);
    let mut joiner = joiner_asking(net.now, peer);
    let answer = honest.decided_slots().to_vec();
    let n = answer.len();
    assert_eq!(
        joiner.handle_chain(net.now, peer, answer),
        Ok(ChainSync::Extended(n))
    );
    assert_eq!(joiner.chain(), &honest);
    let decided = drain(&mut joiner)
        .into_iter()
        .filter(|a| matches!(a, Action::Decided(_)))
        .count();
    assert_eq!(decided, n);
    // The same answer through a plain chain (a joiner before its machine starts).
    let mut chain = crate::testing::open_chain();
    assert_eq!(
        chain.extend_synced(honest.decided_slots().to_vec(), net.now),
        Ok(n)
    );
    assert_eq!(chain, honest);
}

/// An answer must fit one `Chain` response and hold no slot that cannot be final yet.
#[test]
fn chain_answers_are_bounded() {
    let mut net = TestBuilder::new(3).build();
    net.run_until_len(10);
    let honest = net.nodes[0].chain().clone();
    let peer = net.peer(1);
    let mut joiner = joiner_asking(net.now, peer);
    let mut long = honest.decided_slots().to_vec();
    while long.len() <= CHAIN_RESPONSE_SLOTS {
        long.push(long[long.len() - 1].clone());
    }
    assert!(matches!(
        joiner.handle_chain(net.now, peer, long),
        Err(SyncError::Invalid(ChainError::TooMany { .. }))
    ));
    // Seen from before slot 4 started, slot 9 cannot be final (it is at start(6)).
    let early = honest.start(4).expect("known") - 1;
    assert!(matches!(
        joiner.handle_chain(early, peer, honest.decided_slots().to_vec()),
        Err(SyncError::Invalid(ChainError::Ahead { slot: 9, .. }))
    ));
    assert_eq!(violations_of(&joiner, &peer), 2);
    assert_eq!(joiner.chain().len(), 5);
}

/// PROTOCOL.md 12.4: the other chain is adopted only after every record of it passed 12.1.
/// A fork answer whose last record is poisoned replaces nothing (no truncation, no
/// `Adopted`); the honest answer is then adopted.
#[test]
fn fork_adoption_verifies_every_record_before_replacing_anything() {
    let mut net = TestBuilder::new(5).partition(&[0, 1], heal_ms()).build();
    net.run_until(heal_ms() - 1);
    let minority = net.nodes[0].chain().clone();
    let majority = net.nodes[2].chain().clone();
    assert_ne!(minority.chain_hash(5), majority.chain_hash(5));
    let supporter = net.peer(2);
    let now = net.now;
    let node = &mut net.nodes[0];
    drain(node);
    node.ask_chain(now, Purpose::Adopt, supporter, 5);
    drain(node);
    let mut poisoned = majority.decided_slots().to_vec();
    let last = poisoned
        .iter()
        .rposition(|d| d.proposal_id.is_some())
        .expect("a slot won by a proposal");
    let slot = poisoned[last].slot;
    poisoned[last].track.manifest_id = Hash32::ZERO;
    assert!(matches!(
        node.handle_chain(now, supporter, poisoned),
        Err(SyncError::Invalid(ChainError::TrackMismatch { slot: s, .. })) if s == slot
    ));
    assert_eq!(node.chain(), &minority, "nothing replaced");
    let actions = drain(node);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::Adopted { .. } | Action::Decided(_))),
        "{actions:?}"
    );
    assert_eq!(violations_of(node, &supporter), 1);
    assert_eq!(
        node.handle_chain(now, supporter, majority.decided_slots().to_vec()),
        Ok(ChainSync::Adopted(5))
    );
    assert_eq!(node.chain(), &majority);
    assert!(
        drain(node)
            .iter()
            .any(|a| matches!(a, Action::Adopted { from_slot: 5, .. }))
    );
}

/// Under fair tickets the ticket of slot k is over `beacon(k - L - 1)` (PROTOCOL.md 12.3). A
/// node that adopts a fork older than that while k is in flight holds proposals for k whose
/// tickets were computed on the replaced chain. The record it then decides for k must carry
/// the ticket of the adopted chain, or every node that fetches its chain refuses the record
/// (`ChainError::Ticket`, 12.1) and counts it as violating (found in the simulator, seed 4);
/// and what it announces for k must carry those tickets too, or honest peers count it as a
/// liar (and it counts them).
#[test]
fn an_adoption_recomputes_the_tickets_of_the_slots_in_flight() {
    use std::cell::Cell;
    use std::rc::Rc;

    use crate::chain::Chain;
    use crate::machine::test_builder::fair_genesis;

    let cut = Rc::new(Cell::new(false));
    let cutting = Rc::clone(&cut);
    // One track for all: the winners' tracks, so every `plays`, agree on both sides of the
    // fork, and the proposals held before the adoption stay eligible after it.
    let one = vec![crate::track::tests::track("the one track", 100_000)];
    let mut builder = TestBuilder::new(5).fair();
    for i in 0..5 {
        builder = builder.library(i, one.clone());
    }
    let mut net = builder
        .drop_if(move |from, to, _| cutting.get() && (from < 2) != (to < 2))
        .build();
    // Every node enrolled and eligible; then nodes 0 and 1 decide eight slots apart.
    net.run_until_len(24);
    let apart = net.nodes[0].chain().len();
    cut.set(true);
    net.run_until_len(apart + 8);
    let minority = net.nodes[0].chain().clone();
    let majority = net.nodes[2].chain().clone();
    cut.set(false);
    // Each record the adopters decide verifies as soon as it is decided (12.1).
    let verifies = |chain: &Chain| {
        let mut fetched = Chain::new(&fair_genesis());
        let records = chain.decided_slots().to_vec();
        let n = records.len();
        fetched
            .extend_synced(records, u64::MAX)
            .map(|taken| taken == n)
    };
    let mut heads = [None, None];
    while net
        .nodes
        .iter()
        .any(|n| n.chain().len() < minority.len() + 8)
    {
        assert!(net.step(), "the network runs");
        for i in [0, 1] {
            let head = net.nodes[i].chain().head();
            if heads[i] != Some(head) {
                heads[i] = Some(head);
                assert_eq!(verifies(net.nodes[i].chain()), Ok(true), "node {i}");
            }
        }
    }
    let lookahead = minority.lookahead();
    for i in [0, 1] {
        let adoptions: Vec<(u64, u64)> = net
            .events_of(i)
            .filter_map(|a| match a {
                Action::Adopted { from_slot, slots } => {
                    Some((*from_slot, slots.last().map_or(*from_slot, |d| d.slot + 1)))
                }
                _ => None,
            })
            .collect();
        // One adoption, of a fork older than the beacon the first slot in flight uses, which
        // differs between the two chains; no second fork after it.
        let [(fork, in_flight)] = adoptions[..] else {
            panic!("node {i} adopted {adoptions:?}");
        };
        let beacon_slot = in_flight - lookahead - 1;
        assert!(
            fork <= beacon_slot,
            "fork {fork}, slot {in_flight} in flight"
        );
        assert_ne!(minority.beacon(beacon_slot), majority.beacon(beacon_slot));
    }
    for slot in 5..net.nodes[0].chain().len() {
        net.assert_agree(slot);
    }
    assert!(net.violations.is_empty(), "{:?}", net.violations);
}
