//! A running node: `chorus run` and `chorus bootstrap`.
//!
//! `run` starts the node's parts from a [`NodeConfig`] (the swarm, the exchange, the player, the
//! HTTP API, each a supervised task or thread with a child token of the node's), hands them to
//! the driver, and on shutdown cancels, awaits and flushes them. docs/architecture.md draws it.
//!
//! - `join`: getting the genesis and the chain from peers (PROTOCOL.md 11).
//! - `driver`: moves events between the state machines and the world.
//! - `playback`: what plays in each slot (sans-IO).
//! - `network`, `timekeeper`, `audio`, `storage`, `blacklisting`: the driver's outputs, each
//!   one job (requests and answers, network time, the player and the live playlist, the disk).
//! - `report`: log lines and metrics of what the machines decided.
//! - `garbage`: testing, malformed gossip.
//! - `snapshot`: the JSON of `GET /status`.

mod audio;
mod blacklisting;
mod driver;
mod garbage;
mod join;
mod network;
pub mod playback;
mod queueing;
mod report;
pub mod snapshot;
mod storage;
mod timekeeper;

pub use network::log_listening;
pub use report::track_name;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use chorus_consensus::{Chain, Consensus, Hash32, SignedGenesis, TrackRef};
use chorus_media::ingest::Library;
use chorus_media::live::LiveView;
use chorus_media::player::{Player, PlayerConfig, SinkSpec};
use libp2p::Multiaddr;
use libp2p::identity::Keypair;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::clock::Clock;
use crate::fetch::Fetcher;
use crate::metrics::Metrics;
use crate::net::Client;
use crate::state::ChainLog;
use crate::supervise::Critical;
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
    /// Port mappings from a UPnP router.
    pub upnp: bool,
    /// Testing: AutoNAT v1 also tests non-global addresses.
    pub autonat_any_address: bool,
    /// The HTTP API's address.
    pub http_listen: SocketAddr,
    /// Store budget: fetched tracks are evicted above it.
    pub store_budget_bytes: u64,
    /// Testing: clock skew.
    pub clock_skew_ms: i64,
    /// Testing: clock rate error, ppm.
    pub clock_rate_ppm: i64,
    /// The audio output.
    pub audio: SinkSpec,
    /// Volume, 0.0 to 1.0.
    pub volume: f32,
    /// Start muted.
    pub muted: bool,
    /// The rules for listener requests.
    pub requests: crate::requests::Policy,
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

/// What the driver runs: the state machines and the outputs, each started by [`run`].
pub(crate) struct Parts {
    /// The consensus state machine.
    pub consensus: Consensus,
    /// The playback state machine.
    pub playback: playback::Playback,
    /// Requests, answers, peers.
    pub net: network::Network,
    /// Network time.
    pub time: timekeeper::TimeKeeper,
    /// The player and the live playlist.
    pub audio: audio::Audio,
    /// The store's budget.
    pub storage: storage::Storage,
    /// The chain log's writer.
    pub chain_log: storage::ChainWriter,
    /// The local blacklist.
    pub blacklist: blacklisting::Blacklisting,
    /// The own library.
    pub library: Vec<TrackRef>,
    /// The node's identity (for `--garbage`).
    pub keypair: Keypair,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// `GET /status`.
    pub snapshot: watch::Sender<serde_json::Value>,
    /// The HTTP API's address.
    pub http: SocketAddr,
    /// The DJ's queue.
    pub queue: queueing::Queueing,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The network's human name (from its genesis).
    pub network_name: String,
    /// Testing: publish garbage gossip.
    pub garbage: bool,
    /// Wants to the segment exchange.
    pub fetch: mpsc::Sender<crate::fetch::FetchCommand>,
}

/// What the driver listens to.
pub(crate) struct Inputs {
    /// Events the joiner saw before the driver started, in order.
    pub replay: Vec<net::Event>,
    /// The swarm's events.
    pub events: mpsc::Receiver<net::Event>,
    /// Answers of the requests the driver sent.
    pub answers: mpsc::Receiver<network::Answer>,
    /// The exchange's events.
    pub fetched: mpsc::Receiver<crate::fetch::FetchEvent>,
    /// The player thread's events.
    pub player: mpsc::UnboundedReceiver<chorus_media::player::PlayerEvent>,
}

/// How long stopping tasks get to finish what they hold before they are aborted.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

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
    let clock = clock_of(&config);
    let metrics = Arc::new(Metrics::new());
    let mut tasks = Critical::new();
    let (client, events) = start_network(
        &config, &keypair, &lib, &clock, &metrics, &mut tasks, &shutdown,
    )
    .await?;
    let mut joiner = join::Joiner::new(client.clone(), events);
    let (genesis, fresh) = obtain_genesis(&config, start, &mut joiner, &shutdown).await?;
    let building = build_hash_chain(&config, &genesis)?;
    let (chain, log, synced) =
        load_chain(&config, &genesis, &mut joiner, fresh, &clock, &shutdown).await?;
    let consensus = start_consensus(&keypair, (chain, synced), &library, building, &clock).await?;

    let (fetch_tx, fetched) = start_exchange(&client, &lib, &shutdown, &mut tasks);
    let (player, player_events) = start_player(&config, &lib, &clock)?;
    let serves = HttpServes {
        player: &player,
        clock: &clock,
        lib: &lib,
        library: &library,
        metrics: &metrics,
    };
    let (snapshot_tx, playlist_tx, http_addr) =
        start_http(&config, serves, &shutdown, &mut tasks).await?;

    let (answers_tx, answers) = mpsc::channel(256);
    let (replay, events) = joiner.into_events();
    let parts = Parts {
        playback: start_playback(&library, consensus.chain(), &lib, clock.now_ms()).await,
        net: network::Network::new(
            client,
            genesis.network_id(),
            genesis.to_cbor(),
            lib.store.clone(),
            config.data_dir.clone(),
            answers_tx,
        ),
        time: timekeeper::TimeKeeper::new(clock.clone()),
        audio: audio::Audio::start(
            player,
            &config.data_dir,
            lib.store.clone(),
            clock,
            playlist_tx,
        )
        .context("cannot start the live playlist")?,
        storage: storage::Storage::new(
            lib.store.clone(),
            config.store_budget_bytes,
            &config.data_dir,
            &library,
        )
        .await,
        chain_log: storage::ChainWriter::start(log).context("cannot start the chain log")?,
        blacklist: blacklisting::Blacklisting::new(config.config_dir.clone()),
        queue: queueing::Queueing::new(config.config_dir.clone(), config.data_dir.clone()),
        consensus,
        library,
        keypair,
        metrics,
        snapshot: snapshot_tx,
        http: http_addr,
        data_dir: config.data_dir.clone(),
        network_name: genesis.genesis().name.clone(),
        garbage: config.garbage,
        fetch: fetch_tx,
    };
    let inputs = Inputs {
        replay,
        events,
        answers,
        fetched,
        player: player_events,
    };
    let result = drive(driver::Driver::new(parts), inputs, &mut tasks, &shutdown).await;
    shutdown.cancel();
    tasks.shut_down(SHUTDOWN_GRACE).await;
    result
}

/// The node's clock, with the testing skew and rate.
fn clock_of(config: &NodeConfig) -> Arc<Clock> {
    Arc::new(Clock::with_rate(
        config.clock_skew_ms,
        config.clock_rate_ppm,
    ))
}

/// The chain: the genesis's, extended from the chain log, then synced from peers (unless the
/// network was created just now) and the slots synced appended to the log.
async fn load_chain(
    config: &NodeConfig,
    genesis: &SignedGenesis,
    joiner: &mut join::Joiner,
    fresh: bool,
    clock: &Clock,
    shutdown: &CancellationToken,
) -> Result<(Chain, ChainLog, bool)> {
    let mut chain = Chain::new(genesis);
    let mut log = ChainLog::open(&config.data_dir, &mut chain)?;
    let synced = !fresh
        && joiner
            .sync_chain(&mut chain, clock.now_ms(), shutdown)
            .await;
    // The slots synced, appended off the async threads.
    let kept = log.len().min(chain.decided_slots().len());
    let synced_slots = chain.decided_slots()[kept..].to_vec();
    let log = tokio::task::spawn_blocking(move || log.write(kept, &synced_slots).map(|()| log))
        .await
        .context("the chain log's writer panicked")??;
    Ok((chain, log, synced))
}

/// What the HTTP API serves from.
struct HttpServes<'a> {
    player: &'a Arc<Player>,
    clock: &'a Arc<Clock>,
    lib: &'a Library,
    /// The library's tracks, for listener requests.
    library: &'a [TrackRef],
    metrics: &'a Arc<Metrics>,
}

/// The HTTP API (a critical task); returns the senders of the status document and the live
/// playlist, and the address it listens on (also written to `DATA/http.addr`).
async fn start_http(
    config: &NodeConfig,
    serves: HttpServes<'_>,
    shutdown: &CancellationToken,
    tasks: &mut Critical,
) -> Result<(
    watch::Sender<serde_json::Value>,
    watch::Sender<LiveView>,
    SocketAddr,
)> {
    let token = Arc::new(crate::operator::Token::load_or_create(&config.data_dir)?);
    let (snapshot_tx, snapshot_rx) = watch::channel(serde_json::Value::Null);
    let (playlist_tx, playlist_rx) = watch::channel(LiveView::default());
    let HttpServes {
        player,
        clock,
        lib,
        library,
        metrics,
    } = serves;
    let shared = http::Shared {
        snapshot: snapshot_rx,
        player: player.clone(),
        clock: clock.clone(),
        icy: crate::icy::Feed::start(playlist_rx.clone(), lib.store.clone()),
        playlist: playlist_rx,
        store: lib.store.clone(),
        metrics: metrics.clone(),
        desk: Arc::new(crate::desk::Desk::open(
            config.data_dir.clone(),
            config.config_dir.clone(),
            library.to_vec(),
            config.requests,
        )),
        token: token.clone(),
    };
    let http_addr = http::serve(config.http_listen, shared, shutdown.child_token(), tasks).await?;
    std::fs::write(config.data_dir.join("http.addr"), http_addr.to_string())
        .context("cannot write http.addr")?;
    info!(event = "http", address = %http_addr, "HTTP API on http://{http_addr}/status");
    let shown = if http_addr.ip().is_unspecified() {
        // Open on every address: the one the machine reaches the network from.
        primary_ip().map_or_else(
            || format!("THIS-MACHINE:{}", http_addr.port()),
            |ip| SocketAddr::new(ip, http_addr.port()).to_string(),
        )
    } else {
        http_addr.to_string()
    };
    info!(
        event = "operator_link",
        "operator controls (volume, mute, request approval) from any device: http://{shown}/?token={} (keep it private; it is in {})",
        token.text(),
        config.data_dir.join(crate::operator::FILE).display()
    );

    Ok((snapshot_tx, playlist_tx, http_addr))
}

/// The address this machine reaches the network from: the local end of a UDP socket
/// "connected" to a documentation address (nothing is sent). `None` without a route.
fn primary_ip() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind(("0.0.0.0", 0)).ok()?;
    socket.connect(("192.0.2.1", 9)).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
}

/// The playback machine, told what the store already holds of the coming winners (a restart
/// mid-network), so that they play from their slot's start without waiting for the exchange
/// to say so. The store is read on a blocking thread.
async fn start_playback(
    library: &[TrackRef],
    chain: &Chain,
    lib: &Library,
    now: u64,
) -> playback::Playback {
    let mut playback = playback::Playback::new(library);
    let from = chain.slot_at(now).unwrap_or(0);
    let tracks: Vec<TrackRef> = (from..chain.len())
        .filter_map(|s| chain.winner(s).cloned())
        .collect();
    let (store, segment_ms) = (lib.store.clone(), chain.rules().segment_ms);
    let held = tokio::task::spawn_blocking(move || {
        let held = |t: &TrackRef| crate::fetch::held_segments(&store, t, segment_ms);
        tracks
            .iter()
            .filter_map(|t| Some((t.track_hash, held(t)?)))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    for (track, (held, total)) in held {
        playback.handle_held(track, held, total);
    }
    playback
}

/// The segment exchange (a critical task): its command sender and event receiver.
fn start_exchange(
    client: &Client,
    lib: &Library,
    shutdown: &CancellationToken,
    tasks: &mut Critical,
) -> (
    mpsc::Sender<crate::fetch::FetchCommand>,
    mpsc::Receiver<crate::fetch::FetchEvent>,
) {
    let (fetch_tx, fetch_rx) = mpsc::channel(256);
    let (fetched_tx, fetched) = mpsc::channel(256);
    let exchange = Fetcher::new(client.clone(), lib.store.clone(), fetched_tx);
    tasks.spawn(
        "segment exchange",
        exchange.run_until(fetch_rx, shutdown.child_token()),
    );
    (fetch_tx, fetched)
}

/// Runs the driver until it ends or a critical task fails.
async fn drive(
    driver: driver::Driver,
    inputs: Inputs,
    tasks: &mut Critical,
    shutdown: &CancellationToken,
) -> Result<()> {
    let running = driver.run(inputs, shutdown.clone());
    tokio::pin!(running);
    tokio::select! {
        result = &mut running => result,
        error = tasks.ended() => {
            if shutdown.is_cancelled() {
                // Stopping: the HTTP API ends on the same token, maybe before the driver.
                running.await
            } else {
                tracing::error!(event = "task_failed", cause = %error, "{error}; the node stops");
                shutdown.cancel();
                // The driver flushes the chain log on its way out.
                let _ = running.await;
                Err(error)
            }
        }
    }
}

/// The swarm (a critical task) listening and dialling: the given peers and those saved.
async fn start_network(
    config: &NodeConfig,
    keypair: &Keypair,
    lib: &Library,
    clock: &Arc<Clock>,
    metrics: &Arc<Metrics>,
    tasks: &mut Critical,
    shutdown: &CancellationToken,
) -> Result<(Client, mpsc::Receiver<net::Event>)> {
    let (client, events, event_loop) = net::new(net::NetConfig {
        keypair: keypair.clone(),
        mdns: config.mdns,
        upnp: config.upnp,
        autonat_any_address: config.autonat_any_address,
        store: lib.store.clone(),
        clock: clock.clone(),
        metrics: metrics.clone(),
        corrupt_blocks: config.corrupt_blocks,
        streams_per_connection: net::behaviour::MAX_STREAMS_PER_CONNECTION,
    })?;
    tasks.spawn(
        "swarm event loop",
        event_loop.run_until(shutdown.child_token()),
    );
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
    Ok((client, events))
}

/// The genesis: just created (then `true`: the network is new), saved in the data directory,
/// or fetched from peers (and saved).
async fn obtain_genesis(
    config: &NodeConfig,
    start: Start,
    joiner: &mut join::Joiner,
    shutdown: &CancellationToken,
) -> Result<(SignedGenesis, bool)> {
    let fresh = matches!(start, Start::Genesis(_));
    let genesis = find_genesis(config, start, joiner, shutdown).await?;
    joiner.set_genesis(&genesis);
    let network_id = genesis.network_id();
    info!(event = "genesis", network_id = %network_id, name = %genesis.genesis().name, "network {network_id} \"{}\"", genesis.genesis().name);
    Ok((genesis, fresh))
}

/// The genesis: just created, in the data directory, or fetched from the peers.
async fn find_genesis(
    config: &NodeConfig,
    start: Start,
    joiner: &mut join::Joiner,
    shutdown: &CancellationToken,
) -> Result<SignedGenesis> {
    if let Start::Genesis(g) = start {
        return Ok(*g);
    }
    if let Some(g) = chorus_bootstrap::load_genesis(&config.data_dir, config.network.as_ref())? {
        return Ok(g);
    }
    let network = config.network.context(
        "this data directory has no network yet: pass --network ID (from the bootstrap node's output)",
    )?;
    let g = joiner.fetch_genesis(network, shutdown).await?;
    chorus_bootstrap::save_genesis(&config.data_dir, &g)?;
    Ok(g)
}

/// The seed's hash chain being built (PROTOCOL.md 12.3) off the async threads, and where the
/// seed came from. A genesis that enrolls nobody is refused.
type Building = (
    tokio::task::JoinHandle<chorus_consensus::beacon::HashChain>,
    crate::enrollment::SeedOrigin,
);

/// Starts building the hash chain of the data directory's seed.
fn build_hash_chain(config: &NodeConfig, genesis: &SignedGenesis) -> Result<Building> {
    if genesis.genesis().enroll.is_none() {
        bail!(chorus_consensus::GenesisError::NoEnroll);
    }
    let (seed, origin) = crate::enrollment::load_or_create_seed(&config.data_dir)?;
    let building = tokio::task::spawn_blocking(move || crate::enrollment::hash_chain(&seed));
    Ok((building, origin))
}

/// The consensus machine over `chain`, started mid-network when the chain was `synced` from
/// peers and the network is on air, and enrolled with the hash chain being built (12.3).
async fn start_consensus(
    keypair: &Keypair,
    (chain, synced): (Chain, bool),
    library: &[TrackRef],
    (building, origin): Building,
    clock: &Clock,
) -> Result<Consensus> {
    let now = clock.now_ms();
    let mut consensus = Consensus::new(keypair.clone(), chain);
    consensus.set_version(concat!("chorus/", env!("CARGO_PKG_VERSION")));
    // PROTOCOL.md 12.4: identities are free; connections are not.
    consensus.count_direct_support_only();
    let started = consensus.chain().start(0).is_some_and(|s| now >= s);
    if synced && started {
        consensus.start_synced(now);
        let slot = consensus.chain().slot_at(now);
        info!(
            event = "joined",
            slot, "joined the network at slot {slot:?} with the chain synced from peers"
        );
    }
    consensus.set_library(library.to_vec());
    let hash_chain = building.await.context("building the hash chain panicked")?;
    consensus.set_hash_chain(hash_chain, clock.now_ms());
    report::enrollment(&consensus, &origin);
    Ok(consensus)
}

/// The player thread, its events forwarded to the driver.
fn start_player(
    config: &NodeConfig,
    lib: &Library,
    clock: &Arc<Clock>,
) -> Result<(
    Arc<Player>,
    mpsc::UnboundedReceiver<chorus_media::player::PlayerEvent>,
)> {
    let player = Player::start(PlayerConfig {
        sink: config.audio.clone(),
        store: lib.store.clone(),
        time: clock.clone(),
        volume: config.volume,
        muted: config.muted,
        lead: PLAYER_LEAD,
    })
    .with_context(|| format!("cannot open the audio output {:?} (--audio)", config.audio))?;
    info!(event = "audio_output", sink = %player.stats().sink, "audio output: {}", player.stats().sink);
    let (tx, rx) = mpsc::unbounded_channel();
    player.on_event(move |e| {
        let _ = tx.send(e);
    });
    Ok((Arc::new(player), rx))
}
