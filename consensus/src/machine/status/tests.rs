use std::collections::BTreeSet;

use super::super::test_builder::{TestBuilder, TestNet, library_of};
use super::*;
use crate::envelope::Envelope;
use crate::message::Played;

/// The state changes node `observer` logged for node `subject`.
fn changes_seen(net: &TestNet, observer: usize, subject: usize) -> Vec<(PeerState, PeerState)> {
    let peer = net.peer(subject);
    net.events_of(observer)
        .filter_map(|a| match a {
            Action::PeerChanged(c) if c.peer == peer => Some((c.from, c.to)),
            _ => None,
        })
        .collect()
}

/// Node `i`'s own Status messages, in order.
fn statuses_of(net: &TestNet, i: usize) -> Vec<Status> {
    net.published
        .iter()
        .filter(|(n, _)| *n == i)
        .filter_map(|(_, e)| {
            let verified = e.clone().open(net.nodes[i].chain().network_id()).ok()?;
            match verified.message {
                crate::message::Message::Status(s) => Some(s),
                _ => None,
            }
        })
        .collect()
}

/// A 3-node net run until slot 6 is final, whose slots 6 and 7 have different winners. Which
/// runs are like that depends on the network id (who wins) and on the size of the winner's
/// library (which of its tracks it proposes): nodes 0 and 1 get libraries of 3 + `variant`
/// tracks (variant 0: the usual ones) until one is.
fn net_with_other_winners_in_6_and_7() -> TestNet {
    let build = |variant: usize| {
        let mut builder = TestBuilder::new(3);
        for i in (0..2).filter(|_| variant > 0) {
            let tracks = (0..3 + variant as u64)
                .map(|j| {
                    crate::track::tests::track(
                        &format!("variant {variant} node {i} track {j}"),
                        90_000 + 10_000 * j,
                    )
                })
                .collect();
            builder = builder.library(i, tracks);
        }
        builder.build()
    };
    let variant = (0..8)
        .find(|variant| {
            let mut net = build(*variant);
            net.run_until_len(8);
            let chain = net.nodes[2].chain();
            chain.winner(6).map(|t| t.track_hash) != chain.winner(7).map(|t| t.track_hash)
        })
        .expect("a run with other winners in slots 6 and 7");
    let mut net = build(variant);
    net.run_until_len(7);
    net
}

#[test]
fn a_node_blacklisting_the_winner_diverges_for_that_slot_only() {
    use PeerState::*;
    let mut net = net_with_other_winners_in_6_and_7();
    let chain = net.nodes[2].chain().clone();
    let winner = chain.winner(6).expect("slot 6 is final").track_hash;
    let start6 = chain.start(6).expect("known");
    let start7 = chain.start(7).expect("known");
    assert!(net.now < start6);
    net.nodes[2].set_blacklist(BTreeSet::from([winner]));
    net.run_until(start7 + 10_000);

    // The driver was told to play a substitute from node 2's own library, for slot 6 only.
    let substitutes: Vec<(u64, Option<Hash32>)> = net
        .events_of(2)
        .filter_map(|a| match a {
            Action::PlaySubstitute { slot, track } => {
                Some((*slot, track.as_ref().map(|t| t.track_hash)))
            }
            _ => None,
        })
        .collect();
    assert_eq!(substitutes.len(), 1, "{substitutes:?}");
    assert_eq!(substitutes[0].0, 6);
    let substitute = substitutes[0].1.expect("node 2 has a library");
    assert!(library_of(2).iter().any(|t| t.track_hash == substitute));
    assert!(net.nodes[2].diverged_in(6));
    assert!(!net.nodes[2].diverged_in(7));

    // Its Status said so at once: diverged playing the substitute at start(6), back at start(7).
    let flips: Vec<(u64, bool)> = statuses_of(&net, 2)
        .windows(2)
        .filter(|w| w[0].diverged != w[1].diverged)
        .map(|w| (w[1].sent_ms, w[1].diverged))
        .collect();
    assert_eq!(flips, [(start6, true), (start7, false)]);
    let during = statuses_of(&net, 2)
        .into_iter()
        .find(|s| s.diverged)
        .expect("a diverged Status");
    let playing = during.playing.expect("playing the substitute");
    assert_eq!((playing.slot, playing.track_hash), (6, substitute));
    assert_eq!(during.consensus_track, Some(winner));

    // The others saw it diverged, then in sync.
    for observer in [0, 1] {
        assert_eq!(
            changes_seen(&net, observer, 2),
            [(Unknown, InSync), (InSync, Diverged), (Diverged, InSync)]
        );
        let info = net.nodes[observer]
            .peers()
            .get(&net.peer(2))
            .expect("known");
        assert_eq!(info.state, InSync);
    }
    assert!(net.violations.is_empty(), "{:?}", net.violations);
}

#[test]
fn three_consecutive_divergences_exclude_then_the_node_rejoins() {
    use PeerState::*;
    let mut net = TestBuilder::new(3).build();
    net.run_until_len(7);
    // Something that is no winner: "told to play something else".
    let other = Hash32::digest(b"the operator's jingle");
    for j in 6..=8 {
        net.nodes[2].report_played(j, Some(other));
    }
    net.run_until_len(11);
    let chain = net.nodes[0].chain().clone();
    let start = |k: u64| chain.start(k).expect("known");
    // No flip at start(8) (diverged in 7 and 8): the periodic Status, within 5 s, tells.
    net.run_until(start(8) + 6_000);
    let summary = net.nodes[0].status_summary(net.now);
    assert_eq!(summary.slot, Some(8));
    assert_eq!((summary.in_sync, summary.total), (2, 3));
    assert_eq!(summary.excluded, vec![net.peer(2)]);
    assert_eq!(
        summary.to_string(),
        format!(
            "status slot=8 in_sync=2/3 diverged=[] excluded=[{}]",
            net.peer(2)
        )
    );
    net.run_until(start(10) + 6_000);
    for observer in [0, 1] {
        assert_eq!(
            changes_seen(&net, observer, 2),
            [
                (Unknown, InSync),
                (InSync, Diverged),
                (Diverged, Excluded),
                (Excluded, InSync)
            ]
        );
    }
    let reasons: Vec<&str> = net
        .events_of(0)
        .filter_map(|a| match a {
            Action::PeerChanged(c) if c.peer == net.peer(2) => Some(c.reason.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(reasons[2], "diverged 3 slots");
    assert_eq!(reasons[3], "rejoined");
    // Still excluded in slot 9 (it may not propose then); back in slot 10.
    let rejoined_at = net
        .events
        .iter()
        .find(|(n, _, a)| {
            *n == 0 && matches!(a, Action::PeerChanged(c) if c.to == InSync && c.from == Excluded)
        })
        .map(|(_, t, _)| *t)
        .expect("rejoined");
    assert!(rejoined_at >= start(10), "{rejoined_at} < {}", start(10));
    assert_eq!(
        net.nodes[0].status_summary(net.now).to_string(),
        "status slot=10 in_sync=3/3 diverged=[] excluded=[]"
    );
}

#[test]
fn status_is_periodic_and_reports_head_and_queue() {
    let mut net = TestBuilder::new(3).build();
    net.run_until_len(8);
    let statuses = statuses_of(&net, 0);
    // Every 5 s (three nodes: 250 ms * 2 peers is less than status_interval_ms).
    assert_eq!(net.nodes[0].status_period(), 5_000);
    let gaps: BTreeSet<u64> = statuses
        .windows(2)
        .map(|w| w[1].sent_ms - w[0].sent_ms)
        .collect();
    assert_eq!(
        gaps,
        BTreeSet::from([5_000]),
        "no divergence: only the timer"
    );
    let last = net.nodes[0].status(net.now);
    let chain = net.nodes[0].chain();
    assert_eq!(last.head, chain.head());
    let playing = last.playing.expect("playing");
    assert_eq!(Some(playing.slot), chain.slot_at(net.now));
    assert_eq!(
        last.queue,
        (playing.slot + 1..chain.len())
            .map(|j| chain.winner(j).expect("known").track_hash)
            .collect::<Vec<_>>()
    );
    assert!(!last.diverged);
    assert!(last.version.starts_with("chorus/"));
    // Every node heard the two others.
    for node in &net.nodes {
        assert_eq!(node.peers().heard(), 2);
    }
}

#[test]
fn a_winner_blacklisted_with_no_library_plays_silence() {
    let mut net = TestBuilder::new(2).library(1, vec![]).build();
    net.run_until_len(7);
    let winner = net.nodes[1].chain().winner(6).expect("final").track_hash;
    net.nodes[1].set_blacklist(BTreeSet::from([winner]));
    net.nodes[1].handle_timeout(net.now);
    let mut actions = Vec::new();
    while let Some(a) = net.nodes[1].poll_action() {
        actions.push(a);
    }
    assert!(actions.contains(&Action::PlaySubstitute {
        slot: 6,
        track: None
    }));
    let start6 = net.nodes[1].chain().start(6).expect("known");
    let status = net.nodes[1].status(start6 + 1);
    assert!(status.diverged);
    assert_eq!(status.playing, None);
    assert_eq!(status.consensus_track, Some(winner));
    let _ = Envelope::seal(&status, &crate::testing::keypair(11)).expect("a valid body");
}

/// Node `i`'s published proposals, in order.
fn proposals_of(net: &TestNet, i: usize) -> Vec<crate::message::Proposal> {
    net.published
        .iter()
        .filter(|(n, _)| *n == i)
        .filter_map(|(_, e)| {
            let verified = e.clone().open(net.nodes[i].chain().network_id()).ok()?;
            match verified.message {
                crate::message::Message::Proposal(p) => Some(p),
                _ => None,
            }
        })
        .collect()
}

/// Runs three nodes to which the winners of slots 6 and 11 (the capture attack's rhythm) are
/// `report`ed by every node just before they play; returns the network at slot 17.
fn withheld_winners(report: impl Fn(&mut Consensus, u64)) -> TestNet {
    let mut net = TestBuilder::new(3).build();
    for j in [6, 11] {
        net.run_until_len(j + 1);
        let start = net.nodes[0].chain().start(j).expect("final");
        net.run_until(start - 1);
        for node in &mut net.nodes {
            report(node, j);
        }
    }
    net.run_until_len(17);
    net
}

/// PROTOCOL.md 12.2: a winner nobody could fetch (reported `unavailable` by every node) shows
/// every node diverged for that slot, but their proposals five slots later carry the mark, are
/// eligible and keep winning; version 1's report (null) makes every node ineligible there and
/// the slot a replay.
#[test]
fn a_winner_unavailable_to_every_node_costs_no_eligibility() {
    let net = withheld_winners(|node, j| node.report_unavailable(j));
    for j in [6, 11] {
        net.assert_agree(j + 5);
        let decided = net.nodes[0].chain().decided(j + 5).expect("final").clone();
        assert!(
            decided.proposal_id.is_some(),
            "slot {} won by a proposal, not a replay",
            j + 5
        );
    }
    for k in 5..17 {
        let decided = net.nodes[0].chain().decided(k).expect("final");
        assert!(decided.proposal_id.is_some(), "slot {k} is no replay");
    }
    for i in 0..3 {
        assert_eq!(net.nodes[i].played_in(6), Some(Played::Unavailable));
        assert!(net.nodes[i].diverged_in(6), "diverged for display");
        assert!(!net.nodes[i].diverged_in(7));
        // Whoever proposed for 11 or 16 said so in its plays, and was heard.
        for p in proposals_of(&net, i)
            .iter()
            .filter(|p| [11, 16].contains(&p.slot))
        {
            let last = *p.plays.last().expect("k-5");
            assert_eq!(last, (p.slot - 5, Some(Played::Unavailable)));
        }
    }
    let proposed: usize = (0..3)
        .map(|i| {
            proposals_of(&net, i)
                .iter()
                .filter(|p| p.slot == 11)
                .count()
        })
        .sum();
    assert!(proposed > 0);
    // The others saw each node diverged in slot 6 (it played nothing), then in sync.
    let start6 = net.nodes[0].chain().start(6).expect("known");
    let status = net.nodes[1].status(start6 + 1);
    assert!(status.diverged);
    assert_eq!(status.playing, None);
    let seen: Vec<(PeerState, PeerState)> = changes_seen(&net, 0, 1);
    assert!(
        seen.contains(&(PeerState::InSync, PeerState::Diverged)),
        "{seen:?}"
    );
    assert_eq!(
        net.nodes[0].status_summary(net.now).to_string(),
        format!(
            "status slot={} in_sync=3/3 diverged=[] excluded=[]",
            net.nodes[0].chain().slot_at(net.now).expect("playing")
        )
    );
    assert!(net.violations.is_empty(), "{:?}", net.violations);

    // Version 1: null for the winner not fetched.
    let v1 = withheld_winners(|node, j| node.report_played(j, None));
    for j in [6, 11] {
        v1.assert_agree(j + 5);
        let decided = v1.nodes[0].chain().decided(j + 5).expect("final");
        assert_eq!(decided.proposal_id, None, "slot {}: nobody eligible", j + 5);
    }
}
