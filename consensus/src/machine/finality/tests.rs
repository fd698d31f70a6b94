use std::collections::BTreeSet;

use libp2p_identity::Keypair;

use super::super::slot::DECISIONS_PER_SLOT;
use super::super::test_builder::TestBuilder;
use super::*;
use crate::envelope::{Envelope, Validation};
use crate::testing::keypair;

fn decision(
    chain: &crate::chain::Chain,
    key: &Keypair,
    proposal: Option<(Hash32, u64)>,
) -> Decision {
    Decision {
        network_id: *chain.network_id(),
        slot: 5,
        from: key.public().to_peer_id(),
        winner: Hash32::digest(b"somebody's track"),
        proposal_id: proposal.map(|(id, _)| id),
        ticket: proposal.map(|(_, t)| t),
        equivocators: vec![],
        rules_hash: *chain.rules_hash(),
    }
}

#[test]
fn conflicting_decisions_are_reported_at_finality() {
    let mut net = TestBuilder::new(2).build();
    let chain = net.nodes[0].chain().clone();
    let (ghost, replayer) = (keypair(60), keypair(61));
    let unknown = Hash32::digest(b"a proposal nobody can serve");
    for d in [
        decision(&chain, &ghost, Some((unknown, 0))),
        decision(&chain, &replayer, None),
    ] {
        let envelope = Envelope::seal(&d, if d.is_replay() { &replayer } else { &ghost })
            .expect("signs its own");
        let source = net.peer(1);
        let now = net.now;
        assert_eq!(
            net.nodes[0].handle_message(now, source, envelope),
            Validation::Accept
        );
    }
    net.run_until_len(6);
    let reports: Vec<FinalReport> = net
        .events_of(0)
        .filter_map(|a| match a {
            Action::Final(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(reports.len(), 1);
    let report = &reports[0];
    let decided = net.nodes[0].chain().decided(5).expect("final");
    assert_eq!(report.slot, 5);
    assert_eq!(report.winner, decided.track.track_hash);
    assert_eq!(report.proposal_id, decided.proposal_id);
    assert_eq!(
        report.decisions, 4,
        "its own, node 1's and the two injected"
    );
    let conflicts: BTreeSet<(PeerId, ConflictReason)> = report
        .conflicts
        .iter()
        .map(|c| (c.from, c.reason))
        .collect();
    assert_eq!(
        conflicts,
        BTreeSet::from([
            (ghost.public().to_peer_id(), ConflictReason::ProposalMissing),
            (replayer.public().to_peer_id(), ConflictReason::Replay),
        ])
    );
    // Node 1 saw no conflict; both chains agree.
    let other = net
        .events_of(1)
        .find_map(|a| match a {
            Action::Final(r) => Some(r.clone()),
            _ => None,
        })
        .expect("node 1 finalized");
    assert_eq!((other.decisions, other.conflicts.len()), (2, 0));
    assert_eq!(net.hashes_at(5)[0], net.hashes_at(5)[1]);

    // The unanswered request to the ghost was sent again after each timeout, then given up.
    let asked: Vec<u64> = net
        .events
        .iter()
        .filter(|(n, _, a)| {
            *n == 0
                && matches!(a, Action::FetchProposals { peer, ids, .. }
                    if *peer == ghost.public().to_peer_id() && ids == &vec![unknown])
        })
        .map(|(_, t, _)| *t)
        .collect();
    assert_eq!(asked.len(), crate::machine::FETCH_TRIES_MAX as usize);
    assert!(
        asked
            .windows(2)
            .all(|w| w[1] - w[0] == crate::machine::FETCH_TIMEOUT_MS)
    );
}

#[test]
fn decisions_per_slot_are_bounded() {
    let chain = crate::testing::chain_to(4);
    let mut state = SlotState::default();
    let key = |i: u16| {
        let mut secret = [7u8; 32];
        secret[..2].copy_from_slice(&i.to_be_bytes());
        Keypair::ed25519_from_bytes(secret).expect("32 bytes")
    };
    let count = DECISIONS_PER_SLOT as u16 + 10;
    for i in 0..count {
        let proposal = (i % 2 == 0).then(|| (Hash32::digest(&i.to_be_bytes()), u64::from(i)));
        state.add_decision(decision(&chain, &key(i), proposal));
    }
    assert_eq!(state.decisions.len(), DECISIONS_PER_SLOT);
    // The replays went first; every backed decision stayed.
    let backed = state.decisions.values().filter(|d| !d.is_replay()).count();
    assert_eq!(backed, usize::from(count.div_ceil(2)));
    // One decision per author: the first is kept.
    let first = state.decisions.values().next().expect("some").clone();
    let mut second = first.clone();
    second.winner = Hash32::digest(b"changed its mind");
    state.add_decision(second);
    assert_eq!(state.decisions.get(&first.from), Some(&first));
}
