//! The report of a seed does not depend on how many threads run the machines.

mod common;

use chorus_sim::adversary::{Adversaries, AdversaryKind};
use chorus_sim::config::Partition;
use chorus_sim::{SimConfig, run};

/// The report as JSON, without the simulator's own speed.
fn outcome(cfg: SimConfig) -> serde_json::Value {
    let mut report = serde_json::to_value(run(cfg)).expect("a report serializes");
    if let Some(fields) = report.as_object_mut() {
        fields.remove("wall_s");
        fields.remove("events_per_s");
    }
    report
}

fn same_for_any_threads(cfg: SimConfig) {
    let one = outcome(SimConfig {
        threads: 1,
        ..cfg.clone()
    });
    for threads in [2, 3] {
        let many = outcome(SimConfig {
            threads,
            ..cfg.clone()
        });
        assert_eq!(one, many, "{threads} threads");
    }
}

#[test]
fn threads_do_not_change_a_lossy_run() {
    let mut c = common::cheap(60, 4, 3);
    c.loss = 0.05;
    same_for_any_threads(c);
}

#[test]
fn threads_do_not_change_a_run_with_churn_adversaries_partitions_and_skew() {
    let mut c = common::cheap(40, 8, 5);
    c.loss = 0.05;
    c.skew_ms = 300;
    c.churn = 0.1;
    c.partitions = vec![Partition {
        at_slot: 4,
        split_pct: 50,
        slots: 2,
    }];
    c.adversaries = [
        (AdversaryKind::Spam, 2),
        (AdversaryKind::Withhold, 2),
        (AdversaryKind::Late, 1),
        (AdversaryKind::Equivocate, 1),
    ]
    .into_iter()
    .map(|(kind, count)| Adversaries { kind, count })
    .collect();
    same_for_any_threads(c);
}
