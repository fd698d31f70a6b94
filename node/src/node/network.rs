//! The driver's side of the network: the peers it is connected to, its listen addresses,
//! gossip validation, the answers to `/chorus/sync/1` requests, and the requests consensus
//! asks for (their answers come back as [`Answer`]s). Disk reads (a manifest asked for) and
//! writes (the peer list) run on blocking threads.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chorus_consensus::limits::GOSSIP_MAX_BYTES;
use chorus_consensus::{Consensus, DecidedSlot, Envelope, Hash32, Topic, Validation};
use chorus_media::store::BlockStore;
use libp2p::gossipsub::MessageAcceptance;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::ResponseChannel;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::mpsc;
use tracing::{debug, info};

use crate::clock::Exchange;
use crate::net::Client;
use crate::net::protocol::{SyncRequest, SyncResponse};
use crate::state;
use crate::supervise;

/// Answers of requests the driver sent, coming back from their tasks.
pub enum Answer {
    /// Proposal envelopes (PROTOCOL.md 2, `Proposals`).
    Proposals(Vec<Envelope>),
    /// Decided slots from a peer, or why there are none.
    Chain(PeerId, Result<Vec<DecidedSlot>, String>),
    /// A time exchange (`/chorus/time/1`); `None` when the request failed.
    Time(PeerId, Option<Exchange>),
}

/// Logs a listen address (and prints it on stdout for the operator to hand out).
pub fn log_listening(addr: &Multiaddr) {
    info!(event = "listening", address = %addr, "listening on {addr}");
    println!("address {addr}");
}

/// See the module's doc.
pub struct Network {
    /// The swarm's handle.
    pub client: Client,
    network_id: Hash32,
    /// The genesis envelope, as served to joiners.
    genesis: Vec<u8>,
    store: BlockStore,
    data_dir: PathBuf,
    /// Directly or relayed connected peers, with the address of the connection.
    pub connected: BTreeMap<PeerId, Multiaddr>,
    /// This node's listen addresses.
    pub listen: Vec<Multiaddr>,
    /// Whether others can dial us.
    pub reachability: crate::net::Reachability,
    answers: mpsc::Sender<Answer>,
}

impl Network {
    /// The network side of a node of `network_id`, answering joiners with `genesis` (CBOR).
    pub fn new(
        client: Client,
        network_id: Hash32,
        genesis: Vec<u8>,
        store: BlockStore,
        data_dir: PathBuf,
        answers: mpsc::Sender<Answer>,
    ) -> Network {
        Network {
            client,
            network_id,
            genesis,
            store,
            data_dir,
            connected: BTreeMap::new(),
            listen: Vec::new(),
            reachability: crate::net::Reachability::default(),
            answers,
        }
    }

    /// Where request tasks send their answers.
    pub fn answers(&self) -> mpsc::Sender<Answer> {
        self.answers.clone()
    }

    /// The gossipsub topic name of `topic` in this network.
    pub fn topic(&self, topic: Topic) -> String {
        topic.name(&self.network_id)
    }

    /// Subscribes to this network's topics and announces every track of the own `library` as
    /// held (PROTOCOL.md 6).
    pub async fn subscribe_and_provide(&self, library: &[chorus_consensus::TrackRef]) {
        for topic in [Topic::Consensus, Topic::Status] {
            self.client.subscribe(self.topic(topic)).await;
        }
        for track in library {
            let key = track.manifest_id.as_bytes().to_vec();
            self.client.provide(key).await;
        }
    }

    /// A new listen address (logged once).
    pub fn listening(&mut self, addr: Multiaddr) {
        if !self.listen.contains(&addr) {
            log_listening(&addr);
            self.listen.push(addr);
        }
    }

    /// A peer connected: logged, and the peer list saved for the next start.
    pub fn connected(&mut self, peer: PeerId, addr: Multiaddr) {
        info!(event = "peer_connected", peer = %peer, address = %addr, "connected to {peer} at {addr}");
        self.connected.insert(peer, addr);
        self.save_peers();
    }

    /// The connection `peer` is reached by changed (a hole punched, a relay dropped).
    pub fn route(&mut self, peer: PeerId, addr: Multiaddr) {
        let how = if crate::net::is_relayed(&addr) {
            "relayed"
        } else {
            "direct"
        };
        info!(event = "peer_route", peer = %peer, address = %addr, route = how,
            "{peer} is now reached {how} at {addr}");
        self.connected.insert(peer, addr);
    }

    /// A peer went away.
    pub fn disconnected(&mut self, peer: &PeerId) {
        info!(event = "peer_disconnected", peer = %peer, "disconnected from {peer}");
        self.connected.remove(peer);
    }

    fn save_peers(&self) {
        let addrs: Vec<String> = self
            .connected
            .iter()
            .filter(|(_, a)| !a.iter().any(|p| matches!(p, Protocol::P2p(_))))
            .map(|(p, a)| a.clone().with(Protocol::P2p(*p)).to_string())
            .collect();
        let dir = self.data_dir.clone();
        supervise::spawn_blocking("peer list", move || {
            if let Err(e) = state::save_peers(&dir, &addrs) {
                debug!("{e:#}");
            }
        });
    }

    /// Decodes a gossip message of this network's topics and hands it to consensus; the verdict
    /// is gossipsub's (Reject: a violation, counted by the caller when `Err`).
    pub fn validate(
        &self,
        consensus: &mut Consensus,
        now: u64,
        source: PeerId,
        topic: &str,
        data: &[u8],
    ) -> Result<MessageAcceptance, chorus_consensus::EnvelopeError> {
        let ours = [Topic::Consensus, Topic::Status]
            .iter()
            .any(|t| t.name(&self.network_id) == topic);
        if !ours {
            return Ok(MessageAcceptance::Ignore);
        }
        let envelope = Envelope::from_cbor(data, GOSSIP_MAX_BYTES)?;
        Ok(match consensus.handle_message(now, source, envelope) {
            Validation::Accept => MessageAcceptance::Accept,
            Validation::Ignore => MessageAcceptance::Ignore,
            Validation::Reject => MessageAcceptance::Reject,
        })
    }

    /// Answers a sync request: consensus answers chain and proposal requests, the genesis is
    /// held in memory, and a manifest is read from the store on a blocking thread, off the
    /// driver (its answer is sent from that task).
    pub async fn respond(
        &self,
        consensus: &Consensus,
        peer: PeerId,
        request: SyncRequest,
        channel: ResponseChannel<SyncResponse>,
    ) {
        debug!("sync request from {peer}: {request:?}");
        let response = match request {
            SyncRequest::Genesis => SyncResponse::Genesis(self.genesis.clone()),
            SyncRequest::Chain { from_slot } => {
                SyncResponse::Chain(consensus.answer_chain(from_slot))
            }
            SyncRequest::Proposals { slot, ids } => SyncResponse::Proposals(
                consensus
                    .answer_proposals(slot, &ids)
                    .iter()
                    .map(|e| serde_bytes::ByteBuf::from(e.to_cbor()))
                    .collect(),
            ),
            SyncRequest::Manifest { manifest_id } => {
                let (store, client) = (self.store.clone(), self.client.clone());
                supervise::spawn("manifest answer", async move {
                    let read = tokio::task::spawn_blocking(move || store.get(&manifest_id).ok());
                    let bytes = read.await.ok().flatten().map(serde_bytes::ByteBuf::from);
                    client
                        .respond_sync(channel, SyncResponse::Manifest(bytes))
                        .await;
                });
                return;
            }
        };
        self.client.respond_sync(channel, response).await;
    }

    /// Publishes on `topic`.
    pub async fn publish(&self, topic: Topic, envelope: &Envelope) {
        self.client
            .publish(self.topic(topic), envelope.to_cbor())
            .await;
    }

    /// Asks `peer` for proposals of `slot`; the envelopes come back as an [`Answer`].
    pub fn fetch_proposals(&self, peer: PeerId, slot: u64, ids: Vec<Hash32>) {
        let client = self.client.clone();
        let tx = self.answers.clone();
        supervise::spawn("proposal fetch", async move {
            if let Ok(SyncResponse::Proposals(list)) = client
                .sync(peer, SyncRequest::Proposals { slot, ids })
                .await
            {
                let envelopes = list
                    .iter()
                    .filter_map(|b| Envelope::from_cbor(b, GOSSIP_MAX_BYTES).ok())
                    .collect();
                let _ = tx.send(Answer::Proposals(envelopes)).await;
            }
        });
    }

    /// Asks `peer` for its decided slots from `from_slot` on.
    pub fn fetch_chain(&self, peer: PeerId, from_slot: u64) {
        let client = self.client.clone();
        let tx = self.answers.clone();
        supervise::spawn("chain fetch", async move {
            let answer = match client.sync(peer, SyncRequest::Chain { from_slot }).await {
                Ok(SyncResponse::Chain(slots)) => Ok(slots),
                Ok(other) => Err(format!("unexpected answer {other:?}")),
                Err(e) => Err(e.to_string()),
            };
            let _ = tx.send(Answer::Chain(peer, answer)).await;
        });
    }
}
