//! `Playback` on virtual time: a chain built in memory, times passed in, no sockets, no sleeps.

use chorus_consensus::chain::Outcome;
use chorus_consensus::{Chain, Hash32, Rules, TrackRef};
use chorus_media::player::PlayerEvent;

use super::{Missed, Output, Playback, Playing, SUBSTITUTE_FADE_MS};
use crate::fetch::FetchCommand;

/// Genesis slot 0 starts here; every track lasts 10 s (no gap), so slot k starts at
/// `START + 10_000 k`.
const START: u64 = 1_000_000;
const LEN: u64 = 10_000;

fn track(n: u8) -> TrackRef {
    TrackRef {
        track_hash: Hash32::digest(&[n, 1]),
        manifest_id: Hash32::digest(&[n, 2]),
        duration_ms: LEN,
        segment_count: 2,
        title: format!("track {n}"),
        artist: String::new(),
        album: String::new(),
        loudness_lufs: Some(-14.0),
    }
}

/// Genesis slots 0..5 play tracks 0..5; `decided` more slots play tracks 10, 11, ...
fn chain(decided: u8) -> Chain {
    let mut chain = Chain::from_parts(
        Hash32::digest(b"net"),
        Rules::default(),
        Hash32::digest(b"rules"),
        START,
        (0..5).map(track).collect(),
    );
    for n in 0..decided {
        chain.push(Outcome {
            track: track(10 + n),
            proposal: None,
            envelope: None,
            equivocators: Vec::new(),
        });
    }
    chain
}

fn at(slot: u64, ms: u64) -> u64 {
    START + slot * LEN + ms
}

fn drain(p: &mut Playback) -> Vec<Output> {
    std::iter::from_fn(|| p.poll_output()).collect()
}

fn started(out: &[Output]) -> Vec<(u64, Playing, bool)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Started(s) => Some((s.slot, s.playing.clone(), s.late)),
            _ => None,
        })
        .collect()
}

fn wants(out: &[Output]) -> Vec<u64> {
    out.iter()
        .filter_map(|o| match o {
            Output::Want(FetchCommand::Want { slot, .. }) => Some(*slot),
            _ => None,
        })
        .collect()
}

#[test]
fn a_held_winner_plays_at_its_slot_start_and_every_decided_slot_is_wanted_once() {
    let chain = chain(2);
    let mut p = Playback::new(&[track(0)]);
    p.handle_tick(at(0, 3), &chain);
    let out = drain(&mut p);
    assert!(out.contains(&Output::SlotStarted { slot: 0 }));
    assert_eq!(started(&out), vec![(0, Playing::Winner, false)]);
    assert_eq!(wants(&out), (0..7).collect::<Vec<_>>());
    let Some(Output::Schedule(plans)) = out.iter().find(|o| matches!(o, Output::Schedule(_)))
    else {
        panic!("no schedule in {out:?}");
    };
    assert_eq!(plans.len(), 7);
    assert_eq!(plans[0].start_ms, START);
    assert_eq!(plans[0].end_ms, START + LEN);
    assert_eq!(
        plans[0].audio.as_ref().map(|a| a.manifest_id),
        Some(track(0).manifest_id)
    );
    // Nothing changed: nothing to do.
    p.handle_tick(at(0, 500), &chain);
    assert_eq!(drain(&mut p), vec![]);
}

#[test]
fn a_winner_not_held_waits_and_starts_late_when_a_segment_is_held() {
    let chain = chain(0);
    let mut p = Playback::new(&[]);
    p.handle_tick(at(1, 0), &chain);
    let out = drain(&mut p);
    assert_eq!(started(&out), vec![(1, Playing::Waiting(at(1, 0)), false)]);
    p.handle_tick(at(1, 2_000), &chain);
    assert!(started(&drain(&mut p)).is_empty(), "still waiting");
    p.handle_held(track(1).track_hash, 1, 2);
    p.handle_tick(at(1, 2_500), &chain);
    let out = drain(&mut p);
    assert_eq!(started(&out), vec![(1, Playing::Winner, true)]);
    let Some(Output::Started(start)) = out.iter().find(|o| matches!(o, Output::Started(_))) else {
        unreachable!()
    };
    assert_eq!((start.position_ms, start.held), (2_500, 1));
    assert!(
        !out.iter().any(|o| matches!(o, Output::Played { .. })),
        "a winner played is no report"
    );
}

#[test]
fn no_segment_within_one_segment_is_a_divergence_reported_as_nothing_played() {
    let chain = chain(0);
    let mut p = Playback::new(&[]);
    p.handle_tick(at(2, 0), &chain);
    drain(&mut p);
    // `rules.segment_ms` is 6 s: at 6 s it still waits, after it diverges.
    p.handle_tick(at(2, 6_000), &chain);
    assert_eq!(drain(&mut p), vec![]);
    p.handle_tick(at(2, 6_001), &chain);
    let out = drain(&mut p);
    assert_eq!(
        out,
        vec![
            Output::Played {
                slot: 2,
                track: None
            },
            Output::Diverged {
                slot: 2,
                winner: track(2),
                why: Missed::NotFetched
            },
            Output::StandIn { slot: 2 }
        ]
    );
    // Once only.
    p.handle_tick(at(2, 9_000), &chain);
    assert_eq!(drain(&mut p), vec![]);
    // A segment arriving now does not resurrect the slot.
    p.handle_held(track(2).track_hash, 2, 2);
    p.handle_tick(at(2, 9_500), &chain);
    assert_eq!(drain(&mut p), vec![]);
}

#[test]
fn unavailable_is_reported_at_once_and_the_slot_diverges_without_losing_eligibility() {
    let chain = chain(0);
    let mut p = Playback::new(&[]);
    p.handle_tick(at(0, 0), &chain);
    drain(&mut p);
    p.handle_unavailable(&chain, track(3).track_hash, 3, 4, false);
    assert_eq!(drain(&mut p), vec![Output::Unavailable { slot: 3 }]);
    // Of a slot already over: nothing to report.
    p.handle_unavailable(&chain, track(0).track_hash, 0, 1, false);
    assert_eq!(
        drain(&mut p),
        vec![Output::Unavailable { slot: 0 }],
        "slot 0 is current"
    );
    // Not the winner of that slot: nothing.
    p.handle_unavailable(&chain, track(9).track_hash, 3, 1, false);
    assert_eq!(drain(&mut p), vec![]);
    // Known unavailable: the slot diverges as it starts, without waiting a segment.
    p.handle_tick(at(3, 0), &chain);
    let out = drain(&mut p);
    let out: Vec<Output> = out
        .into_iter()
        .filter(|o| {
            matches!(
                o,
                Output::Unavailable { .. } | Output::Diverged { .. } | Output::StandIn { .. }
            )
        })
        .collect();
    assert_eq!(
        out,
        vec![
            Output::Unavailable { slot: 3 },
            Output::Diverged {
                slot: 3,
                winner: track(3),
                why: Missed::Unavailable {
                    asked: 4,
                    refused: false
                }
            },
            Output::StandIn { slot: 3 }
        ]
    );
}

/// A winner that did not arrive is replaced by a track of the own library from the slot's
/// current position, faded out at the slot's end; consensus still hears only that nothing
/// (or `unavailable`) was played.
#[test]
fn a_stand_in_from_the_library_plays_in_place_of_a_winner_that_did_not_arrive() {
    let chain = chain(0);
    let mut p = Playback::new(&[track(7)]);
    p.handle_tick(at(2, 0), &chain);
    drain(&mut p);
    p.handle_tick(at(2, 6_001), &chain);
    let out = drain(&mut p);
    assert!(out.contains(&Output::StandIn { slot: 2 }), "{out:?}");
    p.handle_stand_in(at(2, 6_010), 2, Some(track(7)), &chain);
    let out = drain(&mut p);
    assert_eq!(started(&out), vec![(2, Playing::StandIn(track(7)), true)]);
    assert!(
        !out.iter().any(|o| matches!(o, Output::Played { .. })),
        "the stand-in is not reported to consensus: {out:?}"
    );
    assert_eq!(p.substitute_now(), Some(Some(track(7))));
    let Some(Output::Schedule(plans)) = out.iter().find(|o| matches!(o, Output::Schedule(_)))
    else {
        panic!("no schedule: {out:?}");
    };
    let audio = |slot: u64| {
        plans
            .iter()
            .find(|p| p.slot == slot)
            .and_then(|p| p.audio.as_ref())
            .map(|a| (a.manifest_id, a.fade_out_ms))
    };
    assert_eq!(audio(2), Some((track(7).manifest_id, SUBSTITUTE_FADE_MS)));
    assert_eq!(
        audio(3),
        Some((track(3).manifest_id, 0)),
        "the next winner as it is"
    );
    // Nothing to play (an empty library): silence goes on; an answer for a slot that did not
    // miss its winner changes nothing.
    let mut q = Playback::new(&[]);
    q.handle_tick(at(2, 6_001), &chain);
    drain(&mut q);
    q.handle_stand_in(at(2, 6_010), 2, None, &chain);
    assert_eq!(drain(&mut q), vec![]);
    let mut r = Playback::new(&[track(2)]);
    r.handle_tick(at(2, 0), &chain);
    drain(&mut r);
    r.handle_stand_in(at(2, 10), 2, Some(track(7)), &chain);
    assert_eq!(drain(&mut r), vec![]);
}

#[test]
fn an_unavailable_winner_that_arrives_after_all_is_reported_played() {
    let chain = chain(0);
    let mut p = Playback::new(&[]);
    p.handle_unavailable(&chain, track(1).track_hash, 1, 2, false);
    drain(&mut p);
    p.handle_held(track(1).track_hash, 2, 2);
    p.handle_tick(at(1, 10), &chain);
    let out = drain(&mut p);
    assert!(out.contains(&Output::Played {
        slot: 1,
        track: Some(track(1).track_hash)
    }));
    assert_eq!(started(&out), vec![(1, Playing::Winner, false)]);
    assert!(p.complete().contains(&track(1).track_hash));
}

#[test]
fn a_substitute_replaces_the_blacklisted_winner_in_the_schedule() {
    let chain = chain(0);
    let mut p = Playback::new(&[track(7)]);
    p.handle_substitute(2, Some(track(7)));
    p.handle_substitute(3, None);
    p.handle_tick(at(2, 0), &chain);
    let out = drain(&mut p);
    assert_eq!(
        started(&out),
        vec![(2, Playing::Substitute(Some(track(7))), false)]
    );
    assert_eq!(p.substitute_now(), Some(Some(track(7))));
    let Some(Output::Schedule(plans)) = out.iter().find(|o| matches!(o, Output::Schedule(_)))
    else {
        panic!("no schedule");
    };
    let audio = |slot: u64| {
        plans
            .iter()
            .find(|p| p.slot == slot)
            .map(|p| p.audio.as_ref().map(|a| a.manifest_id))
    };
    assert_eq!(
        audio(1),
        Some(Some(track(1).manifest_id)),
        "the slot before"
    );
    assert_eq!(audio(2), Some(Some(track(7).manifest_id)));
    assert_eq!(audio(3), Some(None), "silence");
    let fade = |slot: u64| {
        plans
            .iter()
            .find(|p| p.slot == slot)
            .and_then(|p| p.audio.as_ref())
            .map(|a| a.fade_out_ms)
    };
    assert_eq!(fade(2), Some(SUBSTITUTE_FADE_MS), "a substitute fades out");
    assert_eq!(fade(1), Some(0), "a winner plays as it is");
}

#[test]
fn an_adopted_chain_is_wanted_again_and_the_slot_restarts() {
    let chain = chain(2);
    let mut p = Playback::new(&[]);
    p.handle_held(track(4).track_hash, 2, 2);
    p.handle_tick(at(4, 0), &chain);
    assert_eq!(wants(&drain(&mut p)), vec![4, 5, 6]);
    p.handle_adopted(5);
    p.handle_tick(at(4, 100), &chain);
    let out = drain(&mut p);
    assert_eq!(wants(&out), vec![5, 6]);
    assert_eq!(started(&out), vec![(4, Playing::Winner, false)]);
}

#[test]
fn the_player_resolves_a_waiting_slot_and_reports_missing_segments() {
    let chain = chain(0);
    let mut p = Playback::new(&[]);
    p.handle_tick(at(1, 0), &chain);
    drain(&mut p);
    p.handle_player(
        at(1, 40),
        &chain,
        PlayerEvent::Sounded { slot: 1, sample: 0 },
    );
    assert_eq!(started(&drain(&mut p)), vec![(1, Playing::Winner, true)]);
    // A sound of another slot changes nothing.
    p.handle_player(
        at(1, 50),
        &chain,
        PlayerEvent::Sounded { slot: 2, sample: 0 },
    );
    assert_eq!(drain(&mut p), vec![]);
    for segment in [1, 1, 0] {
        p.handle_player(
            at(1, 60),
            &chain,
            PlayerEvent::SegmentMissing { slot: 1, segment },
        );
    }
    assert_eq!(p.missed(1), 2);
    assert_eq!(p.missed(2), 0);
}

#[test]
fn eviction_forgets_held_tracks() {
    let chain = chain(0);
    let mut p = Playback::new(&[]);
    p.handle_held(track(2).track_hash, 2, 2);
    assert!(p.complete().contains(&track(2).track_hash));
    p.handle_evicted(&[track(2).track_hash]);
    assert!(!p.complete().contains(&track(2).track_hash));
    p.handle_tick(at(2, 0), &chain);
    assert_eq!(
        started(&drain(&mut p)),
        vec![(2, Playing::Waiting(at(2, 0)), false)]
    );
}

#[test]
fn the_next_timeout_is_the_next_slot_or_the_divergence_of_a_waiting_one() {
    let chain = chain(0);
    let mut p = Playback::new(&[track(1)]);
    assert_eq!(p.poll_timeout(START - 5, &chain), Some(START));
    p.handle_tick(at(1, 0), &chain);
    assert_eq!(p.poll_timeout(at(1, 0), &chain), Some(at(2, 0)));
    p.handle_tick(at(2, 0), &chain);
    assert_eq!(
        p.poll_timeout(at(2, 0), &chain),
        Some(at(2, 6_001)),
        "slot 2 waits for its segments"
    );
}

/// A proposer (the hint of a likely winner).
fn proposer(n: u8) -> libp2p::PeerId {
    libp2p::identity::Keypair::ed25519_from_bytes([n; 32])
        .expect("any 32 bytes are an ed25519 secret")
        .public()
        .to_peer_id()
}

/// The tracks the exchange is told to forget.
fn forgets(out: &[Output]) -> Vec<Hash32> {
    out.iter()
        .filter_map(|o| match o {
            Output::Want(FetchCommand::Forget { track }) => Some(*track),
            _ => None,
        })
        .collect()
}

/// The overturned leanings: (slot, leaning, winner, forgotten).
fn dropped(out: &[Output]) -> Vec<(u64, Hash32, Hash32, bool)> {
    out.iter()
        .filter_map(|o| match o {
            Output::PrefetchDropped {
                slot,
                leaning,
                winner,
                forgotten,
            } => Some((*slot, leaning.track_hash, winner.track_hash, *forgotten)),
            _ => None,
        })
        .collect()
}

/// A machine in slot 1 of `chain(0)` (slots 0 to 4 final), its outputs drained.
fn in_slot_1() -> Playback {
    let mut p = Playback::new(&[]);
    p.handle_tick(at(1, 0), &chain(0));
    drain(&mut p);
    p
}

#[test]
fn a_leaning_is_wanted_at_once_with_its_proposer_as_hint_and_once_only() {
    let undecided = chain(0);
    let mut p = in_slot_1();
    p.handle_leaning(&undecided, 5, track(20), proposer(1), at(5, 0));
    assert_eq!(
        drain(&mut p),
        vec![
            Output::Prefetch {
                slot: 5,
                track: track(20)
            },
            Output::Want(FetchCommand::Want {
                slot: 5,
                track: track(20),
                start_ms: at(5, 0),
                segment_ms: Rules::default().segment_ms,
                hint: Some(proposer(1)),
            }),
        ]
    );
    // Once per slot.
    p.handle_leaning(&undecided, 5, track(21), proposer(2), at(5, 0));
    assert_eq!(drain(&mut p), vec![]);
    // A slot already final is wanted by the chain, not by a leaning.
    p.handle_leaning(&undecided, 4, track(22), proposer(3), at(4, 0));
    assert_eq!(drain(&mut p), vec![]);
}

#[test]
fn the_same_winner_at_finality_wants_nothing_more() {
    let mut p = in_slot_1();
    p.handle_leaning(&chain(0), 5, track(10), proposer(1), at(5, 0));
    assert_eq!(wants(&drain(&mut p)), vec![5]);
    // Slot 5 is final with track 10 as slot 2 starts.
    let final5 = chain(1);
    p.handle_tick(at(2, 0), &final5);
    let out = drain(&mut p);
    assert!(out.contains(&Output::SlotStarted { slot: 2 }), "{out:?}");
    assert_eq!(wants(&out), Vec::<u64>::new(), "the fetch is under way");
    assert_eq!(forgets(&out), vec![]);
    assert_eq!(dropped(&out), vec![]);
    p.handle_tick(at(2, 100), &final5);
    assert_eq!(drain(&mut p), vec![]);
}

#[test]
fn a_leaning_reported_unavailable_before_finality_is_reported_for_its_slot_when_it_wins() {
    let mut p = in_slot_1();
    let undecided = chain(0);
    p.handle_leaning(&undecided, 5, track(10), proposer(1), at(5, 0));
    drain(&mut p);
    // Not final yet: nothing to tell consensus.
    p.handle_unavailable(&undecided, track(10).track_hash, 5, 3, false);
    assert_eq!(drain(&mut p), vec![]);
    p.handle_tick(at(2, 0), &chain(1));
    let out = drain(&mut p);
    assert!(out.contains(&Output::Unavailable { slot: 5 }), "{out:?}");
    assert_eq!(wants(&out), Vec::<u64>::new());
}

#[test]
fn another_winner_at_finality_is_wanted_and_the_leaning_forgotten() {
    let mut p = in_slot_1();
    p.handle_leaning(&chain(0), 5, track(20), proposer(1), at(5, 0));
    drain(&mut p);
    p.handle_tick(at(2, 0), &chain(1));
    let out = drain(&mut p);
    assert!(
        out.contains(&Output::Want(FetchCommand::Want {
            slot: 5,
            track: track(10),
            start_ms: at(5, 0),
            segment_ms: Rules::default().segment_ms,
            hint: None,
        })),
        "{out:?}"
    );
    assert_eq!(
        dropped(&out),
        vec![(5, track(20).track_hash, track(10).track_hash, true)]
    );
    assert_eq!(forgets(&out), vec![track(20).track_hash]);
}

#[test]
fn a_losing_leaning_another_slot_leans_toward_is_not_forgotten_until_that_slot_loses_it_too() {
    let mut p = in_slot_1();
    let undecided = chain(0);
    p.handle_leaning(&undecided, 5, track(20), proposer(1), at(5, 0));
    p.handle_leaning(&undecided, 6, track(20), proposer(1), at(6, 0));
    assert_eq!(wants(&drain(&mut p)), vec![5, 6]);
    p.handle_tick(at(2, 0), &chain(1));
    let out = drain(&mut p);
    assert_eq!(wants(&out), vec![5]);
    assert_eq!(
        dropped(&out),
        vec![(5, track(20).track_hash, track(10).track_hash, false)]
    );
    assert_eq!(forgets(&out), vec![], "slot 6 still wants it");
    p.handle_tick(at(3, 0), &chain(2));
    let out = drain(&mut p);
    assert_eq!(wants(&out), vec![6]);
    assert_eq!(forgets(&out), vec![track(20).track_hash]);
}

#[test]
fn a_losing_leaning_that_won_another_slot_is_not_forgotten() {
    let mut p = in_slot_1();
    // Slot 5 is final with track 10; the node leans toward track 10 for slot 6 as well (the
    // proposal was admissible when it arrived), and slot 6 goes to track 11.
    let final5 = chain(1);
    p.handle_tick(at(1, 10), &final5);
    assert_eq!(wants(&drain(&mut p)), vec![5]);
    p.handle_leaning(&final5, 6, track(10), proposer(1), at(6, 0));
    assert_eq!(wants(&drain(&mut p)), vec![6]);
    p.handle_tick(at(2, 0), &chain(2));
    let out = drain(&mut p);
    assert_eq!(wants(&out), vec![6]);
    assert_eq!(
        dropped(&out),
        vec![(6, track(10).track_hash, track(11).track_hash, false)]
    );
    assert_eq!(forgets(&out), vec![], "slot 5 plays it");
}

#[test]
fn an_adopted_chain_forgets_the_leanings_of_the_replaced_slots() {
    let mut p = in_slot_1();
    p.handle_leaning(&chain(0), 5, track(20), proposer(1), at(5, 0));
    drain(&mut p);
    p.handle_adopted(5);
    p.handle_tick(at(2, 0), &chain(1));
    let out = drain(&mut p);
    // Slot 5 is wanted from the new chain as any decided slot.
    assert_eq!(wants(&out), vec![5]);
    assert_eq!(dropped(&out), vec![]);
    assert_eq!(forgets(&out), vec![]);
}
