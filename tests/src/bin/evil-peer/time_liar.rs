//! `time-liar`: fresh identities that answer `/chorus/time/1` from a lying clock.

use anyhow::{Context, Result, bail};

use crate::swarm;

pub(crate) async fn time_liar(peer: &str, identities: usize, lie_ms: i64) -> Result<()> {
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
