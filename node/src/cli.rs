//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use libp2p::Multiaddr;

/// The HTTP API's default port (on 127.0.0.1).
pub const DEFAULT_HTTP_PORT: u16 = 7300;
/// The default libp2p port (TCP and QUIC).
pub const DEFAULT_P2P_PORT: u16 = 4747;

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

    /// Where configuration lives (the blacklist). Defaults to the platform's config
    /// directory, for example ~/.config/chorus on Linux.
    #[arg(long, global = true, env = "CHORUS_CONFIG_DIR", value_name = "DIR")]
    pub config_dir: Option<PathBuf>,

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
    /// Run a local demo with no configuration: generate a small library of music for each of
    /// three nodes, bootstrap a network of them on loopback and show consensus in the log.
    /// Ctrl-C stops it.
    Demo {
        /// How many demo tracks each node's library holds.
        #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u16).range(5..=50))]
        tracks: u16,
        /// How many nodes.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=10))]
        nodes: u16,
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long, value_name = "SECONDS")]
        seconds: Option<u64>,
    },
    /// Start a new network from a seed queue and run as its first node.
    ///
    /// The seed queue (TOML) names the network, its start time and the first five tracks:
    ///
    ///     name = "Friday Night Radio"
    ///     start = "in 30s"             # or an RFC 3339 time
    ///     [[track]]
    ///     path = "Artist - Song.flac"  # relative to --library; exactly 5 entries
    ///     [rules]                      # optional overrides
    ///     proposal_pct = 25
    ///
    /// Prints the network id and the addresses to give to others (`chorus run --network ID
    /// --peer ADDRESS`).
    Bootstrap {
        /// The seed queue file.
        #[arg(long, value_name = "FILE")]
        seed_queue: PathBuf,
        /// The node's options.
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Join a network (or resume the one in the data directory) and run the node.
    Run {
        /// The network id (64 hex digits, printed by `chorus bootstrap`). Needed the first
        /// time only; afterwards the data directory remembers it.
        #[arg(long, value_name = "ID")]
        network: Option<String>,
        /// The node's options.
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Manage the local blacklist: tracks this node never proposes nor plays. A running node
    /// applies changes at the next slot.
    Blacklist {
        /// What to do with it.
        #[command(subcommand)]
        action: BlacklistAction,
    },
    /// The DJ's queue: tracks of this node's library it proposes first, in order, one per
    /// proposal window it is eligible in (then its automatic pick). A running node sees
    /// changes at once.
    Queue {
        /// What to do with it.
        #[command(subcommand)]
        action: QueueAction,
    },
    /// The configuration file (`config.toml` in the config directory: one key per flag of
    /// `chorus run`, which flags given on the command line override).
    Config {
        /// What to do with it.
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Show a running node's status (from its HTTP API) as a table.
    Status {
        /// The node's HTTP address (default: the one the node in the data directory wrote).
        #[arg(long, value_name = "ADDR")]
        http: Option<SocketAddr>,
        /// Print the JSON document instead.
        #[arg(long)]
        json: bool,
    },
}

/// Options of a running node.
#[derive(Debug, Args, Clone)]
pub struct NodeArgs {
    /// The music library to ingest and propose from.
    #[arg(long, value_name = "DIR")]
    pub library: Option<PathBuf>,
    /// Peers to dial, as multiaddrs with /p2p/ (printed by the node that gives them).
    #[arg(long = "peer", value_name = "MULTIADDR")]
    pub peers: Vec<Multiaddr>,
    /// Addresses to listen on (default: TCP and QUIC on port 4747 of every IPv4 and IPv6
    /// interface).
    #[arg(long = "listen", value_name = "MULTIADDR")]
    pub listen: Vec<Multiaddr>,
    /// Do not look for peers on the LAN with mDNS.
    #[arg(long)]
    pub no_mdns: bool,
    /// Do not ask a UPnP router to forward a port to this node.
    #[arg(long)]
    pub no_upnp: bool,
    /// Where the HTTP API listens (loopback by default).
    #[arg(long, value_name = "ADDR", default_value_t = SocketAddr::from(([127, 0, 0, 1], DEFAULT_HTTP_PORT)))]
    pub http_listen: SocketAddr,
    /// Store budget in MiB: fetched tracks (never the own library or the coming slots) are
    /// evicted least recently used above it.
    #[arg(long, value_name = "MIB", default_value_t = 2048)]
    pub store_budget_mb: u64,
    /// Files transcoded at once while ingesting. Defaults to the number of cores.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
    /// Audio output: auto (the sound card if there is one, else null with a warning), cpal
    /// (the sound card; failing to open it is an error), null (no sound, same timing) or
    /// wav:PATH (writes what it plays to PATH, 48 kHz stereo float, and a timing row per
    /// buffer to PATH.csv).
    #[arg(long, value_name = "OUTPUT", default_value = "auto")]
    pub audio: chorus_media::player::SinkSpec,
    /// Volume in percent (0 to 100); local to this node. Change it while running with
    /// `curl -X POST 'http://127.0.0.1:7300/volume?level=N'`.
    #[arg(long, value_name = "PERCENT", default_value_t = 100, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub volume: u8,
    /// Start muted (unmute with `curl -X POST 'http://127.0.0.1:7300/mute?on=false'`).
    #[arg(long)]
    pub mute: bool,
    /// Listener requests wait for the operator's approval (on the page, with the operator link).
    #[arg(long)]
    pub approve_requests: bool,
    /// Minutes before a requested track may be requested again.
    #[arg(long, value_name = "MINUTES", default_value_t = 60)]
    pub request_cooldown_minutes: u64,
    /// Requests one listener (an IPv4 address, an IPv6 /64) may make per hour.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub requests_per_hour: u32,
    /// The network's nodes reach each other on private addresses (a VPN, one machine, a test
    /// network): let AutoNAT confirm those too. Not for a node on the internet that shares a
    /// LAN with other nodes (they would confirm its LAN address).
    #[arg(long)]
    pub autonat_any_address: bool,
    /// Testing: add this many ms to the node's view of the system clock.
    #[arg(long, hide = true, default_value_t = 0, allow_hyphen_values = true)]
    pub clock_skew_ms: i64,
    /// Testing: make the node's clock run this many parts per million fast (negative: slow),
    /// as a real oscillator does (within about ±100 ppm); at most ±1000.
    #[arg(long, hide = true, default_value_t = 0, allow_hyphen_values = true,
        value_parser = clap::value_parser!(i64).range(-1000..=1000))]
    pub clock_rate_ppm: i64,
    /// Testing: serve every block with one byte flipped.
    #[arg(long, hide = true)]
    pub serve_corrupt_blocks: bool,
    /// Testing: publish malformed gossip besides the real messages.
    #[arg(long, hide = true)]
    pub send_garbage: bool,
}

/// `chorus config` actions.
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print the configuration `chorus run` would use, and where each value comes from
    /// (default, the config file, the command line); give flags of `chorus run` to see them
    /// override the file.
    Show {
        /// The network to join.
        #[arg(long, value_name = "ID")]
        network: Option<String>,
        /// The flags of `chorus run`.
        #[command(flatten)]
        node: NodeArgs,
    },
}

/// `chorus blacklist` actions.
#[derive(Debug, Subcommand)]
pub enum BlacklistAction {
    /// Add a rule: a track hash, or --title / --artist text (case-insensitive substring).
    Add(BlacklistRule),
    /// Remove a rule given the same way it was added.
    Remove(BlacklistRule),
    /// List the rules and the library tracks they catch.
    List,
}

/// `chorus queue` actions.
#[derive(Debug, Subcommand)]
pub enum QueueAction {
    /// Queue a track of the library: by hash, or the one track whose title or artist contains
    /// the text; or every line of a file (a hash, or a title's text).
    Add(QueueAdd),
    /// Remove an entry: its id (as `chorus queue list` shows it) or its track hash.
    Remove {
        /// The entry's id or track hash.
        entry: String,
    },
    /// List the tracks still to propose, in order.
    List,
    /// Empty the queue.
    Clear,
}

/// What `chorus queue add` queues.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct QueueAdd {
    /// A track hash (64 hex digits, as `chorus library` shows).
    pub track_hash: Option<String>,
    /// The track whose title contains this text (any case).
    #[arg(long)]
    pub title: Option<String>,
    /// The track whose artist contains this text (any case).
    #[arg(long)]
    pub artist: Option<String>,
    /// A file with one track per line: a hash, or text of its title (`#` starts a comment).
    #[arg(long, value_name = "PATH")]
    pub file: Option<std::path::PathBuf>,
}

/// One blacklist rule on the command line.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct BlacklistRule {
    /// A track hash (64 hex digits, as `chorus library` shows).
    pub track_hash: Option<String>,
    /// Tracks whose title contains this text.
    #[arg(long)]
    pub title: Option<String>,
    /// Tracks whose artist contains this text.
    #[arg(long)]
    pub artist: Option<String>,
}
