//! One module per subcommand; [`run`] dispatches.

mod blacklist;
mod conformance;
mod demo;
mod export;
mod ingest;
mod library;
mod node;
mod queue;
mod status;

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Command, LogFormat};
use crate::config::Parsed;
use crate::paths;

/// Runs the parsed command line.
pub fn run(parsed: Parsed) -> Result<ExitCode> {
    if matches!(parsed.cli.command, Command::Config { .. }) {
        print!("{}", crate::config::show(&parsed)?);
        return Ok(ExitCode::SUCCESS);
    }
    let cli = parsed.cli;
    let json_logs = cli.log_format == LogFormat::Json;
    // Created only by the commands that keep state (conformance needs none).
    let flag = cli.data_dir;
    let data_dir = move || paths::data_dir(flag);
    let config_flag = cli.config_dir;
    let config_dir = move || paths::config_dir(config_flag);
    match cli.command {
        Command::Conformance { dir } => conformance::run(&dir),
        Command::Ingest { library, jobs } => ingest::run(&data_dir()?, &library, jobs, json_logs),
        Command::Library { json } => library::run(&data_dir()?, json),
        Command::ExportHls { track_hash, dir } => export::run(&data_dir()?, &track_hash, &dir),
        Command::Demo {
            tracks,
            nodes,
            seconds,
        } => demo::run(&data_dir()?, tracks, nodes, seconds, json_logs),
        Command::Bootstrap { seed_queue, node } => {
            node::bootstrap(&data_dir()?, &config_dir()?, &seed_queue, &node, json_logs)
        }
        Command::Run { network, node } => {
            node::run(&data_dir()?, &config_dir()?, network, &node, json_logs)
        }
        Command::Blacklist { action } => blacklist::run(&data_dir()?, &config_dir()?, &action),
        Command::Queue { action } => queue::run(&data_dir()?, &config_dir()?, &action),
        Command::Status { http, json } => status::run(&data_dir()?, http, json),
        Command::Config { .. } => Ok(ExitCode::SUCCESS),
    }
}
