//! The loop that owns the swarm.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use chorus_media::store::BlockStore;
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance};
use libp2p::kad::{self, GetProvidersOk, QueryId, QueryResult, RecordKey};
use libp2p::metrics::Recorder;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify, mdns};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::behaviour::{
    Behaviour, BehaviourEvent, GRAYLIST_THRESHOLD, MAX_CONNECTIONS_PER_IP, topic_score_params,
};
use super::protocol::{Block, Have, Pong, SyncResponse, WANT_MAX, WANT_RESPONSE_BUDGET, Want};
use super::time_codec::{TimeRequest, TimeResponse};
use super::{Command, Event, NetInfo, RequestError};

type Reply<T> = oneshot::Sender<Result<T, RequestError>>;

/// How long a graylisted peer is refused after being disconnected.
pub const BAN: Duration = Duration::from_secs(600);
/// How often peer scores are checked for graylisted peers.
const SCORE_CHECK: Duration = Duration::from_secs(1);
/// Want lists read from the store at once for one peer; more are answered "later".
const BLOCK_READS_PER_PEER: usize = 2;
/// Want lists read from the store at once in total.
const BLOCK_READS_TOTAL: usize = 16;
/// Most banned identities remembered (identities are free: the per-IP limit is what holds).
const BANNED_MAX: usize = 4096;

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
    pub async fn run(mut self) {
        let mut score_check = tokio::time::interval(SCORE_CHECK);
        score_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                _ = score_check.tick() => self.drop_graylisted(),
                command = self.commands.recv() => match command {
                    Some(c) => self.on_command(c),
                    None => return,
                },
            }
        }
    }

    /// PROTOCOL.md 12.5: gossipsub ignores a graylisted peer's messages; here it is also
    /// disconnected and refused for [`BAN`].
    fn drop_graylisted(&mut self) {
        let now = Instant::now();
        self.banned.retain(|_, until| *until > now);
        let graylisted: Vec<(PeerId, f64)> = self
            .swarm
            .connected_peers()
            .filter_map(|p| {
                let score = self.swarm.behaviour().gossipsub.peer_score(p)?;
                (score < GRAYLIST_THRESHOLD).then_some((*p, score))
            })
            .collect();
        for (peer, score) in graylisted {
            if self.banned.len() < BANNED_MAX {
                self.banned.insert(peer, now + BAN);
            }
            warn!(event = "peer_graylisted", peer = %peer, score,
                "peer {peer} sent invalid messages (gossip score {score:.0}): disconnected and refused for {} s", BAN.as_secs());
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    /// Whether a new connection from `peer` at `addr` must be closed: a banned peer, or one
    /// more connection from an IP address that has [`MAX_CONNECTIONS_PER_IP`].
    fn refuse_connection(&self, peer: &PeerId, addr: &Multiaddr) -> Option<String> {
        if self
            .banned
            .get(peer)
            .is_some_and(|until| *until > Instant::now())
        {
            return Some("graylisted recently".to_owned());
        }
        let ip = remote_ip(addr)?;
        if ip.to_canonical().is_loopback() {
            return None;
        }
        let from_ip = self.connections.values().filter(|i| **i == ip).count();
        (from_ip >= MAX_CONNECTIONS_PER_IP)
            .then(|| format!("{from_ip} connections from {ip} already"))
    }

    fn emit(&self, event: Event) {
        // Never block the swarm: a driver that cannot keep up loses events (gossip is then
        // ignored, requests time out) rather than stalling every connection.
        if let Err(e) = self.events.try_send(event) {
            debug!("event dropped, the node is busy: {e}");
        }
    }

    fn on_command(&mut self, command: Command) {
        let behaviour = self.swarm.behaviour_mut();
        match command {
            Command::Listen(addr) => {
                if let Err(e) = self.swarm.listen_on(addr.clone()) {
                    warn!(event = "listen_failed", address = %addr, "cannot listen on {addr}: {e}");
                }
            }
            Command::Dial(addr) => {
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
            Command::Subscribe(topic) => {
                let ident = IdentTopic::new(topic.clone());
                if let Err(e) = behaviour.gossipsub.subscribe(&ident) {
                    warn!("cannot subscribe to {topic}: {e}");
                }
                if let Err(e) = behaviour
                    .gossipsub
                    .set_topic_params(ident, topic_score_params())
                {
                    warn!("cannot set the scoring of {topic}: {e}");
                }
            }
            Command::Publish { topic, data } => {
                match behaviour
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
            Command::Time { peer, reply } => {
                // The codec stamps t0 as it writes the request.
                let id = behaviour.time.send_request(
                    &peer,
                    TimeRequest {
                        ping: super::protocol::Ping { t0: 0 },
                        received_us: 0,
                    },
                );
                self.pending_time.insert(id, (peer, reply));
            }
            Command::Want { peer, want, reply } => {
                let id = behaviour.blocks.send_request(&peer, want);
                self.pending_want.insert(id, (peer, reply));
            }
            Command::RespondBlocks {
                peer,
                channel,
                have,
            } => {
                if let Some(n) = self.block_reads.get_mut(&peer) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.block_reads.remove(&peer);
                    }
                }
                let _ = behaviour.blocks.send_response(channel, have);
            }
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
                let _ = reply.send(NetInfo {
                    connected: self.swarm.connected_peers().copied().collect(),
                });
            }
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

    /// Answers a providers query with the first providers found (or none once it ends).
    fn on_providers(&mut self, id: QueryId, result: kad::GetProvidersResult, done: bool) {
        if let Some((found, _)) = self.pending_providers.get_mut(&id)
            && let Ok(GetProvidersOk::FoundProviders { providers, .. }) = result
        {
            found.extend(providers);
        }
        let finished = done
            || self
                .pending_providers
                .get(&id)
                .is_some_and(|(found, _)| !found.is_empty());
        if finished && let Some((found, reply)) = self.pending_providers.remove(&id) {
            let _ = reply.send(found);
            if !done && let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                q.finish();
            }
        }
    }

    fn on_sync(
        &mut self,
        event: request_response::Event<super::protocol::SyncRequest, SyncResponse>,
    ) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.emit(Event::SyncRequest {
                    peer,
                    request,
                    channel,
                }),
                request_response::Message::Response {
                    request_id,
                    response,
                } => settle(&mut self.pending_sync, request_id, Ok(response)),
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => fail(&mut self.pending_sync, request_id, peer, &error),
            _ => {}
        }
    }

    fn on_time(&mut self, event: request_response::Event<TimeRequest, TimeResponse>) {
        match event {
            request_response::Event::Message { message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    // t1 was stamped by the codec on arrival, t2 is stamped as it writes.
                    let pong = Pong {
                        t0: request.ping.t0,
                        t1: request.received_us,
                        t2: 0,
                    };
                    let _ = self.swarm.behaviour_mut().time.send_response(
                        channel,
                        TimeResponse {
                            pong,
                            received_us: 0,
                        },
                    );
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some((_, reply)) = self.pending_time.remove(&request_id) {
                        let _ = reply.send(Ok((response.pong, response.received_us)));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => fail(&mut self.pending_time, request_id, peer, &error),
            _ => {}
        }
    }

    fn on_blocks(&mut self, event: request_response::Event<Want, Have>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    // PROTOCOL.md 12.5: a bounded number of reads per peer and in total; the
                    // rest is answered "later" at once, without touching the disk.
                    let reading: usize = self.block_reads.values().sum();
                    let own = self.block_reads.get(&peer).copied().unwrap_or(0);
                    if own >= BLOCK_READS_PER_PEER || reading >= BLOCK_READS_TOTAL {
                        let have = Have {
                            later: request.ids.into_iter().take(WANT_MAX).collect(),
                            ..Have::default()
                        };
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .blocks
                            .send_response(channel, have);
                        return;
                    }
                    *self.block_reads.entry(peer).or_default() += 1;
                    // Disk reads off the event loop; the answer comes back as a command.
                    let store = self.store.clone();
                    let loopback = self.loopback.clone();
                    let corrupt = self.corrupt_blocks;
                    tokio::task::spawn_blocking(move || {
                        let have = read_blocks(&store, request, corrupt);
                        let _ = loopback.blocking_send(Command::RespondBlocks {
                            peer,
                            channel,
                            have,
                        });
                    });
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => settle(&mut self.pending_want, request_id, Ok(response)),
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => fail(&mut self.pending_want, request_id, peer, &error),
            _ => {}
        }
    }
}

/// The IP address of a connection's remote multiaddr (`/ip4/...` or `/ip6/...`).
fn remote_ip(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

/// Hands a pending request its result (the requester may have gone: then nobody listens).
fn settle<T>(
    pending: &mut HashMap<OutboundRequestId, (PeerId, Reply<T>)>,
    request_id: OutboundRequestId,
    result: Result<T, RequestError>,
) {
    if let Some((_, reply)) = pending.remove(&request_id) {
        let _ = reply.send(result);
    }
}

/// Ends a pending request with the failure libp2p reported.
fn fail<T>(
    pending: &mut HashMap<OutboundRequestId, (PeerId, Reply<T>)>,
    request_id: OutboundRequestId,
    peer: PeerId,
    error: &request_response::OutboundFailure,
) {
    let reason = error.to_string();
    settle(
        pending,
        request_id,
        Err(RequestError::Failed { peer, reason }),
    );
}

/// The answer to a want list from the store: blocks up to the budget, `later` for the rest of
/// those held, `dont_have` for the others. Only the first [`WANT_MAX`] ids are considered.
fn read_blocks(store: &BlockStore, want: Want, corrupt: bool) -> Have {
    let mut have = Have::default();
    let mut bytes = 0usize;
    for id in want.ids.into_iter().take(WANT_MAX) {
        let media_id = chorus_media::Hash32(id.0);
        if !store.contains(&media_id) {
            have.dont_have.push(id);
            continue;
        }
        if bytes >= WANT_RESPONSE_BUDGET {
            have.later.push(id);
            continue;
        }
        match store.get(&media_id) {
            Ok(mut data) => {
                let middle = data.len() / 2;
                if corrupt && let Some(b) = data.get_mut(middle) {
                    *b ^= 0x5a;
                }
                bytes += data.len();
                have.blocks.push(Block { id, data });
            }
            Err(_) => have.dont_have.push(id),
        }
    }
    have
}
