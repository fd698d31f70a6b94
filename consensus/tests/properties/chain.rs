//! The chain (PROTOCOL.md 1 and 9): synced slots reproduce pushed ones, and the schedule of
//! decided slots never moves.

use chorus_consensus::chain::ChainError;
use chorus_consensus::{Chain, Envelope, Hash32, Outcome, Proposal, SlotContext, ticket};
use libp2p_identity::Keypair;
use proptest::prelude::*;

use crate::strategies::{config, duration, genesis_chain, hash, peer, track};

/// How one slot is decided: won by a proposal of `(key seed, track seed, duration)`, or a
/// replay; up to two equivocators.
#[derive(Debug, Clone)]
struct Step {
    won: Option<(u8, u64, u64)>,
    equivocators: Vec<[u8; 32]>,
}

/// Slots to append: mostly proposals of a few keys, some replays.
fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = (
        prop::option::weighted(0.75, (0u8..4, any::<u64>(), duration())),
        prop::collection::vec(any::<[u8; 32]>(), 0..3),
    )
        .prop_map(|(won, equivocators)| Step { won, equivocators });
    prop::collection::vec(step, 0..24)
}

/// The outcome of `step` as the next slot of `chain`: a proposal signed by its key, with its
/// real id and ticket, or the replay choice. A record of it passes `push_synced` (12.1).
fn outcome(chain: &Chain, step: &Step) -> Outcome {
    let slot = chain.len();
    let equivocators = step.equivocators.iter().copied().map(peer).collect();
    let Some((key, track_seed, duration_ms)) = step.won else {
        return Outcome {
            track: chain
                .replay_track()
                .expect("a genesis chain has candidates")
                .clone(),
            proposal: None,
            envelope: None,
            equivocators,
        };
    };
    let keypair = Keypair::ed25519_from_bytes([key + 1; 32]).expect("32 bytes");
    let from = keypair.public().to_peer_id();
    let proposal = Proposal {
        network_id: *chain.network_id(),
        slot,
        from,
        track: track(track_seed, duration_ms),
        library_hash: Hash32::ZERO,
        track_index: 0,
        plays: vec![],
        rules_hash: *chain.rules_hash(),
        created_ms: 0,
        reveal: None,
        enrolls: Vec::new(),
    };
    let envelope = Envelope::seal(&proposal, &keypair).expect("signs its own body");
    Outcome {
        track: proposal.track,
        proposal: Some((
            envelope.id(),
            ticket(&SlotContext::on_chain(chain, slot), &from),
        )),
        envelope: Some(envelope),
        equivocators,
    }
}

fn pushed(mut chain: Chain, steps: &[Step]) -> Chain {
    for step in steps {
        let outcome = outcome(&chain, step);
        chain.push(outcome);
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
    fn push_synced_rebuilds_pushed_slots(genesis in genesis_chain(), steps in steps()) {
        let chain = pushed(genesis.clone(), &steps);
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

    /// A synced slot whose contents do not match its chain hash, or whose TrackRef is not the
    /// one the winner signed (or an earlier winner's, for a replay), is refused, and nothing
    /// after it can be appended out of order.
    #[test]
    fn push_synced_refuses_tampered_slots(
        genesis in genesis_chain(),
        steps in steps().prop_filter("at least one slot", |o| !o.is_empty()),
        at in any::<prop::sample::Index>(),
        what in 0u8..5,
        other in hash(),
    ) {
        let chain = pushed(genesis.clone(), &steps);
        let slots = chain.decided_slots();
        let i = at.index(slots.len());
        let mut bad = slots[i].clone();
        match what {
            0 => bad.chain_hash = other,
            1 => bad.track.track_hash = other,
            2 => bad.proposal_id = match bad.proposal_id {
                Some(_) => None,
                None => Some(other),
            },
            3 => bad.track.duration_ms += 1_000,
            _ => bad.track.manifest_id = other,
        }
        prop_assume!(bad != slots[i]);
        let mut synced = genesis;
        for slot in &slots[..i] {
            prop_assert_eq!(synced.push_synced(slot.clone()), Ok(()));
        }
        let len = synced.len();
        let refused = synced.push_synced(bad);
        let expected = match what {
            0 | 1 => matches!(refused, Err(ChainError::HashMismatch { .. })),
            2 => matches!(refused, Err(ChainError::HalfReplay(_))),
            _ => matches!(
                refused,
                Err(ChainError::TrackMismatch { .. }
                    | ChainError::ReplayTrack { .. }
                    | ChainError::ReplayChoice { .. })
            ),
        };
        prop_assert!(expected, "{:?}", refused);
        prop_assert_eq!(refused.expect_err("refused").slot(), Some(slots[i].slot));
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
        steps in steps(),
        split in any::<prop::sample::Index>(),
    ) {
        let cut = split.index(steps.len() + 1);
        let before = pushed(genesis, &steps[..cut]);
        let after = pushed(before.clone(), &steps[cut..]);
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
        steps in steps(),
        split in any::<prop::sample::Index>(),
    ) {
        let chain = pushed(genesis, &steps);
        let cut = split.index(steps.len() + 1);
        let mut forked = chain.clone();
        forked.truncate(chain.lookahead() + cut as u64);
        prop_assert_eq!(forked.len(), chain.lookahead() + cut as u64);
        prop_assert_eq!(&starts(&forked)[..], &starts(&chain)[..=cut + 5]);
        let restored = pushed(forked, &steps[cut..]);
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
