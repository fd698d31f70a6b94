//! The loop that owns the swarm.
//!
//! - `guard`: graylisted peers banned and the per-IP connection limit.
//! - `commands`: the [`Command`]s of the [`super::Client`].
//! - `requests`: the sync and time protocols and the DHT's provider queries.
//! - `blocks`: answering want lists from the store, a bounded number at a time.
//! - `nat`: our reachability (AutoNAT v2, UPnP), relay reservations while private, hole
//!   punching, and relayed connections dropped once a direct one exists.
//! - `discovery`: more peers than the ones given: DHT bootstrap, and gossip authors dialed
//!   directly or through our relays.

mod blocks;
mod commands;
mod discovery;
mod guard;
mod nat;
mod requests;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_media::store::BlockStore;
use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::gossipsub::{self, MessageAcceptance};
use libp2p::kad::{self, QueryId, QueryResult};
use libp2p::metrics::Recorder;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::OutboundRequestId;
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify, mdns};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::behaviour::{Behaviour, BehaviourEvent};
use super::protocol::{Have, Pong, SyncResponse};
use super::{Command, Event, RequestError};
use guard::remote_ip;
use nat::relay_server_event;

type Reply<T> = oneshot::Sender<Result<T, RequestError>>;

/// How often peer scores are checked for graylisted peers.
const SCORE_CHECK: Duration = Duration::from_secs(1);
/// How often reservations, discovery and the DHT are looked after.
const MAINTENANCE: Duration = Duration::from_secs(2);

/// One established connection.
#[derive(Debug, Clone)]
struct Conn {
    peer: PeerId,
    /// The remote address (`/p2p-circuit` for a relayed one).
    addr: Multiaddr,
    /// Whether it goes through a relay.
    relayed: bool,
    /// We dialed it (so the address is one the peer listens on).
    dialer: bool,
    /// The remote IP, for the per-IP limit (`None` for relayed connections: their IP is the
    /// relay's).
    ip: Option<IpAddr>,
}

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
    /// Chorus's own metrics (per-peer exchange bytes).
    counters: Arc<crate::metrics::Metrics>,
    pending_sync: HashMap<OutboundRequestId, (PeerId, Reply<SyncResponse>)>,
    pending_time: HashMap<OutboundRequestId, (PeerId, Reply<(Pong, u64)>)>,
    pending_want: HashMap<OutboundRequestId, (PeerId, Reply<Have>)>,
    pending_providers: HashMap<QueryId, (Vec<PeerId>, oneshot::Sender<Vec<PeerId>>)>,
    /// Every established connection that was not refused.
    connections: HashMap<ConnectionId, Conn>,
    /// Reachability, relays and hole punching.
    nat: nat::Nat,
    /// Peers to find and the DHT's upkeep.
    discovery: discovery::Discovery,
    /// Graylisted peers disconnected, until when they are refused.
    banned: HashMap<PeerId, Instant>,
    /// Copies of each block served (super-seeding).
    uploads: crate::net::uploads::Uploads,
    /// Want lists being read from the store, per peer.
    block_reads: HashMap<PeerId, usize>,
    /// The ids of each want list of ours in flight.
    want_ids: HashMap<OutboundRequestId, Vec<chorus_consensus::Hash32>>,
    /// Want lists waiting for blocks on their way here ("coming soon").
    parked: crate::net::parked::Parked<libp2p::request_response::ResponseChannel<Have>>,
}

impl EventLoop {
    pub(super) fn new(
        swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        loopback: mpsc::Sender<Command>,
        events: mpsc::Sender<Event>,
        store: BlockStore,
        corrupt_blocks: bool,
        (metrics, counters): (libp2p::metrics::Metrics, Arc<crate::metrics::Metrics>),
    ) -> EventLoop {
        EventLoop {
            swarm,
            commands,
            loopback,
            events,
            store,
            corrupt_blocks,
            metrics,
            counters,
            pending_sync: HashMap::new(),
            pending_time: HashMap::new(),
            pending_want: HashMap::new(),
            pending_providers: HashMap::new(),
            connections: HashMap::new(),
            nat: nat::Nat::default(),
            discovery: discovery::Discovery::default(),
            banned: HashMap::new(),
            uploads: crate::net::uploads::Uploads::default(),
            block_reads: HashMap::new(),
            want_ids: HashMap::new(),
            parked: crate::net::parked::Parked::default(),
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
        let mut maintenance = tokio::time::interval(MAINTENANCE);
        maintenance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                _ = score_check.tick() => {
                    self.drop_graylisted();
                    self.expire_parked();
                }
                _ = maintenance.tick() => {
                    self.maintain_relays();
                    self.discover();
                }
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
                ..
            } => {
                // An inbound relayed connection's remote address is only `/p2p/<peer>`: its
                // local one (our circuit address at the relay) tells the route.
                let relayed = endpoint.is_relayed();
                let addr = match &endpoint {
                    ConnectedPoint::Listener { local_addr, .. } if relayed => local_addr,
                    _ => endpoint.get_remote_address(),
                };
                if let Some(why) = self.refuse_connection(&peer_id, addr, relayed) {
                    debug!("connection from {peer_id} at {addr} refused: {why}");
                    self.swarm.close_connection(connection_id);
                    return;
                }
                let conn = Conn {
                    peer: peer_id,
                    addr: addr.clone(),
                    relayed,
                    dialer: endpoint.is_dialer(),
                    ip: if relayed { None } else { remote_ip(addr) },
                };
                let first = !self.connections.values().any(|c| c.peer == peer_id);
                self.connections.insert(connection_id, conn);
                if relayed {
                    self.relayed_established(peer_id, connection_id);
                }
                if first {
                    self.emit(Event::Connected(peer_id, addr.clone()));
                } else if !relayed {
                    self.emit(Event::Route(peer_id, addr.clone()));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                ..
            } => {
                // A connection refused above never reached the driver: nothing to report.
                let known = self.connections.remove(&connection_id).is_some();
                if !known {
                    return;
                }
                match self.route_to(&peer_id) {
                    None => self.emit(Event::Disconnected(peer_id)),
                    Some(addr) => self.emit(Event::Route(peer_id, addr)),
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                debug!("outgoing connection to {peer_id:?} failed: {error}");
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            SwarmEvent::ExternalAddrConfirmed { address } => self.address_confirmed(address),
            SwarmEvent::ExternalAddrExpired { address } => self.address_expired(&address),
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => self.listener_closed(listener_id, reason.err()),
            _ => {}
        }
    }

    /// The best connection to `peer`: a direct one if any, else a relayed one.
    fn route_to(&self, peer: &PeerId) -> Option<Multiaddr> {
        let mut conns = self.connections.values().filter(|c| c.peer == *peer);
        let first = conns.next()?;
        let best = std::iter::once(first)
            .chain(conns)
            .min_by_key(|c| c.relayed)
            .unwrap_or(first);
        Some(best.addr.clone())
    }

    /// Whether `peer` has a direct (not relayed) connection.
    fn has_direct(&self, peer: &PeerId) -> bool {
        self.connections
            .values()
            .any(|c| c.peer == *peer && !c.relayed)
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
                if let Some(author) = message.source
                    && self.discovery.heard(author)
                {
                    self.new_author(author);
                }
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
                self.identified(peer_id, info);
            }
            BehaviourEvent::Autonat(event) => self.autonat_tested(event),
            BehaviourEvent::AutonatV1(event) => self.autonat_v1(event),
            BehaviourEvent::RelayClient(event) => self.relay_client_event(event),
            BehaviourEvent::Relay(event) => relay_server_event(&event),
            BehaviourEvent::Dcutr(event) => self.hole_punch(event),
            BehaviourEvent::Upnp(event) => self.upnp_event(event),
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                // A peer's loopback addresses are our own loopback.
                let lan = |(_, a): &(PeerId, Multiaddr)| {
                    matches!(
                        crate::net::scope(a),
                        crate::net::Scope::Private | crate::net::Scope::Other
                    )
                };
                for (peer, addr) in found.into_iter().filter(lan) {
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
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result: QueryResult::GetClosestPeers(result),
                step,
                ..
            }) => self.looked_up(id, result, step.last),
            _ => {}
        }
    }
}
