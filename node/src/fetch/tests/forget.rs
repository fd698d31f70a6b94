//! Forgetting a track (a likely winner fetched ahead of finality lost): its blocks leave the
//! queue, those of other tracks stay, and nothing more is reported of it.

use super::*;

#[test]
fn a_forgotten_track_leaves_the_queue_but_a_block_another_track_lists_stays_due_by_it() {
    let a = peer(1);
    let mut test = Test::new(&[]);
    let x = track("x", 3);
    let sx = segments(&x);
    // y lists x's second segment too (two tracks may share a block, a silent one say).
    let y = track("y", 2);
    let y0 = hash("y/0");
    test.want(ms(0), &y, 20_000, None);
    test.actions();
    test.p
        .handle_held(ms(0), y.track_hash, Local::Held(none_held(vec![y0, sx[1]])));
    assert!(wants(&test.actions()).is_empty());
    // Nobody to ask yet: x's blocks queue up before y's (sx[1] is due at 11 s).
    assert!(wants(&test.fetching(ms(0), &x, 10_000)).is_empty());
    test.p.handle_forget(x.track_hash);
    test.p.handle_connected(a);
    // Only y's blocks, sx[1] now due by y's deadline (21 s), after y0 (20 s).
    let lists = wants(&test.actions());
    assert_eq!(lists, vec![(a, vec![y0, sx[1]])]);
    test.p
        .handle_blocks(ms(100), a, &lists[0].1, stored(&lists[0].1));
    let actions = test.actions();
    let done: Vec<Hash32> = reports(&actions)
        .into_iter()
        .map(|e| match e {
            FetchEvent::Complete { track, .. } => track.track_hash,
            other => panic!("only y's completion, not {other:?}"),
        })
        .collect();
    assert_eq!(done, vec![y.track_hash]);
    // Forgetting a track not wanted (or no longer) changes nothing.
    test.p.handle_forget(x.track_hash);
    test.p.handle_forget(hash("never wanted"));
    assert!(test.actions().is_empty());
}

#[test]
fn blocks_in_flight_of_a_forgotten_track_are_not_asked_again_nor_reported() {
    let (a, b) = (peer(1), peer(2));
    let mut test = Test::new(&[a]);
    let x = track("x", 2);
    let lists = wants(&test.fetching(ms(0), &x, 10_000));
    assert_eq!(lists, vec![(a, segments(&x))]);
    test.p.handle_forget(x.track_hash);
    // The answer comes anyway: "don't have" moves nothing to another provider.
    test.p
        .handle_blocks(ms(100), a, &lists[0].1, dont_have(&lists[0].1));
    test.p.handle_connected(b);
    assert!(test.actions().is_empty());
    test.p.handle_timeout(REASK + ms(1000));
    let actions = test.actions();
    assert!(wants(&actions).is_empty(), "{actions:?}");
    assert!(probes(&actions).is_empty(), "{actions:?}");
    assert!(reports(&actions).is_empty(), "{actions:?}");
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::AskProviders { .. })),
        "{actions:?}"
    );
    // Wanted again, it starts afresh from the store.
    test.want(ms(7000), &x, 10_000, None);
    assert!(matches!(test.actions()[..], [Action::ReadStore { .. }]));
}

#[test]
fn a_forgotten_track_is_not_reported_unavailable_when_its_providers_deliver_nothing() {
    let (a, b) = (peer(1), peer(2));
    let mut test = Test::new(&[a, b]);
    // x and y fare the same; only x is forgotten.
    let (x, y) = (track("x", 1), track("y", 1));
    let asked_x = manifest_asks(&test.seeking(ms(0), &x, None));
    let asked_y = manifest_asks(&test.seeking(ms(0), &y, None));
    assert_eq!((asked_x.len(), asked_y.len()), (2, 2));
    test.p.handle_forget(x.track_hash);
    for (track, asked) in [(x.track_hash, &asked_x), (y.track_hash, &asked_y)] {
        for peer in asked {
            test.p
                .handle_manifest(ms(100), track, *peer, ManifestOutcome::Missing);
        }
        test.p.handle_providers(track, vec![]);
    }
    let events: Vec<Hash32> = reports(&test.actions())
        .into_iter()
        .filter_map(|e| match e {
            FetchEvent::Unavailable { track, .. } => Some(*track),
            _ => None,
        })
        .collect();
    assert_eq!(events, vec![y.track_hash]);
    // Nor is its manifest asked for again.
    test.p.handle_timeout(REASK + ms(1000));
    let actions = test.actions();
    assert!(!actions.iter().any(|a| matches!(a,
        Action::RequestManifest { track, .. } if track.track_hash == x.track_hash)));
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::AskProviders { track, .. } if *track == x.track_hash))
    );
}
