//! The composed libp2p behaviour.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::{PeerId, StreamProtocol, connection_limits, gossipsub, identify, kad, mdns, ping};
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
/// Connections per peer identity.
pub const MAX_CONNECTIONS_PER_PEER: u32 = 2;
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
    use libp2p::{connection_limits, gossipsub, identify, kad, mdns, ping};

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
    /// Builds the behaviour for `key`; `mdns` turns LAN discovery on.
    /// `streams` bounds the requests in flight per connection and protocol, each way
    /// ([`MAX_STREAMS_PER_CONNECTION`] for a node).
    pub fn new(
        key: &Keypair,
        mdns: bool,
        clock: Arc<Clock>,
        streams: usize,
    ) -> Result<Behaviour, BuildError> {
        let peer_id = key.public().to_peer_id();
        let gossipsub = gossipsub(key)?;
        let kad = kad(peer_id);
        let identify = identify::Behaviour::new(identify::Config::new(
            IDENTIFY_VERSION.to_owned(),
            key.public(),
        ));
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
            sync,
            time,
            blocks,
        })
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

/// Kademlia in server mode over the bounded record store.
fn kad(peer_id: PeerId) -> kad::Behaviour<super::records::BoundedStore> {
    let mut kad_config = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
    kad_config.set_provider_publication_interval(Some(Duration::from_secs(600)));
    // Peers enter the table through identify; a periodic bootstrap before the first one
    // only warns about an empty table.
    kad_config.set_periodic_bootstrap_interval(None);
    let store = super::records::BoundedStore::new(peer_id);
    let mut kad = kad::Behaviour::with_config(peer_id, store, kad_config);
    // On loopback and private addresses kad would stay a client and nobody could ask us.
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
