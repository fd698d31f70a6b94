//! Logging: `tracing` to stderr, filtered by RUST_LOG (default `info`), as text or JSON.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::debug_fn;

use crate::cli::LogFormat;

/// Installs the global subscriber.
pub fn init(format: LogFormat) {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // request-response warns once per inbound stream dropped at the per-connection limit: a
    // peer opening a thousand streams would write a thousand lines (docs/security.md). The
    // limit is ours and on purpose; its lines come back with RUST_LOG=debug or by naming it.
    let asked = std::env::var("RUST_LOG").unwrap_or_default();
    if !["debug", "trace", "libp2p_request_response"]
        .iter()
        .any(|w| asked.contains(w))
        && let Ok(quiet) = "libp2p_request_response=error".parse()
    {
        filter = filter.add_directive(quiet);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // Text lines carry the message only: messages are written to be complete sentences with
        // the values in them, and the structured fields are for the JSON form.
        LogFormat::Text => builder
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal())
            .fmt_fields(debug_fn(|w, field, value| {
                if field.name() == "message" {
                    write!(w, "{value:?}")
                } else {
                    Ok(())
                }
            }))
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
    // FFmpeg's own log lines only when asked for: ours name the file and the reason.
    let verbose =
        std::env::var("RUST_LOG").is_ok_and(|v| v.contains("debug") || v.contains("trace"));
    chorus_media::transcode::init(verbose);
}
