//! A running node: `chorus run` and `chorus bootstrap`.
//!
//! - `join`: getting the genesis and the chain from peers (PROTOCOL.md 11).
//! - `driver`: the thin loop that feeds the consensus state machine from the network and the
//!   clock, turns its actions into network calls and logs, and follows the schedule.
//! - `snapshot`: the JSON of `GET /status`.

mod driver;
pub use driver::track_name;
mod join;
pub mod snapshot;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use chorus_consensus::{Chain, Consensus, Hash32, SignedGenesis, TrackRef};
use chorus_media::ingest::Library;
use chorus_media::player::{Player, PlayerConfig, SinkSpec};
use libp2p::Multiaddr;
use libp2p::identity::Keypair;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::clock::Clock;
use crate::fetch::Fetcher;
use crate::{http, net, state};

/// Everything a node needs to run.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// State: identity, store, index, genesis, chain.
    pub data_dir: PathBuf,
    /// Configuration: the blacklist.
    pub config_dir: PathBuf,
    /// The network to join (None: the one in the data directory).
    pub network: Option<Hash32>,
    /// Peers to dial.
    pub peers: Vec<Multiaddr>,
    /// Listen addresses.
    pub listen: Vec<Multiaddr>,
    /// LAN discovery.
    pub mdns: bool,
    /// The HTTP API's address.
    pub http_listen: SocketAddr,
    /// Store budget: fetched tracks are evicted above it.
    pub store_budget_bytes: u64,
    /// Testing: clock skew.
    pub clock_skew_ms: i64,
    /// The audio output.
    pub audio: SinkSpec,
    /// Volume, 0.0 to 1.0.
    pub volume: f32,
    /// Start muted.
    pub muted: bool,
    /// Testing: serve corrupt blocks.
    pub corrupt_blocks: bool,
    /// Testing: publish garbage gossip besides the real messages.
    pub garbage: bool,
}

/// How far ahead of the clock the player hands audio to a clock-paced sink (null, wav) or to
/// the device's queue: enough to ride out a busy machine, and what a volume change waits.
const PLAYER_LEAD: std::time::Duration = std::time::Duration::from_millis(150);

/// How the node gets its genesis.
pub enum Start {
    /// It was just created by `chorus bootstrap`.
    Genesis(Box<SignedGenesis>),
    /// From the data directory or from peers.
    Join,
}

/// Runs a node until `shutdown` fires. `keypair` is the node's identity and `library` its
/// ingested tracks (already scanned).
pub async fn run(
    config: NodeConfig,
    keypair: Keypair,
    library: Vec<TrackRef>,
    start: Start,
    shutdown: CancellationToken,
) -> Result<()> {
    let lib = Library::open(&config.data_dir).context("cannot open the store")?;
    let clock = Arc::new(Clock::new(config.clock_skew_ms));
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let (client, events, event_loop) = net::new(net::NetConfig {
        keypair: keypair.clone(),
        mdns: config.mdns,
        store: lib.store.clone(),
        clock: clock.clone(),
        metrics: metrics.clone(),
        corrupt_blocks: config.corrupt_blocks,
        streams_per_connection: net::behaviour::MAX_STREAMS_PER_CONNECTION,
    })?;
    let mut tasks = crate::supervise::Critical::new();
    tasks.spawn("swarm event loop", event_loop.run());
    for addr in &config.listen {
        client.listen(addr.clone()).await;
    }
    let mut dial: Vec<Multiaddr> = config.peers.clone();
    for saved in state::load_peers(&config.data_dir) {
        if let Ok(addr) = saved.parse::<Multiaddr>()
            && !dial.contains(&addr)
        {
            dial.push(addr);
        }
    }
    for addr in &dial {
        client.dial(addr.clone()).await;
    }

    let mut joiner = join::Joiner::new(client.clone(), events);
    let fresh = matches!(start, Start::Genesis(_));
    let genesis = match start {
        Start::Genesis(g) => *g,
        Start::Join => {
            match chorus_bootstrap::load_genesis(&config.data_dir, config.network.as_ref())? {
                Some(g) => g,
                None => {
                    let network = config.network.context(
                    "this data directory has no network yet: pass --network ID (from the bootstrap node's output)",
                )?;
                    let g = joiner.fetch_genesis(network, &shutdown).await?;
                    chorus_bootstrap::save_genesis(&config.data_dir, &g)?;
                    g
                }
            }
        }
    };
    joiner.set_genesis(&genesis);
    let network_id = genesis.network_id();
    info!(event = "genesis", network_id = %network_id, name = %genesis.genesis().name, "network {network_id} \"{}\"", genesis.genesis().name);

    let mut chain = Chain::new(&genesis);
    state::load_chain(&config.data_dir, &mut chain)?;
    let saved_len = chain.len();
    // A network created just now has nothing to sync.
    let synced = !fresh
        && joiner
            .sync_chain(&mut chain, clock.now_ms(), &shutdown)
            .await;
    if chain.len() != saved_len {
        state::save_chain(&config.data_dir, &chain)?;
    }
    let mut consensus = Consensus::new(keypair.clone(), chain);
    consensus.set_version(concat!("chorus/", env!("CARGO_PKG_VERSION")));
    // PROTOCOL.md 12.4: identities are free; connections are not.
    consensus.count_direct_support_only();
    let now = clock.now_ms();
    let started = consensus.chain().start(0).is_some_and(|s| now >= s);
    if synced && started {
        consensus.start_synced(now);
        info!(
            event = "joined",
            slot = consensus.chain().slot_at(now),
            "joined the network at slot {:?} with the chain synced from peers",
            consensus.chain().slot_at(now)
        );
    }
    consensus.set_library(library.clone());

    let (fetch_tx, fetch_rx) = mpsc::channel(256);
    let (fetch_events_tx, fetch_events) = mpsc::channel(256);
    tasks.spawn(
        "segment exchange",
        Fetcher::new(client.clone(), lib.store.clone(), fetch_events_tx).run(fetch_rx),
    );

    let player = Arc::new(
        Player::start(PlayerConfig {
            sink: config.audio.clone(),
            store: lib.store.clone(),
            time: clock.clone(),
            volume: config.volume,
            muted: config.muted,
            lead: PLAYER_LEAD,
        })
        .with_context(|| format!("cannot open the audio output {:?} (--audio)", config.audio))?,
    );
    info!(event = "audio_output", sink = %player.stats().sink, "audio output: {}", player.stats().sink);

    let (snapshot_tx, snapshot_rx) = watch::channel(serde_json::Value::Null);
    let (playlist_tx, playlist_rx) =
        watch::channel(crate::live::LiveLog::load(&config.data_dir).playlist());
    let http_addr = http::serve(
        config.http_listen,
        http::Shared {
            snapshot: snapshot_rx,
            player: player.clone(),
            clock: clock.clone(),
            playlist: playlist_rx,
            store: lib.store.clone(),
            metrics: metrics.clone(),
        },
        shutdown.child_token(),
        &mut tasks,
    )
    .await?;
    std::fs::write(config.data_dir.join("http.addr"), http_addr.to_string())
        .context("cannot write http.addr")?;
    info!(event = "http", address = %http_addr, "HTTP API on http://{http_addr}/status");

    let driver = driver::Driver::new(
        config,
        keypair,
        consensus,
        client,
        joiner.into_events(),
        fetch_tx,
        fetch_events,
        lib,
        library,
        clock,
        snapshot_tx,
        http_addr,
        player,
        playlist_tx,
        metrics,
    );
    let running = driver.run(shutdown.clone());
    tokio::pin!(running);
    let result = tokio::select! {
        result = &mut running => result,
        error = tasks.ended() => {
            if shutdown.is_cancelled() {
                // Stopping: the HTTP API ends on the same token, maybe before the driver.
                running.await
            } else {
                tracing::error!(event = "task_failed", cause = %error, "{error}; the node stops");
                shutdown.cancel();
                Err(error)
            }
        }
    };
    tasks.abort_all();
    result
}
