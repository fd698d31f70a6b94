//! The loop that owns the swarm.
//!
//! - `guard`: graylisted peers banned and the per-IP connection limit.
//! - `commands`: the [`Command`]s of the [`super::Client`].
//! - `requests`: the sync and time protocols and the DHT's provider queries.
//! - `blocks`: answering want lists from the store, a bounded number at a time.

mod blocks;
mod commands;
mod guard;
mod requests;

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use chorus_media::store::BlockStore;
use futures::StreamExt;
use libp2p::gossipsub::{self, MessageAcceptance};
use libp2p::kad::{self, QueryId, QueryResult};
use libp2p::metrics::Recorder;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::OutboundRequestId;
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{PeerId, Swarm, identify, mdns};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::behaviour::{Behaviour, BehaviourEvent};
use super::protocol::{Have, Pong, SyncResponse};
use super::{Command, Event, RequestError};
use guard::remote_ip;

type Reply<T> = oneshot::Sender<Result<T, RequestError>>;

/// How often peer scores are checked for graylisted peers.
const SCORE_CHECK: Duration = Duration::from_secs(1);

/// Owns the swarm; run it with [`EventLoop::run`] on its own task.
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    /// For the block-reading tasks' answers.
    loopback: mpsc::Sender<Command>,
    events: mpsc::Sender<Event>,
    store: BlockStore,
    corrupt_blocks: bool,
    metrics: libp2p::metrics::Metrics,
    pending_sync: HashMap<OutboundRequestId, (PeerId, Reply<SyncResponse>)>,
    pending_time: HashMap<OutboundRequestId, (PeerId, Reply<(Pong, u64)>)>,
    pending_want: HashMap<OutboundRequestId, (PeerId, Reply<Have>)>,
    pending_providers: HashMap<QueryId, (Vec<PeerId>, oneshot::Sender<Vec<PeerId>>)>,
    /// Remote IP of every established connection, for the per-IP limit.
    connections: HashMap<ConnectionId, IpAddr>,
    /// Graylisted peers disconnected, until when they are refused.
    banned: HashMap<PeerId, Instant>,
    /// Want lists being read from the store, per peer.
    block_reads: HashMap<PeerId, usize>,
}

impl EventLoop {
    pub(super) fn new(
        swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        loopback: mpsc::Sender<Command>,
        events: mpsc::Sender<Event>,
        store: BlockStore,
        corrupt_blocks: bool,
        metrics: libp2p::metrics::Metrics,
    ) -> EventLoop {
        EventLoop {
            swarm,
            commands,
            loopback,
            events,
            store,
            corrupt_blocks,
            metrics,
            pending_sync: HashMap::new(),
            pending_time: HashMap::new(),
            pending_want: HashMap::new(),
            pending_providers: HashMap::new(),
            connections: HashMap::new(),
            banned: HashMap::new(),
            block_reads: HashMap::new(),
        }
    }

    /// Runs until every [`super::Client`] is dropped.
    pub async fn run(self) {
        self.run_until(CancellationToken::new()).await;
    }

    /// Runs until every [`super::Client`] is dropped or `shutdown` fires.
    pub async fn run_until(mut self, shutdown: CancellationToken) {
        let mut score_check = tokio::time::interval(SCORE_CHECK);
        score_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                _ = score_check.tick() => self.drop_graylisted(),
                command = self.commands.recv() => match command {
                    Some(c) => self.on_command(c),
                    None => return,
                },
            }
        }
    }

    fn emit(&self, event: Event) {
        // Never block the swarm: a driver that cannot keep up loses events (gossip is then
        // ignored, requests time out) rather than stalling every connection.
        if let Err(e) = self.events.try_send(event) {
            debug!("event dropped, the node is busy: {e}");
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.metrics.record(&event);
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                let me = *self.swarm.local_peer_id();
                self.emit(Event::Listening(address.with(Protocol::P2p(me))));
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                let addr = endpoint.get_remote_address();
                if let Some(why) = self.refuse_connection(&peer_id, addr) {
                    debug!("connection from {peer_id} at {addr} refused: {why}");
                    self.swarm.close_connection(connection_id);
                    return;
                }
                if let Some(ip) = remote_ip(addr) {
                    self.connections.insert(connection_id, ip);
                }
                if num_established.get() == 1 {
                    self.emit(Event::Connected(peer_id, addr.clone()));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                // A connection refused above never reached the driver: nothing to report.
                let known = self.connections.remove(&connection_id).is_some();
                if num_established == 0 && known {
                    self.emit(Event::Disconnected(peer_id));
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                debug!("outgoing connection to {peer_id:?} failed: {error}");
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match &event {
            BehaviourEvent::Gossipsub(e) => self.metrics.record(e),
            BehaviourEvent::Identify(e) => self.metrics.record(e),
            BehaviourEvent::Kad(e) => self.metrics.record(e),
            BehaviourEvent::Ping(e) => self.metrics.record(e),
            _ => {}
        }
        match event {
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => {
                let event = Event::Gossip {
                    id: message_id.clone(),
                    source: propagation_source,
                    topic: message.topic.into_string(),
                    data: message.data,
                };
                if self.events.try_send(event).is_err() {
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            MessageAcceptance::Ignore,
                        );
                }
            }
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                for addr in info.listen_addrs {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    info!(event = "mdns_discovered", peer = %peer, address = %addr, "found peer {peer} on the LAN at {addr}");
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, addr.clone());
                    let _ = self.swarm.dial(addr);
                }
            }
            BehaviourEvent::Sync(event) => self.on_sync(event),
            BehaviourEvent::Time(event) => self.on_time(event),
            BehaviourEvent::Blocks(event) => self.on_blocks(event),
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result: QueryResult::GetProviders(result),
                step,
                ..
            }) => self.on_providers(id, result, step.last),
            _ => {}
        }
    }
}
