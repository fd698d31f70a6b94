//! `chorus`: the Chorus radio node as a library, so that the `chorus` binary and test tools
//! (the `evil-peer` attacker of the end-to-end tests) share one implementation of the protocol.
//!
//! # Layout
//! - `cli`: the command line (clap).
//! - `logging`: `tracing` on stderr, text or JSON.
//! - `paths`: the data directory.
//! - `commands`: one module per subcommand.
//! - `node`: a running node: the driver between the network, the consensus state machine and
//!   the playback state machine.
//! - `net`: the libp2p swarm and its event loop.
//! - `fetch`: the segment exchange.
//! - `clock`: network time.
//! - `state`: identity, chain and peer addresses on disk.
//! - `blacklist`: the local blacklist.
//! - `retention`: evicting fetched tracks above the store budget.
//! - `supervise`: spawned tasks that never end silently.
//! - `http`: the HTTP API.

pub mod blacklist;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod desk;
pub mod enrollment;
pub mod fetch;
pub mod files;
pub mod http;
pub mod icy;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod node;
pub mod operator;
pub mod paths;
pub mod queue;
pub mod ratelog;
pub mod requests;
pub mod retention;
pub mod state;
pub mod supervise;

/// The libp2p the node is built on, for tools that speak its protocol (the tests' attacker).
pub use libp2p;
