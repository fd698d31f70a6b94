//! Shared settings of the seeded runs.

#![allow(dead_code)]

use chorus_consensus::Rules;
use chorus_sim::SimConfig;
use chorus_sim::config::TrackLengths;

/// Replays at the start of every protocol 1.1 run: the genesis creator is enrolled at slot 0 and
/// may propose from slot `enroll_delay` (8) on (PROTOCOL.md 12.3), and nobody else is enrolled
/// before it wins a slot, so slots L .. 7 (5, 6 and 7) replay the genesis queue.
pub fn creator_delay_replays() -> u64 {
    let rules = Rules::default();
    rules.enroll_delay - rules.lookahead
}

/// A small LAN network with short tracks: a slot costs a few milliseconds of simulation.
pub fn cheap(nodes: usize, slots: u64, seed: u64) -> SimConfig {
    SimConfig {
        nodes,
        slots,
        seed,
        track_ms: TrackLengths {
            min_ms: 20_000,
            max_ms: 40_000,
        },
        ..SimConfig::default()
    }
}

/// Cheaper still for thousands of slots: 5 to 10 s tracks and (almost) no periodic Status,
/// which only fork healing needs.
pub fn cheapest(nodes: usize, slots: u64, seed: u64) -> SimConfig {
    SimConfig {
        track_ms: TrackLengths {
            min_ms: 5_000,
            max_ms: 10_000,
        },
        status_interval_ms: Some(600_000),
        ..cheap(nodes, slots, seed)
    }
}
