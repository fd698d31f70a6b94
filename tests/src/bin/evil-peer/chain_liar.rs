//! `chain-liar`: serve a joiner an honest chain whose TrackRefs were changed under intact
//! chain hashes.

use anyhow::{Context, Result, bail};
use chorus_consensus::Hash32;

use crate::swarm;

pub(crate) async fn chain_liar(network: &str, peer: &str, listen: &str) -> Result<()> {
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
