//! `chorus-sim`: a deterministic discrete-event simulator that runs many copies of the real
//! `chorus-consensus` state machine on a virtual clock, over a simulated network with latency,
//! loss, partitions and clock skew, and reports agreement, replays and traffic. One seed makes a
//! run reproducible.
//!
//! # Layout
//! - [`rng`]: the seeded PRNG (the only randomness).
//! - [`adversary`]: the kinds of misbehaving nodes.
//! - [`latency`]: per-hop latency presets (lan, wan with heavy tails, ranges).
//! - [`topology`]: the gossip mesh and its hop counts.
//! - [`config`]: the run's parameters, from flags or a TOML scenario.
//! - [`world`]: the event loop driving the machines.
//! - [`report`]: what a run measured (agreement, heal times, adversary wins, fairness, traffic).
//!
//! What remains is listed in docs/sim.md.
#![deny(missing_docs)]

pub mod adversary;
pub mod config;
pub mod latency;
pub mod report;
pub mod rng;
pub mod topology;
pub mod world;

pub use config::SimConfig;
pub use report::Report;
pub use world::World;

/// Runs one simulation.
pub fn run(cfg: SimConfig) -> Report {
    World::new(cfg).run()
}
