//! Shared settings of the seeded runs.

#![allow(dead_code)]

use chorus_sim::SimConfig;
use chorus_sim::config::TrackLengths;

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
