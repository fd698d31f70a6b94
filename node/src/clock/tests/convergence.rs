//! Networks of honest nodes with skewed clocks, every node sampling every other: where their
//! network times end.

use libp2p::PeerId;

use super::{exchange, looped};
use crate::clock::{Estimator, Rule, Selection, SourceNet};

/// Runs `rounds` of every node sampling every other over paths with asymmetric delays;
/// returns each node's network time minus true time (µs) and its last selection.
fn simulate(skews: &[i64], rounds: i64) -> Vec<(f64, Option<Selection>)> {
    let ids: Vec<(PeerId, SourceNet)> = skews.iter().map(|_| looped()).collect();
    let mut nodes: Vec<(Estimator, f64, Option<Selection>)> = skews
        .iter()
        .map(|_| (Estimator::default(), 0.0, None))
        .collect();
    for round in 0..rounds {
        for (i, node) in nodes.iter_mut().enumerate() {
            for (j, peer) in ids.iter().enumerate() {
                if i == j {
                    continue;
                }
                // 80 to 200 µs out, 100 µs back, varying by pair and round.
                let out = 80 + (13 * (i + 2 * j) as i64 + 29 * round) % 120;
                let at = round * 2_000_000 + (i * 10 + j) as i64 * 1000;
                let e = exchange(skews[i], skews[j], at, out, 100);
                node.0.add(peer.0, peer.1.clone(), e.sample());
                if let Some(s) = node.0.select() {
                    node.1 = s.offset_us;
                    node.2 = Some(s);
                }
            }
        }
    }
    nodes
        .iter()
        .zip(skews)
        .map(|((_, offset, s), skew)| (*skew as f64 + offset, *s))
        .collect()
}

#[test]
fn three_honest_skewed_nodes_converge_on_the_median_clock() {
    // Clocks -400, 0 and +350 ms: every node ends within the path asymmetry (< 100 µs) of
    // the middle clock, locked.
    let result = simulate(&[-400_000, 0, 350_000], 6);
    for (network, s) in &result {
        assert!(network.abs() < 100.0, "{result:?}");
        let rule = s.expect("a selection").rule;
        assert!(
            matches!(rule, Rule::Acquisition | Rule::Refinement),
            "{result:?}"
        );
    }
}

#[test]
fn two_honest_skewed_nodes_meet_halfway() {
    // Two networks only: provisional, both on the mean of the two clocks.
    let result = simulate(&[-400_000, 300_000], 4);
    for (network, s) in &result {
        assert!((network + 50_000.0).abs() < 100.0, "{result:?}");
        assert_eq!(s.expect("a selection").rule, Rule::Provisional);
    }
}

#[test]
fn honest_nodes_with_synchronized_clocks_agree() {
    // Clocks within 300 µs of each other: agreement from the first selection with three
    // networks on.
    let result = simulate(&[-120, 0, 90, 300, -300], 5);
    let times: Vec<f64> = result.iter().map(|r| r.0).collect();
    let spread = times.iter().fold(f64::MIN, |a, b| a.max(*b))
        - times.iter().fold(f64::MAX, |a, b| a.min(*b));
    assert!(spread < 200.0, "{result:?}");
    for (_, s) in &result {
        assert_eq!(s.expect("a selection").rule, Rule::Agreement);
    }
}
