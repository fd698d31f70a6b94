use super::*;
use crate::genesis::tests::{keypair, signed_genesis};
use crate::testing::{replay, won};
use crate::track::tests::track;

mod verify;

fn outcome(seed: &str, duration_ms: u64, proposal: Option<(Hash32, u64)>) -> Outcome {
    Outcome {
        track: track(seed, duration_ms),
        proposal,
        envelope: None,
        equivocators: vec![],
    }
}

#[test]
fn genesis_chain_has_l_slots_and_a_schedule() {
    let genesis = signed_genesis();
    let chain = Chain::new(&genesis).with_tickets(crate::chain::Tickets::Open);
    let start = genesis.genesis().start_ms;
    assert_eq!(chain.len(), 5);
    assert_eq!(chain.lookahead(), 5);
    assert_eq!(chain.start(0), Some(start));
    // The test genesis queue lasts 60 s, 61 s, ... 64 s.
    assert_eq!(chain.start(1), Some(start + 60_000));
    assert_eq!(
        chain.start(5),
        Some(start + 60_000 + 61_000 + 62_000 + 63_000 + 64_000)
    );
    assert_eq!(chain.start(6), None, "slot 5 is undecided");
    assert_eq!(chain.head().slot, 4);
    assert_eq!(
        chain.head().chain_hash,
        genesis_chain_hash(&genesis.network_id())
    );
    assert_eq!(chain.winner(0), Some(&genesis.genesis().queue[0]));
    assert_eq!(chain.winner(5), None);
    assert_eq!(chain.decided(4), None);
    assert_eq!(chain.chain_hash(3), None);
}

#[test]
fn push_hashes_and_extends_the_schedule() {
    let mut chain = crate::testing::open_chain();
    let g = chain.head().chain_hash;
    let pid = Hash32::digest(b"proposal");
    let first = chain.push(outcome("a", 100_000, Some((pid, 7)))).clone();
    assert_eq!(first.slot, 5);
    assert_eq!(
        first.chain_hash,
        next_chain_hash(&g, 5, &first.track.track_hash, Some(&pid))
    );
    let replay = chain.push(outcome("b", 50_000, None)).clone();
    assert_eq!(
        replay.chain_hash,
        next_chain_hash(&first.chain_hash, 6, &replay.track.track_hash, None)
    );
    assert_eq!(
        chain.start(6),
        Some(chain.start(5).expect("known") + 100_000)
    );
    assert_eq!(
        chain.start(7),
        Some(chain.start(6).expect("known") + 50_000)
    );
    assert_eq!(chain.head().slot, 6);
}

#[test]
fn gap_ms_is_added_between_tracks() {
    let genesis = signed_genesis();
    let rules = Rules {
        gap_ms: 500,
        ..Rules::default()
    };
    let g = genesis.genesis();
    let chain = Chain::from_parts(
        genesis.network_id(),
        rules,
        genesis.rules_hash(),
        g.start_ms,
        g.queue.clone(),
    );
    assert_eq!(chain.start(1), Some(g.start_ms + 60_000 + 500));
}

#[test]
fn slot_at_finds_the_playing_slot() {
    let chain = crate::testing::open_chain();
    let s0 = chain.start(0).expect("start(0)");
    assert_eq!(chain.slot_at(s0 - 1), None);
    assert_eq!(chain.slot_at(s0), Some(0));
    assert_eq!(chain.slot_at(s0 + 59_999), Some(0));
    assert_eq!(chain.slot_at(s0 + 60_000), Some(1));
    let s5 = chain.start(5).expect("start(5)");
    assert_eq!(chain.slot_at(s5 - 1), Some(4));
    assert_eq!(chain.slot_at(s5), None, "slot 5 has no known end");
}

#[test]
fn synced_slots_are_checked_and_forks_truncate() {
    let mut source = crate::testing::open_chain();
    let first = won(&source, track("a", 100_000), 3);
    source.push(first);
    let replay = Outcome {
        equivocators: vec![keypair(4).public().to_peer_id()],
        ..replay(&source)
    };
    source.push(replay);
    let mut copy = crate::testing::open_chain();
    for slot in source.decided_slots() {
        copy.push_synced(slot.clone()).expect("valid slot");
    }
    assert_eq!(copy, source);

    let mut bad = source.decided_slots()[0].clone();
    let mut fresh = crate::testing::open_chain();
    bad.chain_hash = Hash32::ZERO;
    assert!(matches!(
        fresh.push_synced(bad.clone()),
        Err(ChainError::HashMismatch { slot: 5, .. })
    ));
    bad.slot = 6;
    assert_eq!(
        fresh.push_synced(bad.clone()),
        Err(ChainError::NotNext {
            expected: 5,
            got: 6
        })
    );
    let mut half = source.decided_slots()[0].clone();
    half.ticket = None;
    assert_eq!(fresh.push_synced(half), Err(ChainError::HalfReplay(5)));

    copy.truncate(6);
    assert_eq!(copy.len(), 6);
    assert_eq!(copy.start(7), None);
    copy.truncate(0);
    assert_eq!(copy.len(), 5, "genesis slots stay");
    assert_eq!(copy, crate::testing::open_chain());
}

#[test]
fn decided_slots_round_trip_as_cbor() {
    let mut chain = crate::testing::open_chain();
    chain.push(Outcome {
        equivocators: vec![keypair(4).public().to_peer_id()],
        ..won(&crate::testing::open_chain(), track("a", 100_000), 3)
    });
    chain.push(replay(&chain));
    for slot in chain.decided_slots() {
        let back: DecidedSlot =
            crate::codec::from_cbor(&crate::codec::to_cbor(slot)).expect("round trip");
        assert_eq!(&back, slot);
    }
}

#[test]
fn decided_from_and_proposer_read_the_decided_slots() {
    let mut chain = crate::testing::chain_to(9);
    let author = crate::testing::peer(crate::testing::CHAIN_PROPOSER);
    let slots = |from| -> Vec<u64> { chain.decided_from(from).iter().map(|d| d.slot).collect() };
    assert_eq!(
        slots(0),
        (5..=9).collect::<Vec<_>>(),
        "genesis slots are skipped"
    );
    assert_eq!(slots(7), [7, 8, 9]);
    assert!(slots(10).is_empty() && slots(u64::MAX).is_empty());
    for slot in 5..=9 {
        let decided = chain.decided(slot).expect("decided");
        assert_eq!(decided.proposer(), Some(author), "slot {slot}");
        assert_eq!(chain.proposer(slot), Some(author), "slot {slot}");
    }
    assert_eq!(chain.proposer(4), None, "a genesis slot has no proposer");
    assert_eq!(chain.proposer(10), None, "nor an undecided one");
    chain.push(replay(&chain));
    assert_eq!(chain.proposer(10), None, "nor a replay");
    chain.push(won(&chain, track("by 7", 100_000), 7));
    assert_eq!(chain.proposer(11), Some(keypair(7).public().to_peer_id()));
}
