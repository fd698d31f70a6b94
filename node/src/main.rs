//! `chorus`: the Chorus radio node's command-line interface.
//!
//! # Layout
//! - `cli`: the command line (clap).
//! - `logging`: `tracing` on stderr, text or JSON.
//! - `paths`: the data directory.
//! - `commands`: one module per subcommand.
//! - `node`: a running node (the driver between the network and the consensus state machine).
//! - `net`: the libp2p swarm and its event loop.
//! - `fetch`: the segment exchange.
//! - `clock`: network time.
//! - `state`: identity, chain and peer addresses on disk.
//! - `blacklist`: the local blacklist.
//! - `retention`: evicting fetched tracks above the store budget.
//! - `http`: the HTTP API.

mod blacklist;
mod cli;
mod clock;
mod commands;
mod fetch;
mod http;
mod live;
mod logging;
mod metrics;
mod net;
mod node;
mod paths;
mod retention;
mod state;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    logging::init(cli.log_format);
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(event = "error", "{}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, "a: b: c", leaving out a cause whose text the message before it
/// already contains (many errors quote their source).
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}
