//! `flood`: one connection carrying thousands of DHT provider records, a hundred block
//! requests in parallel, then hundreds of identities' bloated Status messages and forged
//! Decisions.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chorus::libp2p::PeerId;
use chorus::net::protocol::{SyncRequest, SyncResponse};
use chorus::net::{Client, Event};
use chorus_consensus::{Decision, Envelope, Hash32, Status};
use libp2p_identity::Keypair;

use crate::{connected, swarm};

/// What the block requests got so far.
#[derive(Clone, Copy, Default)]
struct Counts {
    /// Blocks served.
    served: usize,
    /// Blocks deferred ("later").
    later: usize,
    /// Requests that failed.
    failed: usize,
    /// Blocks the node did not have.
    dont_have: usize,
}

/// The counts, shared by the requesting tasks.
type SharedCounts = Arc<Mutex<Counts>>;

fn read(counts: &SharedCounts) -> Counts {
    *counts.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) async fn flood(
    network: &str,
    peer: &str,
    identities: usize,
    wants: usize,
    records: usize,
) -> Result<()> {
    let network_id: Hash32 = network.parse().context("--network is 64 hex digits")?;
    let addr: chorus::libp2p::Multiaddr = peer.parse().context("--peer is a multiaddr")?;
    let (client, mut events, event_loop, _dir, me) = swarm(0)?;
    tokio::spawn(event_loop.run());
    println!("flooder identity {me}");
    client.dial(addr.clone()).await;
    let target = connected(&mut events).await?;
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

    let blocks = seed_blocks(&client, target, network_id).await;
    println!(
        "asking for {} blocks in {wants} parallel requests",
        blocks.len()
    );
    let counts = request_blocks(&client, target, &blocks, wants).await;
    let c = read(&counts);
    println!(
        "block requests: {} blocks served, {} deferred, {} not had, {} requests failed",
        c.served, c.later, c.dont_have, c.failed
    );

    // Gossip signed by many fresh identities.
    let keys: Vec<Keypair> = (0..identities.max(1))
        .map(|_| Keypair::generate_ed25519())
        .collect();
    let mut published = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut report = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let kp = &keys[published as usize % keys.len()];
                publish_forgeries(&client, network_id, kp, published).await;
                published += 1;
            }
            _ = report.tick() => {
                let c = read(&counts);
                println!("published {published} messages; blocks served {}, deferred {}, not had {}, requests failed {}", c.served, c.later, c.dont_have, c.failed);
            }
            event = events.recv() => match event {
                Some(Event::Disconnected(p)) => {
                    println!("disconnected by {p}");
                    client.dial(addr.clone()).await;
                }
                Some(Event::Connected(p, _)) => println!("connected to {p}"),
                Some(_) => {}
                None => bail!("the network stopped"),
            }
        }
    }
}

/// The blocks of the seed tracks, from `target`'s genesis and manifests (none when it does not
/// answer).
async fn seed_blocks(client: &Client, target: PeerId, network_id: Hash32) -> Vec<Hash32> {
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
                blocks.extend(m.segments.iter().map(|s| s.id));
            }
        }
    }
    blocks
}

/// Five rounds of `wants` parallel requests for all of `blocks` (before the gossip flood gets
/// the connection closed); a task stops at its first failure.
async fn request_blocks(
    client: &Client,
    target: PeerId,
    blocks: &[Hash32],
    wants: usize,
) -> SharedCounts {
    let counts = SharedCounts::default();
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..wants {
        let client = client.clone();
        let ids = blocks.to_vec();
        let counts = counts.clone();
        requests.spawn(async move {
            for _ in 0..5 {
                let answer = client.want(target, ids.clone(), None).await;
                let mut c = counts.lock().unwrap_or_else(|e| e.into_inner());
                match answer {
                    Ok(have) => {
                        c.served += have.blocks.len();
                        c.later += have.later.len();
                        c.dont_have += have.dont_have.len();
                    }
                    Err(e) => {
                        if c.failed == 0 {
                            println!("first block request failure: {e}");
                        }
                        c.failed += 1;
                        return;
                    }
                }
            }
        });
    }
    while requests.join_next().await.is_some() {}
    counts
}

/// Publishes, signed by `kp`, a Status bloated past PROTOCOL.md 12.5's bounds and a Decision
/// with ticket 0 for a proposal that does not exist (the `n`th of each).
async fn publish_forgeries(client: &Client, network_id: Hash32, kp: &Keypair, n: u64) {
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
        slot: 5 + n % 40,
        from,
        winner: Hash32::digest(b"forged winner"),
        proposal_id: Some(Hash32::digest(format!("forged {n}").as_bytes())),
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
}
