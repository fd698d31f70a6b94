use super::*;
use crate::chain::Outcome;
use crate::hash::Hash32;
use crate::testing::{chain_to, peer, proposal};
use crate::track::tests::track;

const K: u64 = 10;

fn verdict(plays: &[Play]) -> Result<(), Ineligible> {
    check_eligible(&chain_to(7), K, &peer(3), plays)
}

fn winners_plays() -> Vec<Play> {
    proposal(&chain_to(7), K, 3).plays
}

#[test]
fn in_consensus_proposer_is_eligible() {
    assert_eq!(winners_plays().len(), 4);
    assert_eq!(verdict(&winners_plays()), Ok(()));
}

#[test]
fn first_consensus_slot_needs_only_slot_zero() {
    let chain = chain_to(4);
    let p = proposal(&chain, 5, 3);
    assert_eq!(p.plays.len(), 1);
    assert_eq!(check_eligible(&chain, 5, &peer(3), &p.plays), Ok(()));
}

#[test]
fn rule_in_consensus_at_k_minus_5() {
    let mut plays = winners_plays();
    plays[3].1 = Some(Hash32::digest(b"substitute"));
    assert_eq!(verdict(&plays), Err(Ineligible::NotInConsensus { slot: 5 }));
    plays[3].1 = None;
    assert_eq!(verdict(&plays), Err(Ineligible::NotInConsensus { slot: 5 }));
    plays.pop();
    assert_eq!(verdict(&plays), Err(Ineligible::NotInConsensus { slot: 5 }));
}

#[test]
fn rule_three_divergences_ban() {
    let other = Some(Hash32::digest(b"other"));
    let mut plays = winners_plays();
    for play in &mut plays[..3] {
        play.1 = other;
    }
    assert_eq!(verdict(&plays), Err(Ineligible::Diverged { first: 2 }));
    // Two divergences and a slot before joining (null) do not ban.
    let mut joined_late = plays.clone();
    joined_late[0].1 = None;
    assert_eq!(verdict(&joined_late), Ok(()));
    // Two divergences and one slot in consensus do not ban.
    let mut back_once = plays;
    back_once[1] = winners_plays()[1];
    assert_eq!(verdict(&back_once), Ok(()));
}

#[test]
fn rule_equivocators_are_banned_for_l_slots() {
    let mut chain = chain_to(4);
    chain.push(Outcome {
        track: track("d5", 100_000),
        proposal: None,
        equivocators: vec![peer(3)],
    });
    for slot in 6..=12 {
        chain.push(Outcome {
            track: track(&format!("d{slot}"), 100_000),
            proposal: None,
            equivocators: vec![],
        });
    }
    for k in 6..=10 {
        let p = proposal(&chain, k, 3);
        assert_eq!(
            check_eligible(&chain, k, &peer(3), &p.plays),
            Err(Ineligible::Equivocator { slot: 5 }),
            "slot {k}"
        );
        assert_eq!(check_eligible(&chain, k, &peer(4), &p.plays), Ok(()));
    }
    let p = proposal(&chain, 11, 3);
    assert_eq!(check_eligible(&chain, 11, &peer(3), &p.plays), Ok(()));
}

#[test]
fn malformed_plays_are_ineligible() {
    let mut outside = winners_plays();
    outside.push((6, None));
    assert!(matches!(verdict(&outside), Err(Ineligible::BadPlays(_))));
    let mut unsorted = winners_plays();
    unsorted.swap(0, 1);
    assert!(matches!(verdict(&unsorted), Err(Ineligible::BadPlays(_))));
    let mut duplicate = winners_plays();
    duplicate[1].0 = duplicate[0].0;
    assert!(matches!(verdict(&duplicate), Err(Ineligible::BadPlays(_))));
}

#[test]
fn a_short_chain_cannot_judge() {
    let chain = chain_to(7);
    let p = proposal(&chain_to(9), 14, 3);
    assert_eq!(
        check_eligible(&chain, 14, &peer(3), &p.plays),
        Err(Ineligible::ChainTooShort { slot: 9 })
    );
}
