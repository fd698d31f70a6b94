//! Seeded simulator runs: each asserts what the protocol must do, and each runs in seconds.

mod common;

use chorus_sim::config::Protocol;
use chorus_sim::latency::Latency;
use chorus_sim::{SimConfig, run};

fn cfg(nodes: usize, slots: u64, seed: u64) -> SimConfig {
    SimConfig {
        nodes,
        slots,
        seed,
        ..SimConfig::default()
    }
}

#[test]
fn small_lan_network_agrees_on_every_slot() {
    let report = run(cfg(10, 8, 11));
    assert_eq!(report.incomplete_nodes, 0, "{report}");
    assert!(report.disagreeing_slots.is_empty(), "{report}");
    assert_eq!(report.agreement.len(), 8);
    // Protocol 1.1: no slot but those before the genesis creator may propose needs a replay.
    assert_eq!(
        report.replays,
        common::creator_delay_replays(),
        "every node has a library: no slot should need a replay\n{report}"
    );
    // Proposals stay few whatever the size: silent proposers (PROTOCOL.md 4.2).
    let proposals = &report.traffic["proposal"];
    assert!(proposals.sent * 10.0 <= 3.5, "{report}");
}

#[test]
fn a_seed_reproduces_its_run() {
    let mut c = cfg(8, 5, 99);
    c.latency = Latency::Range(5.0, 60.0);
    c.loss = 0.05;
    c.skew_ms = 200;
    let a = run(c.clone());
    let b = run(c);
    assert_eq!(a.events, b.events);
    assert_eq!(a.agreement, b.agreement);
    assert_eq!(format!("{:?}", a.traffic), format!("{:?}", b.traffic));
    assert!(a.final_chain_hash.is_some());
    assert_eq!(a.final_chain_hash, b.final_chain_hash);
    let other = run(SimConfig {
        seed: 100,
        ..cfg(8, 5, 99)
    });
    assert_ne!(
        a.final_chain_hash, other.final_chain_hash,
        "another seed gives another run"
    );
}

#[test]
fn clock_skew_within_windows_keeps_agreement() {
    let mut c = cfg(10, 6, 5);
    c.skew_ms = 400;
    let report = run(c);
    assert!(report.disagreeing_slots.is_empty(), "{report}");
}

#[test]
fn partitions_heal_after_repair() {
    for split in [50, 80] {
        let mut c = cfg(10, 12, 21);
        c.partitions = vec![chorus_sim::config::Partition {
            at_slot: 7,
            split_pct: split,
            slots: 2,
        }];
        let report = run(c);
        // Since the consensus traffic change the healing side may catch up by following
        // (FetchChain) rather than by a counted fork adoption: assert the fork, not the path.
        assert!(
            !report.forked_at_finality.is_empty(),
            "the sides forked\n{report}"
        );
        assert!(
            report.disagreeing_slots.is_empty(),
            "split {split}: every node ends on one chain\n{report}"
        );
        assert_eq!(report.incomplete_nodes, 0, "{report}");
        let heal = report.heal_slots[0].expect("the partition healed within the run");
        assert!(
            heal <= 2,
            "split {split}: healed {heal} slots after repair\n{report}"
        );
    }
}

/// 100 nodes over WAN latencies (a heavy tail: 5 % of hops take 80 ms to 5 s) losing 10 % of
/// every message, gossip and request alike, still decide every slot identically.
///
/// Run under protocol 1, where all 100 nodes propose from slot 5: the test is about latency and
/// loss. Under 1.1 the same seed splits the honest nodes (see the ignored test below).
#[test]
fn wan_100_nodes_with_10_percent_loss_agree_on_every_slot() {
    let mut c = common::cheap(100, 8, 13);
    c.latency = Latency::Wan;
    c.loss = 0.1;
    c.protocol = Protocol::V1;
    let report = run(c);
    assert_eq!(report.incomplete_nodes, 0, "{report}");
    assert!(report.disagreeing_slots.is_empty(), "{report}");
    assert_eq!(report.agreement.len(), 8, "{report}");
    assert!(
        report.agreement.iter().all(|share| *share == 1.0),
        "every live node's decision is the majority's in every slot\n{report}"
    );
}

/// What each node receives of the consensus messages proper (proposals, tallies, decisions) per
/// slot stays about the same from 10 to 100 nodes: most nodes stay silent in Tally and Decision
/// and proposers are few (PROTOCOL.md 4), where all-to-all messages would grow tenfold. Only
/// Status grows with N, by design bounded to a few messages a second per node.
#[test]
fn consensus_traffic_per_node_does_not_grow_with_n() {
    let consensus_bytes = |nodes| {
        let mut c = common::cheap(nodes, 8, 3);
        c.loss = 0.05;
        let report = run(c);
        assert!(report.disagreeing_slots.is_empty(), "{report}");
        let bytes: f64 = ["proposal", "tally", "decision"]
            .iter()
            .map(|kind| report.traffic.get(*kind).map_or(0.0, |t| t.bytes_received))
            .sum();
        (bytes, report.traffic["status"].received)
    };
    let (small, _) = consensus_bytes(10);
    let (large, status) = consensus_bytes(100);
    assert!(small > 1000.0, "consensus messages were received: {small}");
    assert!(
        large < 2.0 * small,
        "bytes per node per slot: {small:.0} at N = 10, {large:.0} at N = 100"
    );
    assert!(status > 0.0, "Status flows at N = 100");
}

/// The same run under protocol 1.1. It found a bug: a node that missed the genesis creator's
/// proposal for slot k (10 % loss) and received its proposal for k + 1 first cached the reveal
/// `v(k + 1 - e)`, then refused the proposal for k when it fetched it (`check_reveal` walked from
/// the cached later value), decided a replay where the others decided the proposal, and the
/// split at the last slots had not healed when the run ended (agreement 0.98 on slots 11 and
/// 12). `check_reveal` now uses a cached value only at or before the reveal's index.
#[test]
fn wan_100_nodes_with_10_percent_loss_agree_on_every_slot_in_1_1() {
    let mut c = common::cheap(100, 8, 13);
    c.latency = Latency::Wan;
    c.loss = 0.1;
    let report = run(c);
    assert_eq!(report.incomplete_nodes, 0, "{report}");
    assert!(report.disagreeing_slots.is_empty(), "{report}");
    assert_eq!(report.violations, 0, "no honest node is refused\n{report}");
}
