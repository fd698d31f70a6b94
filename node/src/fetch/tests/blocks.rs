//! Blocks: deadlines, provider choice, in-flight limits, retries, bans, completion.

use super::*;
use crate::fetch::{BAN, BATCH, PER_PEER};

#[test]
fn blocks_go_out_earliest_deadline_first_across_tracks() {
    let a = peer(1);
    let mut test = Test::new(&[]);
    let (x, y) = (track("x", 3), track("y", 3));
    // Nobody to ask yet: both tracks queue up.
    assert!(wants(&test.fetching(ms(0), &x, 10_000)).is_empty());
    assert!(wants(&test.fetching(ms(0), &y, 9_500)).is_empty());
    test.p.handle_connected(a);
    let (sx, sy) = (segments(&x), segments(&y));
    let expected = vec![sy[0], sx[0], sy[1], sx[1], sy[2], sx[2]];
    assert_eq!(wants(&test.actions()), vec![(a, expected)]);
}

#[test]
fn an_earlier_deadline_moves_a_track_up_the_queue() {
    let a = peer(1);
    let mut test = Test::new(&[]);
    let (x, y) = (track("x", 2), track("y", 2));
    test.fetching(ms(0), &x, 20_000);
    test.fetching(ms(0), &y, 10_000);
    // The same track wanted again for an earlier slot (a replay of it decided first).
    test.want(ms(10), &x, 1_000, None);
    // A later deadline changes nothing.
    test.want(ms(20), &y, 30_000, None);
    assert!(
        test.actions().is_empty(),
        "no store read for a track already wanted"
    );
    test.p.handle_connected(a);
    let (sx, sy) = (segments(&x), segments(&y));
    assert_eq!(
        wants(&test.actions()),
        vec![(a, vec![sx[0], sx[1], sy[0], sy[1]])]
    );
}

#[test]
fn want_lists_hold_batch_ids_and_per_peer_lists_fly_at_once() {
    let a = peer(1);
    let mut test = Test::new(&[a]);
    let x = track("x", 40);
    let ids = segments(&x);
    let first = wants(&test.fetching(ms(0), &x, 10_000));
    assert_eq!(first, vec![(a, ids[..BATCH].to_vec())]);
    // One new list per peer per pass: the next input hands out the second.
    test.p.handle_timeout(ms(1000));
    let second = wants(&test.actions());
    assert_eq!(second, vec![(a, ids[BATCH..2 * BATCH].to_vec())]);
    assert_eq!(PER_PEER, 2);
    test.p.handle_timeout(ms(2000));
    assert!(
        wants(&test.actions()).is_empty(),
        "PER_PEER lists in flight"
    );
    test.p
        .handle_blocks(ms(2100), a, &first[0].1, stored(&first[0].1));
    assert_eq!(wants(&test.actions()), vec![(a, ids[2 * BATCH..].to_vec())]);
}

#[test]
fn blocks_spread_over_providers_fewest_in_flight_first() {
    let (a, b) = (peer(1), peer(2));
    let mut test = Test::new(&[a, b]);
    let x = track("x", 4);
    let lists = wants(&test.fetching(ms(0), &x, 10_000));
    let ids = segments(&x);
    // Equal load: the blocks alternate, in deadline order.
    assert_eq!(lists.len(), 2);
    let (first, second) = (lists[0].0, lists[1].0);
    assert_ne!(first, second);
    assert!(lists.iter().all(|(_, l)| l.len() == 2));
    let mut all: Vec<Hash32> = lists.iter().flat_map(|(_, l)| l.clone()).collect();
    all.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(all, expected);
    // `first` finishes; `second` still has one list in flight: new blocks go to `first`.
    let done = lists[0].1.clone();
    test.p.handle_blocks(ms(500), first, &done, stored(&done));
    assert!(matches!(
        reports(&test.actions())[..],
        [FetchEvent::Progress {
            held: 2,
            total: 4,
            ..
        }]
    ));
    let y = track("y", 2);
    let next = wants(&test.fetching(ms(600), &y, 10_000));
    assert_eq!(next, vec![(first, segments(&y))]);
}

#[test]
fn dont_have_and_later_move_a_block_to_the_next_provider() {
    let (a, b) = (peer(1), peer(2));
    let mut test = Test::new(&[a, b]);
    let x = track("x", 1);
    let id = segments(&x)[0];
    let lists = wants(&test.fetching(ms(0), &x, 10_000));
    let first = lists[0].0;
    let other = if first == a { b } else { a };
    test.p
        .handle_blocks(ms(100), first, &[id], dont_have(&[id]));
    assert_eq!(wants(&test.actions()), vec![(other, vec![id])]);
    let later = BlocksOutcome::Answered(Delivery {
        later: vec![id],
        ..Delivery::default()
    });
    test.p.handle_blocks(ms(200), other, &[id], later);
    // Both have answered for this block: it waits for the next refresh.
    assert!(wants(&test.actions()).is_empty());
    test.p.handle_timeout(ms(1000));
    let again = wants(&test.actions());
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].1, vec![id]);
}

#[test]
fn a_failed_request_puts_its_blocks_back_for_another_provider() {
    let (a, b) = (peer(1), peer(2));
    let mut test = Test::new(&[a, b]);
    let x = track("x", 2);
    let lists = wants(&test.fetching(ms(0), &x, 10_000));
    assert_eq!(lists.len(), 2);
    let (failed, ids) = lists[0].clone();
    let other = lists[1].0;
    test.p
        .handle_blocks(ms(100), failed, &ids, BlocksOutcome::Failed);
    assert_eq!(wants(&test.actions()), vec![(other, ids.clone())]);
    // A stale answer for blocks no longer in flight to that peer changes nothing.
    test.p
        .handle_blocks(ms(200), failed, &ids, BlocksOutcome::Failed);
    assert!(wants(&test.actions()).is_empty());
}

#[test]
fn a_corrupt_block_bans_its_sender_until_the_ban_expires() {
    let a = peer(1);
    let mut test = Test::new(&[a]);
    let x = track("x", 1);
    let id = segments(&x)[0];
    assert_eq!(
        wants(&test.fetching(ms(0), &x, 10_000)),
        vec![(a, vec![id])]
    );
    let corrupt = BlocksOutcome::Answered(Delivery {
        corrupt: vec![id],
        ..Delivery::default()
    });
    let at = ms(100);
    test.p.handle_blocks(at, a, &[id], corrupt);
    let actions = test.actions();
    assert!(matches!(
        reports(&actions)[..],
        [FetchEvent::Corrupt { peer, block }] if *peer == a && *block == id
    ));
    assert!(wants(&actions).is_empty());
    // Refreshes forget "don't have", not bans.
    test.p.handle_timeout(ms(1000));
    assert!(wants(&test.actions()).is_empty());
    test.p.handle_timeout(at + BAN - ms(500));
    assert!(wants(&test.actions()).is_empty());
    test.p.handle_timeout(at + BAN + REFRESH);
    assert_eq!(wants(&test.actions()), vec![(a, vec![id])]);
}

#[test]
fn a_finished_track_is_provided_then_reported() {
    let a = peer(1);
    let mut test = Test::new(&[a]);
    let x = track("x", 2);
    let lists = wants(&test.fetching(ms(1000), &x, 10_000));
    test.p
        .handle_blocks(ms(4000), a, &lists[0].1, stored(&lists[0].1));
    let actions = test.actions();
    assert!(
        matches!(
            &actions[..],
            [Action::Provide { manifest_id }, Action::Report(FetchEvent::Complete { track, fetched: 2, bytes: 200, elapsed })]
                if *manifest_id == x.manifest_id && track.track_hash == x.track_hash && *elapsed == ms(3000)
        ),
        "{actions:?}"
    );

    // A track held in full is provided and reported at once.
    let y = track("y", 2);
    test.want(ms(5000), &y, 20_000, None);
    test.actions();
    let held = Contents {
        segments: segments(&y),
        held: segments(&y).into_iter().collect(),
    };
    test.p
        .handle_held(ms(5000), y.track_hash, Local::Held(held));
    let actions = test.actions();
    assert!(matches!(
        &actions[..],
        [
            Action::Provide { .. },
            Action::Report(FetchEvent::Complete { fetched: 0, .. })
        ]
    ));
}

#[test]
fn a_block_shared_by_two_tracks_or_listed_twice_completes_them() {
    let a = peer(1);
    let mut test = Test::new(&[]);
    let (x, y) = (track("x", 2), track("y", 3));
    let silence = hash("silence");
    let xs = vec![silence, segments(&x)[1]];
    let ys = vec![silence, segments(&y)[1], silence];
    for (t, ids) in [(&x, &xs), (&y, &ys)] {
        test.want(ms(0), t, 10_000, None);
        test.actions();
        test.p
            .handle_held(ms(0), t.track_hash, Local::Held(none_held(ids.clone())));
        test.actions();
    }
    test.p.handle_connected(a);
    let lists = wants(&test.actions());
    assert_eq!(lists.len(), 1);
    let asked: BTreeSet<Hash32> = lists[0].1.iter().copied().collect();
    assert_eq!(asked.len(), lists[0].1.len(), "each block asked once");
    test.p
        .handle_blocks(ms(100), a, &lists[0].1, stored(&lists[0].1));
    let done: BTreeSet<Hash32> = reports(&test.actions())
        .into_iter()
        .filter_map(|e| match e {
            FetchEvent::Complete { track, .. } => Some(track.track_hash),
            _ => None,
        })
        .collect();
    assert_eq!(done, [x.track_hash, y.track_hash].into_iter().collect());
}
