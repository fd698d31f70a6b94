//! Manifests, DHT rounds and PROTOCOL.md 12.2's `unavailable`.

use super::*;

#[test]
fn manifests_are_asked_of_three_peers_at_once_likely_holders_first() {
    let connected: Vec<PeerId> = (1..=4).map(peer).collect();
    let (hint, provider) = (peer(10), peer(11));
    let mut test = Test::new(&connected);
    let x = track("x", 2);
    let actions = test.seeking(ms(0), &x, Some(hint));
    assert!(actions.iter().any(
        |a| matches!(a, Action::AskProviders { manifest_id, .. } if *manifest_id == x.manifest_id)
    ));
    let asked = manifest_asks(&actions);
    assert_eq!(asked.len(), 3);
    assert_eq!(asked[0], hint, "the proposer first");
    test.p.handle_providers(x.track_hash, vec![provider]);
    assert!(manifest_asks(&test.actions()).is_empty(), "three in flight");
    test.p
        .handle_manifest(ms(100), x.track_hash, asked[1], ManifestOutcome::Missing);
    assert_eq!(
        manifest_asks(&test.actions()),
        vec![provider],
        "a DHT provider before the other connected peers"
    );
    test.p.handle_manifest(
        ms(200),
        x.track_hash,
        hint,
        ManifestOutcome::Valid(none_held(segments(&x))),
    );
    let actions = test.actions();
    assert!(manifest_asks(&actions).is_empty());
    let blocks: usize = wants(&actions).iter().map(|(_, ids)| ids.len()).sum();
    assert_eq!(blocks, 2);
}

#[test]
fn a_refused_manifest_is_reported_once_and_never_asked_again() {
    let (a, b) = (peer(1), peer(2));
    let mut test = Test::new(&[a, b]);
    let x = track("x", 2);
    let asked = manifest_asks(&test.seeking(ms(0), &x, None));
    assert_eq!(asked.len(), 2);
    test.p
        .handle_manifest(ms(100), x.track_hash, asked[0], ManifestOutcome::Refused);
    assert_eq!(unavailable(&test.actions()), vec![(0, true)]);
    test.p
        .handle_manifest(ms(150), x.track_hash, asked[1], ManifestOutcome::Refused);
    assert!(test.actions().is_empty(), "reported once");
    test.p.handle_timeout(REASK + ms(1000));
    test.p.handle_connected(peer(3));
    assert!(
        test.actions().is_empty(),
        "no DHT query, no manifest request"
    );
    test.want(ms(7000), &x, 5_000, Some(peer(4)));
    assert!(test.actions().is_empty());

    // A held manifest that contradicts its TrackRef is refused the same way.
    let y = track("y", 2);
    test.want(ms(8000), &y, 20_000, None);
    test.actions();
    test.p.handle_held(ms(8000), y.track_hash, Local::Refused);
    let actions = test.actions();
    assert_eq!(unavailable(&actions), vec![(0, true)]);
    assert!(manifest_asks(&actions).is_empty());
}

#[test]
fn unavailable_is_reported_once_when_every_known_provider_delivered_nothing() {
    let (a, b, c) = (peer(1), peer(2), peer(3));
    let mut test = Test::new(&[a, b]);
    let x = track("x", 1);
    let asked = manifest_asks(&test.seeking(ms(0), &x, None));
    assert_eq!(asked.len(), 2);
    test.p
        .handle_manifest(ms(100), x.track_hash, a, ManifestOutcome::Missing);
    test.p
        .handle_manifest(ms(200), x.track_hash, b, ManifestOutcome::Failed);
    assert!(
        unavailable(&test.actions()).is_empty(),
        "the DHT has not answered"
    );
    test.p.handle_providers(x.track_hash, vec![c]);
    let actions = test.actions();
    assert!(unavailable(&actions).is_empty(), "c not asked yet");
    assert_eq!(manifest_asks(&actions), vec![c]);
    test.p
        .handle_manifest(ms(300), x.track_hash, c, ManifestOutcome::Missing);
    assert_eq!(unavailable(&test.actions()), vec![(3, false)]);
    // The fetcher keeps trying; a new round fails the same way without a second report.
    test.p.handle_timeout(REASK + ms(1000));
    let actions = test.actions();
    let again = manifest_asks(&actions);
    assert_eq!(again.len(), 3);
    for p in again {
        test.p
            .handle_manifest(ms(6100), x.track_hash, p, ManifestOutcome::Missing);
    }
    test.p.handle_providers(x.track_hash, vec![c]);
    assert!(unavailable(&test.actions()).is_empty());
    // And `Complete` may still follow.
    let asked = manifest_asks(&{
        test.p.handle_timeout(ms(12_000));
        test.actions()
    });
    test.p.handle_manifest(
        ms(12_100),
        x.track_hash,
        asked[0],
        ManifestOutcome::Valid(none_held(segments(&x))),
    );
    let lists = wants(&test.actions());
    assert_eq!(lists.len(), 1);
    test.p
        .handle_blocks(ms(12_200), lists[0].0, &lists[0].1, stored(&lists[0].1));
    assert!(matches!(
        reports(&test.actions())[..],
        [FetchEvent::Complete { .. }]
    ));
}

#[test]
fn nothing_is_asked_before_the_store_answers() {
    let a = peer(1);
    let mut test = Test::new(&[a]);
    let x = track("x", 1);
    test.want(ms(0), &x, 10_000, Some(a));
    assert!(matches!(test.actions()[..], [Action::ReadStore { .. }]));
    test.p.handle_timeout(REASK + ms(1000));
    assert!(test.actions().is_empty());
    test.p.handle_held(ms(6500), x.track_hash, Local::Absent);
    let actions = test.actions();
    assert_eq!(manifest_asks(&actions), vec![a]);
    assert_eq!(
        actions
            .iter()
            .filter(|a| matches!(a, Action::AskProviders { .. }))
            .count(),
        1
    );
}

#[test]
fn each_round_asks_the_dht_again_and_the_manifest_of_every_peer() {
    let a = peer(1);
    let mut test = Test::new(&[a]);
    let x = track("x", 1);
    let asks_dht = |actions: &[Action]| {
        actions
            .iter()
            .filter(|a| matches!(a, Action::AskProviders { .. }))
            .count()
    };
    assert_eq!(asks_dht(&test.seeking(ms(0), &x, None)), 1);
    test.p
        .handle_manifest(ms(100), x.track_hash, a, ManifestOutcome::Missing);
    assert!(test.actions().is_empty());
    test.p.handle_timeout(ms(1000));
    assert!(test.actions().is_empty(), "not a new round yet");
    // A new round: the manifest is asked again; the DHT query still runs, so no second one.
    test.p.handle_timeout(REASK + ms(1000));
    let actions = test.actions();
    assert_eq!(asks_dht(&actions), 0);
    assert_eq!(manifest_asks(&actions), vec![a]);
    test.p.handle_providers(x.track_hash, Vec::new());
    test.p.handle_timeout(2 * REASK + ms(2000));
    assert_eq!(asks_dht(&test.actions()), 1);
}

#[test]
fn unavailable_only_once_every_known_provider_delivered_nothing() {
    let peers: Vec<PeerId> = (0..3).map(peer).collect();
    let lacking = |n: usize| peers[..n].iter().copied().collect::<BTreeSet<PeerId>>();
    assert!(exhausted(true, &peers, &lacking(3)));
    // One provider not asked yet (or that may still deliver).
    assert!(!exhausted(true, &peers, &lacking(2)));
    // The DHT's providers are not known yet.
    assert!(!exhausted(false, &peers, &lacking(3)));
    // Nobody asked: no peer known is no proof.
    assert!(!exhausted(true, &[], &lacking(0)));
    // A peer that lacked it and went away still counts as asked.
    assert!(exhausted(true, &peers[1..], &lacking(3)));
    assert!(exhausted(true, &[], &lacking(1)));
}

#[test]
fn a_proposer_reached_only_through_a_relay_is_not_asked_nor_found_lacking() {
    let (proposer, a) = (peer(1), peer(2));
    let mut test = Test::new(&[a]);
    test.p.handle_relayed([proposer].into_iter().collect());
    let x = track("x", 1);
    let asked = manifest_asks(&test.seeking(ms(0), &x, Some(proposer)));
    assert_eq!(asked, vec![a], "only the directly connected peer");
    test.p.handle_providers(x.track_hash, vec![]);
    test.p
        .handle_manifest(ms(100), x.track_hash, a, ManifestOutcome::Missing);
    assert!(
        unavailable(&test.actions()).is_empty(),
        "a, still fetching, proves nothing; the proposer was never asked"
    );
    // A hole is punched: the proposer is asked, and its silence now counts.
    test.p.handle_relayed(BTreeSet::new());
    test.p.handle_connected(proposer);
    test.p.handle_timeout(REASK + ms(1000));
    let asked = manifest_asks(&test.actions());
    assert!(asked.contains(&proposer), "{asked:?}");
    test.p
        .handle_manifest(ms(6200), x.track_hash, proposer, ManifestOutcome::Missing);
    test.p.handle_providers(x.track_hash, vec![]);
    assert_eq!(unavailable(&test.actions()).len(), 1);
}
