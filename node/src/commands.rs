//! One module per subcommand; [`run`] dispatches.

mod conformance;
mod demo;
mod export;
mod ingest;
mod library;

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command, LogFormat};
use crate::paths;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let json_logs = cli.log_format == LogFormat::Json;
    // Created only by the commands that keep state (conformance needs none).
    let flag = cli.data_dir;
    let data_dir = move || paths::data_dir(flag);
    match cli.command {
        Command::Conformance { dir } => conformance::run(&dir),
        Command::Ingest { library, jobs } => ingest::run(&data_dir()?, &library, jobs, json_logs),
        Command::Library { json } => library::run(&data_dir()?, json),
        Command::ExportHls { track_hash, dir } => export::run(&data_dir()?, &track_hash, &dir),
        Command::Demo { tracks } => demo::run(&data_dir()?, tracks, json_logs),
    }
}
