//! Churn: crashes with restarts from the persisted chain, leaves and joins.

mod common;

use chorus_sim::run;
use common::cheap;

#[test]
fn churn_keeps_agreement_among_live_honest_nodes() {
    for seed in [1, 2] {
        let mut c = cheap(12, 24, seed);
        c.churn = 0.1;
        let report = run(c);
        let churn = report.churn;
        assert!(
            churn.crashes > 0 && churn.restarts > 0 && churn.joins > 0 && churn.leaves > 0,
            "seed {seed}: every kind of churn happened\n{report}"
        );
        assert!(report.disagreeing_slots.is_empty(), "seed {seed}\n{report}");
        assert_eq!(report.incomplete_nodes, 0, "seed {seed}\n{report}");
        // Protocol 1.1: the slots before the genesis creator may propose are replays, no other.
        assert_eq!(
            report.replays,
            common::creator_delay_replays(),
            "seed {seed}\n{report}"
        );
    }
}

#[test]
fn heavy_churn_with_loss_keeps_agreement() {
    let mut c = cheap(16, 20, 7);
    c.churn = 0.3;
    c.loss = 0.05;
    c.latency = chorus_sim::latency::Latency::Range(5.0, 80.0);
    let report = run(c);
    assert!(report.churn.restarts >= 10, "{report}");
    assert!(report.disagreeing_slots.is_empty(), "{report}");
    assert_eq!(report.incomplete_nodes, 0, "{report}");
}

#[test]
fn churn_and_adversaries_are_reproducible() {
    let mut c = cheap(10, 12, 42);
    c.churn = 0.2;
    c.loss = 0.05;
    c.adversaries = vec!["equivocate:1".parse().unwrap(), "spam:1".parse().unwrap()];
    let (a, b) = (run(c.clone()), run(c));
    assert_eq!(a.events, b.events);
    assert_eq!(a.churn, b.churn);
    assert_eq!(a.final_chain_hash, b.final_chain_hash);
    assert_eq!(a.wins.adversary_wins, b.wins.adversary_wins);
    assert_eq!(a.forked_at_finality, b.forked_at_finality);
}
