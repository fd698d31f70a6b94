//! Misbehaving nodes: they never break agreement among honest nodes and win no more than their
//! share of identities.

mod common;

use chorus_sim::adversary::{Adversaries, AdversaryKind};
use chorus_sim::report::stats::binomial_sf;
use chorus_sim::run;
use common::cheap;

fn with(kinds: &[(AdversaryKind, usize)], mut c: chorus_sim::SimConfig) -> chorus_sim::SimConfig {
    c.adversaries = kinds
        .iter()
        .map(|&(kind, count)| Adversaries { kind, count })
        .collect();
    c
}

#[test]
fn equivocators_never_win() {
    let c = with(&[(AdversaryKind::Equivocate, 3)], cheap(10, 40, 5));
    let report = run(c);
    assert!(report.disagreeing_slots.is_empty(), "{report}");
    assert_eq!(report.incomplete_nodes, 0, "{report}");
    assert_eq!(report.wins.adversary_wins, 0, "{report}");
    assert!(
        report.replays > 0,
        "an equivocator with the lowest ticket turns its slot into a replay\n{report}"
    );
}

#[test]
fn rule_breakers_and_spammers_never_win_nor_split_the_honest_nodes() {
    let c = with(
        &[(AdversaryKind::WrongRules, 2), (AdversaryKind::Spam, 2)],
        cheap(10, 30, 6),
    );
    let report = run(c);
    assert!(report.disagreeing_slots.is_empty(), "{report}");
    assert_eq!(report.incomplete_nodes, 0, "{report}");
    assert_eq!(
        report.wins.adversary_wins_by_kind.get("wrong-rules"),
        None,
        "{report}"
    );
    assert!(report.violations > 0, "{report}");
    assert!(report.traffic.contains_key("spam"), "{report}");
}

#[test]
fn adversaries_win_no_more_than_their_share() {
    // k = 5 of n = 11 identities: four that can win (late, withholding, lying) and an equivocator.
    let c = with(
        &[
            (AdversaryKind::Late, 1),
            (AdversaryKind::Withhold, 2),
            (AdversaryKind::Liar, 1),
            (AdversaryKind::Equivocate, 1),
        ],
        cheap(11, 120, 8),
    );
    let report = run(c);
    assert!(report.disagreeing_slots.is_empty(), "{report}");
    let w = &report.wins;
    assert_eq!(w.adversary_wins_by_kind.get("equivocate"), None, "{report}");
    let p = w.adversary_fair_share / w.slots_won as f64;
    // Protocol 1.1's enrollment ramp (PROTOCOL.md 12.3): until slot 8 + 8 only the genesis
    // creator (honest) is eligible; it carries at most 4 Enrolls per slot it wins from slot 8,
    // so the 10 others are enrolled at slot 10 at the earliest and eligible from slot 18. Each
    // won slot from then on counts 5/11; those before count less, down to 0.
    let early = 18 - 5;
    let after_ramp = (w.slots_won - early) as f64 * 5.0 / 11.0;
    assert!(
        w.adversary_fair_share >= after_ramp && p <= 5.0 / 11.0 + 1e-9,
        "fair share {} for {} slots won\n{report}",
        w.adversary_fair_share,
        w.slots_won
    );
    let tail = binomial_sf(w.slots_won, p, w.adversary_wins);
    assert!(
        tail >= 0.001,
        "P(X >= {}) = {tail} under Binomial({}, {p})\n{report}",
        w.adversary_wins,
        w.slots_won
    );
    assert_eq!(tail, w.adversary_win_p);
}

/// Regression, seed 4: over WAN with 5 % loss, an equivocator (or a late proposer) split the
/// honest nodes at finality of the last slot (34: agreement 0.6667), because some nodes held
/// only one of its bodies. The fork rule heals such splits within two slots, but the run used to
/// stop right at the last slot's finality; it now settles two slots first. Seeds 6 and 7 failed
/// the same way. Any change to what nodes propose, or to when forks are evaluated, moves the
/// run: since the own pick passed over tracks in flight, seed 3 was the one that split at the
/// last slot; since forks are evaluated one second after a peer turns to another chain (and
/// the Decisions made on a replaced chain are dropped on adoption), seed 8 is (at slots 17 and
/// 34). Seeds 1 to 39 all end with every slot agreed: seed 4's stable split
/// (docs/open-problems.md) does not arise in this run any more, though its condition remains.
#[test]
fn regression_split_at_the_last_finality_heals() {
    let mut c = with(
        &[
            (AdversaryKind::Equivocate, 2),
            (AdversaryKind::Late, 1),
            (AdversaryKind::Withhold, 1),
        ],
        cheap(10, 30, 8),
    );
    c.latency = chorus_sim::latency::Latency::Wan;
    c.loss = 0.05;
    let report = run(c);
    assert_eq!(report.forked_at_finality.last(), Some(&34), "{report}");
    assert!(report.disagreeing_slots.is_empty(), "{report}");
    assert_eq!(
        report.wins.adversary_wins_by_kind.get("equivocate"),
        None,
        "{report}"
    );
}

/// The capture attack of PROTOCOL.md 12.2: withholding adversaries serve none of their tracks,
/// so each slot they win plays nothing anywhere. In version 1 every honest node then reports
/// nothing played, is ineligible five slots later, and only adversaries can win there: once
/// one such slot is captured, every fifth slot after it is too, and their share grows far
/// beyond their identities'. With 12.2 the honest nodes report `unavailable`, stay eligible,
/// and the adversaries win their share, no more; the honest nodes share theirs fairly.
#[test]
fn withheld_winners_capture_slots_in_version_1_not_in_1_1() {
    use chorus_sim::config::Protocol;
    let attack = |protocol: Protocol| {
        let mut c = with(
            &[(AdversaryKind::Withhold, 2)],
            common::cheapest(10, 200, 5),
        );
        // Withholders split the honest nodes at finality now and then (their gossip reaches
        // half of them): the periodic Status lets the fork rule heal it.
        c.status_interval_ms = None;
        c.protocol = protocol;
        run(c)
    };

    let v1 = attack(Protocol::V1);
    assert!(v1.disagreeing_slots.is_empty(), "{v1}");
    let w = &v1.wins;
    assert!(v1.withheld_slots > 0, "{v1}");
    assert!(
        w.adversary_wins as f64 > 2.5 * w.adversary_fair_share,
        "version 1 is captured\n{v1}"
    );
    assert!(w.adversary_win_p < 1e-6, "{v1}");

    let v11 = attack(Protocol::V1_1);
    assert!(v11.disagreeing_slots.is_empty(), "{v11}");
    assert_eq!(v11.incomplete_nodes, 0, "{v11}");
    assert!(v11.withheld_slots > 0, "{v11}");
    let w = &v11.wins;
    assert_eq!(
        w.slots_won,
        200 - common::creator_delay_replays(),
        "no slot is a replay but those before the genesis creator may propose: {v11}"
    );
    assert!(w.adversary_win_p >= 0.001, "{v11}");
    assert!(
        (w.adversary_wins as f64) < 1.5 * w.adversary_fair_share,
        "the adversaries win about their share\n{v11}"
    );
    assert!(w.fairness_p > 0.01, "honest nodes share fairly\n{v11}");
}
