//! Fairness: over thousands of slots every honest proposer wins its share.

mod common;

use chorus_sim::run;
use common::cheapest;

#[test]
fn honest_proposers_win_uniformly() {
    let report = run(cheapest(5, 2000, 3));
    assert!(report.disagreeing_slots.is_empty(), "{report}");
    let w = &report.wins;
    // Protocol 1.1: every slot but the first ones, before the genesis creator may propose.
    assert_eq!(
        w.slots_won,
        2000 - common::creator_delay_replays(),
        "{report}"
    );
    assert_eq!(w.fairness_df, 4, "{report}");
    assert!(w.fairness_p > 0.01, "{report}");
}
