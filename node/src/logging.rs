//! Logging: `tracing` to stderr, filtered by RUST_LOG (default `info`), as text or JSON.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::debug_fn;

use crate::cli::LogFormat;

/// Libraries' lines that tell an operator nothing, each with the level it is shown from, and
/// why. A `RUST_LOG` that asks for `debug`, `trace` or the target by name shows them again.
const QUIET: [(&str, &str); 5] = [
    // request-response warns once per inbound stream dropped at the per-connection limit: a
    // peer opening a thousand streams would write a thousand lines (docs/security.md). The
    // limit is ours and on purpose.
    ("libp2p_request_response", "error"),
    // The swarm's only INFO line has no message (its peer id, which the node logs itself):
    // an empty line in text logs.
    ("libp2p_swarm", "warn"),
    // "Dropping existing deny/accept future in favor of new one": a peer renewed its relay
    // reservation before the last answer; nothing is wrong.
    ("libp2p_relay", "error"),
    // "Failed to trigger bootstrap: No known peers." on a lone bootstrap node, whenever its
    // routing table changes; the node bootstraps the DHT itself once it knows a peer.
    ("libp2p_kad", "error"),
    // "estimating duration from bitrate" for every ADTS segment decoded, every few seconds;
    // segment durations come from the manifest.
    ("symphonia_codec_aac", "warn"),
];

/// The [`QUIET`] targets to quiet for a `RUST_LOG` of `asked`.
fn quieted(asked: &str) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
    let verbose = asked.contains("debug") || asked.contains("trace");
    QUIET
        .into_iter()
        .filter(move |(target, _)| !verbose && !asked.contains(target))
}

/// Installs the global subscriber.
pub fn init(format: LogFormat) {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let asked = std::env::var("RUST_LOG").unwrap_or_default();
    for (target, level) in quieted(&asked) {
        if let Ok(quiet) = format!("{target}={level}").parse() {
            filter = filter.add_directive(quiet);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_noise_is_quiet_unless_asked_for() {
        assert_eq!(quieted("").count(), QUIET.len());
        assert_eq!(quieted("info").count(), QUIET.len());
        assert_eq!(quieted("info,libp2p_swarm=info").count(), QUIET.len() - 1);
        assert!(quieted("info,libp2p_swarm=info").all(|(t, _)| t != "libp2p_swarm"));
        assert_eq!(quieted("debug").count(), 0);
        assert_eq!(quieted("info,chorus::net=trace").count(), 0);
    }
}
