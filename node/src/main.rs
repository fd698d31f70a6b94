//! `chorus`: the Chorus radio node's command-line interface (the library `chorus` holds the
//! node itself).

use std::process::ExitCode;

use chorus::{commands, config, logging};

fn main() -> ExitCode {
    let parsed = match config::parse(std::env::args_os().collect()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e).trim_end());
            return ExitCode::from(2);
        }
    };
    logging::init(parsed.cli.log_format);
    let node = matches!(
        parsed.cli.command,
        chorus::cli::Command::Run { .. } | chorus::cli::Command::Bootstrap { .. }
    );
    if let Some(file) = parsed
        .file
        .as_ref()
        .filter(|_| node && !parsed.from_file.is_empty())
    {
        tracing::info!(event = "config", file = %file.display(), keys = %parsed.keys.join(","),
            "configuration file {}: {}", file.display(), parsed.keys.join(", "));
    }
    match commands::run(parsed) {
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
