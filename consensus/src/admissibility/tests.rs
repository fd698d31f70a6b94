use super::*;
use crate::chain::Chain;
use crate::hash::Hash32;
use crate::testing::{chain_to, id_of, proposal};

const K: u64 = 10;

fn judge(chain: &Chain, p: &Proposal) -> Result<(), Inadmissible> {
    check_admissible(chain, K, p, &id_of(p), [&id_of(p)])
}

#[test]
fn a_good_proposal_is_admissible() {
    let chain = chain_to(7);
    assert_eq!(judge(&chain, &proposal(&chain, K, 3)), Ok(()));
    assert_eq!(
        check_admissible(&chain, K, &proposal(&chain, K, 3), &Hash32::ZERO, []),
        Ok(()),
        "the set of known bodies may be empty"
    );
}

#[test]
fn rule_1_slot_network_and_rules_hash() {
    let chain = chain_to(7);
    let p = proposal(&chain, K, 3);
    assert_eq!(
        check_admissible(&chain, K + 1, &p, &id_of(&p), []),
        Err(Inadmissible::WrongSlot {
            expected: K + 1,
            got: K
        })
    );
    let mut genesis_slot = proposal(&chain, K, 3);
    genesis_slot.slot = 4;
    assert_eq!(
        check_admissible(&chain, 4, &genesis_slot, &id_of(&genesis_slot), []),
        Err(Inadmissible::GenesisSlot(4))
    );
    let mut rules = p.clone();
    rules.rules_hash = Hash32::digest(b"other rules");
    assert!(matches!(
        judge(&chain, &rules),
        Err(Inadmissible::RulesHash { .. })
    ));
    let mut network = p;
    network.network_id = Hash32::digest(b"other network");
    let err = judge(&chain, &network).expect_err("other network");
    assert!(matches!(err, Inadmissible::WrongNetwork { .. }));
    assert!(err.is_violation());
    assert_eq!(err.validation(), Validation::Reject);
}

#[test]
fn rule_2_duration_bounds_are_inclusive() {
    let chain = chain_to(7);
    let with_duration = |duration_ms: u64| {
        let mut p = proposal(&chain, K, 3);
        p.track.duration_ms = duration_ms;
        p.track.segment_count = expected_segments(duration_ms, 6000);
        judge(&chain, &p)
    };
    assert_eq!(with_duration(5_000), Ok(()));
    assert_eq!(with_duration(900_000), Ok(()));
    let err = with_duration(4_999).expect_err("too short");
    assert!(matches!(err, Inadmissible::Duration { .. }));
    assert_eq!(err.validation(), Validation::Reject);
    assert!(matches!(
        with_duration(900_001),
        Err(Inadmissible::Duration { .. })
    ));
}

#[test]
fn rule_2_segment_count_tolerates_one() {
    let chain = chain_to(7);
    // 120 s is exactly 20 segments of 6 s.
    let with_segments = |segment_count: u64| {
        let mut p = proposal(&chain, K, 3);
        p.track.segment_count = segment_count;
        judge(&chain, &p)
    };
    assert_eq!(with_segments(20), Ok(()));
    assert_eq!(with_segments(19), Ok(()));
    assert_eq!(with_segments(21), Ok(()));
    assert_eq!(
        with_segments(22),
        Err(Inadmissible::SegmentCount {
            expected: 20,
            got: 22
        })
    );
    assert!(matches!(
        with_segments(18),
        Err(Inadmissible::SegmentCount { .. })
    ));
}

#[test]
fn rule_3_ineligible_proposers_are_ignored_not_punished() {
    let chain = chain_to(7);
    let mut p = proposal(&chain, K, 3);
    p.plays[3].1 = None;
    let err = judge(&chain, &p).expect_err("not in consensus");
    assert_eq!(
        err,
        Inadmissible::Ineligible(Ineligible::NotInConsensus { slot: 5 })
    );
    assert!(!err.is_violation());
    assert_eq!(err.validation(), Validation::Ignore);
}

#[test]
fn rule_4_two_bodies_from_one_proposer() {
    let chain = chain_to(7);
    let first = proposal(&chain, K, 3);
    let mut second = first.clone();
    second.created_ms = 1;
    let (a, b) = (id_of(&first), id_of(&second));
    for (p, id) in [(&first, &a), (&second, &b)] {
        let err = check_admissible(&chain, K, p, id, [&a, &b]).expect_err("equivocation");
        assert_eq!(err, Inadmissible::Equivocation { bodies: 2 });
        assert_eq!(err.validation(), Validation::Accept);
    }
    assert_eq!(check_admissible(&chain, K, &first, &a, [&a, &a]), Ok(()));
}
