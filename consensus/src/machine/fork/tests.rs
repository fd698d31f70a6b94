use super::super::test_builder::{TestBuilder, TestNet};
use super::*;
use crate::genesis::tests::signed_genesis;

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

fn assert_all_agree(net: &TestNet, slots: std::ops::Range<u64>) {
    for slot in slots {
        let hashes = net.hashes_at(slot);
        assert!(
            hashes.iter().all(|h| *h == hashes[0]),
            "slot {slot}: {hashes:?}"
        );
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
        // Later a partner that has not adopted yet is a minority of one: kept.
        for r in &reports[2..] {
            assert_eq!(r.choice, ForkChoice::Keep, "node {i}: {r:?}");
            assert_eq!(
                r.own.chain_hash,
                majority.chain_hash(r.slot).expect("known")
            );
        }
        assert_eq!(adopted(&net, i), [5], "node {i}");
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
fn a_tie_resolves_to_the_smaller_chain_hash() {
    let mut net = TestBuilder::new(4).partition(&[0, 1], heal_ms()).build();
    net.run_until(heal_ms() - 1);
    assert_ne!(net.hashes_at(5)[0], net.hashes_at(5)[2], "the sides forked");
    net.run_until_len(15);
    assert_all_agree(&net, 5..15);
    let adopters: Vec<usize> = (0..4).filter(|i| !adopted(&net, *i).is_empty()).collect();
    assert!(
        adopters == [0, 1] || adopters == [2, 3],
        "one side adopts: {adopters:?}"
    );
    for i in 0..4 {
        for r in fork_reports(&net, i) {
            assert_eq!((r.own.supporters, r.other.supporters), (2, 2), "node {i}");
            let other_smaller = r.other.chain_hash < r.own.chain_hash;
            assert_eq!(other_smaller, adopters.contains(&i), "node {i}: {r:?}");
        }
    }
}

#[test]
fn unsolicited_or_broken_chains_are_refused() {
    let mut net = TestBuilder::new(1).build();
    let peer = net.peer(0);
    let other = crate::testing::chain_to(7);
    let slots = other.decided_slots().to_vec();
    let node = &mut net.nodes[0];
    assert_eq!(
        node.handle_chain(0, peer, slots.clone()),
        Err(SyncError::Unsolicited)
    );
    node.ask_chain(0, Purpose::Adopt, peer, 5);
    assert_eq!(node.handle_chain(0, peer, vec![]), Err(SyncError::Empty));
    assert!(matches!(
        node.handle_chain(0, peer, slots[1..].to_vec()),
        Err(SyncError::NotConnected { first: 6, .. })
    ));
    let mut broken = slots.clone();
    broken[1].chain_hash = Hash32::ZERO;
    assert!(matches!(
        node.handle_chain(0, peer, broken),
        Err(SyncError::Invalid(ChainError::HashMismatch { slot: 6, .. }))
    ));
    // A chain that extends the own one is appended, each slot reported as decided.
    assert_eq!(
        node.handle_chain(0, peer, slots),
        Ok(ChainSync::Extended(3))
    );
    assert_eq!(node.chain(), &other);
}
