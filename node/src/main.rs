//! `chorus`: the Chorus radio node's command-line interface (the library `chorus` holds the
//! node itself).

use std::process::ExitCode;

use chorus::{cli, commands, logging};
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
