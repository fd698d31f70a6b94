//! `evil-peer`: an attacker for the end-to-end tests, built on the node's own protocol code
//! (the `chorus` library), so that every attack speaks the real protocol over real libp2p
//! connections. docs/security.md lists the attacks and the tests that run them.
//!
//! - `poison`: joins a network as a node whose identity is ground so that its ticket wins a
//!   chosen slot, and proposes a track whose manifest is hostile: `#EXTINF:-1` (panicked the
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

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use chorus::clock::Clock;
use chorus::metrics::Metrics;
use chorus::node::{NodeConfig, Start};
use chorus_consensus::{Hash32, SlotContext, TrackRef, ticket};
use chorus_media::ingest::Library;
use chorus_media::player::SinkSpec;
use clap::{Parser, Subcommand, ValueEnum};
use libp2p_identity::Keypair;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(about = "An attacker speaking the Chorus protocol, for tests")]
struct Cli {
    #[command(subcommand)]
    attack: Attack,
}

#[derive(Clone, Copy, ValueEnum)]
enum Poison {
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
    /// Win a slot with a hostile manifest.
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
        /// The slot to win.
        #[arg(long)]
        slot: u64,
        /// Which poison.
        #[arg(long, value_enum, default_value = "negative-extinf")]
        manifest: Poison,
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
                slot,
                manifest,
                duration_ms,
            } => poison(data_dir, &network, &peer, slot, manifest, duration_ms).await,
            Attack::TimeLiar {
                peer,
                identities,
                lie_ms,
            } => time_liar(&peer, identities, lie_ms).await,
            Attack::ChainLiar {
                network,
                peer,
                listen,
            } => chain_liar(&network, &peer, &listen).await,
            Attack::SybilStatus {
                network,
                peer,
                identities,
            } => sybil_status(&network, &peer, identities).await,
            Attack::Flood {
                network,
                peer,
                identities,
                wants,
                records,
            } => flood(&network, &peer, identities, wants, records).await,
        }
    })
}

/// A key whose ticket for `slot` is below 2^64 / 4096: it beats a handful of honest nodes
/// with near certainty (protocol 1's tickets are known to all in advance).
fn grind(network_id: Hash32, slot: u64) -> (Keypair, u64, u64) {
    let ctx = SlotContext::detached(network_id, slot);
    let mut tries = 0;
    loop {
        tries += 1;
        let key = Keypair::generate_ed25519();
        let t = ticket(&ctx, &key.public().to_peer_id());
        if t < u64::MAX / 4096 {
            return (key, t, tries);
        }
    }
}

/// A manifest in the node's own format, then spoiled as `poison` says.
fn hostile_manifest(poison: Poison, duration_ms: u64) -> (Vec<u8>, u64) {
    let segments = duration_ms.div_ceil(6000).max(1);
    let listed = match poison {
        Poison::ManyBlocks => 3000,
        _ => segments,
    };
    let mut text = String::from(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:0\n\
         #EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n",
    );
    for i in 0..listed {
        let extinf = match (poison, i) {
            (Poison::NegativeExtinf, 0) => "-1".to_owned(),
            (Poison::NanExtinf, 0) => "NaN".to_owned(),
            _ => "5.973333".to_owned(),
        };
        let id = Hash32::digest(format!("evil block {i}").as_bytes());
        text.push_str(&format!("#EXTINF:{extinf},\n{}\n", hex(&id)));
    }
    text.push_str("#EXT-X-CHORUS-AUDIO:PRIMING=1024,PADDING=0\n#EXT-X-ENDLIST\n");
    (text.into_bytes(), segments)
}

fn hex(h: &Hash32) -> String {
    h.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

async fn poison(
    data_dir: PathBuf,
    network: &str,
    peer: &str,
    slot: u64,
    poison: Poison,
    duration_ms: u64,
) -> Result<()> {
    let network_id: Hash32 = network.parse().context("--network is 64 hex digits")?;
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let (key, t, tries) = grind(network_id, slot);
    println!(
        "ground identity {} with ticket {t} for slot {slot} in {tries} tries",
        key.public().to_peer_id()
    );
    chorus::state::save_identity(&data_dir, &key)?;

    let (bytes, segments) = hostile_manifest(poison, duration_ms);
    let manifest_id = Hash32::digest(&bytes);
    let lib = Library::open(&data_dir).context("cannot open the attacker's store")?;
    if !matches!(poison, Poison::Withhold) {
        lib.store
            .put_with_id(chorus_media::Hash32(*manifest_id.as_bytes()), &bytes)
            .context("cannot store the hostile manifest")?;
    }
    let track = TrackRef {
        track_hash: Hash32::digest(format!("evil track {slot}").as_bytes()),
        manifest_id,
        duration_ms,
        segment_count: segments,
        title: "Evil".to_owned(),
        artist: "Attacker".to_owned(),
        album: String::new(),
        loudness_lufs: None,
    };
    println!(
        "proposing track {} manifest {}",
        hex(&track.track_hash),
        hex(&manifest_id)
    );
    let config = NodeConfig {
        data_dir: data_dir.clone(),
        config_dir: data_dir.join("config"),
        network: Some(network_id),
        peers: vec![peer.parse().context("--peer is a multiaddr")?],
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("a valid multiaddr")],
        mdns: false,
        http_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        store_budget_bytes: 1 << 30,
        clock_skew_ms: 0,
        audio: SinkSpec::Null,
        volume: 0.0,
        muted: true,
        corrupt_blocks: false,
        garbage: false,
    };
    let shutdown = CancellationToken::new();
    chorus::node::run(config, key, vec![track], Start::Join, shutdown).await
}

async fn time_liar(peer: &str, identities: usize, lie_ms: i64) -> Result<()> {
    let addr: chorus::libp2p::Multiaddr = peer.parse().context("--peer is a multiaddr")?;
    if identities == 0 {
        bail!("--identities must be at least 1");
    }
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..identities {
        // The node's own event loop answers `/chorus/time/1` from this clock: the lie.
        let (client, mut events, event_loop, dir, id) = swarm(lie_ms)?;
        client.dial(addr.clone()).await;
        println!("liar {id} dialing {addr} with a clock {lie_ms} ms off");
        tasks.spawn(event_loop.run());
        tasks.spawn(async move {
            // Holding the client keeps the loop running; the events are of no interest.
            let _client = client;
            let _dir = dir;
            while let Some(event) = events.recv().await {
                if let chorus::net::Event::Connected(peer, _) = event {
                    println!("liar {id} connected to {peer}");
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
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
        store,
        clock: Arc::new(Clock::new(clock_ms)),
        metrics: Arc::new(Metrics::new()),
        corrupt_blocks: false,
        // The attacker does not hold back.
        streams_per_connection: 1024,
    })?;
    Ok((client, events, event_loop, dir, id))
}

async fn flood(
    network: &str,
    peer: &str,
    identities: usize,
    wants: usize,
    records: usize,
) -> Result<()> {
    use chorus::net::protocol::{SyncRequest, SyncResponse};
    use chorus_consensus::{Decision, Envelope, Status};

    let network_id: Hash32 = network.parse().context("--network is 64 hex digits")?;
    let addr: chorus::libp2p::Multiaddr = peer.parse().context("--peer is a multiaddr")?;
    let (client, mut events, event_loop, _dir, me) = swarm(0)?;
    tokio::spawn(event_loop.run());
    println!("flooder identity {me}");
    client.dial(addr.clone()).await;
    let target = loop {
        match events.recv().await {
            Some(chorus::net::Event::Connected(p, _)) => break p,
            Some(_) => {}
            None => bail!("the network stopped"),
        }
    };
    println!("connected to {target}");
    for suffix in ["consensus", "status"] {
        client
            .subscribe(format!("chorus/{network_id}/{suffix}"))
            .await;
    }

    // Thousands of DHT provider records.
    for i in 0..records {
        client
            .provide(
                Hash32::digest(format!("flood key {i}").as_bytes())
                    .as_bytes()
                    .to_vec(),
            )
            .await;
    }
    println!("announced {records} provider records");

    // The seed tracks' blocks, to ask for in parallel.
    let mut blocks: Vec<Hash32> = Vec::new();
    if let Ok(SyncResponse::Genesis(bytes)) = client.sync(target, SyncRequest::Genesis).await
        && let Ok(genesis) = chorus_consensus::SignedGenesis::from_cbor(&bytes, Some(&network_id))
    {
        for track in &genesis.genesis().queue {
            let request = SyncRequest::Manifest {
                manifest_id: track.manifest_id,
            };
            if let Ok(SyncResponse::Manifest(Some(m))) = client.sync(target, request).await
                && let Ok(m) = chorus_media::Manifest::parse(&m)
            {
                blocks.extend(m.segments.iter().map(|s| Hash32(s.id.0)));
            }
        }
    }
    println!(
        "asking for {} blocks in {wants} parallel requests",
        blocks.len()
    );
    let counts = Arc::new(std::sync::Mutex::new((0usize, 0usize, 0usize, 0usize)));
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..wants {
        let client = client.clone();
        let ids = blocks.clone();
        let counts = counts.clone();
        requests.spawn(async move {
            for _ in 0..5 {
                let answer = client.want(target, ids.clone()).await;
                let mut c = counts.lock().unwrap_or_else(|e| e.into_inner());
                match answer {
                    Ok(have) => {
                        c.0 += have.blocks.len();
                        c.1 += have.later.len();
                        c.3 += have.dont_have.len();
                    }
                    Err(e) => {
                        if c.2 == 0 {
                            println!("first block request failure: {e}");
                        }
                        c.2 += 1;
                        return;
                    }
                }
            }
        });
    }

    // Five rounds of block requests before the gossip flood gets the connection closed.
    while requests.join_next().await.is_some() {}
    let c = *counts.lock().unwrap_or_else(|e| e.into_inner());
    println!(
        "block requests: {} blocks served, {} deferred, {} not had, {} requests failed",
        c.0, c.1, c.3, c.2
    );

    // Gossip signed by many fresh identities: Status bloated past PROTOCOL.md 12.5's bounds,
    // and Decisions with ticket 0 for proposals that do not exist.
    let keys: Vec<Keypair> = (0..identities.max(1))
        .map(|_| Keypair::generate_ed25519())
        .collect();
    let mut published = 0u64;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(20));
    let mut report = tokio::time::interval(std::time::Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let kp = &keys[published as usize % keys.len()];
                let from = kp.public().to_peer_id();
                let status = Status {
                    network_id,
                    from,
                    sent_ms: 0,
                    playing: None,
                    consensus_track: None,
                    diverged: false,
                    head: chorus_consensus::message::Head {
                        slot: 0,
                        chain_hash: Hash32::digest(b"flood"),
                    },
                    // Within the 64 KiB gossip limit, far past 12.5's field bounds.
                    queue: vec![Hash32::digest(b"q"); 500],
                    version: "x".repeat(20_000),
                };
                let decision = Decision {
                    network_id,
                    slot: 5 + published % 40,
                    from,
                    winner: Hash32::digest(b"forged winner"),
                    proposal_id: Some(Hash32::digest(format!("forged {published}").as_bytes())),
                    ticket: Some(0),
                    equivocators: vec![],
                    rules_hash: Hash32::digest(b"forged rules"),
                };
                for (topic, envelope) in [
                    ("status", Envelope::seal(&status, kp)),
                    ("consensus", Envelope::seal(&decision, kp)),
                ] {
                    if let Ok(e) = envelope {
                        client
                            .publish(format!("chorus/{network_id}/{topic}"), e.to_cbor())
                            .await;
                    }
                }
                published += 1;
            }
            _ = report.tick() => {
                let c = *counts.lock().unwrap_or_else(|e| e.into_inner());
                println!("published {published} messages; blocks served {}, deferred {}, not had {}, requests failed {}", c.0, c.1, c.3, c.2);
            }
            event = events.recv() => match event {
                Some(chorus::net::Event::Disconnected(p)) => {
                    println!("disconnected by {p}");
                    client.dial(addr.clone()).await;
                }
                Some(chorus::net::Event::Connected(p, _)) => println!("connected to {p}"),
                Some(_) => {}
                None => bail!("the network stopped"),
            }
        }
    }
}

async fn chain_liar(network: &str, peer: &str, listen: &str) -> Result<()> {
    use chorus::net::Event;
    use chorus::net::protocol::{SyncRequest, SyncResponse};

    let network_id: Hash32 = network.parse().context("--network is 64 hex digits")?;
    let addr: chorus::libp2p::Multiaddr = peer.parse().context("--peer is a multiaddr")?;
    let (client, mut events, event_loop, _dir, me) = swarm(0)?;
    tokio::spawn(event_loop.run());
    client
        .listen(listen.parse().context("--listen is a multiaddr")?)
        .await;
    client.dial(addr).await;
    let mut honest = None;
    let mut genesis = None;
    loop {
        match events.recv().await {
            Some(Event::Listening(a)) => println!("listening {a}"),
            Some(Event::Connected(p, _)) if honest.is_none() => {
                if let Ok(SyncResponse::Genesis(g)) = client.sync(p, SyncRequest::Genesis).await {
                    genesis = Some(g);
                    honest = Some(p);
                    println!("liar {me} copies the chain of {p} (network {network_id})");
                }
            }
            Some(Event::SyncRequest {
                peer: asker,
                request,
                channel,
            }) => {
                let answer = match (&request, honest, &genesis) {
                    (SyncRequest::Genesis, _, Some(g)) => SyncResponse::Genesis(g.clone()),
                    (SyncRequest::Chain { from_slot }, Some(h), _) => {
                        match client
                            .sync(
                                h,
                                SyncRequest::Chain {
                                    from_slot: *from_slot,
                                },
                            )
                            .await
                        {
                            Ok(SyncResponse::Chain(mut slots)) => {
                                let mut changed = Vec::new();
                                // The two last decided slots: the joiner plays them soon.
                                let n = slots.len();
                                let swap =
                                    slots.get(n.saturating_sub(3)).map(|s| s.track.manifest_id);
                                for s in slots.iter_mut().rev().take(2) {
                                    s.track.duration_ms = s.track.duration_ms.saturating_mul(2);
                                    s.track.segment_count = s.track.segment_count.saturating_mul(2);
                                    if let Some(m) = swap {
                                        s.track.manifest_id = m;
                                    }
                                    changed.push(s.slot);
                                }
                                println!("lied to {asker} about slots {changed:?}");
                                SyncResponse::Chain(slots)
                            }
                            Ok(other) => other,
                            Err(e) => SyncResponse::Unavailable(e.to_string()),
                        }
                    }
                    _ => SyncResponse::Unavailable("not served".into()),
                };
                client.respond_sync(channel, answer).await;
            }
            Some(Event::Gossip { id, source, .. }) => {
                client
                    .validate(
                        id,
                        source,
                        chorus::libp2p::gossipsub::MessageAcceptance::Ignore,
                    )
                    .await;
            }
            Some(_) => {}
            None => bail!("the network stopped"),
        }
    }
}

async fn sybil_status(network: &str, peer: &str, identities: usize) -> Result<()> {
    use chorus::net::protocol::{SyncRequest, SyncResponse};
    use chorus_consensus::{Envelope, Status};

    let network_id: Hash32 = network.parse().context("--network is 64 hex digits")?;
    let addr: chorus::libp2p::Multiaddr = peer.parse().context("--peer is a multiaddr")?;
    let (client, mut events, event_loop, _dir, me) = swarm(0)?;
    tokio::spawn(event_loop.run());
    client.dial(addr).await;
    let target = loop {
        match events.recv().await {
            Some(chorus::net::Event::Connected(p, _)) => break p,
            Some(_) => {}
            None => bail!("the network stopped"),
        }
    };
    client
        .subscribe(format!("chorus/{network_id}/status"))
        .await;
    println!("sybil host {me} connected to {target} with {identities} identities");
    let keys: Vec<Keypair> = (0..identities.max(1))
        .map(|_| Keypair::generate_ed25519())
        .collect();
    let fake = Hash32::digest(format!("the chain of {me}").as_bytes());
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut sent = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // The head the honest chain has now, claimed with another hash.
                let mut head = None;
                let mut from = 0;
                while let Ok(SyncResponse::Chain(slots)) =
                    client.sync(target, SyncRequest::Chain { from_slot: from }).await
                {
                    let Some(last) = slots.last() else { break };
                    head = Some(last.slot);
                    if slots.len() < 256 {
                        break;
                    }
                    from = last.slot + 1;
                }
                let Some(slot) = head else { continue };
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                for kp in &keys {
                    let status = Status {
                        network_id,
                        from: kp.public().to_peer_id(),
                        sent_ms: now_ms,
                        playing: None,
                        consensus_track: None,
                        diverged: false,
                        head: chorus_consensus::message::Head { slot, chain_hash: fake },
                        queue: vec![],
                        version: "chorus/0.1.0".to_owned(),
                    };
                    if let Ok(e) = Envelope::seal(&status, kp) {
                        client.publish(format!("chorus/{network_id}/status"), e.to_cbor()).await;
                        sent += 1;
                    }
                }
                if sent.is_multiple_of(10 * keys.len() as u64) {
                    println!("sent {sent} statuses claiming head {slot} = {fake}");
                }
            }
            event = events.recv() => if event.is_none() {
                bail!("the network stopped");
            }
        }
    }
}
