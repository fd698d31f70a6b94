use std::sync::Arc;

use super::*;
use crate::message::{Head, Playing};
use crate::testing::peer;

const EXCLUSION_MS: u64 = 600_000;

fn status(seed: u8, slot: Option<u64>, diverged: bool) -> Arc<Status> {
    Arc::new(Status {
        network_id: Hash32::ZERO,
        from: peer(seed),
        sent_ms: 0,
        playing: slot.map(|slot| Playing {
            slot,
            track_hash: Hash32::digest(&[seed]),
            position_ms: 0,
        }),
        consensus_track: None,
        diverged,
        head: Head {
            slot: slot.unwrap_or(4),
            chain_hash: Hash32::digest(b"head"),
        },
        queue: vec![],
        version: "test".to_owned(),
    })
}

/// Feeds one Status per slot (`true`: diverged) and returns the states after each.
fn run(table: &mut PeerTable, first_slot: u64, diverged: &[bool]) -> Vec<PeerState> {
    diverged
        .iter()
        .zip(first_slot..)
        .map(|(d, slot)| {
            table.on_status(
                slot * 1000,
                Some(slot),
                &status(1, Some(slot), *d),
                EXCLUSION_MS,
            );
            table.get(&peer(1)).expect("known").state
        })
        .collect()
}

#[test]
fn three_consecutive_divergences_exclude_until_eligible_again() {
    use PeerState::*;
    let mut table = PeerTable::default();
    let states = run(
        &mut table,
        5,
        &[false, true, true, true, false, false, true, false],
    );
    // Slot 8 completes three diverged slots; slot 9 is in sync but still banned (6..8 all
    // diverged, as eligibility says); slot 10 rejoins.
    assert_eq!(
        states,
        [
            InSync, Diverged, Diverged, Excluded, Excluded, InSync, Diverged, InSync
        ]
    );
}

#[test]
fn changes_carry_reasons_for_the_log() {
    let mut table = PeerTable::default();
    let reasons: Vec<String> = [false, true, true, true, false, false]
        .iter()
        .zip(5u64..)
        .filter_map(|(d, slot)| {
            table.on_status(
                slot * 1000,
                Some(slot),
                &status(1, Some(slot), *d),
                EXCLUSION_MS,
            )
        })
        .map(|c| format!("{} -> {}: {}", c.from, c.to, c.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            "unknown -> in sync: in sync in slot 5",
            "in sync -> diverged: diverged in slot 6",
            "diverged -> excluded: diverged 3 slots",
            "excluded -> in sync: rejoined",
        ]
    );
}

#[test]
fn continuous_divergence_excludes_by_time_between_statuses() {
    let mut table = PeerTable::default();
    // A peer that plays nothing reports no slot: only time can exclude it.
    let change = table.on_status(1_000, None, &status(1, None, true), EXCLUSION_MS);
    assert_eq!(change.map(|c| c.to), Some(PeerState::Diverged));
    assert_eq!(table.next_deadline(EXCLUSION_MS), Some(601_000));
    assert!(table.on_time(600_999, EXCLUSION_MS).is_empty());
    let changes = table.on_time(601_000, EXCLUSION_MS);
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].to, PeerState::Excluded);
    assert_eq!(changes[0].reason, "diverged for 600 s");
    assert_eq!(table.next_deadline(EXCLUSION_MS), None);
    // A later diverged Status keeps it excluded; an in-sync one brings it back.
    assert!(
        table
            .on_status(602_000, None, &status(1, None, true), EXCLUSION_MS)
            .is_none()
    );
    let back = table
        .on_status(603_000, None, &status(1, None, false), EXCLUSION_MS)
        .expect("a change");
    assert_eq!(
        (back.to, back.reason.as_str()),
        (PeerState::InSync, "rejoined")
    );
}

#[test]
fn violations_heads_and_bounds() {
    let mut table = PeerTable::default();
    table.violation(peer(2));
    table.violation(peer(2));
    let info = table.get(&peer(2)).expect("known from its violations");
    assert_eq!((info.state, info.violations), (PeerState::Unknown, 2));
    assert_eq!(table.heard(), 0);
    for slot in 0..(HEADS_KEPT as u64 + 5) {
        table.on_status(
            slot,
            Some(slot),
            &status(1, Some(slot), false),
            EXCLUSION_MS,
        );
    }
    let info = table.get(&peer(1)).expect("known");
    assert_eq!(info.heads.len(), HEADS_KEPT);
    assert_eq!(info.head_slot(), Some(HEADS_KEPT as u64 + 4));
    assert_eq!(info.slots.len(), SLOTS_KEPT);
    assert_eq!(table.heard(), 1);
    assert_eq!(table.heard_since(HEADS_KEPT as u64 + 4).count(), 1);
    assert_eq!(table.heard_since(HEADS_KEPT as u64 + 5).count(), 0);
}

/// The deadline index always agrees with a scan of the whole table, whatever the sequence of
/// Status messages and timer runs.
#[test]
fn the_deadline_index_matches_a_full_scan() {
    let scan = |t: &PeerTable| {
        t.iter()
            .filter(|(_, p)| p.state == PeerState::Diverged)
            .filter_map(|(_, p)| p.diverged_since_ms)
            .map(|since| since + EXCLUSION_MS)
            .min()
    };
    let mut table = PeerTable::default();
    let mut x: u64 = 12345;
    let mut now = 0;
    let mut excluded_by_time = 0;
    for step in 0..2_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        now += x % 50_000;
        let seed = (x >> 20) as u8 % 12;
        if step % 7 == 0 {
            let before = scan(&table);
            let changes = table.on_time(now, EXCLUSION_MS);
            assert!(changes.iter().all(|c| c.to == PeerState::Excluded));
            assert_eq!(before.is_some_and(|d| d <= now), !changes.is_empty());
            excluded_by_time += changes.len();
        } else {
            let slot = (x >> 30).is_multiple_of(3).then_some(step);
            table.on_status(
                now,
                slot,
                &status(seed, slot, (x >> 40).is_multiple_of(3)),
                EXCLUSION_MS,
            );
        }
        assert_eq!(
            table.next_deadline(EXCLUSION_MS),
            scan(&table),
            "step {step}"
        );
    }
    assert!(
        excluded_by_time > 0,
        "the sequence must exercise exclusion by time"
    );
}

/// Past `PEERS_MAX` peers the one heard from least recently goes; every other row stays
/// reachable and the table's order stays by key, then PeerId, whatever moved in storage.
#[test]
fn a_full_table_drops_the_peer_heard_least_recently() {
    let peers: Vec<PeerId> = (0..PEERS_MAX as u64 + 20).map(peer_n).collect();
    let mut table = PeerTable::default();
    for (t, p) in peers.iter().enumerate() {
        let mut s = (*status(1, Some(5), false)).clone();
        s.from = *p;
        table.on_status(t as u64, Some(5), &Arc::new(s), EXCLUSION_MS);
    }
    assert_eq!(table.len(), PEERS_MAX);
    assert_eq!(table.heard(), PEERS_MAX);
    assert!(peers[..20].iter().all(|p| table.get(p).is_none()));
    assert!(peers[20..].iter().all(|p| table.get(p).is_some()));
    let order: Vec<(u64, PeerId)> = table.iter().map(|(p, _)| (prefix(p), *p)).collect();
    assert_eq!(order.len(), PEERS_MAX);
    assert!(order.windows(2).all(|w| w[0] < w[1]), "by key, then PeerId");
}

/// A Status of `from` reporting `head`.
fn status_with_head(from: PeerId, sent_ms: u64, head: Head) -> Arc<Status> {
    let mut s = (*status(1, None, false)).clone();
    s.from = from;
    s.sent_ms = sent_ms;
    s.head = head;
    Arc::new(s)
}

/// A peer of its own for each `n` (more than `peer` gives).
fn peer_n(n: u64) -> PeerId {
    let mut secret = [7u8; 32];
    secret[..8].copy_from_slice(&n.to_be_bytes());
    libp2p_identity::Keypair::ed25519_from_bytes(secret)
        .expect("32 bytes")
        .public()
        .to_peer_id()
}

/// The chain of the test genesis with one slot decided per name (the winner's name).
fn chain_of(names: &[&str]) -> Chain {
    let mut chain = crate::testing::open_chain();
    for name in names {
        chain.push(crate::chain::Outcome {
            track: crate::track::tests::track(name, 60_000),
            proposal: None,
            envelope: None,
            equivocators: vec![],
        });
    }
    chain
}

/// Fork evaluation may be skipped only while every kept head agrees with the own chain: a
/// head on another chain, a head the own chain has not reached, and a change of the own
/// chain other than growth each make a fork possible again, until the heads agree once more.
#[test]
fn forks_are_possible_until_every_kept_head_agrees_with_the_own_chain() {
    let mut table = PeerTable::default();
    let mut chain = chain_of(&["a", "b"]);
    let mut now = 0;
    let mut feed = |table: &mut PeerTable, chain: &Chain, seed: u8, head: Head| {
        now += 1000;
        table.follow_chain(chain);
        let from = peer(seed);
        table.on_status(now, None, &status_with_head(from, now, head), EXCLUSION_MS);
    };
    // Nothing compared yet: possible until audited, then not.
    for seed in 1..=3 {
        feed(&mut table, &chain, seed, chain.head());
    }
    assert!(!table.forks_possible(&chain), "three peers on the own head");
    assert!(!table.forks_possible(&chain), "and again");

    // Peer 2 reports a head of another chain at slot 6.
    let other = chain_of(&["a", "x"]);
    feed(&mut table, &chain, 2, other.head());
    assert!(table.forks_possible(&chain), "a head differs");
    // Its next Status reports the own head at slot 6 again: the differing head is replaced.
    feed(&mut table, &chain, 2, chain.head());
    assert!(!table.forks_possible(&chain), "replaced at the same slot");

    // Peer 3 is a slot ahead: not comparable until the own chain grows.
    let ahead = chain_of(&["a", "b", "c"]);
    feed(&mut table, &chain, 3, ahead.head());
    assert!(table.forks_possible(&chain), "a head beyond the own chain");
    chain = ahead.clone();
    assert!(
        !table.forks_possible(&chain),
        "the own chain reached it, equal"
    );

    // The own chain is replaced by one of the same length: every head at slots 6 and 7 now
    // differs, those at 4 and 5 still agree.
    chain = chain_of(&["a", "y", "z"]);
    assert!(table.forks_possible(&chain), "own chain replaced");
    // Peers 1..3 move to the new chain at slot 7: their old heads at 6 and 7 are replaced or
    // still kept at 6 (peer 2 and 3 reported slot 6 of the old chain).
    for seed in 1..=3 {
        feed(&mut table, &chain, seed, chain.head());
    }
    assert!(table.forks_possible(&chain), "old heads at slot 6 are kept");
    for seed in 1..=3 {
        let six = Head {
            slot: 6,
            chain_hash: chain.chain_hash(6).expect("decided"),
        };
        feed(&mut table, &chain, seed, six);
    }
    assert!(
        !table.forks_possible(&chain),
        "every kept head on the new chain"
    );

    // Rows dropped from the table take their checks with them: a full table of peers on the
    // other chain, then as many again on the own chain push them all out.
    let stranger = chain_of(&["q", "r", "s"]);
    for (first, head) in [(1000, stranger.head()), (5000, chain.head())] {
        for n in first..first + PEERS_MAX as u64 {
            let s = status_with_head(peer_n(n), 0, head);
            table.on_status(1000 * n, None, &s, EXCLUSION_MS);
        }
        let strangers = head == stranger.head();
        assert_eq!(
            table.forks_possible(&chain),
            strangers,
            "strangers: {strangers}"
        );
    }
    assert_eq!(table.len(), PEERS_MAX);
}
