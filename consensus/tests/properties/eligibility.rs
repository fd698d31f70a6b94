//! Eligibility (PROTOCOL.md 5, with 12.2's `unavailable` mark) against a direct model of the
//! section's three conditions.

use chorus_consensus::message::{Play, Played};
use chorus_consensus::{Chain, Hash32, Ineligible, Outcome, check_eligible};
use libp2p_identity::PeerId;
use proptest::prelude::*;

use crate::strategies::{config, duration, genesis_chain, hash, peer, track};

/// A chain of up to 16 decided slots, some of which record `me` as an equivocator.
fn chain_and_proposer() -> impl Strategy<Value = (Chain, PeerId)> {
    let slot = (any::<u64>(), duration(), prop::bool::weighted(0.15));
    (
        genesis_chain(),
        any::<[u8; 32]>(),
        prop::collection::vec(slot, 0..16),
    )
        .prop_map(|(mut chain, seed, slots)| {
            let me = peer(seed);
            for (track_seed, duration_ms, listed) in slots {
                chain.push(Outcome {
                    track: track(track_seed, duration_ms),
                    proposal: None,
                    envelope: None,
                    equivocators: if listed { vec![me] } else { vec![] },
                });
            }
            (chain, me)
        })
}

/// What a proposer reports for one slot of `plays`.
#[derive(Debug, Clone, Copy)]
enum Report {
    Absent,
    Null,
    Winner,
    Other,
    Unavailable,
}

fn report() -> impl Strategy<Value = Report> {
    prop_oneof![
        1 => Just(Report::Absent),
        1 => Just(Report::Null),
        4 => Just(Report::Winner),
        2 => Just(Report::Other),
        1 => Just(Report::Unavailable),
    ]
}

/// `plays` for slot k (slots `max(0, k-8) ..= k-5`) from the reports.
fn plays(chain: &Chain, k: u64, reports: &[Report], other: Hash32) -> Vec<Play> {
    (k.saturating_sub(8)..=k - 5)
        .zip(reports)
        .filter_map(|(j, r)| match r {
            Report::Absent => None,
            Report::Null => Some((j, None)),
            Report::Winner => Some((j, chain.winner(j).map(|t| Played::Track(t.track_hash)))),
            Report::Other => Some((j, Some(Played::Track(other)))),
            Report::Unavailable => Some((j, Some(Played::Unavailable))),
        })
        .collect()
}

/// Section 5 with 12.2, read literally: which condition fails first, if any.
fn model(chain: &Chain, k: u64, me: &PeerId, plays: &[Play]) -> Result<(), &'static str> {
    let played = |j: u64| plays.iter().find(|(s, _)| *s == j).and_then(|(_, t)| *t);
    let winner = |j: u64| chain.winner(j).map(|t| Played::Track(t.track_hash));
    // `unavailable` counts as in consensus.
    let in_consensus = |j: u64| {
        played(j) == Some(Played::Unavailable) || (played(j).is_some() && played(j) == winner(j))
    };
    if !in_consensus(k - 5) {
        return Err("not in consensus");
    }
    // A divergence is another track: null and `unavailable` are none.
    let diverged = |j: u64| matches!(played(j), Some(Played::Track(_))) && played(j) != winner(j);
    if k >= 8 && (k - 8..k - 5).all(diverged) {
        return Err("diverged");
    }
    let lookahead = chain.lookahead();
    if (k.saturating_sub(lookahead)..k).any(|j| {
        chain
            .decided(j)
            .is_some_and(|d| d.equivocators.contains(me))
    }) {
        return Err("equivocator");
    }
    Ok(())
}

fn name(verdict: &Result<(), Ineligible>) -> Result<(), &'static str> {
    match verdict {
        Ok(()) => Ok(()),
        Err(Ineligible::NotInConsensus { .. }) => Err("not in consensus"),
        Err(Ineligible::Diverged { .. }) => Err("diverged"),
        Err(Ineligible::Equivocator { .. }) => Err("equivocator"),
        Err(Ineligible::BadPlays(_)) => Err("bad plays"),
        Err(Ineligible::NotEnrolled | Ineligible::EnrollDelay { .. }) => Err("not enrolled"),
        Err(Ineligible::ChainTooShort { .. }) => Err("chain too short"),
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// `check_eligible` agrees with the model for every slot whose k-5 the chain holds.
    #[test]
    fn eligibility_follows_section_5(
        (chain, me) in chain_and_proposer(),
        at in any::<prop::sample::Index>(),
        reports in prop::collection::vec(report(), 4),
        other in hash(),
    ) {
        // k from L to len + 4: slot k-5 is known.
        let k = 5 + at.index(chain.len() as usize) as u64;
        let plays = plays(&chain, k, &reports, other);
        let verdict = check_eligible(&chain, k, &me, &plays);
        prop_assert_eq!(name(&verdict), model(&chain, k, &me, &plays), "k {} plays {:?}", k, plays);
    }

    /// Plays naming a slot outside k-8 ..= k-5, or out of order, are malformed; a chain that
    /// does not reach k-5 cannot judge.
    #[test]
    fn malformed_plays_and_short_chains_are_not_judged(
        (chain, me) in chain_and_proposer(),
        at in any::<prop::sample::Index>(),
        stray in any::<u64>(),
        reports in prop::collection::vec(report(), 4),
        other in hash(),
    ) {
        let k = 5 + at.index(chain.len() as usize) as u64;
        let mut plays = plays(&chain, k, &reports, other);
        if (k.saturating_sub(8)..=k - 5).contains(&stray) {
            // Repeat a slot: not strictly ascending.
            plays.push((k - 5, None));
            plays.push((k - 5, None));
        } else {
            plays.push((stray, None));
        }
        let verdict = check_eligible(&chain, k, &me, &plays);
        prop_assert!(matches!(verdict, Err(Ineligible::BadPlays(_))), "{:?}", verdict);

        let far = chain.len() + 5 + (stray % 8);
        let verdict = check_eligible(&chain, far, &me, &[]);
        prop_assert!(matches!(verdict, Err(Ineligible::ChainTooShort { .. })), "{:?}", verdict);
    }
}
