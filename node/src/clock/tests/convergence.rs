//! Networks of honest nodes with skewed clocks, every node sampling every other: where their
//! network times end.

use libp2p::PeerId;

use super::{Rng, exchange, looped};
use crate::clock::Exchange;
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

/// A node sampling three peers (one clock, 100 ppm fast and 400 ms ahead) four times a second
/// over the testbed's home-to-home paths (each leg 40 ms +- 10 ms): from 30 s on its target
/// follows the peers' lines, well within a millisecond, where the best of a peer's last 8
/// samples alone is off by more.
#[test]
fn on_jittery_paths_the_target_follows_the_peers_lines_not_their_last_samples() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let peers: Vec<(PeerId, SourceNet)> = (0..3).map(|_| looped()).collect();
    let mut est = Estimator::default();
    let (skew, drift) = (400_000.0, 100.0);
    let (mut target_sq, mut best_sq, mut n) = (0.0, 0.0, 0.0);
    for k in 0..240 {
        for (i, peer) in peers.iter().enumerate() {
            // True time, µs; the node's clock is true time, the peers' run fast.
            let t = 1e12 + k as f64 * 250_000.0 + i as f64 * 1000.0;
            let (up, down) = (rng.leg(), rng.leg());
            let peer_clock = |at: f64| at + skew + drift * (at - 1e12) / 1e6;
            let e = Exchange {
                t0: t as i64,
                t1: peer_clock(t + up) as i64,
                t2: peer_clock(t + up + 30.0) as i64,
                t3: (t + up + 30.0 + down) as i64,
            };
            est.add(peer.0, peer.1.clone(), e.sample());
            let Some(target) = est.target_us() else {
                continue;
            };
            if k >= 120 {
                let truth = peer_clock(t + up + 30.0 + down) - (t + up + 30.0 + down);
                let (best, _) = est.best(&peer.0).expect("samples");
                target_sq += (target - truth).powi(2);
                best_sq += (best.offset_us - truth).powi(2);
                n += 1.0;
            }
        }
    }
    let (target, best) = ((target_sq / n).sqrt(), (best_sq / n).sqrt());
    assert!(target < 500.0, "target off by {target} µs (rms)");
    assert!(
        best > 2.0 * target,
        "8 samples: {best} µs, the lines: {target} µs"
    );
}
