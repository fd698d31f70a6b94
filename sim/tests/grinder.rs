//! Identity grinding (PROTOCOL.md 4.1 and 12.3): a grinder with unlimited keys owns version 1's
//! lottery, and wins no more under 1.1 than its enrolled share plus what withholding can add.

mod common;

use chorus_sim::adversary::{Adversaries, AdversaryKind};
use chorus_sim::config::Protocol;
use chorus_sim::{Report, run};

/// 20 nodes, 80 slots, `count` grinders, under `protocol`.
fn grind(protocol: Protocol, count: usize, seed: u64) -> Report {
    let mut c = common::cheap(20, 80, seed);
    c.protocol = protocol;
    c.adversaries = vec![Adversaries {
        kind: AdversaryKind::Grinder,
        count,
    }];
    run(c)
}

#[test]
fn a_grinder_owns_version_1_and_stays_within_its_share_in_1_1() {
    let v1 = grind(Protocol::V1, 1, 2);
    assert!(v1.disagreeing_slots.is_empty(), "{v1}");
    let g = v1.grinder.as_ref().expect("a grinder report");
    assert_eq!(g.identities, 1, "{v1}");
    assert!(g.targeted_slots >= 72, "a winning key for most slots\n{v1}");
    assert!(
        g.targeted_won * 10 >= g.targeted_slots * 9,
        "version 1: the ground identities win most slots they target\n{v1}"
    );
    assert!(!g.within_bound, "version 1 breaks 1.1's bound\n{v1}");

    let v11 = grind(Protocol::V1_1, 1, 2);
    assert_eq!(v11.min_agreement, 1.0, "{v11}");
    assert!(v11.disagreeing_slots.is_empty(), "{v11}");
    assert_eq!(v11.incomplete_nodes, 0, "{v11}");
    let g = v11.grinder.as_ref().expect("a grinder report");
    assert!(g.targeted_slots >= 72, "it grinds as hard\n{v11}");
    assert_eq!(g.targeted_won, 0, "a fresh identity is not enrolled\n{v11}");
    // One identity of 20 enrolled; a little more while the roster fills.
    assert!(
        (0.03..0.08).contains(&g.enrolled_share),
        "its identity enrolled\n{v11}"
    );
    assert!(g.within_bound, "{v11}");
    assert!(g.share <= g.bound, "{v11}");
}

/// With 6 identities of 20 the grinders often hold the lowest ticket of a slot and can choose
/// between two beacons: they withhold where silence wins them the slot L + 1 later, and still
/// stay within the bound; the honest nodes agree throughout.
#[test]
fn withholding_grinders_win_what_they_foresaw_and_stay_within_the_bound() {
    let report = grind(Protocol::V1_1, 6, 3);
    assert_eq!(report.min_agreement, 1.0, "{report}");
    assert_eq!(report.incomplete_nodes, 0, "{report}");
    let g = report.grinder.as_ref().expect("a grinder report");
    assert!(g.silent_checked > 0, "{report}");
    assert!(
        g.silent_foreseen * 10 >= g.silent_checked * 8,
        "silence gave it the lowest ticket of the slot foreseen\n{report}"
    );
    assert!(g.within_bound, "{report}");
}
