//! The libp2p side of the node, split as in rust-libp2p's file-sharing example: a cloneable
//! [`Client`] sends [`Command`]s to the [`EventLoop`], which alone owns the `Swarm`, and the
//! event loop reports [`Event`]s on a channel.
//!
//! - `behaviour`: the composed behaviour (gossipsub, Kademlia, identify, ping, mDNS and the
//!   request-response protocols).
//! - `time_codec`: `/chorus/time/1`, stamped at the stream.
//! - `protocol`: the request and answer types of `/chorus/sync/1`, `/chorus/time/1` and the
//!   block exchange.
//! - `records`: the DHT's record store, with quotas on other peers' records.
//! - `uploads`: super-seeding, the copies of each block served before requesters are referred
//!   to the peers that got it.
//! - `event_loop`: the loop that owns the swarm.

pub mod behaviour;
mod event_loop;
pub mod parked;
pub mod protocol;
pub mod records;
pub mod time_codec;
pub mod uploads;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chorus_media::store::BlockStore;
use libp2p::gossipsub::{MessageAcceptance, MessageId};
use libp2p::identity::Keypair;
use libp2p::request_response::ResponseChannel;
use libp2p::{Multiaddr, PeerId, Swarm, noise, tcp, yamux};
use tokio::sync::{mpsc, oneshot};

pub use event_loop::EventLoop;
use protocol::{Have, Pong, SyncRequest, SyncResponse, Want};

use crate::clock::Clock;

/// What a request to a peer can end in besides an answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RequestError {
    /// The request failed on the way (timeout, connection closed, unsupported, oversized).
    #[error("request to {peer} failed: {reason}")]
    Failed {
        /// The peer asked.
        peer: PeerId,
        /// What went wrong.
        reason: String,
    },
    /// The event loop has stopped.
    #[error("the network has stopped")]
    Stopped,
}

/// Commands for the event loop.
#[derive(Debug)]
pub enum Command {
    /// Listen on an address.
    Listen(Multiaddr),
    /// Dial an address (with `/p2p/` when known).
    Dial(Multiaddr),
    /// Subscribe to a gossipsub topic.
    Subscribe(String),
    /// Publish on a topic (dropped when no peer subscribed: the protocol's catch-up covers it).
    Publish {
        /// The gossipsub topic.
        topic: String,
        /// The message.
        data: Vec<u8>,
    },
    /// The verdict on a gossip message (explicit validation).
    Validate {
        /// The message.
        id: MessageId,
        /// The peer it came from.
        source: PeerId,
        /// Forward it, ignore it, or reject it (and penalize the source).
        acceptance: MessageAcceptance,
    },
    /// `/chorus/sync/1` request.
    Sync {
        /// The peer asked.
        peer: PeerId,
        /// The request.
        request: SyncRequest,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<SyncResponse, RequestError>>,
    },
    /// Answer an inbound sync request.
    RespondSync {
        /// The request's channel (from [`Event::SyncRequest`]).
        channel: ResponseChannel<SyncResponse>,
        /// The answer.
        response: SyncResponse,
    },
    /// `/chorus/time/1` request.
    Time {
        /// The peer asked.
        peer: PeerId,
        /// Where the pong and its receive time (`t3`, µs) go.
        reply: oneshot::Sender<Result<(Pong, u64), RequestError>>,
    },
    /// Want-list request.
    Want {
        /// The peer asked.
        peer: PeerId,
        /// The block ids wanted.
        want: Want,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<Have, RequestError>>,
    },
    /// The slot of the track with this manifest id starts at `at`: until shortly before, its
    /// blocks stay within the copy bound of super-seeding (`uploads`).
    Due {
        /// The track's manifest id.
        manifest: chorus_consensus::Hash32,
        /// When its slot starts.
        at: std::time::Instant,
    },
    /// Answer an inbound want list (from the block-reading task).
    RespondBlocks {
        /// The peer that asked (its store reads are counted until answered).
        peer: PeerId,
        /// The manifest id the want list named, if any (for the upload counted per track).
        track: Option<chorus_consensus::Hash32>,
        /// The request's channel.
        channel: ResponseChannel<Have>,
        /// The answer.
        have: Have,
    },
    /// Announce a provider record for a key (a manifest id).
    Provide(Vec<u8>),
    /// Ask the DHT for providers of a key.
    Providers {
        /// The key.
        key: Vec<u8>,
        /// Where the providers found go (the first ones, or none once the query ends).
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    /// The connected peers.
    Info {
        /// Where the snapshot goes.
        reply: oneshot::Sender<NetInfo>,
    },
}

/// Whether others can dial this node (AutoNAT v2 and UPnP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reachability {
    /// Not known yet: no address tested.
    #[default]
    Unknown,
    /// An address of ours was dialed back by a peer (or mapped by a UPnP router).
    Public,
    /// Every address tested failed: we are behind NAT or a firewall.
    Private,
}

impl Reachability {
    /// `public`, `private` or `unknown`, as `/status` and the log write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Reachability::Unknown => "unknown",
            Reachability::Public => "public",
            Reachability::Private => "private",
        }
    }
}

/// Whether `addr` goes through a relay (`/p2p-circuit`).
pub fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter()
        .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2pCircuit))
}

/// Where an address can be dialed from, by its IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// This machine only (127.0.0.0/8, ::1).
    Loopback,
    /// A LAN (10/8, 172.16/12, 192.168/16, 100.64/10, link-local, fc00::/7).
    Private,
    /// Nowhere (0.0.0.0, ::).
    Unspecified,
    /// Anywhere else (global, and names).
    Other,
}

/// The [`Scope`] of `addr`'s IP (a DNS name is [`Scope::Other`]).
pub fn scope(addr: &Multiaddr) -> Scope {
    use libp2p::multiaddr::Protocol;
    match addr.iter().next() {
        Some(Protocol::Ip4(ip)) if ip.is_loopback() => Scope::Loopback,
        Some(Protocol::Ip4(ip)) if ip.is_unspecified() => Scope::Unspecified,
        Some(Protocol::Ip4(ip))
            if ip.is_private()
                || ip.is_link_local()
                || (ip.octets()[0] == 100 && (ip.octets()[1] & 0xc0) == 64) =>
        {
            Scope::Private
        }
        Some(Protocol::Ip6(ip)) if ip.is_loopback() => Scope::Loopback,
        Some(Protocol::Ip6(ip)) if ip.is_unspecified() => Scope::Unspecified,
        Some(Protocol::Ip6(ip)) if ip.is_unique_local() || ip.is_unicast_link_local() => {
            Scope::Private
        }
        _ => Scope::Other,
    }
}

/// Whether a peer's advertised `addr` is worth dialing from a node whose direct connections
/// reach peers at `ours`: an address of another scope than the node's own networks names
/// some other machine there (a peer's 127.0.0.1 or 192.168.1.5 is this node's own loopback or
/// LAN), and dialing it reaches a wrong peer at best, which aborts the whole dial.
pub fn worth_dialing(addr: &Multiaddr, ours: impl IntoIterator<Item = Scope>) -> bool {
    match scope(addr) {
        Scope::Unspecified => false,
        Scope::Other => true,
        s => ours.into_iter().any(|o| o == s),
    }
}

/// The transport of `addr` (`quic`, `tcp`; for a relayed address, the one to the relay).
pub fn transport(addr: &Multiaddr) -> Option<&'static str> {
    use libp2p::multiaddr::Protocol;
    addr.iter().find_map(|p| match p {
        Protocol::QuicV1 | Protocol::Quic => Some("quic"),
        Protocol::Tcp(_) => Some("tcp"),
        _ => None,
    })
}

/// A snapshot of the swarm.
#[derive(Debug, Clone, Default)]
pub struct NetInfo {
    /// Connected peers.
    pub connected: Vec<PeerId>,
    /// Those with a direct (not relayed) connection: the block exchange's peers.
    pub direct: Vec<PeerId>,
    /// Those with a direct connection over the LAN (or this machine).
    pub lan: BTreeSet<PeerId>,
    /// Public peers reached directly over the internet, when a crowd of private peers is
    /// reached there too (the seed's hubs, [`uploads`]); else none.
    pub hubs: BTreeSet<PeerId>,
}

/// What the event loop reports.
#[derive(Debug)]
pub enum Event {
    /// A new listen address (with `/p2p/`).
    Listening(Multiaddr),
    /// A gossip message to validate.
    Gossip {
        /// The message's id, for [`Client::validate`].
        id: MessageId,
        /// The peer that relayed it.
        source: PeerId,
        /// Its topic.
        topic: String,
        /// Its bytes.
        data: Vec<u8>,
    },
    /// An inbound sync request to answer with [`Client::respond_sync`].
    SyncRequest {
        /// The peer asking.
        peer: PeerId,
        /// What it asks.
        request: SyncRequest,
        /// Where the answer goes.
        channel: ResponseChannel<SyncResponse>,
    },
    /// A peer connected (first connection).
    Connected(PeerId, Multiaddr),
    /// The connection a peer is reached by changed (a hole punched beside a relayed one, or
    /// one of two closed): its remote address now.
    Route(PeerId, Multiaddr),
    /// What AutoNAT and UPnP tell of our own reachability changed.
    Reachability(Reachability),
    /// A peer's last connection closed.
    Disconnected(PeerId),
}

/// The handle the rest of the node uses to talk to the network.
#[derive(Clone, Debug)]
pub struct Client {
    tx: mpsc::Sender<Command>,
}

/// Everything the network needs to start.
pub struct NetConfig {
    /// The node's identity.
    pub keypair: Keypair,
    /// LAN discovery.
    pub mdns: bool,
    /// Port mappings from a UPnP router.
    pub upnp: bool,
    /// Testing: AutoNAT v1 also tests non-global addresses.
    pub autonat_any_address: bool,
    /// Where blocks are served from.
    pub store: BlockStore,
    /// Network time, for `/chorus/time/1` stamps.
    pub clock: Arc<Clock>,
    /// Where libp2p's metrics are registered.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Testing only: serve every block with one byte flipped.
    pub corrupt_blocks: bool,
    /// Requests in flight per connection and protocol
    /// ([`behaviour::MAX_STREAMS_PER_CONNECTION`]; the tests' attacker raises it).
    pub streams_per_connection: usize,
}

/// Builds the swarm and returns the client, the event stream and the loop to spawn.
pub fn new(config: NetConfig) -> anyhow::Result<(Client, mpsc::Receiver<Event>, EventLoop)> {
    let options = behaviour::Options {
        mdns: config.mdns,
        upnp: config.upnp,
        autonat_any_address: config.autonat_any_address,
        streams: config.streams_per_connection,
    };
    let clock = config.clock;
    // The registry stays locked while the swarm is built: libp2p registers its metrics in it.
    let metrics = config.metrics.clone();
    let (swarm, p2p_metrics) = metrics.with_registry(|registry| -> anyhow::Result<_> {
        let swarm: Swarm<behaviour::Behaviour> =
            libp2p::SwarmBuilder::with_existing_identity(config.keypair.clone())
                .with_tokio()
                .with_tcp(
                    tcp::Config::default().nodelay(true),
                    noise::Config::new,
                    yamux::Config::default,
                )?
                .with_quic()
                .with_dns()?
                .with_relay_client(noise::Config::new, yamux::Config::default)?
                .with_bandwidth_metrics(registry)
                .with_behaviour(|key, relay_client| {
                    behaviour::Behaviour::new(key, relay_client, options, clock.clone())
                        .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
                })?
                .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
                .build();
        Ok((swarm, libp2p::metrics::Metrics::new(registry)))
    })?;
    let (command_tx, command_rx) = mpsc::channel(1024);
    let (event_tx, event_rx) = mpsc::channel(4096);
    let event_loop = EventLoop::new(
        swarm,
        command_rx,
        command_tx.clone(),
        event_tx,
        config.store,
        config.corrupt_blocks,
        (p2p_metrics, config.metrics.clone()),
    );
    Ok((Client { tx: command_tx }, event_rx, event_loop))
}

impl Client {
    async fn send(&self, command: Command) {
        // A stopped event loop means the node is shutting down; callers see it through the
        // replies that never come (RequestError::Stopped).
        let _ = self.tx.send(command).await;
    }

    /// Listens on `addr`.
    pub async fn listen(&self, addr: Multiaddr) {
        self.send(Command::Listen(addr)).await;
    }

    /// Dials `addr`.
    pub async fn dial(&self, addr: Multiaddr) {
        self.send(Command::Dial(addr)).await;
    }

    /// Subscribes to `topic`.
    pub async fn subscribe(&self, topic: String) {
        self.send(Command::Subscribe(topic)).await;
    }

    /// Publishes `data` on `topic`.
    pub async fn publish(&self, topic: String, data: Vec<u8>) {
        self.send(Command::Publish { topic, data }).await;
    }

    /// Reports the verdict on a gossip message.
    pub async fn validate(&self, id: MessageId, source: PeerId, acceptance: MessageAcceptance) {
        self.send(Command::Validate {
            id,
            source,
            acceptance,
        })
        .await;
    }

    /// Sends a sync request and waits for the answer.
    pub async fn sync(
        &self,
        peer: PeerId,
        request: SyncRequest,
    ) -> Result<SyncResponse, RequestError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Sync {
            peer,
            request,
            reply,
        })
        .await;
        rx.await.unwrap_or(Err(RequestError::Stopped))
    }

    /// Answers an inbound sync request.
    pub async fn respond_sync(
        &self,
        channel: ResponseChannel<SyncResponse>,
        response: SyncResponse,
    ) {
        self.send(Command::RespondSync { channel, response }).await;
    }

    /// One `/chorus/time/1` exchange: the pong and `t3`, the receive time.
    pub async fn time(&self, peer: PeerId) -> Result<(Pong, u64), RequestError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Time { peer, reply }).await;
        rx.await.unwrap_or(Err(RequestError::Stopped))
    }

    /// Sends a want list (with `track`, a manifest id, asking for the peer's holdings of it
    /// too) and waits for the answer.
    pub async fn want(
        &self,
        peer: PeerId,
        ids: Vec<chorus_consensus::Hash32>,
        track: Option<chorus_consensus::Hash32>,
    ) -> Result<Have, RequestError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Want {
            peer,
            want: Want { ids, track },
            reply,
        })
        .await;
        rx.await.unwrap_or(Err(RequestError::Stopped))
    }

    /// Tells super-seeding when the slot of the track with manifest id `manifest` starts.
    pub async fn due(&self, manifest: chorus_consensus::Hash32, at: std::time::Instant) {
        self.send(Command::Due { manifest, at }).await;
    }

    /// Announces that this node provides `key`.
    pub async fn provide(&self, key: Vec<u8>) {
        self.send(Command::Provide(key)).await;
    }

    /// Providers of `key` known to the DHT.
    pub async fn providers(&self, key: Vec<u8>) -> Vec<PeerId> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Providers { key, reply }).await;
        rx.await.unwrap_or_default()
    }

    /// Connected peers.
    pub async fn info(&self) -> NetInfo {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Info { reply }).await;
        rx.await.unwrap_or_default()
    }
}

/// A peer id made from `i`, the same for the same `i` (tests).
#[cfg(test)]
pub(crate) fn test_peer(i: u8) -> PeerId {
    libp2p::identity::Keypair::ed25519_from_bytes([i; 32])
        .expect("32 bytes make a key")
        .public()
        .to_peer_id()
}

#[cfg(test)]
mod scope_tests {
    use super::*;

    fn a(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_are_scoped_by_their_ip() {
        assert_eq!(scope(&a("/ip4/127.0.0.1/tcp/4747")), Scope::Loopback);
        assert_eq!(scope(&a("/ip6/::1/udp/4747/quic-v1")), Scope::Loopback);
        assert_eq!(scope(&a("/ip4/192.168.1.5/tcp/4747")), Scope::Private);
        assert_eq!(scope(&a("/ip4/10.1.0.2/tcp/4747")), Scope::Private);
        assert_eq!(scope(&a("/ip4/100.64.3.4/tcp/4747")), Scope::Private);
        assert_eq!(scope(&a("/ip6/fd00::1/tcp/4747")), Scope::Private);
        assert_eq!(scope(&a("/ip4/0.0.0.0/tcp/4747")), Scope::Unspecified);
        assert_eq!(scope(&a("/ip4/198.18.1.2/tcp/4747")), Scope::Other);
        assert_eq!(scope(&a("/ip4/203.0.113.9/tcp/4747")), Scope::Other);
        assert_eq!(scope(&a("/dns4/radio.example/tcp/4747")), Scope::Other);
    }

    #[test]
    fn a_peers_loopback_and_lan_addresses_are_dialed_only_from_such_networks() {
        let on_internet = [Scope::Other];
        let at_home = [Scope::Private, Scope::Other];
        let in_tests = [Scope::Loopback];
        let lo = a("/ip4/127.0.0.1/udp/4747/quic-v1");
        let lan = a("/ip4/192.168.1.5/tcp/4747");
        let public = a("/ip4/203.0.113.9/tcp/4747");
        assert!(!worth_dialing(&lo, on_internet));
        assert!(!worth_dialing(&lo, at_home));
        assert!(worth_dialing(&lo, in_tests));
        assert!(!worth_dialing(&lan, on_internet));
        assert!(worth_dialing(&lan, at_home));
        assert!(worth_dialing(&public, on_internet));
        assert!(worth_dialing(&public, []));
        assert!(!worth_dialing(&a("/ip4/0.0.0.0/tcp/4747"), in_tests));
    }
}
