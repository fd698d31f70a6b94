//! Swarming: peers still fetching a track serve the segments they said they hold, before the
//! track's seeds; want-have probes find out what they hold.

use super::*;
use crate::fetch::planner::swarm::PROBE_EVERY;
use crate::fetch::planner::{HEDGE_AFTER, REFRESH};
use crate::net::protocol::holding_bits;

/// Wants `t` (manifest held, no segment) with `seed` as the proposer hint; returns the actions.
fn seeded(test: &mut Test, t: &TrackRef, seed: PeerId) -> Vec<Action> {
    test.want(ms(0), t, 10_000, Some(seed));
    assert_eq!(test.actions().len(), 1, "a store read");
    test.p
        .handle_held(ms(0), t.track_hash, Local::Held(none_held(segments(t))));
    test.actions()
}

fn holding(t: &TrackRef, held: &[usize]) -> BlocksOutcome {
    let bits = holding_bits((0..t.segment_count as usize).map(|i| held.contains(&i)));
    BlocksOutcome::Answered(Delivery {
        holding: Some((t.manifest_id, bits)),
        ..Delivery::default()
    })
}

#[test]
fn a_peer_that_said_it_holds_blocks_is_asked_before_the_seed() {
    let (seed, b) = (peer(1), peer(2));
    let mut test = Test::new(&[seed, b]);
    let x = track("x", 4);
    let ids = segments(&x);
    // The seed is the only known holder: everything goes to it at first, naming the track.
    let first = seeded(&mut test, &x, seed);
    assert_eq!(wants(&first), vec![(seed, ids.clone())]);
    assert!(
        first
            .iter()
            .any(|a| matches!(a, Action::Want { track: Some(m), .. } if *m == x.manifest_id))
    );
    // The next refresh probes b (not a holder, nothing in flight), not the busy seed.
    test.p.handle_timeout(ms(1000));
    assert_eq!(probes(&test.actions()), vec![(b, x.manifest_id)]);
    test.p
        .handle_blocks(ms(1100), b, &[], holding(&x, &[1, 2, 3]));
    assert!(
        wants(&test.actions()).is_empty(),
        "all in flight to the seed"
    );
    // The seed delivers segment 0 only: the rest goes to b, which holds it, not to the seed.
    test.p
        .handle_blocks(ms(1200), seed, &ids, stored(&ids[..1]));
    assert_eq!(wants(&test.actions()), vec![(b, ids[1..].to_vec())]);
}

#[test]
fn blocks_a_swarming_peer_lacks_still_come_from_the_seed() {
    let (seed, b) = (peer(1), peer(2));
    let mut test = Test::new(&[seed, b]);
    let x = track("x", 4);
    let ids = segments(&x);
    seeded(&mut test, &x, seed);
    test.p.handle_timeout(ms(1000));
    test.actions();
    test.p.handle_blocks(ms(1100), b, &[], holding(&x, &[3]));
    test.p
        .handle_blocks(ms(1200), seed, &ids, stored(&ids[..1]));
    let mut lists = wants(&test.actions());
    lists.sort();
    let mut expected = vec![(seed, ids[1..3].to_vec()), (b, vec![ids[3]])];
    expected.sort();
    assert_eq!(lists, expected);
}

#[test]
fn probes_skip_holders_wait_between_rounds_and_stop_once_complete() {
    let (seed, b, c) = (peer(1), peer(2), peer(3));
    let mut test = Test::new(&[seed, b, c]);
    let x = track("x", 2);
    let ids = segments(&x);
    seeded(&mut test, &x, seed);
    test.p.handle_timeout(ms(1000));
    let mut first = probes(&test.actions());
    first.sort();
    let mut expected = vec![(b, x.manifest_id), (c, x.manifest_id)];
    expected.sort();
    assert_eq!(first, expected, "never the seed");
    test.p.handle_blocks(ms(1100), b, &[], holding(&x, &[]));
    test.p.handle_blocks(ms(1100), c, &[], holding(&x, &[]));
    test.p.handle_timeout(ms(1000) + REFRESH);
    assert!(
        probes(&test.actions()).is_empty(),
        "{PROBE_EVERY:?} between probes"
    );
    test.p.handle_timeout(ms(1000) + PROBE_EVERY);
    assert_eq!(probes(&test.actions()).len(), 2);
    test.p.handle_blocks(ms(3100), b, &[], holding(&x, &[]));
    test.p.handle_blocks(ms(3100), c, &[], holding(&x, &[]));
    test.p.handle_blocks(ms(3200), seed, &ids, stored(&ids));
    test.actions();
    test.p.handle_timeout(ms(10_000));
    assert!(probes(&test.actions()).is_empty(), "nothing left to fetch");
}

#[test]
fn a_bitmap_longer_than_the_manifest_is_ignored() {
    let (seed, b) = (peer(1), peer(2));
    let mut test = Test::new(&[seed, b]);
    let x = track("x", 4);
    let ids = segments(&x);
    seeded(&mut test, &x, seed);
    test.p.handle_timeout(ms(1000));
    test.actions();
    let lie = BlocksOutcome::Answered(Delivery {
        holding: Some((x.manifest_id, vec![0xff; 64])),
        ..Delivery::default()
    });
    test.p.handle_blocks(ms(1100), b, &[], lie);
    test.p
        .handle_blocks(ms(1200), seed, &ids, stored(&ids[..1]));
    assert_eq!(wants(&test.actions()), vec![(seed, ids[1..].to_vec())]);
}

#[test]
fn a_referral_sends_the_refused_blocks_to_the_peers_named() {
    let (seed, b, c) = (peer(1), peer(2), peer(3));
    let mut test = Test::new(&[seed, b, c]);
    let x = track("x", 3);
    let ids = segments(&x);
    assert_eq!(
        wants(&seeded(&mut test, &x, seed)),
        vec![(seed, ids.clone())]
    );
    // The seed sent segments 1 and 2 to enough peers already: it names b.
    let refer = BlocksOutcome::Answered(Delivery {
        stored: vec![(ids[0], 100)],
        later: ids[1..].to_vec(),
        referrals: vec![b, seed],
        ..Delivery::default()
    });
    test.p.handle_blocks(ms(100), seed, &ids, refer);
    assert_eq!(wants(&test.actions()), vec![(b, ids[1..].to_vec())]);
    // b has only segment 1 yet: segment 2 waits for the next refresh, then the seed serves.
    let partly = BlocksOutcome::Answered(Delivery {
        stored: vec![(ids[1], 100)],
        dont_have: vec![ids[2]],
        ..Delivery::default()
    });
    test.p.handle_blocks(ms(200), b, &ids[1..], partly);
    assert!(wants(&test.actions()).is_empty());
    test.p.handle_timeout(ms(1000));
    // b said it lacks it: the seed (which refused once) is asked again, and serves.
    assert_eq!(wants(&test.actions()), vec![(seed, vec![ids[2]])]);
}

/// Wants `t` with `seed` as the proposer hint and `lan` and `hubs` as the fast peers; at the
/// first refresh each of `held` says which segments it holds, then the seed answers its want
/// list with `seed_answer`. Returns the want lists handed out then, sorted.
fn held_then_seed_answers(
    test: &mut Test,
    t: &TrackRef,
    seed: PeerId,
    (lan, hubs): (&[PeerId], &[PeerId]),
    held: &[(PeerId, &[usize])],
    seed_answer: BlocksOutcome,
) -> Vec<(PeerId, Vec<Hash32>)> {
    let set = |peers: &[PeerId]| peers.iter().copied().collect();
    test.p.handle_fast_peers(set(lan), set(hubs));
    seeded(test, t, seed);
    test.p.handle_timeout(ms(1000));
    test.actions();
    for (peer, segments) in held {
        test.p
            .handle_blocks(ms(1100), *peer, &[], holding(t, segments));
    }
    test.p
        .handle_blocks(ms(1200), seed, &segments(t), seed_answer);
    let mut lists = wants(&test.actions());
    lists.sort();
    lists
}

/// The refresh that first finds the lists of [`held_then_seed_answers`] in flight, and the
/// one [`HEDGE_AFTER`] later: returns the want lists handed out (the hedges).
fn hedged(test: &mut Test) -> Vec<(PeerId, Vec<Hash32>)> {
    test.p.handle_timeout(ms(2000));
    test.p.handle_timeout(ms(2000) + HEDGE_AFTER);
    wants(&test.actions())
}

/// A seed, a hub and a home, and a track of `n` segments the hub and the home hold in full:
/// the seed's want list failed, and the whole track was asked of the hub.
fn hub_and_home_hold(n: u64) -> (Test, TrackRef, [PeerId; 3]) {
    let (seed, hub, home) = (peer(1), peer(2), peer(3));
    let mut test = Test::new(&[seed, hub, home]);
    let x = track("x", n);
    let all: Vec<usize> = (0..n as usize).collect();
    let held = [(hub, &all[..]), (home, &all[..])];
    let lists = held_then_seed_answers(
        &mut test,
        &x,
        seed,
        (&[], &[hub]),
        &held,
        BlocksOutcome::Failed,
    );
    assert_eq!(lists, vec![(hub, segments(&x))]);
    (test, x, [seed, hub, home])
}

fn completes(actions: &[Action]) -> bool {
    reports(actions)
        .iter()
        .any(|e| matches!(e, FetchEvent::Complete { .. }))
}

#[test]
fn a_hub_that_holds_a_block_is_asked_before_homes_and_a_lan_peer_before_both() {
    let (seed, home, hub, lan) = (peer(1), peer(2), peer(3), peer(4));
    let mut test = Test::new(&[seed, home, hub, lan]);
    let x = track("x", 3);
    let ids = segments(&x);
    // The home and the hub hold every block, the LAN peer block 2. Not spread by load: the
    // hub's uplink is faster than the home's, the LAN's than both.
    let all: &[usize] = &[0, 1, 2];
    let held = [(home, all), (hub, all), (lan, &[2][..])];
    let lists = held_then_seed_answers(
        &mut test,
        &x,
        seed,
        (&[lan], &[hub]),
        &held,
        BlocksOutcome::Failed,
    );
    let mut expected = vec![(hub, ids[..2].to_vec()), (lan, vec![ids[2]])];
    expected.sort();
    assert_eq!(lists, expected);
}

#[test]
fn an_answers_old_bitmap_does_not_hide_what_a_referral_told() {
    let (seed, hub, home) = (peer(1), peer(2), peer(3));
    let mut test = Test::new(&[seed, hub, home]);
    let x = track("x", 2);
    let ids = segments(&x);
    // The seed refers both blocks to the hub; the hub is asked for them.
    let refer = BlocksOutcome::Answered(Delivery {
        later: ids.clone(),
        referrals: vec![hub],
        ..Delivery::default()
    });
    let lists = held_then_seed_answers(&mut test, &x, seed, (&[], &[hub]), &[], refer);
    assert_eq!(lists, vec![(hub, ids.clone())]);
    // The hub's answer was parked until block 0 came: its bitmap is of before, when it held
    // nothing, and block 1 is left out (too big for one answer).
    let parked = BlocksOutcome::Answered(Delivery {
        stored: vec![(ids[0], 100)],
        holding: Some((x.manifest_id, holding_bits([false, false]))),
        ..Delivery::default()
    });
    test.p.handle_blocks(ms(1300), hub, &ids, parked);
    // The home says it holds block 1 too; the hub is still asked, not the home.
    test.p.handle_blocks(ms(1350), home, &[], holding(&x, &[1]));
    assert_eq!(wants(&test.actions()), vec![(hub, vec![ids[1]])]);
}

#[test]
fn a_block_left_out_of_an_answer_that_brought_others_is_asked_again_of_the_same_peer() {
    let (mut test, x, [_, hub, _]) = hub_and_home_hold(3);
    let ids = segments(&x);
    // Block 0 came; 1 and 2 were left for later, with nobody referred: the hub again.
    let small = BlocksOutcome::Answered(Delivery {
        stored: vec![(ids[0], 100)],
        later: ids[1..].to_vec(),
        ..Delivery::default()
    });
    test.p.handle_blocks(ms(1300), hub, &ids, small);
    assert_eq!(wants(&test.actions()), vec![(hub, ids[1..].to_vec())]);
}

#[test]
fn a_peer_that_says_it_holds_blocks_but_sends_none_is_passed_over_until_the_refresh() {
    let (mut test, x, [_, liar, home]) = hub_and_home_hold(2);
    let ids = segments(&x);
    // An answer that leaves every id out: the home is asked next, not the liar again.
    let nothing = BlocksOutcome::Answered(Delivery::default());
    test.p.handle_blocks(ms(1300), liar, &ids, nothing);
    assert_eq!(wants(&test.actions()), vec![(home, ids.clone())]);
}

#[test]
fn a_block_in_flight_too_long_is_asked_of_a_second_holder_and_the_first_answer_wins() {
    let (seed, hub, home, other) = (peer(1), peer(2), peer(3), peer(4));
    let mut test = Test::new(&[seed, hub, home, other]);
    let x = track("x", 2);
    let ids = segments(&x);
    // The seed delivers block 1; block 0 goes to the hub, which goes quiet.
    let held = [(hub, &[0, 1][..]), (home, &[0][..]), (other, &[][..])];
    let lists =
        held_then_seed_answers(&mut test, &x, seed, (&[], &[hub]), &held, stored(&ids[1..]));
    assert_eq!(lists, vec![(hub, vec![ids[0]])]);
    // Seen in flight at the next refresh; asked again of nobody until HEDGE_AFTER later.
    let seen = ms(2000);
    test.p.handle_timeout(seen);
    assert!(wants(&test.actions()).is_empty());
    test.p.handle_timeout(seen + HEDGE_AFTER - REFRESH);
    assert!(wants(&test.actions()).is_empty());
    // Then of the home that holds it too (not of `other`, which does not).
    test.p.handle_timeout(seen + HEDGE_AFTER);
    assert_eq!(wants(&test.actions()), vec![(home, vec![ids[0]])]);
    test.p.handle_timeout(seen + HEDGE_AFTER + REFRESH);
    assert!(wants(&test.actions()).is_empty(), "one hedge at a time");
    // The home answers first: the track is complete; the hub's late answer changes nothing.
    let now = seen + HEDGE_AFTER + REFRESH;
    test.p
        .handle_blocks(now, home, &ids[..1], stored(&ids[..1]));
    assert!(completes(&test.actions()));
    test.p.handle_blocks(now, hub, &ids[..1], stored(&ids[..1]));
    assert!(test.actions().is_empty());
}

#[test]
fn when_the_first_peer_fails_a_hedged_block_waits_for_the_second() {
    let (mut test, x, [seed, hub, home]) = hub_and_home_hold(1);
    let ids = segments(&x);
    assert_eq!(hedged(&mut test), vec![(home, ids.clone())]);
    // The hub fails: the block is not asked a third time while the home's answer is due.
    test.p
        .handle_blocks(ms(4100), hub, &ids, BlocksOutcome::Failed);
    assert!(wants(&test.actions()).is_empty());
    // The home lacks it after all: back in the queue, for the seed (the hub failed).
    test.p.handle_blocks(ms(4200), home, &ids, dont_have(&ids));
    assert_eq!(wants(&test.actions()), vec![(seed, ids.clone())]);
}

#[test]
fn a_first_peer_that_kept_a_hedged_block_for_later_is_asked_again_beside_the_hedge() {
    let (mut test, x, [_, hub, home]) = hub_and_home_hold(2);
    let ids = segments(&x);
    assert_eq!(hedged(&mut test), vec![(home, ids.clone())]);
    // The hub sends block 0 and keeps block 1 for later: asked of it again at once, while
    // the home's answer is still due.
    let small = BlocksOutcome::Answered(Delivery {
        stored: vec![(ids[0], 100)],
        later: vec![ids[1]],
        ..Delivery::default()
    });
    test.p.handle_blocks(ms(4100), hub, &ids, small);
    assert_eq!(wants(&test.actions()), vec![(hub, vec![ids[1]])]);
    // The home's answer brings it first; the hub's then changes nothing.
    test.p
        .handle_blocks(ms(4200), home, &ids, stored(&ids[1..]));
    assert!(completes(&test.actions()));
    test.p
        .handle_blocks(ms(4300), hub, &ids[1..], stored(&ids[1..]));
    assert!(test.actions().is_empty());
}
