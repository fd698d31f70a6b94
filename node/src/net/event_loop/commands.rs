//! The [`Command`]s of the [`crate::net::Client`], carried out on the swarm.

use std::collections::BTreeSet;

use libp2p::gossipsub::{self, IdentTopic};
use libp2p::kad::RecordKey;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use tracing::{debug, warn};

use super::{EventLoop, Reply};
use crate::net::behaviour::topic_score_params;
use crate::net::protocol::{Have, Ping, Pong, Want};
use crate::net::time_codec::TimeRequest;
use crate::net::{Command, NetInfo, RequestError};

impl EventLoop {
    pub(super) fn on_command(&mut self, command: Command) {
        let behaviour = self.swarm.behaviour_mut();
        match command {
            Command::Listen(addr) => {
                if let Err(e) = self.swarm.listen_on(addr.clone()) {
                    warn!(event = "listen_failed", address = %addr, "cannot listen on {addr}: {e}");
                }
            }
            Command::Dial(addr) => self.dial(addr),
            Command::Subscribe(topic) => self.subscribe(topic),
            Command::Publish { topic, data } => self.publish(topic, data),
            Command::Validate {
                id,
                source,
                acceptance,
            } => {
                behaviour
                    .gossipsub
                    .report_message_validation_result(&id, &source, acceptance);
            }
            Command::Sync {
                peer,
                request,
                reply,
            } => {
                let id = behaviour.sync.send_request(&peer, request);
                self.pending_sync.insert(id, (peer, reply));
            }
            Command::RespondSync { channel, response } => {
                let _ = behaviour.sync.send_response(channel, response);
            }
            Command::Time { peer, reply } => self.request_time(peer, reply),
            Command::Want { peer, want, reply } => self.want(peer, want, reply),
            Command::Due { manifest, at } => self.uploads.due(manifest, at),
            Command::RespondBlocks {
                peer,
                track,
                channel,
                have,
            } => self.respond_blocks(peer, track, channel, have),
            Command::Provide(key) => {
                if let Err(e) = behaviour.kad.start_providing(RecordKey::new(&key)) {
                    warn!("cannot announce a provider record: {e}");
                }
            }
            Command::Providers { key, reply } => {
                let id = behaviour.kad.get_providers(RecordKey::new(&key));
                self.pending_providers.insert(id, (Vec::new(), reply));
            }
            Command::Info { reply } => {
                let direct: BTreeSet<PeerId> = self
                    .connections
                    .values()
                    .filter(|c| !c.relayed)
                    .map(|c| c.peer)
                    .collect();
                let _ = reply.send(NetInfo {
                    connected: self.swarm.connected_peers().copied().collect(),
                    direct: direct.into_iter().collect(),
                    lan: self.lan_peers(),
                    hubs: self.hubs(),
                });
            }
        }
    }

    /// Sends a want list, over a direct connection only: a relay carries control traffic,
    /// never blocks (its circuits are small and short).
    fn want(&mut self, peer: PeerId, want: Want, reply: Reply<Have>) {
        // Not connected at all: the request dials it (at the DHT's addresses).
        let connected = self.connections.values().any(|c| c.peer == peer);
        if connected && !self.has_direct(&peer) {
            let _ = reply.send(Err(RequestError::Failed {
                peer,
                reason: "only a relayed connection: blocks go over direct ones".to_owned(),
            }));
            return;
        }
        let ids = want.ids.clone();
        let id = self.swarm.behaviour_mut().blocks.send_request(&peer, want);
        self.parked.asking(&ids);
        // A block we ask for is not ours to seed: a peer asking us for it is parked until it
        // comes (or told "don't have"), not referred to the hubs.
        self.uploads.fetched(ids.iter().copied());
        self.want_ids.insert(id, ids);
        self.pending_want.insert(id, (peer, reply));
    }

    /// Dials `addr`, first telling Kademlia the peer's address when `addr` names the peer.
    fn dial(&mut self, addr: Multiaddr) {
        if let Some(Protocol::P2p(peer)) = addr.iter().last() {
            self.swarm
                .behaviour_mut()
                .kad
                .add_address(&peer, addr.clone());
        }
        if let Err(e) = self.swarm.dial(addr.clone()) {
            warn!(event = "dial_failed", address = %addr, "cannot dial {addr}: {e}");
        }
    }

    /// Subscribes to `topic` and scores its peers (PROTOCOL.md 12.5).
    fn subscribe(&mut self, topic: String) {
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        let ident = IdentTopic::new(topic.clone());
        if let Err(e) = gossipsub.subscribe(&ident) {
            warn!("cannot subscribe to {topic}: {e}");
        }
        if let Err(e) = gossipsub.set_topic_params(ident, topic_score_params()) {
            warn!("cannot set the scoring of {topic}: {e}");
        }
    }

    fn publish(&mut self, topic: String, data: Vec<u8>) {
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(IdentTopic::new(topic.clone()), data)
        {
            Ok(_) => {}
            // Alone, or before any peer subscribed: the protocol's own catch-up (Tally,
            // Decision, sync requests, periodic Status) covers what is lost here.
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {
                debug!("published on {topic} with no peer subscribed")
            }
            Err(e) => debug!("cannot publish on {topic}: {e}"),
        }
    }

    fn request_time(&mut self, peer: PeerId, reply: Reply<(Pong, u64)>) {
        // The codec stamps t0 as it writes the request.
        let id = self.swarm.behaviour_mut().time.send_request(
            &peer,
            TimeRequest {
                ping: Ping { t0: 0 },
                received_us: 0,
            },
        );
        self.pending_time.insert(id, (peer, reply));
    }
}
