//! `evil-peer`: an attacker for the end-to-end tests, built on the node's own protocol code
//! (the `chorus` library), so that every attack speaks the real protocol over real libp2p
//! connections. docs/security.md lists the attacks and the tests that run them.
//!
//! - `poison`: joins a network as a node (it enrolls like any other: under protocol 1.1 a
//!   ground identity cannot choose its slot, PROTOCOL.md 12.3), proposes in every slot it is
//!   eligible for, and wins about its share; its track's manifest is hostile: `#EXTINF:-1` (panicked the
//!   HLS parser of every node), NaN, thousands of blocks behind a TrackRef that claims two, or
//!   one it never serves (a withheld winner).
//! - `time-liar`: several fresh identities connect to one node and answer its `/chorus/time/1`
//!   pings from a clock set off by a chosen amount.
//! - `chain-liar`: answers `Chain{from_slot}` with an honest peer's records in which two slots'
//!   TrackRefs are changed (duration doubled, audio swapped) and every chain hash kept.
//! - `sybil-status`: one connection carrying valid Statuses of many fresh identities that all
//!   report another chain at the current head.
//! - `flood`: one connection carrying hundreds of identities' bloated Status messages and forged
//!   Decisions, a hundred block requests in parallel, and thousands of DHT provider records.
//!
//! Each mode runs until killed and prints what it did on stdout, one line per fact.
//!
//! One module per attack: `poison`, `time_liar`, `chain_liar`, `sybil_status` and `flood`.

mod chain_liar;
mod flood;
mod poison;
mod sybil_status;
mod time_liar;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use chorus::clock::Clock;
use chorus::libp2p::PeerId;
use chorus::metrics::Metrics;
use chorus::net::Event;
use chorus_consensus::Hash32;
use clap::{Parser, Subcommand, ValueEnum};
use libp2p_identity::Keypair;
use tokio::sync::mpsc;

#[derive(Parser)]
#[command(about = "An attacker speaking the Chorus protocol, for tests")]
struct Cli {
    #[command(subcommand)]
    attack: Attack,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum Poison {
    /// `#EXTINF:-1,` on a segment.
    NegativeExtinf,
    /// `#EXTINF:NaN,` on a segment.
    NanExtinf,
    /// 3000 segments behind a TrackRef that claims 2.
    ManyBlocks,
    /// A well-formed manifest that the attacker never serves (nor its blocks).
    Withhold,
}

#[derive(Subcommand)]
enum Attack {
    /// Win slots with a hostile manifest.
    Poison {
        /// The attacker's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The network id (hex).
        #[arg(long)]
        network: String,
        /// A peer of the network to dial.
        #[arg(long)]
        peer: String,
        /// Which poison: one track of the attacker's library per `--manifest` (it proposes
        /// one that has not won lately, so each wins in turn).
        #[arg(long, value_enum, default_values_t = [Poison::NegativeExtinf])]
        manifest: Vec<Poison>,
        /// Duration the TrackRef claims, ms.
        #[arg(long, default_value_t = 7000)]
        duration_ms: u64,
    },
    /// Serve a joiner a chain whose TrackRefs were changed under intact chain hashes.
    ChainLiar {
        /// The network id (hex).
        #[arg(long)]
        network: String,
        /// An honest peer to copy the genesis and the chain from.
        #[arg(long)]
        peer: String,
        /// Where to listen for the joiner.
        #[arg(long, default_value = "/ip4/127.0.0.1/tcp/0")]
        listen: String,
    },
    /// Valid Statuses of many fresh identities claiming another head, over one connection.
    SybilStatus {
        /// The network id (hex).
        #[arg(long)]
        network: String,
        /// The node to connect to.
        #[arg(long)]
        peer: String,
        /// Identities.
        #[arg(long, default_value_t = 6)]
        identities: usize,
    },
    /// Flood one node over one connection.
    Flood {
        /// The network id (hex).
        #[arg(long)]
        network: String,
        /// The node to flood.
        #[arg(long)]
        peer: String,
        /// Identities signing the gossip.
        #[arg(long, default_value_t = 300)]
        identities: usize,
        /// Block requests in flight at once.
        #[arg(long, default_value_t = 100)]
        wants: usize,
        /// DHT provider records announced.
        #[arg(long, default_value_t = 3000)]
        records: usize,
    },
    /// Answer time pings from a lying clock, with several identities.
    TimeLiar {
        /// The node to lie to.
        #[arg(long)]
        peer: String,
        /// Identities (each its own connection).
        #[arg(long, default_value_t = 5)]
        identities: usize,
        /// How far off the lying clocks are, ms.
        #[arg(long)]
        lie_ms: i64,
    },
}

fn main() -> Result<()> {
    chorus::logging::init(chorus::cli::LogFormat::Json);
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match cli.attack {
            Attack::Poison {
                data_dir,
                network,
                peer,
                manifest,
                duration_ms,
            } => poison::poison(data_dir, &network, &peer, &manifest, duration_ms).await,
            Attack::TimeLiar {
                peer,
                identities,
                lie_ms,
            } => time_liar::time_liar(&peer, identities, lie_ms).await,
            Attack::ChainLiar {
                network,
                peer,
                listen,
            } => chain_liar::chain_liar(&network, &peer, &listen).await,
            Attack::SybilStatus {
                network,
                peer,
                identities,
            } => sybil_status::sybil_status(&network, &peer, identities).await,
            Attack::Flood {
                network,
                peer,
                identities,
                wants,
                records,
            } => flood::flood(&network, &peer, identities, wants, records).await,
        }
    })
}

fn hex(h: &Hash32) -> String {
    h.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// A swarm of the node's own making with a fresh identity and a throwaway store.
fn swarm(
    clock_ms: i64,
) -> Result<(
    chorus::net::Client,
    tokio::sync::mpsc::Receiver<chorus::net::Event>,
    chorus::net::EventLoop,
    tempfile::TempDir,
    chorus::libp2p::PeerId,
)> {
    let key = Keypair::generate_ed25519();
    let id = key.public().to_peer_id();
    let dir = tempfile::tempdir().context("cannot make a store folder")?;
    let store =
        chorus_media::BlockStore::open(dir.path().join("blocks")).context("cannot open a store")?;
    let (client, events, event_loop) = chorus::net::new(chorus::net::NetConfig {
        keypair: key,
        mdns: false,
        upnp: false,
        autonat_any_address: false,
        store,
        clock: Arc::new(Clock::new(clock_ms)),
        metrics: Arc::new(Metrics::new()),
        corrupt_blocks: false,
        // The attacker does not hold back.
        streams_per_connection: 1024,
    })?;
    Ok((client, events, event_loop, dir, id))
}

/// Waits for the first connection (to the peer dialed) and returns that peer.
async fn connected(events: &mut mpsc::Receiver<Event>) -> Result<PeerId> {
    loop {
        match events.recv().await {
            Some(Event::Connected(p, _)) => return Ok(p),
            Some(_) => {}
            None => bail!("the network stopped"),
        }
    }
}
