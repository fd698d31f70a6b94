//! The chain (PROTOCOL.md 1 and 9): synced slots reproduce pushed ones, and the schedule of
//! decided slots never moves.

use chorus_consensus::chain::ChainError;
use chorus_consensus::{Chain, Hash32, Outcome};
use proptest::prelude::*;

use crate::strategies::{config, duration, genesis_chain, hash, peer, track};

/// Outcomes to append: a proposal (id, ticket) or a replay, and up to two equivocators.
fn outcomes() -> impl Strategy<Value = Vec<Outcome>> {
    let outcome = (
        any::<u64>(),
        duration(),
        prop::option::of((hash(), any::<u64>())),
        prop::collection::vec(any::<[u8; 32]>(), 0..3),
    )
        .prop_map(|(seed, duration_ms, proposal, equivocators)| Outcome {
            track: track(seed, duration_ms),
            proposal,
            equivocators: equivocators.into_iter().map(peer).collect(),
        });
    prop::collection::vec(outcome, 0..24)
}

fn pushed(mut chain: Chain, outcomes: &[Outcome]) -> Chain {
    for outcome in outcomes {
        chain.push(outcome.clone());
    }
    chain
}

/// `start(k)` for every `k <= len()`.
fn starts(chain: &Chain) -> Vec<u64> {
    (0..=chain.len()).filter_map(|k| chain.start(k)).collect()
}

proptest! {
    #![proptest_config(config(64))]

    /// Re-applying pushed slots with `push_synced` on a fresh chain rebuilds the same chain.
    #[test]
    fn push_synced_rebuilds_pushed_slots(genesis in genesis_chain(), outcomes in outcomes()) {
        let chain = pushed(genesis.clone(), &outcomes);
        let mut synced = genesis;
        for slot in chain.decided_slots() {
            prop_assert_eq!(synced.push_synced(slot.clone()), Ok(()));
        }
        for k in chain.lookahead() - 1..chain.len() {
            prop_assert_eq!(synced.chain_hash(k), chain.chain_hash(k));
        }
        prop_assert_eq!(synced.head(), chain.head());
        prop_assert_eq!(starts(&synced), starts(&chain));
        prop_assert_eq!(synced, chain);
    }

    /// A synced slot whose contents do not match its chain hash is refused, and nothing after
    /// it can be appended out of order.
    #[test]
    fn push_synced_refuses_tampered_slots(
        genesis in genesis_chain(),
        outcomes in outcomes().prop_filter("at least one slot", |o| !o.is_empty()),
        at in any::<prop::sample::Index>(),
        what in 0u8..3,
        other in hash(),
    ) {
        let chain = pushed(genesis.clone(), &outcomes);
        let slots = chain.decided_slots();
        let i = at.index(slots.len());
        let mut bad = slots[i].clone();
        match what {
            0 => bad.chain_hash = other,
            1 => bad.track.track_hash = other,
            _ => bad.proposal_id = match bad.proposal_id {
                Some(_) => None,
                None => Some(other),
            },
        }
        prop_assume!(bad != slots[i]);
        let mut synced = genesis;
        for slot in &slots[..i] {
            prop_assert_eq!(synced.push_synced(slot.clone()), Ok(()));
        }
        let len = synced.len();
        let refused = synced.push_synced(bad);
        prop_assert!(matches!(
            refused,
            Err(ChainError::HashMismatch { .. } | ChainError::HalfReplay(_))
        ), "{:?}", refused);
        prop_assert_eq!(synced.len(), len);
        if let Some(later) = slots.get(i + 1) {
            let skipped = synced.push_synced(later.clone());
            prop_assert!(matches!(skipped, Err(ChainError::NotNext { .. })), "{:?}", skipped);
        }
    }

    /// Appending slots never moves `start(k)` of a slot already scheduled, and each slot lasts
    /// its winner's duration plus the gap.
    #[test]
    fn the_schedule_never_shifts(
        genesis in genesis_chain(),
        outcomes in outcomes(),
        split in any::<prop::sample::Index>(),
    ) {
        let cut = split.index(outcomes.len() + 1);
        let before = pushed(genesis, &outcomes[..cut]);
        let after = pushed(before.clone(), &outcomes[cut..]);
        let (old, new) = (starts(&before), starts(&after));
        prop_assert_eq!(&new[..old.len()], &old[..]);
        let gap = after.rules().gap_ms;
        for k in 0..after.len() {
            let winner = after.winner(k).expect("every slot below len() has a winner");
            let (start, end) = (new[k as usize], new[k as usize + 1]);
            prop_assert_eq!(end, start + winner.duration_ms + gap);
            prop_assert_eq!(after.slot_at(start), Some(k));
            prop_assert_eq!(after.slot_at(end - 1), Some(k));
        }
        prop_assert_eq!(after.start(after.len() + 1), None);
    }

    /// Truncating (fork adoption) and appending the same slots again restores the same chain.
    #[test]
    fn truncate_then_push_restores_the_chain(
        genesis in genesis_chain(),
        outcomes in outcomes(),
        split in any::<prop::sample::Index>(),
    ) {
        let chain = pushed(genesis, &outcomes);
        let cut = split.index(outcomes.len() + 1);
        let mut forked = chain.clone();
        forked.truncate(chain.lookahead() + cut as u64);
        prop_assert_eq!(forked.len(), chain.lookahead() + cut as u64);
        prop_assert_eq!(&starts(&forked)[..], &starts(&chain)[..=cut + 5]);
        let restored = pushed(forked, &outcomes[cut..]);
        prop_assert_eq!(restored, chain);
    }
}

#[test]
fn genesis_chain_hash_is_the_head_before_any_decision() {
    let chain = Chain::from_parts(
        Hash32::ZERO,
        chorus_consensus::Rules::default(),
        chorus_consensus::Rules::default().rules_hash(),
        0,
        (0..5).map(|i| track(i, 60_000)).collect(),
    );
    assert_eq!(chain.head().slot, 4);
    assert_eq!(chain.chain_hash(4), Some(chain.head().chain_hash));
}
