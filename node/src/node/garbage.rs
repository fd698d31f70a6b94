//! Testing (`--garbage`): publishes malformed, oversized, wrong-network and badly signed
//! messages on this network's topics, to show that the others drop them and carry on.

use chorus_consensus::limits::GOSSIP_MAX_BYTES;
use chorus_consensus::{Envelope, Hash32, Topic};

use super::Parts;

/// One round of garbage.
pub(crate) async fn send(parts: &Parts) {
    let (net, consensus, keypair) = (&parts.net, &parts.consensus, &parts.keypair);
    let now = parts.time.clock().now_ms();
    let topic = net.topic(Topic::Consensus);
    let status = net.topic(Topic::Status);
    let counter = now.to_be_bytes();
    // Not CBOR at all.
    let mut junk = b"\xff\xfe garbage ".to_vec();
    junk.extend_from_slice(&counter);
    net.client.publish(topic.clone(), junk).await;
    // Oversized: above PROTOCOL.md 10's 64 KiB (gossipsub itself refuses to send more than its
    // frame limit, so this is as large as can go out).
    let mut big = vec![0xa5u8; GOSSIP_MAX_BYTES + 1024];
    big[..8].copy_from_slice(&counter);
    net.client.publish(topic, big).await;
    // A real Status of another network.
    let mut other = consensus.status(now);
    other.network_id = Hash32::digest(&counter);
    if let Ok(e) = Envelope::seal(&other, keypair) {
        net.client.publish(status.clone(), e.to_cbor()).await;
    }
    // A Status of this network with its signature broken.
    let mut mine = consensus.status(now);
    mine.sent_ms = now + 1;
    if let Ok(mut e) = Envelope::seal(&mine, keypair) {
        if let Some(b) = e.sig.first_mut() {
            *b ^= 0xff;
        }
        net.client.publish(status, e.to_cbor()).await;
    }
}
