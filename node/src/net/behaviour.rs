//! The composed libp2p behaviour.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::{
    PeerId, StreamProtocol, autonat, connection_limits, dcutr, gossipsub, identify, kad, mdns,
    ping, relay, upnp,
};
use sha2::{Digest, Sha256};

use super::protocol::{
    BLOCKS_PROTOCOL, IDENTIFY_VERSION, KAD_PROTOCOL, SYNC_PROTOCOL, TIME_PROTOCOL,
};
use super::time_codec::TimeCodec;
use crate::clock::Clock;
use chorus_consensus::limits::{
    BLOCKS_MESSAGE_MAX_BYTES, SYNC_REQUEST_MAX_BYTES, SYNC_RESPONSE_MAX_BYTES,
};

/// PROTOCOL.md 10: a gossip message is at most `GOSSIP_MAX_BYTES`. Receivers check the whole
/// frame (topic, sender, sequence number and signature included), so the transport limit sits
/// a few KiB above.
const GOSSIP_FRAME_MAX: usize = chorus_consensus::limits::GOSSIP_MAX_BYTES + 8 * 1024;

/// Established connections in total (PROTOCOL.md 12.5). A node needs a few dozen peers; the
/// rest is room for listeners' nodes and churn.
pub const MAX_CONNECTIONS: u32 = 256;
/// Connections being set up at once, each way.
pub const MAX_PENDING: u32 = 64;
/// Connections per peer identity: one each way (two nodes that dial each other at once), and
/// room for the AutoNAT dial-backs of both directions. With 2, two nodes that tested each other
/// at once failed the second test: the first test's dial-back connection was still open, the
/// second's was the third connection and refused, and the tested node took itself for private
/// (seen on loopback: a bootstrap node that turned DHT client, and a joiner that then found
/// nobody through it).
pub const MAX_CONNECTIONS_PER_PEER: u32 = 4;
/// Established connections per remote IP address (loopback exempt: test networks and several
/// nodes on one machine share 127.0.0.1). Enforced by the event loop.
pub const MAX_CONNECTIONS_PER_IP: usize = 8;
/// Inbound requests served at once per connection and protocol (libp2p's default is 100).
pub const MAX_STREAMS_PER_CONNECTION: usize = 8;
/// Gossipsub's threshold below which a peer is graylisted: its messages are ignored, and the
/// event loop disconnects it.
pub const GRAYLIST_THRESHOLD: f64 = -80.0;

/// Topic scoring for Chorus's two topics (PROTOCOL.md 12.5): a message Rejected by validation
/// costs its propagation source `-10 x count^2`, so a third invalid message in about a minute
/// graylists it (-90 < -80), whatever credit it earned by forwarding valid ones first (at most
/// +11: P1 and P2 are capped low). The counter decays by 1 % a second (half-life about 70 s).
/// Mesh delivery penalties (P3, P3b) are off: consensus traffic is a few messages per slot, far
/// too sparse for delivery-rate expectations, and they would punish honest peers.
pub fn topic_score_params() -> gossipsub::TopicScoreParams {
    gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 100.0,
        first_message_deliveries_weight: 0.5,
        first_message_deliveries_decay: 0.9,
        first_message_deliveries_cap: 20.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -10.0,
        invalid_message_deliveries_decay: 0.99,
        ..Default::default()
    }
}

pub use composed::{Behaviour, BehaviourEvent};

// The derive also generates `BehaviourEvent`, one variant per field, with no documentation.
#[allow(missing_docs, reason = "the variants of the derived BehaviourEvent")]
mod composed {
    use libp2p::request_response;
    use libp2p::swarm::NetworkBehaviour;
    use libp2p::swarm::behaviour::toggle::Toggle;
    use libp2p::{
        autonat, connection_limits, dcutr, gossipsub, identify, kad, mdns, ping, relay, upnp,
    };

    use crate::net::protocol::{Have, SyncRequest, SyncResponse, Want};
    use crate::net::records::BoundedStore;
    use crate::net::time_codec::TimeCodec;

    /// Everything a Chorus node speaks.
    #[derive(NetworkBehaviour)]
    pub struct Behaviour {
        /// Connection limits in total, pending and per peer (PROTOCOL.md 12.5).
        pub limits: connection_limits::Behaviour,
        /// Consensus gossip, with explicit validation and peer scoring.
        pub gossipsub: gossipsub::Behaviour,
        /// The DHT: peer addresses and provider records.
        pub kad: kad::Behaviour<BoundedStore>,
        /// Exchanges listen addresses and the protocol version.
        pub identify: identify::Behaviour,
        /// Keeps connections alive and measures them.
        pub ping: ping::Behaviour,
        /// LAN discovery, when turned on.
        pub mdns: Toggle<mdns::tokio::Behaviour>,
        /// AutoNAT v2, asking: which of our observed addresses others can dial back.
        pub autonat: autonat::v2::client::Behaviour,
        /// AutoNAT v1: v2 asks only over connections we dialed, so a public node that is only
        /// ever dialed (a bootstrap node of NATed homes) learns its reachability from v1.
        pub autonat_v1: autonat::v1::Behaviour,
        /// AutoNAT v2, answering: dials back the addresses peers ask about.
        pub autonat_server: autonat::v2::server::Behaviour,
        /// Circuit relay v2 server: advertised only while we have a confirmed public address,
        /// within [`super::relay_config`]'s limits.
        pub relay: relay::Behaviour,
        /// Circuit relay v2 client: reservations on public peers while we are private.
        pub relay_client: relay::client::Behaviour,
        /// Hole punching (DCUtR) over relayed connections.
        pub dcutr: dcutr::Behaviour,
        /// Port mappings from a UPnP router, when turned on.
        pub upnp: Toggle<upnp::tokio::Behaviour>,
        /// `/chorus/sync/1`: catching up on the chain.
        pub sync: request_response::cbor::Behaviour<SyncRequest, SyncResponse>,
        /// `/chorus/time/1`: network time samples.
        pub time: request_response::Behaviour<TimeCodec>,
        /// The block exchange: want lists and the blocks they ask for.
        pub blocks: request_response::cbor::Behaviour<Want, Have>,
    }
}

/// Why the behaviour could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Gossipsub refused its configuration.
    #[error("gossipsub configuration: {0}")]
    Gossipsub(String),
    /// mDNS could not start.
    #[error("mDNS: {0}")]
    Mdns(#[from] std::io::Error),
}

impl Behaviour {
    /// Builds the behaviour for `key`: `relay_client` from the swarm builder, `options` the
    /// switches (LAN discovery, UPnP, streams per connection).
    pub fn new(
        key: &Keypair,
        relay_client: relay::client::Behaviour,
        options: Options,
        clock: Arc<Clock>,
    ) -> Result<Behaviour, BuildError> {
        let Options {
            mdns,
            upnp,
            autonat_any_address,
            streams,
        } = options;
        let peer_id = key.public().to_peer_id();
        let gossipsub = gossipsub(key)?;
        let kad = kad(peer_id);
        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_VERSION.to_owned(), key.public())
                // Protocol changes (the relay server turning on) reach peers at once.
                .with_push_listen_addr_updates(true),
        );
        let mdns = if mdns {
            Some(mdns::tokio::Behaviour::new(
                mdns::Config::default(),
                peer_id,
            )?)
        } else {
            None
        };
        let rr_config = || {
            request_response::Config::default()
                .with_request_timeout(Duration::from_secs(15))
                .with_max_concurrent_streams(streams)
        };
        let sync = request_response::cbor::Behaviour::with_codec(
            request_response::cbor::codec::Codec::default()
                .set_request_size_maximum(SYNC_REQUEST_MAX_BYTES as u64)
                .set_response_size_maximum(SYNC_RESPONSE_MAX_BYTES as u64),
            [(StreamProtocol::new(SYNC_PROTOCOL), ProtocolSupport::Full)],
            rr_config(),
        );
        let time = request_response::Behaviour::with_codec(
            TimeCodec::new(clock),
            [(StreamProtocol::new(TIME_PROTOCOL), ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(Duration::from_secs(5))
                .with_max_concurrent_streams(streams),
        );
        let blocks = request_response::cbor::Behaviour::with_codec(
            request_response::cbor::codec::Codec::default()
                .set_request_size_maximum(SYNC_REQUEST_MAX_BYTES as u64)
                .set_response_size_maximum(BLOCKS_MESSAGE_MAX_BYTES as u64),
            [(StreamProtocol::new(BLOCKS_PROTOCOL), ProtocolSupport::Full)],
            rr_config(),
        );
        Ok(Behaviour {
            limits: limits(),
            gossipsub,
            kad,
            identify,
            ping: ping::Behaviour::new(ping::Config::new()),
            mdns: mdns.into(),
            autonat: autonat::v2::client::Behaviour::new(
                rand::make_rng(),
                autonat::v2::client::Config::default().with_probe_interval(AUTONAT_PROBE),
            ),
            autonat_server: autonat::v2::server::Behaviour::default(),
            autonat_v1: autonat::v1::Behaviour::new(
                peer_id,
                autonat_v1_config(autonat_any_address),
            ),
            relay: relay_server(peer_id),
            relay_client,
            dcutr: dcutr::Behaviour::new(peer_id),
            upnp: upnp.then(upnp::tokio::Behaviour::default).into(),
            sync,
            time,
            blocks,
        })
    }
}

/// The switches of [`Behaviour::new`].
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// LAN discovery (mDNS).
    pub mdns: bool,
    /// Port mappings from a UPnP router.
    pub upnp: bool,
    /// AutoNAT v1 also tests (and serves) non-global addresses: for test networks only.
    pub autonat_any_address: bool,
    /// Requests in flight per connection and protocol, each way
    /// ([`MAX_STREAMS_PER_CONNECTION`] for a node).
    pub streams: usize,
}

/// How often AutoNAT v2 tests an untested address candidate (libp2p's default is 5 s).
const AUTONAT_PROBE: Duration = Duration::from_secs(2);

/// AutoNAT v1 tuned for a node that wants its answer in seconds, not minutes: first probe after
/// 2 s, retried every 5 s until one answer settles it (a single server's answer is enough
/// here: a wrong "public" only costs a relay reservation), checked again every 5 minutes.
fn autonat_v1_config(any_address: bool) -> autonat::v1::Config {
    autonat::v1::Config {
        boot_delay: Duration::from_secs(2),
        retry_interval: Duration::from_secs(5),
        refresh_interval: Duration::from_secs(300),
        throttle_server_period: Duration::from_secs(5),
        confidence_max: 1,
        only_global_ips: !any_address,
        ..autonat::v1::Config::default()
    }
}

/// The relay server, advertised always. libp2p-relay 0.22 by default advertises it only while
/// the node has a confirmed external address, and on each change tells every connection's
/// handler, including those of relayed connections, whose handler is a dummy: that panics the
/// connection's task (`handler/either.rs`: unreachable). A private node's relay reservation
/// is such a change (its circuit address is confirmed), so homes lost connections on
/// reserving (seen on the testbed's ten nodes). Set once, before any connection, it never
/// changes. Private nodes advertising it is harmless: nodes choose relays among DHT servers
/// (confirmed public), never by the protocol alone (`net/event_loop/nat.rs`).
fn relay_server(peer_id: PeerId) -> relay::Behaviour {
    let mut relay = relay::Behaviour::new(peer_id, relay_config());
    relay.set_status(Some(relay::Status::Enable));
    relay
}

/// The relay server's limits (PROTOCOL.md 12.5): a relay carries hole punching and control
/// traffic, never tracks, so each circuit is short and small; a public node lends at most 64
/// reservations (4 per peer) and 32 circuits at once (4 per peer).
pub fn relay_config() -> relay::Config {
    relay::Config {
        max_reservations: 64,
        max_reservations_per_peer: 4,
        reservation_duration: Duration::from_secs(30 * 60),
        max_circuits: 32,
        max_circuits_per_peer: 4,
        max_circuit_duration: Duration::from_secs(5 * 60),
        max_circuit_bytes: 1 << 20,
        ..relay::Config::default()
    }
}

/// Gossipsub with content-based message ids, explicit validation and peer scoring.
fn gossipsub(key: &Keypair) -> Result<gossipsub::Behaviour, BuildError> {
    // Content-based ids: the same bytes are the same message whoever relays them, and every
    // node must use the same function or IHAVE/IWANT repair silently fails (PROTOCOL.md 2).
    let message_id =
        |m: &gossipsub::Message| gossipsub::MessageId::from(Sha256::digest(&m.data).to_vec());
    let config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .message_id_fn(message_id)
        .max_transmit_size(GOSSIP_FRAME_MAX)
        .heartbeat_interval(Duration::from_millis(700))
        .heartbeat_initial_delay(Duration::from_millis(100))
        // Peer exchange: a peer pruned from a full mesh is told of others to dial, so joiners
        // that were given one address spread out instead of forming a star around it.
        .do_px()
        .build()
        .map_err(|e| BuildError::Gossipsub(e.to_string()))?;
    let mut gossipsub =
        gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), config)
            .map_err(|e| BuildError::Gossipsub(e.to_string()))?;
    // Peer scoring on, with loopback exempt from the IP-colocation penalty: nodes on one
    // machine share 127.0.0.1, and above 10 of them the default penalty graylists every
    // one of them (their gossip is then dropped, and each node decides alone).
    let mut score = gossipsub::PeerScoreParams::default();
    score.ip_colocation_factor_whitelist.extend([
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ]);
    let thresholds = gossipsub::PeerScoreThresholds {
        graylist_threshold: GRAYLIST_THRESHOLD,
        ..Default::default()
    };
    gossipsub
        .with_peer_score(score, thresholds)
        .map_err(BuildError::Gossipsub)?;
    Ok(gossipsub)
}

/// Kademlia over the bounded record store; the event loop sets its mode from the node's
/// reachability (`nat.rs`, `set_dht_mode`): a node behind NAT is a client, so nobody puts its
/// unreachable addresses in their routing table.
fn kad(peer_id: PeerId) -> kad::Behaviour<super::records::BoundedStore> {
    let mut kad_config = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
    kad_config.set_provider_publication_interval(Some(Duration::from_secs(600)));
    // The event loop bootstraps when the first server peer enters the table and then
    // periodically; kad's own timer would warn about an empty table on a lone node.
    kad_config.set_periodic_bootstrap_interval(None);
    let store = super::records::BoundedStore::new(peer_id);
    let mut kad = kad::Behaviour::with_config(peer_id, store, kad_config);
    // Reachability unknown: a server until AutoNAT finds the node private.
    kad.set_mode(Some(kad::Mode::Server));
    kad
}

/// The connection limits of PROTOCOL.md 12.5 (the per-IP one is the event loop's).
fn limits() -> connection_limits::Behaviour {
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(MAX_CONNECTIONS))
        .with_max_pending_incoming(Some(MAX_PENDING))
        .with_max_pending_outgoing(Some(MAX_PENDING))
        .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER));
    connection_limits::Behaviour::new(limits)
}
