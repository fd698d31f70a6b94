//! `select` (PROTOCOL.md 4.3): a function of the set of distinct candidates only.

use std::collections::BTreeSet;

use chorus_consensus::select::REPLAY_DOMAIN;
use chorus_consensus::{Hash32, select};
use proptest::prelude::*;

use crate::strategies::{config, hash};

/// Candidates drawn from a small pool, so that duplicates are common.
fn candidates() -> impl Strategy<Value = Vec<Hash32>> {
    prop::collection::vec(hash(), 1..12).prop_flat_map(|pool| {
        let n = pool.len();
        prop::collection::vec(0..n, 0..30)
            .prop_map(move |picks| picks.into_iter().map(|i| pool[i]).collect())
    })
}

proptest! {
    #![proptest_config(config(256))]

    /// Permuting the candidates, or repeating any of them, changes nothing; the winner is one of
    /// them, at `index` among the distinct candidates sorted ascending.
    #[test]
    fn select_depends_on_the_set_of_candidates_only(
        cs in candidates(),
        order in any::<prop::sample::Index>(),
        extra in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        network_id in hash(),
        slot in any::<u64>(),
        start_ms in any::<u64>(),
    ) {
        let got = select(REPLAY_DOMAIN, &network_id, slot, start_ms, &cs);
        let distinct: Vec<Hash32> = cs.iter().copied().collect::<BTreeSet<_>>().into_iter().collect();
        let Some(sel) = got else {
            prop_assert!(cs.is_empty());
            return Ok(());
        };
        prop_assert!(cs.contains(&sel.winner));
        prop_assert_eq!(sel.n as usize, distinct.len());
        prop_assert!(sel.index < u64::from(sel.n));
        prop_assert_eq!(distinct[sel.index as usize], sel.winner);

        // A rotation and a reversal (every permutation is a product of such moves; proptest's
        // shuffle is exercised below).
        let mut rotated = cs.clone();
        rotated.rotate_left(order.index(cs.len()));
        rotated.reverse();
        prop_assert_eq!(select(REPLAY_DOMAIN, &network_id, slot, start_ms, &rotated), got);

        let mut duplicated = cs.clone();
        duplicated.extend(extra.iter().map(|i| cs[i.index(cs.len())]));
        prop_assert_eq!(select(REPLAY_DOMAIN, &network_id, slot, start_ms, &duplicated), got);
        prop_assert_eq!(select(REPLAY_DOMAIN, &network_id, slot, start_ms, &distinct), got);
    }

    /// Any shuffle of the candidates gives the same selection.
    #[test]
    fn select_ignores_any_shuffle(
        (cs, shuffled) in candidates().prop_flat_map(|cs| (Just(cs.clone()), Just(cs).prop_shuffle())),
        network_id in hash(),
        slot in any::<u64>(),
        start_ms in any::<u64>(),
    ) {
        prop_assert_eq!(
            select(REPLAY_DOMAIN, &network_id, slot, start_ms, &shuffled),
            select(REPLAY_DOMAIN, &network_id, slot, start_ms, &cs)
        );
    }
}

#[test]
fn no_candidate_selects_nothing() {
    assert_eq!(select(REPLAY_DOMAIN, &Hash32::ZERO, 0, 0, &[]), None);
}
