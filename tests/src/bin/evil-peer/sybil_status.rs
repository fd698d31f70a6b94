//! `sybil-status`: valid Statuses of many fresh identities claiming another head, over one
//! connection.

use anyhow::{Context, Result, bail};
use chorus_consensus::Hash32;
use libp2p_identity::Keypair;

use crate::{connected, swarm};

pub(crate) async fn sybil_status(network: &str, peer: &str, identities: usize) -> Result<()> {
    use chorus::net::protocol::{SyncRequest, SyncResponse};
    use chorus_consensus::{Envelope, Status};

    let network_id: Hash32 = network.parse().context("--network is 64 hex digits")?;
    let addr: chorus::libp2p::Multiaddr = peer.parse().context("--peer is a multiaddr")?;
    let (client, mut events, event_loop, _dir, me) = swarm(0)?;
    tokio::spawn(event_loop.run());
    client.dial(addr).await;
    let target = connected(&mut events).await?;
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
