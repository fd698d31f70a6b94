//! The composed libp2p behaviour.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{StreamProtocol, gossipsub, identify, kad, mdns, ping};
use sha2::{Digest, Sha256};

use super::protocol::{
    BLOCKS_MESSAGE_MAX, BLOCKS_PROTOCOL, Have, IDENTIFY_VERSION, KAD_PROTOCOL, SYNC_PROTOCOL,
    SYNC_REQUEST_MAX, SYNC_RESPONSE_MAX, SyncRequest, SyncResponse, TIME_PROTOCOL, Want,
};
use super::time_codec::TimeCodec;
use crate::clock::Clock;

/// PROTOCOL.md 10: a gossip message is at most 64 KiB. Receivers check the whole frame (topic,
/// sender, sequence number and signature included), so the transport limit sits a few KiB above.
pub const GOSSIP_MAX: usize = 64 * 1024;
const GOSSIP_FRAME_MAX: usize = GOSSIP_MAX + 8 * 1024;

/// Everything a Chorus node speaks.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub gossipsub: gossipsub::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    pub sync: request_response::cbor::Behaviour<SyncRequest, SyncResponse>,
    pub time: request_response::Behaviour<TimeCodec>,
    pub blocks: request_response::cbor::Behaviour<Want, Have>,
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
    pub fn new(key: &Keypair, mdns: bool, clock: Arc<Clock>) -> Result<Behaviour, BuildError> {
        let peer_id = key.public().to_peer_id();
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
        gossipsub
            .with_peer_score(score, gossipsub::PeerScoreThresholds::default())
            .map_err(BuildError::Gossipsub)?;

        let mut kad_config = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
        kad_config.set_provider_publication_interval(Some(Duration::from_secs(600)));
        // Peers enter the table through identify; a periodic bootstrap before the first one
        // only warns about an empty table.
        kad_config.set_periodic_bootstrap_interval(None);
        let store_config = kad::store::MemoryStoreConfig {
            max_provided_keys: 1_000_000,
            max_providers_per_key: 64,
            ..Default::default()
        };
        let store = kad::store::MemoryStore::with_config(peer_id, store_config);
        let mut kad = kad::Behaviour::with_config(peer_id, store, kad_config);
        // On loopback and private addresses kad would stay a client and nobody could ask us.
        kad.set_mode(Some(kad::Mode::Server));

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
        let rr_config =
            || request_response::Config::default().with_request_timeout(Duration::from_secs(15));
        let sync = request_response::cbor::Behaviour::with_codec(
            request_response::cbor::codec::Codec::default()
                .set_request_size_maximum(SYNC_REQUEST_MAX)
                .set_response_size_maximum(SYNC_RESPONSE_MAX),
            [(StreamProtocol::new(SYNC_PROTOCOL), ProtocolSupport::Full)],
            rr_config(),
        );
        let time = request_response::Behaviour::with_codec(
            TimeCodec::new(clock),
            [(StreamProtocol::new(TIME_PROTOCOL), ProtocolSupport::Full)],
            request_response::Config::default().with_request_timeout(Duration::from_secs(5)),
        );
        let blocks = request_response::cbor::Behaviour::with_codec(
            request_response::cbor::codec::Codec::default()
                .set_request_size_maximum(SYNC_REQUEST_MAX)
                .set_response_size_maximum(BLOCKS_MESSAGE_MAX),
            [(StreamProtocol::new(BLOCKS_PROTOCOL), ProtocolSupport::Full)],
            rr_config(),
        );
        Ok(Behaviour {
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
