//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Chorus: a fully decentralized community-radio node.
///
/// Every node pre-chunks its own music library into HLS segments; the nodes of a network agree,
/// slot by slot, on what plays next and play it at the same moment. Logs go to stderr; set
/// RUST_LOG (for example RUST_LOG=debug) to change how much is logged.
#[derive(Debug, Parser)]
#[command(name = "chorus", version, propagate_version = true)]
pub struct Cli {
    /// Where all state lives (store, library index). Defaults to the platform's data
    /// directory, for example ~/.local/share/chorus on Linux.
    #[arg(long, global = true, env = "CHORUS_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log line formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with an `event` field, for log pipelines and alerts.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ingest a music library: transcode every audio file into canonical segments in the store.
    ///
    /// Audio is recognised by content (MP3, FLAC, Ogg Vorbis, Opus, WAV, AAC/M4A and whatever
    /// else FFmpeg reads). Unchanged files are skipped, changed files re-ingested, removed files
    /// dropped from the index. Ctrl-C stops cleanly; the next run resumes.
    Ingest {
        /// The library folder, searched recursively (symbolic links are followed, loops are not).
        #[arg(long, value_name = "DIR")]
        library: PathBuf,
        /// Files transcoded at once. Defaults to the number of cores.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
        jobs: Option<u16>,
    },
    /// List the ingested tracks.
    Library {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write a track's playlist and segments as plain files that any web server can serve.
    ExportHls {
        /// The track's hash (as `chorus library` shows it; a unique prefix of 8 or more hex
        /// digits is enough).
        track_hash: String,
        /// The folder to write `index.m3u8` and the segments into.
        dir: PathBuf,
    },
    /// Check this build against protocol conformance vectors (ticket, replay and chain files).
    ///
    /// Prints one line per failure and `N passed, M failed`; exits non-zero on any failure.
    Conformance {
        /// A folder of vector files (JSON), such as the project's shared/vectors.
        dir: PathBuf,
    },
    /// Run a local demo with no configuration: generate a small library of music, ingest it
    /// and show the result.
    Demo {
        /// How many demo tracks to generate.
        #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u16).range(1..=50))]
        tracks: u16,
    },
}
